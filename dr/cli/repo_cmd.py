"""``dr repo init | info | check``, ``dr verify``, ``dr forget``, ``dr prune``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import click

from dr.cli.context import app
from dr.cli.output import Column, emit, output_option
from dr.cli.params import Duration, NonEmpty, read_data_option
from dr.cli.progress import byte_progress, read_progress
from dr.cli.repo_access import init_repository, open_repository, policy_repository, required_backup_policy
from dr.cli.slot_check import warn_if_not_unwrappable
from dr.errors import ExitCode, InvalidInput, VerificationFailed
from dr.repo import check as repo_check
from dr.repo.forget import Policy, apply_policy
from dr.repo.locks import Lock, is_stale, list_locks, remove_stale
from dr.repo.prune import prune as repo_prune
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot, list_snapshots, partial_if_unreadable, readable_snapshots, resolve

log = logging.getLogger(__name__)


@click.group("repo")
def repo_group() -> None:
    """Create and inspect the backup repository."""


@repo_group.command("init")
@click.option("--key", "key_uri", metavar="PROVIDER-URI", type=NonEmpty(), help="Key provider that wraps the new master key "
              "(default: the repository's first configured key, or a new local key file).")  # fmt: skip
@output_option()
def init(key_uri: str | None, output: str) -> None:
    """Create a new, empty repository with a fresh master key."""
    repo, provider = init_repository(app(), key_uri)
    slot = repo.slot
    if slot is not None:
        warn_if_not_unwrappable(slot, provider, repo.master)
    data = {"id": repo.id, "url": repo.store.url, "keySlot": slot.id if slot else None,
            "keyProvider": slot.provider if slot else None}  # fmt: skip
    if output == "table":
        click.echo(f"created repository {repo.id[:8]} at {repo.store.url}")
        click.echo(f"master key wrapped by {data['keyProvider']} (slot {str(data['keySlot'])[:8]})")
    else:
        emit(data, output)


@repo_group.command("info")
@output_option()
def info(output: str) -> None:
    """Show the repository's id, format version, key slots and size."""
    ctx = app()
    repo = open_repository(ctx)
    objects: dict[str, list[int]] = {}
    for o in repo.store.list(""):
        kind = o.name.split("/", 1)[0]
        objects.setdefault(kind, []).append(o.size)
    with read_progress(repo, quiet=ctx.quiet or output != "table"):
        snaps, unreadable = readable_snapshots(repo)
    data: dict[str, Any] = {
        "id": repo.id,
        "url": repo.store.url,
        "formatVersion": repo.config.version,
        "created": repo.config.created,
        "chunker": {
            "min": repo.config.chunker.min_size,
            "avg": repo.config.chunker.avg_size,
            "max": repo.config.chunker.max_size,
        },
        "packSize": repo.config.pack_size,
        "keySlots": [
            {"id": s.id, "provider": s.provider, "keyVersion": s.wrapped.key_version} for s in repo.slots()
        ],
        "snapshots": {
            "backup": sum(s.kind == "backup" for s in snaps),
            "volume": sum(s.kind == "volume" for s in snaps),
            "unreadable": len(unreadable),
        },
        "objects": {k: {"count": len(v), "bytes": sum(v)} for k, v in sorted(objects.items())},
        "totalBytes": sum(sum(v) for v in objects.values()),
        "locks": [lk.describe() for lk in list_locks(repo)],
    }
    if output != "table":
        emit(data, output)
        partial_if_unreadable(unreadable)
        return
    click.echo(f"repository {repo.id} at {repo.store.url}")
    click.echo(f"format version {repo.config.version}, created {repo.config.created}")
    click.echo(
        f"snapshots: {data['snapshots']['backup']} backups, {data['snapshots']['volume']} volume snapshots"
    )
    click.echo(f"size: {data['totalBytes']:,} bytes in " + ", ".join(
        f"{k} {v['count']}" for k, v in data["objects"].items()))  # fmt: skip
    for s in data["keySlots"]:
        click.echo(
            f"key slot {s['id'][:8]}: {s['provider']}"
            + (f" (version {s['keyVersion']})" if s["keyVersion"] else "")
        )
    for lk in data["locks"]:
        click.echo(f"lock: {lk}")
    partial_if_unreadable(unreadable)


@repo_group.command("unlock")
@click.option(
    "--all", "all_", is_flag=True, help="Remove every lock, not only stale ones (only when no dr runs)."
)
@output_option()
def unlock(all_: bool, output: str) -> None:
    """Remove stale locks: expired, or left on this host by a process that is gone."""
    removed = remove_stale(open_repository(app()), everything=all_)
    if output != "table":
        emit({"removed": [lk.describe() for lk in removed]}, output)
        return
    for lk in removed:
        click.echo(f"removed {lk.describe()}")
    click.echo(f"{len(removed)} lock(s) removed")


def _report_check(result: repo_check.CheckResult, output: str, what: str) -> int:
    if output != "table":
        emit(result.to_dict(), output)
    else:
        for w in result.warnings:
            click.echo(f"warning: {w}", err=True)
        for e in result.errors:
            click.echo(f"error: {e}", err=True)
        read = f", read {result.packs_read} packs ({result.bytes_read:,} bytes)" if result.packs_read else ""
        click.echo(
            f"{what}: {result.snapshots} snapshots, {result.trees} trees, {result.blobs} blobs, "
            f"{result.packs} packs{read}: " + ("no errors" if result.ok else f"{len(result.errors)} errors")
        )
    if not result.ok:
        raise VerificationFailed(f"{what} found {len(result.errors)} problem(s)", details=result.errors[:50])
    return ExitCode.OK


@repo_group.command("check")
@read_data_option
@output_option()
def check(read_data: float | None, output: str) -> int:
    """Check the repository's structure (exit 4 when something is wrong)."""
    ctx = app()
    repo = open_repository(ctx)
    quiet = ctx.quiet or output != "table"
    with (
        Lock(repo, "shared", "check"),
        read_progress(repo, quiet=quiet),
        byte_progress("reading data", None, quiet=quiet, from_first=True) as advance,
    ):
        result = repo_check.check(repo, read_data=read_data, progress=advance)
    return _report_check(result, output, "check")


@click.command("verify")
@click.argument("backup_id", required=False, type=NonEmpty(), metavar="[ID|latest]")
@click.option("--all", "all_", is_flag=True, help="Verify every backup.")
@read_data_option
@output_option()
def verify(backup_id: str | None, all_: bool, read_data: float | None, output: str) -> int:
    """Verify a backup (default: latest): every object it needs exists and is intact.

    Exit 4 when a problem is found; each damaged object is named.
    """
    if all_ and backup_id:
        raise InvalidInput("give either a backup ID or --all, not both")
    ctx = app()
    repo = open_repository(ctx)
    ref = backup_id or "latest"
    # An id (prefix) reads the snapshots it matches and then the volume snapshots of the one
    # it names, not every snapshot (3,650 after a year of nightly backups of 8 policies).
    prefix = "" if all_ or ref == "latest" else ref.lower()
    # Snapshots one by one: a damaged snapshot is an error of its own, not of every verify.
    # A ref too short to be an id reads none (``resolve`` refuses it).
    quiet = ctx.quiet or output != "table"
    with read_progress(repo, quiet=quiet):
        snaps, bad = ([], {}) if prefix and len(prefix) < 4 else repo_check.load_snapshots(repo, prefix)
    problems: list[str] = []  # errors found before the check proper
    warnings: list[str] = []
    if all_:
        chosen = snaps
        problems += bad.values()
    else:
        try:
            top = _verify_target(repo, snaps, bad, ref=ref, warnings=warnings)
            by_id = {s.id: s for s in snaps}
            if prefix:
                found, unreadable = repo_check.load_by_id(
                    repo, [r for r in top.refs if r not in by_id and r not in bad]
                )
                by_id.update((s.id, s) for s in found)
                bad = {**bad, **unreadable}
            chosen = [top, *(by_id[r] for r in top.refs if r in by_id)]
            problems += [bad[r] for r in top.refs if r in bad]
            missing = [r for r in top.refs if r not in by_id and r not in bad]
            if missing:
                raise VerificationFailed(
                    f"backup {top.short_id} needs volume snapshots that are missing",
                    details=[f"volume snapshot {m[:8]} is missing" for m in missing],
                )
        except VerificationFailed as e:
            # Failed before the check proper: -o json/yaml still answers with the check's
            # document (ok false, the problems), which a monitoring job reads.
            if output != "table":
                emit(
                    repo_check.CheckResult(errors=e.details or [e.message], warnings=warnings).to_dict(),
                    output,
                )
            raise
    with (
        Lock(repo, "shared", "verify"),
        read_progress(repo, quiet=quiet),
        byte_progress("reading data", None, quiet=quiet, from_first=True) as advance,
    ):
        result = repo_check.check(repo, snapshots=chosen, read_data=read_data, progress=advance)
    result.errors[:0] = problems
    result.warnings += warnings
    return _report_check(result, output, "verify " + ("all" if all_ else chosen[0].short_id))


def _verify_target(
    repo: Any, snaps: list[Snapshot], bad: dict[str, str], ref: str, warnings: list[str]
) -> Snapshot:
    """The snapshot ``dr verify REF`` means, given the readable ``snaps`` and the unreadable
    ``bad`` (name -> problem)."""
    if ref != "latest":
        # Only the snapshot asked for matters; one that cannot be read is named. Ids are hex
        # in either case, as ``resolve`` reads them.
        prefix = ref.lower()
        unreadable = [n for n in bad if n.startswith(prefix)] if len(ref) >= 4 else []
        matches = len(unreadable) + sum(s.id.startswith(prefix) for s in snaps)
        if unreadable and matches == 1:
            raise VerificationFailed(
                f"snapshot {unreadable[0][:8]} cannot be read", details=[bad[unreadable[0]]]
            )
        if unreadable:
            raise InvalidInput(f"backup id {ref!r} is ambiguous ({matches} matches)")
        return resolve(snaps, ref)
    backups = [s for s in snaps if s.kind == "backup"] or snaps
    if not backups and bad:
        raise VerificationFailed(
            f"no readable backup: {len(bad)} snapshot(s) cannot be read", details=list(bad.values())[:50]
        )
    top = resolve(backups, "latest")
    if not bad:
        return top
    # An unreadable snapshot's time and kind are inside it: it may be the latest backup.
    # Verifying the newest readable one instead, as if all were well, would be the
    # silent answer a monitoring job must not get. Its object's time in storage tells
    # which are older than the one chosen (written before it): those are left to
    # `dr repo check`, as restic leaves snapshots it cannot load; a newer one, or
    # one the store gives no time for, fails the verify.
    modified = {o.name.rsplit("/", 1)[-1]: o.modified for o in repo.store.list("snapshots/")}
    ours = modified.get(top.id)
    newer = [n for n in bad if ours is None or (t := modified.get(n)) is None or t >= ours]
    if newer:
        raise VerificationFailed(
            f"latest: {len(newer)} snapshot(s) newer than backup {top.short_id} cannot be read; "
            "one of them may be the latest backup",
            details=[bad[n] for n in newer[:50]],
        )
    warnings.append(
        f"{len(bad)} older snapshot(s) cannot be read (`dr repo check` names them); "
        f"latest is backup {top.short_id}"
    )
    return top


# The tags `dr backup` gives the volume snapshots its mover Jobs write (dr/backup/volumes.py;
# not imported: that module pulls in pydantic, which `dr forget` does not need otherwise).
NAMESPACE_TAG = "dr.dev/namespace"
PVC_TAG = "dr.dev/pvc"
# An unreferenced volume snapshot this much older than the oldest running backup's lock may
# still belong to it: snapshot times come from the mover pod's clock, lock times from dr's.
CLOCK_SKEW = timedelta(hours=1)


def _volume_of(s: Snapshot) -> str | None:
    """``namespace/pvc`` of a volume snapshot `dr backup` made, else None."""
    ns, pvc = s.tags.get(NAMESPACE_TAG), s.tags.get(PVC_TAG)
    return f"{ns}/{pvc}" if ns and pvc else None


def _maybe_in_progress(s: Snapshot, busy_since: datetime | None) -> bool:
    """Whether volume snapshot ``s``, which no backup refers to, may be of a backup still
    running (``busy_since``: when the oldest running backup took its lock; None: none runs),
    which will refer to it."""
    return busy_since is not None and _volume_of(s) is not None and s.time >= busy_since - CLOCK_SKEW


def _needed_by(all_snaps: list[Snapshot], gone: Collection[str]) -> dict[str, str]:
    """``{volume snapshot: a backup that stays (not in ``gone``) and refers to it}``: what
    neither forget may remove, however its backup goes."""
    needed: dict[str, str] = {}
    for s in all_snaps:
        if s.kind == "backup" and s.id not in gone:
            for r in s.refs:
                needed.setdefault(r, s.id)
    return needed


def _group_key(s: Snapshot) -> tuple[str, ...]:
    if s.kind == "backup":
        return ("backup", s.policy or s.name or "", ",".join(sorted(s.namespaces)))
    volume = _volume_of(s)
    if volume:
        # Made by `dr backup`: grouped by the volume alone. The hostname (the mover pod)
        # and the dr.dev/backup and dr.dev/mover-job tags differ at every run; with them
        # in the key each snapshot a failed backup left was a group of one, kept forever.
        return ("volume", volume)
    return ("volume", s.hostname, ",".join(s.paths), ",".join(f"{k}={v}" for k, v in sorted(s.tags.items())))


def _group_label(key: tuple[str, ...]) -> str:
    """The GROUP a user reads for ``_group_key``'s key: ``policy/namespaces`` of a backup,
    ``namespace/pvc`` of a volume `dr backup` made, ``host:path tags`` of one made by hand
    (joined by "/" these read as one path: ``vm//data/app=web``)."""
    if key[0] == "backup" or len(key) == 2:
        return "/".join(k for k in key[1:] if k)
    _, host, paths, tags = key
    where = f"{host}:{paths}" if host else paths
    return f"{where} {tags}" if tags else where


def _plan_forget(
    all_snaps: list[Snapshot],
    pol: Policy,
    policy: str | None,
    busy_since: datetime | None,
    zones: Mapping[str, tzinfo] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, set[str]]]:
    """-> (one row per decision, the ids to remove by kind). ``busy_since``: when the
    oldest running backup took its lock (None: none runs). ``zones``: the time zone of
    each backup policy that has one, whose clock its retention counts days on (else UTC);
    with ``policy``, its zone for the volume snapshots too.

    A volume snapshot a backup refers to follows its backup. The others (made by
    `dr mover backup`, or left by a backup that failed, or by a forget that stopped
    half-way) are ranked by the policy among all the volume snapshots of their
    group, referenced or not: an orphan is kept only where a snapshot of that
    volume at that time would be.
    """
    by_id = {s.id: s for s in all_snaps}
    referenced = {r for s in all_snaps if s.kind == "backup" for r in s.refs}
    backups = [s for s in all_snaps if s.kind == "backup" and (not policy or s.policy == policy)]
    orphans = [s for s in all_snaps if s.kind == "volume" and s.id not in referenced]
    if policy:
        # Those of the volumes this policy's backups hold: its failed runs left them
        # (a volume snapshot carries no policy of its own).
        volumes = {v for s in backups for r in s.refs if r in by_id and (v := _volume_of(by_id[r]))}
        orphans = [s for s in orphans if _volume_of(s) in volumes]
    rows: list[dict[str, Any]] = []
    decide: set[str] = {s.id for s in backups}
    for s in orphans:
        if _maybe_in_progress(s, busy_since):
            rows.append(_row(s, "(backup in progress)", True, ["backup in progress"]))
        else:
            decide.add(s.id)
    groups: dict[tuple[str, ...], list[Snapshot]] = {}
    for s in backups:
        groups.setdefault(_group_key(s), []).append(s)
    orphan_groups = {_group_key(by_id[i]) for i in decide if by_id[i].kind == "volume"}
    for s in all_snaps:
        if s.kind == "volume" and (key := _group_key(s)) in orphan_groups:
            groups.setdefault(key, []).append(s)
    remove: dict[str, set[str]] = {"backup": set(), "volume": set()}
    zones = zones or {}
    for key, members in groups.items():
        zone = zones.get(key[1] if key[0] == "backup" else policy or "", UTC)
        completed = _kept_among_completed(members, pol, zone)
        for d in apply_policy([(s.id, s.time) for s in members], pol, zone):
            if d.id not in decide:
                continue  # ranks the others only: follows its backup, or kept as in progress
            s = by_id[d.id]
            if not d.keep and d.id in completed:
                d.keep, d.reasons = True, completed[d.id]
            rows.append(_row(s, _group_label(key), d.keep, d.reasons))
            if not d.keep:
                remove[s.kind].add(s.id)
                remove["volume"].update(r for r in s.refs if r in by_id)
    # Never a volume snapshot a backup that stays needs (of any policy).
    remove["volume"].difference_update(_needed_by(all_snaps, remove["backup"]))
    for r in sorted(remove["volume"] & referenced):
        rows.append(_row(by_id[r], "(part of a removed backup)", False, []))
    return rows, remove


def _kept_among_completed(members: list[Snapshot], pol: Policy, zone: tzinfo) -> dict[str, list[str]]:
    """The backups of ``members`` that completed and that ``pol`` keeps among the completed ones
    alone, with its reasons. Kept besides what it keeps among all: runs that failed or failed in
    part (a broken credential, RBAC changed: a week of them) must not push the last good backups
    out of ``--keep-last 7``; they are ranked among all, as before."""
    good = [(s.id, s.time) for s in members if s.kind == "backup" and s.phase == "Completed"]
    return {d.id: [f"{r} (of the completed backups)" for r in d.reasons]
            for d in apply_policy(good, pol, zone) if d.keep}  # fmt: skip


def _plan_forget_ids(
    all_snaps: list[Snapshot], refs: tuple[str, ...], busy_since: datetime | None
) -> tuple[list[dict[str, Any]], dict[str, set[str]]]:
    """As ``_plan_forget``, for the snapshots ``refs`` name (ids or unique prefixes, of
    backups or of volume snapshots): a backup takes along the volume snapshots no other
    backup needs. Refused (InvalidInput), nothing removed: an unknown or ambiguous id,
    ``latest``, a volume snapshot a backup that stays needs, or one a backup still in
    progress may need (a running backup has no snapshot of its own until it is done, FORMAT.md §8)."""
    by_id = {s.id: s for s in all_snaps}
    named: dict[str, Snapshot] = {}
    for ref in refs:
        if ref == "latest":
            # Of backups or of volume snapshots? And a mistyped command must not cost the newest.
            raise InvalidInput("forget takes ids, not 'latest': give the backup's id (`dr backups list`)")
        if len(ref) < 4:  # resolve's own message offers 'latest', refused just above
            raise InvalidInput(f"snapshot id {ref!r} is too short (give at least 4 characters)")
        # Backups and volume snapshots alike: a prefix both share is ambiguous.
        snap = resolve(all_snaps, ref, what="snapshot")
        named[snap.id] = snap
    needed_by = _needed_by(all_snaps, named.keys())
    referenced = {r for s in all_snaps if s.kind == "backup" for r in s.refs}
    ordered = sorted(named.values(), key=lambda s: (s.time, s.id))
    for s in ordered:
        if s.kind != "volume":
            continue
        if s.id in needed_by:
            raise InvalidInput(
                f"volume snapshot {s.short_id} is needed by backup {needed_by[s.id][:8]}, which stays "
                "(forget that backup: its volume snapshots go with it)"
            )
        if s.id not in referenced and _maybe_in_progress(s, busy_since):
            raise InvalidInput(
                f"volume snapshot {s.short_id} may belong to a backup still in progress; "
                "forget it once no backup runs"
            )
    remove: dict[str, set[str]] = {"backup": set(), "volume": set()}
    rows: list[dict[str, Any]] = []
    for s in ordered:
        remove[s.kind].add(s.id)
        rows.append(_row(s, _group_label(_group_key(s)), False, []))
    follow = sorted(
        {r for s in named.values() if s.kind == "backup" for r in s.refs if r in by_id} - named.keys()
    )
    for r in follow:
        if r in needed_by:
            rows.append(
                _row(by_id[r], "(part of a removed backup)", True, [f"needed by backup {needed_by[r][:8]}"])
            )
        else:
            remove["volume"].add(r)
            rows.append(_row(by_id[r], "(part of a removed backup)", False, []))
    return rows, remove


def _row(s: Snapshot, group: str, keep: bool, reasons: list[str]) -> dict[str, Any]:
    return {"id": s.id, "shortId": s.short_id, "kind": s.kind, "group": group, "time": s.time.isoformat(),
            "keep": keep, "reasons": reasons}  # fmt: skip


def _remove_snapshots(
    repo: Repository, remove: dict[str, set[str]], by_id: dict[str, Snapshot]
) -> dict[str, str]:
    """Delete what ``_plan_forget`` removes; -> ``{id: why it stays}`` for what the store
    keeps (S3 Object Lock retention: not a failure, a later forget removes it).

    Backups first, then the volume snapshots only they needed: a forget that stops
    half-way leaves unreferenced volume snapshots (which a later forget removes), never a
    listed backup whose volume snapshot is gone; a volume snapshot a retained backup
    needs stays with it.
    """
    retained: dict[str, str] = {}
    for kind in ("backup", "volume"):
        names = []
        for r in sorted(remove[kind]):
            holder = next((b for b in retained if r in by_id[b].refs), None) if kind == "volume" else None
            if holder is not None:
                retained[r] = f"needed by backup {holder[:8]}, which Object Lock retains"
            else:
                names.append(f"snapshots/{r}")
        # In batches where the store has them (S3: 1,000 a request): a year of nightly
        # backups forgotten to its GFS keeps was 3,441 requests, one per snapshot.
        for name, e in repo.store.delete_many(names).items():
            until = f" until {e.until:%Y-%m-%d %H:%M} UTC" if e.until else " (legal hold)"
            retained[name.removeprefix("snapshots/")] = f"retained by Object Lock{until}"
    return retained


def _policy_from(ctx: Any, name: str | None, cli: Policy) -> Policy:
    if not name:
        return cli
    r = required_backup_policy(ctx, name).retention
    merged = Policy(
        last=cli.last or r.keep_last or 0, hourly=cli.hourly or r.keep_hourly or 0,
        daily=cli.daily or r.keep_daily or 0, weekly=cli.weekly or r.keep_weekly or 0,
        monthly=cli.monthly or r.keep_monthly or 0, yearly=cli.yearly or r.keep_yearly or 0,
        within=cli.within or r.keep_within or timedelta(0),
    )  # fmt: skip
    return merged


@click.command("forget")
@click.argument("snapshot_ids", nargs=-1, metavar="[ID...]")
@click.option("--keep-last", type=click.IntRange(min=0), help="Keep the N most recent backups.")
@click.option(
    "--keep-within",
    type=Duration(),
    help="Keep every backup made at most DURATION (36h, 7d) before the newest of its group.",
)
@click.option("--keep-hourly", type=click.IntRange(min=0), help="Keep the last backup of each of N hours.")
@click.option("--keep-daily", type=click.IntRange(min=0), help="Keep the last backup of each of N days.")
@click.option("--keep-weekly", type=click.IntRange(min=0), help="Keep the last backup of each of N weeks.")
@click.option("--keep-monthly", type=click.IntRange(min=0), help="Keep the last backup of each of N months.")
@click.option("--keep-yearly", type=click.IntRange(min=0), help="Keep the last backup of each of N years.")
@click.option(
    "--policy",
    metavar="NAME",
    type=NonEmpty(),
    help="Use the retention of this backup policy and only its backups (in its repository).",
)
@click.option(
    "--prune", "do_prune", is_flag=True, help="Also delete data no longer referenced (exclusive lock)."
)
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@output_option()
def forget(
    snapshot_ids: tuple[str, ...],
    keep_last: int | None,
    keep_within: timedelta | None,
    keep_hourly: int | None,
    keep_daily: int | None,
    keep_weekly: int | None,
    keep_monthly: int | None,
    keep_yearly: int | None,
    policy: str | None,
    do_prune: bool,
    dry_run: bool,
    output: str,
) -> int:
    """Remove backups by id or by a retention policy (grandfather-father-son), optionally prune.

    With IDs (backup or volume snapshot ids, or unique prefixes of at least 4
    characters, as `dr backups describe` takes): those snapshots, and the volume
    snapshots only those backups need. A volume snapshot a backup that stays
    needs, or one a running backup may need, is refused (exit 2), as is an
    unknown or ambiguous id: then nothing is removed. One that Object Lock still
    retains stays and is named (exit 3). IDs exclude --keep-* and --policy.

    Backups are grouped by policy (or name) and namespaces. A backup that completed is
    also kept where the retention keeps it among the completed backups alone: runs that
    failed in part never push the last good ones out. A volume snapshot a
    backup needs follows that backup. One no backup refers to (a failed backup
    left it, or `dr mover backup` made it) is ranked among the volume snapshots
    of its volume (namespace/PVC) when a `dr backup` made it, else of its host,
    paths and tags; with --policy, only those of the volumes the policy's backups
    hold. One a running backup may still need is kept. Hours, days, weeks (ISO),
    months and years are counted in the time zone of the backups' policy (its
    timeZone; UTC if it has none or the backups have no policy).
    """
    ctx = app()
    if snapshot_ids:
        rules = (("--keep-last", keep_last), ("--keep-within", keep_within), ("--keep-hourly", keep_hourly),
                 ("--keep-daily", keep_daily), ("--keep-weekly", keep_weekly), ("--keep-monthly", keep_monthly),
                 ("--keep-yearly", keep_yearly), ("--policy", policy))  # fmt: skip
        given = [name for name, value in rules if value is not None]
        if given:
            raise click.UsageError(
                f"backup ids and {', '.join(given)} exclude each other: forget those backups, or by a retention"
            )
        pol = Policy()
    else:
        cli_policy = Policy(keep_last or 0, keep_hourly or 0, keep_daily or 0, keep_weekly or 0, keep_monthly or 0,
                            keep_yearly or 0, keep_within or timedelta(0))  # fmt: skip
        pol = _policy_from(ctx, policy, cli_policy)
        if pol.empty():
            raise InvalidInput("no retention given: use --keep-* options or --policy NAME with a retention")
    repo = open_repository(ctx, policy_repository(ctx, policy))
    with contextlib.ExitStack() as stack:
        # The shared lock before the listing: a backup that starts later cannot have
        # written a volume snapshot this listing sees.
        own = None if dry_run else stack.enter_context(Lock(repo, "shared", "forget")).name
        running = [
            lk for lk in list_locks(repo, besides=own) if lk.operation == "backup" and not is_stale(lk)
        ]
        busy_since = min((lk.held_since for lk in running), default=None)
        with read_progress(repo, quiet=ctx.quiet or output != "table"):
            snaps = list_snapshots(repo)
        if snapshot_ids:
            rows, remove = _plan_forget_ids(snaps, snapshot_ids, busy_since)
        else:
            zones = {p.name: ZoneInfo(p.time_zone) for p in ctx.loaded.config.backup_policies if p.time_zone}
            rows, remove = _plan_forget(snaps, pol, policy, busy_since, zones)
        retained = {} if dry_run else _remove_snapshots(repo, remove, {s.id: s for s in snaps})
    for row in rows:
        if row["id"] in retained:
            row["keep"], row["reasons"] = True, [retained[row["id"]]]
    removed = sorted((remove["backup"] | remove["volume"]) - retained.keys())
    result: dict[str, Any] = {
        "dryRun": dry_run,
        "removed": removed,
        "retained": sorted(retained),
        "snapshots": rows,
    }
    if retained:
        log.warning(
            "%d snapshot(s) %s are under Object Lock retention and stay; "
            "a forget after their retention ends removes them",
            len(retained),
            "to forget" if snapshot_ids else "the retention would remove",
        )
    if do_prune:
        # The removed snapshots count as gone in a dry run too (nothing was deleted then).
        with read_progress(repo, quiet=ctx.quiet or output != "table"):
            result["prune"] = repo_prune(repo, dry_run=dry_run, ignore_snapshots=removed).to_dict()
    # Backups named by id that Object Lock keeps: what was asked for is not done (exit 3);
    # by a retention policy, keeping them until their retention ends is the expected course.
    code = ExitCode.PARTIAL if snapshot_ids and retained else ExitCode.OK
    if output != "table":
        emit(result, output)
        return code
    emit(
        rows,
        "table",
        columns=[
            Column("ID", "shortId"), Column("KIND", "kind"), Column("GROUP", "group"), Column("TIME", "time"),
            Column("ACTION", lambda r: "keep" if r["keep"] else ("would remove" if dry_run else "removed")),
            Column("REASONS", "reasons"),
        ],
    )  # fmt: skip
    if "prune" in result:
        p = result["prune"]
        click.echo(f"prune: {'would delete' if dry_run else 'deleted'} {p['packsDeleted']} packs "
                   f"({p['packsRepacked']} repacked), {p['bytesFreed']:,} bytes freed"
                   f"{_retained_note(p['packsRetained'])}")  # fmt: skip
    return code


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
@output_option()
def prune(dry_run: bool, output: str) -> None:
    """Delete data no longer referenced by any backup, under the exclusive lock."""
    ctx = app()
    repo = open_repository(ctx)
    with read_progress(repo, quiet=ctx.quiet or output != "table"):  # the index and every snapshot
        result = repo_prune(repo, dry_run=dry_run)
    if output != "table":
        emit(result.to_dict(), output)
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {result.packs_deleted} packs ({result.packs_repacked} repacked), "
               f"{result.bytes_freed:,} bytes freed, {result.blobs_kept} blobs kept"
               f"{_retained_note(result.packs_retained)}")  # fmt: skip


def _retained_note(packs: int) -> str:
    return f", {packs} packs kept under Object Lock retention" if packs else ""


COMMANDS = [repo_group, verify, forget, prune]
