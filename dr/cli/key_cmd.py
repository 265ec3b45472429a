"""``dr key list | add | remove | rotate``: the master key's slots (FORMAT.md §3.1).

Several slots may wrap the same master key (e.g. Vault for daily use plus an
offline break-glass key). ``rotate`` rewraps each key's slot with its provider's
newest key version — Vault rewrap, KMS re-encrypt — without touching data
(``key_rotation``); ``remove`` keeps the slots dr.yaml needs (``required_slots``).
"""

from __future__ import annotations

from typing import Any

import click

from dr.cli.context import app
from dr.cli.key_rotation import rotate_keys
from dr.cli.output import Column, emit, output_option
from dr.cli.repo_access import open_repository, provider_lookup, provider_options
from dr.cli.required_slots import required_slots
from dr.cli.slot_check import warn_if_not_unwrappable
from dr.crypto.keyring import KeySlot, UnreadableSlot, shown
from dr.crypto.provider_identity import same_key
from dr.crypto.providers.registry import open_provider
from dr.errors import DrError, ExitCode, InvalidInput, PartialFailure
from dr.repo.locks import Lock


def _row(slot: KeySlot | UnreadableSlot, current: str | None) -> dict[str, Any]:
    if isinstance(slot, UnreadableSlot):
        # Listed so that it can be seen and removed (`dr key remove ID`).
        return {"id": slot.id, "provider": None, "keyVersion": None, "created": None,
                "usedToOpen": False, "error": slot.reason}  # fmt: skip
    return {
        "id": slot.id,
        "provider": slot.provider,
        "keyVersion": slot.wrapped.key_version,
        "created": slot.created.isoformat().replace("+00:00", "Z"),
        "usedToOpen": slot.id == current,
        "error": None,
    }


def _provider_cell(row: dict[str, Any]) -> str:
    if row["error"] is not None:
        return f"(unreadable: {shown(row['error'])})"
    return shown(row["provider"])


COLUMNS = [
    Column("SLOT", lambda r: shown(r["id"])[:8]),
    Column("PROVIDER", _provider_cell),
    Column("KEY VERSION", "keyVersion"),
    Column("CREATED", "created"),
    Column("OPENED WITH", lambda r: "*" if r["usedToOpen"] else ""),
]


@click.group("key")
def key_group() -> None:
    """Manage the key slots that wrap the repository's master key."""


@key_group.command("list")
@output_option()
def list_(output: str) -> None:
    """List key slots: id, provider URI, key version, created."""
    repo = open_repository(app())
    current = repo.slot.id if repo.slot else None
    slots, unreadable = repo.read_slots()
    every: list[KeySlot | UnreadableSlot] = [*slots, *unreadable]
    rows = [_row(s, current) for s in every]
    emit(rows, output, columns=COLUMNS)


@key_group.command("add")
@click.argument("provider_uri", metavar="PROVIDER-URI")
@output_option()
def add(provider_uri: str, output: str) -> None:
    """Wrap the master key with another provider (e.g. an offline break-glass key).

    A local:// key file is created (mode 0600) if it does not exist.
    """
    ctx = app()
    repo = open_repository(ctx)
    provider = open_provider(provider_uri, provider_options(ctx, provider_uri), create=True)
    with Lock(repo, "keys", "key add"):  # two adds at once would both find no slot and add one
        # The same key spelled otherwise (vault:///transit//keys/dr) is no second key: a duplicate slot.
        existing = next((s for s in repo.slots() if same_key(s.provider, provider.uri)), None)
        if existing is not None:
            also = "" if existing.provider == provider.uri else f" as {shown(existing.provider)}"
            raise InvalidInput(
                f"a key slot for {shown(provider.uri)} already exists{also} "
                f"({shown(existing.id)[:8]}, see `dr key list`)"
            )
        slot = repo.add_slot(provider)
    warn_if_not_unwrappable(slot, provider, repo.master)
    if output == "table":
        click.echo(f"added key slot {slot.id[:8]} wrapped by {slot.provider}")
    else:
        emit(_row(slot, None), output)


@key_group.command("remove")
@click.argument("slot", metavar="SLOT")
@click.option(
    "--force",
    is_flag=True,
    help="Remove the last slot of a key provider that dr.yaml lists for this repository (with a warning).",
)
@output_option()
def remove(slot: str, force: bool, output: str) -> None:
    """Remove a key slot by id or unique prefix.

    Refused unless another slot can be unwrapped here to the repository's key, and
    (unless --force) when it is the last slot of a key provider that the
    configuration lists in this repository's keys: what runs with that provider
    (the scheduled backups) could no longer open the repository.
    """
    ctx = app()
    repo = open_repository(ctx)
    required = required_slots(ctx)
    forced: list[str] = []

    def guard(target: KeySlot, slots: list[KeySlot]) -> None:
        needed = required.last_slot_of(target, slots, repo.id) if required else None
        if required is None or needed is None:
            return
        if not force:
            raise InvalidInput(required.refusal(target, needed))
        forced.append(required.warning(target, needed))

    with Lock(repo, "keys", "key remove"):
        removed = repo.remove_slot(slot, provider_lookup(ctx), guard)
    for line in forced:
        click.echo(line, err=True)
    if output == "table":
        what = removed.provider if isinstance(removed, KeySlot) else "unreadable"
        click.echo(f"removed key slot {shown(removed.id)[:8]} ({shown(what)})")
    else:
        emit(_row(removed, None), output)


@key_group.command("rotate")
@output_option()
def rotate(output: str) -> int:
    """Rewrap each key's slot with its provider's newest key version (data untouched).

    The slot is replaced by a new one (new id) before the old one is deleted, so an
    interruption never leaves the repository without a working slot. Older slots of
    the same key (left by a rotation whose delete was refused, e.g. by S3 Object
    Lock) are removed once the new slot unwraps here, not rewrapped again.
    """
    ctx = app()
    repo = open_repository(ctx)
    with Lock(repo, "keys", "key rotate"):
        done = rotate_keys(repo, provider_lookup(ctx))
    if output == "table":
        for r in done.rotated:
            versions = f" (version {r['fromVersion']} -> {r['toVersion']})" if r["toVersion"] else ""
            click.echo(
                f"rotated slot {shown(r['old'])[:8]} -> {r['new'][:8]} {shown(r['provider'])}{versions}"
            )
        for removed in done.removed:
            click.echo(f"removed slot {shown(removed)[:8]}, an older slot of a key rotated")
    else:
        emit({"rotated": done.rotated, "removed": done.removed, "retained": done.retained,
              "failed": done.failed}, output)  # fmt: skip
    for line in done.retained:
        click.echo(f"warning: {line}; a rotation after the retention ends removes it", err=True)
    failures = done.failed
    if failures and not done.rotated:  # nothing was done: failed, not partially
        raise DrError(f"none of {len(failures)} key slot(s) could be rotated", details=failures)
    if failures:
        raise PartialFailure(f"{len(failures)} key slot(s) could not be rotated", details=failures)
    return ExitCode.OK


COMMANDS = [key_group]
