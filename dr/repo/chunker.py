"""Content-defined chunking (FORMAT.md §5.1): FastCDC 2020 over files and push streams.

pyfastcdc provides the cut-point search (C, GIL released); this module feeds
it from a buffer that each worker allocates once and reuses for every file:
on these VMs a fresh multi-MiB buffer per file costs more in first-touch page
faults than the chunking itself. Cut points depend only on the bytes since
the previous cut, so cutting from a refilled buffer gives exactly the chunks
of a single pass over the whole input.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyfastcdc import FastCDC

READ_SIZE = 4 << 20


@dataclass(frozen=True)
class ChunkerParams:
    min_size: int = 256 << 10
    avg_size: int = 1 << 20
    max_size: int = 4 << 20
    seed: int = 0

    def cdc(self) -> FastCDC:
        from pyfastcdc import FastCDC  # only backups chunk: restores do not load it

        return FastCDC(avg_size=self.avg_size, min_size=self.min_size, max_size=self.max_size, seed=self.seed)


class FileChunker:
    """Cuts files into chunks using one reusable buffer (one instance per worker thread)."""

    def __init__(self, params: ChunkerParams) -> None:
        self.params = params
        self._cdc = params.cdc()
        self._buf = bytearray(params.max_size + READ_SIZE)
        self._mv = memoryview(self._buf)

    def chunks_fd(self, fd: int) -> Iterator[memoryview]:
        """Chunks of the file open at ``fd``. Each view is valid until the next one is taken."""
        buf, mv, max_size = self._buf, self._mv, self.params.max_size
        start = end = 0
        eof = False
        while True:
            if not eof and end - start < max_size:
                if start:
                    # Move the unconsumed tail to the front, then refill.
                    buf[: end - start] = mv[start:end]
                    end -= start
                    start = 0
                while end < len(buf):
                    n = os.readv(fd, [mv[end:]])
                    if n == 0:
                        eof = True
                        break
                    end += n
            if start == end:
                return
            cut = next(self._cdc.cut_buf(mv[start:end])).length
            yield mv[start : start + cut]
            start += cut


class StreamChunker:
    """Push-style chunking of a stream of unknown length (resources, hook dumps)."""

    def __init__(self, params: ChunkerParams) -> None:
        self.params = params
        self._cdc = params.cdc()
        self._buf = bytearray()

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Add bytes; return the chunks that can no longer change."""
        self._buf += data
        if len(self._buf) < 2 * self.params.max_size:
            return []
        out: list[bytes] = []
        mv = memoryview(self._buf)
        start = 0
        while len(self._buf) - start >= self.params.max_size:
            cut = next(self._cdc.cut_buf(mv[start:])).length
            out.append(bytes(mv[start : start + cut]))
            start += cut
        mv.release()
        del self._buf[:start]
        return out

    def finish(self) -> list[bytes]:
        """The remaining chunks at the end of the stream."""
        out: list[bytes] = []
        mv = memoryview(self._buf)
        start = 0
        while start < len(self._buf):
            cut = next(self._cdc.cut_buf(mv[start:])).length
            out.append(bytes(mv[start : start + cut]))
            start += cut
        mv.release()
        self._buf = bytearray()
        return out
