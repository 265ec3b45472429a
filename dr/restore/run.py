"""``dr restore``: one backup from the repository into the cluster.

Owns the order of a restore; the work is done by ``dr.restore.resources``
(objects, in the stages of ``dr.restore.order``) and ``dr.restore.volumes``
(PVC data through mover Jobs). Volume data is restored right after the
PersistentVolumeClaims stage and before any workload is created, so that
workloads start on complete data. Everything needed comes from the
repository: restoring into another cluster needs only its URL and a key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dr.errors import DrError
from dr.kube.client import KubeClient
from dr.kube.objects import ResourceItem
from dr.repo.format import FormatError
from dr.repo.locks import Lock
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot
from dr.repo.streams import read_lines
from dr.restore.plan import RestoreOptions
from dr.restore.resources import RestoreResult, restore_resources
from dr.restore.results import ItemResults, RestoreItemResult

RESOURCES_STREAM = "resources"


def new_restore_id() -> str:
    return os.urandom(6).hex()


def backup_items(repo: Repository, snap: Snapshot) -> Iterator[tuple[ResourceItem, dict[str, Any]]]:
    """The backed-up objects of ``snap``, in backup order."""
    stream = snap.streams.get(RESOURCES_STREAM)
    if stream is None:
        raise DrError(f"backup {snap.short_id} has no resources")
    for n, line in enumerate(read_lines(repo, stream), 1):
        try:
            rec = json.loads(line)
            yield ResourceItem.model_validate(rec["item"]), rec["object"]
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"backup {snap.short_id}: resource record {n} is malformed ({e})") from None


def volume_snapshots(snap: Snapshot) -> dict[str, str]:
    """The volume snapshot of each backed-up PVC ("namespace/pvc" as backed up -> id) that has one."""
    return {
        f"{v['namespace']}/{v['pvc']}": str(v["snapshotId"])
        for v in snap.app.get("volumes", [])
        if v.get("snapshotId") and v.get("namespace") and v.get("pvc")
    }


@dataclass
class VolumeRestorePhase:
    volumes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# (kube, snapshot, results of the PVC stage, restore id) -> VolumeRestorePhase
VolumeRestoreStep = Callable[[KubeClient, Snapshot, ItemResults, str], VolumeRestorePhase]


@dataclass
class RestoreOutcome:
    resources: RestoreResult
    volumes: VolumeRestorePhase
    # Dumps loaded into the restored pods after the restore (``dr restore``):
    # one line per dump that failed to load, and per dump no restored pod loads.
    dump_errors: list[str] = field(default_factory=list)
    dump_warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.resources.phase != "Completed" or bool(self.volumes.errors) or bool(self.dump_errors)

    @property
    def nothing_restored(self) -> bool:
        """Every object of the restore failed (an identity without rights: a 403 each): the
        restore failed, where "partially failed" is some items failed, all others done."""
        counts = self.resources.counts
        return bool(counts) and set(counts) == {"failed"} and not self.volumes.volumes

    @property
    def phase(self) -> str:
        """``Completed``, ``PartiallyFailed`` or ``Failed`` (``nothing_restored``)."""
        if not self.failed:
            return "Completed"
        return "Failed" if self.nothing_restored else "PartiallyFailed"


def run_restore(
    kube: KubeClient,
    repo: Repository,
    snap: Snapshot,
    options: RestoreOptions,
    *,
    restore_id: str | None = None,
    volume_step: VolumeRestoreStep | None = None,
    progress: Callable[[RestoreItemResult, int, int], None] | None = None,
) -> RestoreOutcome:
    rid = restore_id or new_restore_id()
    backup_label = str(snap.app.get("backupId") or snap.id[:16])
    volumes = VolumeRestorePhase()

    def after_stage(stage: str, results: ItemResults) -> None:
        nonlocal volumes
        if stage == "persistentvolumeclaims" and volume_step is not None and not options.dry_run:
            volumes = volume_step(kube, snap, results, rid)

    # Claims whose data the volume step brings back are created marked as awaiting it, and their
    # PersistentVolumes are not restored. Also in a dry run (which runs no step): the plan shows that.
    data_volumes = volume_snapshots(snap) if volume_step is not None else {}
    with Lock(repo, "shared", "restore"):
        # Each stage reads the objects again from the repository: memory stays flat.
        result = restore_resources(
            kube, backup_items(repo, snap), options, backup_label, rid, progress, after_stage=after_stage,
            reread=lambda: backup_items(repo, snap), data_volumes=data_volumes,
        )  # fmt: skip
    # The data step's warnings (a claim whose data is not restored, …) are the restore's: every
    # caller — ``dr restore``, a drill's report — gets them where it reads the others.
    result.warnings += volumes.warnings
    return RestoreOutcome(result, volumes)
