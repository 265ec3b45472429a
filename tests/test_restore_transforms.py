"""Restore transforms: one test (or a few) per transform, their order, and that none mutates its input."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dr.restore import transforms as t
from dr.restore.transforms import TransformContext, apply_transforms

CTX = TransformContext(backup_id="bk-1", restore_id="rs-1")


def ctx(**kw: Any) -> TransformContext:
    return TransformContext(**{"backup_id": "bk-1", "restore_id": "rs-1", **kw})


def svc(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "a"},
        "spec": spec,
    }


def test_transforms_run_in_the_documented_order() -> None:
    assert [f.__name__ for f in t.TRANSFORMS] == [
        "strip_server_metadata",
        "drop_status",
        "drop_backed_up_owner_references",
        "service_drop_allocated",
        "pvc_drop_binding",
        "pvc_mark_data_pending",
        "pv_reset_claim_ref",
        "pod_drop_node_name",
        "pod_drop_token_volumes",
        "job_drop_generated_selector",
        "map_namespaces",
        "map_storage_classes",
        "add_restore_labels",
    ]


def test_strip_server_metadata() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "c", "namespace": "a", "uid": "u", "resourceVersion": "5", "generation": 2,
            "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{}], "selfLink": "/x",
            "deletionTimestamp": "2026-01-02T00:00:00Z", "deletionGracePeriodSeconds": 30,
            "labels": {"a": "b"}, "annotations": {"n": "m"}, "finalizers": ["f"],
        },
        "data": {"k": "v"},
    }  # fmt: skip
    assert t.strip_server_metadata(obj, CTX) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "c",
            "namespace": "a",
            "labels": {"a": "b"},
            "annotations": {"n": "m"},
            "finalizers": ["f"],
        },
        "data": {"k": "v"},
    }
    clean = {"kind": "ConfigMap", "metadata": {"name": "c"}}
    assert t.strip_server_metadata(clean, CTX) is clean


def test_drop_status() -> None:
    assert t.drop_status({"kind": "Pod", "spec": {}, "status": {"phase": "Running"}}, CTX) == {
        "kind": "Pod",
        "spec": {},
    }


def test_owner_references_to_backed_up_owners_are_dropped() -> None:
    refs = [
        {"kind": "Deployment", "name": "web", "uid": "in-backup"},
        {"kind": "Thing", "name": "x", "uid": "elsewhere"},
    ]
    obj = {"kind": "ConfigMap", "metadata": {"name": "c", "ownerReferences": refs}}
    out = t.drop_backed_up_owner_references(obj, ctx(backup_uids=frozenset({"in-backup"})))
    assert out == {"kind": "ConfigMap", "metadata": {"name": "c", "ownerReferences": [refs[1]]}}
    only = {"kind": "ConfigMap", "metadata": {"name": "c", "ownerReferences": refs[:1]}}
    assert t.drop_backed_up_owner_references(only, ctx(backup_uids=frozenset({"in-backup"}))) == {
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
    }
    assert t.drop_backed_up_owner_references(obj, CTX) is obj


def test_service_drops_cluster_ips_and_node_ports() -> None:
    spec = {
        "type": "NodePort", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "healthCheckNodePort": 31000,
        "ports": [{"port": 80, "nodePort": 30080}, {"port": 443, "nodePort": 30443}], "selector": {"a": "b"},
    }  # fmt: skip
    assert t.service_drop_allocated(svc(spec), CTX) == svc(
        {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}], "selector": {"a": "b"}}
    )


def test_service_keeps_node_ports_when_asked_and_headless_cluster_ip() -> None:
    spec = {"type": "NodePort", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "healthCheckNodePort": 31000,
            "ports": [{"port": 80, "nodePort": 30080}]}  # fmt: skip
    assert t.service_drop_allocated(svc(spec), ctx(preserve_nodeports=True)) == svc(
        {"type": "NodePort", "healthCheckNodePort": 31000, "ports": [{"port": 80, "nodePort": 30080}]}
    )
    headless = svc({"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}]})
    assert t.service_drop_allocated(headless, CTX) == headless


def test_service_transform_ignores_other_kinds() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Service", "spec": {"clusterIP": "x"}}
    assert t.service_drop_allocated(obj, CTX) is obj


def pvc(annotations: dict[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "annotations": annotations},
            "spec": spec}  # fmt: skip


def test_a_claim_whose_data_comes_through_a_mover_forgets_the_snapshot_it_was_made_from() -> None:
    # A claim made from a VolumeSnapshot or a clone (dataSource) came back naming it; in another
    # cluster it does not exist, the provisioner refuses the claim and it stayed Pending for
    # ever, its mover with it. Its data comes through the mover: nothing to make it from.
    source = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "nightly-1"}
    spec = {"accessModes": ["ReadWriteOnce"], "dataSource": source, "dataSourceRef": source}
    obj = {**pvc({}, spec), "metadata": {"name": "data", "namespace": "a", "annotations": {}}}
    out = t.pvc_mark_data_pending(obj, ctx(data_volumes={"a/data": "snap-1"}))
    assert out is not None and out["spec"] == {"accessModes": ["ReadWriteOnce"]}
    # Restored without its data (--no-data, no volume snapshot): the claim is as it was.
    assert t.pvc_mark_data_pending(obj, CTX) is obj


def test_pvc_drops_binding_and_volume_name_unless_its_pv_is_restored() -> None:
    binding = {
        "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
        "volume.beta.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
        "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
        "volume.kubernetes.io/selected-node": "node-1", "keep": "me",
    }  # fmt: skip
    obj = pvc(binding, {"volumeName": "pv-1", "storageClassName": "gp3"})
    assert t.pvc_drop_binding(obj, CTX) == pvc({"keep": "me"}, {"storageClassName": "gp3"})
    assert t.pvc_drop_binding(obj, ctx(restored_pvs=frozenset({"pv-1"}))) == pvc(
        {"keep": "me"}, {"volumeName": "pv-1", "storageClassName": "gp3"}
    )


def test_pvc_whose_data_comes_through_a_mover_is_marked_pending() -> None:
    def claim(annotations: dict[str, str]) -> dict[str, Any]:
        obj = pvc(annotations, {})
        return {**obj, "metadata": {**obj["metadata"], "namespace": "a"}}

    data = ctx(data_volumes={"a/data": "snap-1"})
    obj = claim({"keep": "me"})
    assert t.pvc_mark_data_pending(obj, data) == claim({"keep": "me", "dr.dev/data-pending": "snap-1"})
    # No data this time (--no-data, no volume snapshot): no mark; one copied from the backup goes.
    assert t.pvc_mark_data_pending(obj, CTX) is obj
    carried = claim({"keep": "me", "dr.dev/data-pending": "old"})
    assert t.pvc_mark_data_pending(carried, CTX) == claim({"keep": "me"})
    # A data-restored mark copied from the backup (a claim an earlier restore filled) names
    # another restore's snapshot: it goes too, with data or without.
    restored = claim({"keep": "me", "dr.dev/data-restored": "older"})
    assert t.pvc_mark_data_pending(restored, CTX) == claim({"keep": "me"})
    assert t.pvc_mark_data_pending(restored, data) == claim({"keep": "me", "dr.dev/data-pending": "snap-1"})
    # Keyed by the namespace in the backup: the transform runs before map_namespaces.
    out, _ = apply_transforms(obj, ctx(data_volumes={"a/data": "snap-1"}, namespace_mapping={"a": "b"}))
    assert out is not None and out["metadata"]["namespace"] == "b"
    assert out["metadata"]["annotations"]["dr.dev/data-pending"] == "snap-1"


def test_pv_claim_ref_loses_uid_and_resource_version() -> None:
    ref = {
        "kind": "PersistentVolumeClaim",
        "namespace": "a",
        "name": "data",
        "uid": "u",
        "resourceVersion": "7",
    }
    obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv"},
        "spec": {"claimRef": ref},
    }
    out = t.pv_reset_claim_ref(obj, CTX)
    assert out is not None
    assert out["spec"]["claimRef"] == {"kind": "PersistentVolumeClaim", "namespace": "a", "name": "data"}
    unbound = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"}, "spec": {}}
    assert t.pv_reset_claim_ref(unbound, CTX) is unbound


def test_pod_node_name_and_injected_token_volume_are_dropped() -> None:
    token = {
        "name": "kube-api-access-x1",
        "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
    }
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {
            "nodeName": "node-1",
            "volumes": [{"name": "data", "emptyDir": {}}, token],
            "containers": [{"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/d"},
                                                          {"name": "kube-api-access-x1", "mountPath": "/var/run"}]}],
            "initContainers": [{"name": "i"}],
        },
    }  # fmt: skip
    no_node = t.pod_drop_node_name(pod, CTX)
    assert no_node is not None and "nodeName" not in no_node["spec"]
    out = t.pod_drop_token_volumes(no_node, CTX)
    assert out is not None
    assert out["spec"] == {
        "volumes": [{"name": "data", "emptyDir": {}}],
        "containers": [{"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
        "initContainers": [{"name": "i"}],
    }


def job(manual: bool = False) -> dict[str, Any]:
    labels = {"controller-uid": "u1", "batch.kubernetes.io/controller-uid": "u1", "job-name": "j", "app": "x"}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
        "template": {"metadata": {"labels": dict(labels)}, "spec": {"restartPolicy": "Never"}},
    }
    if manual:
        spec["manualSelector"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "labels": dict(labels)},
        "spec": spec,
    }


def test_job_generated_selector_and_labels_are_dropped() -> None:
    out = t.job_drop_generated_selector(job(), CTX)
    assert out == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "labels": {"job-name": "j", "app": "x"}},
        "spec": {
            "template": {
                "metadata": {"labels": {"job-name": "j", "app": "x"}},
                "spec": {"restartPolicy": "Never"},
            }
        },
    }


def test_job_with_manual_selector_is_kept() -> None:
    manual = job(manual=True)
    assert t.job_drop_generated_selector(manual, CTX) is manual


def test_namespace_mapping_rewrites_every_namespace_reference() -> None:
    c = ctx(namespace_mapping={"a": "b"})
    assert t.map_namespaces(
        {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x", "namespace": "a"}}, c
    ) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "x", "namespace": "b"},
    }
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "a", "labels": {"kubernetes.io/metadata.name": "a", "t": "1"}},
    }
    assert t.map_namespaces(ns, c) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "b", "labels": {"kubernetes.io/metadata.name": "b", "t": "1"}},
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "crb"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "a"},
                     {"kind": "ServiceAccount", "name": "sa", "namespace": "other"},
                     {"kind": "User", "name": "alice"}],
    }  # fmt: skip
    out = t.map_namespaces(binding, c)
    assert out is not None
    assert [s.get("namespace") for s in out["subjects"]] == ["b", "other", None]
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"},
          "spec": {"claimRef": {"namespace": "a", "name": "data"}}}  # fmt: skip
    out = t.map_namespaces(pv, c)
    assert out is not None and out["spec"]["claimRef"] == {"namespace": "b", "name": "data"}
    unmapped = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x", "namespace": "z"}}
    assert t.map_namespaces(unmapped, c) is unmapped


def test_storage_class_mapping() -> None:
    c = ctx(storage_class_mapping={"old": "new"})
    claim = pvc({"volume.beta.kubernetes.io/storage-class": "old"}, {"storageClassName": "old"})
    assert t.map_storage_classes(claim, c) == pvc(
        {"volume.beta.kubernetes.io/storage-class": "new"}, {"storageClassName": "new"}
    )
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv"},
        "spec": {"storageClassName": "old"},
    }
    out = t.map_storage_classes(pv, c)
    assert out is not None and out["spec"]["storageClassName"] == "new"
    sts = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {"storageClassName": "old"}},
                                          {"metadata": {"name": "e"}, "spec": {"storageClassName": "keep"}}]},
    }  # fmt: skip
    out = t.map_storage_classes(sts, c)
    assert out is not None
    assert [v["spec"]["storageClassName"] for v in out["spec"]["volumeClaimTemplates"]] == ["new", "keep"]
    assert t.map_storage_classes(sts, CTX) is sts
    # What a mapping could apply to (a key no restored object uses is refused by the plan).
    assert t.storage_classes(claim) == {"old"}
    assert t.storage_classes(pvc({"volume.beta.kubernetes.io/storage-class": "beta"}, {})) == {"beta"}
    assert t.storage_classes(pv) == {"old"} and t.storage_classes(sts) == {"old", "keep"}
    assert t.storage_classes({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}) == set()


def test_restore_labels_are_valid_label_values() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "c", "labels": {"app": "web"}}}
    long_id = "snap:" + "ab" * 40
    out = t.add_restore_labels(obj, ctx(backup_id=long_id, restore_id="2026-11-27T03:00:00Z"))
    assert out is not None
    labels = out["metadata"]["labels"]
    assert labels["app"] == "web"
    assert labels["dr.dev/restore"] == "2026-11-27T03-00-00Z"
    assert labels["dr.dev/backup"] == ("snap-" + "ab" * 40)[:63]
    assert len(labels["dr.dev/backup"]) == 63


def test_apply_transforms_reports_the_transform_that_dropped_an_object() -> None:
    def drop_configmaps(obj: dict[str, Any], c: TransformContext) -> dict[str, Any] | None:
        return None if obj.get("kind") == "ConfigMap" else obj

    assert apply_transforms({"kind": "ConfigMap", "metadata": {}}, CTX, (t.drop_status, drop_configmaps)) == (
        None,
        "drop_configmaps",
    )
    out, dropped = apply_transforms({"kind": "Secret", "metadata": {"name": "s"}, "status": {}}, CTX)
    assert dropped is None and out == {
        "kind": "Secret",
        "metadata": {"name": "s", "labels": {"dr.dev/backup": "bk-1", "dr.dev/restore": "rs-1"}},
    }


# --------------------------------------------------------------------------- purity

_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
_kinds = st.sampled_from(
    [("v1", "Service"), ("v1", "PersistentVolumeClaim"), ("v1", "PersistentVolume"), ("v1", "Pod"), ("batch/v1", "Job"),
     ("v1", "Namespace"), ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("apps/v1", "StatefulSet"), ("v1", "ConfigMap")]
)  # fmt: skip


@st.composite
def k8s_objects(draw: st.DrawFn) -> dict[str, Any]:
    api_version, kind = draw(_kinds)
    meta = {
        "name": "a",
        "namespace": "a",
        "uid": "u",
        "labels": draw(
            st.dictionaries(
                st.sampled_from(["controller-uid", "app", "kubernetes.io/metadata.name"]), st.text(max_size=3)
            )
        ),
        "annotations": draw(
            st.dictionaries(st.sampled_from([*t.PVC_BINDING_ANNOTATIONS, "x"]), st.text(max_size=3))
        ),
        "ownerReferences": [{"uid": "owner", "controller": True}],
    }
    spec = {
        "clusterIP": draw(st.sampled_from(["None", "10.0.0.1"])),
        "ports": [{"port": 1, "nodePort": 2}],
        "volumeName": "pv",
        "storageClassName": "old",
        "claimRef": {"namespace": "a", "uid": "u", "resourceVersion": "1"},
        "nodeName": "n",
        "volumes": [{"name": "kube-api-access-1", "projected": {}}],
        "containers": [{"name": "c", "volumeMounts": [{"name": "kube-api-access-1"}]}],
        "selector": {"x": "y"},
        "template": {"metadata": {"labels": {"controller-uid": "u"}}},
        "volumeClaimTemplates": [{"spec": {"storageClassName": "old"}}],
        "extra": draw(_json),
    }
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": meta,
        "spec": spec,
        "subjects": [{"kind": "ServiceAccount", "namespace": "a"}],
        "status": draw(_json),
    }


FULL_CTX = ctx(
    namespace_mapping={"a": "b"},
    storage_class_mapping={"old": "new"},
    backup_uids=frozenset({"owner", "u"}),
    restored_pvs=frozenset({"pv"}),
    data_volumes={"a/n": "snap"},
)


@settings(max_examples=150, deadline=None)
@given(k8s_objects())
def test_no_transform_mutates_its_input(obj: dict[str, Any]) -> None:
    for transform in t.TRANSFORMS:
        before = copy.deepcopy(obj)
        transform(obj, FULL_CTX)
        assert obj == before, transform.__name__
    before = copy.deepcopy(obj)
    out, _ = apply_transforms(obj, FULL_CTX)
    assert obj == before
    assert out is not None and out["metadata"]["labels"]["dr.dev/restore"] == "rs-1"
    assert "status" not in out and "uid" not in out["metadata"]
