"""Whether a PersistentVolumeClaim can ever get a volume here: ``missing_storage_class``.

One rule for the two places that judge it: the volume restore, before it starts a
mover for a claim (``dr.restore.volumes``), and a mover Job whose pod waits for its
claim (``dr.kube.jobs``). Restored into another cluster, a claim keeps its class's
name; where no such class exists no provisioner acts, the claim stays Pending and
so does the mover pod that mounts it, until the mover's deadline (hours).
"""

from __future__ import annotations

from typing import Any

from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import get_object, list_objects
from dr.kube.snapshots import PVS, STORAGE_CLASSES


def missing_storage_class(kube: KubeClient, pvc: dict[str, Any]) -> str | None:
    """Why a claim that is not bound never will be — its StorageClass does not exist, nor a
    PersistentVolume of that class name that may bind it — or None.

    A claim without a class (the default one), with ``""`` (static binding), naming its
    volume or of a class name that only static volumes carry (``_static_volume_for``)
    binds without a class object; a 403 on StorageClasses or PersistentVolumes skips the
    check (the mover's deadline still ends it). Other API errors are raised.
    """
    spec = pvc.get("spec") or {}
    name = spec.get("storageClassName")
    if (pvc.get("status") or {}).get("phase") == "Bound" or not name or spec.get("volumeName"):
        return None
    meta = pvc.get("metadata") or {}
    try:
        if get_object(kube, STORAGE_CLASSES, None, str(name)) is not None:
            return None
        if _static_volume_for(kube, str(name), f"{meta.get('namespace')}/{meta.get('name')}"):
            return None
    except ApiError as e:
        if e.status == 403:
            return None
        raise
    return (
        f"PVC {meta.get('namespace')}/{meta.get('name')} cannot be provisioned: its StorageClass {name!r} "
        f"does not exist in this cluster (create it, or restore with --storage-class-mapping "
        f"{name}=<a class of this cluster>)"
    )


def _static_volume_for(kube: KubeClient, class_name: str, claim: str) -> bool:
    """Whether a PersistentVolume of that class name may bind the claim ("namespace/name").

    Static provisioning names a class no StorageClass object has ("manual" in the
    Kubernetes docs): the PV controller binds a claim of that class to an unclaimed PV
    of the same class name (or to one reserved for it by ``claimRef``).
    """
    for pv in list_objects(kube, PVS):
        spec = pv.get("spec") or {}
        if spec.get("storageClassName") != class_name:
            continue
        if (pv.get("status") or {}).get("phase") in ("Released", "Failed"):
            continue
        ref = spec.get("claimRef") or {}
        if not ref or f"{ref.get('namespace')}/{ref.get('name')}" == claim:
            return True
    return False
