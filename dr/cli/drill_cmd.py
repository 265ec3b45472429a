"""``dr drill run | gc``."""

from __future__ import annotations

import click

from dr.cli.output import output_option
from dr.errors import NotImplementedYet


@click.group("drill")
def drill_group() -> None:
    """Restore drills: prove that the latest backup restores and works."""


@drill_group.command("run")
@click.argument("runbook", type=click.Path(dir_okay=False), metavar="RUNBOOK.yaml")
@click.option("--backup", "backup_id", metavar="ID", help="Backup to restore (default: latest of the app).")
@click.option("--keep", is_flag=True, help="Keep the scratch namespace afterwards (for debugging).")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Also write the reports (JSON, Markdown, HTML) here.",
)
@output_option()
def run(runbook: str, backup_id: str | None, keep: bool, report_dir: str | None, output: str) -> None:
    """Restore into a scratch namespace, run the runbook's verification steps, report.

    Exit 0 when every step passed, 4 when a step failed, 1 when the drill could not run.
    """
    raise NotImplementedYet("dr drill run")


@drill_group.command("gc")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@output_option()
def gc(dry_run: bool, output: str) -> None:
    """Delete expired scratch namespaces and leftover temporary objects of crashed runs."""
    raise NotImplementedYet("dr drill gc")


COMMANDS = [drill_group]
