"""``dr restore``."""

from __future__ import annotations

import click

from dr.cli.output import output_option
from dr.cli.params import KeyValue
from dr.errors import NotImplementedYet


@click.command("restore")
@click.argument("backup_id", metavar="ID|latest")
@click.option(
    "--namespace-mapping",
    multiple=True,
    type=KeyValue("OLD=NEW"),
    help="Restore namespace OLD as NEW; repeatable.",
)
@click.option("--include-resources", multiple=True, metavar="R,…", help="Only these resource types.")
@click.option("--exclude-resources", multiple=True, metavar="R,…", help="Not these resource types.")
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Only these namespaces of the backup; repeatable.",
)
@click.option("-l", "--selector", metavar="SEL", help="Only objects matching this label selector.")
@click.option(
    "--existing",
    type=click.Choice(["skip", "update", "recreate"]),
    default="skip",
    show_default=True,
    help="What to do with objects that already exist.",
)
@click.option(
    "--storage-class-mapping",
    multiple=True,
    type=KeyValue("OLD=NEW"),
    help="Restore PVCs of storage class OLD with class NEW; repeatable.",
)
@click.option("--preserve-nodeports", is_flag=True, help="Keep Services' nodePorts.")
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (create/update/skip per object) and change nothing."
)
@click.option("--no-data", is_flag=True, help="Restore manifests only, no volume data.")
@output_option()
def restore(
    backup_id: str,
    namespace_mapping: tuple[tuple[str, str], ...],
    include_resources: tuple[str, ...],
    exclude_resources: tuple[str, ...],
    namespaces: tuple[str, ...],
    selector: str | None,
    existing: str,
    storage_class_mapping: tuple[tuple[str, str], ...],
    preserve_nodeports: bool,
    dry_run: bool,
    no_data: bool,
    output: str,
) -> None:
    """Restore a backup (ID or 'latest') into this cluster.

    Idempotent and resumable: run it again after an interruption. Exit 3 when
    some items failed (each is listed), the rest restored.
    """
    raise NotImplementedYet("dr restore")


COMMANDS = [restore]
