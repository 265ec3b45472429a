"""``dr drill run | gc``."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click

from dr.cli.context import app
from dr.cli.kube_access import connect_kube, steps_api_client
from dr.cli.output import emit, output_option
from dr.cli.params import KeyValue, NonEmpty, pairs_to_dict
from dr.cli.progress import read_progress
from dr.cli.repo_access import open_repository
from dr.cli.volume_access import dump_problems, volume_restore_step
from dr.drill.model import DrillReport, human_duration
from dr.drill.run import (
    DrillDeps,
    DrillRequest,
    DrillStopped,
    check_class_mapping_used,
    run_drill,
    save_report,
    write_report_files,
)
from dr.drill.run import gc as drill_gc
from dr.errors import DrError, ExitCode, InvalidInput, PartialFailure, VerificationFailed
from dr.observe.run_hooks import drill_finished
from dr.restore.plan import check_storage_class_mapping
from dr.runbook.model import load_runbook


@click.group("drill")
def drill_group() -> None:
    """Restore drills: prove that the latest backup restores and works."""


def _make_report_dir(path: Path) -> None:
    """``--report-dir``, made before the drill runs: a path that cannot hold the files is
    invalid input (exit 2), not a failure found after the drill ran for minutes."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidInput(f"--report-dir {path}: cannot create it: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InvalidInput(f"--report-dir {path}: not writable")


def _summary(report: DrillReport) -> list[str]:
    lines = [f"drill {report.id}: {report.outcome.upper()}"]
    if report.backup_id:
        lines.append(
            f"  backup {report.backup_id[:8]} from {report.backup_time.isoformat() if report.backup_time else '?'}"
        )
    lines.append(
        f"  scratch namespace(s): {', '.join(report.namespaces.values()) or '-'} ({report.cleanup.state})"
    )
    rto, rpo = report.rto_measured, report.rpo_measured
    if rto is not None:
        lines.append(f"  RTO {human_duration(rto)} (objective {human_duration(report.objectives.rto)}) "
                     f"{'met' if report.rto_met else 'NOT met'}")  # fmt: skip
    if rpo is not None:
        lines.append(f"  RPO {human_duration(rpo)} (objective {human_duration(report.objectives.rpo)}) "
                     f"{'met' if report.rpo_met else 'NOT met'}")  # fmt: skip
    for problem in report.restore.lines():
        lines.append(f"  [FAIL] {problem}")
    for s in report.steps:
        lines.append(f"  [{'pass' if s.passed else 'FAIL'}] {s.name} ({s.type}): {s.message}")
    for w in report.warnings:
        lines.append(f"  warning: {w}")
    if report.error:
        lines.append(f"  error: {report.error}")
    return lines


@drill_group.command("run")
@click.argument("runbook", type=NonEmpty(click.Path(dir_okay=False)), metavar="RUNBOOK.yaml")
@click.option(
    "--backup",
    "backup_id",
    type=NonEmpty(),
    metavar="ID",
    help="Backup to restore (default: latest of the app).",
)
@click.option("--keep", is_flag=True, help="Keep the scratch namespace afterwards (for debugging).")
@click.option("--report-dir", type=NonEmpty(click.Path(file_okay=False)), metavar="DIR",
              help="Also write the reports (JSON, Markdown, HTML) here.")  # fmt: skip
@click.option(
    "--policy",
    metavar="NAME",
    type=NonEmpty(),
    help="Drill policy of dr.yaml: the drill uses its repository, else its backup policy's "
    "(without --policy: that of the runbook's backup policy, else the default repository).",
)
@click.option("--no-data", is_flag=True, help="Restore resources only (skip volume data).")
@click.option("--storage-class-mapping", multiple=True, type=KeyValue("OLD=NEW"),
              help="Restore PVCs of storage class OLD with class NEW (a backup of another cluster); "
                   "repeatable, over the runbook's spec.drill.storageClassMapping.")  # fmt: skip
@output_option()
def run(
    runbook: str, backup_id: str | None, keep: bool, report_dir: str | None, policy: str | None, no_data: bool,
    storage_class_mapping: tuple[tuple[str, str], ...], output: str,
) -> int:  # fmt: skip
    """Restore into a scratch namespace, run the runbook's verification steps, report.

    Exit 0 when the restore was complete and every step passed, 4 when an object, volume or dump
    failed to restore, a workload never became ready or a step failed, 1 when the drill could not run,
    2 when the runbook, --backup, --policy, --report-dir or --storage-class-mapping is invalid
    (nothing is run).
    """
    ctx = app()
    rb = load_runbook(Path(runbook))
    classes = pairs_to_dict(storage_class_mapping, "--storage-class-mapping")
    check_storage_class_mapping(classes)  # before the drill makes its namespace and writes a report
    pol = None
    if policy:
        pol = next((d for d in ctx.loaded.config.drill_policies if d.name == policy), None)
        if pol is None:
            raise InvalidInput(f"no drill policy {policy!r} in {ctx.loaded.source}")
    # The app's backups are where its backup policy writes them, unless the drill policy
    # names a repository itself (`dr status` looks for the reports by the same rule).
    repo_name = ctx.loaded.config.drill_repository(pol, rb.spec.backup_policy)
    repo = open_repository(ctx, repo_name)
    # A line on a terminal while every snapshot is read (to pick the latest backup, here and in
    # the drill) or the index: as `dr restore latest` shows it.
    quiet = ctx.quiet or output != "table"
    with read_progress(repo, quiet=quiet):
        if backup_id:
            # A mistyped --backup is invalid input (exit 2), not a drill that could not run: no
            # report, no scratch namespace. The full id then loads with one request in the drill.
            from dr.drill.run import check_holds_namespaces
            from dr.repo.snapshots import find_snapshot

            chosen = find_snapshot(repo, backup_id, kind="backup", what="backup")
            try:
                check_holds_namespaces(rb, chosen)
            except DrError as e:
                raise InvalidInput(f"--backup {backup_id}: {e.message}") from None
            backup_id = chosen.id
        check_class_mapping_used(repo, rb, backup_id, classes)  # a typo: exit 2, as dr restore's
    kube = connect_kube(ctx)
    api = steps_api_client(kube)
    from dr.deploy.network import config_endpoints
    from dr.drill.probe_job import JobDataProbe
    from dr.kube.exec import KubernetesExec

    deps = DrillDeps(
        kube=kube,
        api=api,
        repo=repo,
        exec=KubernetesExec(api),
        data_probe=JobDataProbe(kube, ctx.loaded.config.mover, run_id=f"drill-{rb.name}"),
        volume_step=None if no_data else volume_restore_step(ctx, repo_name),
        dump_step=None if no_data else dump_problems,
        dr_namespace=ctx.loaded.config.mover.namespace,
        endpoints=config_endpoints(ctx.loaded.config),
    )
    if report_dir:
        _make_report_dir(Path(report_dir))
    stopped: KeyboardInterrupt | None = None
    try:
        with read_progress(repo, quiet=quiet):
            report = run_drill(
                DrillRequest(rb, runbook, backup_id, keep, Path(report_dir) if report_dir else None, classes),
                deps,
            )
    except DrillStopped as e:
        # Saved, counted and printed like any drill that could not run; then dr stops (130, 143).
        report, stopped = e.report, e.interrupt
    drill_finished(ctx.loaded.config, kube, report, policy)  # metrics and events; problems are warnings
    # The drill's result is printed also when keeping it failed (exit 1 then, after the output).
    name: str | None = None
    problems: list[str] = []
    try:
        name = save_report(repo, report)
    except DrError as e:
        problems.append(f"its report could not be saved: {e.message}")
    files: list[Path] = []
    if report_dir:
        try:
            files = write_report_files(report, Path(report_dir))
        except OSError as e:  # made writable above; a full disk, say
            problems.append(f"its report files could not be written to {report_dir}: {e.strerror or e}")
    if output != "table":
        emit({**report.model_dump(mode="json", by_alias=True), "reportObject": f"reports/{name}" if name else None,
              "reportFiles": [str(f) for f in files]}, output)  # fmt: skip
    else:
        for line in _summary(report):
            click.echo(line)
        click.echo(
            f"  report: {f'reports/{name[:16]}…' if name else 'not saved'}"
            + (f", {', '.join(str(f) for f in files)}" if files else "")
        )
    if stopped is not None:
        for p in problems:
            click.echo(f"warning: {p}", err=True)
        raise stopped
    if problems:
        raise DrError(f"drill {report.outcome}, but {'; '.join(problems)}")
    if report.outcome == "error":
        raise DrError(f"drill of {rb.name} could not run: {report.error}")
    if report.outcome == "failed":
        restore = report.restore.lines()
        failed = [s.failure_line() for s in report.steps if not s.passed]
        why = [f"{len(restore)} restore problem(s)"] if restore else []
        why += [f"{len(failed)} step(s) did not pass"] if failed else []
        raise VerificationFailed(f"drill of {rb.name} failed: {', '.join(why)}", details=restore + failed)
    return ExitCode.OK


@drill_group.command("gc")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@output_option()
def gc(dry_run: bool, output: str) -> int:
    """Delete expired scratch namespaces and leftover temporary objects of crashed runs.

    Exit 3 when some expired namespaces could not be deleted (each is listed) and others were.
    """
    import time

    from dr.kube.jobs import cleanup_leftovers

    ctx = app()
    kube = connect_kube(ctx)
    result = drill_gc(kube, datetime.now(UTC), dry_run=dry_run)
    # Only where the drill account may look: dr's namespace and the drill namespaces still there.
    namespaces = [ctx.loaded.config.mover.namespace, *result.kept]
    leftovers = cleanup_leftovers(kube, time.time(), namespaces=namespaces, dry_run=dry_run)
    data = {"dryRun": dry_run, "deleted": result.deleted, "kept": result.kept, "errors": result.errors,
            "leftovers": leftovers.__dict__}  # fmt: skip
    if output != "table":
        emit(data, output)
    else:
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"{verb} {len(result.deleted)} expired drill namespace(s)"
                   + (f": {', '.join(result.deleted)}" if result.deleted else "")
                   + (f"; {len(result.kept)} still within their expiry" if result.kept else ""))  # fmt: skip
        if leftovers.deleted:
            click.echo(
                f"{verb} {len(leftovers.deleted)} leftover temporary object(s): {', '.join(leftovers.deleted)}"
            )
        for problem in leftovers.errors if not ctx.quiet else []:
            click.echo(f"warning: leftovers: {problem}", err=True)
    if result.errors:
        # Exit 3 when others were deleted (partially failed), 1 when nothing could be.
        failure = PartialFailure if result.deleted else DrError
        raise failure(f"{len(result.errors)} namespace(s) could not be deleted", details=result.errors)
    return ExitCode.OK


COMMANDS = [drill_group]
