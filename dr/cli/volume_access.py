"""Wire the volume engine (mover Jobs, hooks, dumps) into ``dr backup`` and ``dr restore``.

The movers open the repository themselves, inside the cluster: they get the
repository URL on their command line and dr.yaml (repository options, key
providers) from the ``dr-config`` ConfigMap, credentials from the Secret named
in ``mover.credentialsSecret``. This module only builds those contexts from
the active configuration and turns the engine's results into what the
snapshot records.
"""

from __future__ import annotations

import logging
from typing import Any

from dr.backup.hooks import DumpRecord, run_dump_hooks
from dr.backup.run import VolumePhase, VolumeStep
from dr.backup.volumes import (
    RepositorySnapshotFinder,
    VolumeBackupContext,
    VolumeResult,
    backup_volumes,
)
from dr.cli.context import AppContext
from dr.cli.repo_access import repository_config
from dr.config import BackupPolicy, VolumeOptions
from dr.kube.client import KubeClient
from dr.kube.exec import KubernetesExec
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot, list_snapshots
from dr.restore.plan import RestoreItemResult
from dr.restore.run import VolumeRestorePhase, VolumeRestoreStep
from dr.restore.volumes import VolumeRestoreContext, VolumeRestoreTarget, restore_volumes

log = logging.getLogger(__name__)

DUMP_PREFIX = "dump:"


def _parents(repo: Repository, policy: BackupPolicy | None, name: str | None) -> dict[str, str]:
    """Volume snapshot of each PVC in the latest earlier backup of the same policy (incremental)."""
    backups = [s for s in list_snapshots(repo, "backup") if (policy and s.policy == policy.name)
               or (not policy and name and s.name == name)]  # fmt: skip
    if not backups:
        return {}
    latest = backups[-1]
    out: dict[str, str] = {}
    for v in latest.app.get("volumes", []):
        sid = v.get("snapshotId")
        if sid and not v.get("error"):
            out[f"{v['namespace']}/{v['pvc']}"] = str(sid)
    return out


def volume_backup_step(app: AppContext, policy: BackupPolicy | None) -> VolumeStep:
    cfg = app.loaded.config
    repo_url = repository_config(app, policy.repository if policy else None).url

    def step(
        kube: KubeClient,
        repo: Repository,
        backup_id: str,
        pvcs: list[dict[str, Any]],
        pods: list[dict[str, Any]],
    ) -> VolumePhase:
        ctx = VolumeBackupContext(
            repo_url=repo_url,
            backup_id=backup_id,
            mover=cfg.mover,
            volumes=policy.volumes if policy else VolumeOptions(),
            hooks=policy.hooks if policy else [],
            parents=_parents(repo, policy, None),
            tags=dict(policy.tags) if policy else {},
        )
        exec_ = KubernetesExec(kube)
        phase = VolumePhase()
        results: list[VolumeResult] = backup_volumes(
            kube, pvcs, ctx, RepositorySnapshotFinder(repo), exec_=exec_
        )
        for r in results:
            phase.volumes.append(r.model_dump(mode="json", by_alias=True, exclude_none=True))
            if r.error:
                phase.errors.append(r.describe())
            elif r.snapshot_id:
                phase.refs.append(r.snapshot_id)
            phase.warnings += [f"volume {r.key}: {w}" for w in r.warnings]
        dumps = [p for p in pods if any(k.startswith("dump.hook.backup.dr.dev/") for k in
                                        ((p.get("metadata") or {}).get("annotations") or {}))]  # fmt: skip
        if dumps:
            with repo.saver() as saver:
                outcome = run_dump_hooks(exec_, repo, saver, dumps)
                saver.flush()
            for rec in outcome.records:
                phase.dumps[DUMP_PREFIX + rec.key] = rec.stream
                phase.dump_info.append(rec.model_dump(mode="json", exclude={"stream"}))
            phase.errors += outcome.errors
        return phase

    return step


def dump_records(snap: Snapshot) -> list[DumpRecord]:
    records = []
    for info in snap.app.get("dumps", []):
        key = f"{DUMP_PREFIX}{info['namespace']}/{info['pod']}/{info['name']}"
        if key in snap.streams:
            records.append(DumpRecord.model_validate({**info, "stream": snap.streams[key]}))
    return records


def volume_restore_step(app: AppContext) -> VolumeRestoreStep:
    cfg = app.loaded.config
    repo_url = repository_config(app).url

    def step(
        kube: KubeClient, snap: Snapshot, results: list[RestoreItemResult], restore_id: str
    ) -> VolumeRestorePhase:
        by_source = {f"{v['namespace']}/{v['pvc']}": v for v in snap.app.get("volumes", [])}
        targets = []
        phase = VolumeRestorePhase()
        for r in results:
            if r.item.resource != "persistentvolumeclaims" or r.item.group != "":
                continue
            # Only claims this restore created get data: an existing claim is in use (or was skipped on purpose).
            if r.outcome not in ("created", "recreated"):
                continue
            src = by_source.get(f"{r.source_namespace or r.item.namespace}/{r.item.name}")
            if not src or not src.get("snapshotId"):
                continue
            targets.append(VolumeRestoreTarget(namespace=r.item.namespace or "", pvc=r.item.name,
                                               snapshot_id=str(src["snapshotId"])))  # fmt: skip
        if not targets:
            return phase
        ctx = VolumeRestoreContext(repo_url=repo_url, restore_id=restore_id, mover=cfg.mover)
        for res in restore_volumes(kube, targets, ctx):
            phase.volumes.append(res.model_dump(mode="json", by_alias=True, exclude_none=True))
            if res.error:
                phase.errors.append(res.describe())
        return phase

    return step
