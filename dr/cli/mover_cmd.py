"""``dr mover backup | restore``: the data path, run inside mover Jobs and by the benchmark."""

from __future__ import annotations

import click

from dr.cli.output import output_option
from dr.cli.params import KeyValue
from dr.errors import NotImplementedYet


@click.group("mover")
def mover_group() -> None:
    """Data mover: copy a directory into or out of the repository."""


@mover_group.command("backup")
@click.argument("path", type=click.Path(exists=True, file_okay=False), metavar="PATH")
@click.option("--parent", metavar="ID", help="Snapshot to compare with (unchanged files are not read again).")
@click.option("--tag", "tags", multiple=True, type=KeyValue("K=V"), help="Tag the snapshot; repeatable.")
@output_option()
def backup(path: str, parent: str | None, tags: tuple[tuple[str, str], ...], output: str) -> None:
    """Back up directory PATH; prints the new volume snapshot's id."""
    raise NotImplementedYet("dr mover backup")


@mover_group.command("restore")
@click.argument("snapshot_id", metavar="ID")
@click.argument("target", type=click.Path(file_okay=False), metavar="TARGET")
@click.option(
    "--path", "paths", multiple=True, metavar="P", help="Only this path (file or directory); repeatable."
)
@output_option()
def restore(snapshot_id: str, target: str, paths: tuple[str, ...], output: str) -> None:
    """Restore volume snapshot ID into directory TARGET."""
    raise NotImplementedYet("dr mover restore")


COMMANDS = [mover_group]
