"""``dr runbook validate | render | verify``."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dr.cli.output import emit, output_option
from dr.cli.params import KeyValue, NonEmpty, pairs_to_dict
from dr.config import duration_text
from dr.drill.model import DrillReport, StepResult, human_duration
from dr.errors import DrError, ExitCode, InvalidInput, VerificationFailed
from dr.redact import redact
from dr.runbook.model import Runbook, load_runbook
from dr.runbook.render import BackupSummary, render_markdown

if TYPE_CHECKING:
    from dr.repo.repository import Repository

log = logging.getLogger(__name__)


@click.group("runbook")
def runbook_group() -> None:
    """Application runbooks: drill steps and the human incident procedure."""


def _check(path: Path) -> tuple[Runbook | None, list[str]]:
    try:
        return load_runbook(path), []
    except InvalidInput as e:
        # Problems of the document, one per line; a file that cannot be read
        # or parsed at all has only the message.
        return None, list(e.details) or [e.message]


def _timeout_warnings(rb: Runbook) -> list[str]:
    """Verification steps whose own timeout is longer than the whole drill's: valid, but the
    drill's timeout cuts each step to what is left of it, so the longer wait never happens."""
    drill = rb.spec.drill.timeout
    return [
        f"verification step {s.name!r}: its timeout ({duration_text(s.timeout)}) is longer than "
        f"spec.drill.timeout ({duration_text(drill)}), which cuts it"
        for s in rb.spec.verification
        if s.timeout > drill
    ]


@runbook_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=NonEmpty(click.Path(dir_okay=False)), metavar="FILE…")
@output_option()
def validate(files: tuple[str, ...], output: str) -> int:
    """Validate runbooks; one line per problem with file, line and field (exit 2).

    Every file is checked, also after one was found invalid.
    """
    from dr.cli.context import app

    results: list[dict[str, Any]] = []
    problems: list[str] = []
    for f in files:
        rb, found = _check(Path(f))
        problems += found
        entry: dict[str, Any] = {"file": f, "valid": rb is not None, "problems": found}
        if rb is not None:
            warnings = _timeout_warnings(rb)
            entry.update(
                app=rb.name,
                verificationSteps=[s.name for s in rb.spec.verification],
                procedureSteps=len(rb.spec.procedure),
                warnings=warnings,
            )
            # On stderr whatever the output format, as dr runbook verify's; not with --quiet
            # (as dr config validate's schedule warnings): -o json carries them all the same.
            for w in [] if app().quiet else warnings:
                click.echo(f"warning: {f}: {w}", err=True)
        results.append(entry)
    invalid = [r for r in results if not r["valid"]]
    if output == "table":
        for r in results:
            if r["valid"]:
                click.echo(
                    f"{r['file']}: valid ({r['app']}: {len(r['verificationSteps'])} verification steps, "
                    f"{r['procedureSteps']} procedure steps)"
                )
    else:
        emit({"valid": not invalid, "files": results}, output)
    if invalid:
        n = len(invalid)
        summary = f"{n} of {len(results)} runbook{'s' if len(results) != 1 else ''} invalid"
        # JSON/YAML already carry the problems; the table view lists them on stderr.
        raise InvalidInput(summary, problems=problems if output == "table" else [])
    return ExitCode.OK


def _repository(name: str | None = None) -> Repository | None:
    """A configured repository (the default one if None), or None when it cannot be opened
    (the runbook still renders, offline)."""
    from dr.cli.context import app
    from dr.cli.repo_access import open_repository

    try:
        return open_repository(app(), name)
    except DrError as e:
        log.warning("repository not available, the runbook shows no backup or drill: %s", e.message)
        return None


def _repositories_of(rb: Runbook) -> tuple[str | None, str | None]:
    """Where the app's backups and its drill reports are: the repository of the backup
    policy the runbook names, and of the drill policy that drills this app (None: the
    default one). `dr backup --policy` and `dr drill run --policy` write there."""
    from dr.cli.context import app
    from dr.cli.status_cmd import runbook_app

    ctx = app()
    if ctx.repo_url:
        return None, None  # --repo: the one given, for both
    config = ctx.loaded.config
    default = config.repository(None)
    backups = config.backup_repository(rb.spec.backup_policy)
    config_dir = ctx.loaded.config_dir
    # Where its drills report: by the rule of `dr drill run` (Config.drill_repository, as
    # `dr status` has it too) for the drill policy that drills this app, if any.
    drills = config.drill_repository(
        next((d for d in config.drill_policies if runbook_app(d, config_dir, []) == rb.name), None),
        rb.spec.backup_policy,
    )
    # The default one by its name too, so that it is opened once.
    return backups or (default.name if default else None), drills or (default.name if default else None)


def latest_backup_for(repo: Repository, rb: Runbook) -> BackupSummary | None:
    """The newest completed backup of the runbook's app (with its volumes' data, if one has it)."""
    from dr.drill.run import app_backups
    from dr.repo.snapshots import newest_with_data

    good = [s for s in app_backups(repo, rb) if s.phase == "Completed"]
    if not good:
        return None
    # The one `dr restore latest` takes: not a newer one without its volumes' data.
    s = newest_with_data(good)
    size = sum(v.get("bytes", 0) for v in s.app.get("volumes", [])) + sum(
        st.size for st in s.streams.values()
    )
    return BackupSummary(id=s.id, time=s.time, namespaces=s.namespaces, size=size)


def latest_passing_drill_for(repo: Repository, rb: Runbook) -> DrillReport | None:
    """The newest passing drill of the runbook's app."""
    from dr.drill.run import load_reports

    passed = [r for r in load_reports(repo) if r.app == rb.name and r.passed]
    return passed[-1] if passed else None


def _shown_url(name: str | None) -> str | None:
    """The URL of the repository the page's backups come from, redacted; None if not configured."""
    from dr.cli.context import app
    from dr.cli.repo_access import repository_config
    from dr.urls import redact_url

    try:
        return redact_url(repository_config(app(), name).url)
    except DrError:
        return None


def _shown_config() -> str:
    """The configuration the page was made with: the dr.yaml as an absolute path (a relative
    one means nothing in the shell of the person paged), or "built-in defaults"."""
    from dr.cli.context import app

    loaded = app().loaded
    return str(Path(loaded.source).resolve()) if loaded.config_dir is not None else loaded.source


def _warn_of_undefined_policy(rb: Runbook) -> None:
    """A warning when the runbook's backup policy is not one of the loaded dr.yaml's: the page's
    ``--policy`` lines would then refuse to run in the incident (a misspelt name, a renamed policy).
    Not with the built-in defaults, which define no policies: the page may be made offline."""
    from dr.cli.context import app

    loaded = app().loaded
    name = rb.spec.backup_policy
    if name and loaded.config_dir is not None and loaded.config.backup_policy(name) is None:
        log.warning(
            "backup policy %r (spec.backupPolicy) is not defined in %s: the page's dr lines that name it "
            "will not run",
            name,
            loaded.source,
        )


@runbook_group.command("render")
@click.argument("file", type=NonEmpty(click.Path(dir_okay=False)), metavar="FILE")
@click.option(
    "--out", type=NonEmpty(click.Path(dir_okay=False)), metavar="FILE", help="Write here instead of stdout."
)
def render(file: str, out: str | None) -> int:
    """Write the human runbook (Markdown) with the exact restore commands."""
    rb = load_runbook(Path(file))
    if out and os.path.exists(out) and os.path.samefile(out, file):
        # Not written over: the YAML is the source of the page, and of the drills.
        raise InvalidInput(f"--out {out}: that is the runbook {file} itself; give another file")
    _warn_of_undefined_policy(rb)
    backups_in, drills_in = _repositories_of(rb)
    # Each opened (or found missing, and said so) once, also when both are the same one.
    backup_repo = _repository(backups_in)
    drill_repo = backup_repo if drills_in == backups_in else _repository(drills_in)
    from dr.cli.context import app
    from dr.cli.progress import read_progress

    latest_backup: BackupSummary | None = None
    latest_drill: DrillReport | None = None
    # A line on a terminal while every snapshot, and then every drill report, is read.
    if backup_repo is not None:
        with read_progress(backup_repo, quiet=app().quiet):
            latest_backup = latest_backup_for(backup_repo, rb)
    if drill_repo is not None:
        with read_progress(drill_repo, quiet=app().quiet):
            latest_drill = latest_passing_drill_for(drill_repo, rb)
    text = render_markdown(
        rb,
        source=file,
        latest_backup=latest_backup,
        latest_drill=latest_drill,
        generated=datetime.now(UTC),
        repository=_shown_url(backups_in),
        config=_shown_config(),
    )
    if out:
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as e:
            raise InvalidInput(f"{out}: cannot write: {e.strerror or e}") from None
    else:
        click.echo(text, nl=False)
    return ExitCode.OK


def step_line(r: StepResult) -> str:
    """One step's result in one line: passed or not, how long it took, why."""
    return (
        f"[{'pass' if r.passed else 'FAIL'}] {r.name} ({r.type}, {human_duration(r.duration)}): {r.message}"
    )


def left_behind(results: list[StepResult], problems: list[str]) -> list[str]:
    """What ``dr runbook verify`` could not delete again: a job step's Job (its ``cleanup``
    detail) and ``problems`` (probe Jobs, copies of dr-config)."""
    jobs = [
        f"step {r.name} ({r.type}): cannot delete Job {r.details.get('namespace')}/{r.details.get('job')}: "
        + str(r.details["cleanup"]).removeprefix("not deleted: ")
        for r in results
        if str(r.details.get("cleanup", "deleted")) != "deleted"
    ]
    return jobs + problems


@runbook_group.command("verify")
@click.argument("file", type=NonEmpty(click.Path(dir_okay=False)), metavar="FILE")
@click.option("-n", "--namespace", metavar="NS",
              help="Check this namespace (default: the runbook's; with several, its first).")  # fmt: skip
@click.option("--namespace-mapping", multiple=True, type=KeyValue("OLD=NEW"),
              help="Check NEW for the runbook's namespace OLD (as restored with this mapping); repeatable.")  # fmt: skip
@output_option()
def verify(
    file: str, namespace: str | None, namespace_mapping: tuple[tuple[str, str], ...], output: str
) -> int:
    """Run the runbook's verification steps against live namespaces, as a drill does (after a real restore).

    Restores nothing and creates no namespace: the steps run where the app is, and what they
    create (a job step's Job, a data step's probe Job and a copy of dr-config for it) is deleted
    again; what cannot be (the identity may not delete it), and what a step could not check
    without failing, is a warning on stderr, also with --quiet, and in -o json's "warnings".
    Exit 0 when every step passed, 4 when a step failed, 2 when the runbook is invalid or a
    namespace does not exist (no step is run).
    """
    from dr.cli.context import app
    from dr.cli.kube_access import connect_kube, steps_api_client
    from dr.cli.progress import item_lines
    from dr.cli.volume_access import ConfigCopyingProbe, MoverConfigCopies
    from dr.drill.probe_job import JobDataProbe
    from dr.drill.verify import (
        VerifyDeps,
        checked_namespaces,
        missing_namespaces,
        run_verification,
        target_namespaces,
    )
    from dr.kube.exec import KubernetesExec

    ctx = app()
    rb = load_runbook(Path(file))
    targets = target_namespaces(rb, namespace, pairs_to_dict(namespace_mapping, "--namespace-mapping"))
    checked = checked_namespaces(rb, targets)
    kube = connect_kube(ctx)
    missing = missing_namespaces(kube, checked)
    if missing:
        raise InvalidInput(
            f"namespace{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found: "
            f"no step of {rb.name} was run"
        )
    log.info("verifying %s in %s: %d step(s)", rb.name, ", ".join(checked), len(rb.spec.verification))
    mover = ctx.loaded.config.mover
    api = steps_api_client(kube)
    copies = MoverConfigCopies(kube, mover, f"verify-{rb.name}", credentials=False)
    probe = JobDataProbe(kube, mover, run_id=f"verify-{rb.name}")
    deps = VerifyDeps(api=api, exec=KubernetesExec(api), data_probe=ConfigCopyingProbe(kube, probe, copies))
    table = output == "table"
    # A step's line as it finishes (a run stopped by Ctrl-C has shown what passed); JSON/YAML
    # are one document, at the end.
    bar = item_lines(f"verify {rb.name}", len(rb.spec.verification), quiet=ctx.quiet or not table)
    results: list[StepResult] = []

    def finished(r: StepResult) -> None:
        results.append(r)
        done(step_line(r) if table else None)

    try:
        with bar as done:
            run_verification(rb, targets, deps, on_result=finished)
    finally:
        # What a step could not check and what is left in the app's namespace: not progress but
        # problems, on stderr even with --quiet (and in the JSON document), also when a signal cut
        # the run short.
        warnings = [w for r in results for w in r.warning_lines()]
        warnings += left_behind(results, probe.problems + copies.delete_all())
        for w in warnings:
            click.echo(redact(f"warning: {w}"), err=True)
    failed = [r for r in results if not r.passed]
    if not table:
        emit({"app": rb.name, "runbook": file, "namespaces": targets, "passed": not failed,
              "steps": [r.model_dump(mode="json", by_alias=True) for r in results],
              "warnings": warnings}, output)  # fmt: skip
    if failed:
        raise VerificationFailed(
            f"verification of {rb.name} in {', '.join(checked)} failed: "
            f"{len(failed)} of {len(results)} step(s) did not pass",
            details=[r.failure_line() for r in failed],
        )
    return ExitCode.OK


COMMANDS = [runbook_group]
