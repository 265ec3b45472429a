"""``local:///path/to/keyfile``: wrap the master key with a key in a local file.

The file holds 32 random bytes, base64, one line. It is created with mode 0600
(``dr repo init``, ``dr key add``) and refused when group- or world-readable
(as ssh does), because whoever reads it can open the repository. Meant for
the embedded default and for offline break-glass copies kept in a safe.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from dr.crypto.aead import AuthenticationFailed, Sealer
from dr.crypto.providers.base import KeyProviderError, Wrapped
from dr.crypto.providers.context import context_bytes

KEY_SIZE = 32


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
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if not create:
                raise KeyProviderError(self.uri, "key file does not exist") from None
            return self._create()
        except PermissionError:
            raise KeyProviderError(self.uri, "permission denied reading the key file") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyProviderError(
                self.uri,
                f"key file is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {self.path}",
            )
        try:
            raw = base64.b64decode(self.path.read_text().strip(), validate=True)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise KeyProviderError(self.uri, "key file is not a base64-encoded key") from None
        except PermissionError:
            raise KeyProviderError(self.uri, "permission denied reading the key file") from None
        if len(raw) != KEY_SIZE:
            raise KeyProviderError(self.uri, f"key file holds {len(raw)} bytes, expected {KEY_SIZE}")
        return raw

    def _create(self) -> bytes:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = os.urandom(KEY_SIZE)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self._key(create=False)  # created concurrently
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(key).decode() + "\n")
        os.chmod(self.path, 0o600)  # in case of a umask that removed owner bits
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
