"""``dr backup``: one application backup, from the cluster into one repository snapshot.

Owns the order of a backup and what the snapshot records; the work is done by
``dr.backup.resources`` (objects), ``dr.backup.volumes`` and
``dr.backup.hooks`` (PVC data, application consistency) and the repository:

1. take a shared repository lock;
2. stream every selected object, as JSON lines, into a chunked, encrypted
   stream (``resources``) — Secrets included, never written in plaintext;
3. run pre hooks, back up the data of the backed-up PVCs through mover Jobs,
   run post hooks (unless ``--no-data``);
4. write the snapshot (kind ``backup``) last: scope, cluster version, API
   versions, counts per type, volumes, warnings, errors, timings, phase.

A per-item failure (a type that cannot be listed, a volume whose mover
failed) makes the backup ``PartiallyFailed`` with every failure listed, or
``Failed`` when nothing at all was captured; only a failure of the repository
itself aborts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dr.backup.resources import MissingNamespaces, ResourceBackupResult, backup_resources
from dr.backup.scope import BackupScope
from dr.kube.client import KubeClient
from dr.kube.objects import ResourceItem
from dr.repo.locks import Lock
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot, Stream, save_snapshot
from dr.repo.streams import StreamWriter

log = logging.getLogger(__name__)

RESOURCES_STREAM = "resources"


class StreamSink:
    """Writes each object as one JSON line into the repository stream; remembers PVCs."""

    def __init__(
        self, writer: StreamWriter, on_object: Callable[[ResourceItem, dict[str, Any]], None] | None
    ) -> None:
        self.writer = writer
        self.on_object = on_object
        self.count = 0
        self._buf: list[bytes] = []
        self._size = 0

    def add(self, item: ResourceItem, obj: dict[str, Any]) -> None:
        line = json.dumps(
            {"item": item.model_dump(mode="json", exclude_none=True), "object": obj},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        self._buf.append(line)
        self._buf.append(b"\n")
        self._size += len(line) + 1
        self.count += 1
        if self._size >= 1 << 20:  # hand the chunker ~1 MiB at a time
            self.flush()
        if self.on_object is not None:
            self.on_object(item, obj)

    def flush(self) -> None:
        if self._buf:
            self.writer.write(b"".join(self._buf))
            self._buf, self._size = [], 0


@dataclass
class VolumePhase:
    """What the volume step returns: snapshot ids it created and the per-volume report."""

    refs: list[str] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    dumps: dict[str, Stream] = field(default_factory=dict)
    dump_info: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# (kube, repo, backup id, PVC objects, pods) -> VolumePhase
VolumeStep = Callable[[KubeClient, Repository, str, list[dict[str, Any]], list[dict[str, Any]]], VolumePhase]


@dataclass
class BackupRequest:
    scope: BackupScope
    name: str
    policy: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # "error" when the namespaces were given on the command line (see dr.backup.resources).
    missing_namespaces: MissingNamespaces = "warn"
    # dr's own namespace (``mover.namespace``): left out of a selection unless named exactly.
    dr_namespace: str | None = None


@dataclass
class BackupOutcome:
    snapshot: Snapshot
    resources: ResourceBackupResult
    volumes: VolumePhase

    @property
    def phase(self) -> str:
        return self.snapshot.phase or "Completed"

    @property
    def errors(self) -> list[str]:
        return list(self.snapshot.app.get("errors", []))

    @property
    def warnings(self) -> list[str]:
        return list(self.snapshot.app.get("warnings", []))


def run_backup(
    kube: KubeClient,
    repo: Repository,
    request: BackupRequest,
    *,
    volume_step: VolumeStep | None = None,
) -> BackupOutcome:
    t0 = time.monotonic()
    backup_id = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{request.name}"[:63]
    pvcs: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []

    def remember(item: ResourceItem, obj: dict[str, Any]) -> None:
        if item.group == "" and item.resource == "persistentvolumeclaims":
            pvcs.append(obj)
        elif item.group == "" and item.resource == "pods":
            pods.append(obj)

    with Lock(repo, "shared", "backup"):
        with repo.saver() as saver:
            writer = StreamWriter(repo, saver)
            sink = StreamSink(writer, remember)
            resources = backup_resources(
                kube,
                request.scope,
                sink,
                missing_namespaces=request.missing_namespaces,
                dr_namespace=request.dr_namespace,
            )
            sink.flush()
            stream = writer.close()
            saver.flush()
        resources_seconds = time.monotonic() - t0
        volumes = VolumePhase()
        if volume_step is not None and (pvcs or pods):
            t1 = time.monotonic()
            volumes = volume_step(kube, repo, backup_id, pvcs, pods)
            volumes_seconds = time.monotonic() - t1
        else:
            volumes_seconds = 0.0
        errors = [e.describe() for e in resources.errors] + volumes.errors
        # Nothing of the app captured (the Namespace objects at most), only failures (an identity
        # without rights: a 403 for every type): the backup failed. Its snapshot records the attempt
        # (listed, seen by `dr status`), but it is no backup to restore, nor "partially failed",
        # which is some items failed, the rest done.
        captured = any(n for kind, n in resources.counts.items() if kind != "namespaces") or any(
            v.get("snapshotId") for v in volumes.volumes
        )
        phase = "Completed" if not errors else "PartiallyFailed" if captured else "Failed"
        snap = Snapshot(
            kind="backup",
            name=request.name,
            policy=request.policy,
            namespaces=resources.namespaces,
            phase=phase,
            tags=request.tags,
            streams={RESOURCES_STREAM: stream, **volumes.dumps},
            refs=volumes.refs,
            app={
                "backupId": backup_id,
                "scope": request.scope.model_dump(mode="json"),
                "excludedNamespaces": resources.excluded_namespaces,
                "clusterVersion": resources.cluster_version,
                "apiVersions": resources.api_versions,
                "counts": resources.counts,
                "total": resources.total,
                "owned": resources.owned,
                "skipped": resources.skipped,
                "volumes": volumes.volumes,
                "dumps": volumes.dump_info,
                "errors": errors,
                "warnings": resources.warnings + volumes.warnings,
                "timings": {
                    "resourcesSeconds": round(resources_seconds, 3),
                    "discoverySeconds": resources.timings.discovery_seconds,
                    "listingSeconds": resources.timings.listing_seconds,
                    "volumesSeconds": round(volumes_seconds, 3),
                    "totalSeconds": round(time.monotonic() - t0, 3),
                },
            },
        )
        snap = save_snapshot(repo, snap)
    log.info("backup %s (%s): %s, %d objects, %d volumes", snap.short_id, request.name, phase,
             resources.total, len(volumes.volumes))  # fmt: skip
    return BackupOutcome(snap, resources, volumes)
