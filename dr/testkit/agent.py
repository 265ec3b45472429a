"""A small, explicit test agent that plays the node's and the controllers' part in the test cluster.

Test and demo support only (see ``dr.testkit``). The test cluster is a real
API server with no controllers and no kubelet: Jobs never run, PVCs never
bind, VolumeSnapshots never become ready, Deployments never get a status.
dr's code (``dr.backup``, ``dr.restore``, ``dr.drill``, ``dr.kube``) runs
unchanged against it; this agent, a thread started by the tests or the demo,
does what the cluster's other components would do — and nothing more — for
the namespaces it manages: those named with ``manage()`` and, with
``namespace_pattern``, every namespace whose name matches the regular
expression (``ALL_NAMESPACES``: every namespace except ``kube-*``).

PV controller / CSI provisioner
    A PVC without ``storageClassName`` gets the default StorageClass
    (annotation ``storageclass.kubernetes.io/is-default-class``), as the PV
    controller's retroactive default class assignment does. A PVC that is not
    Bound becomes Bound (``status.phase``, ``capacity``, ``accessModes``),
    backed by the directory ``root/volumes/<ns>/<pvc>`` (created empty; a test
    may fill it). A PVC whose ``dataSource`` is a VolumeSnapshot is bound once
    that snapshot is ready and its StorageClass's provisioner is the
    snapshot's driver (else it stays Pending, as no provisioner or the wrong
    one would leave it), with a copy of the snapshot's directory as its
    content (like a volume restored from a snapshot). Reclaim policy
    ``Delete``: when a PVC the agent bound is gone (or replaced by a new one
    of the same name), its directory is removed.

Snapshot controller + CSI driver
    A VolumeSnapshot of a PVC (``source.persistentVolumeClaimName``) is
    "cut" by copying the PVC's directory (modes, times, symlinks kept) to
    ``root/snapshots/<handle>``; the agent creates the bound
    VolumeSnapshotContent (``snapshotHandle``, the class's ``deletionPolicy``)
    and marks both ``readyToUse``. A VolumeSnapshot of a pre-provisioned
    content (``source.volumeSnapshotContentName``) becomes ready when the
    content's ``snapshotHandle`` exists. When a VolumeSnapshot is deleted, a
    dynamically created content with policy ``Delete`` is deleted with its
    directory; ``Retain`` contents stay until deleted.

Workload controllers + kubelet (status only)
    Deployments, StatefulSets, DaemonSets and ReplicaSets get the status their
    controllers write once all pods started (``observedGeneration``,
    ``replicas``, ``readyReplicas``, ``availableReplicas``,
    ``updatedReplicas``; DaemonSets ``desiredNumberScheduled``/``numberReady``
    for ``nodes`` nodes, default 1) as soon as every PVC their pod template
    mounts is Bound; until then replicas are counted but none is ready. A
    StatefulSet's ``volumeClaimTemplates`` create the PVCs
    ``<template>-<statefulset>-<ordinal>`` like the StatefulSet controller
    (kept when the StatefulSet goes, its default retention). No Pods are
    created for workloads: ``exec`` and ``http`` drill steps cannot pass here.

Job controller + kubelet
    * dr's mover Jobs (label ``dr.dev/mover=true``; also the drill's probe
      Jobs) and every other Job whose container image is dr's (``dr_images``:
      image repositories, compared without tag or digest) run: the agent
      creates the Job's Pod (labels ``job-name``, ``batch.kubernetes.io/job-name``,
      owner reference), waits for its PVCs to be Bound, materialises the
      pod's volumes as local directories — ``persistentVolumeClaim`` → the
      PVC's directory, ``emptyDir`` → a fresh directory,
      ``configMap``/``secret``/``projected`` → files from the API (``items``,
      ``optional``; mode = item ``mode``, else ``defaultMode``, else 0600 for
      Secret files and 0644 for ConfigMap files) — and runs the container:
      dr's image has ``dr`` as entrypoint, so the command is this venv's
      ``dr`` with the container's ``args``. A pod sees its volumes at their
      ``mountPath``; a local process cannot, so every argument and
      environment value that is a mount path or lies below one is rewritten
      to the local directory (longest mount path first). The environment is
      exactly the container's: ``env`` (values, ``secretKeyRef``,
      ``configMapKeyRef``, ``fieldRef`` of name/namespace) over ``envFrom``
      (``secretRef``/``configMapRef``, resolved from the API), plus ``PATH``,
      ``HOSTNAME`` and ``DR_TERMINATION_LOG`` — nothing of the test process
      leaks in.
    * Termination message (the kubelet's ``terminationMessagePath``): the
      container's ``/dev/termination-log`` is a local file whose path dr
      finds in ``DR_TERMINATION_LOG``; its content (up to 4 KiB) becomes the
      ``message`` of the pod's ``terminated`` state. With
      ``terminationMessagePolicy: FallbackToLogsOnError``, an empty file and
      a failed command, the message is the tail of its output (last 80 lines
      / 2 KiB).
    * It honours ``activeDeadlineSeconds`` (kill, condition
      ``DeadlineExceeded``) and kills the process when the Job is deleted.
      When the process ends it writes the Pod's ``terminated`` state (exit
      code, reason, message) and the Job's status as the Job controller does
      (``startTime``, ``completionTime``, ``succeeded``/``failed``,
      ``Complete`` or ``Failed`` with reason
      ``BackoffLimitExceeded``/``DeadlineExceeded`` and the controller's
      message). A missing ConfigMap/Secret leaves the pod waiting with
      ``CreateContainerConfigError``, as the kubelet does.
    * Any other Job cannot run here — the agent runs processes on this
      machine, not container images: its Pod is marked failed and the Job
      ``Failed`` with reason ``ImageNotRunnable`` and a message naming the
      image (a drill's ``job`` step then fails with that reason). The same
      for a dr image whose ``command`` is not ``dr``.

Garbage collector
    Pods whose owning Job is gone are deleted; the directories of
    temporary PVCs bound from snapshots are removed when the PVC is gone.

Not emulated (recorded in ``runs`` for tests to assert on instead):
scheduling (node affinity, tolerations), read-only mounts (the process runs
as the calling user and could write), security contexts, resources, image
pulls, Pods of workloads. ``pods/log`` stays unserved, as in the test cluster.

Fault injection for tests, by volume (``"namespace/pvc"`` of the Job's
``dr.dev/volume`` annotation or the snapshot's PVC): ``kill`` (SIGKILL the
mover as soon as it has started), ``hang`` (the container never starts; the
deadline ends the Job), ``stuck`` (the pod waits with the given reason),
``never_ready`` (the snapshot is never cut), ``evict`` (evict the mover's pod once it has
started, condition ``DisruptionTarget``: the Job's ``podFailurePolicy`` decides whether a
replacement pod runs or the Job fails), ``restore_sizes`` (the ``restoreSize`` a
snapshot reports, e.g. ``"0"`` as drivers that do not know it do), ``unbound`` (the
claim is never bound, as no provisioner acts for a StorageClass the cluster lacks; a
pod mounting it stays Pending), ``no_pod`` (the Job gets no pod, as where admission — a
ResourceQuota, a LimitRange, the Pod Security level — refuses it; the deadline ends it).
``bound_requests`` records the storage request of every claim the agent bound.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dr.kube.client import KubeClient

DR = str(Path(sys.executable).parent / "dr")
DR_IMAGE = "ghcr.io/dr-project/dr"  # the repository of dr's image (``mover.image`` without its tag)
MOVER_LABEL = "dr.dev/mover"
SOURCE_ANNOTATION = "dr.dev/volume"
SNAPSHOT_API = "/apis/snapshot.storage.k8s.io/v1"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
TERMINATION_LINES = 80
TERMINATION_BYTES = 2048
TERMINATION_FILE_BYTES = 4096  # the kubelet's limit for one container's termination message
ALL_NAMESPACES = r"^(?!kube-).+$"
NOT_RUNNABLE = "ImageNotRunnable"
WORKLOAD_TYPES = (
    ("Deployment", "deployments"),
    ("StatefulSet", "statefulsets"),
    ("DaemonSet", "daemonsets"),
    ("ReplicaSet", "replicasets"),
)


def rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(t if t is not None else time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_repository(image: str) -> str:
    """``ghcr.io/dr-project/dr:1.2@sha256:…`` -> ``ghcr.io/dr-project/dr`` (a registry port is kept)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


@dataclass
class JobRun:
    """What the agent saw and did for one Job (tests assert on these)."""

    namespace: str
    name: str
    volume: str | None  # the dr.dev/volume annotation
    manifest: dict[str, Any]
    kind: str = "mover"  # mover | dr (another Job of dr's image) | refused (an image the agent cannot run)
    pod_name: str = ""
    argv: list[str] = field(default_factory=list)
    env_names: list[str] = field(default_factory=list)
    mounts: dict[str, tuple[str, bool]] = field(default_factory=dict)  # mountPath -> (local dir, readOnly)
    files: dict[str, int] = field(default_factory=dict)  # materialised file -> mode
    started: float | None = None  # monotonic
    finished: float | None = None
    exit_code: int | None = None
    outcome: str = "pending"  # pending | running | succeeded | failed | deadline | stuck | deleted | refused
    stdout: str = ""
    stderr: str = ""
    termination_message: str | None = None


class NodeAgent:
    """See the module docstring. ``start()``/``stop()``; ``errors`` lists failures of the agent itself."""

    def __init__(
        self,
        kube: KubeClient,
        root: Path,
        namespaces: set[str] | None = None,
        *,
        namespace_pattern: str | None = None,
        dr_images: Iterable[str] = (DR_IMAGE,),
        nodes: int = 1,
        interval: float = 0.05,
    ) -> None:
        self.kube = kube
        self.root = root
        self.namespaces: set[str] = set(namespaces or ())
        self.namespace_pattern = re.compile(namespace_pattern) if namespace_pattern else None
        self.dr_images = {image_repository(i) for i in dr_images}
        self.nodes = nodes
        self.interval = interval
        self.runs: list[JobRun] = []
        self.events: list[tuple[str, str]] = []  # ("snapshot-cut" | "job-start" | "job-end", name), in order
        self.errors: list[str] = []
        self.kill: set[str] = set()
        self.evict: set[str] = set()
        self.hang: set[str] = set()
        self.stuck: dict[str, str] = {}
        self.never_ready: set[str] = set()
        self.unbound: set[str] = set()
        self.no_pod: set[str] = set()
        self.restore_sizes: dict[str, str] = {}
        self.bound_requests: dict[tuple[str, str], str] = {}  # (ns, pvc) -> spec.resources.requests.storage
        self.running = 0
        self.max_running = 0
        # ``start_together(n)``: the next n mover processes start at the same moment
        # (a test of how many run at once must not depend on how fast they are).
        self._start_gate: threading.Barrier | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._job_threads: dict[str, threading.Thread] = {}
        self._from_snapshot: set[tuple[str, str]] = set()
        self._bound: dict[tuple[str, str], str] = {}  # (ns, pvc) -> uid of the claim the agent bound
        self._default_class: str | None = None

    def start_together(self, n: int, *, timeout: float = 30.0) -> None:
        """Hold the next ``n`` mover processes until all ``n`` are ready, then start them.
        Each waits at most ``timeout`` seconds; then those waiting start, and fewer than
        ``n`` at once is what ``max_running`` shows."""

        def done() -> None:
            self._start_gate = None

        self._start_gate = threading.Barrier(n, action=done, timeout=timeout)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> NodeAgent:
        for d in ("volumes", "snapshots", "pods"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="node-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop and every process it started (their Jobs stay as they are)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for t in list(self._job_threads.values()):
            t.join(timeout=30)

    def manage(self, *namespaces: str) -> None:
        with self._lock:
            self.namespaces |= set(namespaces)

    def volume_dir(self, namespace: str, pvc: str) -> Path:
        return self.root / "volumes" / namespace / pvc

    def event(self, kind: str, name: str) -> None:
        with self._lock:
            self.events.append((kind, name))

    def is_dr_image(self, image: str) -> bool:
        return image_repository(image) in self.dr_images

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as e:  # reported to the test, which fails on it
                self.errors.append(f"{type(e).__name__}: {e}")
            self._stop.wait(self.interval)

    def managed_namespaces(self) -> list[str]:
        with self._lock:
            names = set(self.namespaces)
        if self.namespace_pattern is not None:
            for ns in self._list("/api/v1/namespaces"):
                name = str(ns["metadata"]["name"])
                if self.namespace_pattern.search(name) and not (ns["metadata"].get("deletionTimestamp")):
                    names.add(name)
        return sorted(names)

    def tick(self) -> None:
        self._default_class = self._find_default_class()
        managed = self.managed_namespaces()
        for ns in managed:
            self._snapshots(ns)
            claims = self._claims(ns)
            self._workloads(ns, claims)
            self._jobs(ns)
            self._collect_garbage(ns)
        with self._lock:
            # A deleted namespace no longer matches the pattern: its volumes still go.
            gone = {k[0] for k in self._bound} - set(managed)
        for ns in sorted(gone):
            self._reclaim(ns, {p["metadata"]["name"]: p["metadata"]["uid"] for p in self._list(
                f"/api/v1/namespaces/{ns}/persistentvolumeclaims")})  # fmt: skip
        self._contents()

    # ------------------------------------------------------------------ API helpers

    def _list(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else None
        status, data = self.kube.request("GET", path, query=query)
        if status == 404:
            return []
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data[:200]!r}")
        return list(json.loads(data).get("items") or [])

    def _get(self, path: str) -> dict[str, Any] | None:
        status, data = self.kube.request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data[:200]!r}")
        doc: dict[str, Any] = json.loads(data)
        return doc

    def _patch(self, path: str, body: dict[str, Any]) -> bool:
        """Merge-patch ``path``; False if the object is gone (or was replaced meanwhile: 409)."""
        code, data = self.kube.request("PATCH", path, body=body, content_type="application/merge-patch+json")
        if code in (404, 409):
            return False
        if code != 200:
            raise RuntimeError(f"PATCH {path}: {code} {data[:300]!r}")
        return True

    def _patch_status(self, path: str, status: dict[str, Any]) -> bool:
        """Merge-patch ``status`` through the status subresource; False if the object is gone."""
        return self._patch(path + "/status", {"status": status})

    # ------------------------------------------------------------------ snapshots

    def _snapshots(self, ns: str) -> None:
        for vs in self._list(f"{SNAPSHOT_API}/namespaces/{ns}/volumesnapshots"):
            status = vs.get("status") or {}
            if status.get("readyToUse"):
                continue
            meta, spec = vs["metadata"], vs.get("spec") or {}
            source = spec.get("source") or {}
            path = f"{SNAPSHOT_API}/namespaces/{ns}/volumesnapshots/{meta['name']}"
            if source.get("persistentVolumeClaimName"):
                self._cut_snapshot(ns, vs, str(source["persistentVolumeClaimName"]), path)
            elif source.get("volumeSnapshotContentName"):
                self._bind_preprovisioned(vs, str(source["volumeSnapshotContentName"]), path)

    def _cut_snapshot(self, ns: str, vs: dict[str, Any], pvc_name: str, path: str) -> None:
        key = f"{ns}/{pvc_name}"
        if key in self.never_ready:
            return
        pvc = self._get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{pvc_name}")
        src = self.volume_dir(ns, pvc_name)
        if pvc is None or (pvc.get("status") or {}).get("phase") != "Bound" or not src.is_dir():
            return
        meta = vs["metadata"]
        handle = f"snap-{meta['uid']}"
        target = self.root / "snapshots" / handle
        if not target.exists():
            tmp = target.with_name(target.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp, symlinks=True)
            tmp.rename(target)
            # Recorded at the copy, the moment the data is fixed: recording it after the status patch
            # raced with dr, which may already have seen readyToUse and run the post hook.
            self.event("snapshot-cut", f"{ns}/{meta['name']}")
        class_name = (vs.get("spec") or {}).get("volumeSnapshotClassName")
        cls = self._get(f"{SNAPSHOT_API}/volumesnapshotclasses/{class_name}") if class_name else None
        content_name = f"snapcontent-{meta['uid']}"
        size = _dir_size(target)
        content = {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name},
            "spec": {
                "deletionPolicy": (cls or {}).get("deletionPolicy", "Delete"),
                "driver": (cls or {}).get("driver", "unknown"),
                "source": {"volumeHandle": f"pvc-{(pvc or {}).get('metadata', {}).get('uid')}"},
                "volumeSnapshotClassName": class_name,
                "volumeSnapshotRef": {
                    "kind": "VolumeSnapshot",
                    "name": meta["name"],
                    "namespace": ns,
                    "uid": meta["uid"],
                },
            },
        }
        code, data = self.kube.request("POST", f"{SNAPSHOT_API}/volumesnapshotcontents", body=content)
        if code not in (201, 409):
            raise RuntimeError(f"create content {content_name}: {code} {data[:200]!r}")
        now = rfc3339()
        self._patch_status(
            f"{SNAPSHOT_API}/volumesnapshotcontents/{content_name}",
            {
                "snapshotHandle": handle,
                "readyToUse": True,
                "restoreSize": size,
                "creationTime": int(time.time() * 1e9),
            },
        )
        restore_size = self.restore_sizes.get(key) or ((pvc or {}).get("status") or {}).get(
            "capacity", {}
        ).get("storage")
        self._patch_status(
            path,
            {
                "boundVolumeSnapshotContentName": content_name,
                "creationTime": now,
                "readyToUse": True,
                "restoreSize": restore_size or str(size),
            },
        )

    def _bind_preprovisioned(self, vs: dict[str, Any], content_name: str, path: str) -> None:
        content = self._get(f"{SNAPSHOT_API}/volumesnapshotcontents/{content_name}")
        if content is None:
            return
        handle = ((content.get("spec") or {}).get("source") or {}).get("snapshotHandle")
        if not handle or not (self.root / "snapshots" / str(handle)).is_dir():
            return
        self._patch_status(
            f"{SNAPSHOT_API}/volumesnapshotcontents/{content_name}",
            {"snapshotHandle": handle, "readyToUse": True, "creationTime": int(time.time() * 1e9)},
        )
        self._patch_status(
            path,
            {"boundVolumeSnapshotContentName": content_name, "creationTime": rfc3339(), "readyToUse": True},
        )

    def _contents(self) -> None:
        """Dynamically created contents with policy Delete go with their snapshot (and the data with them)."""
        with self._lock:
            explicit = set(self.namespaces)
        for content in self._list(f"{SNAPSHOT_API}/volumesnapshotcontents"):
            spec = content.get("spec") or {}
            ref = spec.get("volumeSnapshotRef") or {}
            ns = str(ref.get("namespace") or "")
            managed = ns in explicit or (
                self.namespace_pattern is not None and self.namespace_pattern.search(ns)
            )
            if not managed or spec.get("deletionPolicy") != "Delete":
                continue
            if "volumeHandle" not in (spec.get("source") or {}):
                continue  # pre-provisioned: deleted by whoever made it
            vs = self._get(f"{SNAPSHOT_API}/namespaces/{ns}/volumesnapshots/{ref.get('name')}")
            if vs is not None and (vs.get("metadata") or {}).get("uid") == ref.get("uid"):
                continue
            name = content["metadata"]["name"]
            self.kube.request("DELETE", f"{SNAPSHOT_API}/volumesnapshotcontents/{name}")
            handle = (content.get("status") or {}).get("snapshotHandle")
            if handle:
                shutil.rmtree(self.root / "snapshots" / str(handle), ignore_errors=True)

    # ------------------------------------------------------------------ claims

    def _find_default_class(self) -> str | None:
        classes = self._list("/apis/storage.k8s.io/v1/storageclasses")
        defaults = sorted(
            c["metadata"]["name"]
            for c in classes
            if ((c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION)) == "true"
        )
        return defaults[0] if defaults else None

    def _claims(self, ns: str) -> dict[str, bool]:
        """Bind the namespace's claims; returns claim name -> Bound."""
        phases: dict[str, bool] = {}
        pvcs = self._list(f"/api/v1/namespaces/{ns}/persistentvolumeclaims")
        present = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pvcs}
        self._reclaim(ns, present)
        for pvc in pvcs:
            meta, spec = pvc["metadata"], pvc.get("spec") or {}
            path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{meta['name']}"
            if (pvc.get("status") or {}).get("phase") == "Bound":
                phases[meta["name"]] = True
                continue
            phases[meta["name"]] = False
            if f"{ns}/{meta['name']}" in self.unbound:
                continue
            if spec.get("storageClassName") is None and self._default_class:
                # The PV controller's retroactive default StorageClass assignment.
                self._patch(path, {"spec": {"storageClassName": self._default_class}})
            target = self.volume_dir(ns, meta["name"])
            source = spec.get("dataSource") or {}
            if source.get("kind") == "VolumeSnapshot":
                vs = self._get(f"{SNAPSHOT_API}/namespaces/{ns}/volumesnapshots/{source.get('name')}")
                status = (vs or {}).get("status") or {}
                if not status.get("readyToUse"):
                    continue
                content = self._get(
                    f"{SNAPSHOT_API}/volumesnapshotcontents/{status.get('boundVolumeSnapshotContentName')}"
                )
                handle = ((content or {}).get("status") or {}).get("snapshotHandle")
                if not handle:
                    continue
                if not self._provisions(spec, (content or {}).get("spec", {}).get("driver")):
                    continue
                if not target.exists():
                    tmp = target.with_name(target.name + ".tmp")
                    shutil.rmtree(tmp, ignore_errors=True)
                    shutil.copytree(self.root / "snapshots" / str(handle), tmp, symlinks=True)
                    tmp.rename(target)
                self._from_snapshot.add((ns, meta["name"]))
            else:
                target.mkdir(parents=True, exist_ok=True)
                with self._lock:
                    self._bound[(ns, meta["name"])] = meta["uid"]
            storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
            with self._lock:
                self.bound_requests[(ns, meta["name"])] = str(storage)
            if self._patch_status(
                path,
                {
                    "phase": "Bound",
                    "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                    "capacity": {"storage": storage},
                },
            ):
                phases[meta["name"]] = True
        return phases

    def _provisions(self, spec: dict[str, Any], driver: Any) -> bool:
        """Whether the CSI provisioner of ``driver`` restores a snapshot into this claim.

        As the external-provisioner: only for a claim whose StorageClass exists and names
        that driver as its provisioner (no class: no provisioner acts; another driver's
        class: its provisioner refuses a snapshot it did not make). The claim stays Pending.
        """
        name = spec.get("storageClassName")
        if name is None:
            name = self._default_class  # assigned by the PV controller (this tick or the next)
        sc = self._get(f"/apis/storage.k8s.io/v1/storageclasses/{name}") if name else None
        return sc is not None and sc.get("provisioner") == driver

    def _reclaim(self, ns: str, present: dict[str, str]) -> None:
        """Reclaim policy Delete: the volume of a claim the agent bound goes when the claim does."""
        with self._lock:
            gone = [k for k, uid in self._bound.items() if k[0] == ns and present.get(k[1]) != uid]
            for k in gone:
                del self._bound[k]
        for k in gone:
            shutil.rmtree(self.volume_dir(*k), ignore_errors=True)

    # ------------------------------------------------------------------ workloads

    def _workloads(self, ns: str, claims: dict[str, bool]) -> None:
        for kind, plural in WORKLOAD_TYPES:
            for obj in self._list(f"/apis/apps/v1/namespaces/{ns}/{plural}"):
                path = f"/apis/apps/v1/namespaces/{ns}/{plural}/{obj['metadata']['name']}"
                needed = _template_claims(obj)
                if kind == "StatefulSet":
                    needed += self._claim_templates(ns, obj, claims)
                started = all(claims.get(c, False) for c in needed)
                status = workload_status(kind, obj, started, self.nodes)
                current = obj.get("status") or {}
                # The API server leaves out zero counts (omitempty): missing is 0.
                if any(current.get(k, 0) != v for k, v in status.items() if k != "conditions"):
                    self._patch_status(path, status)

    def _claim_templates(self, ns: str, sts: dict[str, Any], claims: dict[str, bool]) -> list[str]:
        """The PVCs of a StatefulSet's ``volumeClaimTemplates`` (created if missing): their names."""
        spec = sts.get("spec") or {}
        name = sts["metadata"]["name"]
        replicas = _replicas(spec)
        names: list[str] = []
        for tmpl in spec.get("volumeClaimTemplates") or []:
            tmeta = tmpl.get("metadata") or {}
            for i in range(replicas):
                claim = f"{tmeta.get('name')}-{name}-{i}"
                names.append(claim)
                if claim in claims:
                    continue
                labels = {
                    **(tmeta.get("labels") or {}),
                    **((spec.get("selector") or {}).get("matchLabels") or {}),
                }
                pvc = {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {
                        "name": claim,
                        "labels": labels,
                        "annotations": tmeta.get("annotations") or {},
                    },
                    "spec": tmpl.get("spec") or {},
                }
                code, data = self.kube.request(
                    "POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body=pvc
                )
                if code not in (201, 409):
                    raise RuntimeError(f"create PVC {ns}/{claim}: {code} {data[:200]!r}")
                claims[claim] = False
        return names

    # ------------------------------------------------------------------ jobs

    def _jobs(self, ns: str) -> None:
        for job in self._list(f"/apis/batch/v1/namespaces/{ns}/jobs"):
            uid = job["metadata"]["uid"]
            with self._lock:
                if uid in self._job_threads:
                    continue
                conditions = (job.get("status") or {}).get("conditions") or []
                if any(c.get("type") in ("Complete", "Failed") for c in conditions):
                    continue
                meta = job["metadata"]
                ann = meta.get("annotations") or {}
                mover = (meta.get("labels") or {}).get(MOVER_LABEL) == "true"
                run = JobRun(
                    ns, meta["name"], ann.get(SOURCE_ANNOTATION), job, kind="mover" if mover else "dr"
                )
                if not mover and self._not_runnable(job) is not None:
                    run.kind = "refused"
                self.runs.append(run)
                t = threading.Thread(
                    target=self._run_job, args=(job, run), name=f"job-{run.name}", daemon=True
                )
                self._job_threads[uid] = t
            t.start()

    def _not_runnable(self, job: dict[str, Any]) -> str | None:
        """Why the agent cannot run this Job's container (None: it is dr's image and entrypoint)."""
        containers = ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
        container = containers[0]
        image = str(container.get("image") or "")
        if not self.is_dr_image(image):
            return (
                f"the test agent cannot run image {image!r}: it runs only dr's image "
                f"({', '.join(sorted(self.dr_images))}) as a local process; use a real cluster for other images"
            )
        command = container.get("command") or ["dr"]
        if os.path.basename(str(command[0])) != "dr":
            return f"the test agent runs dr's image only with its dr entrypoint, not {command[0]!r}"
        return None

    def _job_path(self, run: JobRun) -> str:
        return f"/apis/batch/v1/namespaces/{run.namespace}/jobs/{run.name}"

    def _job_exists(self, run: JobRun, uid: str) -> bool:
        job = self._get(self._job_path(run))
        return job is not None and job["metadata"]["uid"] == uid

    def _run_job(self, job: dict[str, Any], run: JobRun) -> None:
        try:
            if run.kind == "refused":
                self._refuse_job(job, run, self._not_runnable(job) or "not runnable")
            else:
                self._run_job_inner(job, run)
        except Exception as e:  # reported to the test
            self.errors.append(f"job {run.namespace}/{run.name}: {type(e).__name__}: {e}")

    def _refuse_job(self, job: dict[str, Any], run: JobRun, why: str) -> None:
        """A Job the agent cannot run: its pod fails at once, the Job fails with ``ImageNotRunnable``."""
        start_wall = time.time()
        if not self._patch_status(self._job_path(run), {"startTime": rfc3339(start_wall), "active": 1}):
            run.outcome = "deleted"
            return
        pod_name = run.pod_name = f"{run.name}-{uuid.uuid4().hex[:5]}"
        pod_path = f"/api/v1/namespaces/{run.namespace}/pods/{pod_name}"
        self._create_pod(job, pod_name)
        container = job["spec"]["template"]["spec"]["containers"][0]
        now = rfc3339()
        terminated = {"exitCode": 128, "reason": NOT_RUNNABLE, "message": why,
                      "startedAt": rfc3339(start_wall), "finishedAt": now}  # fmt: skip
        self._patch_status(
            pod_path,
            {"phase": "Failed", "containerStatuses": [
                {"name": container["name"], "ready": False, "restartCount": 0, "state": {"terminated": terminated}}
            ]},
        )  # fmt: skip
        run.outcome, run.termination_message = "refused", why
        conditions = [
            {"type": "FailureTarget", "status": "True", "reason": NOT_RUNNABLE, "message": why},
            {
                "type": "Failed",
                "status": "True",
                "reason": NOT_RUNNABLE,
                "message": why,
                "lastTransitionTime": now,
            },
        ]
        self._patch_status(self._job_path(run), {"active": 0, "failed": 1, "conditions": conditions})

    def _run_job_inner(self, job: dict[str, Any], run: JobRun) -> None:
        uid = job["metadata"]["uid"]
        spec = job["spec"]
        deadline_s = float(spec.get("activeDeadlineSeconds") or 3600)
        start_wall = time.time()
        start = time.monotonic()
        if not self._patch_status(self._job_path(run), {"startTime": rfc3339(start_wall), "active": 1}):
            run.outcome = "deleted"
            return
        if run.volume in self.no_pod:
            # As a Job controller whose pod creation admission refuses: no pod, ever.
            run.outcome = "refused"
            while self._job_exists(run, uid) and not self._stop.is_set():
                if time.monotonic() - start > deadline_s:
                    conditions = [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                   "message": "Job was active longer than specified deadline"}]  # fmt: skip
                    self._patch_status(self._job_path(run), {"active": 0, "conditions": conditions})
                    return
                time.sleep(0.05)
            run.outcome = "deleted"
            return
        pod_name = run.pod_name = f"{run.name}-{uuid.uuid4().hex[:5]}"
        pod_path = f"/api/v1/namespaces/{run.namespace}/pods/{pod_name}"
        self._create_pod(job, pod_name)
        template = spec["template"]["spec"]
        container = template["containers"][0]
        # Pending until every claim is bound (the scheduler would wait too).
        claims = _template_claims(job["spec"]["template"])
        while not all(self._bound_claim(run.namespace, c) for c in claims):
            if self._stop.is_set() or not self._job_exists(run, uid):
                run.outcome = "deleted"
                return
            if time.monotonic() - start > deadline_s:
                self._finish(run, pod_path, container, None, "deadline", start_wall)
                return
            time.sleep(0.05)
        if run.volume in self.stuck or run.volume in self.hang:
            reason = self.stuck.get(run.volume or "", "ContainerCreating")
            self._pod_waiting(pod_path, container["name"], reason, "injected by the test")
            run.outcome = "stuck" if run.volume in self.stuck else "pending"
            while self._job_exists(run, uid) and not self._stop.is_set():
                if run.volume in self.hang and time.monotonic() - start > deadline_s:
                    self._finish(run, pod_path, container, None, "deadline", start_wall)
                    return
                time.sleep(0.05)
            run.outcome = "deleted"
            return
        pod_root = self.root / "pods" / run.namespace / pod_name
        try:
            mounts = self._materialise(run, template, container, pod_root)
            env = self._environment(run, container, pod_name, mounts)
        except _ConfigMissing as e:
            self._pod_waiting(pod_path, container["name"], "CreateContainerConfigError", str(e))
            run.outcome = "stuck"
            while self._job_exists(run, uid) and not self._stop.is_set():
                time.sleep(0.05)
            run.outcome = "deleted"
            return
        termination_log = pod_root / "termination-log"
        termination_log.write_bytes(b"")
        env["DR_TERMINATION_LOG"] = str(termination_log)
        # The container's own paths are rewritten, not this machine's dr (which may lie below a mount path).
        command = [_rewrite(c, mounts) for c in container.get("command") or ["dr"]]
        command = [DR if c in ("dr", "/opt/venv/bin/dr") else c for c in command]
        run.argv = [*command, *(_rewrite(a, mounts) for a in container.get("args") or [])]
        run.env_names = sorted(env)
        out_path, err_path = pod_root / "stdout", pod_root / "stderr"
        gate = self._start_gate
        if gate is not None:
            try:
                gate.wait()
            except threading.BrokenBarrierError:
                self._start_gate = None
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                run.argv, env=env, stdout=out, stderr=err, cwd=pod_root, start_new_session=True
            )
            with self._lock:
                self.running += 1
                self.max_running = max(self.max_running, self.running)
                self.events.append(("job-start", f"{run.namespace}/{run.name}"))
            run.started, run.outcome = time.monotonic(), "running"
            self._pod_running(pod_path, container["name"])
            result = "succeeded"
            try:
                while proc.poll() is None:
                    if run.volume in self.kill:
                        # At once: "shortly after it started" (0.2 s) raced a mover of a
                        # small volume that finished first, and the fault never happened.
                        os.killpg(proc.pid, signal.SIGKILL)
                    if run.volume in self.evict:
                        self.evict.discard(run.volume)  # once: the replacement pod runs to its end
                        os.killpg(proc.pid, signal.SIGKILL)
                        result = "evicted"
                    if time.monotonic() - start > deadline_s:
                        os.killpg(proc.pid, signal.SIGKILL)
                        result = "deadline"
                    elif self._stop.is_set() or not self._job_exists(run, uid):
                        os.killpg(proc.pid, signal.SIGKILL)
                        result = "deleted"
                    time.sleep(0.05)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                with self._lock:
                    self.running -= 1
                    self.events.append(("job-end", f"{run.namespace}/{run.name}"))
        run.finished = time.monotonic()
        run.exit_code = proc.returncode
        run.stdout = out_path.read_text(errors="replace")
        run.stderr = err_path.read_text(errors="replace")
        message = termination_log.read_bytes()[:TERMINATION_FILE_BYTES].decode("utf-8", "replace")
        run.termination_message = message or None
        if result == "succeeded" and proc.returncode != 0:
            result = "failed"
        if result == "deleted":
            run.outcome = "deleted"
            return
        if result == "evicted":
            # The kubelet's (or the eviction API's) mark, then the Job controller's podFailurePolicy.
            self._patch_status(pod_path, {
                "phase": "Failed", "reason": "Evicted", "message": "injected by the test",
                "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                                "message": "injected by the test"}],
            })  # fmt: skip
            if _ignores_disruption(job):
                run.outcome = "evicted"
                self._run_job_inner(job, run)  # a replacement pod, not counted against backoffLimit
                return
            result = "failed"
        self._finish(run, pod_path, container, proc.returncode, result, start_wall)

    def _bound_claim(self, ns: str, claim: str) -> bool:
        pvc = self._get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
        return pvc is not None and (pvc.get("status") or {}).get("phase") == "Bound"

    def _create_pod(self, job: dict[str, Any], name: str) -> None:
        meta = job["metadata"]
        template = job["spec"]["template"]
        labels = {
            **(template.get("metadata") or {}).get("labels", {}),
            "job-name": meta["name"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
            "batch.kubernetes.io/controller-uid": meta["uid"],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {**template["spec"], "nodeName": "agent-node"},
        }
        code, data = self.kube.request("POST", f"/api/v1/namespaces/{meta['namespace']}/pods", body=pod)
        if code not in (201, 409):
            raise RuntimeError(f"create pod {name}: {code} {data[:300]!r}")
        self._patch_status(f"/api/v1/namespaces/{meta['namespace']}/pods/{name}", {"phase": "Pending"})

    def _pod_waiting(self, pod_path: str, container: str, reason: str, message: str) -> None:
        self._patch_status(
            pod_path,
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                ],
            },
        )

    def _pod_running(self, pod_path: str, container: str) -> None:
        self._patch_status(
            pod_path,
            {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": rfc3339()}},
                    }
                ],
            },
        )

    def _finish(
        self,
        run: JobRun,
        pod_path: str,
        container: dict[str, Any],
        exit_code: int | None,
        result: str,
        start_wall: float,
    ) -> None:
        run.outcome = result
        now = rfc3339()
        if exit_code is not None:
            code = exit_code if exit_code >= 0 else 128 - exit_code  # killed by signal N: 128+N
            terminated: dict[str, Any] = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": rfc3339(start_wall),
                "finishedAt": now,
            }
            if run.termination_message:
                terminated["message"] = run.termination_message
            elif code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
                log = (run.stdout + run.stderr).splitlines()[-TERMINATION_LINES:]
                terminated["message"] = "\n".join(log)[-TERMINATION_BYTES:]
            self._patch_status(
                pod_path,
                {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": terminated},
                        }
                    ],
                },
            )
        else:
            self._patch_status(pod_path, {"phase": "Failed", "reason": "DeadlineExceeded"})
        if result == "succeeded":
            status = {
                "active": 0,
                "succeeded": 1,
                "completionTime": now,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "lastTransitionTime": now},
                ],
            }
        elif result == "deadline":
            msg = "Job was active longer than specified deadline"
            status = {
                "active": 0,
                "failed": 1,
                "conditions": [
                    {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded", "message": msg},
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "DeadlineExceeded",
                        "message": msg,
                        "lastTransitionTime": now,
                    },
                ],
            }
        else:
            msg = "Job has reached the specified backoff limit"
            status = {
                "active": 0,
                "failed": 1,
                "conditions": [
                    {
                        "type": "FailureTarget",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": msg,
                    },
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": msg,
                        "lastTransitionTime": now,
                    },
                ],
            }
        self._patch_status(self._job_path(run), status)

    # ------------------------------------------------------------------ volumes and environment

    def _materialise(
        self, run: JobRun, pod_spec: dict[str, Any], container: dict[str, Any], pod_root: Path
    ) -> dict[str, str]:
        """Local directories for the pod's volumes; returns mountPath -> local path for the container."""
        pod_root.mkdir(parents=True, exist_ok=True)
        vols: dict[str, Path] = {}
        for v in pod_spec.get("volumes") or []:
            name = v["name"]
            local = pod_root / "volumes" / name
            if "persistentVolumeClaim" in v:
                vols[name] = self.volume_dir(run.namespace, v["persistentVolumeClaim"]["claimName"])
            elif "emptyDir" in v:
                local.mkdir(parents=True, exist_ok=True)
                vols[name] = local
            elif "projected" in v:
                local.mkdir(parents=True, exist_ok=True)
                default = v["projected"].get("defaultMode")
                for source in v["projected"].get("sources") or []:
                    self._project(run, source, local, default)
                vols[name] = local
            elif "configMap" in v or "secret" in v:
                local.mkdir(parents=True, exist_ok=True)
                src = v.get("configMap") or v.get("secret") or {}
                self._project(
                    run, {"configMap" if "configMap" in v else "secret": src}, local, src.get("defaultMode")
                )
                vols[name] = local
            else:
                raise RuntimeError(f"volume {name}: type not emulated by the agent: {sorted(v)}")
        mounts: dict[str, str] = {}
        for m in container.get("volumeMounts") or []:
            local = vols[m["name"]] / m["subPath"] if m.get("subPath") else vols[m["name"]]
            mounts[m["mountPath"].rstrip("/") or "/"] = str(local)
            run.mounts[m["mountPath"]] = (str(local), bool(m.get("readOnly")))
        return mounts

    def _project(self, run: JobRun, source: dict[str, Any], into: Path, default_mode: int | None) -> None:
        kind = "secret" if "secret" in source else "configMap" if "configMap" in source else None
        if kind is None:
            raise RuntimeError(f"projected source not emulated by the agent: {sorted(source)}")
        ref = source[kind]
        data = self._config_data(run.namespace, kind, ref["name"])
        if data is None:
            if ref.get("optional"):
                return
            raise _ConfigMissing(f'{kind.lower()} "{ref["name"]}" not found')
        items = ref.get("items") or [{"key": k, "path": k} for k in sorted(data)]
        fallback = 0o600 if kind == "secret" else 0o644
        for item in items:
            if item["key"] not in data:
                if ref.get("optional"):
                    continue
                raise _ConfigMissing(f"couldn't find key {item['key']} in {kind} {ref['name']}")
            path = into / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
            mode = item.get(
                "mode", ref.get("defaultMode", default_mode if default_mode is not None else fallback)
            )
            os.chmod(path, mode)
            run.files[str(path)] = mode

    def _config_data(self, ns: str, kind: str, name: str) -> dict[str, bytes] | None:
        plural = "secrets" if kind == "secret" else "configmaps"
        obj = self._get(f"/api/v1/namespaces/{ns}/{plural}/{name}")
        if obj is None:
            return None
        if kind == "secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return out

    def _environment(
        self, run: JobRun, container: dict[str, Any], pod_name: str, mounts: dict[str, str]
    ) -> dict[str, str]:
        env: dict[str, str] = {}
        for src in container.get("envFrom") or []:
            kind = "secret" if "secretRef" in src else "configMap"
            ref = src.get("secretRef") or src.get("configMapRef") or {}
            data = self._config_data(run.namespace, kind, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise _ConfigMissing(f'{kind.lower()} "{ref["name"]}" not found')
            prefix = src.get("prefix", "")
            env.update({prefix + k: v.decode() for k, v in data.items()})
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
                continue
            vf = var.get("valueFrom") or {}
            if "fieldRef" in vf:
                field_path = vf["fieldRef"]["fieldPath"]
                env[var["name"]] = {"metadata.name": pod_name, "metadata.namespace": run.namespace}[
                    field_path
                ]
                continue
            kind = "secret" if "secretKeyRef" in vf else "configMap"
            ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef") or {}
            data = self._config_data(run.namespace, kind, ref["name"]) or {}
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise _ConfigMissing(f"couldn't find key {ref['key']} in {kind} {ref['name']}")
            env[var["name"]] = data[ref["key"]].decode()
        env = {k: _rewrite(v, mounts) for k, v in env.items()}
        env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
        env.setdefault("HOSTNAME", pod_name)
        return env

    # ------------------------------------------------------------------ garbage collection

    def _collect_garbage(self, ns: str) -> None:
        jobs = {j["metadata"]["uid"] for j in self._list(f"/apis/batch/v1/namespaces/{ns}/jobs")}
        for pod in self._list(f"/api/v1/namespaces/{ns}/pods", "job-name"):
            owners = [o for o in pod["metadata"].get("ownerReferences") or [] if o.get("kind") == "Job"]
            if owners and all(o.get("uid") not in jobs for o in owners):
                self.kube.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}")
        if self._from_snapshot:
            present = {
                p["metadata"]["name"] for p in self._list(f"/api/v1/namespaces/{ns}/persistentvolumeclaims")
            }
            for key in [k for k in self._from_snapshot if k[0] == ns and k[1] not in present]:
                shutil.rmtree(self.volume_dir(*key), ignore_errors=True)
                self._from_snapshot.discard(key)


class _ConfigMissing(Exception):
    """A ConfigMap/Secret the pod refers to does not exist (the kubelet: CreateContainerConfigError)."""


# --------------------------------------------------------------------------- workload status (pure)


def _ignores_disruption(job: dict[str, Any]) -> bool:
    """Whether the Job's ``podFailurePolicy`` ignores pods failed by a disruption (not counted, replaced)."""
    for rule in ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []:
        conditions = rule.get("onPodConditions") or []
        if any(c.get("type") == "DisruptionTarget" and c.get("status", "True") == "True" for c in conditions):
            return bool(rule.get("action") == "Ignore")
    return False


def _replicas(spec: dict[str, Any]) -> int:
    n = spec.get("replicas")
    return n if isinstance(n, int) and not isinstance(n, bool) else 1


def _template_claims(obj: dict[str, Any]) -> list[str]:
    """Names of the PVCs a workload's (or a Job's) pod template mounts."""
    spec = obj.get("spec") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or spec  # a pod template, or a Job's template
    return [
        str(v["persistentVolumeClaim"]["claimName"])
        for v in pod_spec.get("volumes") or []
        if "persistentVolumeClaim" in v
    ]


def workload_status(kind: str, obj: dict[str, Any], started: bool, nodes: int = 1) -> dict[str, Any]:
    """The status a workload's controller writes: all pods ready when ``started``, else none ready yet."""
    spec = obj.get("spec") or {}
    generation = (obj.get("metadata") or {}).get("generation", 1)
    if kind == "DaemonSet":
        ready = nodes if started else 0
        return {
            "observedGeneration": generation,
            "desiredNumberScheduled": nodes,
            "currentNumberScheduled": nodes,
            "updatedNumberScheduled": nodes,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "numberAvailable": ready,
            "numberUnavailable": nodes - ready,
        }
    replicas = _replicas(spec)
    ready = replicas if started else 0
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }
    if kind == "ReplicaSet":
        status["fullyLabeledReplicas"] = replicas
        return status
    status["updatedReplicas"] = replicas
    if kind == "StatefulSet":
        status["currentReplicas"] = replicas
        return status
    status["unavailableReplicas"] = replicas - ready
    now = rfc3339()
    status["conditions"] = [
        {"type": "Available", "status": "True" if started else "False",
         "reason": "MinimumReplicasAvailable" if started else "MinimumReplicasUnavailable",
         "lastUpdateTime": now, "lastTransitionTime": now},
        {"type": "Progressing", "status": "True",
         "reason": "NewReplicaSetAvailable" if started else "ReplicaSetUpdated",
         "lastUpdateTime": now, "lastTransitionTime": now},
    ]  # fmt: skip
    return status


def _rewrite(value: str, mounts: dict[str, str]) -> str:
    """A mount path, or a path below one, as the local directory standing for it."""
    for mount in sorted(mounts, key=len, reverse=True):
        if value == mount:
            return mounts[mount]
        if value.startswith(mount.rstrip("/") + "/"):
            return mounts[mount] + value[len(mount.rstrip("/")) :]
    return value


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check()`` until it returns something truthy (tests waiting for the agent)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
