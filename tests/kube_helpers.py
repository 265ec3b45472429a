"""Helpers for the Kubernetes backup/restore tests: an in-memory sink, object builders, normalisation.

``build_app`` creates a realistic application namespace in the test cluster
(every common workload and networking type, RBAC, storage, a CRD with two
custom objects, plus controller-owned objects) and returns what it created.
The test cluster does no defaulting and allocates nothing, so Services get
their clusterIP / nodePort set explicitly, as a real cluster would have done.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dr.kube.client import KubeClient
from dr.kube.discovery import ApiResource, discover_group_version
from dr.kube.objects import ResourceItem
from dr.kube.wait import wait_for_crd_established, wait_for_deletion, wait_for_served

CRD_RES = ApiResource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")


class ListSink:
    """The sink of the tests: keeps every (item, object) in memory."""

    def __init__(self) -> None:
        self.items: list[tuple[ResourceItem, dict[str, Any]]] = []

    def add(self, item: ResourceItem, obj: dict[str, Any]) -> None:
        self.items.append((item, copy.deepcopy(obj)))

    def find(
        self, resource: str, name: str, namespace: str | None = None
    ) -> tuple[ResourceItem, dict[str, Any]]:
        for item, obj in self.items:
            if (
                item.resource == resource
                and item.name == name
                and (namespace is None or item.namespace == namespace)
            ):
                return item, obj
        raise KeyError(f"{resource} {namespace}/{name} not in the backup")

    def names(self, resource: str) -> set[str]:
        return {i.name for i, _ in self.items if i.resource == resource}


def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without server-populated fields and status: what a user wrote."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata", {})
    for key in SERVER_FIELDS:
        meta.pop(key, None)
    return out


def collection(api_version: str, plural: str, namespace: str | None) -> str:
    base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def create(kc: KubeClient, plural: str, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    return kc.call("POST", collection(obj["apiVersion"], plural, namespace), body=obj)


def get(
    kc: KubeClient, api_version: str, plural: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    status, data = kc.request("GET", f"{collection(api_version, plural, namespace)}/{name}")
    if status == 404:
        return None
    assert status == 200, data
    doc: dict[str, Any] = json.loads(data)
    return doc


def delete(kc: KubeClient, api_version: str, plural: str, name: str, namespace: str | None = None) -> None:
    kc.request("DELETE", f"{collection(api_version, plural, namespace)}/{name}")


def make_namespace(kc: KubeClient, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return create(kc, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": meta})


def delete_namespace(kc: KubeClient, name: str) -> None:
    ns_res = ApiResource("", "v1", "namespaces", "Namespace", False)
    kc.request("DELETE", f"/api/v1/namespaces/{name}")
    wait_for_deletion(kc, ns_res, None, name, timeout=30)


@contextmanager
def app_drill_and_own_namespaces(kc: KubeClient, prefix: str) -> Iterator[tuple[str, str, str]]:
    """``prefix-app``, a drill's scratch namespace ``prefix-drill`` and ``prefix-dr`` for dr's own
    namespace (mover.namespace); deleted afterwards."""
    app, drill, own = f"{prefix}-app", f"{prefix}-drill", f"{prefix}-dr"
    make_namespace(kc, app)
    make_namespace(kc, drill, {"dr.dev/drill": "true", "dr.dev/expires": "1"})
    make_namespace(kc, own)
    try:
        yield app, drill, own
    finally:
        for ns in (app, drill, own):
            kc.request("DELETE", f"/api/v1/namespaces/{ns}")


def configmap(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def owner_ref(obj: dict[str, Any], controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def pod_template(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "main", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]},
    }


@dataclass
class App:
    """What ``build_app`` created: names of its cluster-scoped parts and the CRD's coordinates."""

    namespace: str
    suffix: str
    crd_group: str
    crd_name: str
    storage_class: str
    pv: str
    cluster_role: str
    owns_crd: bool = True
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # "plural/name" -> created object

    def widgets_path(self, namespace: str) -> str:
        return f"/apis/{self.crd_group}/v1/namespaces/{namespace}/widgets"


def create_crd(kc: KubeClient, group: str) -> dict[str, Any]:
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}, "color": {"type": "string"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    created = create(kc, "customresourcedefinitions", crd)
    wait_for_crd_established(kc, CRD_RES, crd["metadata"]["name"], timeout=30)
    wait_for_served(kc, group, "v1", "widgets", timeout=30)
    return created


def delete_crd(kc: KubeClient, name: str) -> None:
    kc.request("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    wait_for_deletion(kc, CRD_RES, None, name, timeout=60)


def widget_served(kc: KubeClient, group: str) -> bool:
    try:
        return any(r.plural == "widgets" for r in discover_group_version(kc, group, "v1"))
    except Exception:
        return False


def build_app(kc: KubeClient, ns: str, suffix: str, crd_group: str | None = None) -> App:
    """A realistic application namespace ``ns`` (created here) and its cluster-scoped dependencies.

    With ``crd_group`` the Widget CRD of that group (made by ``create_crd``) is used
    instead of a new one: a new CRD's first custom object takes the test cluster ~2 s.
    """
    group = crd_group or f"t{suffix}.example.com"
    app = App(
        namespace=ns,
        suffix=suffix,
        crd_group=group,
        crd_name=f"widgets.{group}",
        owns_crd=crd_group is None,
        storage_class=f"fast-{suffix}",
        pv=f"pv-{suffix}",
        cluster_role=f"pod-reader-{suffix}",
    )
    o = app.objects

    def add(plural: str, obj: dict[str, Any], namespaced: bool = True) -> dict[str, Any]:
        created = create(kc, plural, obj, ns if namespaced else None)
        o[f"{plural}/{obj['metadata']['name']}"] = created
        return created

    make_namespace(kc, ns, {"team": "web", "kubernetes.io/metadata.name": ns})
    if app.owns_crd:
        create_crd(kc, app.crd_group)
    add("storageclasses", {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": app.storage_class},
        "provisioner": "example.com/fake", "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate",
    }, namespaced=False)  # fmt: skip
    add("persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": app.pv},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": app.storage_class,
            "hostPath": {"path": f"/srv/{suffix}"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": "data",
                         "uid": "0b5d1f57-7a43-4a36-8c1c-3f0f2f7c1e11", "resourceVersion": "12345"},
        },
    }, namespaced=False)  # fmt: skip
    add("persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "labels": {"app": "web"}, "annotations": {
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.kubernetes.io/selected-node": "node-1", "backup.example.com/keep": "true"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "storageClassName": app.storage_class, "volumeName": app.pv},
    })  # fmt: skip
    add("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}})
    add("clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": app.cluster_role},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
    }, namespaced=False)  # fmt: skip
    add("roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "config-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    })  # fmt: skip
    add("rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "config-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "config-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": ns}],
    })  # fmt: skip
    add("rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": app.cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": ns},
                     {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
    })  # fmt: skip
    add("configmaps", configmap("settings", {"mode": "production", "workers": "4"}, {"app": "web"}))
    add("configmaps", configmap("other", {"x": "1"}, {"app": "batch"}))
    add("secrets", {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "creds", "labels": {"app": "web"}},
        "data": {"password": "aHVudGVyMg=="},
    })  # fmt: skip
    add("secrets", {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "web-token", "annotations": {"kubernetes.io/service-account.name": "web"}},
        "data": {"token": "c2VjcmV0"},
    })  # fmt: skip
    add("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    })  # fmt: skip
    add("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"},
                 "ports": [{"name": "pg", "port": 5432, "targetPort": 5432, "protocol": "TCP"}]},
    })  # fmt: skip
    add("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-public"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"],
                 "externalTrafficPolicy": "Local", "healthCheckNodePort": 31999, "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]},
    })  # fmt: skip
    # Maintained by the endpoint controller for the Service "web": never backed up.
    add("endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"name": "http", "port": 8080}]}],
    })  # fmt: skip
    deploy = add("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {**pod_template({"app": "web"}), "spec": {
                     "serviceAccountName": "web",
                     "containers": [{"name": "main", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]}}},
    })  # fmt: skip
    rs = add("replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d4b9c", "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
                     "ownerReferences": [owner_ref(deploy)]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}},
                 "template": pod_template({"app": "web", "pod-template-hash": "7d4b9c"})},
    })  # fmt: skip
    add("pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7d4b9c-x2k9p", "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
                     "ownerReferences": [owner_ref(rs)]},
        "spec": {"nodeName": "node-1", **pod_template({})["spec"]},
    })  # fmt: skip
    add("statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                 "template": pod_template({"app": "db"}),
                 "volumeClaimTemplates": [{"metadata": {"name": "pgdata"}, "spec": {
                     "accessModes": ["ReadWriteOnce"], "storageClassName": app.storage_class,
                     "resources": {"requests": {"storage": "5Gi"}}}}]},
    })  # fmt: skip
    add("daemonsets", {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": pod_template({"app": "agent"})},
    })  # fmt: skip
    cron = add("cronjobs", {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "job", "image": "busybox:1.36"}]}}}}},
    })  # fmt: skip
    add("jobs", {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nightly-29000000", "ownerReferences": [owner_ref(cron)]},
        "spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                       "containers": [{"name": "job", "image": "busybox:1.36"}]}}},
    })  # fmt: skip
    uid = "5f1c6a4e-2d7b-4c3a-9e8f-0a1b2c3d4e5f"
    generated = {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                 "batch.kubernetes.io/job-name": "migrate", "job-name": "migrate"}  # fmt: skip
    add("jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "labels": dict(generated)},
        "spec": {"backoffLimit": 2, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
                 "template": {"metadata": {"labels": dict(generated)}, "spec": {
                     "restartPolicy": "Never", "containers": [{"name": "migrate", "image": "busybox:1.36"}]}}},
    })  # fmt: skip
    add("ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"rules": [{"host": f"web-{suffix}.example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    })  # fmt: skip
    add("networkpolicies", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    })  # fmt: skip
    add("horizontalpodautoscalers", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 2, "maxReplicas": 5},
    })  # fmt: skip
    add("poddisruptionbudgets", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
    })  # fmt: skip
    for name, size in (("small", 1), ("large", 9)):
        widget = {"apiVersion": f"{app.crd_group}/v1", "kind": "Widget", "metadata": {"name": name},
                  "spec": {"size": size, "color": "blue"}}  # fmt: skip
        o[f"widgets/{name}"] = kc.call("POST", app.widgets_path(ns), body=widget)
    return app


def cleanup_app(kc: KubeClient, app: App, *namespaces: str) -> None:
    """Delete what ``build_app`` made outside its namespace, and the given namespaces."""
    for ns in namespaces:
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")
    if app.owns_crd:
        kc.request("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{app.crd_name}")
    kc.request("DELETE", f"/api/v1/persistentvolumes/{app.pv}")
    kc.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{app.storage_class}")
    kc.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{app.cluster_role}")
