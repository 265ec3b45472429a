"""Streams (FORMAT.md §8): records read back whatever the blob boundaries, read ahead in a window."""

from __future__ import annotations

import tempfile
import threading
import time
from itertools import pairwise
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dr.repo.format import BlobType
from dr.repo.repository import Repository
from dr.repo.snapshots import Stream
from dr.repo.streams import read_lines, read_stream
from dr.storage.registry import open_store
from tests.repo_helpers import init_repo

records = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=12)


def _stream_of(repo: Repository, pieces: list[bytes]) -> Stream:
    """A stream whose blobs are exactly ``pieces`` (the chunker would cut elsewhere)."""
    with repo.saver() as saver:
        blobs = [saver.save(BlobType.DATA, p).hex() for p in pieces]
        saver.flush()
    return Stream(blobs=blobs, size=sum(map(len, pieces)))


@settings(max_examples=40, deadline=None)
@given(records, st.lists(st.integers(min_value=0, max_value=400), max_size=6), st.booleans())
def test_records_survive_any_blob_boundaries(
    lines: list[bytes], cuts: list[int], final_newline: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in pairwise(bounds) if b > a]  # a stream has no empty blobs
    with tempfile.TemporaryDirectory() as tmp:
        repo, _ = init_repo(open_store(f"file://{tmp}/repo"), Path(tmp))
        stream = _stream_of(repo, pieces)
        assert b"".join(read_stream(repo, stream, prefetch=2)) == data
        assert list(read_lines(repo, stream)) == [ln for ln in lines if ln]


def test_reading_ahead_is_bounded(tmp_path: Path) -> None:
    repo, _ = init_repo(open_store(f"file://{tmp_path}/repo"), tmp_path)
    stream = _stream_of(repo, [f"blob {i}\n".encode() for i in range(30)])
    asked: list[bytes] = []
    read_blob = repo.read_blob

    def counting(blob_id: bytes) -> bytes:
        asked.append(blob_id)
        return read_blob(blob_id)

    repo.read_blob = counting  # type: ignore[method-assign]
    reader = read_stream(repo, stream, prefetch=3)
    assert next(reader) == b"blob 0\n"
    assert len(asked) <= 4  # the one consumed and at most three ahead, not the whole stream
    reader.close()
    assert len(asked) <= 4


def test_closing_early_does_not_wait_for_reads_under_way(tmp_path: Path) -> None:
    # A reader that stops is closed by whoever drops it, the garbage collector
    # included: close must not join the pool (a join there can hang the process).
    repo, _ = init_repo(open_store(f"file://{tmp_path}/repo"), tmp_path)
    stream = _stream_of(repo, [f"blob {i}\n".encode() for i in range(10)])
    read_blob = repo.read_blob
    release = threading.Event()

    def slow_after_first(blob_id: bytes) -> bytes:
        data = read_blob(blob_id)
        if data != b"blob 0\n":
            release.wait(30)
        return data

    repo.read_blob = slow_after_first  # type: ignore[method-assign]
    reader = read_stream(repo, stream, prefetch=3)
    assert next(reader) == b"blob 0\n"
    started = time.monotonic()
    reader.close()  # three reads are under way, held until released
    assert time.monotonic() - started < 5
    release.set()
