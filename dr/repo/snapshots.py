"""Snapshot documents (FORMAT.md §8): model, save, load, list, resolve ``latest``.

A snapshot is the unit users list, restore, verify and forget. ``kind:
volume`` is a directory tree (one PVC, or ``dr mover backup``); ``kind:
backup`` is an application backup whose details (scope, counts, volumes,
results) the orchestration layer keeps in ``app``. What the repository itself
must understand — trees, streams and referenced snapshots — is typed here so
that check and prune can find every blob a snapshot needs.

The models are plain dataclasses with a hand-written decoder, not pydantic:
every mover Job loads a snapshot, and building these models cost ~30 ms of
CPU at each start (and, with dr.yaml now read without pydantic too, a mover
does not import pydantic at all).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

from dr import __version__
from dr.errors import DrError, InvalidInput, PartialFailure
from dr.repo.format import FormatError, is_hex_id
from dr.repo.repository import Repository, hostname, now_utc
from dr.repo.tree import INT_FIELDS
from dr.storage.base import ObjectNotFound

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
KINDS = ("volume", "backup")

T = TypeVar("T")


class SnapshotNotFound(InvalidInput):
    """No snapshot with the id asked for, or none at all to take as ``latest`` (exit 2): the
    commands that looked in a repository named by configuration add where they looked."""


@dataclass
class Stream:
    """A chunked byte stream: resource JSON lines or a hook dump."""

    blobs: list[str] = field(default_factory=list)
    size: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {"blobs": list(self.blobs), "size": self.size}


@dataclass
class VolumeStats:
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    new_bytes: int = 0
    new_blobs: int = 0
    duration_seconds: float = 0.0

    def to_doc(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "dirs": self.dirs,
            "bytes": self.bytes,
            "newBytes": self.new_bytes,
            "newBlobs": self.new_blobs,
            "durationSeconds": self.duration_seconds,
        }


@dataclass
class Snapshot:
    kind: Literal["volume", "backup"]
    version: int = SNAPSHOT_VERSION
    id: str = ""
    time: datetime = field(default_factory=now_utc)
    hostname: str = field(default_factory=hostname)
    tags: dict[str, str] = field(default_factory=dict)
    program: str = f"dr {__version__}"
    # volume snapshots
    paths: list[str] = field(default_factory=list)
    tree: str | None = None
    parent: str | None = None
    stats: VolumeStats | None = None
    # the backed-up directory's own mode, uid, gid and mtime (ns): a volume's root
    # is the mount point, which a non-root application must find as it left it
    root: dict[str, int] | None = None
    # application backups
    name: str | None = None
    policy: str | None = None
    namespaces: list[str] = field(default_factory=list)
    phase: str | None = None
    streams: dict[str, Stream] = field(default_factory=dict)
    refs: list[str] = field(default_factory=list)  # volume snapshots this backup needs
    app: dict[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def to_doc(self) -> dict[str, Any]:
        """The stored JSON document: camelCase keys, no null fields."""
        doc: dict[str, Any] = {
            "version": self.version,
            "id": self.id,
            "kind": self.kind,
            "time": _format_time(self.time),
            "hostname": self.hostname,
            "tags": dict(self.tags),
            "program": self.program,
            "paths": list(self.paths),
            "tree": self.tree,
            "parent": self.parent,
            "stats": self.stats.to_doc() if self.stats else None,
            "root": dict(self.root) if self.root is not None else None,
            "name": self.name,
            "policy": self.policy,
            "namespaces": list(self.namespaces),
            "phase": self.phase,
            "streams": {k: s.to_doc() for k, s in self.streams.items()},
            "refs": list(self.refs),
            "app": self.app,
        }
        return {k: v for k, v in doc.items() if v is not None}

    def with_id(self, name: str) -> Snapshot:
        return dataclasses.replace(self, id=name)


def _format_time(t: datetime) -> str:
    # RFC 3339 in UTC with a "Z", as FORMAT.md §8 says (and as earlier dr wrote it).
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- decoding -----------------------------------------------------------------------------


class MalformedSnapshot(FormatError):
    """A known field of a snapshot document has the wrong type; the message names it."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise MalformedSnapshot(where, "expected a string")
    return v


def _opt_str(v: Any, where: str) -> str | None:
    return None if v is None else _str(v, where)


def _hex_id(v: Any, where: str) -> str:
    """A blob or snapshot id: 64 lowercase hex digits (check, prune and restore turn
    it into bytes, and a snapshot id into an object name)."""
    if not is_hex_id(v):
        raise MalformedSnapshot(where, "expected an id of 64 hex digits")
    return v


def _opt_hex_id(v: Any, where: str) -> str | None:
    return None if v is None else _hex_id(v, where)


def _int(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise MalformedSnapshot(where, "expected an integer")
    return v


def _float(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise MalformedSnapshot(where, "expected a number")
    return float(v)


def _list(v: Any, where: str, item: Callable[[Any, str], T]) -> list[T]:
    if not isinstance(v, list):
        raise MalformedSnapshot(where, "expected a list")
    return [item(x, f"{where}[{i}]") for i, x in enumerate(v)]


def _map(v: Any, where: str, item: Callable[[Any, str], T]) -> dict[str, T]:
    return {_str(k, where): item(x, f"{where}.{k}") for k, x in _any_map(v, where).items()}


def _any_map(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise MalformedSnapshot(where, "expected a mapping")
    return cast(dict[str, Any], v)


def _time(v: Any, where: str) -> datetime:
    try:
        t = datetime.fromisoformat(_str(v, where))
    except ValueError:
        raise MalformedSnapshot(where, "expected an RFC 3339 time") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _stream(v: Any, where: str) -> Stream:
    d = _any_map(v, where)
    return Stream(
        blobs=_list(d.get("blobs", []), f"{where}.blobs", _hex_id),
        size=_int(d.get("size", 0), f"{where}.size"),
    )


def _stats(v: Any, where: str) -> VolumeStats:
    d = _any_map(v, where)
    return VolumeStats(
        files=_int(d.get("files", 0), f"{where}.files"),
        dirs=_int(d.get("dirs", 0), f"{where}.dirs"),
        bytes=_int(d.get("bytes", 0), f"{where}.bytes"),
        new_bytes=_int(d.get("newBytes", 0), f"{where}.newBytes"),
        new_blobs=_int(d.get("newBlobs", 0), f"{where}.newBlobs"),
        duration_seconds=_float(d.get("durationSeconds", 0.0), f"{where}.durationSeconds"),
    )


ROOT_KEYS = ("mode", "uid", "gid", "mtime")


def _root(v: Any, where: str) -> dict[str, int]:
    """The volume root's metadata, in the ranges of a tree node's fields (FORMAT.md §6):
    a full restore hands them to chown, chmod and utime, which would raise on a
    uid past 2^32 or leave the owner alone for -1."""
    d = _any_map(v, where)
    out: dict[str, int] = {}
    for k in ROOT_KEYS:
        if k in d:
            out[k] = _int(d[k], f"{where}.{k}")
            lo, hi = INT_FIELDS[k]
            if not lo <= out[k] <= hi:
                show = oct if k == "mode" else str
                raise MalformedSnapshot(
                    f"{where}.{k}", f"out of range: {show(out[k])[:40]} (allowed {show(lo)} to {show(hi)})"
                )
    return out


def decode_snapshot(doc: Any) -> Snapshot:
    """A snapshot from its stored document. Unknown fields are ignored (FORMAT.md §11:
    additive changes keep the version); a known field of the wrong type is an error."""
    d = _any_map(doc, "document")
    kind = d.get("kind")
    if kind not in KINDS:
        raise MalformedSnapshot("kind", f"expected one of {', '.join(KINDS)}")
    stats = d.get("stats")
    return Snapshot(
        version=_int(d.get("version", SNAPSHOT_VERSION), "version"),
        id=_str(d.get("id", ""), "id"),
        kind=kind,
        time=_time(d["time"], "time") if "time" in d else now_utc(),
        hostname=_str(d.get("hostname", ""), "hostname"),
        tags=_map(d.get("tags", {}), "tags", _str),
        program=_str(d.get("program", ""), "program"),
        paths=_list(d.get("paths", []), "paths", _str),
        tree=_opt_hex_id(d.get("tree"), "tree"),
        parent=_opt_hex_id(d.get("parent"), "parent"),
        stats=None if stats is None else _stats(stats, "stats"),
        root=None if d.get("root") is None else _root(d["root"], "root"),
        name=_opt_str(d.get("name"), "name"),
        policy=_opt_str(d.get("policy"), "policy"),
        namespaces=_list(d.get("namespaces", []), "namespaces", _str),
        phase=_opt_str(d.get("phase"), "phase"),
        streams=_map(d.get("streams", {}), "streams", _stream),
        refs=_list(d.get("refs", []), "refs", _hex_id),
        app=_any_map(d.get("app", {}), "app"),
    )


def save_snapshot(repo: Repository, snap: Snapshot) -> Snapshot:
    """Write the snapshot object — the last write of a backup (FORMAT.md §8)."""
    import os

    name = os.urandom(32).hex()
    snap = snap.with_id(name)
    repo.save_object("snapshots", snap.to_doc(), name=name)
    return snap


def _parse(name: str, doc: dict[str, Any]) -> Snapshot:
    if doc.get("version") != SNAPSHOT_VERSION:
        raise FormatError(f"snapshots/{name}: unsupported snapshot version {doc.get('version')!r}")
    try:
        snap = decode_snapshot(doc)
    except MalformedSnapshot as e:
        raise FormatError(f"snapshots/{name}: malformed: {e.message}") from None
    if snap.id != name:
        raise FormatError(f"snapshots/{name}: id does not match the object name")
    return snap


def load_snapshot(repo: Repository, name: str) -> Snapshot:
    return _parse(name, repo.load_object("snapshots", name))


def list_snapshots(repo: Repository, kind: str | None = None) -> list[Snapshot]:
    """All snapshots, oldest first."""
    snaps = [_parse(n, d) for n, d in repo.load_objects("snapshots")]
    if kind:
        snaps = [s for s in snaps if s.kind == kind]
    return sorted(snaps, key=lambda s: (s.time, s.id))


def readable_snapshots(
    repo: Repository, kind: str | None = None, *, unreadable: type[DrError] = FormatError, prefix: str = ""
) -> tuple[list[Snapshot], dict[str, str]]:
    """The snapshots that can be read (of ``kind``), oldest first, and ``{name: problem}``
    for those that cannot: one damaged snapshot must not hide the others from a
    listing or a restore (``dr repo check`` names it; prune and forget, which must
    see every snapshot, use ``list_snapshots`` and refuse). ``unreadable``: the
    errors that count a snapshot as unreadable (``check`` counts any ``DrError``).
    ``prefix``: only the snapshots whose id starts with it are read."""
    snaps, bad = repo.readable_objects("snapshots", _parse, unreadable=unreadable, prefix=prefix)
    if kind is not None:
        snaps = [s for s in snaps if s.kind == kind]
    return sorted(snaps, key=lambda s: (s.time, s.id)), bad


def find_snapshot(repo: Repository, ref: str, *, kind: str, what: str) -> Snapshot:
    """Like ``resolve`` over the snapshots of ``kind``, but a full id is loaded by
    itself: a stat and a read (``load_object`` checks the size before reading),
    however many snapshots the repository holds (a mover Job gets the full id of
    its parent); an id prefix loads only the snapshots whose id starts with it (one
    of 3,650 from a listing, not all of them: ``dr backups describe 1a2b3c4d`` and
    ``dr restore 1a2b3c4d`` read every snapshot before). Only ``latest`` reads them all."""
    if is_hex_id(ref.lower()):
        try:
            snap = load_snapshot(repo, ref.lower())
        except ObjectNotFound:
            raise SnapshotNotFound(f"no {what} with id {ref!r}") from None
        if snap.kind != kind:
            raise InvalidInput(f"{snap.short_id} is a {snap.kind} snapshot, not a {what}")
        return snap
    if ref != "latest" and len(ref) < 4:
        return resolve([], ref, what=what)  # too short: refused before anything is read
    snaps, bad = readable_snapshots(repo, kind, prefix="" if ref == "latest" else ref.lower())
    if ref != "latest" and not any(s.id.startswith(ref.lower()) for s in snaps):
        named = [n for n in bad if len(ref) >= 4 and n.startswith(ref.lower())]
        if named:
            raise DrError(f"{what} {ref}: cannot be read", details=[bad[n] for n in named])
    pass_over(bad)
    return resolve(snaps, ref, what=what)


def partial_if_unreadable(unreadable: dict[str, str]) -> None:
    """A listing that had to leave damaged snapshots out (``readable_snapshots``' problems)
    is partial (exit 3), each named."""
    if unreadable:
        raise PartialFailure(
            f"{len(unreadable)} snapshot(s) cannot be read (`dr repo check` checks the rest)",
            details=list(unreadable.values()),
        )


def pass_over(unreadable: dict[str, str]) -> None:
    """As restic does: an unreadable snapshot (``readable_snapshots``' problems) is passed
    over, out loud. `latest` may then be an older one; the warning says why."""
    for problem in unreadable.values():
        log.warning("%s; passed over (`dr repo check` names what is damaged)", problem)


def lacks_volume_data(snap: Snapshot) -> bool:
    """A backup that holds PersistentVolumeClaims but none of their data (``dr backup
    --no-data``, or a policy whose volumes mode is ``none``): restored, its claims come
    back empty."""
    counts = snap.app.get("counts") or {}
    return bool(counts.get("persistentvolumeclaims")) and not snap.app.get("volumes")


def latest_to_restore(snaps: Iterable[Snapshot], *, what: str = "backup", data: bool = True) -> Snapshot:
    """``latest`` for a restore, as Velero's ``restore --from-schedule``: the newest
    ``Completed`` backup; with none, the newest ``PartiallyFailed`` one, with a warning
    naming it (what could be read is still a backup, and better than none in an
    incident). Never a ``Failed`` or unfinished one, nor one without a phase: ``dr
    backup`` writes neither, so such a snapshot comes from a writer that did not
    finish as dr does; its id still restores it.

    With ``data`` (a restore of the volumes' data too, and drills), one that lacks its
    volumes' data (``lacks_volume_data``: an ad-hoc ``dr backup --no-data`` before a
    change) is passed over for the newest that has it, with a warning: restored, its
    claims would come back empty. When none has it, the newest is taken as before."""
    items = list(snaps)
    if not items:
        raise SnapshotNotFound(f"no {what} found in the repository")
    completed = [s for s in items if s.phase == "Completed"]
    if completed:
        return _with_data(completed, what) if data else max(completed, key=_newest)
    partial = [s for s in items if s.phase == "PartiallyFailed"]
    if partial:
        snap = _with_data(partial, what) if data else max(partial, key=_newest)
        log.warning(
            "no Completed %s; restoring the newest PartiallyFailed one, %s of %s "
            "(`dr backups describe %s` lists what failed)",
            what, snap.short_id, snap.time.isoformat(), snap.short_id,
        )  # fmt: skip
        return snap
    newest = max(items, key=_newest)
    raise InvalidInput(
        f"no {what} to restore as 'latest': none is Completed or PartiallyFailed "
        f"(the newest, {newest.short_id}, is {newest.phase or 'without a phase'}); give its id to restore it anyway"
    )


def _newest(s: Snapshot) -> tuple[datetime, str]:
    return s.time, s.id


def newest_with_data(snaps: Iterable[Snapshot]) -> Snapshot:
    """The newest of ``snaps`` (not empty), or, when it lacks its volumes' data
    (``lacks_volume_data``), the newest that has it, if any."""
    items = list(snaps)
    with_data = [s for s in items if not lacks_volume_data(s)]
    return max(with_data or items, key=_newest)


def _with_data(snaps: list[Snapshot], what: str) -> Snapshot:
    """``newest_with_data``, warned when it is not the newest."""
    snap = newest_with_data(snaps)
    newest = max(snaps, key=_newest)
    if snap is newest:
        return snap
    log.warning(
        "the newest %s, %s of %s, holds no volume data (taken with --no-data): its claims would come back "
        "empty; restoring %s of %s, the newest with its volumes' data (give the other's id, or --no-data, "
        "to restore it)",
        what, newest.short_id, newest.time.isoformat(), snap.short_id, snap.time.isoformat(),
    )  # fmt: skip
    return snap


def resolve(snaps: Iterable[Snapshot], ref: str, *, what: str = "backup") -> Snapshot:
    """``latest``, a full id or a unique id prefix (at least 4 hex digits, in either case:
    an id copied from a tool that shows hex in upper case is the same id)."""
    items = list(snaps)
    if ref == "latest":
        if not items:
            raise SnapshotNotFound(f"no {what} found in the repository")
        return max(items, key=lambda s: (s.time, s.id))
    if len(ref) < 4:
        raise InvalidInput(f"{what} id {ref!r} is too short (give at least 4 characters, or 'latest')")
    matches = [s for s in items if s.id.startswith(ref.lower())]
    if not matches:
        raise SnapshotNotFound(f"no {what} with id {ref!r}")
    if len(matches) > 1:
        raise InvalidInput(f"{what} id {ref!r} is ambiguous ({len(matches)} matches)")
    return matches[0]
