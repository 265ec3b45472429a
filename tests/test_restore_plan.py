"""Restore planning (no cluster): filters, owned objects, skip reasons, stages, options, diffs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.errors import InvalidInput
from dr.kube.discovery import ApiResource
from dr.kube.objects import ResourceItem
from dr.restore.order import OTHER_INDEX, STAGES, stage_of
from dr.restore.plan import CLUSTER_SCOPED_SKIP, DigestSet, RestoreOptions, build_plan, changes


def item(group: str, kind: str, plural: str, name: str, ns: str | None = "app", **kw: Any) -> ResourceItem:
    return ResourceItem(
        group=group,
        version="v1",
        kind=kind,
        resource=plural,
        namespaced=ns is not None,
        namespace=ns,
        name=name,
        **kw,
    )


def obj(
    kind: str, name: str, ns: str | None = "app", labels: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = labels
    return {"kind": kind, "metadata": meta, **extra}


def backup() -> list[tuple[ResourceItem, dict[str, Any]]]:
    ref = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-1",
        "uid": "rs-uid",
        "controller": True,
    }
    sts_ref = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "db",
        "uid": "sts-uid",
        "controller": True,
    }
    return [
        (item("", "Namespace", "namespaces", "app", None, uid="ns-uid"), obj("Namespace", "app", None)),
        (item("", "Namespace", "namespaces", "other", None, uid="ns2-uid"), obj("Namespace", "other", None)),
        (item("apps", "Deployment", "deployments", "web", uid="dep-uid"), obj("Deployment", "web", labels={"app": "web"})),
        (item("apps", "ReplicaSet", "replicasets", "web-1", uid="rs-uid", owned=True, controller_uid="dep-uid"),
         obj("ReplicaSet", "web-1", labels={"app": "web"})),
        (item("", "Pod", "pods", "web-1-a", uid="pod-uid", owned=True, controller_uid="rs-uid"),
         obj("Pod", "web-1-a", labels={"app": "web"}, metadata_refs=ref)),
        (item("", "Pod", "pods", "orphan", uid="pod2-uid", owned=True, controller_uid="gone-uid"), obj("Pod", "orphan")),
        (item("apps", "StatefulSet", "statefulsets", "db", uid="sts-uid"), obj("StatefulSet", "db")),
        (item("", "PersistentVolumeClaim", "persistentvolumeclaims", "data-db-0", uid="pvc-uid", owned=True,
              controller_uid="sts-uid"), obj("PersistentVolumeClaim", "data-db-0", metadata_refs=sts_ref)),
        (item("", "PersistentVolume", "persistentvolumes", "pv-a", None, uid="pv-uid"),
         obj("PersistentVolume", "pv-a", None, spec={"claimRef": {"namespace": "app", "name": "data-db-0"}})),
        (item("", "PersistentVolume", "persistentvolumes", "pv-o", None, uid="pv2-uid"),
         obj("PersistentVolume", "pv-o", None, spec={"claimRef": {"namespace": "other", "name": "x"}})),
        (item("", "ConfigMap", "configmaps", "settings", uid="cm-uid"), obj("ConfigMap", "settings", labels={"app": "web"})),
        (item("", "ConfigMap", "configmaps", "settings", "other", uid="cm2-uid"), obj("ConfigMap", "settings", "other")),
        (item("", "Event", "events", "ev", uid="ev-uid"), obj("Event", "ev")),
        (item("example.com", "Widget", "widgets", "w", uid="w-uid"), obj("Widget", "w")),
    ]  # fmt: skip


def with_owner_refs(
    items: list[tuple[ResourceItem, dict[str, Any]]],
) -> list[tuple[ResourceItem, dict[str, Any]]]:
    # Give the objects the owner references their items describe (kept short above).
    out = []
    for i, o in items:
        ref = o.pop("metadata_refs", None)
        if ref:
            o["metadata"]["ownerReferences"] = [ref]
        out.append((i, o))
    return out


# What the target cluster's discovery would add: short names.
KNOWN = [
    ApiResource("", "v1", "namespaces", "Namespace", False, short_names=("ns",)),
    ApiResource("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
    ApiResource("", "v1", "persistentvolumes", "PersistentVolume", False, short_names=("pv",)),
    ApiResource("apps", "v1", "deployments", "Deployment", True, short_names=("deploy",)),
]


def plan_of(**options: Any) -> Any:
    return build_plan(with_owner_refs(backup()), RestoreOptions(**options), known_types=KNOWN)


def planned(plan: Any) -> set[tuple[str, str | None, str]]:
    return {(e.target.resource, e.target.namespace, e.target.name) for e in plan.entries}


def test_owned_objects_are_skipped_when_their_controller_is_in_the_backup() -> None:
    plan = plan_of()
    skipped = {(r.item.resource, r.item.name): r.reason for r in plan.skipped}
    assert skipped == {
        ("replicasets", "web-1"): "owned by a controller in the backup, which recreates it",
        ("pods", "web-1-a"): "owned by ReplicaSet web-1 in the backup, which recreates it",
        ("events", "ev"): "never restored: events are transient",
    }
    # A pod whose controller is not in the backup is restored; a PVC is restored whoever owns it.
    assert ("pods", "app", "orphan") in planned(plan)
    assert ("persistentvolumeclaims", "app", "data-db-0") in planned(plan)
    assert plan.filtered == 0


def test_stages_follow_the_documented_order() -> None:
    plan = plan_of()
    by_stage = {
        STAGES[i].name: sorted(e.target.name for e in stage) for i, stage in enumerate(plan.stages) if stage
    }
    assert list(by_stage) == [
        "namespaces", "persistentvolumes", "persistentvolumeclaims", "configmaps", "other resources", "pods",
        "deployments", "statefulsets",
    ]  # fmt: skip
    assert by_stage["other resources"] == ["w"]
    assert stage_of("apiextensions.k8s.io", "customresourcedefinitions") == 0
    assert stage_of("admissionregistration.k8s.io", "mutatingwebhookconfigurations") == len(STAGES) - 1
    assert stage_of("example.com", "widgets") == OTHER_INDEX
    assert stage_of("", "services") < OTHER_INDEX < stage_of("", "pods")
    assert stage_of("apps", "deployments") < stage_of("autoscaling", "horizontalpodautoscalers")


def test_namespace_filter_covers_namespace_objects_and_bound_volumes() -> None:
    plan = plan_of(namespaces=["oth*"])
    assert planned(plan) == {
        ("namespaces", None, "other"),
        ("persistentvolumes", None, "pv-o"),
        ("configmaps", "other", "settings"),
    }
    assert plan.skipped == []
    assert plan.filtered == len(backup()) - 3


def test_namespace_mapping_sets_targets() -> None:
    plan = plan_of(namespaces=["app"], namespace_mapping={"app": "app-copy"}, include_resources=["ns", "cm"])
    assert planned(plan) == {("namespaces", None, "app-copy"), ("configmaps", "app-copy", "settings")}
    cm = next(e for e in plan.entries if e.target.resource == "configmaps")
    assert cm.item.namespace == "app" and cm.target.namespace == "app-copy"
    assert plan.target_namespaces() == {"app-copy"}


def test_type_filters_accept_plural_kind_short_name_and_group() -> None:
    assert planned(plan_of(include_resources=["deploy"])) == {("deployments", "app", "web")}
    by_group = build_plan(
        with_owner_refs(backup()), RestoreOptions(include_resources=["Widget.example.com,statefulset"])
    )
    assert planned(by_group) == {("widgets", "app", "w"), ("statefulsets", "app", "db")}
    excluded = build_plan(
        with_owner_refs(backup()), RestoreOptions(exclude_resources=["pods", "configmaps.", "nosuch"])
    )
    # "configmaps." is the core group spelled out.
    assert not any(e.target.resource in ("pods", "configmaps") for e in excluded.entries)
    assert excluded.warnings == [
        "exclude resource 'nosuch' matches no resource type in the backup or the cluster"
    ]


def test_include_of_an_unknown_type_is_an_error() -> None:
    with pytest.raises(
        InvalidInput, match=r"--include-resources gadgets: no such resource type in the backup"
    ):
        plan_of(include_resources=["gadgets"])


def test_selector_and_persistent_volume_option() -> None:
    plan = plan_of(selector="app=web")
    assert planned(plan) == {("deployments", "app", "web"), ("configmaps", "app", "settings")}
    no_pvs = plan_of(restore_pvs=False, include_resources=["pv"])
    assert planned(no_pvs) == set()
    assert {r.reason for r in no_pvs.skipped} == {
        "persistent volumes are not restored (their data is restored into new volumes)"
    }


def test_namespaced_only_skips_cluster_scoped_objects_but_not_namespaces() -> None:
    items = [
        *with_owner_refs(backup()),
        (item("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", "reader", None, uid="cr-uid"),
         obj("ClusterRole", "reader", None)),
        (item("storage.k8s.io", "StorageClass", "storageclasses", "fast", None, uid="sc-uid"),
         obj("StorageClass", "fast", None)),
    ]  # fmt: skip
    plan = build_plan(items, RestoreOptions(cluster_resources=False, restore_pvs=False), known_types=KNOWN)
    skipped = {(r.item.resource, r.item.name): r.reason for r in plan.skipped}
    assert skipped[("clusterroles", "reader")] == CLUSTER_SCOPED_SKIP
    assert skipped[("storageclasses", "fast")] == CLUSTER_SCOPED_SKIP
    assert skipped[("persistentvolumes", "pv-a")].startswith("persistent volumes are not restored")
    assert {e.target.resource for e in plan.entries if not e.target.namespaced} == {"namespaces"}
    everything = build_plan(items, RestoreOptions(), known_types=KNOWN)
    assert {("clusterroles", None, "reader"), ("storageclasses", None, "fast")} <= planned(everything)


def test_a_storage_class_mapped_away_is_not_restored() -> None:
    # Into another cluster the claims go to its class; the backed-up one would be unused there,
    # and as the source's default class it would make the target have two defaults.
    items = [
        (item("storage.k8s.io", "StorageClass", "storageclasses", "fast", None, uid="sc-uid"),
         obj("StorageClass", "fast", None)),
        (item("storage.k8s.io", "StorageClass", "storageclasses", "slow", None, uid="sc2-uid"),
         obj("StorageClass", "slow", None)),
        (item("", "PersistentVolumeClaim", "persistentvolumeclaims", "data", uid="pvc-uid"),
         obj("PersistentVolumeClaim", "data", spec={"storageClassName": "fast"})),
    ]  # fmt: skip
    plan = build_plan(items, RestoreOptions(storage_class_mapping={"fast": "standard"}), known_types=KNOWN)
    skipped = {(r.item.resource, r.item.name): r.reason for r in plan.skipped}
    assert skipped == {
        ("storageclasses", "fast"): "mapped to standard by --storage-class-mapping: nothing restored uses it"
    }
    assert {("storageclasses", None, "slow"), ("persistentvolumeclaims", "app", "data")} <= planned(plan)
    assert ("storageclasses", None, "fast") in planned(build_plan(items, RestoreOptions(), known_types=KNOWN))


def test_volumes_whose_disk_is_gone_or_whose_data_a_mover_restores_are_not_restored() -> None:
    def pv(name: str, policy: str | None, claim: str) -> tuple[ResourceItem, dict[str, Any]]:
        spec: dict[str, Any] = {"claimRef": {"namespace": "app", "name": claim}}
        if policy:
            spec["persistentVolumeReclaimPolicy"] = policy
        return item("", "PersistentVolume", "persistentvolumes", name, None), obj(
            "PersistentVolume", name, None, spec=spec
        )

    items = [
        pv("dynamic", "Delete", "a"),
        pv("static", "Retain", "b"),
        pv("default", None, "c"),
        pv("moved", "Retain", "d"),
    ]
    plan = build_plan(items, RestoreOptions(), data_claims=frozenset({"app/d"}))
    # Only the static volumes whose data lives on their own disk are restored (and their claims bound to them).
    assert planned(plan) == {("persistentvolumes", None, "static"), ("persistentvolumes", None, "default")}
    assert {r.item.name: r.reason for r in plan.skipped} == {
        "dynamic": "reclaim policy Delete: its disk is deleted with its claim; the claim gets a new volume",
        "moved": "the data of its claim app/d is restored by a mover into a new volume",
    }


def test_two_namespaces_mapped_onto_one_do_not_both_restore_an_object() -> None:
    plan = plan_of(include_resources=["configmaps"], namespace_mapping={"other": "app"})
    assert planned(plan) == {("configmaps", "app", "settings")}
    assert plan.warnings == [
        "configmaps app/settings: more than one object restores to this name; the first wins"
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"namespace_mapping": {"app": "Bad_Name"}},
            "namespace mapping app=Bad_Name: 'Bad_Name' is not a valid namespace name",
        ),
        ({"selector": "app in (x"}, "label selector 'app in (x': unbalanced '('"),
    ],
)
def test_bad_options_are_invalid_input(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as e:
        RestoreOptions(**options)
    assert str(e.value) == message


def test_options_split_comma_lists() -> None:
    assert RestoreOptions(include_resources=["a,b", "c"]).include_resources == ["a", "b", "c"]


# --------------------------------------------------------------------------- diffs


def test_changes_compare_only_what_restore_sends() -> None:
    desired = {"kind": "Service", "metadata": {"name": "s", "labels": {"app": "web", "dr.dev/restore": "r2"}},
               "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}}  # fmt: skip
    existing = {"kind": "Service", "metadata": {"name": "s", "uid": "u", "resourceVersion": "9",
                                                "labels": {"app": "web", "dr.dev/restore": "r1", "extra": "x"}},
                "spec": {"ports": [{"port": 80, "nodePort": 30080}], "selector": {"app": "web"}, "clusterIP": "10.0.0.1"},
                "status": {"loadBalancer": {}}}  # fmt: skip
    assert changes(desired, existing) == []
    existing["spec"]["selector"] = {"app": "old"}
    existing["spec"]["ports"].append({"port": 443})
    assert changes(desired, existing) == [
        'spec.ports: [{"nodePort": 30080, "port": 80}, {"port": 443}] → [{"port": 80}]',
        'spec.selector.app: "old" → "web"',
    ]


def test_a_filled_claim_without_its_data_pending_mark_is_unchanged() -> None:
    desired = {"kind": "PersistentVolumeClaim",
               "metadata": {"name": "d", "annotations": {"dr.dev/data-pending": "snap-1", "a": "1"}}}  # fmt: skip
    existing = {"kind": "PersistentVolumeClaim", "metadata": {"name": "d", "annotations": {"a": "1"}}}
    assert changes(desired, existing) == []


def test_changes_never_show_secret_values() -> None:
    desired = {
        "kind": "Secret",
        "metadata": {"name": "s", "labels": {"a": "1"}},
        "data": {"pw": "c2VjcmV0", "new": "eA=="},
    }
    existing = {"kind": "Secret", "metadata": {"name": "s", "labels": {"a": "2"}}, "data": {"pw": "b2xk"}}
    assert changes(desired, existing) == [
        "data.new: added",
        "data.pw: changed",
        'metadata.labels.a: "2" → "1"',
    ]


def test_changes_of_a_secret_show_no_value_outside_type_name_and_labels() -> None:
    """kubectl's last-applied-configuration annotation holds the Secret's data: only "changed"."""
    last = '{"apiVersion":"v1","data":{"pw":"%s"},"kind":"Secret"}'
    key = "kubectl.kubernetes.io/last-applied-configuration"
    desired = {"kind": "Secret", "type": "Opaque",
               "metadata": {"name": "s", "annotations": {key: last % "c3VwZXJzZWNyZXQ=", "note": "pw=hunter2"}},
               "spec": {"token": "abc"}}  # fmt: skip
    existing = {"kind": "Secret", "type": "kubernetes.io/basic-auth",
                "metadata": {"name": "s", "annotations": {key: last % "bmV3cGFzc3dvcmQ="}}}  # fmt: skip
    lines = changes(desired, existing)
    assert lines == [
        f"metadata.annotations.{key}: changed",
        "metadata.annotations.note: added",
        "spec: added",
        'type: "kubernetes.io/basic-auth" → "Opaque"',
    ]
    # Not a Secret: values shown.
    assert changes({**desired, "kind": "ConfigMap"}, {**existing, "kind": "ConfigMap"})[1] == (
        'metadata.annotations.note: added "pw=hunter2"'
    )


def test_changes_are_short() -> None:
    desired = {
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {f"k{i:02d}": "v" * 100 for i in range(20)},
    }
    existing = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {f"k{i:02d}": "w" for i in range(20)}}
    lines = changes(desired, existing)
    assert len(lines) == 13 and lines[-1] == "… and 8 more"
    assert lines[0] == 'data.k00: "w" → "' + "v" * 58 + "…"


def test_objects_the_cluster_manages_are_never_restored() -> None:
    token = item("", "Secret", "secrets", "sa-token")
    token_obj = obj("Secret", "sa-token", type="kubernetes.io/service-account-token")
    plain = item("", "Secret", "secrets", "plain")
    plan = build_plan([(token, token_obj), (plain, obj("Secret", "plain", type="Opaque"))], RestoreOptions())
    assert [(r.item.name, r.reason) for r in plan.skipped] == [
        ("sa-token", "never restored: service-account token secrets")
    ]
    assert planned(plan) == {("secrets", "app", "plain")}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"namespace_mapping": {"app": "copy"}, "restore_pvs": False},
        {"namespaces": ["app"], "selector": "app=web"},
        {"include_resources": ["configmaps", "deploy", "pv"]},
        {"namespace_mapping": {"app": "one", "other": "one"}},
    ],
)
def test_deferred_plan_decides_exactly_like_the_materialised_one(options: dict[str, Any]) -> None:
    items = with_owner_refs(backup())
    reads = []

    def reread() -> list[tuple[ResourceItem, dict[str, Any]]]:
        reads.append(1)
        return [(i, dict(o)) for i, o in items]

    full = build_plan(items, RestoreOptions(**options), known_types=KNOWN)
    deferred = build_plan(items, RestoreOptions(**options), known_types=KNOWN, reread=reread)
    assert deferred.stages == [[] for _ in STAGES], "a deferred plan keeps no objects"
    for index in range(len(STAGES)):
        a = [(e.item, e.target, e.stage, e.obj) for e in full.stage_entries(index)]
        b = [(e.item, e.target, e.stage, e.obj) for e in deferred.stage_entries(index)]
        assert a == b
        assert full.stage_size(index) == deferred.stage_size(index)
    assert [(r.item, r.reason) for r in full.skipped] == [(r.item, r.reason) for r in deferred.skipped]
    assert (full.filtered, full.warnings, full.backup_uids) == (
        deferred.filtered,
        deferred.warnings,
        deferred.backup_uids,
    )
    assert full.target_namespaces() == deferred.target_namespaces()
    assert full.entry_count == deferred.entry_count


@given(st.sets(st.text(max_size=20), max_size=30), st.text(max_size=20))
def test_digest_set_is_a_set_of_strings(members: set[str], other: str) -> None:
    kept = DigestSet(members)
    assert all(m in kept for m in members) and len(kept) == len(members)
    assert (other in kept) == (other in members)
    assert None not in kept and 3 not in kept  # e.g. an ownerReference without a uid
    assert kept == DigestSet(sorted(members)) and (kept == DigestSet({*members, "x" * 21})) is False
