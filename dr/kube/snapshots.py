"""CSI volume snapshots (``snapshot.storage.k8s.io/v1``): class lookup, snapshot, clone, PVC from snapshot.

The snapshot path of a volume backup uses these steps:

1. ``csi_driver_of``: which CSI driver serves a PVC (its bound PV's
   ``spec.csi.driver``, else its StorageClass's ``provisioner``);
2. ``find_snapshot_class``: a VolumeSnapshotClass for that driver — the one
   named in the policy, else the one labelled ``dr.dev/snapshot-class=true``,
   else the cluster default (annotation
   ``snapshot.storage.kubernetes.io/is-default-class``), else the first by name;
3. ``create_snapshot`` + ``wait_snapshot``: a VolumeSnapshot of the PVC in the
   PVC's namespace, awaited until it is cut (``creationTime``) and then
   ``readyToUse``, failing at once on ``status.error``;
4. ``clone_snapshot``: the same storage snapshot made visible in another
   namespace. A VolumeSnapshot can only be a PVC's ``dataSource`` in its own
   namespace, and dr's data movers run in dr's namespace (its NetworkPolicy,
   Pod Security, service account and credential Secrets live there; app
   namespaces need no PVC rights). So, like Velero's CSI data mover, we
   pre-provision a VolumeSnapshotContent with the original's
   ``snapshotHandle`` and ``deletionPolicy: Retain`` and bind a new
   VolumeSnapshot in dr's namespace to it;
5. ``create_pvc_from_snapshot``: a temporary PVC restored from that snapshot,
   of a StorageClass of the same driver (``storage_class_for_restore``).

Cleanup order matters and is the caller's ``finally``: PVC, then the clone's
VolumeSnapshot and VolumeSnapshotContent (Retain: the storage snapshot stays),
then the original VolumeSnapshot (``delete_snapshot``) with its storage
snapshot: dr's snapshots are temporary, so a content the snapshot controller
made for one with deletion policy ``Retain`` (the class's) is switched to
``Delete`` first — else every backup would leave a storage snapshot behind.
Only the backup account may switch it: a sweep of leftovers by another
(``dr drill gc``) leaves such a snapshot to the backup's next sweep. A
snapshot deleted before its content bound (a timeout) is followed up: the
content made for its uid, found by the controller's name for it, goes too.

Every object made here carries the caller's labels (``dr.dev/mover``,
``dr.dev/run``, ``dr.dev/expires``) so that leftovers of a crashed run can be
found and removed (``dr.kube.jobs.cleanup_leftovers``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dr.errors import DrError
from dr.interrupt import sleep as interruptible_sleep
from dr.kube.apply import create, delete
from dr.kube.client import KubeClient, error_from_response
from dr.kube.collect import get_object, list_objects
from dr.kube.discovery import ApiResource
from dr.kube.objects import is_default_storage_class, metadata
from dr.kube.wait import wait_for_deletion

SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
SNAPSHOT_VERSION = "v1"
SNAPSHOT_API = f"{SNAPSHOT_GROUP}/{SNAPSHOT_VERSION}"

VOLUME_SNAPSHOTS = ApiResource(SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshots", "VolumeSnapshot", True)
VOLUME_SNAPSHOT_CONTENTS = ApiResource(
    SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotcontents", "VolumeSnapshotContent", False
)
VOLUME_SNAPSHOT_CLASSES = ApiResource(
    SNAPSHOT_GROUP, SNAPSHOT_VERSION, "volumesnapshotclasses", "VolumeSnapshotClass", False
)
PVCS = ApiResource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True)
PVS = ApiResource("", "v1", "persistentvolumes", "PersistentVolume", False)
STORAGE_CLASSES = ApiResource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False)

DEFAULT_CLASS_ANNOTATION = "snapshot.storage.kubernetes.io/is-default-class"
DR_CLASS_LABEL = "dr.dev/snapshot-class"


class SnapshotError(DrError):
    """A snapshot step failed for one volume (the message names the object and the reason)."""


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


# --------------------------------------------------------------------------- driver and class


def csi_driver_of(kube: KubeClient, pvc: dict[str, Any]) -> str | None:
    """The CSI driver serving ``pvc``: its PV's ``spec.csi.driver``, else its StorageClass's provisioner.

    None when the volume is not a CSI volume (a bound PV without ``csi``:
    hostPath, NFS, in-tree plugins) or nothing says which driver it is.
    """
    spec = pvc.get("spec") or {}
    pv_name = spec.get("volumeName")
    if pv_name:
        pv = get_object(kube, PVS, None, str(pv_name))
        if pv is not None:
            csi = (pv.get("spec") or {}).get("csi") or {}
            return str(csi["driver"]) if csi.get("driver") else None
    sc_name = spec.get("storageClassName")
    if not sc_name:
        return None
    sc = get_object(kube, STORAGE_CLASSES, None, str(sc_name))
    provisioner = (sc or {}).get("provisioner")
    return str(provisioner) if provisioner else None


def snapshots_served(kube: KubeClient) -> bool:
    """Whether the cluster serves ``snapshot.storage.k8s.io/v1`` (the CSI snapshot CRDs are installed)."""
    status, _ = kube.request("GET", f"/apis/{SNAPSHOT_API}")
    return 200 <= status < 300


def find_snapshot_class(kube: KubeClient, driver: str, name: str | None = None) -> dict[str, Any] | None:
    """The VolumeSnapshotClass to use for ``driver`` (see the module docstring), or None.

    A class named by the policy is used for the volumes of its own driver;
    volumes of other drivers get the automatic choice (a policy may cover
    several storage systems). A named class that does not exist is a
    ``SnapshotError``: a policy that names a class means snapshots.
    """
    if name:
        cls = get_object(kube, VOLUME_SNAPSHOT_CLASSES, None, name) if snapshots_served(kube) else None
        if cls is None:
            raise SnapshotError(f"VolumeSnapshotClass {name!r} (from the policy) does not exist")
        if cls.get("driver") == driver:
            return cls
    if not snapshots_served(kube):
        return None
    candidates = sorted(
        (c for c in list_objects(kube, VOLUME_SNAPSHOT_CLASSES) if c.get("driver") == driver),
        key=lambda c: str(metadata(c).get("name", "")),
    )

    def marked(c: dict[str, Any]) -> bool:
        return (metadata(c).get("labels") or {}).get(DR_CLASS_LABEL) == "true"

    def default(c: dict[str, Any]) -> bool:
        return (metadata(c).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"

    for choose in (marked, default, lambda c: True):
        for c in candidates:
            if choose(c):
                return c
    return None


def storage_class_for_restore(kube: KubeClient, driver: str, preferred: str | None) -> str:
    """The StorageClass a PVC restored from a snapshot of ``driver`` needs: one whose provisioner is the driver.

    ``preferred`` (the source PVC's class) when it is such a class; else the
    default class (annotation ``storageclass.kubernetes.io/is-default-class``
    or its beta form, as restore reads it) if it is one, else the first by
    name. A statically provisioned volume has no class (``""``), and its
    snapshot can only be restored by its own driver's provisioner: with no
    class or another driver's, the claim would stay Pending. ``SnapshotError`` when the cluster has no class for the driver.
    """
    if preferred:
        sc = get_object(kube, STORAGE_CLASSES, None, preferred)
        if sc is not None and sc.get("provisioner") == driver:
            return preferred
    candidates = sorted(
        (c for c in list_objects(kube, STORAGE_CLASSES) if c.get("provisioner") == driver),
        key=lambda c: (
            not is_default_storage_class(c),
            str(metadata(c).get("name", "")),
        ),
    )
    if not candidates:
        has = f"its StorageClass {preferred!r} is another driver's or gone" if preferred else "it has none"
        raise SnapshotError(
            f"no StorageClass with provisioner {driver!r} to restore its snapshot into ({has})"
        )
    return str(metadata(candidates[0]).get("name"))


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class SnapshotRef:
    namespace: str
    name: str
    uid: str | None = None

    def describe(self) -> str:
        return f"VolumeSnapshot {self.namespace}/{self.name}"


def _ref(obj: dict[str, Any]) -> SnapshotRef:
    meta = metadata(obj)
    return SnapshotRef(str(meta.get("namespace")), str(meta.get("name")), meta.get("uid"))


def create_snapshot(
    kube: KubeClient, namespace: str, name: str, pvc: str, class_name: str, labels: dict[str, str]
) -> SnapshotRef:
    """A VolumeSnapshot of PVC ``namespace/pvc`` with class ``class_name``."""
    obj = {
        "apiVersion": SNAPSHOT_API,
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"volumeSnapshotClassName": class_name, "source": {"persistentVolumeClaimName": pvc}},
    }
    return _ref(create(kube, VOLUME_SNAPSHOTS, obj))


def _error_of(status: dict[str, Any]) -> str | None:
    err = status.get("error")
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    return None


def wait_snapshot(
    kube: KubeClient,
    ref: SnapshotRef,
    *,
    timeout: float,
    until: str = "readyToUse",
    deadline: float | None = None,
    sleep: Callable[[float], None] = interruptible_sleep,
) -> dict[str, Any]:
    """Poll until the snapshot is cut (``until="taken"``: ``creationTime`` set) or ``readyToUse``.

    ``SnapshotError`` at once when the snapshot controller reports an error,
    when the snapshot disappears, or after ``timeout`` seconds — or at
    ``deadline`` (monotonic), when one budget covers several waits — naming
    the last state seen, so the operator knows what to look at.
    """
    deadline = time.monotonic() + timeout if deadline is None else deadline
    delay = 0.05
    last: dict[str, Any] = {}
    while True:
        obj = get_object(kube, VOLUME_SNAPSHOTS, ref.namespace, ref.name)
        if obj is None:
            raise SnapshotError(f"{ref.describe()} disappeared while waiting for it")
        status = _status(obj)
        last = status
        error = _error_of(status)
        if error:
            raise SnapshotError(f"{ref.describe()} failed: {error}")
        ready = status.get("readyToUse") is True
        if ready or (until == "taken" and status.get("creationTime")):
            return obj
        left = deadline - time.monotonic()
        if left <= 0:
            state = "no status yet" if not last else f"readyToUse={last.get('readyToUse', False)}"
            raise SnapshotError(f"{ref.describe()} not {until} after {timeout:g}s ({state})")
        sleep(min(delay, left))
        delay = min(delay * 2, 2.0)


def content_of(kube: KubeClient, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The VolumeSnapshotContent bound to a ready snapshot (with ``status.snapshotHandle``)."""
    name = _status(snapshot).get("boundVolumeSnapshotContentName")
    where = _ref(snapshot).describe()
    if not name:
        raise SnapshotError(f"{where} is ready but names no VolumeSnapshotContent")
    content = get_object(kube, VOLUME_SNAPSHOT_CONTENTS, None, str(name))
    if content is None:
        raise SnapshotError(f"VolumeSnapshotContent {name} of {where} does not exist")
    if not _status(content).get("snapshotHandle"):
        raise SnapshotError(f"VolumeSnapshotContent {name} of {where} has no snapshotHandle")
    return content


@dataclass(frozen=True)
class Clone:
    """A snapshot made visible in another namespace: a VolumeSnapshot bound to a pre-provisioned content."""

    snapshot: SnapshotRef
    content_name: str


def clone_snapshot(
    kube: KubeClient,
    source_snapshot: dict[str, Any],
    namespace: str,
    name: str,
    labels: dict[str, str],
    *,
    timeout: float,
    deadline: float | None = None,
    sleep: Callable[[float], None] = interruptible_sleep,
) -> Clone:
    """The storage snapshot behind ``source_snapshot`` as VolumeSnapshot ``namespace/name``.

    Creates VolumeSnapshotContent ``name`` (cluster-scoped; ``Retain`` so that
    deleting the clone never deletes the storage snapshot twice) and the
    VolumeSnapshot bound to it, and waits until the clone is ready. The
    content is created first: on failure the caller deletes both by name.
    """
    content = content_of(kube, source_snapshot)
    spec = content.get("spec") or {}
    vsc = {
        "apiVersion": SNAPSHOT_API,
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "deletionPolicy": "Retain",
            "driver": spec.get("driver"),
            "source": {"snapshotHandle": _status(content)["snapshotHandle"]},
            "volumeSnapshotClassName": spec.get("volumeSnapshotClassName"),
            "volumeSnapshotRef": {"kind": "VolumeSnapshot", "name": name, "namespace": namespace},
            **({"sourceVolumeMode": spec["sourceVolumeMode"]} if spec.get("sourceVolumeMode") else {}),
        },
    }
    create(kube, VOLUME_SNAPSHOT_CONTENTS, vsc)
    vs = {
        "apiVersion": SNAPSHOT_API,
        "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "volumeSnapshotClassName": spec.get("volumeSnapshotClassName"),
            "source": {"volumeSnapshotContentName": name},
        },
    }
    ref = _ref(create(kube, VOLUME_SNAPSHOTS, vs))
    wait_snapshot(kube, ref, timeout=timeout, deadline=deadline, sleep=sleep)
    return Clone(ref, name)


def create_pvc_from_snapshot(
    kube: KubeClient,
    namespace: str,
    name: str,
    snapshot: str,
    *,
    storage_class: str | None,
    size: str,
    labels: dict[str, str],
    volume_mode: str | None = None,
) -> dict[str, Any]:
    """A PVC restored from VolumeSnapshot ``namespace/snapshot`` (ReadWriteOnce; the mover mounts it read-only).

    ReadWriteOnce because every CSI driver that can restore a snapshot
    supports it; ReadOnlyMany is not universal.
    """
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
        "dataSource": {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": snapshot},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    if volume_mode:
        spec["volumeMode"] = volume_mode
    obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }
    return create(kube, PVCS, obj)


def dynamic_content_name(uid: str) -> str:
    """The name the snapshot controller gives the content it makes for VolumeSnapshot ``uid``."""
    return f"snapcontent-{uid}"


def _own_content(kube: KubeClient, vs: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The content of ``vs``: the one its status names, else one made for it and not yet recorded there.

    The snapshot controller creates ``snapcontent-<uid>`` before it writes the
    name into the snapshot's status; a snapshot deleted in between (a timeout
    before the content bound) would otherwise lose a ``Retain`` content and its
    storage snapshot. The uid in ``spec.volumeSnapshotRef`` says it is this one's.
    """
    name = _status(vs).get("boundVolumeSnapshotContentName")
    if name:
        return str(name), get_object(kube, VOLUME_SNAPSHOT_CONTENTS, None, str(name))
    uid = metadata(vs).get("uid")
    content = _content_made_for(kube, str(uid)) if uid else None
    return (dynamic_content_name(str(uid)), content) if content is not None else (None, None)


def _content_made_for(kube: KubeClient, uid: str) -> dict[str, Any] | None:
    """The content the snapshot controller made for VolumeSnapshot ``uid`` (its volumeSnapshotRef says so), or None."""
    content = get_object(kube, VOLUME_SNAPSHOT_CONTENTS, None, dynamic_content_name(uid))
    ref = ((content or {}).get("spec") or {}).get("volumeSnapshotRef") or {}
    return content if content is not None and ref.get("uid") == uid else None


def _switch_to_delete(kube: KubeClient, content_name: str, spec: dict[str, Any]) -> str | None:
    """Patch a dynamically made content to ``deletionPolicy: Delete``; the refusal's reason, or None."""
    if "volumeHandle" not in (spec.get("source") or {}) or spec.get("deletionPolicy") == "Delete":
        return None
    path = VOLUME_SNAPSHOT_CONTENTS.object_path(None, content_name)
    body = {"spec": {"deletionPolicy": "Delete"}}
    status, data = kube.request("PATCH", path, body=body, content_type="application/merge-patch+json")
    if not 200 <= status < 300 and status != 404:
        return error_from_response("PATCH", path, status, data).short
    return None


def delete_snapshot(
    kube: KubeClient,
    namespace: str,
    name: str,
    *,
    leave_if_retained: bool = False,
    settle_timeout: float = 30.0,
) -> tuple[bool, str | None]:
    """Delete one of dr's temporary VolumeSnapshots and, whatever its class says, its storage snapshot.

    A content the snapshot controller created for it (``source.volumeHandle``)
    whose deletion policy is not ``Delete`` is patched to ``Delete`` first, so
    that the storage snapshot goes with it. Pre-provisioned contents (a
    clone's: ``source.snapshotHandle``) are left as they are: their storage
    snapshot is the original's. Returns whether the snapshot was deleted and a
    warning. When the patch is refused the storage snapshot would stay with a
    content nothing finds again (unlabelled): the backup's own clean-up deletes
    the snapshot all the same and says which content to delete by hand; with
    ``leave_if_retained`` (a sweep of leftovers, which ``dr drill gc`` runs as
    an account that may not patch contents) the snapshot is left, labelled, for
    the sweep of the backup account, which may. ``ApiError`` when the delete is
    refused.

    A snapshot with no content yet (timed out before one bound) may still get
    one: the controller may be making it as the snapshot is deleted, and one
    made for a snapshot that is gone is never deleted under ``Retain``. So
    after the delete dr waits (up to ``settle_timeout``) until the snapshot is
    gone — the controller holds it by its finalizers until it has dealt with
    it, and makes no content after — and then switches and deletes a content
    made for its uid. Still there by then, the snapshot stays listed, labelled,
    for the next sweep of leftovers, which does the same.
    """
    vs = get_object(kube, VOLUME_SNAPSHOTS, namespace, name)
    if vs is None:
        return False, None
    warning = None
    content_name, content = _own_content(kube, vs)
    spec = (content or {}).get("spec") or {}
    ref = spec.get("volumeSnapshotRef") or {}
    ours = ref.get("namespace") == namespace and ref.get("name") == name
    refused = _switch_to_delete(kube, str(content_name), spec) if ours else None
    if refused:
        if leave_if_retained:
            return False, (
                f"VolumeSnapshot {namespace}/{name} left for the backup account's cleanup: its "
                f"VolumeSnapshotContent {content_name} has deletionPolicy {spec.get('deletionPolicy')} "
                f"and this account cannot switch it to Delete ({refused}); deleted now, it would keep "
                "its storage snapshot"
            )
        warning = (
            f"VolumeSnapshotContent {content_name} has deletionPolicy {spec.get('deletionPolicy')}: "
            f"its storage snapshot stays (delete it yourself); cannot switch it to Delete: {refused}"
        )
    uid = metadata(vs).get("uid")
    deleted = delete(kube, VOLUME_SNAPSHOTS, namespace, name, uid=uid, propagation="Background")
    if content is None and deleted and uid:
        warning = _late_content(kube, namespace, name, str(uid), settle_timeout) or warning
    return deleted, warning


def _late_content(kube: KubeClient, namespace: str, name: str, uid: str, timeout: float) -> str | None:
    """After deleting a snapshot that had no content: the content made for it meanwhile, deleted. A warning."""
    try:
        wait_for_deletion(kube, VOLUME_SNAPSHOTS, namespace, name, uid=uid, timeout=timeout)
    except DrError:
        return None  # still held by the controller: listed and labelled, the next sweep comes back
    content = _content_made_for(kube, uid)
    if content is None:
        return None
    content_name = dynamic_content_name(uid)
    spec = content.get("spec") or {}
    refused = _switch_to_delete(kube, content_name, spec)
    if refused:
        return (
            f"VolumeSnapshotContent {content_name} was made for VolumeSnapshot {namespace}/{name} after it "
            f"was deleted and has deletionPolicy {spec.get('deletionPolicy')}: its storage snapshot stays "
            f"(delete it yourself); cannot switch it to Delete: {refused}"
        )
    delete(kube, VOLUME_SNAPSHOT_CONTENTS, None, content_name, propagation="Background")
    return None
