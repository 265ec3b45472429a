"""``dr report drills``."""

from __future__ import annotations

import click

from dr.errors import NotImplementedYet


@click.group("report")
def report_group() -> None:
    """Reports built from the repository."""


@report_group.command("drills")
@click.option("--month", metavar="YYYY-MM", help="Month to report (default: the current month).")
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), metavar="FILE", help="Write here instead of stdout.")
def drills(month: str | None, fmt: str, out: str | None) -> None:
    """Drill results of a month per app: pass/fail, steps, RTO and RPO vs objectives, trend."""
    raise NotImplementedYet("dr report drills")


COMMANDS = [report_group]
