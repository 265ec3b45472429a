"""``dr backup`` and ``dr backups list | describe``."""

from __future__ import annotations

import click

from dr.cli.output import output_option
from dr.cli.params import KeyValue
from dr.errors import NotImplementedYet


@click.command("backup")
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Namespace (name or glob) to back up; repeatable.",
)
@click.option("-l", "--selector", metavar="SEL", help="Label selector for the objects to include.")
@click.option(
    "--include-resources",
    multiple=True,
    metavar="R,…",
    help="Only these resource types (plural, kind or plural.group).",
)
@click.option("--exclude-resources", multiple=True, metavar="R,…", help="Leave out these resource types.")
@click.option(
    "--include-cluster-resources",
    type=click.Choice(["auto", "true", "false"]),
    default=None,
    help="auto: cluster-scoped objects the namespaced ones depend on [default: auto].",
)
@click.option("--policy", metavar="NAME", help="Take scope, volumes, hooks and tags from this backup policy.")
@click.option("--name", metavar="NAME", help="A name for the backup (default: policy or 'manual' + time).")
@click.option("--tag", "tags", multiple=True, type=KeyValue("K=V"), help="Tag the backup; repeatable.")
@click.option("--no-data", is_flag=True, help="Resources only, no volume data.")
@output_option()
def backup(
    namespaces: tuple[str, ...],
    selector: str | None,
    include_resources: tuple[str, ...],
    exclude_resources: tuple[str, ...],
    include_cluster_resources: str | None,
    policy: str | None,
    name: str | None,
    tags: tuple[tuple[str, str], ...],
    no_data: bool,
    output: str,
) -> None:
    """Back up Kubernetes resources (and PVC data) into the repository.

    Exit 3 when some items could not be backed up; each is listed.
    """
    raise NotImplementedYet("dr backup")


@click.group("backups")
def backups_group() -> None:
    """List and inspect backups."""


@backups_group.command("list")
@click.option("-n", "--namespace", metavar="NS", help="Only backups that include this namespace.")
@click.option("--policy", metavar="NAME", help="Only backups of this policy.")
@output_option()
def list_(namespace: str | None, policy: str | None, output: str) -> None:
    """List backups, newest last."""
    raise NotImplementedYet("dr backups list")


@backups_group.command("describe")
@click.argument("backup_id", metavar="ID|latest")
@output_option()
def describe(backup_id: str, output: str) -> None:
    """Show one backup: scope, counts per resource type, volumes, warnings, errors, timings."""
    raise NotImplementedYet("dr backups describe")


COMMANDS = [backup, backups_group]
