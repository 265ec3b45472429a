"""Where a pod that mounts an application's volume must run, and as whom: next to the app's pod.

A second pod mounting a PVC that an application pod uses — a file-system
backup mover (``dr.backup.volumes``), a data step's probe Job
(``dr.drill.probe_job``) — must run on the node where the volume is attached:
a ReadWriteOnce volume cannot be attached to a second node (the pod would
wait in ContainerCreating, Multi-Attach, until its deadline). It takes that
pod's tolerations (the node may be tainted for the app) and its
``supplementalGroups``/``fsGroup`` as supplemental groups (files the app's
group may read). A ReadWriteOncePod volume cannot be mounted by a second pod
at all while its pod runs: callers refuse that case at once
(``exclusive_users``, ``RWOP_IN_USE``). A ReadWriteMany or ReadOnlyMany volume
attaches to any node: only the groups are taken (``placement`` given the claim).
Pure functions: no API calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dr.kube.objects import metadata

RWOP_IN_USE = "ReadWriteOncePod volume in use: no second pod may mount it"


def claims_of(pod: dict[str, Any]) -> list[str]:
    """The PVCs a pod mounts: ``persistentVolumeClaim`` volumes and generic ephemeral volumes
    (whose PVC Kubernetes names ``<pod>-<volume>``)."""
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            out.append(str(claim))
        elif isinstance(v.get("ephemeral"), dict) and v.get("name"):
            out.append(f"{metadata(pod).get('name')}-{v['name']}")
    return out


def active(pod: dict[str, Any]) -> bool:
    """Running or about to: a finished or terminating pod holds no volume for long."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not metadata(pod).get("deletionTimestamp")


def users_of(pods: Iterable[dict[str, Any]], claim: str) -> list[dict[str, Any]]:
    """Those of ``pods`` (of the claim's namespace) that are active and mount ``claim``."""
    return [p for p in pods if active(p) and claim in claims_of(p)]


def exclusive_users(pvc: dict[str, Any], pods: list[dict[str, Any]]) -> list[str]:
    """The names of ``pods`` (the claim's users) when ``pvc`` is ReadWriteOncePod, else []."""
    if "ReadWriteOncePod" not in ((pvc.get("spec") or {}).get("accessModes") or []):
        return []
    return sorted(str(metadata(p).get("name")) for p in pods)


def pod_groups(pods: list[dict[str, Any]]) -> list[int]:
    """The ``fsGroup`` and ``supplementalGroups`` of all pods mounting a volume, sorted."""
    return sorted({g for pod in pods for g in _groups_of(pod)})


def _groups_of(pod: dict[str, Any]) -> list[int]:
    """A pod's ``supplementalGroups``, then its ``fsGroup`` (if set)."""
    sc = (pod.get("spec") or {}).get("securityContext") or {}
    groups = [int(g) for g in sc.get("supplementalGroups") or []]
    if sc.get("fsGroup") is not None:
        groups.append(int(sc["fsGroup"]))
    return groups


def attaches_anywhere(pvc: dict[str, Any]) -> bool:
    """Whether the claim's volume may be attached to several nodes at once (ReadWriteMany or
    ReadOnlyMany among its modes, the attach/detach controller's test): no pod needs a node."""
    status_modes = (pvc.get("status") or {}).get("accessModes")
    modes = status_modes or (pvc.get("spec") or {}).get("accessModes") or []
    return bool({"ReadWriteMany", "ReadOnlyMany"} & set(modes))


def placement(
    pods: list[dict[str, Any]], pvc: dict[str, Any] | None = None
) -> tuple[str | None, list[dict[str, Any]], list[int]]:
    """Node, tolerations and groups of the pod that mounts a volume (the first scheduled one).

    With the claim, a volume that ``attaches_anywhere`` gets the groups only: pinned, a pod
    whose node is full could not start, where any other node would do.
    """
    if pvc is not None and attaches_anywhere(pvc):
        return None, [], pod_groups(pods)
    for pod in sorted(pods, key=lambda p: str(metadata(p).get("name"))):
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            continue
        return str(node), list(spec.get("tolerations") or []), _groups_of(pod)
    return None, [], []
