"""CSI snapshot steps against the test cluster (with the snapshot CRDs): driver, class, waiting, cloning.

Statuses that a snapshot controller would write are written here through the
status subresource, so each outcome (ready, error, timeout, gone) is
produced on purpose; the clone is made ready by the node agent.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dr.kube.client import KubeClient
from dr.kube.snapshots import (
    SnapshotError,
    SnapshotRef,
    clone_snapshot,
    create_pvc_from_snapshot,
    create_snapshot,
    csi_driver_of,
    delete_snapshot,
    find_snapshot_class,
    storage_class_for_restore,
    wait_snapshot,
)
from dr.testkit.agent import NodeAgent, wait_until
from tests.volume_helpers import create_pvc, get_pvc

API = "/apis/snapshot.storage.k8s.io/v1"


def post(kc: KubeClient, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    return kc.call("POST", path, body=obj)


def set_status(kc: KubeClient, path: str, status: dict[str, Any]) -> None:
    kc.call("PATCH", path + "/status", body={"status": status}, content_type="application/merge-patch+json")


def snapshot_class(
    kc: KubeClient, name: str, driver: str, *, default: bool = False, marked: bool = False
) -> None:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {"snapshot.storage.kubernetes.io/is-default-class": "true"}
    if marked:
        meta["labels"] = {"dr.dev/snapshot-class": "true"}
    post(
        kc,
        f"{API}/volumesnapshotclasses",
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClass",
            "metadata": meta,
            "driver": driver,
            "deletionPolicy": "Delete",
        },
    )


def test_csi_driver_from_the_volume_or_the_storage_class(
    kube_client: KubeClient, namespace: str, unique: str, snapshot_crds: None
) -> None:
    kc = kube_client
    post(
        kc,
        "/apis/storage.k8s.io/v1/storageclasses",
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": f"sc-{unique}"},
            "provisioner": "ebs.csi.aws.com",
        },
    )
    for name, source in (
        (f"pv-csi-{unique}", {"csi": {"driver": "pd.csi.storage.gke.io", "volumeHandle": "h"}}),
        (f"pv-nfs-{unique}", {"nfs": {"server": "nfs", "path": "/x"}}),
    ):
        post(
            kc,
            "/api/v1/persistentvolumes",
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {"capacity": {"storage": "1Gi"}, **source},
            },
        )
    try:
        claim = {"spec": {"storageClassName": f"sc-{unique}"}}
        assert csi_driver_of(kc, claim) == "ebs.csi.aws.com"
        # A bound volume says it best (the class may have been edited or deleted since).
        assert csi_driver_of(kc, {"spec": {**claim["spec"], "volumeName": f"pv-csi-{unique}"}}) == (
            "pd.csi.storage.gke.io"
        )
        assert csi_driver_of(kc, {"spec": {**claim["spec"], "volumeName": f"pv-nfs-{unique}"}}) is None
        assert csi_driver_of(kc, {"spec": {}}) is None
        assert csi_driver_of(kc, {"spec": {"storageClassName": "no-such-class"}}) is None
    finally:
        kc.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/sc-{unique}")
        for name in (f"pv-csi-{unique}", f"pv-nfs-{unique}"):
            kc.request("DELETE", f"/api/v1/persistentvolumes/{name}")


def test_the_storage_class_a_snapshot_is_restored_into(kube_client: KubeClient, unique: str) -> None:
    # Clusters set up long ago mark their default class with the beta annotation only; restore
    # takes that for the default (a second default is not made), so the claims of a backup do too.
    kc = kube_client
    driver = f"{unique}.csi"
    classes = {  # name: (provisioner, annotations)
        f"a-{unique}": (driver, {}),
        f"b-{unique}": (driver, {"storageclass.beta.kubernetes.io/is-default-class": "true"}),
        f"c-{unique}": (f"{unique}.other", {"storageclass.kubernetes.io/is-default-class": "true"}),
    }
    try:
        for name, (provisioner, annotations) in classes.items():
            post(kc, "/apis/storage.k8s.io/v1/storageclasses", {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": name, "annotations": annotations}, "provisioner": provisioner})  # fmt: skip
        assert storage_class_for_restore(kc, driver, None) == f"b-{unique}"
        assert storage_class_for_restore(kc, driver, f"c-{unique}") == f"b-{unique}"  # another driver's
        assert storage_class_for_restore(kc, driver, f"a-{unique}") == f"a-{unique}"  # the claim's own
    finally:
        for name in classes:
            kc.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{name}")


def test_snapshot_class_choice(kube_client: KubeClient, unique: str, snapshot_crds: None) -> None:
    kc = kube_client
    driver, other = f"{unique}.csi", f"{unique}.other"
    names = [f"a-{unique}", f"b-{unique}", f"c-{unique}", f"d-{unique}"]
    try:
        snapshot_class(kc, names[1], driver)
        snapshot_class(kc, names[3], other)
        assert find_snapshot_class(kc, driver)["metadata"]["name"] == names[1]  # the only one
        snapshot_class(kc, names[0], driver)
        assert find_snapshot_class(kc, driver)["metadata"]["name"] == names[0]  # first by name
        snapshot_class(kc, names[2], driver, default=True)
        assert find_snapshot_class(kc, driver)["metadata"]["name"] == names[2]  # the cluster default
        kc.call(
            "PATCH",
            f"{API}/volumesnapshotclasses/{names[1]}",
            body={"metadata": {"labels": {"dr.dev/snapshot-class": "true"}}},
            content_type="application/merge-patch+json",
        )
        assert find_snapshot_class(kc, driver)["metadata"]["name"] == names[1]  # dr's own choice
        assert find_snapshot_class(kc, f"{unique}.none") is None
        assert find_snapshot_class(kc, driver, names[0])["metadata"]["name"] == names[0]  # the policy's
        # A class named for another driver: this driver's volumes get the automatic choice.
        assert find_snapshot_class(kc, driver, names[3])["metadata"]["name"] == names[1]
        assert find_snapshot_class(kc, other, names[3])["metadata"]["name"] == names[3]
        with pytest.raises(
            SnapshotError, match=f"VolumeSnapshotClass 'nope-{unique}' .from the policy. does not"
        ):
            find_snapshot_class(kc, driver, f"nope-{unique}")
    finally:
        for n in names:
            kc.request("DELETE", f"{API}/volumesnapshotclasses/{n}")


def test_waiting_for_a_snapshot(kube_client: KubeClient, namespace: str, snapshot_crds: None) -> None:
    kc = kube_client
    ref = create_snapshot(kc, namespace, "s1", "data", "cls", {"dr.dev/mover": "true"})
    assert ref == SnapshotRef(namespace, "s1", ref.uid) and ref.uid
    path = f"{API}/namespaces/{namespace}/volumesnapshots/s1"
    with pytest.raises(SnapshotError) as e:
        wait_snapshot(kc, ref, timeout=0.3)
    assert e.value.message == f"VolumeSnapshot {namespace}/s1 not readyToUse after 0.3s (no status yet)"

    set_status(kc, path, {"creationTime": "2026-01-01T00:00:00Z", "readyToUse": False})
    taken = wait_snapshot(kc, ref, timeout=5, until="taken")  # cut, not yet uploaded: enough to thaw
    assert taken["status"]["readyToUse"] is False
    with pytest.raises(SnapshotError, match=r"not readyToUse after 0.2s \(readyToUse=False\)"):
        wait_snapshot(kc, ref, timeout=0.2)

    set_status(kc, path, {"error": {"message": "Failed to create snapshot: quota exceeded", "time": "x"}})
    with pytest.raises(SnapshotError) as e:
        wait_snapshot(kc, ref, timeout=30)  # fails at once, not after 30 s
    assert (
        e.value.message == f"VolumeSnapshot {namespace}/s1 failed: Failed to create snapshot: quota exceeded"
    )

    kc.request("DELETE", path)
    with pytest.raises(SnapshotError, match="disappeared while waiting for it"):
        wait_snapshot(kc, ref, timeout=30)


def test_clone_into_another_namespace_and_a_pvc_from_it(
    kube_client: KubeClient, node_agent: NodeAgent, unique: str
) -> None:
    kc, agent = kube_client, node_agent
    app, mover = f"src-{unique}", f"dst-{unique}"
    for ns in (app, mover):
        post(kc, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    snapshot_class(kc, f"cls-{unique}", f"{unique}.csi")
    # The driver's StorageClass: its provisioner restores the driver's snapshots.
    post(kc, "/apis/storage.k8s.io/v1/storageclasses", {"apiVersion": "storage.k8s.io/v1",
         "kind": "StorageClass", "metadata": {"name": f"sc-{unique}"}, "provisioner": f"{unique}.csi"})  # fmt: skip
    agent.manage(app, mover)
    try:
        create_pvc(kc, app, "data", f"sc-{unique}")
        wait_until(lambda: get_pvc(kc, app, "data").get("status", {}).get("phase") == "Bound", what="bound")
        (agent.volume_dir(app, "data") / "f.txt").write_text("hello")
        labels = {"dr.dev/mover": "true", "dr.dev/expires": "1"}
        ref = create_snapshot(kc, app, "orig", "data", f"cls-{unique}", labels)
        ready = wait_snapshot(kc, ref, timeout=30)
        with pytest.raises(SnapshotError, match="ready but names no VolumeSnapshotContent"):
            clone_snapshot(kc, {**ready, "status": {"readyToUse": True}}, mover, "x", labels, timeout=1)

        clone = clone_snapshot(kc, ready, mover, f"clone-{unique}", labels, timeout=30)

        content = kc.get(f"{API}/volumesnapshotcontents/{clone.content_name}")
        original = kc.get(f"{API}/volumesnapshotcontents/{ready['status']['boundVolumeSnapshotContentName']}")
        assert content["spec"]["deletionPolicy"] == "Retain"  # deleting the clone keeps the storage snapshot
        assert content["spec"]["source"] == {"snapshotHandle": original["status"]["snapshotHandle"]}
        assert content["spec"]["driver"] == f"{unique}.csi"
        assert content["spec"]["volumeSnapshotRef"] == {
            "kind": "VolumeSnapshot",
            "name": clone.snapshot.name,
            "namespace": mover,
        }
        assert content["metadata"]["labels"] == labels
        vs = kc.get(f"{API}/namespaces/{mover}/volumesnapshots/{clone.snapshot.name}")
        assert vs["spec"]["source"] == {"volumeSnapshotContentName": clone.content_name}

        pvc = create_pvc_from_snapshot(
            kc, mover, "tmp", clone.snapshot.name, storage_class=f"sc-{unique}", size="1Gi", labels=labels
        )
        assert pvc["spec"]["dataSource"] == {
            "apiGroup": "snapshot.storage.k8s.io",
            "kind": "VolumeSnapshot",
            "name": clone.snapshot.name,
        }
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
        wait_until(
            lambda: get_pvc(kc, mover, "tmp").get("status", {}).get("phase") == "Bound", what="restored"
        )
        assert (agent.volume_dir(mover, "tmp") / "f.txt").read_text() == "hello"

        # The original's content (Delete) goes with the original; the clone's (Retain) stays until deleted.
        kc.request("DELETE", f"{API}/namespaces/{app}/volumesnapshots/orig")
        orig_content = original["metadata"]["name"]
        wait_until(
            lambda: kc.request("GET", f"{API}/volumesnapshotcontents/{orig_content}")[0] == 404,
            what="content collected",
        )
        assert kc.request("GET", f"{API}/volumesnapshotcontents/{clone.content_name}")[0] == 200
        kc.request("DELETE", f"{API}/volumesnapshotcontents/{clone.content_name}")
    finally:
        kc.request("DELETE", f"{API}/volumesnapshotclasses/cls-{unique}")
        kc.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/sc-{unique}")
        for ns in (app, mover):
            kc.request("DELETE", f"/api/v1/namespaces/{ns}")


def _dynamic_content(ref: SnapshotRef, policy: str) -> dict[str, Any]:
    """What the snapshot controller makes for a VolumeSnapshot of a PVC (named by its uid)."""
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": f"snapcontent-{ref.uid}"},
        "spec": {
            "deletionPolicy": policy,
            "driver": "x.csi",
            "source": {"volumeHandle": "pvc-1"},
            "volumeSnapshotClassName": "cls",
            "volumeSnapshotRef": {"kind": "VolumeSnapshot", "name": ref.name, "namespace": ref.namespace,
                                  "uid": ref.uid},
        },
    }  # fmt: skip


def test_a_retain_content_not_yet_named_in_the_snapshots_status_is_switched_to_delete(
    kube_client: KubeClient, namespace: str, snapshot_crds: None
) -> None:
    # The controller makes the content before it writes its name into the snapshot's status. A
    # snapshot deleted in between (timed out before it bound) left a Retain content and its storage
    # snapshot behind: dr looked for the content only through the status.
    kc = kube_client
    ref = create_snapshot(kc, namespace, "s1", "data", "cls", {"dr.dev/mover": "true"})
    content = post(kc, f"{API}/volumesnapshotcontents", _dynamic_content(ref, "Retain"))
    path = f"{API}/volumesnapshotcontents/{content['metadata']['name']}"
    try:
        assert delete_snapshot(kc, namespace, "s1") == (True, None)
        # Delete: the controller removes a Delete content whose snapshot is gone, and its storage snapshot.
        got = kc.request("GET", path)
        assert got[0] == 404 or kc.get(path)["spec"]["deletionPolicy"] == "Delete"
    finally:
        kc.request("DELETE", path)


def test_a_content_made_while_the_snapshot_is_deleted_goes_too(
    kube_client: KubeClient, namespace: str, snapshot_crds: None
) -> None:
    # The controller may be making the content while dr deletes a snapshot that has none yet; it
    # holds the snapshot by its finalizer until done. A Retain content made for a snapshot that is
    # gone is never deleted by anyone: one more leaked storage snapshot.
    kc = kube_client
    finalizer = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
    ref = create_snapshot(kc, namespace, "s2", "data", "cls", {"dr.dev/mover": "true"})
    vs_path = f"{API}/namespaces/{namespace}/volumesnapshots/s2"
    kc.call("PATCH", vs_path, body={"metadata": {"finalizers": [finalizer]}},
            content_type="application/merge-patch+json")  # fmt: skip
    content_path = f"{API}/volumesnapshotcontents/snapcontent-{ref.uid}"
    problems: list[BaseException] = []

    def controller() -> None:
        """Sees the deletion, finishes making the content, then lets the snapshot go."""
        try:
            wait_until(lambda: "deletionTimestamp" in kc.get(vs_path)["metadata"], what="snapshot deleted")
            post(kc, f"{API}/volumesnapshotcontents", _dynamic_content(ref, "Retain"))
            kc.call("PATCH", vs_path, body={"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json")  # fmt: skip
        except BaseException as e:  # the test fails below, not a stray thread
            problems.append(e)

    thread = threading.Thread(target=controller, daemon=True)
    thread.start()
    try:
        assert delete_snapshot(kc, namespace, "s2") == (True, None)
        thread.join(timeout=30)
        assert not problems, problems
        assert kc.request("GET", content_path)[0] == 404
    finally:
        kc.request("PATCH", vs_path, body={"metadata": {"finalizers": None}},
                   content_type="application/merge-patch+json")  # fmt: skip
        kc.request("DELETE", content_path)
