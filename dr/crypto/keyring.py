"""The master key and its key slots (FORMAT.md §3).

Owns: generating the master key, wrapping it into slots with key providers,
reading slots and unwrapping them in order while recording why each failed.
The master key lives only in a ``MasterKey`` object in memory; its ``repr``
never shows key material, and nothing here logs it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import blake3

from dr.crypto.aead import Sealer
from dr.crypto.providers.base import KeyProvider, KeyProviderError, Wrapped
from dr.errors import DrError

log = logging.getLogger(__name__)

MASTER_KEY_SIZE = 64
SLOT_FORMAT = 1


class MasterKey:
    """K_enc (AES-256-GCM) and K_id (BLAKE3 keyed hash)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) != MASTER_KEY_SIZE:
            raise ValueError("master key must be 64 bytes")
        self._raw = raw

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(MASTER_KEY_SIZE))

    @property
    def raw(self) -> bytes:
        return self._raw

    def sealer(self) -> Sealer:
        return Sealer(self._raw[:32])

    @property
    def id_key(self) -> bytes:
        return self._raw[32:]

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self._raw[32:]).digest()

    def chunker_seed(self) -> int:
        d = blake3.blake3(b"dr chunker seed", key=self._raw[32:]).digest()
        return int.from_bytes(d[:8], "little") & ((1 << 63) - 1)

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"


def repository_context(repo_id: str) -> dict[str, str]:
    return {"dr-repository": repo_id}


@dataclass
class KeySlot:
    id: str
    repository: str
    provider: str
    wrapped: Wrapped
    created: datetime
    format: int = SLOT_FORMAT

    @property
    def object_name(self) -> str:
        return f"keys/{self.id}"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": self.format,
                "repository": self.repository,
                "provider": self.provider,
                "keyVersion": self.wrapped.key_version,
                "meta": self.wrapped.meta,
                "created": self.created.isoformat().replace("+00:00", "Z"),
                "wrapped": base64.b64encode(self.wrapped.ciphertext).decode(),
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, slot_id: str, raw: bytes) -> KeySlot:
        try:
            d = json.loads(raw)
            if d.get("format") != SLOT_FORMAT:
                raise DrError(f"key slot {slot_id}: unsupported slot format {d.get('format')!r}")
            return cls(
                id=slot_id,
                repository=str(d["repository"]),
                provider=str(d["provider"]),
                wrapped=Wrapped(
                    base64.b64decode(d["wrapped"]), d.get("keyVersion"), dict(d.get("meta") or {})
                ),
                created=datetime.fromisoformat(str(d["created"]).replace("Z", "+00:00")),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise DrError(f"key slot {slot_id}: malformed ({type(e).__name__})") from None


def new_slot(master: MasterKey, repo_id: str, provider: KeyProvider) -> KeySlot:
    wrapped = provider.wrap(master.raw, repository_context(repo_id))
    return KeySlot(os.urandom(16).hex(), repo_id, provider.uri, wrapped, datetime.now(UTC))


@dataclass
class UnlockAttempt:
    slot: str
    provider: str
    reason: str


@dataclass
class UnlockResult:
    master: MasterKey
    slot: KeySlot
    attempts: list[UnlockAttempt] = field(default_factory=list)


def unlock(
    slots: list[KeySlot],
    providers: Callable[[str], KeyProvider | None],
    check: Callable[[MasterKey], bool],
) -> UnlockResult:
    """Try ``slots`` in order; ``providers(uri)`` gives the provider for a slot (None: skip).

    ``check`` verifies a candidate key (it decrypts the repository config). On
    failure raise ``DrError`` listing each provider tried and why it failed.
    """
    attempts: list[UnlockAttempt] = []
    for slot in slots:
        try:
            provider = providers(slot.provider)
        except DrError as e:
            attempts.append(UnlockAttempt(slot.id, slot.provider, e.message))
            continue
        if provider is None:
            attempts.append(UnlockAttempt(slot.id, slot.provider, "not configured here (skipped)"))
            continue
        try:
            raw = provider.unwrap(slot.wrapped, repository_context(slot.repository))
        except KeyProviderError as e:
            attempts.append(UnlockAttempt(slot.id, slot.provider, e.reason))
            continue
        if len(raw) != MASTER_KEY_SIZE:
            attempts.append(UnlockAttempt(slot.id, slot.provider, "unwrapped key has the wrong size"))
            continue
        master = MasterKey(raw)
        if not check(master):
            attempts.append(
                UnlockAttempt(slot.id, slot.provider, "wrong key: the repository config does not decrypt")
            )
            continue
        log.debug("unlocked with key slot %s (%s)", slot.id, slot.provider)
        return UnlockResult(master, slot, attempts)
    if not slots:
        raise DrError("cannot open repository: it has no key slots (keys/ is empty)")
    raise DrError(
        f"cannot open repository: none of {len(slots)} key slot(s) could be unwrapped",
        details=[f"slot {a.slot[:8]} {a.provider}: {a.reason}" for a in attempts],
    )
