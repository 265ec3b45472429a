"""Back up the data of PersistentVolumeClaims: CSI snapshot or file-system copy, by mover Jobs, with hooks.

``backup_volumes(kube, pvcs, ctx, find_snapshot)`` is the volume half of
``dr backup``. For each PVC it picks a method:

* **snapshot** (``volumes.mode`` ``snapshot``, or ``auto`` when a
  VolumeSnapshotClass exists for the PVC's CSI driver or the policy names
  one): a VolumeSnapshot in the PVC's namespace, cloned into dr's namespace
  (``dr.kube.snapshots`` explains why), a temporary PVC from the clone and a
  mover Job in dr's namespace mounting it read-only. The application is
  frozen (pre/post hooks) only until the snapshot is *cut*; the copy runs
  afterwards.
* **filesystem** (``filesystem``, or ``auto`` without a class): a mover Job
  in the PVC's namespace mounting the PVC itself read-only, pinned to the
  node of the pod that mounts it (a ReadWriteOnce volume can only be mounted
  there) with that pod's tolerations; the hooks bracket the whole copy.
  Needs the ConfigMap ``dr-config`` (and the credentials Secret, if any) in
  that namespace — a pod can only reference objects of its own namespace —
  which is checked before the Job is made.

Hooks (``dr.backup.hooks``) of the pods mounting a PVC make the PVC and the
pods one unit: pre hooks of all its pods, then the point-in-time step of
each of its volumes, then the post hooks. A pre hook failing with ``fail``
means the unit's volumes are not backed up (their error says why).

At most ``mover.parallelism`` mover Jobs exist at a time (a semaphore around
each Job's life), whatever mix of methods. The mover tags its volume
snapshot ``dr.dev/mover-job=<job name>``; ``find_snapshot(job_name)`` looks
it up in the repository (identical in a real cluster and under the test
agent, and independent of pod logs), falling back to the summary in the
pod's termination message or log tail. A failed volume (Job failed,
deadline exceeded, pod stuck, snapshot not ready in time) gets an error with
the reason; the others go on, and the caller ends the backup
PartiallyFailed. A PVC that no copy can read — not Bound (Lost: with a
warning), block-mode, or being deleted (no new snapshot or pod may use it) — is skipped with the
reason instead. Every temporary object is deleted in a ``finally``.

Limitation: movers run as uid 65532 (non-root, read-only root file system).
Files that uid cannot read are reported by the mover as errors; the
Job (of either method) gets the mounting pods' ``fsGroup``/``supplementalGroups``
as supplemental groups so group-readable data works.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from kubernetes.utils import parse_quantity
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from dr.backup.hooks import HookResult, HookRun, PodHookSet, hooks_for_pod, run_post, run_pre
from dr.config import PodHooks, VolumeOptions
from dr.deploy.rbac import BACKUP_SA
from dr.errors import DrError
from dr.interrupt import check as check_stop
from dr.interrupt import stopping
from dr.kube.client import ApiError, KubeClient
from dr.kube.exec import Exec, KubernetesExec
from dr.kube.jobs import (
    DATA_PATH,
    SOURCE_ANNOTATION,
    JobOutcome,
    MoverContext,
    MoverJob,
    TemporaryObjects,
    check_mover_namespace,
    expiry,
    object_name,
    run_mover_job,
    summary_from_log,
    temporary_labels,
)
from dr.kube.objects import metadata
from dr.kube.placement import RWOP_IN_USE, exclusive_users, placement, pod_groups, users_of
from dr.kube.pods import NamespacePods
from dr.kube.snapshots import (
    PVCS,
    VOLUME_SNAPSHOT_CONTENTS,
    VOLUME_SNAPSHOTS,
    SnapshotRef,
    clone_snapshot,
    create_pvc_from_snapshot,
    create_snapshot,
    csi_driver_of,
    find_snapshot_class,
    storage_class_for_restore,
    wait_snapshot,
)
from dr.printable import printable

log = logging.getLogger(__name__)

MOVER_JOB_TAG = "dr.dev/mover-job"
BACKUP_TAG = "dr.dev/backup"
NAMESPACE_TAG = "dr.dev/namespace"
PVC_TAG = "dr.dev/pvc"

FindSnapshot = Callable[[str], dict[str, Any] | None]


# --------------------------------------------------------------------------- inputs and results


class VolumeBackupContext(MoverContext):
    """Everything the volume backup needs besides the cluster and the PVCs."""

    backup_id: str
    volumes: VolumeOptions = Field(default_factory=VolumeOptions)
    service_account: str | None = BACKUP_SA  # mover pods in the mover namespace
    app_service_account: str | None = None  # file-system movers: None = default account, no token
    parents: dict[str, str] = Field(default_factory=dict)  # "namespace/pvc" -> parent volume snapshot id
    tags: dict[str, str] = Field(default_factory=dict)
    hooks: list[PodHooks] = Field(default_factory=list)


class VolumeResult(BaseModel):
    """What happened to one volume (backup or restore); ``error`` set when it failed."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    namespace: str
    pvc: str
    storage_class: str | None = None
    size: str | None = None
    method: Literal["snapshot", "filesystem", "restore"] | None = None
    snapshot_id: str | None = None
    files: int = 0
    bytes: int = 0
    new_bytes: int = 0
    duration_seconds: float = 0.0
    job: str | None = None
    skipped: str | None = None  # why nothing was copied (not an error: e.g. an unbound PVC)
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    hooks: list[HookResult] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pvc}"

    def describe(self) -> str:
        if self.error:
            return f"volume {self.key}: {self.error}"
        if self.skipped:
            return f"volume {self.key}: skipped: {self.skipped}"
        return f"volume {self.key}: {self.method} {self.snapshot_id or ''} {self.files} files, {self.bytes} bytes"


def fail(result: VolumeResult, message: str) -> None:
    """Record a failure (a second one is appended: a failed post hook and a failed copy are both news)."""
    result.error = message if result.error is None else f"{result.error}; {message}"


def apply_summary(result: VolumeResult, summary: dict[str, Any]) -> None:
    """Fill a result from a mover summary (``dr mover backup -o json`` or ``snapshot_summary``)."""
    result.snapshot_id = str(summary.get("id") or "") or result.snapshot_id
    result.files = int(summary.get("files") or 0)
    result.bytes = int(summary.get("bytes") or 0)
    result.new_bytes = int(summary.get("newBytes") or 0)
    result.duration_seconds = float(summary.get("durationSeconds") or 0.0)
    errors = summary.get("errors") or []
    if errors:
        # They name files of the volume (anyone's text), printed to terminals: escaped.
        result.warnings += [f"mover: {printable(str(e))}" for e in errors[:20]]


# --------------------------------------------------------------------------- planning


@dataclass
class _Volume:
    """One PVC being backed up: its result, how, and what it created."""

    pvc: dict[str, Any]
    result: VolumeResult
    temp: TemporaryObjects
    snapshot_class: str | None = None
    driver: str | None = None  # the CSI driver (snapshot method)
    pods: list[dict[str, Any]] = field(default_factory=list)  # pods mounting it
    snapshot: SnapshotRef | None = None

    @property
    def done(self) -> bool:
        return self.result.error is not None or self.result.skipped is not None


def pvc_size(pvc: dict[str, Any]) -> str | None:
    cap = ((pvc.get("status") or {}).get("capacity") or {}).get("storage")
    req = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    return str(cap or req) if (cap or req) else None


class _Planner:
    def __init__(
        self, kube: KubeClient, ctx: VolumeBackupContext, on_warning: Callable[[str], None] | None = None
    ) -> None:
        self.kube = kube
        self.ctx = ctx
        self.pods_in = NamespacePods(kube, "no hooks, no node placement", on_warning)
        self._classes: dict[str, str | None] = {}

    def class_for(self, pvc: dict[str, Any]) -> tuple[str | None, str | None]:
        """The PVC's CSI driver and the VolumeSnapshotClass to use for it (None, None: not a CSI volume)."""
        driver = csi_driver_of(self.kube, pvc)
        if driver is None:
            return None, None
        if driver not in self._classes:
            cls = find_snapshot_class(self.kube, driver, self.ctx.volumes.snapshot_class)
            self._classes[driver] = str(metadata(cls).get("name")) if cls else None
        return driver, self._classes[driver]

    def plan(self, pvc: dict[str, Any]) -> _Volume:
        meta = metadata(pvc)
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        spec = pvc.get("spec") or {}
        result = VolumeResult(
            namespace=ns, pvc=name, storage_class=spec.get("storageClassName"), size=pvc_size(pvc)
        )
        vol = _Volume(pvc, result, TemporaryObjects(self.kube))
        vol.pods = users_of(self.pods_in(ns), name)
        phase = (pvc.get("status") or {}).get("phase")
        if meta.get("deletionTimestamp"):
            # Kept only while a pod still uses it (pvc-protection). The snapshot controller
            # refuses to snapshot it and the scheduler to place another pod mounting it: a
            # copy would only wait for its timeout. Skipped, with a warning.
            result.skipped = (
                "PVC is being deleted: no new snapshot or pod may use it; its data is not backed up"
            )
            result.warnings.append(result.skipped)
            return vol
        if phase == "Lost":
            # Its volume was deleted (or did not come back with the cluster): the data is gone,
            # news for whoever reads this backup, not a claim still waiting for its first data.
            result.skipped = (
                f"PVC is Lost: its PersistentVolume {spec.get('volumeName') or '(unnamed)'} is gone; "
                "there is no data to back up"
            )
            result.warnings.append(result.skipped)
            return vol
        if phase != "Bound":
            result.skipped = f"PVC is {phase or 'not bound'}: it holds no data yet"
            return vol
        if spec.get("volumeMode") == "Block":
            # Skipped, not failed: a raw device (a VM disk) cannot change, and as a failure it
            # made every backup of its namespace partially failed with nothing to fix. The
            # warning keeps it visible: its data is in no backup.
            result.skipped = (
                "block-mode volume: its data is not backed up (the mover copies files, not devices)"
            )
            result.warnings.append(result.skipped)
            return vol
        mode = self.ctx.volumes.mode
        try:
            driver, cls = self.class_for(pvc) if mode in ("auto", "snapshot") else (None, None)
        except (ApiError, DrError) as e:
            result.error = e.message
            return vol
        if cls:
            result.method, vol.snapshot_class, vol.driver = "snapshot", cls, driver
        elif mode == "snapshot":
            result.error = (
                f"no VolumeSnapshotClass for CSI driver {driver!r} (volumes.mode is snapshot)"
                if driver
                else "the volume is not a CSI volume: it cannot be snapshotted (volumes.mode is snapshot)"
            )
        else:
            result.method = "filesystem"
            if exclusive_users(pvc, vol.pods):
                result.error = f"{RWOP_IN_USE}; use a CSI snapshot (volumes.mode snapshot) or stop the pod"
        return vol


@dataclass
class _Unit:
    """Volumes that must be handled together because pods with hooks mount them."""

    volumes: list[_Volume]
    hooksets: list[PodHookSet]


def group_units(volumes: list[_Volume], policy_hooks: list[PodHooks]) -> list[_Unit]:
    """Connected groups of (volumes, pods with hooks): pre hooks of all pods, then the volumes, then post."""
    hooksets: dict[tuple[str, str], PodHookSet] = {}
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            i = parent[i]
        return i

    pod_first: dict[tuple[str, str], int] = {}
    for i, vol in enumerate(volumes):
        find(i)
        for pod in vol.pods:
            key = (str(metadata(pod).get("namespace")), str(metadata(pod).get("name")))
            hs = hooksets.get(key) or hooks_for_pod(pod, policy_hooks)
            hooksets[key] = hs
            if hs.empty:
                continue
            if key in pod_first:
                parent[find(i)] = find(pod_first[key])
            else:
                pod_first[key] = i
    groups: dict[int, _Unit] = {}
    for i, vol in enumerate(volumes):
        unit = groups.setdefault(find(i), _Unit([], []))
        unit.volumes.append(vol)
    for key, i in sorted(pod_first.items()):
        groups[find(i)].hooksets.append(hooksets[key])
    return list(groups.values())


# --------------------------------------------------------------------------- running


class _Run:
    def __init__(
        self, kube: KubeClient, ctx: VolumeBackupContext, find: FindSnapshot, exec_: Exec | None, now: float
    ) -> None:
        self.kube = kube
        self.ctx = ctx
        self.find = find
        self._exec = exec_
        self.expires = expiry(now, ctx.mover.deadline)
        self.labels = temporary_labels(ctx.backup_id, self.expires)
        self.slots = threading.Semaphore(ctx.mover.parallelism)
        self.pod_config = ctx.pod_config()
        self._checked: dict[str, str | None] = {}
        self._lock = threading.Lock()

    @property
    def exec(self) -> Exec:
        if self._exec is None:
            self._exec = KubernetesExec(self.kube.api_client)
        return self._exec

    # -- units

    def unit(self, unit: _Unit, movers: ThreadPoolExecutor) -> list[Future[None]]:
        """Hooks and the point-in-time step of a unit; returns the snapshot copies it queued."""
        pending = [v for v in unit.volumes if not v.done]
        if not pending:
            return []
        if stopping():
            # Queued behind other units when dr was told to stop: freeze nothing now.
            for vol in pending:
                fail(vol.result, "not backed up: interrupted: dr is stopping")
            return []
        pre = HookRun()
        post: HookRun | None = None
        try:
            # Inside the try: whatever ends a pre hook (a lost connection, an
            # interrupt), the post hooks run once one started.
            if unit.hooksets:
                run_pre(self.exec, unit.hooksets, pre)
            if pre.fatal is None:
                for vol in pending:
                    self._point_in_time(vol)
            else:
                for vol in pending:
                    fail(vol.result, f"not backed up: pre hook failed: {pre.fatal}")
        finally:
            if unit.hooksets and (pre.fatal is None or pre.ran):
                post = run_post(self.exec, unit.hooksets)
        # A cut snapshot is copied even if a post hook failed: the data was taken while frozen.
        to_copy = [v for v in pending if v.snapshot is not None and v.result.error is None]
        self._record_hooks(unit, pre, post)
        return [movers.submit(self._copy_snapshot, v) for v in to_copy]

    def _record_hooks(self, unit: _Unit, pre: HookRun, post: HookRun | None) -> None:
        runs = [pre] + ([post] if post else [])
        for vol in unit.volumes:
            mine = {(metadata(p).get("namespace"), metadata(p).get("name")) for p in vol.pods}
            vol.result.hooks = [r for run in runs for r in run.results if (r.namespace, r.pod) in mine]
            vol.result.warnings += [
                r.describe() for r in vol.result.hooks if not r.ok and r.on_error == "continue"
            ]
            if post and post.fatal:
                fail(vol.result, f"post hook failed: {post.fatal}")

    def _point_in_time(self, vol: _Volume) -> None:
        """Snapshot: cut the VolumeSnapshot (the copy comes later). File system: the whole copy."""
        try:
            if vol.result.method == "snapshot":
                self._take_snapshot(vol)
            else:
                self._copy_filesystem(vol)
        except (ApiError, DrError) as e:
            fail(vol.result, e.message)
        finally:
            if vol.result.method != "snapshot" or vol.done:
                self._cleanup(vol)

    # -- snapshot method

    def _take_snapshot(self, vol: _Volume) -> None:
        ns, pvc = vol.result.namespace, vol.result.pvc
        name = object_name("dr", pvc)
        vol.temp.add(VOLUME_SNAPSHOTS, ns, name)
        assert vol.snapshot_class is not None
        # One budget (volumes.snapshotTimeout) for cutting; the copy gets its own (_copy_snapshot).
        vol.snapshot = create_snapshot(self.kube, ns, name, pvc, vol.snapshot_class, self.labels)
        wait_snapshot(self.kube, vol.snapshot, timeout=self.snapshot_timeout, until="taken")

    @property
    def snapshot_timeout(self) -> float:
        return self.ctx.volumes.snapshot_timeout.total_seconds()

    def _copy_snapshot(self, vol: _Volume) -> None:
        try:
            check_stop()
            assert vol.snapshot is not None
            # A budget of its own for readiness and the clone, from now: a copy may have waited
            # for a free mover slot (behind big volumes) far longer than the budget of the cut.
            timeout = self.snapshot_timeout
            deadline = time.monotonic() + timeout
            ready = wait_snapshot(self.kube, vol.snapshot, timeout=timeout, deadline=deadline)
            mover_ns = self.ctx.mover.namespace
            clone_name = object_name("dr", vol.result.pvc)
            vol.temp.add(VOLUME_SNAPSHOT_CONTENTS, None, clone_name)
            vol.temp.add(VOLUME_SNAPSHOTS, mover_ns, clone_name)
            clone_snapshot(
                self.kube, ready, mover_ns, clone_name, self.labels, timeout=timeout, deadline=deadline
            )
            size = temporary_size((ready.get("status") or {}).get("restoreSize"), vol.result.size)
            assert vol.driver is not None
            storage_class = storage_class_for_restore(self.kube, vol.driver, vol.result.storage_class)
            vol.temp.add(PVCS, mover_ns, clone_name)
            create_pvc_from_snapshot(
                self.kube,
                mover_ns,
                clone_name,
                clone_name,
                storage_class=storage_class,
                size=size,
                labels=self.labels,
            )
            # Not pinned (the copy is a volume of its own), but with the groups of the pods
            # using the volume: their fsGroup is what makes the files readable to others.
            self._run_mover(
                vol, mover_ns, clone_name, self.ctx.service_account, pods=[], groups=pod_groups(vol.pods)
            )
        except (ApiError, DrError) as e:
            fail(vol.result, e.message)
        finally:
            self._cleanup(vol)

    # -- file-system method

    def _copy_filesystem(self, vol: _Volume) -> None:
        ns = vol.result.namespace
        problem = self._check_namespace(ns)
        if problem:
            fail(vol.result, problem)
            return
        self._run_mover(vol, ns, vol.result.pvc, self.ctx.app_service_account, pods=vol.pods)

    def _check_namespace(self, namespace: str) -> str | None:
        """A pod can only use the ConfigMap and Secret of its own namespace: are they there?"""
        with self._lock:
            if namespace in self._checked:
                return self._checked[namespace]
        problem = check_mover_namespace(self.kube, namespace, self.pod_config)
        with self._lock:
            self._checked[namespace] = problem
        return problem

    # -- the Job

    def _run_mover(
        self,
        vol: _Volume,
        namespace: str,
        claim: str,
        service_account: str | None,
        pods: list[dict[str, Any]],
        groups: list[int] | None = None,
    ) -> None:
        res = vol.result
        job_name = object_name("dr-backup", res.pvc)
        args = ["--repo", self.ctx.repo_url, "mover", "backup", DATA_PATH, "-o", "json"]
        tags = {
            **self.ctx.tags,
            BACKUP_TAG: self.ctx.backup_id,
            NAMESPACE_TAG: res.namespace,
            PVC_TAG: res.pvc,
            MOVER_JOB_TAG: job_name,
        }
        for k, v in tags.items():
            args += ["--tag", f"{k}={v}"]
        parent = self.ctx.parents.get(res.key)
        if parent:
            args += ["--parent", parent]
        node, tolerations, pinned_groups = placement(pods, vol.pvc)
        groups = pinned_groups if groups is None else groups
        job = MoverJob(
            name=job_name,
            namespace=namespace,
            args=args,
            claim=claim,
            read_only=True,
            run_id=self.ctx.backup_id,
            expires=self.expires,
            service_account=service_account,
            node_name=node,
            tolerations=tolerations,
            supplemental_groups=groups,
            annotations={SOURCE_ANNOTATION: res.key},
        )
        res.job = job_name
        outcome = run_mover_job(
            self.kube,
            vol.temp,
            job,
            self.pod_config,
            self.slots,
            follow_grace=self.ctx.follow_grace,
            stuck_grace=self.ctx.stuck_grace,
        )
        collect_backup(res, outcome, self.find)

    def _cleanup(self, vol: _Volume) -> None:
        problems = vol.temp.delete_all()
        vol.result.warnings += problems


def temporary_size(restore_size: Any, volume_size: str | None) -> str:
    """The request of a PVC restored from a snapshot: the larger of ``restoreSize`` and the volume's size.

    ``restoreSize`` is the least a restored volume needs (it may exceed the
    PVC's request when the provider allocated more); drivers that do not know
    it report ``0``, and a claim for 0 bytes is invalid. Like Velero's CSI
    restore, take the larger; unparseable values are left out.
    """
    best: tuple[Any, str] | None = None
    for text in (restore_size, volume_size):
        try:
            value = parse_quantity(str(text)) if text is not None else None
        except ValueError:
            value = None
        if value is not None and value > 0 and (best is None or value > best[0]):
            best = (value, str(text))
    return best[1] if best else "1Gi"


def collect_backup(res: VolumeResult, outcome: JobOutcome, find: FindSnapshot) -> None:
    """The volume snapshot the mover made (by its tag), else its summary from the pod; errors explained."""
    summary = find(outcome.name)
    if summary is None:
        pod_msg = outcome.pod.message if outcome.pod else None
        summary = summary_from_log(pod_msg) or summary_from_log(outcome.log_tail)
    if summary is not None:
        apply_summary(res, summary)
    if not outcome.succeeded:
        fail(res, outcome.describe())
    elif summary is None:
        fail(
            res,
            (
                f"Job {outcome.name} succeeded but its volume snapshot (tag {MOVER_JOB_TAG}={outcome.name}) "
                "is not in the repository"
            ),
        )


# --------------------------------------------------------------------------- entry point


def backup_volumes(
    kube: KubeClient,
    pvcs: list[dict[str, Any]],
    ctx: VolumeBackupContext,
    find_snapshot: FindSnapshot,
    *,
    exec_: Exec | None = None,
    on_warning: Callable[[str], None] | None = None,
    now: Callable[[], float] = time.time,
) -> list[VolumeResult]:
    """Back up the data of ``pvcs`` (PVC objects); one result per PVC, in the order given.

    ``find_snapshot(job_name)`` returns the repository's volume snapshot
    tagged ``dr.dev/mover-job=<job_name>`` as a summary dict (``id``,
    ``files``, ``bytes``, ``newBytes``, ``durationSeconds``), or None —
    ``RepositorySnapshotFinder`` does that. ``exec_`` runs hooks (default:
    ``KubernetesExec`` over this client). Nothing is raised for a volume's
    failure; API errors outside any volume (listing pods) are warnings, given to
    ``on_warning`` once per namespace (default: logged).
    """
    if ctx.volumes.mode == "none" or not pvcs:
        return []
    planner = _Planner(kube, ctx, on_warning)
    volumes = [planner.plan(p) for p in pvcs]
    units = group_units([v for v in volumes if not v.done], ctx.hooks)
    run = _Run(kube, ctx, find_snapshot, exec_, now())
    workers = max(1, ctx.mover.parallelism)
    try:
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dr-volume") as unit_pool,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dr-copy") as copy_pool,
        ):
            unit_futures = [unit_pool.submit(run.unit, u, copy_pool) for u in units]
            copies: list[Future[None]] = []
            for uf in unit_futures:
                copies += uf.result()
            for cf in copies:
                cf.result()
    finally:
        # Whatever happened above (an interrupt, a bug), nothing temporary stays.
        for vol in volumes:
            if len(vol.temp):
                vol.result.warnings += vol.temp.delete_all()
    return [v.result for v in volumes]


# --------------------------------------------------------------------------- finding the mover's snapshot


class RepositorySnapshotFinder:
    """``find_snapshot`` over a repository: volume snapshots by their ``dr.dev/mover-job`` tag.

    Reads only snapshot objects it has not seen yet on each call, so a backup
    of many volumes lists the repository's snapshots once per volume but
    decodes each snapshot once.
    """

    def __init__(self, repo: Any) -> None:
        self._repo = repo
        self._by_job: dict[str, dict[str, Any]] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, job_name: str) -> dict[str, Any] | None:
        from dr.repo.snapshots import load_snapshot

        with self._lock:
            if job_name not in self._by_job:
                fresh = [n for n in self._repo.list_objects("snapshots") if n not in self._seen]
                for name in fresh:
                    self._seen.add(name)
                    snap = load_snapshot(self._repo, name)
                    job = snap.tags.get(MOVER_JOB_TAG)
                    if snap.kind == "volume" and job:
                        self._by_job[job] = snapshot_as_summary(snap)
            return self._by_job.get(job_name)


def snapshot_as_summary(snap: Any) -> dict[str, Any]:
    """A volume snapshot in the shape ``dr mover backup -o json`` prints."""
    st = snap.stats
    return {
        "id": snap.id,
        "files": st.files if st else 0,
        "dirs": st.dirs if st else 0,
        "bytes": st.bytes if st else 0,
        "newBytes": st.new_bytes if st else 0,
        "newBlobs": st.new_blobs if st else 0,
        "durationSeconds": st.duration_seconds if st else 0.0,
        "errors": [],
    }
