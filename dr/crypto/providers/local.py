"""``local:///path/to/keyfile``: wrap the master key with a key in a local file.

The file holds 32 random bytes, base64, one line. It is created with mode 0600
(``dr repo init``, ``dr key add``), whole or not at all and synced to disk
before the slot it wraps is stored, and refused when group or others have any
permission on it (as ssh does), because whoever reads it can open the
repository. Meant for the embedded default and for offline break-glass copies
kept in a safe.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import stat
from pathlib import Path

from dr.crypto.aead import AuthenticationFailed, Sealer
from dr.crypto.providers.base import KeyProviderError, Wrapped
from dr.crypto.providers.context import context_bytes

KEY_SIZE = 32
# A key file is one line of 44 characters; anything much larger is not one.
MAX_KEY_FILE = 4096


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < limit:
        chunk = os.read(fd, limit - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# link(2) errors of file systems that have no hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600, never an existing file) holding ``data``, synced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case of a umask that removed owner bits
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry durable (best effort: not every file system can)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _aad(context: dict[str, str]) -> bytes:
    return context_bytes(context)


class LocalKeyProvider:
    def __init__(self, path: str | Path, *, create: bool = False) -> None:
        self.path = Path(path)
        self.create = create

    @property
    def uri(self) -> str:
        return f"local://{self.path}"

    def _key(self, *, create: bool) -> bytes:
        # The path may come from a key slot, which storage does not authenticate: it
        # may name a FIFO, a terminal, /proc/self/fd/0, a device or a huge file. Only
        # a small regular file is read, and no open may block. Symlinks are followed
        # on purpose: a key file mounted from a Kubernetes Secret is one.
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if not create:
                raise KeyProviderError(self.uri, "key file does not exist") from None
            return self._create()
        except (OSError, ValueError) as e:  # ValueError: a NUL in the path
            raise self._unreadable(e) from None
        if not stat.S_ISREG(st.st_mode):
            raise KeyProviderError(self.uri, "key file is not a regular file")
        try:
            # O_NONBLOCK: a FIFO put in its place after the stat does not hang the open.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise KeyProviderError(self.uri, "key file is not a regular file")
                if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise KeyProviderError(
                        self.uri,
                        f"key file is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                        f"run: chmod 600 {self.path}",
                    )
                data = _read_at_most(fd, MAX_KEY_FILE + 1)
            finally:
                os.close(fd)
        except OSError as e:
            raise self._unreadable(e) from None
        if len(data) > MAX_KEY_FILE:
            raise KeyProviderError(self.uri, f"key file is larger than {MAX_KEY_FILE} bytes: not a key file")
        try:
            raw = base64.b64decode(data.decode("ascii").strip(), validate=True)
        except (binascii.Error, ValueError):
            raise KeyProviderError(self.uri, "key file is not a base64-encoded key") from None
        if len(raw) != KEY_SIZE:
            raise KeyProviderError(self.uri, f"key file holds {len(raw)} bytes, expected {KEY_SIZE}")
        return raw

    def _unreadable(self, e: OSError | ValueError) -> KeyProviderError:
        if isinstance(e, PermissionError):
            return KeyProviderError(self.uri, "permission denied reading the key file")
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return KeyProviderError(self.uri, f"cannot read the key file: {reason}")

    def _create(self) -> bytes:
        try:
            return self._create_file()
        except OSError as e:
            if isinstance(e, PermissionError):
                raise KeyProviderError(self.uri, "permission denied creating the key file") from None
            raise KeyProviderError(self.uri, f"cannot create the key file: {e.strerror or e}") from None

    def _create_file(self) -> bytes:
        # The key is written whole to a temporary file, synced, then linked into place:
        # the key file appears complete or not at all (a full disk or a crash never
        # leaves an empty one, a concurrent creator never reads half of one), and
        # link, unlike rename, never replaces a key file created concurrently. The
        # sync comes first because the slot this key wraps goes to remote storage
        # right away: a crash must not keep the slot and lose its key.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = os.urandom(KEY_SIZE)
        data = (base64.b64encode(key).decode() + "\n").encode()
        tmp = self.path.with_name(f".{self.path.name}.{os.urandom(6).hex()}.tmp")
        try:
            _write_new(tmp, data)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return self._key(create=False)  # created concurrently
            except OSError as e:
                if e.errno not in _NO_HARD_LINKS:
                    raise
                # A file system without hard links (vfat on a USB stick kept in a safe):
                # create the file itself, exclusively; only this way can it be partial.
                try:
                    _write_new(self.path, data)
                except FileExistsError:
                    return self._key(create=False)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)
        return key

    def wrap(self, key: bytes, context: dict[str, str]) -> Wrapped:
        return Wrapped(Sealer(self._key(create=self.create)).seal(key, _aad(context)))

    def unwrap(self, wrapped: Wrapped, context: dict[str, str]) -> bytes:
        try:
            return Sealer(self._key(create=False)).open(wrapped.ciphertext, _aad(context))
        except AuthenticationFailed:
            raise KeyProviderError(
                self.uri,
                "wrong key or context (the slot was not wrapped by this key file for this repository)",
            ) from None

    def rewrap(self, wrapped: Wrapped, context: dict[str, str]) -> Wrapped:
        # A key file has no versions; rewrapping refreshes the nonce only.
        return self.wrap(self.unwrap(wrapped, context), context)
