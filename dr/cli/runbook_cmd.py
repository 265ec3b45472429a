"""``dr runbook validate | render``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dr.cli.output import emit, output_option
from dr.drill.model import DrillReport
from dr.errors import DrError, ExitCode, InvalidInput
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


@runbook_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="FILE…")
@output_option()
def validate(files: tuple[str, ...], output: str) -> int:
    """Validate runbooks; one line per problem with file, line and field (exit 2).

    Every file is checked, also after one was found invalid.
    """
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    for f in files:
        rb, found = _check(Path(f))
        problems += found
        entry: dict[str, Any] = {"file": f, "valid": rb is not None, "problems": found}
        if rb is not None:
            entry.update(
                app=rb.name,
                verificationSteps=[s.name for s in rb.spec.verification],
                procedureSteps=len(rb.spec.procedure),
            )
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


@runbook_group.command("render")
@click.argument("file", type=click.Path(dir_okay=False), metavar="FILE")
@click.option("--out", type=click.Path(dir_okay=False), metavar="FILE", help="Write here instead of stdout.")
def render(file: str, out: str | None) -> int:
    """Write the human runbook (Markdown) with the exact restore commands."""
    rb = load_runbook(Path(file))
    backups_in, drills_in = _repositories_of(rb)
    # Each opened (or found missing, and said so) once, also when both are the same one.
    backup_repo = _repository(backups_in)
    drill_repo = backup_repo if drills_in == backups_in else _repository(drills_in)
    text = render_markdown(
        rb,
        source=file,
        latest_backup=latest_backup_for(backup_repo, rb) if backup_repo is not None else None,
        latest_drill=latest_passing_drill_for(drill_repo, rb) if drill_repo is not None else None,
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


COMMANDS = [runbook_group]
