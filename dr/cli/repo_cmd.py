"""``dr repo init | info | check``, ``dr verify``, ``dr forget``, ``dr prune``."""

from __future__ import annotations

import click

from dr.cli.output import output_option
from dr.cli.params import read_data_option
from dr.errors import NotImplementedYet


@click.group("repo")
def repo_group() -> None:
    """Create and inspect the backup repository."""


@repo_group.command("init")
@click.option(
    "--key",
    "key_uri",
    metavar="PROVIDER-URI",
    help="Key provider that wraps the new master key "
    "(default: the repository's first configured key, or a new local key file).",
)
@output_option()
def init(key_uri: str | None, output: str) -> None:
    """Create a new, empty repository with a fresh master key."""
    raise NotImplementedYet("dr repo init")


@repo_group.command("info")
@output_option()
def info(output: str) -> None:
    """Show the repository's id, format version, key slots and size."""
    raise NotImplementedYet("dr repo info")


@repo_group.command("check")
@read_data_option
@output_option()
def check(read_data: float | None, output: str) -> None:
    """Check the repository's structure (exit 4 when something is wrong)."""
    raise NotImplementedYet("dr repo check")


@click.command("verify")
@click.argument("backup_id", required=False, metavar="[ID|latest]")
@click.option("--all", "all_", is_flag=True, help="Verify every backup.")
@read_data_option
@output_option()
def verify(backup_id: str | None, all_: bool, read_data: float | None, output: str) -> None:
    """Verify a backup (default: latest): every object it needs exists and is intact.

    Exit 4 when a problem is found; each damaged object is named.
    """
    raise NotImplementedYet("dr verify")


@click.command("forget")
@click.option("--keep-last", type=click.IntRange(min=0), help="Keep the N most recent backups.")
@click.option("--keep-hourly", type=click.IntRange(min=0), help="Keep the last backup of each of N hours.")
@click.option("--keep-daily", type=click.IntRange(min=0), help="Keep the last backup of each of N days.")
@click.option("--keep-weekly", type=click.IntRange(min=0), help="Keep the last backup of each of N weeks.")
@click.option("--keep-monthly", type=click.IntRange(min=0), help="Keep the last backup of each of N months.")
@click.option("--keep-yearly", type=click.IntRange(min=0), help="Keep the last backup of each of N years.")
@click.option(
    "--policy", metavar="NAME", help="Use the retention of this backup policy and only its backups."
)
@click.option(
    "--prune", is_flag=True, help="Also delete data no longer referenced (takes the exclusive lock)."
)
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@output_option()
def forget(
    keep_last: int | None,
    keep_hourly: int | None,
    keep_daily: int | None,
    keep_weekly: int | None,
    keep_monthly: int | None,
    keep_yearly: int | None,
    policy: str | None,
    prune: bool,
    dry_run: bool,
    output: str,
) -> None:
    """Remove backups by a retention policy (grandfather-father-son), optionally prune."""
    raise NotImplementedYet("dr forget")


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
@output_option()
def prune(dry_run: bool, output: str) -> None:
    """Delete data no longer referenced by any backup, under the exclusive lock."""
    raise NotImplementedYet("dr prune")


COMMANDS = [repo_group, verify, forget, prune]
