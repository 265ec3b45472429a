"""``dr runbook validate | render``."""

from __future__ import annotations

import click

from dr.errors import NotImplementedYet


@click.group("runbook")
def runbook_group() -> None:
    """Application runbooks: drill steps and the human incident procedure."""


@runbook_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="FILE…")
def validate(files: tuple[str, ...]) -> None:
    """Validate runbooks; one line per problem with file, line and field (exit 2)."""
    raise NotImplementedYet("dr runbook validate")


@runbook_group.command("render")
@click.argument("file", type=click.Path(dir_okay=False), metavar="FILE")
@click.option("--out", type=click.Path(dir_okay=False), metavar="FILE", help="Write here instead of stdout.")
def render(file: str, out: str | None) -> None:
    """Write the human runbook (Markdown) with the exact restore commands."""
    raise NotImplementedYet("dr runbook render")


COMMANDS = [runbook_group]
