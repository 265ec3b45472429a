"""``dr backup`` and ``dr backups list | describe``."""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

import click

from dr.backup.run import BackupRequest, run_backup
from dr.backup.scope import BackupScope
from dr.cli.context import AppContext, app
from dr.cli.kube_access import connect_kube
from dr.cli.output import Column, emit, output_option
from dr.cli.params import NonEmpty, Tag, check_namespace_names, pairs_to_dict, split_csv
from dr.cli.progress import read_progress
from dr.cli.repo_access import open_repository, policy_repository, required_backup_policy, searched
from dr.cli.volume_access import volume_backup_step
from dr.config import NAME_MAX, NAME_PATTERN, BackupPolicy, camel
from dr.errors import DrError, ExitCode, InvalidInput, PartialFailure
from dr.observe.run_hooks import observe_backup
from dr.repo.snapshots import Snapshot, find_snapshot, partial_if_unreadable, readable_snapshots


def _policy(ctx: AppContext, name: str | None) -> BackupPolicy | None:
    if not name:
        return None
    return required_backup_policy(ctx, name)


def _scope(
    pol: BackupPolicy | None,
    namespaces: tuple[str, ...],
    selector: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    cluster: str | None,
) -> BackupScope:
    base: dict[str, Any] = dataclasses.asdict(pol.scope) if pol else {}
    data = {
        "namespaces": list(namespaces) or base.get("namespaces", []),
        "selector": selector if selector is not None else base.get("selector"),
        "include_resources": split_csv(include) or base.get("include_resources", []),
        "exclude_resources": split_csv(exclude) or base.get("exclude_resources", []),
        "include_cluster_resources": cluster or base.get("include_cluster_resources", "auto"),
    }
    try:
        return BackupScope.model_validate(data)
    except ValueError as e:
        raise InvalidInput(f"invalid backup scope: {e}") from None


def summary(snap: Snapshot) -> dict[str, Any]:
    a = snap.app
    return {
        "id": snap.id,
        "shortId": snap.short_id,
        "name": snap.name,
        "policy": snap.policy,
        "time": snap.time.isoformat(),
        "namespaces": snap.namespaces,
        "phase": snap.phase,
        "objects": a.get("total", 0),
        "volumes": len(a.get("volumes", [])),
        "errors": len(a.get("errors", [])),
        "tags": snap.tags,
    }


@click.command("backup")
@click.option("-n", "--namespace", "namespaces", multiple=True, metavar="NS",
              help="Namespace (name or glob) to back up; repeatable.")  # fmt: skip
@click.option("-l", "--selector", metavar="SEL", help="Label selector for the objects to include.")
@click.option("--include-resources", multiple=True, metavar="R,…",
              help="Only these resource types (plural, kind or plural.group).")  # fmt: skip
@click.option("--exclude-resources", multiple=True, metavar="R,…", help="Leave out these resource types.")
@click.option("--include-cluster-resources", type=click.Choice(["auto", "true", "false"]), default=None,
              help="auto: cluster-scoped objects the namespaced ones depend on [default: auto].")  # fmt: skip
@click.option("--policy", metavar="NAME", type=NonEmpty(),
              help="Take scope, volumes, hooks and tags from this backup policy.")  # fmt: skip
@click.option("--name", metavar="NAME", help="A name for the backup (default: the policy's, or 'manual').")
@click.option("--tag", "tags", multiple=True, type=Tag(), help="Tag the backup; repeatable.")
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
) -> int:
    """Back up Kubernetes resources (and PVC data) into the repository.

    Exit 3 when some items could not be backed up; each is listed.
    """
    ctx = app()
    if name is not None and (len(name) > NAME_MAX or not re.match(NAME_PATTERN, name)):
        # It names the backup's id, its metrics group and textfile (dr-backup.NAME.prom), so
        # it follows the rule of policy names; a '/' made a path outside the textfile directory.
        raise InvalidInput(
            f"--name {name!r}: lowercase letters, digits and '-', starting and ending with a letter or digit, "
            f"at most {NAME_MAX} characters"
        )
    check_namespace_names(namespaces)
    pol = _policy(ctx, policy)
    scope = _scope(pol, namespaces, selector, include_resources, exclude_resources, include_cluster_resources)
    all_tags = {**(pol.tags if pol else {}), **pairs_to_dict(tags, "--tag")}
    request = BackupRequest(scope=scope, name=name or (pol.name if pol else "manual"), policy=pol.name if pol else None,
                            tags=all_tags, dr_namespace=ctx.loaded.config.mover.namespace,
                            # A typed -n that does not exist is a mistake; a policy's namespace may be gone in
                            # an incident, and its scheduled backups must go on for the rest.
                            missing_namespaces="error" if namespaces else "warn")  # fmt: skip
    repo = open_repository(ctx, pol.repository if pol else None)
    kube = connect_kube(ctx)
    step = None if no_data or (pol and pol.volumes.mode == "none") else volume_backup_step(ctx, pol)
    t0 = time.monotonic()
    # Metrics and events, even on failure; a line on a terminal while every backup (each claim's
    # parent snapshot, read by the volume step) or the index is read.
    with (
        observe_backup(ctx.loaded.config, kube, request) as observed,
        read_progress(repo, quiet=ctx.quiet or output != "table"),
    ):
        outcome = observed(run_backup(kube, repo, request, volume_step=step))
    snap = outcome.snapshot
    result = {
        **summary(snap),
        **{
            k: snap.app.get(k)
            # "owned" and "skipped" (why -> how many left out on purpose): what a backup
            # leaves out is said by the backup itself, not only by `dr backups describe`.
            for k in (
                "counts",
                "owned",
                "skipped",
                "excludedNamespaces",
                "volumes",
                "errors",
                "warnings",
                "timings",
            )
        },
    }
    if output != "table":
        emit(result, output)
    else:
        click.echo(
            f"backup {snap.short_id} ({snap.name}): {snap.phase}, {outcome.resources.total} objects in "
            f"{len(snap.namespaces)} namespace(s), {len(outcome.volumes.volumes)} volume(s), "
            f"{time.monotonic() - t0:.1f}s"
        )
        for w in [] if ctx.quiet else snap.app.get("warnings", []):
            click.echo(f"warning: {w}", err=True)
    if outcome.phase == "Failed":
        raise DrError(f"backup {snap.short_id} failed: nothing was backed up, {len(outcome.errors)} item(s) "
                      "failed", details=outcome.errors)  # fmt: skip
    if outcome.errors:
        raise PartialFailure(f"backup {snap.short_id} partially failed: {len(outcome.errors)} item(s)",
                             details=outcome.errors)  # fmt: skip
    return ExitCode.OK


@click.group("backups")
def backups_group() -> None:
    """List and inspect backups."""


@backups_group.command("list")
@click.option(
    "-n", "--namespace", metavar="NS", type=NonEmpty(), help="Only backups that include this namespace."
)
@click.option(
    "--policy",
    metavar="NAME",
    type=NonEmpty(),
    help="Only backups of this policy (in its repository, when dr.yaml names one).",
)
@output_option()
def list_(namespace: str | None, policy: str | None, output: str) -> None:
    """List backups, newest last."""
    ctx = app()
    repo = open_repository(ctx, policy_repository(ctx, policy))
    with read_progress(repo, quiet=ctx.quiet or output != "table"):
        backups, unreadable = readable_snapshots(repo, "backup")
    snaps = [s for s in backups
             if (not namespace or namespace in s.namespaces) and (not policy or s.policy == policy)]  # fmt: skip
    rows = [summary(s) for s in snaps]
    emit(
        rows,
        output,
        columns=[
            Column("ID", "shortId"), Column("NAME", "name"), Column("TIME", "time"),
            Column("NAMESPACES", "namespaces"), Column("PHASE", "phase"),
            Column("OBJECTS", "objects", "right"), Column("VOLUMES", "volumes", "right"),
        ],
    )  # fmt: skip
    if not rows and output == "table" and not ctx.quiet:
        # An empty table alone reads "there are no backups"; maybe they are elsewhere.
        which = (f" of policy {policy!r}" if policy else "") + (
            f" of namespace {namespace!r}" if namespace else ""
        )
        click.echo(f"no backup{which} in {searched(ctx, repo, policy)}", err=True)
    partial_if_unreadable(unreadable)  # a damaged snapshot may be a backup of the list


# How the scope's fields read in `dr backups describe` (a snapshot keeps BackupScope's names).
_SCOPE_WORDS = {
    "selector": "selector",
    "include_resources": "include resources",
    "exclude_resources": "exclude resources",
    "include_cluster_resources": "cluster resources",
}


def scope_doc(scope: dict[str, Any]) -> dict[str, Any]:
    """A backup's scope with the field names of the rest of the output and of dr.yaml's
    ``scope`` (``includeResources``): a snapshot stores BackupScope's (``include_resources``)."""
    return {camel(k): v for k, v in scope.items()}


def scope_text(scope: dict[str, Any]) -> str:
    """A backup's scope in words: ``namespaces shop, billing; selector app=web; cluster
    resources auto``, leaving out what is not set (every namespace when none is named)."""
    parts = [f"namespaces {', '.join(scope.get('namespaces') or []) or 'all'}"]
    for key, value in scope.items():
        if key == "namespaces" or value in (None, "", []):
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{_SCOPE_WORDS.get(key, key.replace('_', ' '))} {shown}")
    return "; ".join(parts)


@backups_group.command("describe")
@click.argument("backup_id", metavar="ID|latest")
@output_option()
def describe(backup_id: str, output: str) -> None:
    """Show one backup: scope, counts per resource type, volumes, warnings, errors, timings."""
    ctx = app()
    repo = open_repository(ctx)
    # Backups only: a volume snapshot's id prefix is not a backup (nor makes one ambiguous).
    with read_progress(repo, quiet=ctx.quiet or output != "table"):  # `latest` reads every snapshot
        snap = find_snapshot(repo, backup_id, kind="backup", what="backup")
    data = snap.to_doc()
    data.pop("streams", None)
    if output != "table":
        if isinstance(data.get("app", {}).get("scope"), dict):
            data["app"]["scope"] = scope_doc(data["app"]["scope"])
        emit(data, output)
        return
    a = snap.app
    click.echo(f"backup {snap.id}")
    click.echo(f"  name: {snap.name}   policy: {snap.policy or '-'}   phase: {snap.phase}")
    click.echo(
        f"  time: {snap.time.isoformat()}   host: {snap.hostname}   cluster: {a.get('clusterVersion', '-')}"
    )
    click.echo(f"  namespaces: {', '.join(snap.namespaces) or '-'}")
    click.echo(f"  scope: {scope_text(a.get('scope') or {})}")
    if a.get("excludedNamespaces"):
        click.echo(f"  left out (dr's own, not named): {', '.join(a['excludedNamespaces'])}")
    click.echo(f"  objects: {a.get('total', 0)} ({a.get('owned', 0)} owned by controllers)")
    for t, n in sorted((a.get("counts") or {}).items()):
        click.echo(f"    {t}: {n}")
    if a.get("skipped"):  # left out on purpose (service-account token secrets, ...): said, not silent
        click.echo(
            f"  left out on purpose: {', '.join(f'{why}: {n}' for why, n in sorted(a['skipped'].items()))}"
        )
    for v in a.get("volumes", []):
        if v.get("skipped"):  # not "0 bytes, snapshot None": its data is not in this backup
            click.echo(f"  volume {v.get('namespace')}/{v.get('pvc')}: not backed up: {v['skipped']}")
            continue
        click.echo(f"  volume {v.get('namespace')}/{v.get('pvc')}: {v.get('method', '-')}, "
                   f"{v.get('bytes', 0):,} bytes, {v.get('files', 0)} files, snapshot {str(v.get('snapshotId'))[:8]}"
                   + (f", error: {v['error']}" if v.get("error") else ""))  # fmt: skip
    for w in a.get("warnings", []):
        click.echo(f"  warning: {w}")
    for e in a.get("errors", []):
        click.echo(f"  error: {e}")
    t = a.get("timings") or {}
    click.echo("  timings: " + ", ".join(f"{k} {v}s" for k, v in t.items()))


COMMANDS = [backup, backups_group]
