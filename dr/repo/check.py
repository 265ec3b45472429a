"""Verify a repository or some snapshots (``dr repo check``, ``dr verify``).

Quick mode checks structure: every snapshot decrypts, every tree loads, every
referenced blob is in the index, every indexed pack exists with exactly the
size its index entries give. ``read_data`` (a fraction in (0, 1]) also downloads that share of the
packs involved, checks each pack's content hash against its name, opens its
header and every blob (AEAD + keyed hash). Each problem names the object.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import blake3

from dr.errors import DrError
from dr.repo import reachable
from dr.repo.format import FormatError, PackEntry, decode_pack_header, pack_name, pack_size
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot, load_snapshot, readable_snapshots
from dr.storage.base import ObjectNotFound


@dataclass
class CheckResult:
    snapshots: int = 0
    trees: int = 0
    blobs: int = 0
    packs: int = 0
    packs_read: int = 0
    bytes_read: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "snapshots": self.snapshots,
            "trees": self.trees,
            "blobs": self.blobs,
            "packs": self.packs,
            "packsRead": self.packs_read,
            "bytesRead": self.bytes_read,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def load_snapshots(repo: Repository, prefix: str = "") -> tuple[list[Snapshot], dict[str, str]]:
    """The readable snapshots (whose id starts with ``prefix``), oldest first, and
    ``{name: problem}`` for the unreadable.

    One bad snapshot must not hide the others (``check``, ``verify``). A snapshot
    deleted between the listing and its reading (a concurrent ``forget``) is gone,
    not an error."""
    snaps, bad = readable_snapshots(repo, unreadable=DrError, prefix=prefix)
    return snaps, {name: _naming(f"snapshots/{name}", problem) for name, problem in bad.items()}


def load_by_id(repo: Repository, ids: Iterable[str]) -> tuple[list[Snapshot], dict[str, str]]:
    """The snapshots of the full ``ids`` that can be read, and ``{id: problem}`` for those
    that cannot (as ``load_snapshots``); one that does not exist is in neither. A read
    each, no listing: a backup's volume snapshots, without reading all the others."""
    found: list[Snapshot] = []
    bad: dict[str, str] = {}
    for name in ids:
        try:
            found.append(load_snapshot(repo, name))
        except ObjectNotFound:
            continue
        except DrError as e:
            bad[name] = _naming(f"snapshots/{name}", e.message)
    return found, bad


def _load_snapshots(repo: Repository, result: CheckResult) -> list[Snapshot]:
    snaps, bad = load_snapshots(repo)
    result.errors.extend(bad.values())
    return snaps


def _naming(name: str, message: str) -> str:
    return message if name in message else f"{name}: {message}"


def read_pack(repo: Repository, pack_id: bytes) -> tuple[int, list[str]]:
    """Download and fully verify one pack; -> (bytes read, problems)."""
    name = pack_name(pack_id)
    try:
        data = repo.store.get(name)
    except ObjectNotFound:
        return 0, [f"{name}: missing"]
    except DrError as e:
        return 0, [f"{name}: cannot read: {e.message}"]
    problems = []
    if blake3.blake3(data).digest() != pack_id:
        problems.append(f"{name}: content does not match its name (corrupted or truncated)")
    try:
        entries = decode_pack_header(repo.codec, data, len(data), name)
    except FormatError as e:
        return len(data), [*problems, e.message]
    mv = memoryview(data)
    for ent in entries:
        try:
            repo.open_blob(
                ent, mv[ent.offset : ent.offset + ent.length], what=f"{name} blob {ent.id.hex()[:16]}"
            )
        except FormatError as err:
            problems.append(err.message)
    indexed = repo.index.packs.get(pack_id)
    if indexed is not None and {x.id for x in indexed} - {x.id for x in entries}:
        problems.append(f"{name}: the index lists blobs the pack does not contain")
    return len(data), problems


def check(
    repo: Repository,
    *,
    snapshots: list[Snapshot] | None = None,
    read_data: float | None = None,
    progress: Callable[[int], None] | None = None,
    seed: int | None = None,
) -> CheckResult:
    """Check the whole repository (``snapshots=None``) or only what ``snapshots`` need."""
    result = CheckResult()
    whole = snapshots is None
    # One damaged index file must not stop the check: each is reported, the rest loaded
    # (the blobs only it listed then show up as not in the index).
    index = repo.reload_index(on_error=lambda name, e: result.errors.append(_naming(name, e.message)))
    snaps = _load_snapshots(repo, result) if whole else list(snapshots or [])
    if whole:
        # Backups that reference volume snapshots which are gone.
        ids = {s.id for s in snaps}
        for s in snaps:
            for ref in s.refs:
                if ref not in ids:
                    result.errors.append(
                        f"snapshot {s.short_id}: needs volume snapshot {ref[:8]}, which is missing"
                    )
    result.snapshots = len(snaps)
    reach = reachable.collect(repo, snaps)
    result.errors.extend(reach.errors)
    result.trees, result.blobs = len(reach.trees), len(reach.blobs)

    # Packs: the ones these snapshots need (or all indexed packs).
    if whole:
        packs = set(index.packs)
    else:
        packs = {loc.pack for b in reach.blobs if (loc := index.get(b)) is not None}
    result.packs = len(packs)
    stored = {o.name: o.size for o in repo.store.list("data/")}
    for pack_id in sorted(packs):
        name = pack_name(pack_id)
        size = stored.get(name)
        entries: Sequence[PackEntry] = index.packs.get(pack_id, [])
        if size is None:
            result.errors.append(f"{name}: missing (needed by the index)")
        elif entries and size != (expected := pack_size(entries)):
            # The index lists every blob of a pack, so its size follows (FORMAT.md §5.3).
            what = "truncated" if size < expected else "wrong size"
            result.errors.append(f"{name}: {what} ({size} bytes, expected {expected})")
    if whole:
        indexed_names = {pack_name(p) for p in index.packs}
        unindexed = [n for n in stored if n not in indexed_names]
        if unindexed:
            result.warnings.append(
                f"{len(unindexed)} pack(s) are not in any index (left by an interrupted backup; "
                "`dr prune` removes them)"
            )

    if read_data:
        chosen = sorted(p for p in packs if pack_name(p) in stored)
        if read_data < 1.0:
            rng = random.Random(seed)
            k = max(1, round(len(chosen) * read_data)) if chosen else 0
            chosen = sorted(rng.sample(chosen, k))
        with ThreadPoolExecutor(max_workers=4) as pool:
            for nbytes, problems in pool.map(lambda p: read_pack(repo, p), chosen):
                result.packs_read += 1
                result.bytes_read += nbytes
                result.errors.extend(problems)
                if progress:
                    progress(nbytes)
    return result
