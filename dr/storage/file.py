"""``file:///abs/path``: a repository in a local (or mounted network) directory.

Create-only writes go to a temporary file in the same directory (large ones
with ``O_DIRECT``, see ``direct_io``), are fsynced,
then linked into place with ``os.link``, which fails if the name exists — an
atomic create-if-absent on POSIX file systems (including NFS). Plain
overwrites use ``os.replace``. Readers never see half-written objects. A
process killed while it writes leaves its temporary file (``.tmp-*``, never
listed): ``remove_temporaries`` deletes those older than a given time (prune).

Errors. A missing file is ``ObjectNotFound``, a taken name ``ObjectExists``,
EACCES/EPERM ``AccessDenied``; every other ``OSError`` (a full or read-only
file system, a file where a directory should be, an I/O error) is a
``StorageError`` naming the store, the operation, the object and the
system's reason, so the CLI reports it as one line, not as a crash.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Generator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from dr.storage.base import (
    AccessDenied,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectRetained,
    StorageError,
    delete_each,
)
from dr.storage.direct_io import write_file

# What ``get_pieces`` reads at once at most, given no buffer (memory: one span per reader).
MAX_SPAN = 8 << 20


class FileStore:
    max_span = MAX_SPAN

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        # Object paths are made as strings: pathlib interns every name it parses
        # (sys.intern), and a dropped interned string keeps its slot in the
        # interpreter's table until the table is rebuilt; a pack name per range
        # read rebuilt it during a restore of the 8 GiB benchmark set (+940 KB of
        # peak RSS, where the 1 and 4 GiB sets had not reached it).
        self._base = os.fspath(self.root).rstrip("/") + "/"  # "/" for the root directory

    @property
    def local(self) -> bool:
        return True

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    def _error(self, op: str, name: str, e: OSError) -> StorageError:
        """The dr error for ``e`` from ``op`` on ``name`` (missing and taken names are
        mapped by the callers, where they mean something)."""
        reason = e.strerror or str(e)
        if e.errno in (errno.EACCES, errno.EPERM):
            return AccessDenied(f"{self.url}: cannot {op} {name}: {reason}")
        return StorageError(f"{self.url}: {op} {name}: {reason}")

    def _path(self, name: str) -> str:
        if not name or any(p in ("", ".", "..") for p in name.split("/")):
            raise StorageError(f"invalid object name {name!r}")
        return self._base + name

    def put(self, name: str, data: bytes | memoryview, *, if_absent: bool = True) -> None:
        path = self._path(name)
        parent, _, base = path.rpartition("/")
        try:
            os.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/.tmp-{base}-{secrets.token_hex(6)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise self._error("write", name, e) from None
        try:
            try:
                # Large objects (packs) bypass the page cache: see direct_io.
                write_file(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if if_absent:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists(name) from None
            else:
                os.replace(tmp, path)
        except OSError as e:  # ENOSPC, EDQUOT, EIO ... (the temporary file goes below)
            raise self._error("write", name, e) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def get(self, name: str) -> bytes:
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectNotFound(name, self.url) from None
        except OSError as e:
            raise self._error("read", name, e) from None

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        try:
            with open(self._path(name), "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(name, self.url) from None
        except OSError as e:
            raise self._error("read", name, e) from None

    def get_range_into(self, name: str, offset: int, out: memoryview) -> int:
        """Into the caller's buffer: a restore reads every run of blobs into the same
        memory, instead of a new object of the run's size each time."""
        try:
            fd = os.open(self._path(name), os.O_RDONLY)
        except FileNotFoundError:
            raise ObjectNotFound(name, self.url) from None
        except OSError as e:
            raise self._error("read", name, e) from None
        try:
            got = 0
            while got < len(out):
                n = os.preadv(fd, [out[got:]], offset + got)
                if not n:
                    break
                got += n
            return got
        except OSError as e:  # EISDIR (a directory opens), EIO
            raise self._error("read", name, e) from None
        finally:
            os.close(fd)

    def get_pieces(
        self, name: str, pieces: Sequence[tuple[int, int]], *, into: memoryview | None = None
    ) -> Generator[memoryview, None, None]:
        """One read per span of adjacent pieces at most ``max_span`` long (with ``into``,
        ``len(into)``; longer only for a single piece), handed over as views of it: a
        read from a file costs no round trip, so there is nothing to gain by streaming.

        With ``into`` each span is read into it rather than into a new object. A
        restore passes each worker's own buffer: from the heap, which dr keeps
        untrimmed, it held as many spans as had happened to coincide (20,000 small
        files: peak RSS 93-95 MB, against 65-66 MB read into the workers' buffers)."""
        limit = self.max_span if into is None else len(into)
        i = 0
        while i < len(pieces):
            start = pieces[i][0]
            j = i + 1
            while j < len(pieces) and pieces[j][0] + pieces[j][1] - start <= limit:
                j += 1
            length = pieces[j - 1][0] + pieces[j - 1][1] - start
            if into is not None and length <= len(into):
                data = into[: self.get_range_into(name, start, into[:length])]
            else:
                data = memoryview(self.get_range(name, start, length))
            for offset, n in pieces[i:j]:
                yield data[offset - start : offset - start + n]
            i = j

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the directory that can contain the prefix.
        base_dir, _, _ = prefix.rpartition("/")
        start = self._base + base_dir if base_dir else self._base

        def failed(e: OSError) -> None:
            # os.walk skips what it cannot read unless told: a listing that
            # silently left out an unreadable directory would look complete.
            if isinstance(e, FileNotFoundError | NotADirectoryError):
                return  # nothing there (or removed while listing): no objects
            raise self._error("list", prefix or "(all)", e)

        for dirpath, dirnames, filenames in os.walk(start, onerror=failed):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.startswith(".tmp-"):
                    continue
                full = os.path.join(dirpath, fn)
                name = full[len(self._base) :]
                if not name.startswith(prefix):
                    continue
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue  # deleted while listing
                except OSError as e:
                    raise self._error("list", name, e) from None
                yield ObjectInfo(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(name))
        except FileNotFoundError:
            raise ObjectNotFound(name, self.url) from None
        except OSError as e:
            raise self._error("stat", name, e) from None
        return ObjectInfo(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._error("delete", name, e) from None

    def delete_many(self, names: Sequence[str]) -> dict[str, ObjectRetained]:
        return delete_each(self, names)  # an unlink each: no round trips to save

    def remove_temporaries(self, older_than: float) -> int:
        """Delete the temporary files of writes that never finished (their process was
        killed mid-write), last modified before ``older_than`` (a ``time.time()``);
        -> how many. Younger ones may be of a write still under way."""
        removed = 0
        for dirpath, _, filenames in os.walk(self._base):
            for fn in filenames:
                if not fn.startswith(".tmp-"):
                    continue
                path = os.path.join(dirpath, fn)
                try:
                    if os.stat(path).st_mtime < older_than:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue  # its write finished (or failed) meanwhile
                except OSError as e:
                    raise self._error("delete", path[len(self._base) :], e) from None
        return removed

    def close(self) -> None:
        pass
