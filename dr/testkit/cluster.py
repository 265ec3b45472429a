"""What the throw-away test cluster lacks for volume data: snapshot CRDs, a CSI storage class, a snapshot class.

Test and demo support only (see ``dr.testkit``). The classes name a CSI
driver that nothing but ``dr.testkit.agent.NodeAgent`` serves: the agent
binds claims of any class and cuts snapshots of any class.
"""

from __future__ import annotations

from typing import Any

from dr.kube.client import KubeClient
from dr.kube.discovery import ApiResource
from dr.kube.wait import wait_for_crd_established, wait_for_served

CRDS = ApiResource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
SNAPSHOT_CRDS = (
    ("volumesnapshots", "VolumeSnapshot", "Namespaced"),
    ("volumesnapshotcontents", "VolumeSnapshotContent", "Cluster"),
    ("volumesnapshotclasses", "VolumeSnapshotClass", "Cluster"),
)
DRIVER = "hostpath.csi.k8s.io"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def snapshot_crd(plural: str, kind: str, scope: str) -> dict[str, Any]:
    """A minimal CRD of ``snapshot.storage.k8s.io/v1`` (any fields kept, status subresource)."""
    version: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    if kind != "VolumeSnapshotClass":
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        # *.k8s.io groups are protected; the upstream CRDs carry this approval (external-snapshotter#260).
        "metadata": {
            "name": f"{plural}.snapshot.storage.k8s.io",
            "annotations": {
                "api-approved.kubernetes.io": "https://github.com/kubernetes-csi/external-snapshotter/pull/419"
            },
        },
        "spec": {
            "group": "snapshot.storage.k8s.io",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind, "listKind": f"{kind}List"},
            "scope": scope,
            "versions": [version],
        },
    }


def install_snapshot_crds(kube: KubeClient) -> None:
    """Install the three snapshot CRDs (idempotent) and wait until they are served."""
    for plural, kind, scope in SNAPSHOT_CRDS:
        status, data = kube.request("POST", CRDS.collection_path(), body=snapshot_crd(plural, kind, scope))
        if status not in (201, 409):
            raise RuntimeError(f"create CRD {plural}: {status} {data[:200]!r}")
    for plural, _, _ in SNAPSHOT_CRDS:
        wait_for_crd_established(kube, CRDS, f"{plural}.snapshot.storage.k8s.io")
        wait_for_served(kube, "snapshot.storage.k8s.io", "v1", plural)


def install_storage(kube: KubeClient, name: str, *, driver: str = DRIVER, default: bool = True) -> None:
    """StorageClass ``name`` (the default class when ``default``) and VolumeSnapshotClass ``name`` for ``driver``.

    With a snapshot class for the claims' driver, ``dr backup`` copies their
    data from CSI snapshots by movers in dr's own namespace.
    """
    annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
    for path, obj in (
        ("/apis/storage.k8s.io/v1/storageclasses",
         {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
          "metadata": {"name": name, "annotations": annotations},
          "provisioner": driver, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}),
        ("/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses",
         {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
          "metadata": {"name": name}, "driver": driver, "deletionPolicy": "Delete"}),
    ):  # fmt: skip
        status, data = kube.request("POST", path, body=obj)
        if status not in (201, 409):
            raise RuntimeError(f"create {obj['kind']} {name}: {status} {data[:200]!r}")


def remove_storage(kube: KubeClient, name: str) -> None:
    kube.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{name}")
    kube.request("DELETE", f"/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses/{name}")
