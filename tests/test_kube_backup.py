"""Resource backup against the test cluster: scope, cluster-scoped dependencies, skip rules, RBAC failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dr.backup.resources import backup_resources
from dr.backup.scope import BackupScope, match_namespaces
from dr.errors import InvalidInput
from dr.kube.client import KubeClient, RetryPolicy, connect
from dr.kube.objects import ResourceItem
from tests import servers
from tests.kube_helpers import (
    ListSink,
    app_drill_and_own_namespaces,
    configmap,
    create,
    make_namespace,
    owner_ref,
)
from tests.kube_stub_server import stub_api

RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture
def namespaces(kube_client: KubeClient, unique: str) -> Iterator[list[str]]:
    """Three namespaces: g<u>-a, g<u>-b and h<u>."""
    names = [f"g{unique}-a", f"g{unique}-b", f"h{unique}"]
    for name in names:
        make_namespace(kube_client, name, {"team": unique})
    try:
        yield names
    finally:
        for name in names:
            kube_client.request("DELETE", f"/api/v1/namespaces/{name}")


def keys(sink: ListSink) -> set[tuple[str, str | None, str]]:
    return {(i.resource, i.namespace, i.name) for i, _ in sink.items}


def test_namespace_names_and_globs() -> None:
    existing = ["app-a", "app-b", "db", "kube-system"]
    assert match_namespaces([], existing) == (sorted(existing), [])
    assert match_namespaces(["app-*", "db", "gone"], existing) == (["app-a", "app-b", "db"], ["gone"])
    assert match_namespaces(["app-?", "[dk]*"], existing) == (["app-a", "app-b", "db", "kube-system"], [])


def test_scope_by_namespace_glob(kube_client: KubeClient, namespaces: list[str], unique: str) -> None:
    a, b, _ = namespaces
    for ns in namespaces:
        create(kube_client, "configmaps", configmap("cfg", {"ns": ns}), ns)
    sink = ListSink()
    result = backup_resources(kube_client, BackupScope(namespaces=[f"g{unique}-*", f"gone-{unique}"]), sink)
    assert result.phase == "Completed"
    assert result.namespaces == [a, b]
    assert result.warnings == [f"namespace 'gone-{unique}' does not exist"]
    assert keys(sink) == {
        ("configmaps", a, "cfg"),
        ("configmaps", b, "cfg"),
        ("namespaces", None, a),
        ("namespaces", None, b),
    }
    assert result.counts == {"configmaps": 2, "namespaces": 2}
    assert result.timings.total_seconds >= result.timings.listing_seconds >= 0


def test_drs_own_namespaces_are_left_out_of_globs_and_all_unless_named(
    kube_client: KubeClient, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A "*" policy (or app-*, or a label selector over all namespaces) also matched drill scratch
    # namespaces, which hold restored copies of apps (a drill copy became the `latest` a restore
    # picks, and its PVCs were snapshotted), and dr's own namespace (CronJobs, Secrets, snapshots).
    with app_drill_and_own_namespaces(kube_client, f"o{unique}") as (app, drill, own):
        for ns in (app, drill, own):
            create(kube_client, "configmaps", configmap("cfg", {}, {"bk": unique}), ns)
        sink = ListSink()
        with caplog.at_level("INFO", logger="dr.backup.resources"):
            result = backup_resources(
                kube_client, BackupScope(namespaces=[f"o{unique}-*"]), sink, dr_namespace=own
            )
        assert result.namespaces == [app]
        assert result.excluded_namespaces == [own, drill]
        assert keys(sink) == {("configmaps", app, "cfg"), ("namespaces", None, app)}
        assert (
            f"left out dr's namespace {own} and drill scratch namespace {drill} (name them to back up)"
            in (caplog.messages)
        )
        assert result.warnings == []

        # All namespaces with a label selector: one list across namespaces, dr's own filtered out.
        sink = ListSink()
        result = backup_resources(kube_client, BackupScope(selector=f"bk={unique}"), sink, dr_namespace=own)
        assert {(r, ns) for r, ns, _ in keys(sink) if r == "configmaps"} == {("configmaps", app)}
        assert own not in result.namespaces and drill not in result.namespaces and app in result.namespaces
        assert set(result.excluded_namespaces) >= {own, drill}

        # Named exactly, beside a glob or alone: backed up.
        sink = ListSink()
        scope = BackupScope(namespaces=[f"o{unique}-*", drill])
        result = backup_resources(kube_client, scope, sink, dr_namespace=own)
        assert result.namespaces == [app, drill] and result.excluded_namespaces == [own]
        sink = ListSink()
        result = backup_resources(kube_client, BackupScope(namespaces=[own]), sink, dr_namespace=own)
        assert result.namespaces == [own] and result.excluded_namespaces == []

        # A glob that matches only dr's own namespaces backs up nothing: invalid input saying why.
        with pytest.raises(InvalidInput) as e:
            backup_resources(
                kube_client, BackupScope(namespaces=[f"o{unique}-d*"]), ListSink(), dr_namespace=own
            )
        assert e.value.message == (
            f"no namespace matches o{unique}-d*: nothing to back up (left out dr's namespace {own} and "
            f"drill scratch namespace {drill} (name them to back up))"
        )


def test_selector_and_type_filters(kube_client: KubeClient, namespaces: list[str]) -> None:
    ns = namespaces[0]
    create(kube_client, "configmaps", configmap("web", {}, {"app": "web"}), ns)
    create(kube_client, "configmaps", configmap("db", {}, {"app": "db"}), ns)
    create(
        kube_client,
        "secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web", "labels": {"app": "web"}}},
        ns,
    )
    create(kube_client, "serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "labels": {"app": "web"}}}, ns)  # fmt: skip

    sink = ListSink()
    backup_resources(kube_client, BackupScope(namespaces=[ns], selector="app=web"), sink)
    assert keys(sink) == {
        ("configmaps", ns, "web"),
        ("secrets", ns, "web"),
        ("serviceaccounts", ns, "web"),
        ("namespaces", None, ns),
    }

    sink = ListSink()
    scope = BackupScope(
        namespaces=[ns], include_resources=["cm,sa"], exclude_resources=["ServiceAccount", "bogus"]
    )
    result = backup_resources(kube_client, scope, sink)
    assert keys(sink) == {("configmaps", ns, "web"), ("configmaps", ns, "db"), ("namespaces", None, ns)}
    assert result.warnings == ["exclude resource 'bogus' matches no resource type the cluster serves"]

    # Namespace objects come along unless explicitly excluded.
    sink = ListSink()
    backup_resources(
        kube_client,
        BackupScope(namespaces=[ns], include_resources=["configmaps"], exclude_resources=["ns"]),
        sink,
    )
    assert {k[0] for k in keys(sink)} == {"configmaps"}


def test_a_selector_that_matches_no_object_is_a_warning(
    kube_client: KubeClient, namespaces: list[str], unique: str
) -> None:
    # Only the Namespace objects came along, said nothing (tests/test_cli_backup_restore.py
    # has the CLI's side: the summary and `dr backups describe`).
    sel = f"app=none-{unique}"
    cases = [
        (BackupScope(namespaces=namespaces, selector=sel),
         f"in namespaces {', '.join(sorted(namespaces))}: nothing of the application was backed up, "
         "only the Namespace objects"),
        (BackupScope(namespaces=namespaces[:1], selector=sel, include_cluster_resources="true"),
         f"in namespace {namespaces[0]} nor among cluster-scoped objects: nothing of the application "
         "was backed up, only the Namespace object"),
        (BackupScope(namespaces=namespaces[:1], selector=sel, exclude_resources=["namespaces"]),
         f"in namespace {namespaces[0]}: nothing was backed up"),
        (BackupScope(selector=sel), "in any namespace: nothing of the application was backed up, "
         "only the Namespace objects"),
    ]  # fmt: skip
    for scope, where in cases:
        result = backup_resources(kube_client, scope, ListSink())
        assert result.warnings == [f"label selector {sel!r} matched no object {where}"], scope
    create(kube_client, "configmaps", configmap("web", {}, {"app": f"none-{unique}"}), namespaces[0])
    for scope, _ in cases:
        assert backup_resources(kube_client, scope, ListSink()).warnings == [], scope


def test_bad_scope_is_invalid_input(kube_client: KubeClient, namespaces: list[str]) -> None:
    with pytest.raises(
        InvalidInput, match=r"^--include-resources gizmos,gadgets: no such resource type in this cluster$"
    ):
        backup_resources(
            kube_client,
            BackupScope(namespaces=namespaces, include_resources=["gizmos", "gadgets"]),
            ListSink(),
        )
    with pytest.raises(InvalidInput, match=r"^label selector 'app in \(x': unbalanced '\('$"):
        BackupScope(selector="app in (x")


def test_pages_stream_into_the_sink(kube_client: KubeClient, namespaces: list[str]) -> None:
    ns = namespaces[0]
    for i in range(7):
        create(kube_client, "configmaps", configmap(f"c{i}", {"i": str(i)}), ns)
    sink = ListSink()
    result = backup_resources(
        kube_client, BackupScope(namespaces=[ns], include_resources=["configmaps"]), sink, page_size=2
    )
    assert [i.name for i, _ in sink.items if i.resource == "configmaps"] == [f"c{i}" for i in range(7)]
    assert result.counts["configmaps"] == 7


def test_cluster_resources_auto_true_false(
    kube_client: KubeClient, namespaces: list[str], unique: str
) -> None:
    ns = namespaces[0]
    labelled_role, bound_role, crb_role, other = (
        f"{p}-{unique}" for p in ("labelled", "bound", "crb", "other")
    )
    rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    for name, labels in ((labelled_role, {"bk": unique}), (bound_role, {}), (crb_role, {}), (other, {})):
        create(kube_client, "clusterroles", {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name, "labels": labels}, "rules": rules})  # fmt: skip
    create(kube_client, "serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "labels": {"bk": unique}}}, ns)  # fmt: skip
    create(kube_client, "rolebindings", {
        "apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "bound", "labels": {"bk": unique}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": bound_role},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns}],
    }, ns)  # fmt: skip
    create(kube_client, "clusterrolebindings", {
        "apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": crb_role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": crb_role},
        "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns}],
    })  # fmt: skip
    try:

        def cluster_scoped(mode: str) -> set[tuple[str, str]]:
            sink = ListSink()
            result = backup_resources(kube_client, BackupScope(namespaces=[ns], selector=f"bk={unique}",
                                                               include_cluster_resources=mode), sink)  # fmt: skip
            assert result.phase == "Completed", result.errors
            return {(i.resource, i.name) for i, _ in sink.items if not i.namespaced}

        # auto: what the namespace's objects refer to, not what merely matches the selector.
        assert cluster_scoped("auto") == {
            ("namespaces", ns), ("clusterroles", bound_role), ("clusterrolebindings", crb_role), ("clusterroles", crb_role),
        }  # fmt: skip
        # true: also every cluster-scoped object the selector admits; "other" matches nothing.
        assert cluster_scoped("true") == cluster_scoped("auto") | {("clusterroles", labelled_role)}
        assert cluster_scoped("false") == {("namespaces", ns)}
    finally:
        for name in (labelled_role, bound_role, crb_role, other):
            kube_client.request("DELETE", f"/apis/{RBAC}/clusterroles/{name}")
        kube_client.request("DELETE", f"/apis/{RBAC}/clusterrolebindings/{crb_role}")


def test_what_is_never_backed_up(kube_client: KubeClient, namespaces: list[str]) -> None:
    ns = namespaces[0]
    svc = {"apiVersion": "v1", "kind": "Service"}
    create(
        kube_client,
        "services",
        {**svc, "metadata": {"name": "auto"}, "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}]}},
        ns,
    )
    create(
        kube_client,
        "services",
        {**svc, "metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}},
        ns,
    )
    ep = {"apiVersion": "v1", "kind": "Endpoints"}
    create(kube_client, "endpoints", {**ep, "metadata": {"name": "auto"}}, ns)  # the controller's
    create(kube_client, "endpoints", {**ep, "metadata": {"name": "manual"}}, ns)  # a user's: kept
    create(kube_client, "endpoints", {**ep, "metadata": {"name": "labelled", "labels": {"endpoints.kubernetes.io/managed-by": "endpoint-controller"}}}, ns)  # fmt: skip
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "endpoints": [],
    }
    create(kube_client, "endpointslices", {**slice_, "metadata": {"name": "auto-x1", "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}}}, ns)  # fmt: skip
    create(kube_client, "endpointslices", {**slice_, "metadata": {"name": "mine", "labels": {"endpointslice.kubernetes.io/managed-by": "me"}}}, ns)  # fmt: skip
    create(kube_client, "secrets", {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {"name": "tok"}}, ns)  # fmt: skip
    create(kube_client, "configmaps", configmap("kube-root-ca.crt", {"ca.crt": "x"}), ns)
    pod = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c", "image": "i"}]}}
    create(kube_client, "pods", {**pod, "metadata": {"name": "static-node1", "annotations": {"kubernetes.io/config.mirror": "abc"}}}, ns)  # fmt: skip
    create(kube_client, "events", {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev"}, "involvedObject": {"kind": "Pod", "name": "x"}}, ns)  # fmt: skip
    create(kube_client, "leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lock"}}, ns)  # fmt: skip

    sink = ListSink()
    result = backup_resources(kube_client, BackupScope(namespaces=[ns]), sink)
    assert result.phase == "Completed"
    assert keys(sink) == {
        ("services", ns, "auto"), ("services", ns, "manual"), ("endpoints", ns, "manual"),
        ("endpointslices", ns, "mine"), ("namespaces", None, ns),
    }  # fmt: skip
    assert result.skipped == {
        "endpoint slices managed by services": 1,
        "endpoints managed by services": 2,
        "kube-root-ca.crt config maps": 1,
        "mirror pods": 1,
        "service-account token secrets": 1,
    }


def test_owned_objects_are_marked(kube_client: KubeClient, namespaces: list[str]) -> None:
    ns = namespaces[0]
    cron = create(kube_client, "cronjobs", {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"}, "spec": {"schedule": "@daily"}}, ns)  # fmt: skip
    create(kube_client, "jobs", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "c-1", "ownerReferences": [owner_ref(cron)]}}, ns)  # fmt: skip
    create(kube_client, "configmaps", {**configmap("ref", {}), "metadata": {"name": "ref", "ownerReferences": [owner_ref(cron, controller=False)]}}, ns)  # fmt: skip
    sink = ListSink()
    result = backup_resources(kube_client, BackupScope(namespaces=[ns]), sink)
    job, _ = sink.find("jobs", "c-1")
    assert (job.owned, job.controller_uid) == (True, cron["metadata"]["uid"])
    ref, _ = sink.find("configmaps", "ref")
    assert (ref.owned, ref.controller_uid) == (False, None)  # an owner, but not a controller
    assert result.owned == 1


def test_forbidden_type_is_an_error_and_the_rest_is_backed_up(
    kube_client: KubeClient, k8s: servers.TestCluster, namespaces: list[str], unique: str
) -> None:
    """backup-sa may list configmaps (and read its namespace) but not secrets."""
    ns = namespaces[0]
    create(kube_client, "configmaps", configmap("visible", {"a": "b"}), ns)
    create(kube_client, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hidden"}}, ns)
    create(kube_client, "roles", {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "cm-reader"},
                                  "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}, ns)  # fmt: skip
    user = [{"kind": "User", "name": "backup-sa", "apiGroup": "rbac.authorization.k8s.io"}]
    create(kube_client, "rolebindings", {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "backup-sa"},
                                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
                                         "subjects": user}, ns)  # fmt: skip
    ns_reader = f"ns-reader-{unique}"
    create(kube_client, "clusterroles", {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": ns_reader},
                                         "rules": [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [ns], "verbs": ["get"]}]})  # fmt: skip
    create(kube_client, "clusterrolebindings", {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": ns_reader},
                                                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ns_reader},
                                                "subjects": user})  # fmt: skip
    try:
        sink = ListSink()
        with connect(k8s.kubeconfig_for("backup-sa")) as as_backup_sa:
            scope = BackupScope(namespaces=[ns], include_resources=["configmaps", "secrets"])
            result = backup_resources(as_backup_sa, scope, sink)
        assert result.phase == "PartiallyFailed"
        assert keys(sink) == {("configmaps", ns, "visible"), ("namespaces", None, ns)}
        assert [e.describe() for e in result.errors] == [
            f'secrets {ns}: 403 Forbidden: secrets is forbidden: User "backup-sa" cannot list resource "secrets" '
            f'in API group "" in the namespace "{ns}"'
        ]
        assert result.errors[0].model_dump() == {
            "resource": "secrets", "namespace": ns, "name": None, "reason": result.errors[0].reason,
        }  # fmt: skip
        assert result.warnings[0].startswith("cannot list namespaces (403 Forbidden: ")
        assert result.model_dump_json()  # the result is JSON-serialisable for the repository
    finally:
        kube_client.request("DELETE", f"/apis/{RBAC}/clusterroles/{ns_reader}")
        kube_client.request("DELETE", f"/apis/{RBAC}/clusterrolebindings/{ns_reader}")


def test_sink_failures_fail_the_backup(kube_client: KubeClient, namespaces: list[str]) -> None:
    class FullDisk:
        def add(self, item: ResourceItem, obj: dict[str, Any]) -> None:
            raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space left"):
        backup_resources(kube_client, BackupScope(namespaces=namespaces[:1]), FullDisk())


def test_server_errors_after_retries_fail_only_their_type(tmp_path: Path) -> None:
    """5xx answers (which the test cluster never gives) from a stand-in server: a list failing on
    its second page keeps the first page's objects; the other types are backed up."""
    res = [
        {"name": "namespaces", "kind": "Namespace", "namespaced": False, "verbs": ["create", "get", "list"]},
        {"name": "configmaps", "kind": "ConfigMap", "namespaced": True, "verbs": ["create", "get", "list"]},
        {"name": "secrets", "kind": "Secret", "namespaced": True, "verbs": ["create", "get", "list"]},
        {"name": "services", "kind": "Service", "namespaced": True, "verbs": ["create", "get", "list"]},
    ]
    page = {
        "metadata": {"continue": "next"},
        "items": [{"metadata": {"name": "first", "namespace": "a", "uid": "u1"}}],
    }
    broken = {"kind": "Status", "reason": "InternalError", "message": "etcdserver: request timed out"}
    with stub_api() as api:
        api.script("/version", (200, {"gitVersion": "v1.30.2"}, {}))
        api.script("/api", (200, {"versions": ["v1"]}, {}))
        api.script("/api/v1", (200, {"resources": res}, {}))
        api.script("/apis", (200, {"groups": []}, {}))
        api.script("/api/v1/namespaces", (200, {"metadata": {}, "items": [{"metadata": {"name": "a"}}]}, {}))
        api.script("/api/v1/configmaps", (200, page, {}), (500, broken, {}))
        api.script(
            "/api/v1/secrets",
            (503, {"kind": "Status", "reason": "ServiceUnavailable", "message": "later"}, {}),
        )
        api.script("/api/v1/services", (200, {"metadata": {}, "items": []}, {}))
        kc = connect(api.kubeconfig(tmp_path))
        kc.retry = RetryPolicy(attempts=2, base_delay=0.0)
        sink = ListSink()
        result = backup_resources(kc, BackupScope(), sink)
    assert result.phase == "PartiallyFailed"
    assert result.cluster_version == "v1.30.2"
    assert keys(sink) == {("configmaps", "a", "first"), ("namespaces", None, "a")}
    assert [e.describe() for e in result.errors] == [
        "configmaps: 500 InternalError: etcdserver: request timed out (listing stopped after 1 objects)",
        "secrets: 503 ServiceUnavailable: later",
    ]
    secret_requests = [p for m, p, _ in api.requests if p.startswith("/api/v1/secrets")]
    assert len(secret_requests) == 2  # retried once, then recorded


# A 503 from an aggregated API whose server is away (metrics-server restarting, say).
UNAVAILABLE = {"kind": "Status", "reason": "ServiceUnavailable", "message": "the server is currently unable"}


def _core_with_one_configmap(api: Any, groups: list[dict[str, Any]]) -> None:
    """Script a stand-in API server: the core API (namespaces, configmaps), namespace ``a`` holding
    ConfigMap ``c``, and the API ``groups`` (their own discovery scripted by the caller)."""
    res = [
        {"name": "namespaces", "kind": "Namespace", "namespaced": False, "verbs": ["create", "get", "list"]},
        {"name": "configmaps", "kind": "ConfigMap", "namespaced": True, "verbs": ["create", "get", "list"]},
    ]
    api.script("/version", (200, {"gitVersion": "v1.30.2"}, {}))
    api.script("/api", (200, {"versions": ["v1"]}, {}))
    api.script("/api/v1", (200, {"resources": res}, {}))
    api.script("/apis", (200, {"groups": groups}, {}))
    api.script("/api/v1/namespaces", (200, {"metadata": {}, "items": [{"metadata": {"name": "a"}}]}, {}))
    api.script(
        "/api/v1/configmaps",
        (200, {"metadata": {}, "items": [{"metadata": {"name": "c", "namespace": "a"}}]}, {}),
    )


def test_a_type_removed_after_discovery_is_a_warning(tmp_path: Path) -> None:
    """A CRD deleted between discovery and listing answers 404 (seen in CI when another
    test removed its CRD during a backup): nothing of it exists, the backup completes."""
    widgets = [{"name": "widgets", "kind": "Widget", "namespaced": True, "verbs": ["create", "get", "list"]}]
    group = {"name": "example.com", "versions": [{"groupVersion": "example.com/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "example.com/v1", "version": "v1"}}  # fmt: skip
    with stub_api() as api:
        _core_with_one_configmap(api, [group])
        api.script("/apis/example.com/v1", (200, {"resources": widgets}, {}))
        # /apis/example.com/v1/widgets is not scripted: the stub answers 404, like a removed CRD.
        kc = connect(api.kubeconfig(tmp_path))
        sink = ListSink()
        result = backup_resources(kc, BackupScope(namespaces=["a"]), sink)
    assert result.phase == "Completed" and result.errors == []
    assert keys(sink) == {("configmaps", "a", "c"), ("namespaces", None, "a")}
    assert any(w.startswith("widgets.example.com: no longer served") for w in result.warnings)


def _crd_in(group: str, plural: str, kind: str, version: str) -> dict[str, Any]:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": kind, "listKind": kind + "List"},
            "versions": [{"name": version, "served": True, "storage": True, "schema": schema}],
        },
    }


def test_a_custom_resource_served_only_outside_its_groups_preferred_version_is_backed_up(
    kube_client: KubeClient, unique: str
) -> None:
    # One group, two CRDs: widgets served in v1 (the group's preferred version), gadgets only
    # in v1beta1. Backups listed the preferred version's types only: the gadget was left
    # out, the backup Completed, no warning.
    from dr.kube.wait import wait_for_crd_established, wait_for_served
    from tests.kube_helpers import CRD_RES

    group = f"g{unique}.example.com"
    ns = f"v{unique}"
    make_namespace(kube_client, ns)
    for plural, kind, version in (("widgets", "Widget", "v1"), ("gadgets", "Gadget", "v1beta1")):
        create(kube_client, "customresourcedefinitions", _crd_in(group, plural, kind, version))
        wait_for_crd_established(kube_client, CRD_RES, f"{plural}.{group}", timeout=30)
        wait_for_served(kube_client, group, version, plural, timeout=30)
    for version, plural, kind, name in (
        ("v1", "widgets", "Widget", "w"),
        ("v1beta1", "gadgets", "Gadget", "g"),
    ):
        st, data = kube_client.request(
            "POST",
            f"/apis/{group}/{version}/namespaces/{ns}/{plural}",
            body={"apiVersion": f"{group}/{version}", "kind": kind, "metadata": {"name": name}},
        )
        assert st == 201, data
    sink = ListSink()
    result = backup_resources(kube_client, BackupScope(namespaces=[ns]), sink)
    got = {(i.resource, i.namespace, i.name) for i, _ in sink.items}
    assert ("widgets", ns, "w") in got and ("gadgets", ns, "g") in got, got
    assert result.phase == "Completed"


def test_all_namespaces_when_every_one_is_drs_own_is_invalid_input(
    kube_client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No namespace named, and the cluster's only namespaces are dr's and a drill's: nothing to back
    # up, and saying why (a backup of nothing would become the `latest` a restore picks).
    listed = [{"metadata": {"name": "dr-system"}},
              {"metadata": {"name": "drill-1", "labels": {"dr.dev/drill": "true"}}}]  # fmt: skip
    monkeypatch.setattr("dr.backup.resources.iter_pages", lambda *a, **kw: iter([listed]))
    with pytest.raises(InvalidInput) as e:
        backup_resources(kube_client, BackupScope(), ListSink(), dr_namespace="dr-system")
    assert e.value.message == (
        "no namespace to back up (left out dr's namespace dr-system and drill scratch namespace drill-1 "
        "(name them to back up))"
    )


def test_resource_metrics_are_never_backed_up(kube_client: KubeClient, unique: str) -> None:
    # metrics.k8s.io (metrics-server, in most clusters) serves PodMetrics and NodeMetrics, computed
    # from the kubelets, read-only. Backups listed them like any type: dr's backup role grants no
    # right on them (a 403, so every backup PartiallyFailed), and while metrics-server restarts
    # its LIST answers 503. A CRD stands in for the aggregated API the test cluster lacks.
    from dr.kube.wait import wait_for_crd_established, wait_for_served
    from tests.kube_helpers import CRD_RES, delete_crd

    ns = f"m{unique}"
    make_namespace(kube_client, ns)
    crd = _crd_in("metrics.k8s.io", "pods", "PodMetrics", "v1beta1")
    crd["metadata"]["annotations"] = {
        "api-approved.kubernetes.io": "unapproved, test stand-in for metrics-server"
    }
    create(kube_client, "customresourcedefinitions", crd)
    try:
        wait_for_crd_established(kube_client, CRD_RES, "pods.metrics.k8s.io", timeout=30)
        wait_for_served(kube_client, "metrics.k8s.io", "v1beta1", "pods", timeout=30)
        st, data = kube_client.request(
            "POST",
            f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
            body={
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "PodMetrics",
                "metadata": {"name": "web-0"},
            },
        )
        assert st == 201, data
        create(kube_client, "configmaps", configmap("settings", {"a": "b"}), ns)
        sink = ListSink()
        result = backup_resources(kube_client, BackupScope(namespaces=[ns]), sink)
    finally:
        delete_crd(kube_client, "pods.metrics.k8s.io")
        kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")
    assert keys(sink) == {("configmaps", ns, "settings"), ("namespaces", None, ns)}
    assert "pods.metrics.k8s.io" not in result.counts
    assert result.phase == "Completed", result.errors


def test_a_namespace_being_deleted_is_backed_up_with_a_warning(kube_client: KubeClient, unique: str) -> None:
    # A namespace deleted while (or shortly before) the nightly backup runs: Terminating, its objects
    # going one by one. The backup held what was left and said Completed with no word of it, and
    # became the `latest` a restore picks. (A finalizer holds the namespace in the test cluster,
    # which has no Terminating phase.)
    kc, ns = kube_client, f"t{unique}"
    st, data = kc.request(
        "POST",
        "/api/v1/namespaces",
        body={
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "finalizers": ["example.com/hold"]},
        },
    )
    assert st == 201, data
    other = f"u{unique}"
    make_namespace(kc, other)
    try:
        create(kc, "configmaps", configmap("cfg", {"a": "b"}), other)
        assert kc.request("DELETE", f"/api/v1/namespaces/{ns}")[0] == 200
        sink = ListSink()
        result = backup_resources(kc, BackupScope(namespaces=[ns, other]), sink)
    finally:
        kc.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}",
            body={"metadata": {"finalizers": None}},
            content_type="application/merge-patch+json",
        )
        kc.request("DELETE", f"/api/v1/namespaces/{other}")
    assert result.phase == "Completed"
    assert ("namespaces", None, ns) in keys(sink)
    deleting = [w for w in result.warnings if ns in w]
    assert len(deleting) == 1 and "is being deleted" in deleting[0], result.warnings
    assert not any(other in w for w in result.warnings)


def test_a_type_forbidden_in_every_namespace_is_one_error(
    kube_client: KubeClient, k8s: servers.TestCluster, namespaces: list[str], unique: str
) -> None:
    # dr's backup role names the built-in types only; a CRD's type (or here: secrets) is forbidden in
    # every namespace. That was one error a namespace: with hundreds of namespaces and a few CRDs,
    # thousands of identical lines in the output and the snapshot, the other failures lost among them.
    for ns in namespaces:
        create(kube_client, "configmaps", configmap("visible", {"a": "b"}), ns)
    reader = f"cm-reader-{unique}"
    user = [{"kind": "User", "name": "backup-sa", "apiGroup": "rbac.authorization.k8s.io"}]
    create(kube_client, "clusterroles", {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": reader},
                                         "rules": [{"apiGroups": [""], "resources": ["configmaps", "namespaces"],
                                                    "verbs": ["get", "list"]}]})  # fmt: skip
    create(kube_client, "clusterrolebindings", {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": reader},
                                                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
                                                "subjects": user})  # fmt: skip
    try:
        sink = ListSink()
        with connect(k8s.kubeconfig_for("backup-sa")) as as_backup_sa:
            scope = BackupScope(namespaces=namespaces, include_resources=["configmaps", "secrets"])
            result = backup_resources(as_backup_sa, scope, sink)
    finally:
        kube_client.request("DELETE", f"/apis/{RBAC}/clusterroles/{reader}")
        kube_client.request("DELETE", f"/apis/{RBAC}/clusterrolebindings/{reader}")
    assert result.phase == "PartiallyFailed"
    assert {k for k in keys(sink) if k[0] == "configmaps"} == {
        ("configmaps", ns, "visible") for ns in namespaces
    }
    assert [e.describe() for e in result.errors] == [
        f'secrets: 403 Forbidden: secrets is forbidden: User "backup-sa" cannot list resource "secrets" '
        f'in API group "" in the namespace "{namespaces[0]}" (and in each of the other 2 namespaces)'
    ]


def test_pages_of_large_objects_stay_within_a_byte_budget(
    kube_client: KubeClient, namespaces: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Helm keeps each release revision as a Secret of up to ~1 MiB (etcd's limit is 1.5 MiB); a
    # namespace holds hundreds. Pages of 500 objects were then a 500 MB response, parsed whole,
    # in a backup Job limited to 1 GiB. 24 Secrets of 1 MiB here: they came in one 24 MiB page.
    import base64
    import os

    from dr.kube.collect import PAGE_BYTES

    ns = namespaces[0]
    for i in range(24):
        release = base64.b64encode(os.urandom(768 << 10)).decode()  # 1 MiB of base64 in the Secret's data
        create(kube_client, "secrets", {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
                                        "metadata": {"name": f"sh.helm.release.v1.app.v{i}"},
                                        "data": {"release": release}}, ns)  # fmt: skip
    sizes: list[int] = []
    request = kube_client.request

    def measured(method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        status, data = request(method, path, **kw)
        if path.endswith("/secrets"):
            sizes.append(len(data))
        return status, data

    monkeypatch.setattr(kube_client, "request", measured)
    sink = ListSink()
    result = backup_resources(kube_client, BackupScope(namespaces=[ns], include_resources=["secrets"]), sink)
    assert result.phase == "Completed" and result.counts["secrets"] == 24
    assert len(sizes) > 1 and max(sizes) <= PAGE_BYTES, sizes


def test_the_api_servers_own_service_in_default_is_never_backed_up(kube_client: KubeClient) -> None:
    # Every cluster has Service default/kubernetes (no selector), with Endpoints and an EndpointSlice
    # the API server itself keeps pointing at its own addresses. They were backed up as a user's
    # selector-less Service: restored with --existing update into another cluster, they point its
    # workloads at the old cluster's API server until that one's reconciler writes them back.
    # The test cluster has none of them (no controllers): made here as a real cluster has them.
    kc = kube_client
    objs = [
        ("services", {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"name": "https", "port": 443}]},
                      "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}}}),
        ("endpoints", {"apiVersion": "v1", "kind": "Endpoints",
                       "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                       "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "https", "port": 6443}]}]}),
        ("endpointslices", {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                            "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                            "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"name": "https", "port": 6443}]}),
    ]  # fmt: skip
    for plural, obj in objs:
        create(kc, plural, obj, "default")
    try:
        sink = ListSink()
        scope = BackupScope(
            namespaces=["default"], include_resources=["services", "endpoints", "endpointslices"]
        )
        result = backup_resources(kc, scope, sink)
    finally:
        kc.request("DELETE", "/api/v1/namespaces/default/services/kubernetes")
        kc.request("DELETE", "/api/v1/namespaces/default/endpoints/kubernetes")
        kc.request("DELETE", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
    assert not [k for k in keys(sink) if k[2] == "kubernetes"], keys(sink)
    assert result.skipped.get("the API server's own service default/kubernetes") == 3, result.skipped


def test_a_read_only_type_is_not_listed(tmp_path: Path) -> None:
    # Aggregated APIs serving read-only views (OLM's packagemanifests, answered by a packageserver
    # that is often down) say so in discovery: no create verb. Nothing of them could be restored;
    # listing them made backups fail with 503s, or 403s where dr's role does not name them.
    manifests = [{"name": "packagemanifests", "kind": "PackageManifest", "namespaced": True,
                  "verbs": ["get", "list", "watch"]}]  # fmt: skip
    group = {"name": "packages.operators.coreos.com",
             "versions": [{"groupVersion": "packages.operators.coreos.com/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "packages.operators.coreos.com/v1", "version": "v1"}}  # fmt: skip
    with stub_api() as api:
        _core_with_one_configmap(api, [group])
        api.script("/apis/packages.operators.coreos.com/v1", (200, {"resources": manifests}, {}))
        api.script("/apis/packages.operators.coreos.com/v1/packagemanifests", (503, UNAVAILABLE, {}))
        kc = connect(api.kubeconfig(tmp_path))
        kc.retry = RetryPolicy(attempts=1, base_delay=0.0)
        sink = ListSink()
        result = backup_resources(kc, BackupScope(namespaces=["a"]), sink)
    assert result.errors == [] and result.phase == "Completed"
    assert keys(sink) == {("configmaps", "a", "c"), ("namespaces", None, "a")}
    assert not [p for _, p, _ in api.requests if "packagemanifests" in p]


def test_a_metrics_api_failing_discovery_is_no_warning_of_the_backup(tmp_path: Path) -> None:
    # KEDA's external.metrics.k8s.io (or metrics-server, prometheus-adapter) answering 503 while it
    # restarts: a warning "its resources are skipped" in every nightly backup, though none of its
    # resources is ever backed up. Another group failing is still a warning.
    def group(name: str) -> dict[str, Any]:
        gv = {"groupVersion": f"{name}/v1beta1", "version": "v1beta1"}
        return {"name": name, "versions": [gv], "preferredVersion": gv}

    with stub_api() as api:
        _core_with_one_configmap(api, [group("external.metrics.k8s.io"), group("widgets.example.com")])
        api.script("/apis/external.metrics.k8s.io/v1beta1", (503, UNAVAILABLE, {}))
        api.script("/apis/widgets.example.com/v1beta1", (503, UNAVAILABLE, {}))
        kc = connect(api.kubeconfig(tmp_path))
        kc.retry = RetryPolicy(attempts=1, base_delay=0.0)
        sink = ListSink()
        result = backup_resources(kc, BackupScope(namespaces=["a"]), sink)
    assert result.phase == "Completed"
    assert keys(sink) == {("configmaps", "a", "c"), ("namespaces", None, "a")}
    assert result.warnings == [
        "API group widgets.example.com/v1beta1: discovery failed, its resources are skipped: "
        "503 ServiceUnavailable: the server is currently unable"
    ]


def test_an_included_type_whose_group_fails_discovery_is_an_error(tmp_path: Path) -> None:
    # A policy naming widgets.example.com, whose API answers discovery with 503 that night: the
    # backup said the type "matches no resource type the cluster serves" (a warning, Completed,
    # exit 0) and held none of what was asked for; named alone, it was invalid input (exit 2).
    gv = {"groupVersion": "example.com/v1", "version": "v1"}
    with stub_api() as api:
        _core_with_one_configmap(api, [{"name": "example.com", "versions": [gv], "preferredVersion": gv}])
        api.script("/apis/example.com/v1", (503, UNAVAILABLE, {}))
        kc = connect(api.kubeconfig(tmp_path))
        kc.retry = RetryPolicy(attempts=1, base_delay=0.0)
        both = backup_resources(
            kc, BackupScope(include_resources=["widgets.example.com", "configmaps"]), ListSink()
        )
        alone = backup_resources(kc, BackupScope(include_resources=["widgets.example.com"]), ListSink())
    for result in (both, alone):
        assert result.phase == "PartiallyFailed"
        assert [e.describe() for e in result.errors] == [
            "widgets.example.com: not backed up: its API group example.com could not be discovered"
        ]
    assert both.counts == {"configmaps": 1, "namespaces": 1}
