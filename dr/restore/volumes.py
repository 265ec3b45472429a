"""Restore volume data: one mover Job per PVC writes a volume snapshot into it (``dr restore``, drills).

``restore_volumes(kube, targets, ctx)`` runs after the PVCs have been
restored and before the workloads that use them start. For each target
(namespace, PVC, volume snapshot id) a mover Job in the PVC's namespace
mounts the PVC read-write at ``/data`` and runs ``dr mover restore --repo
URL ID /data``; the PVC binds to the Job's pod (WaitForFirstConsumer
classes bind here). At most ``mover.parallelism`` Jobs run at once; each is
followed to its end and deleted in a ``finally``; a failure is that
volume's error with the reason, the others go on. A claim that can never
bind — its StorageClass does not exist here
(``dr.kube.provisioning.missing_storage_class``) — fails at
once instead of holding a mover pod Pending until its deadline.

Restore movers run in the application namespace because a pod can only
mount PVCs of its own namespace; the ConfigMap ``dr-config`` and the
credentials Secret must exist there (checked first: ``check_mover_namespace``).
A claim that a pod already mounts (a re-run, after the first run restored the
workloads) gets its mover on that pod's node, with its tolerations and groups
(``dr.kube.placement``): a ReadWriteOnce volume cannot be attached to a second
node; a ReadWriteOncePod claim in use is refused at once.

Which claims get data (``awaiting_data``): those carrying the
``dr.dev/data-pending`` mark. A restore creates each claim whose data it
brings back with that mark (``dr.restore.transforms.pvc_mark_data_pending``)
and removes it once the claim's mover succeeded. A restore that stopped in
between — a failed mover, a crash, Ctrl-C — leaves the claim marked, and the
next run fills it although the claim itself now exists and compares
``unchanged``. Claims without the mark (the application's own, or filled by
an earlier run) are never written to; ``awaiting_data`` names those the backup
has data for, and the restore says that data was not restored (``not_restored``). A mark, not the run's identity,
decides: each run has its own restore id, and a mark also survives a re-run
with other options or of a newer backup.

Ownership: the mover runs as uid 65532, so restored files belong to it
(modes and times are restored; the pod's ``fsGroup`` makes the volume
writable). ``restore_ownership=True`` runs the restore mover as root with
only the ``CHOWN``, ``FOWNER`` and ``DAC_OVERRIDE`` capabilities, so the
original owners are restored too — for namespaces whose Pod Security level
allows it (``baseline``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel

from dr.backup.volumes import VolumeResult, fail, pvc_size
from dr.errors import DrError
from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import get_object
from dr.kube.jobs import (
    DATA_PATH,
    SOURCE_ANNOTATION,
    MoverContext,
    MoverJob,
    TemporaryObjects,
    check_mover_namespace,
    expiry,
    object_name,
    run_mover_job,
    summary_from_log,
)
from dr.kube.placement import RWOP_IN_USE, exclusive_users, placement, users_of
from dr.kube.pods import NamespacePods
from dr.kube.provisioning import missing_storage_class
from dr.kube.snapshots import PVCS
from dr.restore.results import RestoreItemResult
from dr.restore.transforms import (
    DATA_PENDING_ANNOTATION,
    DATA_RESTORED_ANNOTATION,
    data_pending,
    data_restored,
)

DescribeSnapshot = Callable[[str], dict[str, Any] | None]


class VolumeRestoreTarget(BaseModel):
    """Write volume snapshot ``snapshot_id`` into PVC ``namespace/pvc``."""

    namespace: str
    pvc: str
    snapshot_id: str


class VolumeRestoreContext(MoverContext):
    """Everything the volume restore needs besides the cluster and the targets."""

    restore_id: str
    service_account: str | None = None  # in the app namespace; None: default account, no token
    restore_ownership: bool = False


# Outcomes of a claim this restore makes (or, in a dry run, would make): it gets its data.
MADE = frozenset({"created", "recreated", "would-create", "would-recreate"})


def awaiting_data(
    kube: KubeClient, results: Iterable[RestoreItemResult], snapshots: dict[str, str]
) -> tuple[list[VolumeRestoreTarget], list[str], list[str]]:
    """The restored claims still marked as awaiting their data, with the backup's snapshot of each.

    ``results`` are the PersistentVolumeClaims stage's (or a dry run's plan); ``snapshots``
    maps "namespace/pvc" as backed up to its volume snapshot. Returns the targets, per
    claim that could not be read a problem, and the claims with backed-up data that
    already existed unmarked ("namespace/name"): their data is not restored — unless a
    restore brought that very snapshot into them (``dr.dev/data-restored``, an earlier run).
    """
    targets: list[VolumeRestoreTarget] = []
    problems: list[str] = []
    kept: list[str] = []
    for r in results:
        if (r.item.group, r.item.resource) != ("", "persistentvolumeclaims") or r.outcome == "failed":
            continue
        snapshot = snapshots.get(r.backed_up_as())
        if not snapshot:
            continue
        namespace = r.item.namespace or ""
        try:
            pvc = get_object(kube, PVCS, namespace, r.item.name)
        except ApiError as e:
            problems.append(f"volume {namespace}/{r.item.name}: cannot read the PVC: {e.short}")
            continue
        if pvc is not None and data_pending(pvc):
            targets.append(VolumeRestoreTarget(namespace=namespace, pvc=r.item.name, snapshot_id=snapshot))
        elif pvc is not None and r.outcome not in MADE and data_restored(pvc) != snapshot:
            kept.append(f"{namespace}/{r.item.name}")
    return targets, problems, kept


def not_restored(kept: list[str]) -> str:
    """The warning for claims that existed before the restore: it never writes into them."""
    return (
        f"the data of {len(kept)} volume(s) is not restored: their claims already exist "
        f"({', '.join(sorted(kept))}) and a restore writes only into claims it creates (delete the claim, "
        "its pods stopped, and restore again; or restore into another namespace: --namespace-mapping)"
    )


def clear_data_pending(kube: KubeClient, namespace: str, name: str, snapshot_id: str) -> None:
    """Replace the data-pending mark by the data-restored one: the claim holds the data of
    ``snapshot_id``, a re-run leaves it alone and does not call its data not restored."""
    patch = {
        "metadata": {"annotations": {DATA_PENDING_ANNOTATION: None, DATA_RESTORED_ANNOTATION: snapshot_id}}
    }
    kube.call(
        "PATCH",
        PVCS.object_path(namespace, name),
        body=json.dumps(patch).encode(),
        content_type="application/merge-patch+json",
    )


def restore_volumes(
    kube: KubeClient,
    targets: list[VolumeRestoreTarget],
    ctx: VolumeRestoreContext,
    *,
    describe_snapshot: DescribeSnapshot | None = None,
    on_warning: Callable[[str], None] | None = None,
    now: Callable[[], float] = time.time,
) -> list[VolumeResult]:
    """Restore each target's data; one result per target, in the order given (never raises for a volume).

    ``describe_snapshot(id)`` (optional) gives the snapshot's summary (files,
    bytes) for the results where the mover's own summary cannot be read
    (clusters that do not serve pod logs). ``on_warning`` gets the warnings of no
    one volume, once each: a namespace whose pods cannot be listed (default: logged).
    """
    if not targets:
        return []
    pod = ctx.pod_config()
    slots = threading.Semaphore(ctx.mover.parallelism)
    expires = expiry(now(), ctx.mover.deadline)
    checked: dict[str, str | None] = {}
    pods_in = NamespacePods(kube, "movers not placed next to them", on_warning)
    lock = threading.Lock()
    temps = [TemporaryObjects(kube) for _ in targets]

    def check(namespace: str) -> str | None:
        with lock:
            if namespace not in checked:
                checked[namespace] = check_mover_namespace(kube, namespace, pod)
            return checked[namespace]

    def one(i: int) -> VolumeResult:
        t = targets[i]
        res = VolumeResult(namespace=t.namespace, pvc=t.pvc, method="restore", snapshot_id=t.snapshot_id)
        try:
            pvc = get_object(kube, PVCS, t.namespace, t.pvc)
            if pvc is None:
                fail(res, f"PVC {t.namespace}/{t.pvc} does not exist (restore the PVCs first)")
                return res
            res.storage_class = (pvc.get("spec") or {}).get("storageClassName")
            res.size = pvc_size(pvc)
            problem = missing_storage_class(kube, pvc) or check(t.namespace)
            if problem:
                fail(res, problem)
                return res
            # A claim a pod already mounts (the workloads of an earlier run that stopped before
            # this claim's data was in): a ReadWriteOnce volume is attached to that pod's node.
            users = users_of(pods_in(t.namespace), t.pvc)
            exclusive = exclusive_users(pvc, users)
            if exclusive:
                fail(res, f"{RWOP_IN_USE} (pod {', '.join(exclusive)}); stop the pod")
                return res
            node, tolerations, groups = placement(users, pvc)
            job_name = object_name("dr-restore", t.pvc)
            res.job = job_name
            args = ["--repo", ctx.repo_url, "mover", "restore", t.snapshot_id, DATA_PATH, "-o", "json"]
            job = MoverJob(
                name=job_name,
                namespace=t.namespace,
                args=args,
                claim=t.pvc,
                read_only=False,
                run_id=ctx.restore_id,
                expires=expires,
                service_account=ctx.service_account,
                node_name=node,
                tolerations=tolerations,
                supplemental_groups=groups,
                run_as_root=ctx.restore_ownership,
                annotations={SOURCE_ANNOTATION: f"{t.namespace}/{t.pvc}"},
            )
            start = time.monotonic()
            outcome = run_mover_job(
                kube,
                temps[i],
                job,
                pod,
                slots,
                follow_grace=ctx.follow_grace,
                stuck_grace=ctx.stuck_grace,
            )
            summary = summary_from_log(outcome.pod.message if outcome.pod else None) or summary_from_log(
                outcome.log_tail
            )
            if summary is None and describe_snapshot is not None:
                summary = describe_snapshot(t.snapshot_id)
            if summary is not None:
                res.files = int(summary.get("files") or 0)
                res.bytes = int(summary.get("bytes") or 0)
            res.duration_seconds = round(time.monotonic() - start, 3)
            if not outcome.succeeded:
                fail(res, outcome.describe())
            elif data_pending(pvc):
                try:
                    clear_data_pending(kube, t.namespace, t.pvc, t.snapshot_id)
                except ApiError as e:
                    # Still marked: a re-run would write the same data again over what the app wrote since.
                    fail(
                        res, f"data restored, but the PVC's {DATA_PENDING_ANNOTATION} mark stayed: {e.short}"
                    )
        except (ApiError, DrError) as e:
            fail(res, e.message)
        finally:
            res.warnings += temps[i].delete_all()
        return res

    try:
        with ThreadPoolExecutor(max_workers=ctx.mover.parallelism, thread_name_prefix="dr-restore") as pool:
            return list(pool.map(one, range(len(targets))))
    finally:
        for temp in temps:
            if len(temp):
                temp.delete_all()
