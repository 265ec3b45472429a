"""The key-provider interface.

A provider wraps (encrypts) and unwraps the repository's master key with a key
it holds and never hands out: a Vault transit key, a KMS key, or a local key
file. The ``context`` binds a wrapped key to one repository — it goes into
the provider's associated data (Vault derivation/AAD, KMS EncryptionContext,
GCP KMS additional_authenticated_data, AES-GCM AAD locally) — so a slot copied
to another repository does not unwrap there.

Providers raise ``KeyProviderError`` with a short reason the user can act on
("Vault is sealed", "permission denied on transit/decrypt/dr", "KMS key
disabled", "wrong key", "cannot reach …"); never with key material or tokens
in the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dr.errors import DrError, ExitCode


class KeyProviderError(DrError):
    """Wrapping or unwrapping failed; ``reason`` is one line, safe to print."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason


class KeyProviderMisconfigured(KeyProviderError):
    """The provider's settings are missing or wrong (no address, no such CA file):
    exit 2 like other invalid configuration; opening a repository tries the next slot."""

    exit_code = ExitCode.INVALID


@dataclass(frozen=True)
class Wrapped:
    """A master key as one provider wrapped it."""

    ciphertext: bytes
    # The provider key version that wrapped it (Vault "v3", KMS key version), if known.
    key_version: str | None = None
    # Provider-specific, non-secret details kept in the slot (e.g. the KMS key ARN).
    meta: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class KeyProvider(Protocol):
    @property
    def uri(self) -> str:
        """The provider URI, without credentials (safe to log and store in a slot)."""
        ...

    def wrap(self, key: bytes, context: dict[str, str]) -> Wrapped:
        """Encrypt ``key`` with the provider's newest key version."""
        ...

    def unwrap(self, wrapped: Wrapped, context: dict[str, str]) -> bytes:
        """Decrypt; raises ``KeyProviderError`` with the reason on any failure."""
        ...

    def rewrap(self, wrapped: Wrapped, context: dict[str, str]) -> Wrapped:
        """Re-encrypt with the newest key version without exposing the key where the
        provider supports it (Vault rewrap, KMS ReEncrypt); else unwrap + wrap."""
        ...
