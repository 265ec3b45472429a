"""``dr report drills``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from dr.cli.context import app
from dr.cli.params import NonEmpty
from dr.drill.model import DrillReport
from dr.errors import DrError, ExitCode, InvalidInput
from dr.report.drills import (
    Month,
    apps_with_backup_policy,
    build_monthly_report,
    read_report_dir,
    render_json,
    render_markdown,
)
from dr.report.html import render_html


@click.group("report")
def report_group() -> None:
    """Reports built from the repository."""


class MonthParam(click.ParamType):  # type: ignore[type-arg]
    name = "YYYY-MM"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Month:
        if isinstance(value, Month):
            return value
        try:
            return Month.parse(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


def load_reports(from_dir: str | None, *, quiet: bool = False) -> tuple[list[DrillReport], list[str]]:
    """Where the drill reports come from: ``--from-dir``, else the repositories' ``reports/``.

    The repositories: ``--repo`` when given; else the default one and every repository a drill
    policy's drills use (Config.drill_repository; ``dr drill run --policy`` saves its report there: read only the default, an app
    drilled into another repository would show as never drilled). The default one must open;
    another that does not is a warning, like a damaged report, which is named and left out rather
    than allowed to stop the month's report of all the others. The warnings go to stderr and into
    the report. Unless ``quiet``, a line on a terminal while a repository's reports are read.
    """
    if from_dir is not None:
        return read_report_dir(Path(from_dir)), []
    from dr.cli.progress import read_progress
    from dr.cli.repo_access import open_repository, repository_config
    from dr.drill.run import readable_reports

    ctx = app()
    names: list[str | None] = [None]
    if not ctx.repo_url:
        from dr.cli.status_cmd import policy_runbook

        cfg = ctx.loaded.config
        config_dir = ctx.loaded.config_dir
        for_drills = set()
        for d in cfg.drill_policies:
            # Where `dr drill run --policy` saves the reports: the runbook's backup policy decides only
            # when the drill policy does not, so the runbook is read only then (apps_with_backup_policy
            # reads it too). One that cannot be read is the report's business (the policy's name).
            r = cfg.drill_repository(d)
            if not r and (rb := policy_runbook(d, config_dir, [])) is not None:
                r = cfg.drill_repository(d, rb.spec.backup_policy)
            if r:
                for_drills.add(r)
        names += sorted(for_drills)
    reports: dict[str, DrillReport] = {}
    warnings: list[str] = []
    seen: set[str] = set()
    for name in names:
        url = repository_config(ctx, name).url
        if url in seen:
            continue
        seen.add(url)
        try:
            repo = open_repository(ctx, name)
            with read_progress(repo, quiet=quiet):
                found, bad = readable_reports(repo)
        except DrError as e:
            if name is None:
                raise
            warnings.append(f"cannot read the drill reports of repository {name} ({url}): {e.message}")
            continue
        reports.update((r.id, r) for r in found)
        warnings += [f"drill report {n[:16]} cannot be read and is left out: {why}" for n, why in bad.items()]
    return sorted(reports.values(), key=lambda r: r.started), warnings


@report_group.command("drills")
@click.option(
    "--month", type=MonthParam(), metavar="YYYY-MM", help="Month to report (default: the current month)."
)
@click.option("-o", "--format", "fmt", type=click.Choice(["html", "md", "json"]), default="md", show_default=True,
              help="Output format.")  # fmt: skip
@click.option(
    "--out", type=NonEmpty(click.Path(dir_okay=False)), metavar="FILE", help="Write here instead of stdout."
)
@click.option(
    "--from-dir",
    type=NonEmpty(click.Path(file_okay=False)),
    metavar="DIR",
    help="Read drill reports (JSON) from DIR instead of the repository, e.g. a drill's --report-dir.",
)
def drills(month: Month | None, fmt: str, out: str | None, from_dir: str | None) -> int:
    """Drill results of a month per app: pass/fail, steps, RTO and RPO vs objectives, trend."""
    loaded = app().loaded
    config_dir = loaded.config_dir
    now = datetime.now(UTC)
    # The line is for a page (Markdown, HTML), not for a document that scripts read (as -o json elsewhere).
    reports, warnings = load_reports(from_dir, quiet=app().quiet or fmt == "json")
    for w in [] if app().quiet else warnings:  # --quiet: they are in the report all the same
        click.echo(f"warning: {w}", err=True)
    report = build_monthly_report(
        reports,
        month or Month.of(now),
        apps_with_backup_policy(loaded.config, config_dir),
        generated=now,
        warnings=warnings,
    )
    text = {"json": render_json, "md": render_markdown, "html": render_html}[fmt](report)
    if out:
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as e:
            raise InvalidInput(f"{out}: cannot write: {e.strerror or e}") from None
    else:
        click.echo(text, nl=False)
    return ExitCode.OK


COMMANDS = [report_group]
