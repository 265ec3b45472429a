"""Byte streams in the repository (FORMAT.md §8, "Streams"): resources and hook dumps.

A stream is written incrementally (``StreamWriter.write``) and chunked with
the repository's content-defined chunker, so an unchanged stretch of a
stream deduplicates against earlier backups. Reading prefetches a few blobs
ahead in parallel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice

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
    """The stream's bytes, blob by blob, each verified.

    At most ``prefetch`` blobs are read ahead (a sliding window, not batches):
    memory holds a few blobs whatever the stream's length.
    """
    ids = iter(bytes.fromhex(b) for b in stream.blobs)
    pool = ThreadPoolExecutor(max_workers=prefetch)
    try:
        window: deque[Future[bytes]] = deque(pool.submit(repo.read_blob, i) for i in islice(ids, prefetch))
        while window:
            data = window.popleft().result()
            following = next(ids, None)
            if following is not None:
                window.append(pool.submit(repo.read_blob, following))
            yield data
    finally:
        # Closed early, do not read what nobody will use, and do not wait for the reads
        # under way: a generator dropped by its reader is closed by the garbage
        # collector at any point, and a join there can hang (it once did, inside
        # threading's own lock, for Repository.load_objects).
        pool.shutdown(wait=False, cancel_futures=True)


def read_lines(repo: Repository, stream: Stream) -> Iterator[bytes]:
    """Newline-separated records of a stream (records may span blobs; empty lines are skipped)."""
    rest = b""
    # Records are parsed as fast as one blob is read: one blob ahead is enough, and
    # blobs of a resource stream are megabytes each (a restore rereads it per stage).
    for data in read_stream(repo, stream, prefetch=1):
        start = 0
        if rest:
            end = data.find(b"\n")
            if end < 0:
                rest += data
                continue
            yield rest + data[:end]
            rest, start = b"", end + 1
        # Slice records out of the blob one by one: no list of all its lines, no copy of the blob.
        while (end := data.find(b"\n", start)) >= 0:
            if end > start:
                yield data[start:end]
            start = end + 1
        rest = data[start:]
    if rest:
        yield rest
