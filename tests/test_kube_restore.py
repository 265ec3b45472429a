"""Resource restore against the test cluster: resuming, idempotence, CRDs, failures per item, progress."""

from __future__ import annotations

import base64
import copy
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dr.backup.resources import backup_resources
from dr.backup.scope import BackupScope
from dr.kube.client import KubeClient, RetryPolicy, connect
from dr.kube.discovery import discover
from dr.kube.objects import ResourceItem
from dr.restore.order import STAGES
from dr.restore.plan import RestoreItemResult, RestoreOptions
from dr.restore.resources import _RestoreRun, restore_resources
from tests import servers
from tests.kube_helpers import ListSink, configmap, create, get, make_namespace, owner_ref
from tests.kube_stub_server import stub_api

RBAC = "rbac.authorization.k8s.io/v1"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


@pytest.fixture
def source(kube_client: KubeClient, unique: str) -> Iterator[str]:
    """A namespace with 30 ConfigMaps, 10 Secrets and a PVC, and cleanup of the restore targets."""
    ns = f"src-{unique}"
    make_namespace(kube_client, ns)
    for i in range(30):
        create(kube_client, "configmaps", configmap(f"cm-{i:02d}", {"i": str(i)}, {"n": str(i)}), ns)
    for i in range(10):
        create(kube_client, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s-{i}"}, "data": {"k": "dg=="}}, ns)  # fmt: skip
    create(kube_client, "persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }, ns)  # fmt: skip
    try:
        yield ns
    finally:
        for suffix in ("", "-a", "-b", "-c", "-d"):
            kube_client.request("DELETE", f"/api/v1/namespaces/{ns}{suffix}")


def backup(kc: KubeClient, ns: str) -> ListSink:
    sink = ListSink()
    assert backup_resources(kc, BackupScope(namespaces=[ns]), sink).phase == "Completed"
    return sink


def _backup_with_claim_of(kc: KubeClient, ns: str, storage_class: str) -> ListSink:
    """Back up ``ns`` once it holds a claim of ``storage_class``: the backup holds that class, it alone."""
    create(kc, "persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}},
    }, ns)  # fmt: skip
    sink = backup(kc, ns)
    assert [o["metadata"]["name"] for i, o in sink.items if i.resource == "storageclasses"] == [storage_class]
    return sink


def _default_storage_class(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A StorageClass annotated as the cluster's default."""
    metadata: dict[str, Any] = {"name": name, "annotations": {DEFAULT_CLASS: "true"}}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": metadata,
            "provisioner": "example.com/disk"}  # fmt: skip


def _backed_up_storage_class(kc: KubeClient, ns: str, storage_class: str) -> list[tuple[ResourceItem, Any]]:
    """The items of a backup of ``ns`` holding a claim of ``storage_class``: that class alone."""
    return [
        (i, o)
        for i, o in _backup_with_claim_of(kc, ns, storage_class).items
        if i.resource == "storageclasses"
    ]


def names_in(kc: KubeClient, ns: str, plural: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in kc.get(f"/api/v1/namespaces/{ns}/{plural}")["items"])


class Crash(Exception):
    pass


def test_an_interrupted_restore_finishes_on_the_next_run(kube_client: KubeClient, source: str) -> None:
    sink = backup(kube_client, source)
    target = f"{source}-a"
    options = RestoreOptions(namespace_mapping={source: target}, workers=4)
    seen: list[tuple[int, int]] = []

    def crash_after_20(result: RestoreItemResult, done: int, total: int) -> None:
        seen.append((done, total))
        if done == 20:
            raise Crash

    with pytest.raises(Crash):
        restore_resources(kube_client, sink.items, options, "bk", "rs-1", progress=crash_after_20)
    assert seen[-1][0] == 20 and seen[0][1] == 42
    done_before = len(names_in(kube_client, target, "configmaps")) + len(
        names_in(kube_client, target, "secrets")
    )
    assert 15 <= done_before < 41

    progress: list[tuple[int, int]] = []
    again = restore_resources(
        kube_client, sink.items, options, "bk", "rs-1", progress=lambda r, d, t: progress.append((d, t))
    )
    assert again.phase == "Completed"
    assert again.counts == {"created": 42}  # the namespace, 30 config maps, 10 secrets, the claim
    resumed = [r for r in again.items if r.reason == "restored by an earlier run of this restore"]
    assert len(resumed) >= done_before
    assert names_in(kube_client, target, "configmaps") == [f"cm-{i:02d}" for i in range(30)]
    assert len(names_in(kube_client, target, "secrets")) == 10
    assert progress[-1] == (42, 42) and len(progress) == 42

    # A different restore of the same backup finds everything in place.
    other = restore_resources(kube_client, sink.items, options, "bk", "rs-2")
    assert other.counts == {"unchanged": 42}


def test_storage_class_mapping_and_missing_namespace(kube_client: KubeClient, source: str) -> None:
    sink = backup(kube_client, source)
    items = [(i, o) for i, o in sink.items if i.resource != "namespaces"]  # no Namespace object in the backup
    target = f"{source}-b"
    options = RestoreOptions(namespace_mapping={source: target}, storage_class_mapping={"standard": "fast"},
                             include_resources=["pvc", "namespaces"])  # fmt: skip
    result = restore_resources(kube_client, items, options, "bk", "rs")
    assert [(r.item.describe(), r.outcome) for r in result.items] == [
        (f"namespaces {target}", "created"),
        (f"persistentvolumeclaims {target}/data", "created"),
    ]
    assert result.namespaces_created == [target]
    pvc = get(kube_client, "v1", "persistentvolumeclaims", "data", target)
    assert pvc is not None and pvc["spec"]["storageClassName"] == "fast"


def test_custom_resources_wait_for_their_crd(kube_client: KubeClient, unique: str) -> None:
    group, target = f"r{unique}.example.com", f"crs-{unique}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}", "uid": "old-crd-uid"},
        "spec": {"group": group, "scope": "Namespaced", "names": {"plural": "gadgets", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    }  # fmt: skip
    crd_item = ResourceItem(group="apiextensions.k8s.io", version="v1", kind="CustomResourceDefinition",
                            resource="customresourcedefinitions", namespaced=False, name=f"gadgets.{group}", uid="old-crd-uid")  # fmt: skip
    items: list[tuple[ResourceItem, dict[str, Any]]] = [(crd_item, crd)]
    for name in ("g1", "g2"):
        obj = {
            "apiVersion": f"{group}/v1",
            "kind": "Gadget",
            "metadata": {"name": name, "namespace": target},
            "spec": {"n": name},
        }
        items.append((ResourceItem(group=group, version="v1", kind="Gadget", resource="gadgets", namespaced=True,
                                   namespace=target, name=name), obj))  # fmt: skip
    try:
        plan = restore_resources(kube_client, items, RestoreOptions(dry_run=True), "bk", "rs")
        assert {(r.item.name, r.outcome, r.reason) for r in plan.items} == {
            (f"gadgets.{group}", "would-create", None),
            (target, "would-create", "needed by restored objects; not in the backup"),
            ("g1", "would-create", "its CustomResourceDefinition is created by this restore"),
            ("g2", "would-create", "its CustomResourceDefinition is created by this restore"),
        }
        assert (
            get(kube_client, "apiextensions.k8s.io/v1", "customresourcedefinitions", f"gadgets.{group}")
            is None
        )
        assert get(kube_client, "v1", "namespaces", target) is None

        result = restore_resources(kube_client, items, RestoreOptions(), "bk", "rs")
        assert result.phase == "Completed", result.failures
        assert result.counts == {"created": 4}
        gadget = kube_client.get(f"/apis/{group}/v1/namespaces/{target}/gadgets/g2")
        assert gadget["spec"] == {"n": "g2"}
    finally:
        kube_client.request("DELETE", f"/api/v1/namespaces/{target}")
        kube_client.request(
            "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{group}"
        )


def test_unserved_type_fails_alone(kube_client: KubeClient, source: str) -> None:
    sink = backup(kube_client, source)
    target = f"{source}-c"
    gadget = ResourceItem(group="gone.example.com", version="v1", kind="Gadget", resource="gadgets", namespaced=True,
                          namespace=source, name="g")  # fmt: skip
    obj = {
        "apiVersion": "gone.example.com/v1",
        "kind": "Gadget",
        "metadata": {"name": "g", "namespace": source},
    }
    items = [*sink.items, (gadget, obj)]
    options = RestoreOptions(namespace_mapping={source: target})
    plan = restore_resources(
        kube_client, items, RestoreOptions(namespace_mapping={source: target}, dry_run=True), "bk", "rs"
    )
    assert [(f.item.name, f.reason) for f in plan.failures] == [
        ("g", "gone.example.com/v1 gadgets is not served by this cluster")
    ]
    result = restore_resources(kube_client, items, options, "bk", "rs")
    assert result.phase == "PartiallyFailed"
    assert [(f.item.describe(), f.reason) for f in result.failures] == [
        (f"gadgets.gone.example.com {target}/g", "gone.example.com/v1 gadgets is not served by this cluster")
    ]
    assert result.counts == {"created": 42, "failed": 1}


def test_forbidden_objects_fail_and_the_rest_is_restored(
    kube_client: KubeClient, k8s: servers.TestCluster, source: str
) -> None:
    """bob may create and read config maps in the target namespace, nothing else."""
    sink = backup(kube_client, source)
    target = f"{source}-d"
    make_namespace(kube_client, target)
    create(kube_client, "roles", {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "cm-writer"},
                                  "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create"]}]}, target)  # fmt: skip
    create(kube_client, "rolebindings", {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "bob"},
                                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-writer"},
                                         "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]}, target)  # fmt: skip
    items = [(i, o) for i, o in sink.items if i.resource in ("configmaps", "secrets")]
    with connect(k8s.kubeconfig_for("bob")) as bob:
        result = restore_resources(bob, items, RestoreOptions(namespace_mapping={source: target}), "bk", "rs")
    assert result.phase == "PartiallyFailed"
    assert result.counts == {"created": 30, "failed": 10}
    failure = result.failures[0]
    assert failure.item.describe() == f"secrets {target}/s-0"
    assert failure.reason == (
        f'403 Forbidden: secrets is forbidden: User "bob" cannot create resource "secrets" in API group "" '
        f'in the namespace "{target}"'
    )
    assert result.warnings == [
        f'cannot check whether namespace {target} exists: 403 Forbidden: namespaces "{target}" is forbidden: '
        f'User "bob" cannot get resource "namespaces" in API group "" in the namespace "{target}"'
    ]
    assert len(names_in(kube_client, target, "configmaps")) == 30


def test_recreate_blocked_by_a_finalizer_fails_that_object(kube_client: KubeClient, source: str) -> None:
    sink = backup(kube_client, source)
    path = f"/api/v1/namespaces/{source}/configmaps/cm-00"
    merge = "application/merge-patch+json"
    kube_client.call(
        "PATCH",
        path,
        body={"metadata": {"finalizers": ["example.com/hold"]}, "data": {"i": "x"}},
        content_type=merge,
    )
    try:
        items = [
            (i, o)
            for i, o in sink.items
            if (i.resource, i.name) in (("configmaps", "cm-00"), ("configmaps", "cm-01"))
        ]
        items[1] = (items[1][0], copy.deepcopy(items[1][1]))
        items[1][1]["data"] = {"i": "changed in the backup"}
        result = restore_resources(
            kube_client, items, RestoreOptions(existing="recreate", wait_timeout=0.5), "bk", "rs"
        )
        got = {r.item.name: (r.outcome, r.reason) for r in result.items}
        assert got["cm-01"] == ("recreated", None)
        assert got["cm-00"] == (
            "failed",
            f"timed out after 0 s waiting for configmaps {source}/cm-00 to be deleted (finalizers: example.com/hold)",
        )
        assert result.phase == "PartiallyFailed"
    finally:
        kube_client.call("PATCH", path, body={"metadata": {"finalizers": None}}, content_type=merge)


def test_an_object_still_being_deleted_is_replaced_once_gone(kube_client: KubeClient, source: str) -> None:
    sink = backup(kube_client, source)
    items = [(i, o) for i, o in sink.items if (i.resource, i.name) == ("configmaps", "cm-05")]
    path = f"/api/v1/namespaces/{source}/configmaps/cm-05"
    merge = "application/merge-patch+json"
    kube_client.call(
        "PATCH", path, body={"metadata": {"finalizers": ["example.com/hold"]}}, content_type=merge
    )
    kube_client.request("DELETE", path)  # terminating until the finalizer goes
    old_uid = kube_client.get(path)["metadata"]["uid"]

    plan = restore_resources(kube_client, items, RestoreOptions(dry_run=True), "bk", "rs")
    assert [(r.outcome, r.reason) for r in plan.items] == [
        ("would-create", "once the existing object, being deleted, is gone")
    ]
    release = threading.Timer(
        0.5,
        lambda: kube_client.call("PATCH", path, body={"metadata": {"finalizers": None}}, content_type=merge),
    )
    release.start()
    try:
        result = restore_resources(kube_client, items, RestoreOptions(wait_timeout=30), "bk", "rs")
    finally:
        release.join()
    assert [(r.outcome, r.reason) for r in result.items] == [
        ("created", "after the existing object, which was being deleted, was gone")
    ]
    now = kube_client.get(path)
    assert now["metadata"]["uid"] != old_uid and "deletionTimestamp" not in now["metadata"]


def test_an_unexpected_error_fails_only_its_object(kube_client: KubeClient, source: str) -> None:
    sink = backup(kube_client, source)
    target = f"{source}-c"
    items = [(i, o) for i, o in sink.items if i.resource in ("namespaces", "configmaps")]
    broken_item, broken = items[1]
    items[1] = (broken_item, {**broken, "data": {"i": {"not", "json"}}})  # e.g. a decoding bug upstream
    result = restore_resources(
        kube_client, items, RestoreOptions(namespace_mapping={source: target}), "bk", "rs"
    )
    assert result.phase == "PartiallyFailed"
    assert [(f.item.name, f.reason) for f in result.failures] == [
        (broken_item.name, "internal error: TypeError: Object of type set is not JSON serializable")
    ]
    assert result.counts == {"created": 30, "failed": 1}


def test_secret_values_never_reach_the_logs(
    kube_client: KubeClient, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    ns, target = f"sec-{unique}", f"sec-{unique}-b"
    value = f"hunter2-{unique}"
    encoded = base64.b64encode(value.encode()).decode()
    make_namespace(kube_client, ns)
    try:
        create(kube_client, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"pw": encoded}}, ns)  # fmt: skip
        caplog.set_level(logging.DEBUG)
        sink = backup(kube_client, ns)
        restore_resources(kube_client, sink.items, RestoreOptions(namespace_mapping={ns: target}), "bk", "rs")
        restored = restore_resources(kube_client, sink.items, RestoreOptions(namespace_mapping={ns: target}, existing="update", dry_run=True), "bk", "rs2")  # fmt: skip
        assert restored.counts == {"unchanged": 2}
        assert get(kube_client, "v1", "secrets", "db", target)["data"] == {"pw": encoded}  # type: ignore[index]
        assert any("/secrets" in r.getMessage() for r in caplog.records)  # requests were logged …
        assert value not in caplog.text and encoded not in caplog.text  # … their bodies were not
    finally:
        kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")
        kube_client.request("DELETE", f"/api/v1/namespaces/{target}")


def test_after_stage_runs_between_stages(kube_client: KubeClient, source: str) -> None:
    """E.g. volume data is restored after the claims exist and before anything that mounts them."""
    sink = backup(kube_client, source)
    target = f"{source}-d"
    calls: list[tuple[str, int]] = []
    seen_at_claims: dict[str, Any] = {}

    def after_stage(stage: str, results: list[RestoreItemResult]) -> None:
        calls.append((stage, len(results)))
        if stage == "persistentvolumeclaims":
            seen_at_claims["results"] = [(r.item.name, r.outcome) for r in results]
            seen_at_claims["claim"] = get(kube_client, "v1", "persistentvolumeclaims", "data", target)
            seen_at_claims["configmaps"] = names_in(kube_client, target, "configmaps")

    options = RestoreOptions(namespace_mapping={source: target})
    restore_resources(kube_client, sink.items, options, "bk", "rs", after_stage=after_stage)
    assert [name for name, _ in calls] == [stage.name for stage in STAGES]
    assert dict(calls)["configmaps"] == 30 and dict(calls)["deployments"] == 0
    assert seen_at_claims["results"] == [("data", "created")]
    assert seen_at_claims["claim"] is not None and seen_at_claims["configmaps"] == []


def test_only_claims_still_awaiting_their_data_get_it(kube_client: KubeClient, source: str) -> None:
    """The data-pending mark: set when a claim is created for data, kept until the data is in, never re-added."""
    from dr.restore.volumes import awaiting_data, clear_data_pending

    kc = kube_client
    sink = backup(kc, source)
    target = f"{source}-c"
    claims = RestoreOptions(namespace_mapping={source: target}, include_resources=["pvc"])
    data = {f"{source}/data": "snap-1"}
    first = restore_resources(kc, sink.items, claims, "bk", "rs-1", data_volumes=data)
    assert first.counts == {"created": 2}  # the namespace and the claim
    # The restore stopped before the data arrived: a re-run (another restore id) finds the claim
    # "unchanged", and it is still awaiting its data.
    again = restore_resources(kc, sink.items, claims, "bk", "rs-2", data_volumes=data)
    assert again.counts == {"unchanged": 1}
    targets, problems, kept = awaiting_data(kc, again.items, data)
    assert [(t.namespace, t.pvc, t.snapshot_id) for t in targets] == [(target, "data", "snap-1")]
    assert problems == [] and kept == []

    clear_data_pending(kc, target, "data", "snap-1")
    claim = get(kc, "v1", "persistentvolumeclaims", "data", target)
    assert claim is not None and "dr.dev/data-pending" not in (claim["metadata"].get("annotations") or {})
    # Filled by an earlier run of this restore: a re-run says nothing of data not restored
    # (it said 'delete the claim and restore again' of a claim holding the backup's data).
    filled = restore_resources(kc, sink.items, claims, "bk", "rs-2b", data_volumes=data)
    assert filled.counts == {"unchanged": 1}
    assert awaiting_data(kc, filled.items, data) == ([], [], [])
    # The app changed the claim; an update brings the backed-up fields back but does not mark
    # the filled claim as awaiting data (its data would be overwritten).
    kc.call("PATCH", f"/api/v1/namespaces/{target}/persistentvolumeclaims/data",
            body=b'{"metadata": {"labels": {"tier": "changed"}}}', content_type="application/merge-patch+json")  # fmt: skip
    backed_up = next(obj for item, obj in sink.items if item.resource == "persistentvolumeclaims")
    backed_up["metadata"]["labels"] = {"tier": "db"}
    update = claims.model_copy(update={"existing": "update"})
    updated = restore_resources(kc, sink.items, update, "bk", "rs-3", data_volumes=data)
    assert updated.counts == {"updated": 1}
    claim = get(kc, "v1", "persistentvolumeclaims", "data", target)
    assert claim is not None and claim["metadata"]["labels"]["tier"] == "db"
    assert "dr.dev/data-pending" not in (claim["metadata"].get("annotations") or {})
    assert awaiting_data(kc, updated.items, data) == ([], [], [])
    # Existing, unmarked, holding another snapshot's data (a newer backup restored in place):
    # named as a claim whose data this restore does not bring back.
    newer = {f"{source}/data": "snap-2"}
    assert awaiting_data(kc, updated.items, newer) == ([], [], [f"{target}/data"])


@pytest.mark.parametrize("existing", ["update", "recreate"])
def test_a_copy_never_takes_the_sources_volume_or_cluster_role_binding(
    kube_client: KubeClient, unique: str, existing: str
) -> None:
    """PVs and ClusterRoleBindings keep their name in a copy: the source's own are skipped, not changed."""
    kc = kube_client
    ns, copy_ns, pv, crb = f"cp-{unique}", f"cp-{unique}-copy", f"pv-{unique}", f"crb-{unique}"
    make_namespace(kc, ns)
    try:
        create(kc, "serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app"}}, ns)  # fmt: skip
        create(kc, "clusterrolebindings", {
            "apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": crb},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns}],
        })  # fmt: skip
        # A static volume (reclaim policy Retain, no data through a mover): restored as such otherwise.
        create(kc, "persistentvolumes", {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "nfs": {"server": "nfs", "path": "/x"},
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
                                  "name": "data", "uid": "0b5d1f57-7a43-4a36-8c1c-3f0f2f7c1e11"}},
        })  # fmt: skip
        create(kc, "persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "volumeName": pv},
        }, ns)  # fmt: skip
        pv_before = get(kc, "v1", "persistentvolumes", pv)
        crb_before = get(kc, RBAC, "clusterrolebindings", crb)
        assert pv_before is not None and crb_before is not None
        sink = backup(kc, ns)
        assert {"persistentvolumes", "clusterrolebindings"} <= {i.resource for i, _ in sink.items}
        options = RestoreOptions(namespace_mapping={ns: copy_ns}, existing=existing)

        def outcomes(dry_run: bool) -> dict[str, tuple[str, str | None]]:
            result = restore_resources(
                kc, sink.items, options.model_copy(update={"dry_run": dry_run}), "bk", "rs"
            )
            return {r.item.resource: (r.outcome, r.reason) for r in result.items}

        for dry_run in (True, False):
            got = outcomes(dry_run)
            assert got["persistentvolumes"][0] == "skipped"
            assert str(got["persistentvolumes"][1]).startswith(
                f"bound to claim {ns}/data: a restore never takes"
            )
            assert got["clusterrolebindings"][0] == "skipped"
            assert "never changes it" in str(got["clusterrolebindings"][1])
        # The source's objects are untouched: same uid, same claim, same subjects.
        pv_after = get(kc, "v1", "persistentvolumes", pv)
        crb_after = get(kc, RBAC, "clusterrolebindings", crb)
        assert pv_after is not None and crb_after is not None
        assert pv_after["metadata"]["uid"] == pv_before["metadata"]["uid"]
        assert pv_after["spec"]["claimRef"] == pv_before["spec"]["claimRef"]
        assert crb_after["metadata"]["uid"] == crb_before["metadata"]["uid"]
        assert crb_after["subjects"] == crb_before["subjects"]
        # The copy's claim does not point at the source's volume: it gets a new one.
        claim = get(kc, "v1", "persistentvolumeclaims", "data", copy_ns)
        assert claim is not None and "volumeName" not in claim["spec"]
    finally:
        for path in (f"/api/v1/namespaces/{ns}", f"/api/v1/namespaces/{copy_ns}",
                     f"/api/v1/persistentvolumes/{pv}",
                     f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{crb}"):  # fmt: skip
            kc.request("DELETE", path)


def test_in_place_restore_does_not_bring_back_a_volume_deleted_with_its_claim(
    kube_client: KubeClient, unique: str
) -> None:
    """Reclaim policy Delete: after ``kubectl delete namespace`` the disk is gone; the claim gets a new one."""
    kc = kube_client
    ns, pv = f"ip-{unique}", f"pv-{unique}"
    make_namespace(kc, ns)
    try:
        create(kc, "persistentvolumes", {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv, "annotations": {"pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com"}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "gp3",
                     "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0abc"},
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
                                  "name": "data", "uid": "0b5d1f57-7a43-4a36-8c1c-3f0f2f7c1e11"}},
        })  # fmt: skip
        create(kc, "persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "gp3", "volumeName": pv},
        }, ns)  # fmt: skip
        sink = backup(kc, ns)
        assert "persistentvolumes" in {i.resource for i, _ in sink.items}
        # The incident; the PV controller deletes the volume (and its disk) with the claim.
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")
        kc.request("DELETE", f"/api/v1/persistentvolumes/{pv}")

        result = restore_resources(kc, sink.items, RestoreOptions(), "bk", "rs")
        assert result.phase == "Completed", result.failures
        pv_result = next(r for r in result.items if r.item.resource == "persistentvolumes")
        assert (pv_result.outcome, pv_result.reason) == (
            "skipped",
            "reclaim policy Delete: its disk is deleted with its claim; the claim gets a new volume",
        )
        assert get(kc, "v1", "persistentvolumes", pv) is None
        claim = get(kc, "v1", "persistentvolumeclaims", "data", ns)
        assert claim is not None and "volumeName" not in claim["spec"]
    finally:
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")
        kc.request("DELETE", f"/api/v1/persistentvolumes/{pv}")


def test_a_dry_run_diff_of_a_rotated_secret_shows_none_of_its_values(
    kube_client: KubeClient, unique: str
) -> None:
    """kubectl apply keeps the whole Secret in the last-applied-configuration annotation."""
    kc = kube_client
    ns = f"sec-{unique}"
    key = "kubectl.kubernetes.io/last-applied-configuration"

    def secret(value: str) -> dict[str, Any]:
        last = json.dumps({"apiVersion": "v1", "kind": "Secret", "data": {"pw": value}})
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "creds", "annotations": {key: last}}, "data": {"pw": value}}  # fmt: skip

    old, new = base64.b64encode(b"supersecret").decode(), base64.b64encode(b"newpassword").decode()
    make_namespace(kc, ns)
    try:
        create(kc, "secrets", secret(old), ns)
        sink = backup(kc, ns)
        kc.request("DELETE", f"/api/v1/namespaces/{ns}/secrets/creds")
        create(kc, "secrets", secret(new), ns)  # rotated since the backup
        for existing in ("skip", "update"):
            options = RestoreOptions(dry_run=True, existing=existing)
            result = restore_resources(kc, sink.items, options, "bk", "rs")
            (secret_result,) = [r for r in result.items if r.item.resource == "secrets"]
            assert secret_result.diff == ["data.pw: changed", f"metadata.annotations.{key}: changed"]
            text = json.dumps(result.model_dump(mode="json"))
            for value in (old, new, old[:20], new[:20]):
                assert value not in text
    finally:
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_a_filtered_restore_recreates_a_lost_namespace_from_the_backup(
    kube_client: KubeClient, unique: str
) -> None:
    """The Namespace object is filtered out (selector, types), yet the namespace keeps its labels."""
    kc = kube_client
    ns, copy_ns = f"fl-{unique}", f"fl-{unique}-copy"
    labels = {"pod-security.kubernetes.io/enforce": "restricted", "kubernetes.io/metadata.name": ns}
    make_namespace(kc, ns, labels)
    try:
        create(kc, "configmaps", configmap("c", {"a": "1"}, {"app": "web"}), ns)
        sink = backup(kc, ns)
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")
        for options, target in (
            (RestoreOptions(selector="app=web", dry_run=True), ns),
            (RestoreOptions(selector="app=web"), ns),
            (RestoreOptions(include_resources=["configmaps"], namespace_mapping={ns: copy_ns}), copy_ns),
        ):
            result = restore_resources(kc, sink.items, options, "bk", "rs")
            assert result.phase == "Completed", result.failures
            (made,) = [r for r in result.items if r.item.resource == "namespaces"]
            assert made.outcome == ("would-create" if options.dry_run else "created")
            assert made.reason == "needed by restored objects; from the backup (filtered out of this restore)"
            got = get(kc, "v1", "namespaces", target)
            if options.dry_run:
                assert got is None
                continue
            assert got is not None
            assert got["metadata"]["labels"] == {
                "pod-security.kubernetes.io/enforce": "restricted",
                "kubernetes.io/metadata.name": target,
                "dr.dev/backup": "bk",
                "dr.dev/restore": "rs",
            }
    finally:
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")
        kc.request("DELETE", f"/api/v1/namespaces/{copy_ns}")


def test_owner_references_to_owners_the_target_cluster_lacks_are_dropped(
    kube_client: KubeClient, unique: str
) -> None:
    # An owner outside the backup (here a cluster-scoped object the backup did not take) keeps
    # its uid only in the cluster it lives in. Restored into another cluster — or after the
    # owner was deleted — a reference to that uid names an owner that is not there, and the
    # garbage collector deletes the restored object. A reference to a live owner stays.
    kc, ns, owner = kube_client, f"own-{unique}", f"owner-{unique}"
    make_namespace(kc, ns)
    live = kc.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", body={
        "apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": owner}, "rules": []})  # fmt: skip
    try:

        def owned(name: str, uid: str) -> dict[str, Any]:
            cm = configmap(name, {"k": "v"})
            cm["metadata"]["ownerReferences"] = [
                {"apiVersion": RBAC, "kind": "ClusterRole", "name": owner, "uid": uid}
            ]
            return cm

        create(kc, "configmaps", owned("by-live-owner", live["metadata"]["uid"]), ns)
        # The same owner's name with the uid it had in the lost cluster.
        create(kc, "configmaps", owned("by-lost-owner", "0d7e3c9a-1b6f-4c55-9e0a-3f2b8d1c4e77"), ns)
        sink = backup(kc, ns)
        assert not [i for i, _ in sink.items if i.resource == "clusterroles"]
        result = restore_resources(
            kc, sink.items, RestoreOptions(namespace_mapping={ns: f"{ns}-c"}), "bk", "rs"
        )
        assert result.phase == "Completed", result.failures()
        refs = {
            name: (get(kc, "v1", "configmaps", name, f"{ns}-c") or {})["metadata"].get("ownerReferences")
            for name in ("by-live-owner", "by-lost-owner")
        }
        assert refs["by-live-owner"] == [
            {"apiVersion": RBAC, "kind": "ClusterRole", "name": owner, "uid": live["metadata"]["uid"]}
        ]
        assert refs["by-lost-owner"] is None
    finally:
        for name in (ns, f"{ns}-c"):
            kc.request("DELETE", f"/api/v1/namespaces/{name}")
        kc.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{owner}")


def test_a_restored_storage_class_does_not_become_a_second_default(
    kube_client: KubeClient, unique: str
) -> None:
    # The backed-up class was the source cluster's default; the target has a default of its own.
    # Two defaults would send every other app's new claims to the restored class (the newest
    # default wins): the restore must not change which class is the cluster's default.
    kc, ns, theirs, ours = kube_client, f"sc-{unique}", f"target-{unique}", f"source-{unique}"
    make_namespace(kc, ns)
    create(kc, "storageclasses", _default_storage_class(ours))
    try:
        sink = _backup_with_claim_of(kc, ns, ours)
        # The new cluster: its own default, not the backed-up class.
        kc.call("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{ours}")
        create(kc, "storageclasses", _default_storage_class(theirs))
        options = RestoreOptions(namespace_mapping={ns: f"{ns}-c"})
        result = restore_resources(kc, sink.items, options, "bk", "rs")
        assert result.phase == "Completed", result.failures()
        restored = get(kc, "storage.k8s.io/v1", "storageclasses", ours) or {}
        assert DEFAULT_CLASS not in (restored["metadata"].get("annotations") or {})
        assert restored["provisioner"] == "example.com/disk"
    finally:
        for name in (ns, f"{ns}-c"):
            kc.request("DELETE", f"/api/v1/namespaces/{name}")
        for name in (ours, theirs):
            kc.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{name}")


def test_a_default_class_restored_without_the_right_to_list_classes_is_a_warning(
    kube_client: KubeClient, k8s: servers.TestCluster, unique: str
) -> None:
    # bob may create StorageClasses but not list them: whether the cluster has another default
    # cannot be told, so the class keeps its default-class annotation, and the result says so
    # (restored into another cluster it may be a second default).
    if k8s.external:
        pytest.skip("runs as an identity of the local test cluster")
    kc, ns, ours, grant = kube_client, f"sc-nolist-{unique}", f"source-{unique}", f"sc-writer-{unique}"
    make_namespace(kc, ns)
    create(kc, "storageclasses", _default_storage_class(ours))
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    try:
        items = _backed_up_storage_class(kc, ns, ours)
        kc.call("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{ours}")
        kc.call("POST", f"{rbac}/clusterroles", body={
            "apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": grant},
            "rules": [{"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"],
                       "verbs": ["get", "create", "patch", "update"]}]})  # fmt: skip
        kc.call("POST", f"{rbac}/clusterrolebindings", body={
            "apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": grant},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": grant},
            "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]})  # fmt: skip
        with connect(k8s.kubeconfig_for("bob")) as bob:
            result = restore_resources(bob, items, RestoreOptions(), "bk", "rs")
        assert result.phase == "Completed", result.failures()
        restored = get(kc, "storage.k8s.io/v1", "storageclasses", ours) or {}
        assert (restored["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"
        assert result.warnings == [
            f"StorageClass {ours}: cannot list StorageClasses to check for another default (403 Forbidden: "
            'storageclasses.storage.k8s.io is forbidden: User "bob" cannot list resource "storageclasses" in '
            'API group "storage.k8s.io" at the cluster scope): restored with its default-class annotation'
        ]
    finally:
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")
        kc.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{ours}")
        kc.request("DELETE", f"{rbac}/clusterrolebindings/{grant}")
        kc.request("DELETE", f"{rbac}/clusterroles/{grant}")


def test_an_in_place_restore_keeps_a_reference_to_a_namespaced_owner_the_cluster_has(
    kube_client: KubeClient, unique: str
) -> None:
    # The owner lives in the restored object's namespace and was not restored with it (left out
    # of the items restored, so the transforms keep the reference): looked up in that namespace,
    # it is there with the uid the reference names, and the reference stays.
    kc, ns = kube_client, f"own-ns-{unique}"
    make_namespace(kc, ns)
    try:
        owner = create(kc, "configmaps", configmap("owner", {"k": "v"}), ns)
        dependent = configmap("dependent", {"k": "v"})
        dependent["metadata"]["ownerReferences"] = [owner_ref(owner)]
        create(kc, "configmaps", dependent, ns)
        items = [(i, o) for i, o in backup(kc, ns).items if i.name == "dependent"]
        assert len(items) == 1
        kc.call("DELETE", f"/api/v1/namespaces/{ns}/configmaps/dependent")
        result = restore_resources(kc, items, RestoreOptions(), "bk", "rs")
        assert result.phase == "Completed", result.failures()
        restored = get(kc, "v1", "configmaps", "dependent", ns) or {}
        assert restored["metadata"].get("ownerReferences") == [owner_ref(owner)]
    finally:
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_an_in_place_recreate_leaves_the_default_class_the_cluster_s_default(
    kube_client: KubeClient, unique: str
) -> None:
    # The restored class is the cluster's default itself (restored into the cluster it came from):
    # no other class is a default, and the class recreated from the backup keeps its annotation.
    kc, ns, ours = kube_client, f"sc-in-{unique}", f"default-{unique}"
    make_namespace(kc, ns)
    create(kc, "storageclasses", _default_storage_class(ours, labels={"tier": "a"}))
    try:
        items = _backed_up_storage_class(kc, ns, ours)
        kc.call("PATCH", f"/apis/storage.k8s.io/v1/storageclasses/{ours}",
                body={"metadata": {"labels": {"tier": "b"}}}, content_type="application/merge-patch+json")  # fmt: skip
        result = restore_resources(kc, items, RestoreOptions(existing="recreate"), "bk", "rs")
        assert result.phase == "Completed", result.failures()
        restored = get(kc, "storage.k8s.io/v1", "storageclasses", ours) or {}
        assert restored["metadata"]["labels"]["tier"] == "a"  # recreated from the backup
        assert (restored["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"
    finally:
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")
        kc.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{ours}")


def test_an_owner_reference_to_a_kind_the_cluster_does_not_serve_is_dropped(
    kube_client: KubeClient, unique: str
) -> None:
    # An operator's custom resource whose CRD the target cluster lacks: it has no such owner.
    kc, ns = kube_client, f"own-kind-{unique}"
    make_namespace(kc, ns)
    try:
        dependent = configmap("dependent", {"k": "v"})
        dependent["metadata"]["ownerReferences"] = [{
            "apiVersion": f"{unique}.example.com/v1", "kind": "Widget", "name": "w",
            "uid": "6f1c2a4e-8d3b-4e7f-a5c9-0b1d2e3f4a5b"}]  # fmt: skip
        create(kc, "configmaps", dependent, ns)
        sink = backup(kc, ns)
        result = restore_resources(
            kc, sink.items, RestoreOptions(namespace_mapping={ns: f"{ns}-c"}), "bk", "rs"
        )
        assert result.phase == "Completed", result.failures()
        restored = get(kc, "v1", "configmaps", "dependent", f"{ns}-c") or {}
        assert restored["data"] == {"k": "v"} and "ownerReferences" not in restored["metadata"]
    finally:
        for name in (ns, f"{ns}-c"):
            kc.request("DELETE", f"/api/v1/namespaces/{name}")


WIDGET_REF = {"apiVersion": "widgets.example.com/v1", "kind": "Widget", "name": "w",
              "uid": "6f1c2a4e-8d3b-4e7f-a5c9-0b1d2e3f4a5b"}  # fmt: skip


def _widgets_run(
    api: Any, tmp_path: Path, widgets_v1: tuple[int, dict[str, Any], dict[str, str]]
) -> _RestoreRun:
    """A restore run against a stand-in server serving one API group, widgets.example.com, whose
    discovery answers ``widgets_v1``; discovered as a restore does."""
    api.script("/api", (200, {"versions": ["v1"]}, {}))
    api.script("/api/v1", (200, {"resources": []}, {}))
    api.script(
        "/apis",
        (200, {"groups": [{"name": "widgets.example.com", "versions": [{"version": "v1"}],
                           "preferredVersion": {"version": "v1"}}]}, {}),
    )  # fmt: skip
    api.script("/apis/widgets.example.com/v1", widgets_v1)
    kc = connect(api.kubeconfig(tmp_path))
    kc.retry = RetryPolicy(attempts=1)
    run = _RestoreRun(kc, RestoreOptions(), "bk", "rs", None)
    run.disc = discover(kc, all_versions=True)
    return run


def test_an_owner_reference_to_a_kind_of_a_group_whose_discovery_failed_is_kept(tmp_path: Path) -> None:
    # An aggregated API with its backend down (503): dr cannot tell whether the owner's kind is
    # served, and what it cannot tell it keeps (the garbage collector would otherwise never see
    # the reference again once the API is back). A stand-in server answers discovery.
    with stub_api() as api:
        run = _widgets_run(
            api, tmp_path, (503, {"reason": "ServiceUnavailable", "message": "no endpoints"}, {})
        )
        assert run.owner_present(WIDGET_REF, "app")
        # A group the cluster does not list at all does not serve the kind: dropped, as before.
        assert not run.owner_present({**WIDGET_REF, "apiVersion": "gadgets.example.com/v1"}, "app")


def test_an_owner_reference_dr_may_not_read_the_owner_of_is_kept(tmp_path: Path) -> None:
    # Not allowed to read the owner (403): dr cannot tell whether it is there, and keeps the
    # reference, as for a group whose discovery failed. A stand-in server answers.
    with stub_api() as api:
        api.script(
            "/apis/widgets.example.com/v1/namespaces/app/widgets/w",
            (403, {"reason": "Forbidden", "message": "widgets is forbidden"}, {}),
        )
        run = _widgets_run(api, tmp_path, (200, {"resources": [
            {"name": "widgets", "kind": "Widget", "namespaced": True, "verbs": ["get", "list"]}]}, {}))  # fmt: skip
        assert run.owner_present(WIDGET_REF, "app")
        assert ("GET", "/apis/widgets.example.com/v1/namespaces/app/widgets/w") in [
            (method, path.split("?")[0]) for method, path, _ in api.requests
        ]
        # An owner the server says is not there (404): dropped.
        assert not run.owner_present({**WIDGET_REF, "name": "gone"}, "app")
