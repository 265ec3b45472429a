"""``dr key list | add | remove | rotate``: the master key's slots."""

from __future__ import annotations

import click

from dr.cli.output import output_option
from dr.errors import NotImplementedYet


@click.group("key")
def key_group() -> None:
    """Manage the key slots that wrap the repository's master key."""


@key_group.command("list")
@output_option()
def list_(output: str) -> None:
    """List key slots: id, provider URI, key version, created."""
    raise NotImplementedYet("dr key list")


@key_group.command("add")
@click.argument("provider_uri", metavar="PROVIDER-URI")
@output_option()
def add(provider_uri: str, output: str) -> None:
    """Wrap the master key with another provider (e.g. an offline break-glass key)."""
    raise NotImplementedYet("dr key add")


@key_group.command("remove")
@click.argument("slot", metavar="SLOT")
def remove(slot: str) -> None:
    """Remove a key slot (never the last one)."""
    raise NotImplementedYet("dr key remove")


@key_group.command("rotate")
@output_option()
def rotate(output: str) -> None:
    """Rewrap every slot with its provider's newest key version (data untouched)."""
    raise NotImplementedYet("dr key rotate")


COMMANDS = [key_group]
