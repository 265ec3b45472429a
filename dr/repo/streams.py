"""Byte streams in the repository (FORMAT.md §8, "Streams"): resources and hook dumps.

A stream is written incrementally (``StreamWriter.write``) and chunked with
the repository's content-defined chunker, so an unchanged stretch of a
stream deduplicates against earlier backups. Reading prefetches a few blobs
ahead in parallel.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from dr.repo.chunker import StreamChunker
from dr.repo.format import BlobType
from dr.repo.repository import Repository, Saver
from dr.repo.snapshots import Stream


class StreamWriter:
    def __init__(self, repo: Repository, saver: Saver) -> None:
        self._saver = saver
        self._chunker = StreamChunker(repo.config.chunker)
        self._blobs: list[str] = []
        self._size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._size += len(data)
        for chunk in self._chunker.feed(data):
            self._blobs.append(self._saver.save(BlobType.DATA, chunk).hex())

    def close(self) -> Stream:
        for chunk in self._chunker.finish():
            self._blobs.append(self._saver.save(BlobType.DATA, chunk).hex())
        return Stream(blobs=self._blobs, size=self._size)


def read_stream(repo: Repository, stream: Stream, *, prefetch: int = 4) -> Iterator[bytes]:
    """The stream's bytes, blob by blob, each verified."""
    ids = [bytes.fromhex(b) for b in stream.blobs]
    with ThreadPoolExecutor(max_workers=prefetch) as pool:
        # map() submits everything; bound the window to keep memory flat.
        for start in range(0, len(ids), prefetch * 4):
            yield from pool.map(repo.read_blob, ids[start : start + prefetch * 4])


def read_lines(repo: Repository, stream: Stream) -> Iterator[bytes]:
    """Newline-separated records of a stream (records may span blobs)."""
    rest = b""
    for data in read_stream(repo, stream):
        buf = rest + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        yield from (ln for ln in lines if ln)
    if rest:
        yield rest
