"""``dr restore``."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

import click

from dr.backup.scope import is_glob, match_namespaces
from dr.cli.context import app
from dr.cli.kube_access import connect_kube
from dr.cli.output import Column, JsonStream, emit, output_option
from dr.cli.params import KeyValue, NonEmpty, check_namespace_names, pairs_to_dict, split_csv
from dr.cli.progress import item_progress, read_progress
from dr.cli.repo_access import open_repository, policy_repository, searched
from dr.cli.volume_access import volume_restore_step
from dr.errors import DrError, ExitCode, InvalidInput, PartialFailure
from dr.observe.run_hooks import observe_restore
from dr.repo.repository import Repository
from dr.repo.snapshots import (
    Snapshot,
    SnapshotNotFound,
    find_snapshot,
    latest_to_restore,
    pass_over,
    readable_snapshots,
)
from dr.restore.plan import RestoreOptions
from dr.restore.results import RestoreItemResult
from dr.restore.run import RestoreOutcome, run_restore, volume_snapshots
from dr.restore.volumes import awaiting_data, not_restored

if TYPE_CHECKING:
    from dr.kube.client import KubeClient

log = logging.getLogger(__name__)


def _where(e: InvalidInput, where: str) -> InvalidInput:
    """``e`` saying where the backup was looked for (``searched``), when it was not found (what a
    command copied from a runbook gets in a shell with another configuration)."""
    if not isinstance(e, SnapshotNotFound):
        return e
    return InvalidInput(f"{e.message.removesuffix(' in the repository')} in {where}", problems=e.details)


def _backup(
    repo: Repository, ref: str, policy: str | None, namespaces: Collection[str] = (), *, data: bool = True
) -> Snapshot:
    """The backup to restore: ``ref`` is an id, or ``latest`` (``latest_to_restore``:
    the newest Completed backup, never a failed or unfinished one).

    With ``policy``, ``latest`` among the backups of that backup policy only: the
    runbook of one app names its policy, and ``latest`` of the whole repository may
    be another app's backup (one that also holds this app's namespaces, but from
    another time, or one that does not hold them at all). An id is looked up among
    all backups of the policy's repository: it names its backup, and the runbook's
    page names the app's newest backup, made by its policy or by hand.

    ``latest`` with namespaces named (``-n``, ``--namespace-mapping``): the newest that
    holds them all. A namespace deleted in the incident is missing from the backups
    taken since (they warn, and back up the rest): the page's `dr restore latest
    --policy P -n billing` must restore billing from the last backup that has it.

    ``data`` (not ``--no-data``): ``latest`` passes over a backup without its volumes'
    data for the newest that has it (``latest_to_restore``).
    """
    if ref != "latest":
        return find_snapshot(repo, ref, kind="backup", what="backup")
    what = f"backup of policy {policy!r}" if policy else "backup"
    snaps, bad = readable_snapshots(repo, "backup")
    pass_over(bad)
    if policy is not None:
        snaps = [s for s in snaps if s.policy == policy]
    named = {n for n in namespaces if not is_glob(n)}
    holding = [s for s in snaps if named <= set(s.namespaces)]
    if not named or not holding:
        return latest_to_restore(snaps, what=what, data=data)  # none holds them: _check_namespaces says so
    snap = latest_to_restore(holding, what=what, data=data)
    newest = max(snaps, key=lambda s: (s.time, s.id))
    # Only when the newest lacks a namespace: one passed over for its missing volume data
    # holds them all, and latest_to_restore has said why.
    missing = sorted(named - set(newest.namespaces))
    if missing and newest.id != snap.id and newest.phase in ("Completed", "PartiallyFailed"):
        log.warning(
            "the newest %s, %s of %s, does not hold %s; restoring %s of %s, the newest that does",
            what, newest.short_id, newest.time.isoformat(), ", ".join(missing), snap.short_id, snap.time.isoformat(),
        )  # fmt: skip
    return snap


def _holds(snap: Snapshot, limit: int = 10) -> str:
    names = snap.namespaces
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"(it holds: {', '.join(names[:limit]) or 'no namespace'}{more})"


def _check_namespaces(snap: Snapshot, options: RestoreOptions) -> None:
    """``InvalidInput`` when -n or --namespace-mapping names a namespace the backup does not hold.

    A typo would otherwise be a restore of nothing that exits 0, or a mapping
    that is quietly not applied, restoring into the original namespace instead.
    """
    held = set(snap.namespaces)
    chosen, missing = match_namespaces(options.namespaces, snap.namespaces)  # every one without -n
    restored = set(chosen)
    for old, new in options.namespace_mapping.items():
        if old not in held:
            raise InvalidInput(f"--namespace-mapping {old}={new}: namespace {old!r} is not in backup "
                               f"{snap.short_id} {_holds(snap)}")  # fmt: skip
        if old not in restored:
            # Quietly not applied, it would leave the namespace meant to be mapped out of the restore.
            raise InvalidInput(f"--namespace-mapping {old}={new}: namespace {old!r} is not restored "
                               f"(-n {','.join(options.namespaces)})")  # fmt: skip
    if missing:
        raise InvalidInput(f"namespace {missing[0]!r} is not in backup {snap.short_id} {_holds(snap)}")
    if not restored and options.namespaces:
        raise InvalidInput(f"-n/--namespace {','.join(options.namespaces)}: no namespace of backup "
                           f"{snap.short_id} matches {_holds(snap)}")  # fmt: skip
    _check_targets(snap, chosen, options)


def _check_targets(snap: Snapshot, restored: list[str], options: RestoreOptions) -> None:
    """``InvalidInput`` when two namespaces of the restore (``restored``) would land in one (``a=x b=x``,
    or ``a=b`` while ``b`` is restored as it is). Their objects of the same name collide and all but
    one would be dropped; checked before the cluster is touched, so nothing is created."""
    source_of: dict[str, str] = {}
    for ns in sorted(restored):
        target = options.namespace_mapping.get(ns, ns)
        if target in source_of:
            raise InvalidInput(f"--namespace-mapping: namespaces {source_of[target]} and {ns} of backup "
                               f"{snap.short_id} would both be restored into {target}")  # fmt: skip
        source_of[target] = ns


def _options(**kw: Any) -> RestoreOptions:
    try:
        return RestoreOptions.model_validate(kw)
    except ValueError as e:
        raise InvalidInput(f"invalid restore options: {e}") from None


def _result_doc(outcome: RestoreOutcome, snap: Snapshot) -> dict[str, Any]:
    r = outcome.resources
    return {
        "snapshotId": snap.id,  # what `dr restore`, `dr backups describe` take (and `latest` resolved to)
        "backupId": r.backup_id,  # the backup's label, as on the restored objects' dr.dev/backup
        "restoreId": r.restore_id,
        "dryRun": r.dry_run,
        "phase": outcome.phase,
        "counts": r.counts,
        "filtered": r.filtered,
        "namespacesCreated": r.namespaces_created,
        "warnings": r.warnings,
        "timings": {
            "discoverySeconds": r.timings.discovery_seconds,
            "totalSeconds": r.timings.total_seconds,
            "stages": r.timings.stages,
        },
        "items": JsonStream(r.items.dumps(), len(r.items)),  # printed one by one, never held whole
        "volumes": outcome.volumes.volumes,
        "volumeErrors": outcome.volumes.errors,
        "dumpErrors": outcome.dump_errors,
        "dumpWarnings": outcome.dump_warnings,
    }


def _load_dumps(kube: KubeClient, repo: Repository, snap: Snapshot, options: RestoreOptions,
                outcome: RestoreOutcome) -> None:  # fmt: skip
    """Dumps (pg_dump & co.) go back into the restored pods once they run."""
    from dr.cli.volume_access import restore_backup_dumps

    for hr in restore_backup_dumps(kube, repo, snap, options.namespace_mapping):
        if hr.skipped:
            # Not a failure (a pod may load it later by hand), but never silent: the data is not back.
            outcome.dump_warnings.append(f"dump {hr.namespace}/{hr.pod}/{hr.name} was not loaded: {hr.note}")
        elif not hr.ok:
            outcome.dump_errors.append(f"dump {hr.namespace}/{hr.pod}/{hr.name}: {hr.error}")


def _data_to_restore(items: Iterable[RestoreItemResult], snap: Snapshot) -> int:
    """How many claims of a dry run's plan a real run would fill with their backed-up data:
    those it would create (or recreate) that have a volume snapshot in the backup. The plan
    lists only objects; without this its preview could not be told from a --no-data one."""
    snapshots = volume_snapshots(snap)
    return sum(
        1
        for i in items
        if i.item.resource == "persistentvolumeclaims"
        and i.outcome in ("would-create", "would-recreate")
        and i.backed_up_as() in snapshots
    )


def _row(i: RestoreItemResult) -> dict[str, Any]:
    return {"object": i.item.describe(), "outcome": i.outcome, "reason": i.reason or "", "diff": i.diff}


@click.command("restore")
@click.argument("backup_id", metavar="ID|latest")
@click.option("--namespace-mapping", multiple=True, type=KeyValue("OLD=NEW"),
              help="Restore namespace OLD as NEW; repeatable.")  # fmt: skip
@click.option("--include-resources", multiple=True, metavar="R,…", help="Only these resource types.")
@click.option("--exclude-resources", multiple=True, metavar="R,…", help="Not these resource types.")
@click.option("-n", "--namespace", "namespaces", multiple=True, metavar="NS",
              help="Only these namespaces of the backup (names or globs); repeatable.")  # fmt: skip
@click.option("-l", "--selector", metavar="SEL", help="Only objects matching this label selector.")
@click.option("--existing", type=click.Choice(["skip", "update", "recreate"]), default="skip", show_default=True,
              help="What to do with objects that already exist.")  # fmt: skip
@click.option("--storage-class-mapping", multiple=True, type=KeyValue("OLD=NEW"),
              help="Restore PVCs of storage class OLD with class NEW; repeatable.")  # fmt: skip
@click.option("--preserve-nodeports", is_flag=True, help="Keep Services' nodePorts.")
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (create/update/skip per object) and change nothing."
)
@click.option("--no-data", is_flag=True, help="Restore manifests only, no volume data.")
@click.option("--policy", metavar="NAME", type=NonEmpty(),
              help="Read this backup policy's repository (when dr.yaml names one), and pick "
                   "latest among its backups only.")  # fmt: skip
@output_option()
def restore(
    backup_id: str,
    namespace_mapping: tuple[tuple[str, str], ...],
    include_resources: tuple[str, ...],
    exclude_resources: tuple[str, ...],
    namespaces: tuple[str, ...],
    selector: str | None,
    existing: str,
    storage_class_mapping: tuple[tuple[str, str], ...],
    preserve_nodeports: bool,
    dry_run: bool,
    no_data: bool,
    policy: str | None,
    output: str,
) -> int:
    """Restore a backup (ID or 'latest') into this cluster.

    'latest' is the newest Completed backup; when there is none, the newest
    PartiallyFailed one, with a warning; never a Failed or unfinished one. One
    without its claims' data (dr backup --no-data) is passed over for the
    newest with it, with a warning, unless --no-data is given.

    Idempotent and resumable: run it again after an interruption. Exit 3 when
    some items failed (each is listed), the rest restored.
    """
    ctx = app()
    check_namespace_names(namespaces)
    options = _options(
        namespace_mapping=pairs_to_dict(namespace_mapping, "--namespace-mapping"),
        include_resources=split_csv(include_resources),
        exclude_resources=split_csv(exclude_resources),
        namespaces=list(namespaces),
        selector=selector,
        existing=existing,
        storage_class_mapping=pairs_to_dict(storage_class_mapping, "--storage-class-mapping"),
        preserve_nodeports=preserve_nodeports,
        dry_run=dry_run,
    )
    repository = policy_repository(ctx, policy)
    repo = open_repository(ctx, repository)
    try:
        with read_progress(repo, quiet=ctx.quiet or output != "table"):  # `latest` reads every snapshot
            snap = _backup(
                repo,
                backup_id,
                policy or None,
                [*options.namespaces, *options.namespace_mapping],
                data=not no_data,
            )
    except InvalidInput as e:
        raise _where(e, searched(ctx, repo, policy)) from None
    _check_namespaces(snap, options)
    kube = connect_kube(ctx)
    # Given to a dry run too (which runs no step): its plan then shows what the data step changes.
    step = None if no_data else volume_restore_step(ctx, repository)  # its movers read the same one
    bar = item_progress(f"restore {snap.short_id}", None, quiet=ctx.quiet or output != "table")
    # Events on the target namespaces when the restore ends, also when it fails.
    with observe_restore(ctx.loaded.config, kube, snap, options) as observed:
        with bar as advance:
            outcome = run_restore(kube, repo, snap, options, volume_step=step,
                                  progress=lambda _r, _done, _total: advance(1))  # fmt: skip
        if step is not None and dry_run:
            # What the data step would say: a claim that exists keeps its data.
            _, _, kept = awaiting_data(kube, outcome.resources.items, volume_snapshots(snap))
            outcome.resources.warnings += [not_restored(kept)] if kept else []
        if step is not None and not dry_run:
            # Part of the restore: its metrics and events must count a dump that did not load.
            _load_dumps(kube, repo, snap, options, outcome)
        observed(outcome)
    r = outcome.resources
    if output != "table":
        emit(_result_doc(outcome, snap), output)
    else:
        if dry_run:
            rows = [_row(i) for i in r.items]
            emit(rows, "table", columns=[Column("OBJECT", "object"), Column("ACTION", "outcome"),
                                         Column("WHY", "reason")])  # fmt: skip
            for i in r.items:
                for line in i.diff:
                    click.echo(f"  {i.item.describe()}: {line}")
        counts = ", ".join(f"{n} {k}" for k, n in r.counts.items())
        data = _data_to_restore(r.items, snap) if dry_run and step is not None else 0
        click.echo(f"{'plan for' if dry_run else 'restored'} backup {snap.short_id} (restore {r.restore_id}): {counts}"
                   + (f"; {len(outcome.volumes.volumes)} volume(s)" if outcome.volumes.volumes else "")
                   + (f"; the data of {data} volume(s) would be restored" if data else ""))  # fmt: skip
        for w in [] if ctx.quiet else r.warnings + outcome.dump_warnings:
            click.echo(f"warning: {w}", err=True)
    failures = [i.describe() for i in r.failures] + outcome.volumes.errors + outcome.dump_errors
    if failures and outcome.nothing_restored:
        raise DrError(f"restore {r.restore_id} failed: all {len(failures)} item(s) failed", details=failures)
    if failures:
        raise PartialFailure(
            f"restore {r.restore_id} partially failed: {len(failures)} item(s)", details=failures
        )
    return ExitCode.OK


COMMANDS = [restore]
