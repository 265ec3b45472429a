"""The object-store interface every backend implements, and its errors.

Six operations are all the repository needs (FORMAT.md): create-only put,
get, ranged get, list by prefix, stat and delete; ``get_pieces`` is a ranged
get that hands over a range's blobs one by one (restores read packs with it).
Names are ``/``-separated paths relative to the repository root
(``data/3f/3f9c…``); a backend maps them onto its own namespace (a
directory, a bucket prefix).

Create-only put (``if_absent=True``) is what makes the repository
append-only and concurrent backups safe: two writers can never replace each
other's object. Backends implement it natively (``O_EXCL`` + rename,
S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``), never as a
check-then-write race.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from dr.errors import DrError


class StorageError(DrError):
    """A storage operation failed (after retries where retrying is safe)."""


class ObjectNotFound(StorageError):
    def __init__(self, name: str, where: str = "") -> None:
        super().__init__(f"object {name!r} not found{' in ' + where if where else ''}")
        self.name = name


class ObjectExists(StorageError):
    """A create-only put found the name taken."""

    def __init__(self, name: str) -> None:
        super().__init__(f"object {name!r} already exists")
        self.name = name


class AccessDenied(StorageError):
    """The credentials may not do this (or Object Lock retention forbids it)."""


class ObjectRetained(AccessDenied):
    """A delete refused because the object is under Object Lock retention (until ``until``)
    or a legal hold (``until`` None): not a fault; a later delete may succeed."""

    def __init__(self, message: str, until: datetime | None = None) -> None:
        super().__init__(message)
        self.until = until


@dataclass(frozen=True)
class ObjectInfo:
    name: str  # relative to the store root
    size: int
    modified: datetime | None = None


@runtime_checkable
class ObjectStore(Protocol):
    """A flat namespace of immutable objects."""

    @property
    def url(self) -> str:
        """The store's URL, without credentials (safe to log)."""
        ...

    @property
    def local(self) -> bool:
        """True when a request costs no network round trip (a file system): readers
        may then make many small range reads rather than a few large ones."""
        ...

    def put(self, name: str, data: bytes | memoryview, *, if_absent: bool = True) -> None:
        """Write an object. With ``if_absent`` (the default) raise ``ObjectExists`` when
        the name is taken and leave the existing object untouched."""
        ...

    def get(self, name: str) -> bytes:
        """The whole object; ``ObjectNotFound`` if missing."""
        ...

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end of the object)."""
        ...

    def get_range_into(self, name: str, offset: int, out: memoryview) -> int:
        """``get_range`` of ``len(out)`` bytes, read into ``out``; -> how many (fewer only
        at the end of the object)."""
        ...

    def get_pieces(
        self, name: str, pieces: Sequence[tuple[int, int]], *, into: memoryview | None = None
    ) -> Generator[bytes | memoryview, None, None]:
        """The bytes of each ``(offset, length)`` piece, in order (pieces sorted by
        offset, not overlapping; each shorter only at the end of the object). Bytes
        between pieces may be read and dropped. A ``StorageError`` ends the iteration;
        the pieces handed over before it are good. Close the iterator if you stop early.

        ``into``: the caller's buffer, for a store that reads spans of pieces whole
        (a file store): each span is read into it, and a piece is then a view of it,
        valid until the next one is asked for. A store that streams ignores it."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix``, in no particular order."""
        ...

    def stat(self, name: str) -> ObjectInfo:
        """Size and time of one object; ``ObjectNotFound`` if missing."""
        ...

    def delete(self, name: str) -> None:
        """Delete an object; deleting a missing object is not an error."""
        ...

    def delete_many(self, names: Sequence[str]) -> dict[str, ObjectRetained]:
        """Delete every one of ``names`` (as ``delete``, in fewer requests where the store
        has a batch delete); -> ``{name: refusal}`` for those Object Lock retains, which
        stay. Any other failure raises; the names before it may be deleted."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def delete_each(store: ObjectStore, names: Sequence[str]) -> dict[str, ObjectRetained]:
    """``delete_many`` one ``store.delete`` at a time: for stores without a batch delete."""
    retained: dict[str, ObjectRetained] = {}
    for name in names:
        try:
            store.delete(name)
        except ObjectRetained as e:
            retained[name] = e
    return retained
