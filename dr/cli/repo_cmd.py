"""``dr repo init | info | check``, ``dr verify``, ``dr forget``, ``dr prune``."""

from __future__ import annotations

from typing import Any

import click

from dr.cli.context import app
from dr.cli.output import Column, emit, output_option
from dr.cli.params import read_data_option
from dr.cli.progress import byte_progress
from dr.cli.repo_access import init_repository, open_repository
from dr.errors import ExitCode, InvalidInput, VerificationFailed
from dr.repo import check as repo_check
from dr.repo.forget import Policy, apply_policy
from dr.repo.locks import Lock, list_locks, remove_stale
from dr.repo.prune import prune as repo_prune
from dr.repo.snapshots import Snapshot, list_snapshots, resolve


@click.group("repo")
def repo_group() -> None:
    """Create and inspect the backup repository."""


@repo_group.command("init")
@click.option("--key", "key_uri", metavar="PROVIDER-URI", help="Key provider that wraps the new master key "
              "(default: the repository's first configured key, or a new local key file).")  # fmt: skip
@output_option()
def init(key_uri: str | None, output: str) -> None:
    """Create a new, empty repository with a fresh master key."""
    repo = init_repository(app(), key_uri)
    slot = repo.slot
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
    repo = open_repository(app())
    objects: dict[str, list[int]] = {}
    for o in repo.store.list(""):
        kind = o.name.split("/", 1)[0]
        objects.setdefault(kind, []).append(o.size)
    snaps = list_snapshots(repo)
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
        },
        "objects": {k: {"count": len(v), "bytes": sum(v)} for k, v in sorted(objects.items())},
        "totalBytes": sum(sum(v) for v in objects.values()),
        "locks": [lk.describe() for lk in list_locks(repo)],
    }
    if output != "table":
        emit(data, output)
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
    with Lock(repo, "shared", "check"), byte_progress("reading data", None, quiet=ctx.quiet) as advance:
        result = repo_check.check(repo, read_data=read_data, progress=advance)
    return _report_check(result, output, "check")


@click.command("verify")
@click.argument("backup_id", required=False, metavar="[ID|latest]")
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
    snaps = list_snapshots(repo)
    if all_:
        chosen = snaps
    else:
        backups = [s for s in snaps if s.kind == "backup"] or snaps
        top = resolve(backups if (backup_id or "latest") == "latest" else snaps, backup_id or "latest")
        by_id = {s.id: s for s in snaps}
        chosen = [top, *(by_id[r] for r in top.refs if r in by_id)]
        missing = [r for r in top.refs if r not in by_id]
        if missing:
            raise VerificationFailed(
                f"backup {top.short_id} needs volume snapshots that are missing",
                details=[f"volume snapshot {m[:8]} is missing" for m in missing],
            )
    with Lock(repo, "shared", "verify"), byte_progress("reading data", None, quiet=ctx.quiet) as advance:
        result = repo_check.check(repo, snapshots=chosen, read_data=read_data, progress=advance)
    return _report_check(result, output, "verify " + ("all" if all_ else chosen[0].short_id))


def _group_key(s: Snapshot) -> tuple[str, ...]:
    if s.kind == "backup":
        return ("backup", s.policy or s.name or "", ",".join(sorted(s.namespaces)))
    return ("volume", s.hostname, ",".join(s.paths), ",".join(f"{k}={v}" for k, v in sorted(s.tags.items())))


def _policy_from(ctx: Any, name: str | None, cli: Policy) -> Policy:
    if not name:
        return cli
    pol = next((p for p in ctx.loaded.config.backup_policies if p.name == name), None)
    if pol is None:
        raise InvalidInput(f"no backup policy {name!r} in {ctx.loaded.source}")
    r = pol.retention
    merged = Policy(
        last=cli.last or r.keep_last or 0, hourly=cli.hourly or r.keep_hourly or 0,
        daily=cli.daily or r.keep_daily or 0, weekly=cli.weekly or r.keep_weekly or 0,
        monthly=cli.monthly or r.keep_monthly or 0, yearly=cli.yearly or r.keep_yearly or 0,
    )  # fmt: skip
    return merged


@click.command("forget")
@click.option("--keep-last", type=click.IntRange(min=0), help="Keep the N most recent backups.")
@click.option("--keep-hourly", type=click.IntRange(min=0), help="Keep the last backup of each of N hours.")
@click.option("--keep-daily", type=click.IntRange(min=0), help="Keep the last backup of each of N days.")
@click.option("--keep-weekly", type=click.IntRange(min=0), help="Keep the last backup of each of N weeks.")
@click.option("--keep-monthly", type=click.IntRange(min=0), help="Keep the last backup of each of N months.")
@click.option("--keep-yearly", type=click.IntRange(min=0), help="Keep the last backup of each of N years.")
@click.option(
    "--policy", metavar="NAME", help="Use the retention of this backup policy and only its backups."
)
@click.option(
    "--prune", "do_prune", is_flag=True, help="Also delete data no longer referenced (exclusive lock)."
)
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@output_option()
def forget(
    keep_last: int | None,
    keep_hourly: int | None,
    keep_daily: int | None,
    keep_weekly: int | None,
    keep_monthly: int | None,
    keep_yearly: int | None,
    policy: str | None,
    do_prune: bool,
    dry_run: bool,
    output: str,
) -> None:
    """Remove backups by a retention policy (grandfather-father-son), optionally prune.

    Backups are grouped by policy (or name) and namespaces; volume snapshots
    made outside a backup by host, paths and tags. A volume snapshot that a
    kept backup needs is always kept.
    """
    ctx = app()
    cli_policy = Policy(keep_last or 0, keep_hourly or 0, keep_daily or 0, keep_weekly or 0, keep_monthly or 0,
                        keep_yearly or 0)  # fmt: skip
    pol = _policy_from(ctx, policy, cli_policy)
    if pol.empty():
        raise InvalidInput("no retention given: use --keep-* options or --policy NAME with a retention")
    repo = open_repository(ctx)
    snaps = list_snapshots(repo)
    if policy:
        snaps = [s for s in snaps if s.policy == policy or (s.kind == "volume" and not s.policy)]
    referenced = {r for s in snaps if s.kind == "backup" for r in s.refs}
    groups: dict[tuple[str, ...], list[Snapshot]] = {}
    for s in snaps:
        if s.kind == "volume" and s.id in referenced:
            continue  # follows its backup
        if policy and s.kind == "volume":
            continue
        groups.setdefault(_group_key(s), []).append(s)
    rows: list[dict[str, Any]] = []
    remove: set[str] = set()
    kept_refs: set[str] = set()
    by_id = {s.id: s for s in snaps}
    for key, members in groups.items():
        for d in apply_policy([(s.id, s.time) for s in members], pol):
            s = by_id[d.id]
            rows.append({"id": s.id, "shortId": s.short_id, "kind": s.kind, "group": "/".join(k for k in key[1:] if k),
                         "time": s.time.isoformat(), "keep": d.keep, "reasons": d.reasons})  # fmt: skip
            if d.keep:
                kept_refs.update(s.refs)
            else:
                remove.add(s.id)
                remove.update(s.refs)
    remove -= kept_refs
    for r in sorted(remove):
        if r in by_id and by_id[r].kind == "volume" and r in referenced:
            rows.append({"id": r, "shortId": r[:8], "kind": "volume", "group": "(part of a removed backup)",
                         "time": by_id[r].time.isoformat(), "keep": False, "reasons": []})  # fmt: skip
    if not dry_run:
        with Lock(repo, "shared", "forget"):
            for r in sorted(remove):
                repo.store.delete(f"snapshots/{r}")
    result: dict[str, Any] = {"dryRun": dry_run, "removed": sorted(remove), "snapshots": rows}
    if do_prune:
        result["prune"] = repo_prune(repo, dry_run=dry_run).to_dict()
    if output != "table":
        emit(result, output)
        return
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
                   f"({p['packsRepacked']} repacked), {p['bytesFreed']:,} bytes freed")  # fmt: skip


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
@output_option()
def prune(dry_run: bool, output: str) -> None:
    """Delete data no longer referenced by any backup, under the exclusive lock."""
    repo = open_repository(app())
    result = repo_prune(repo, dry_run=dry_run)
    if output != "table":
        emit(result.to_dict(), output)
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {result.packs_deleted} packs ({result.packs_repacked} repacked), "
               f"{result.bytes_freed:,} bytes freed, {result.blobs_kept} blobs kept")  # fmt: skip


COMMANDS = [repo_group, verify, forget, prune]
