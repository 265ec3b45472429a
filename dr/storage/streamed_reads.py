"""``get_pieces`` (and ``get_range``, one piece of it) for the stores that read a
span in one streamed request (S3, GCS).

A restore reads a pack's blobs as the pieces of one span: one request for the
span, read forward as it arrives, so memory is a piece and not the span. The
store opens a ``PieceReader`` for the pieces still to read; when a read fails
part way, the reader is dropped and the next attempt (under the retry policy,
for each piece on its own) opens a new request at the piece it was in.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from dr.storage.base import ObjectNotFound, StorageError
from dr.storage.naming import check_name

if TYPE_CHECKING:
    from dr.storage.retry import RetryPolicy

T = TypeVar("T")


class PieceReader(Protocol):
    def next(self) -> bytes:
        """The next piece (shorter only at the end of the object, then empty)."""
        ...

    def close(self) -> None: ...


class StreamedReads:
    """The ``get_pieces`` of S3 and GCS; the store provides the request (``_open_pieces``),
    its retry policy, its error mapping (``_call``) and its bucket check."""

    _retry: RetryPolicy

    def _what(self, op: str, name: str) -> str:
        raise NotImplementedError

    def _call(self, fn: Callable[[], T], *, what: str, name: str | None, conditional: bool = False) -> T:
        raise NotImplementedError

    def _check_bucket(self) -> None:
        raise NotImplementedError

    def _open_pieces(self, name: str, rest: Sequence[tuple[int, int]], end: int) -> PieceReader:
        """A reader of the pieces ``rest`` (sorted, the span ending at ``end``)."""
        raise NotImplementedError

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """One piece of ``get_pieces``: the same request, answers and retries."""
        with contextlib.closing(self.get_pieces(name, [(offset, length)])) as piece:
            return next(piece)

    def get_range_into(self, name: str, offset: int, out: memoryview) -> int:
        data = self.get_range(name, offset, len(out))
        out[: len(data)] = data
        return len(data)

    def get_pieces(
        self, name: str, pieces: Sequence[tuple[int, int]], *, into: memoryview | None = None
    ) -> Generator[bytes, None, None]:
        # ``into`` is not used: pieces are handed over as they arrive, one at a time.
        if not pieces:
            return
        check_name(name)  # before any request
        what = self._what("get", name)
        for offset, length in pieces:
            if offset < 0 or length < 0:
                raise StorageError(f"{what}: invalid range offset={offset} length={length}")
        end = pieces[-1][0] + pieces[-1][1]
        reader: PieceReader | None = None
        done = 0  # pieces handed over

        def read_piece() -> bytes:
            nonlocal reader
            try:
                if reader is None:
                    reader = self._open_pieces(name, pieces[done:], end)
                return reader.next()
            except BaseException:
                if reader is not None:
                    reader.close()  # the next attempt starts a fresh request at this piece
                    reader = None
                raise

        attempt = functools.partial(self._call, read_piece, what=what, name=name)
        try:
            while done < len(pieces):
                try:
                    piece = self._retry.run(attempt, what=what)
                except ObjectNotFound:
                    self._check_bucket()
                    raise
                done += 1
                yield piece
        finally:
            if reader is not None:
                reader.close()
