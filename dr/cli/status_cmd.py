"""``dr status``."""

from __future__ import annotations

import click

from dr.cli.output import output_option
from dr.errors import NotImplementedYet


@click.command("status")
@output_option()
def status(output: str) -> None:
    """Last backup and drill per policy, their age against the RPO, namespaces without a policy."""
    raise NotImplementedYet("dr status")


COMMANDS = [status]
