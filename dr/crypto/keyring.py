"""The master key and its key slots (FORMAT.md §3).

Owns: generating the master key, wrapping it into slots with key providers,
reading slots and unwrapping them in order while recording why each failed.
The master key lives only in a ``MasterKey`` object in memory; its ``repr``
never shows key material, nothing here logs it, and once one exists the
process no longer dumps core (``no_core_dumps``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import blake3

from dr.crypto.aead import Sealer
from dr.crypto.providers.base import KeyProvider, KeyProviderError, KeyProviderMisconfigured, Wrapped
from dr.errors import DrError, InvalidInput
from dr.printable import printable

log = logging.getLogger(__name__)

MASTER_KEY_SIZE = 64
SLOT_FORMAT = 1
# Characters of a provider's failure reason kept in an unlock attempt's line.
REASON_LIMIT = 500


_core_dumps_off = False


def no_core_dumps() -> None:
    """Keep this process's memory, which now holds a master key, out of core dumps.

    Core dumps are on in many places (``ulimit -c unlimited``, systemd-coredump,
    apport): a crash would write the unwrapped key to disk. Not dumpable
    (``PR_SET_DUMPABLE`` 0) stops every dump, to a file or a pipe; it also keeps
    other processes of the same user from attaching a debugger, and is reset by
    exec, so child processes are not affected. The core size limit 0 is the
    fallback where prctl is missing (and covers file dumps). Best effort."""
    global _core_dumps_off
    if _core_dumps_off:
        return
    _core_dumps_off = True
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ImportError, OSError, ValueError) as e:
        log.debug("cannot set the core size limit to 0: %s", e)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_dumpable = 4
            if ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as e:
            log.debug("cannot make the process non-dumpable: %s", e)


class MasterKey:
    """K_enc (AES-256-GCM) and K_id (BLAKE3 keyed hash)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) != MASTER_KEY_SIZE:
            raise ValueError("master key must be 64 bytes")
        no_core_dumps()
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
        """Parse one slot object; anything wrong with it is a ``DrError`` naming the slot.

        Slots are the one part of a repository that is not authenticated, so this
        must turn any input at all into either a slot or that error: the caller
        records it and goes on with the next slot (FORMAT.md §3.1)."""
        try:
            return cls._parse(slot_id, raw)
        except DrError:
            raise
        except Exception as e:  # RecursionError from deep nesting, MemoryError, …: all just bad input
            raise DrError(f"key slot {slot_id}: malformed ({type(e).__name__})") from None

    @classmethod
    def _parse(cls, slot_id: str, raw: bytes) -> KeySlot:
        def bad(reason: str) -> DrError:
            return DrError(f"key slot {slot_id}: malformed ({reason})")

        try:
            d = json.loads(raw)
        except ValueError:
            raise bad("not JSON") from None
        if not isinstance(d, dict):
            raise bad("not a JSON object")
        if d.get("format") != SLOT_FORMAT:
            fmt = d.get("format")
            given = repr(fmt) if isinstance(fmt, int | str | None) else type(fmt).__name__
            raise DrError(f"key slot {slot_id}: unsupported slot format {shown(given, 40)}")

        def text(name: str) -> str:
            v = d.get(name)
            if not isinstance(v, str):
                raise bad(f"{name!r} is missing or not a string")
            return v

        repository, provider = text("repository"), text("provider")
        try:
            ciphertext = base64.b64decode(text("wrapped"), validate=True)
        except ValueError:
            raise bad("'wrapped' is not base64") from None
        version = d.get("keyVersion")
        if version is not None and not isinstance(version, str):
            raise bad("'keyVersion' is not a string")
        meta = d.get("meta") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise bad("'meta' is not a map of strings")
        try:
            created = datetime.fromisoformat(text("created").replace("Z", "+00:00"))
        except ValueError:
            raise bad("'created' is not an RFC 3339 time") from None
        # Slots are sorted by ``created``: an aware and a naive datetime do not compare.
        # A time without an offset is taken as UTC, as dr writes them.
        created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
        return cls(slot_id, repository, provider, Wrapped(ciphertext, version, dict(meta)), created)


@dataclass
class UnreadableSlot:
    """A ``keys/`` object that is not a usable slot; listed so that it can be removed."""

    id: str
    reason: str

    @property
    def object_name(self) -> str:
        return f"keys/{self.id}"


def shown(text: str, limit: int = 200) -> str:
    """``text`` from a key slot, fit for one line of output: slots are unauthenticated,
    so a provider URI may hold control characters (a forged newline, terminal escapes) or
    bidi controls; escaped as ``dr mover ls`` escapes a name (``dr.printable``), and
    strictly: also zero-width and other invisible characters, or a planted slot's URI
    could look exactly like the real one's in ``dr key list``."""
    out = printable(text, strict=True)
    return out if len(out) <= limit else out[:limit] + "…"


def new_slot(master: MasterKey, repo_id: str, provider: KeyProvider) -> KeySlot:
    wrapped = provider.wrap(master.raw, repository_context(repo_id))
    return KeySlot(os.urandom(16).hex(), repo_id, provider.uri, wrapped, datetime.now(UTC))


@dataclass
class UnlockAttempt:
    slot: str
    provider: str
    reason: str
    # The provider's settings are missing or wrong (KeyProviderMisconfigured).
    misconfigured: bool = False


@dataclass
class UnlockResult:
    master: MasterKey
    slot: KeySlot
    attempts: list[UnlockAttempt] = field(default_factory=list)


def unlock(
    slots: list[KeySlot],
    providers: Callable[[str], KeyProvider | None],
    check: Callable[[MasterKey], bool],
    *,
    unreadable: Sequence[UnreadableSlot] = (),
    preferred: Callable[[str], bool] | None = None,
) -> UnlockResult:
    """Try ``slots`` in order; ``providers(uri)`` gives the provider for a slot (None: skip).

    ``check`` verifies a candidate key (it decrypts the repository config). On
    failure raise ``DrError`` listing each provider tried and why it failed.
    ``unreadable`` slots count as failed attempts. With ``preferred``, the slots
    whose provider URI it accepts (the providers the user configured) are tried
    first and the others only if none of those opens the repository (FORMAT.md
    §3.1): a slot's URI comes from unauthenticated storage, and a planted slot
    must not make every open reach for whatever it names.
    """
    attempts = [UnlockAttempt(u.id, "(unreadable)", shown(u.reason)) for u in unreadable]
    if preferred is not None:
        slots = sorted(slots, key=lambda s: not preferred(s.provider))  # stable: order kept within each
    for slot in slots:
        got = _unwrap(slot, providers)
        if isinstance(got, UnlockAttempt):
            attempts.append(got)
            continue
        if not check(got):
            attempts.append(
                UnlockAttempt(
                    slot.id, shown(slot.provider), "wrong key: the repository config does not decrypt"
                )
            )
            continue
        log.debug("unlocked with key slot %s (%s)", slot.id, shown(slot.provider))
        return UnlockResult(got, slot, attempts)
    if not attempts:
        raise DrError("cannot open repository: it has no key slots (keys/ is empty)")
    message = f"cannot open repository: none of {len(attempts)} key slot(s) could be unwrapped"
    details = [f"slot {shown(a.slot)[:8]} {a.provider}: {a.reason}" for a in attempts]
    # Every slot failed for a mistake in the providers' settings (no Vault address, no
    # AWS region): that is invalid configuration, exit 2, not a failure of the providers.
    if all(a.misconfigured for a in attempts):
        raise InvalidInput(message, problems=details)
    raise DrError(message, details=details)


def unwrap_slot(slot: KeySlot, providers: Callable[[str], KeyProvider | None]) -> MasterKey | str:
    """The key ``slot`` wraps, or why it could not be unwrapped (one line, safe to print)."""
    got = _unwrap(slot, providers)
    return got.reason if isinstance(got, UnlockAttempt) else got


def _unwrap(slot: KeySlot, providers: Callable[[str], KeyProvider | None]) -> MasterKey | UnlockAttempt:
    def failed(reason: str, misconfigured: bool = False) -> UnlockAttempt:
        return UnlockAttempt(slot.id, shown(slot.provider), reason, misconfigured)

    # Any exception: the URI and the wrapped key are whatever storage holds, and a
    # provider that fails on them in a way nobody foresaw must not stop the next slot.
    try:
        provider = providers(slot.provider)
    except DrError as e:
        return failed(shown(e.message))
    except Exception as e:
        return failed(f"cannot use this provider: {_failure(e)}")
    if provider is None:
        return failed("not configured here (skipped)")
    try:
        raw = bytes(provider.unwrap(slot.wrapped, repository_context(slot.repository)))
    except KeyProviderError as e:
        # Longer than other shown text: a provider's reason ends with what to do about it
        # (the min_decryption_version advice is ~260 characters) and must not be cut there.
        return failed(shown(e.reason, REASON_LIMIT), isinstance(e, KeyProviderMisconfigured))
    except DrError as e:
        return failed(shown(e.message))
    except Exception as e:
        return failed(f"unwrap failed: {_failure(e)}")
    if len(raw) != MASTER_KEY_SIZE:
        return failed("unwrapped key has the wrong size")
    return MasterKey(raw)


def _failure(e: Exception) -> str:
    """An unexpected exception as one short line (the type says most; the text is capped)."""
    text = shown(str(e), 120)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
