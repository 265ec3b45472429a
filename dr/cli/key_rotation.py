"""``dr key rotate``: each key's slot rewrapped once, and the copies an earlier rotation left removed.

Rotating a slot writes a new one, then deletes the old one. Where that delete is
refused — S3 Object Lock keeps every ``keys/`` object for its retention, or the
credentials may not delete — the old slot stays beside the new one. Rotating every
slot then rewrapped those copies too and left theirs as well: 1, 2, 4, 8 slots on
successive runs (checked on SeaweedFS with Object Lock), each run reporting "none of
N key slot(s) could be rotated" although every one had been.

So the slots are grouped by the key they name (``same_key`` URI, and the repository
they say they belong to), and one slot per key is rotated: the newest, or if that one
fails the next older. The older slots of that key wrap the same master key with the
same provider: they are removed once the new slot has been unwrapped here to the
repository's key, and otherwise stay, listed as failed. A new slot that unwraps to
another master key (its slot was planted with that URI and another key) is a failure
of that slot, and the next older is rotated: a planted slot must neither push the
real ones out nor keep them from being rotated. A slot that Object Lock retention
keeps stays with a warning, exit 0 (as for snapshots ``forget`` leaves to it: the
rotation is done and a later one removes it); a delete that failed otherwise is a
failure (exit 3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dr.cli.slot_check import ANOTHER_KEY, unwrap_problem
from dr.crypto.keyring import REASON_LIMIT, KeySlot, shown
from dr.crypto.provider_identity import canonical
from dr.crypto.providers.base import KeyProvider, KeyProviderError
from dr.errors import DrError
from dr.repo.repository import Repository
from dr.storage.base import ObjectRetained, StorageError


@dataclass
class Rotation:
    rotated: list[dict[str, Any]] = field(default_factory=list)
    # Older slots of a rotated key, removed.
    removed: list[str] = field(default_factory=list)
    # Slots that Object Lock keeps: one line each (slot, provider, until when).
    retained: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def left(self, slot: KeySlot, why: StorageError, what: str) -> None:
        """``slot`` could not be deleted after ``what``."""
        line = _line(slot, f"{what}, but it could not be removed: {_reason(why)}")
        (self.retained if isinstance(why, ObjectRetained) else self.failed).append(line)


def key_groups(slots: list[KeySlot]) -> list[list[KeySlot]]:
    """``slots`` (oldest first) by the key they name and the repository they say they are of,
    each group newest first; the groups in the order of their oldest slot."""
    groups: dict[tuple[str, str], list[KeySlot]] = {}
    for s in slots:
        groups.setdefault((canonical(s.provider), s.repository), []).append(s)
    return [g[::-1] for g in groups.values()]


def rotate_keys(repo: Repository, lookup: Callable[[str], KeyProvider | None]) -> Rotation:
    """Rotate one slot of each key and remove the older ones (the caller holds the keys lock)."""
    result = Rotation()
    for group in key_groups(repo.slots()):
        for i, slot in enumerate(group):
            try:
                provider = lookup(slot.provider)
                if provider is None:
                    raise KeyProviderError(slot.provider, "not configured here")
                fresh, kept = repo.rotate_slot(slot, provider)
            except (KeyProviderError, DrError) as e:
                result.failed.append(_line(slot, _reason(e)))
                continue
            result.rotated.append({"old": slot.id, "new": fresh.id, "provider": fresh.provider,
                                   "fromVersion": slot.wrapped.key_version, "toVersion": fresh.wrapped.key_version})  # fmt: skip
            if kept is not None:
                result.left(slot, kept, f"rotated to {fresh.id[:8]}")
            older = group[i + 1 :]
            problem = unwrap_problem(fresh, provider, repo.master) if older else None
            if problem == ANOTHER_KEY:
                # The slot wraps another master key (planted): its rotation is none of this
                # repository's key, whose slot is among the older ones; those are tried next.
                result.failed.append(
                    _line(slot, f"rotated to {fresh.id[:8]}, which does not unwrap here ({problem})")
                )
                continue
            _remove_older(repo, fresh, problem, older, result)
            break
    return result


def _remove_older(
    repo: Repository, fresh: KeySlot, problem: str | None, older: list[KeySlot], result: Rotation
) -> None:
    for slot in older:
        what = f"an older slot of the key rotated to {fresh.id[:8]}"
        if problem is not None:
            result.failed.append(_line(slot, f"{what}, kept: the new slot does not unwrap here ({problem})"))
        elif (why := repo.drop_slot(slot)) is not None:
            result.left(slot, why, what)
        else:
            result.removed.append(slot.id)


def _line(slot: KeySlot, reason: str) -> str:
    # The slot's id and URI are unauthenticated text: shown escaped, on one line.
    return f"slot {shown(slot.id)[:8]} {shown(slot.provider)}: {reason}"


def _reason(e: DrError) -> str:
    return shown(getattr(e, "reason", e.message), REASON_LIMIT)
