"""OrderedFileWriter: a restored file's blobs in any order, from any thread, written front to back."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dr.repo.ordered_writer import OrderedFileWriter, StagingPool
from dr.storage.direct_io import ALIGN


def pieces(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [(a, data[a:b]) for a, b in itertools.pairwise(bounds)]


def new_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def decoded(piece: bytes) -> Callable[[memoryview, memoryview], None]:
    """A decode like Codec.decode_into's: writes the lent byte, then the piece."""

    def decode(out: memoryview, spare: memoryview) -> None:
        out[0] = 0xEE
        out[1:] = piece

    return decode


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(1, 3 << 20),
    st.lists(st.integers(0, 1 << 30), max_size=12),
    st.randoms(use_true_random=False),
    st.integers(1, 4),
    st.booleans(),
)
def test_any_order_any_threads_gives_the_file(
    tmp_path_factory: pytest.TempPathFactory,
    size: int,
    cuts: list[int],
    rnd: random.Random,
    threads: int,
    decode: bool,
) -> None:
    # Blobs handed over decoded (put) or to decode in place (put_decoded; a 1 MiB
    # buffer, so that some are larger than it).
    path = tmp_path_factory.mktemp("ordered") / "f"
    data = os.urandom(size)
    new_file(path, size)
    parts = pieces(data, cuts)
    rnd.shuffle(parts)
    w = OrderedFileWriter(str(path), size, pool=StagingPool(ALIGN + (1 << 20)))

    def put(part: tuple[int, bytes]) -> None:
        if decode:
            w.put_decoded(part[0], len(part[1]), decoded(part[1]), spare=1000)
        else:
            w.put(*part)

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, parts))
        assert w.complete and not w.failed
        assert path.read_bytes() == data
        assert w.written == size
    finally:
        path.unlink()


def test_a_decode_that_fails_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "f"
    new_file(path, 3000)
    w = OrderedFileWriter(str(path), 3000)

    def broken(out: memoryview, spare: memoryview) -> None:
        out[:] = b"\xff" * len(out)
        raise ValueError("bad blob")

    for offset in (0, 2000):  # the next blob (into the buffer), an early one (memory of its own)
        with pytest.raises(ValueError, match="bad blob"):
            w.put_decoded(offset, 1000, broken)
    assert not w.failed
    w.put_decoded(1000, 1000, decoded(b"b" * 1000))
    w.put_decoded(0, 1000, decoded(b"a" * 1000))
    w.put(2000, b"c" * 1000)
    assert w.complete and path.read_bytes() == b"a" * 1000 + b"b" * 1000 + b"c" * 1000


def test_a_blob_repeated_in_the_file_is_written_once_per_place(tmp_path: Path) -> None:
    blob = os.urandom(5000)
    data = blob + os.urandom(3000) + blob
    path = tmp_path / "f"
    new_file(path, len(data))
    w = OrderedFileWriter(str(path), len(data))
    w.put(8000, blob)  # early
    w.put(0, blob)
    w.put(0, blob)  # again: already written, ignored
    w.put(5000, data[5000:8000])
    assert w.complete and path.read_bytes() == data


def test_sparse_file_keeps_its_holes(tmp_path: Path) -> None:
    size = 8 << 20
    data = bytearray(size)
    data[4 << 20 : (4 << 20) + 4096] = os.urandom(4096)
    path = tmp_path / "sparse.img"
    new_file(path, size)
    w = OrderedFileWriter(str(path), size, sparse=True)
    for off in reversed(range(0, size, 1 << 20)):
        w.put(off, bytes(data[off : off + (1 << 20)]))
    assert w.complete and path.read_bytes() == data
    assert os.stat(path).st_blocks * 512 < 1 << 20


def test_a_failed_file_drops_what_waits_and_takes_no_more(tmp_path: Path) -> None:
    path = tmp_path / "f"
    new_file(path, 3000)
    w = OrderedFileWriter(str(path), 3000)
    w.put(1000, b"b" * 1000)
    w.fail()  # e.g. the blob at offset 0 failed verification
    w.put(0, b"a" * 1000)
    w.put(2000, b"c" * 1000)
    assert w.failed and not w.complete
    assert path.read_bytes() == bytes(3000)  # nothing written: the restore reports the file failed


def test_finish_closes_an_incomplete_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    new_file(path, 2000)
    w = OrderedFileWriter(str(path), 2000)
    w.put(0, b"a" * 1000)  # opened, staged, never completed
    w.finish()
    assert w.failed and not w.complete


def test_a_write_error_fails_the_file_and_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "gone"
    path.mkdir()  # not a file: opening it for writing fails
    w = OrderedFileWriter(str(path), 1000)
    w.put(500, b"b" * 500)  # early: nothing opened yet
    with pytest.raises(IsADirectoryError):
        w.put(0, b"a" * 500)
    assert w.failed and not w.complete
    w.put(0, b"a" * 500)  # a failed file takes no more
    w.finish()


def test_a_write_error_of_a_decoded_blob_fails_the_file_and_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "gone"
    path.mkdir()  # not a file: opening it for writing fails
    w = OrderedFileWriter(str(path), 1000)
    w.put_decoded(500, 500, decoded(b"b" * 500))  # early: decoded apart, nothing opened yet
    with pytest.raises(IsADirectoryError):
        w.put_decoded(0, 500, decoded(b"a" * 500))
    assert w.failed and not w.complete
    w.put_decoded(0, 500, decoded(b"a" * 500))  # a failed file takes no more
    w.finish()


def test_files_share_staging_buffers_from_a_pool(tmp_path: Path) -> None:
    # Ten files, at most three open at a time, several threads: each file comes out
    # whole, and the pool made no more buffers than files were open at once.
    pool = StagingPool(64 << 10)
    made: list[object] = []
    take = pool.take

    def counting_take() -> object:
        buf = take()
        if all(buf is not b for b in made):
            made.append(buf)
        return buf

    pool.take = counting_take  # type: ignore[method-assign]
    datas = [os.urandom(200_000 + i) for i in range(10)]
    paths = [tmp_path / f"f{i}" for i in range(10)]
    for p, d in zip(paths, datas, strict=True):
        new_file(p, len(d))
    for group in (range(0, 3), range(3, 6), range(6, 9), range(9, 10)):
        writers = {i: OrderedFileWriter(str(paths[i]), len(datas[i]), pool=pool) for i in group}
        parts = [(i, off, piece) for i in group for off, piece in pieces(datas[i], [70_000, 150_000])]
        random.Random(len(group)).shuffle(parts)
        with ThreadPoolExecutor(3) as ex:
            list(ex.map(lambda p, w=writers: w[p[0]].put(p[1], p[2]), parts))
        assert all(w.complete and not w.failed for w in writers.values())
    pool.close()
    assert [p.read_bytes() for p in paths] == datas
    assert len(made) <= 3


def test_a_failed_file_gives_its_buffer_back(tmp_path: Path) -> None:
    pool = StagingPool()
    used = pool.take()
    pool.give(used)
    path = tmp_path / "f"
    new_file(path, 3000)
    w = OrderedFileWriter(str(path), 3000, pool=pool)
    w.put(0, b"a" * 1000)  # opened: it took the pool's one buffer
    assert pool.take() is not used
    w.fail()
    assert pool.take() is used  # back, and no longer exported: closing it works
    used.close()
    pool.close()
