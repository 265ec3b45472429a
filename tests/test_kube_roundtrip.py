"""Acceptance: a realistic application namespace survives backup → loss → restore, in place and mapped.

The application (``tests.kube_helpers.build_app``) has every common type, RBAC,
storage with a bound PV and a StorageClass, a CRD with two custom objects, and
objects owned by controllers. After restoring, every object must equal the
original except for exactly the changes the restore transforms make on
purpose; these are written out here, per object, independently of
``dr.restore.transforms``.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from dr.backup.resources import backup_resources
from dr.backup.scope import BackupScope
from dr.kube.client import KubeClient, connect
from dr.kube.objects import ResourceItem
from dr.restore.plan import RestoreOptions
from dr.restore.resources import RestoreResult, restore_resources
from tests import servers
from tests.kube_helpers import (
    App,
    ListSink,
    build_app,
    cleanup_app,
    create_crd,
    delete,
    delete_crd,
    delete_namespace,
    get,
    normalise,
    widget_served,
)

OWNED = {("replicasets", "web-7d4b9c"), ("pods", "web-7d4b9c-x2k9p"), ("jobs", "nightly-29000000")}
JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
PVC_BINDING = (
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/selected-node",
)


@pytest.fixture(scope="module")
def widget_group(k8s: servers.TestCluster) -> Iterator[str]:
    """One Widget CRD shared by the tests that do not delete it (a new CRD costs the test cluster ~2 s)."""
    group = f"t{uuid.uuid4().hex[:10]}.example.com"
    with connect(k8s.kubeconfig, None) as kc:
        create_crd(kc, group)
        yield group
        kc.request("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}")


@pytest.fixture
def app(kube_client: KubeClient, unique: str, widget_group: str) -> Iterator[App]:
    ns = f"app-{unique}"
    application = build_app(kube_client, ns, unique, widget_group)
    try:
        yield application
    finally:
        cleanup_app(kube_client, application, ns, f"{ns}-copy", f"{ns}-part", f"{ns}-bad")


def backup(kc: KubeClient, app: App) -> ListSink:
    sink = ListSink()
    result = backup_resources(kc, BackupScope(namespaces=[app.namespace]), sink)
    assert result.phase == "Completed", result.errors
    return sink


def outcomes(result: RestoreResult) -> dict[tuple[str, str], str]:
    return {(r.item.resource, r.item.name): r.outcome for r in result.items}


def current(kc: KubeClient, item: ResourceItem, namespace: str | None = None) -> dict[str, Any] | None:
    return get(kc, item.api_version, item.resource, item.name, namespace if item.namespaced else None)


def intended(original: dict[str, Any], item: ResourceItem, *, target_ns: str | None, pv_restored: bool,
             backup_id: str, restore_id: str) -> dict[str, Any]:  # fmt: skip
    """What the restored object must look like: the original with exactly the intended changes."""
    obj = normalise(original)
    meta, spec = obj["metadata"], obj.get("spec", {})
    meta.setdefault("labels", {}).update({"dr.dev/backup": backup_id, "dr.dev/restore": restore_id})
    mapped = target_ns is not None and target_ns != original["metadata"].get("namespace", target_ns)
    if item.namespaced and target_ns:
        meta["namespace"] = target_ns
    kind = (item.resource, item.name)
    if item.resource == "services" and spec.get("clusterIP") != "None":
        del spec["clusterIP"], spec["clusterIPs"]
        spec.pop("healthCheckNodePort", None)
        for port in spec["ports"]:
            port.pop("nodePort", None)
    if kind == ("persistentvolumeclaims", "data"):
        for key in PVC_BINDING:
            del meta["annotations"][key]
        if not pv_restored:
            del spec["volumeName"]
    if item.resource == "persistentvolumes":
        del spec["claimRef"]["uid"], spec["claimRef"]["resourceVersion"]
    if kind == ("jobs", "migrate"):
        del spec["selector"]
        for labels in (meta["labels"], spec["template"]["metadata"]["labels"]):
            for key in JOB_UID_LABELS:
                del labels[key]
    if mapped and item.resource == "rolebindings":
        for subject in obj["subjects"]:
            if subject["kind"] == "ServiceAccount":
                subject["namespace"] = target_ns
    if item.resource == "namespaces" and target_ns:
        meta["name"] = target_ns
        meta["labels"]["kubernetes.io/metadata.name"] = target_ns
    return obj


@pytest.fixture
def own_app(kube_client: KubeClient, unique: str) -> Iterator[App]:
    """An application with its own CRD, which the test may delete."""
    ns = f"own-{unique}"
    application = build_app(kube_client, ns, unique)
    try:
        yield application
    finally:
        cleanup_app(kube_client, application, ns, f"{ns}-copy")


def test_backup_lose_restore_and_restore_mapped(kube_client: KubeClient, own_app: App) -> None:
    kc, app, ns = kube_client, own_app, own_app.namespace
    sink = ListSink()
    result = backup_resources(kc, BackupScope(namespaces=[ns]), sink)

    # --- what the backup holds
    assert result.phase == "Completed", result.errors
    assert result.cluster_version.startswith("v1.")
    assert result.counts == {
        "clusterroles.rbac.authorization.k8s.io": 1,
        "configmaps": 2,
        "cronjobs.batch": 1,
        "customresourcedefinitions.apiextensions.k8s.io": 1,
        "daemonsets.apps": 1,
        "deployments.apps": 1,
        "horizontalpodautoscalers.autoscaling": 1,
        "ingresses.networking.k8s.io": 1,
        "jobs.batch": 2,
        "namespaces": 1,
        "networkpolicies.networking.k8s.io": 1,
        "persistentvolumeclaims": 1,
        "persistentvolumes": 1,
        "poddisruptionbudgets.policy": 1,
        "pods": 1,
        "replicasets.apps": 1,
        "rolebindings.rbac.authorization.k8s.io": 2,
        "roles.rbac.authorization.k8s.io": 1,
        "secrets": 1,
        "serviceaccounts": 1,
        "services": 3,
        "statefulsets.apps": 1,
        "storageclasses.storage.k8s.io": 1,
        f"widgets.{app.crd_group}": 2,
    }
    assert result.skipped == {"endpoints managed by services": 1, "service-account token secrets": 1}
    assert result.api_versions["autoscaling"] == "v2" and result.api_versions[app.crd_group] == "v1"
    assert {(i.resource, i.name) for i, _ in sink.items if i.owned} == OWNED
    rs_item, _ = sink.find("replicasets", "web-7d4b9c")
    assert rs_item.controller_uid == app.objects["deployments/web"]["metadata"]["uid"]
    assert sink.names("clusterroles") == {app.cluster_role}
    assert sink.names("persistentvolumes") == {app.pv}

    # --- the namespace and its cluster-scoped dependencies are lost
    delete_namespace(kc, ns)
    delete_crd(kc, app.crd_name)
    delete(kc, "v1", "persistentvolumes", app.pv)
    delete(kc, "storage.k8s.io/v1", "storageclasses", app.storage_class)
    delete(kc, "rbac.authorization.k8s.io/v1", "clusterroles", app.cluster_role)
    assert not widget_served(kc, app.crd_group)

    restored = restore_resources(kc, sink.items, RestoreOptions(), "bk-1", "rs-1")
    assert restored.phase == "Completed", restored.failures
    got = outcomes(restored)
    for key in OWNED:
        assert got.pop(key) == "skipped"
    assert set(got.values()) == {"created"}
    assert len(got) == len(sink.items) - len(OWNED)
    reasons = {r.item.name: r.reason for r in restored.items if r.outcome == "skipped"}
    assert reasons["web-7d4b9c-x2k9p"] == "owned by ReplicaSet web-7d4b9c in the backup, which recreates it"
    assert reasons["nightly-29000000"] == "owned by CronJob nightly in the backup, which recreates it"
    assert restored.namespaces_created == [ns]

    for item, original in sink.items:
        now = current(kc, item, ns)
        if (item.resource, item.name) in OWNED:
            assert now is None, f"{item.describe()} is owned and must be left to its controller"
            continue
        assert now is not None, item.describe()
        want = intended(original, item, target_ns=None, pv_restored=True, backup_id="bk-1", restore_id="rs-1")
        assert normalise(now) == want, item.describe()

    # --- restore the same backup again, into another namespace (the original is intact)
    before = {(i.resource, i.name): (current(kc, i, ns) or {}).get("metadata", {}).get("resourceVersion")
              for i, _ in sink.items}  # fmt: skip
    copy_ns = f"{ns}-copy"
    mapped = restore_resources(
        kc, sink.items, RestoreOptions(namespace_mapping={ns: copy_ns}), "bk-1", "rs-2"
    )
    assert mapped.phase == "Completed", mapped.failures
    got = outcomes(mapped)
    for key in OWNED:
        assert got.pop(key) == "skipped"
    # Cluster-scoped objects exist already: identical ones are unchanged; the PV, whose claimRef
    # would now point into the new namespace, is the source claim's and is left alone.
    assert got.pop(("customresourcedefinitions", app.crd_name)) == "unchanged"
    assert got.pop(("storageclasses", app.storage_class)) == "unchanged"
    assert got.pop(("clusterroles", app.cluster_role)) == "unchanged"
    assert got.pop(("persistentvolumes", app.pv)) == "skipped"
    pv_result = next(r for r in mapped.items if r.item.resource == "persistentvolumes")
    assert pv_result.diff == [f'spec.claimRef.namespace: "{ns}" → "{copy_ns}"']
    assert set(got.values()) == {"created"}
    assert mapped.namespaces_created == [copy_ns]

    for item, original in sink.items:
        if (item.resource, item.name) in OWNED or not (item.namespaced or item.resource == "namespaces"):
            continue
        now = (
            get(kc, "v1", "namespaces", copy_ns)
            if item.resource == "namespaces"
            else current(kc, item, copy_ns)
        )
        assert now is not None, item.describe()
        want = intended(
            original, item, target_ns=copy_ns, pv_restored=False, backup_id="bk-1", restore_id="rs-2"
        )
        assert normalise(now) == want, item.describe()
    after = {(i.resource, i.name): (current(kc, i, ns) or {}).get("metadata", {}).get("resourceVersion")
             for i, _ in sink.items}  # fmt: skip
    assert after == before


def test_dry_run_lists_exactly_what_would_change_and_changes_nothing(
    kube_client: KubeClient, app: App
) -> None:
    kc, ns = kube_client, app.namespace
    sink = backup(kc, app)
    # Drift after the backup: changed data, a changed secret, a scaled deployment, deleted objects.
    kc.call("PATCH", f"/api/v1/namespaces/{ns}/configmaps/settings", body={"data": {"workers": "8"}},
            content_type="application/merge-patch+json")  # fmt: skip
    kc.call("PATCH", f"/api/v1/namespaces/{ns}/secrets/creds", body={"data": {"password": "bmV3LXNlY3JldA=="}},
            content_type="application/merge-patch+json")  # fmt: skip
    kc.call("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/web", body={"spec": {"replicas": 5}},
            content_type="application/merge-patch+json")  # fmt: skip
    delete(kc, "v1", "configmaps", "other", ns)
    kc.request("DELETE", f"{app.widgets_path(ns)}/large")

    def versions() -> dict[tuple[str, str], str | None]:
        return {(i.resource, i.name): (current(kc, i, ns) or {}).get("metadata", {}).get("resourceVersion")
                for i, _ in sink.items}  # fmt: skip

    before = versions()
    plan = restore_resources(
        kc, sink.items, RestoreOptions(dry_run=True, existing="update"), "bk-1", "rs-dry"
    )
    assert plan.phase == "Completed" and plan.dry_run
    changing = {(r.item.resource, r.item.name): (r.outcome, r.diff) for r in plan.items
                if r.outcome not in ("unchanged", "skipped")}  # fmt: skip
    assert changing == {
        ("configmaps", "settings"): ("would-update", ['data.workers: "8" → "4"']),
        ("secrets", "creds"): ("would-update", ["data.password: changed"]),  # never the value
        ("deployments", "web"): ("would-update", ["spec.replicas: 5 → 2"]),
        ("configmaps", "other"): ("would-create", []),
        ("widgets", "large"): ("would-create", []),
    }
    skipped = {(r.item.resource, r.item.name) for r in plan.items if r.outcome == "skipped"}
    assert skipped == OWNED
    assert plan.counts["unchanged"] == len(sink.items) - len(OWNED) - len(changing)
    assert "bmV3LXNlY3JldA" not in plan.model_dump_json() and "aHVudGVyMg" not in plan.model_dump_json()

    # The default policy (skip) plans to leave the changed objects alone, and says why.
    skip_plan = restore_resources(kc, sink.items, RestoreOptions(dry_run=True), "bk-1", "rs-dry2")
    settings = next(r for r in skip_plan.items if r.item.name == "settings")
    assert (settings.outcome, settings.reason) == ("skipped", "already exists and differs (existing=skip)")

    assert versions() == before
    assert get(kc, "v1", "configmaps", "other", ns) is None


def test_existing_update_then_recreate(kube_client: KubeClient, app: App) -> None:
    kc, ns = kube_client, app.namespace
    sink = backup(kc, app)
    merge = "application/merge-patch+json"
    kc.call(
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/settings",
        body={"data": {"workers": "8"}},
        content_type=merge,
    )
    kc.call(
        "PATCH",
        f"/api/v1/namespaces/{ns}",
        body={"metadata": {"labels": {"team": "ops"}}},
        content_type=merge,
    )
    uid_before = get(kc, "v1", "configmaps", "settings", ns)["metadata"]["uid"]  # type: ignore[index]

    updated = restore_resources(kc, sink.items, RestoreOptions(existing="update"), "bk-1", "rs-up")
    assert updated.phase == "Completed", updated.failures
    changed = {(r.item.resource, r.item.name): r.outcome for r in updated.items if r.outcome != "unchanged"}
    assert changed == {("configmaps", "settings"): "updated", ("namespaces", ns): "updated",
                       **dict.fromkeys(OWNED, "skipped")}  # fmt: skip
    settings = get(kc, "v1", "configmaps", "settings", ns)
    assert settings is not None
    assert settings["data"] == {"mode": "production", "workers": "4"}
    assert settings["metadata"]["uid"] == uid_before
    assert settings["metadata"]["labels"]["dr.dev/restore"] == "rs-up"
    assert get(kc, "v1", "namespaces", ns)["metadata"]["labels"]["team"] == "web"  # type: ignore[index]

    kc.call(
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/settings",
        body={"data": {"workers": "16"}},
        content_type=merge,
    )
    kc.call(
        "PATCH",
        f"/api/v1/namespaces/{ns}",
        body={"metadata": {"labels": {"team": "ops"}}},
        content_type=merge,
    )
    ns_uid = get(kc, "v1", "namespaces", ns)["metadata"]["uid"]  # type: ignore[index]
    recreated = restore_resources(kc, sink.items, RestoreOptions(existing="recreate"), "bk-1", "rs-re")
    assert recreated.phase == "Completed", recreated.failures
    by_name = {(r.item.resource, r.item.name): r for r in recreated.items if r.outcome != "unchanged"}
    assert by_name[("configmaps", "settings")].outcome == "recreated"
    assert by_name[("configmaps", "settings")].diff == ['data.workers: "16" → "4"']
    # Deleting a namespace would delete everything in it: namespaces are updated instead.
    assert by_name[("namespaces", ns)].outcome == "updated"
    assert by_name[("namespaces", ns)].reason == "namespaces are updated, never recreated"
    settings = get(kc, "v1", "configmaps", "settings", ns)
    assert settings is not None and settings["data"]["workers"] == "4"
    assert settings["metadata"]["uid"] != uid_before
    assert get(kc, "v1", "namespaces", ns)["metadata"]["uid"] == ns_uid  # type: ignore[index]


def test_partial_restore_by_type_and_selector(kube_client: KubeClient, app: App) -> None:
    kc, ns = kube_client, app.namespace
    sink = backup(kc, app)
    target = f"{ns}-part"
    options = RestoreOptions(
        namespace_mapping={ns: target}, include_resources=["configmaps", "Secret"], selector="app=web"
    )
    result = restore_resources(kc, sink.items, options, "bk-1", "rs-part")
    assert result.phase == "Completed", result.failures
    assert outcomes(result) == {("configmaps", "settings"): "created", ("secrets", "creds"): "created",
                                ("namespaces", target): "created"}  # fmt: skip
    assert result.filtered == len(sink.items) - 2
    ns_result = next(r for r in result.items if r.item.resource == "namespaces")
    # Filtered out, yet the namespace is made from its backed-up object: its labels, name mapped.
    assert ns_result.reason == "needed by restored objects; from the backup (filtered out of this restore)"
    ns_labels = get(kc, "v1", "namespaces", target)["metadata"]["labels"]  # type: ignore[index]
    assert ns_labels["team"] == "web" and ns_labels["kubernetes.io/metadata.name"] == target
    listed = kc.get(f"/api/v1/namespaces/{target}/configmaps")["items"]
    assert [c["metadata"]["name"] for c in listed] == ["settings"]
    assert kc.get(f"/apis/apps/v1/namespaces/{target}/deployments")["items"] == []
    assert get(kc, "v1", "namespaces", target)["metadata"]["labels"]["dr.dev/restore"] == "rs-part"  # type: ignore[index]


def test_rejected_object_fails_alone(kube_client: KubeClient, app: App) -> None:
    kc, ns = kube_client, app.namespace
    sink = backup(kc, app)
    items = []
    for item, obj in sink.items:
        if (item.resource, item.name) == ("configmaps", "settings"):
            obj = copy.deepcopy(obj)
            obj["metadata"]["labels"]["tier"] = "not a valid label value!"
        items.append((item, obj))
    target = f"{ns}-bad"
    result = restore_resources(kc, items, RestoreOptions(namespace_mapping={ns: target}), "bk-1", "rs-bad")
    assert result.phase == "PartiallyFailed"
    assert [(f.item.describe(), f.outcome) for f in result.failures] == [
        (f"configmaps {target}/settings", "failed")
    ]
    assert result.failures[0].reason is not None and result.failures[0].reason.startswith("422 Invalid:")
    assert "not a valid label value!" in result.failures[0].reason
    assert get(kc, "v1", "configmaps", "settings", target) is None
    assert get(kc, "v1", "configmaps", "other", target) is not None
    assert get(kc, "apps/v1", "deployments", "web", target) is not None
