"""dr's roles against a real API server with RBAC: each service account, with its own token,
can do what its job needs and gets 403 for the rest.

These are the API calls the backup, restore and drill commands make; once
those commands exist the same roles are exercised by them end to end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dr.deploy import rbac
from tests.deploy_support import api_as, served, server_side_apply
from tests.servers import TestCluster

NS = "dr-system"
BACKUP = f"system:serviceaccount:{NS}:{rbac.BACKUP_SA}"
RESTORE = f"system:serviceaccount:{NS}:{rbac.RESTORE_SA}"
DRILL = f"system:serviceaccount:{NS}:{rbac.DRILL_SA}"


@pytest.fixture(scope="module")
def cluster(k8s_dr: TestCluster) -> TestCluster:
    """The cluster with dr's namespace and RBAC applied by an admin, as `kubectl apply` would."""
    from kubernetes import client

    admin = api_as(k8s_dr)
    try:
        core = client.CoreV1Api(admin)
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        except client.ApiException as e:
            if e.status != 409:
                raise
        for obj in rbac.rbac_manifests(NS):
            # ValidatingAdmissionPolicy is not served by the test cluster (see the residual-risk test).
            if served(admin, obj):
                server_side_apply(admin, obj)
    finally:
        admin.close()
    return k8s_dr


@pytest.fixture
def admin(cluster: TestCluster) -> Iterator[Any]:
    api = api_as(cluster)
    yield api
    api.close()


@pytest.fixture
def app_ns(admin: Any, unique: str) -> Iterator[str]:
    """An application namespace with a ConfigMap, a Secret and a Deployment in it."""
    from kubernetes import client

    core = client.CoreV1Api(admin)
    name = f"app-{unique}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, {"metadata": {"name": "settings"}, "data": {"mode": "prod"}})
    core.create_namespaced_secret(name, {"metadata": {"name": "db"}, "stringData": {"password": "pw"}})
    client.AppsV1Api(admin).create_namespaced_deployment(name, _deployment("web"))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def scratch_ns(drill_api: Any, admin: Any, unique: str) -> Iterator[str]:
    """A drill scratch namespace ``drill-UNIQUE``, labelled and created by the drill account; deleted after."""
    from kubernetes import client

    name = f"drill-{unique}"
    client.CoreV1Api(drill_api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={rbac.DRILL_LABEL: "true"}))
    )
    yield name
    try:
        client.CoreV1Api(admin).delete_namespace(name)
    except client.ApiException as e:
        if e.status != 404:  # the test deleted it already
            raise


def _as(cluster: TestCluster, user: str) -> Iterator[Any]:
    api = api_as(cluster, user)
    yield api
    api.close()


@pytest.fixture
def backup_api(cluster: TestCluster) -> Iterator[Any]:
    yield from _as(cluster, BACKUP)


@pytest.fixture
def restore_api(cluster: TestCluster) -> Iterator[Any]:
    yield from _as(cluster, RESTORE)


@pytest.fixture
def drill_api(cluster: TestCluster) -> Iterator[Any]:
    yield from _as(cluster, DRILL)


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


def _forbidden(call: Any, *args: Any, **kwargs: Any) -> str:
    from kubernetes import client

    with pytest.raises(client.ApiException) as e:
        call(*args, **kwargs)
    assert e.value.status == 403, e.value.body
    return str(e.value.body)


# --------------------------------------------------------------------------- backup (service account "dr")


def test_backup_reads_what_it_backs_up(backup_api: Any, app_ns: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(backup_api)
    assert [c.metadata.name for c in core.list_namespaced_config_map(app_ns).items] == ["settings"]
    assert [s.metadata.name for s in core.list_namespaced_secret(app_ns).items] == ["db"]
    assert core.read_namespaced_secret("db", app_ns).data["password"]
    apps = client.AppsV1Api(backup_api)
    assert [d.metadata.name for d in apps.list_namespaced_deployment(app_ns).items] == ["web"]
    # Cluster-wide lists (a backup of several namespaces lists across them).
    assert app_ns in {n.metadata.name for n in core.list_namespace().items}
    assert any(d.metadata.name == "web" for d in apps.list_deployment_for_all_namespaces().items)
    rbac_api = client.RbacAuthorizationV1Api(backup_api)
    assert rbac.BACKUP_ROLE in {r.metadata.name for r in rbac_api.list_cluster_role().items}


def _grants(rules: list[dict[str, Any]], verb: str, group: str, resource: str) -> bool:
    """Whether RBAC rules allow ``verb`` (dr's rules name every group and resource: no wildcards)."""
    return any(
        group in r["apiGroups"]
        and resource in r["resources"]
        and verb in r["verbs"]
        and not r.get("resourceNames")
        for r in rules
    )


def _rendered_backup_rules() -> list[list[dict[str, Any]]]:
    """The backup ClusterRole's rules as rendered and as shipped in deploy/."""
    import yaml

    from tests.deploy_support import DEPLOY

    shipped = [d for d in yaml.safe_load_all((DEPLOY / "rbac-backup.yaml").read_text()) if d]
    return [
        next(
            o["rules"]
            for o in objects
            if o["kind"] == "ClusterRole" and o["metadata"]["name"] == rbac.BACKUP_ROLE
        )
        for objects in (rbac.rbac_manifests(NS), shipped)
    ]


def test_backup_role_reads_every_type_kubernetes_serves() -> None:
    """Every built-in type dr would back up (listable, readable, not cluster-managed) is readable.

    The types come from the kubernetes client, generated from the whole API of
    the Kubernetes version it is for (alpha and beta included): on a cluster
    serving e.g. ValidatingAdmissionPolicies, FlowSchemas, DeviceClasses or
    ServiceCIDRs the backup listed them and ended PartiallyFailed with 403s.
    A type a newer client adds fails here first.
    """
    from dr.kube.discovery import ApiResource
    from dr.kube.managed import backupable
    from tests.deploy_support import kubernetes_api_types

    types = kubernetes_api_types()
    assert {("flowcontrol.apiserver.k8s.io", "flowschemas"), ("", "configmaps")} <= {
        (t.group, t.plural) for t in types
    }
    wanted = [
        (t.group, t.plural)
        for t in types
        if backupable(
            ApiResource(
                t.group, t.versions[0], t.plural, t.kind, t.namespaced, frozenset({"create", "get", "list"})
            )
        )
    ]
    # Served by Kubernetes 1.31 (resource.k8s.io/v1alpha3, DRA enabled), no longer in the client.
    wanted.append(("resource.k8s.io", "podschedulingcontexts"))
    for rules in _rendered_backup_rules():
        missing = [
            f"{p}.{g}" if g else p for g, p in wanted if not all(_grants(rules, v, g, p) for v in rbac.READ)
        ]
        assert missing == []
        # Read-only: nothing beyond get/list/watch on them (but the hooks' and snapshots' rights).
        for r in rules:
            if set(r["verbs"]) - set(rbac.READ):
                assert r["resources"] in (
                    ["pods/exec"],
                    ["events"],
                    ["volumesnapshots", "volumesnapshotcontents"],
                    ["volumesnapshotcontents"],  # patch: a Retain content of dr's own snapshot to Delete
                ), r
            assert "*" not in r["apiGroups"] + r["resources"] + r["verbs"], r


@pytest.fixture
def newer_types(cluster: TestCluster) -> Iterator[list[str]]:
    """Types of groups the test cluster does not serve (flowcontrol, resource.k8s.io, certificates, ...),
    served as CRDs standing in for the built-in ones a newer cluster serves; deleted after the test."""
    from dr.kube.client import connect
    from tests.deploy_support import newer_builtin_types

    with connect(cluster.kubeconfig) as kc, newer_builtin_types(kc) as types:
        yield [f"{t.plural}.{t.group}" for t in types]


def test_backup_may_list_every_type_it_backs_up(
    backup_api: Any, cluster: TestCluster, app_ns: str, newer_types: list[str]
) -> None:
    """The backup lists every type the cluster serves (but cluster-managed ones): each needs a list right.

    The types are what dr's own discovery finds and would back up (every
    served version, ``dr.kube.managed.backupable``), including the stand-ins
    for the built-in groups a newer cluster serves. One 403 makes a backup
    PartiallyFailed.
    """
    from dr.kube.client import connect
    from dr.kube.discovery import discover
    from dr.kube.managed import backupable

    with connect(cluster.kubeconfig) as kc:
        types = [r for r in discover(kc).preferred_resources() if backupable(r)]
    assert set(newer_types) <= {r.group_resource for r in types}
    missing = []
    for r in types:
        namespace = app_ns if r.namespaced else None
        if not all(
            _allowed(backup_api, verb, r.plural, namespace, group=r.group) for verb in ("list", "get")
        ):
            missing.append(r.group_resource)
    assert missing == []


def test_backup_manages_its_temporary_jobs_and_pvcs_in_its_namespace(backup_api: Any, unique: str) -> None:
    from kubernetes import client

    batch, core = client.BatchV1Api(backup_api), client.CoreV1Api(backup_api)
    job = {
        "metadata": {"name": f"dr-mover-{unique}", "labels": {"app.kubernetes.io/name": "dr"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "dr", "image": "dr", "args": ["mover"]}],
                }
            }
        },
    }
    batch.create_namespaced_job(NS, job)
    assert batch.read_namespaced_job(f"dr-mover-{unique}", NS).metadata.name == f"dr-mover-{unique}"
    assert f"dr-mover-{unique}" in {j.metadata.name for j in batch.list_namespaced_job(NS).items}
    batch.delete_namespaced_job(f"dr-mover-{unique}", NS)

    pvc = {
        "metadata": {"name": f"dr-scratch-{unique}"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    core.create_namespaced_persistent_volume_claim(NS, pvc)
    core.delete_namespaced_persistent_volume_claim(f"dr-scratch-{unique}", NS)
    # Job pods: status and logs of the data mover.
    core.list_namespaced_pod(NS)


def test_backup_may_not_write(backup_api: Any, app_ns: str, unique: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(backup_api)
    _forbidden(core.delete_namespace, app_ns)
    body = _forbidden(
        core.create_namespaced_secret, app_ns, {"metadata": {"name": "x"}, "stringData": {"a": "b"}}
    )
    assert "cannot create resource" in body
    _forbidden(core.create_namespaced_config_map, app_ns, {"metadata": {"name": "x"}})
    _forbidden(core.delete_namespaced_secret, "db", app_ns)
    _forbidden(core.patch_namespaced_config_map, "settings", app_ns, {"data": {"mode": "evil"}})
    _forbidden(client.AppsV1Api(backup_api).delete_namespaced_deployment, "web", app_ns)
    # Its temporary Jobs live in dr-system only.
    job = {"metadata": {"name": f"j-{unique}"}, "spec": {"template": {"spec": {"containers": []}}}}
    _forbidden(client.BatchV1Api(backup_api).create_namespaced_job, app_ns, job)


def test_backup_hook_exec_is_authorized(backup_api: Any, app_ns: str) -> None:
    """pods/exec is allowed by RBAC (the test cluster has no kubelet, so the call ends in 404, not 403)."""
    from kubernetes import client

    auth = client.AuthorizationV1Api(backup_api)
    review = auth.create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {
                    "namespace": app_ns,
                    "verb": "create",
                    "resource": "pods",
                    "subresource": "exec",
                }
            }
        }
    )
    assert review.status.allowed is True


def test_backup_records_events(backup_api: Any, admin: Any, app_ns: str) -> None:
    from kubernetes import client

    from dr.observe.events import Reason, record_event

    # The event dr itself writes, as the backup identity; it lands in the application's namespace.
    name = record_event(backup_api, app_ns, Reason.BACKUP_COMPLETED, "backup of shop completed")
    stored = client.CoreV1Api(admin).read_namespaced_event(name, app_ns)
    assert (stored.reason, stored.message, stored.type) == (
        "BackupCompleted",
        "backup of shop completed",
        "Normal",
    )
    # Events are written, never read back or removed by dr: the role holds no more than that.
    _forbidden(client.CoreV1Api(backup_api).list_namespaced_event, app_ns)
    _forbidden(client.CoreV1Api(backup_api).delete_namespaced_event, name, app_ns)


# --------------------------------------------------------------------------- restore


def test_restore_creates_configmaps_secrets_deployments(restore_api: Any, admin: Any, unique: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(restore_api)
    target = f"restored-{unique}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=target)))
    try:
        core.create_namespaced_config_map(
            target, {"metadata": {"name": "settings"}, "data": {"mode": "prod"}}
        )
        core.create_namespaced_secret(target, {"metadata": {"name": "db"}, "stringData": {"password": "pw"}})
        client.AppsV1Api(restore_api).create_namespaced_deployment(target, _deployment("web"))
        # --existing update: server-side apply, which needs no read of the Secret.
        server_side_apply(
            restore_api,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": target},
             "stringData": {"password": "new"}},
        )  # fmt: skip
        server_side_apply(
            restore_api,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fresh", "namespace": target},
             "stringData": {"k": "v"}},
        )  # fmt: skip
        # --existing recreate: delete, then create.
        client.AppsV1Api(restore_api).delete_namespaced_deployment("web", target)
        client.AppsV1Api(restore_api).create_namespaced_deployment(target, _deployment("web"))
        admin_core = client.CoreV1Api(admin)
        assert {s.metadata.name for s in admin_core.list_namespaced_secret(target).items} == {"db", "fresh"}
    finally:
        client.CoreV1Api(admin).delete_namespace(target)


def test_restore_never_lists_secrets(restore_api: Any, app_ns: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(restore_api)
    _forbidden(core.list_namespaced_secret, NS)
    _forbidden(core.list_secret_for_all_namespaces)
    _forbidden(core.list_namespaced_secret, app_ns)
    # A Secret it names it may read: a re-run of a restore compares what exists (a patch
    # response would return the object anyway, so refusing get protected nothing).
    assert core.read_namespaced_secret("db", app_ns).metadata.name == "db"


def test_restore_may_not_delete_namespaces_or_bind_roles(restore_api: Any, app_ns: str, unique: str) -> None:
    from kubernetes import client

    _forbidden(client.CoreV1Api(restore_api).delete_namespace, app_ns)
    binding = rbac.role_binding(
        f"grab-{unique}", app_ns, "restore", "ClusterRole", "cluster-admin",
        [{"kind": "ServiceAccount", "name": rbac.RESTORE_SA, "namespace": NS}],
    )  # fmt: skip
    # Escalation prevention: it holds no bind/escalate, so it cannot grant itself more.
    _forbidden(client.RbacAuthorizationV1Api(restore_api).create_namespaced_role_binding, app_ns, binding)


def test_restore_restores_cluster_roles_within_its_own_rights(
    restore_api: Any, admin: Any, unique: str
) -> None:
    """ClusterRoles/-Bindings: an identical existing one can be read, a new one created — up to what it holds."""
    from kubernetes import client

    ours, theirs = client.RbacAuthorizationV1Api(restore_api), client.RbacAuthorizationV1Api(admin)
    reader = rbac.cluster_role(f"app-reader-{unique}", "restore",
                               [rbac._rule([""], ["configmaps"], ["get", "list"])])  # fmt: skip
    binding = rbac.cluster_role_binding(
        f"app-reader-{unique}", "restore", reader["metadata"]["name"], "app", "shop"
    )
    theirs.create_cluster_role(reader)
    try:
        # Already there, unchanged: the restore compares it (get), it does not fail with 403.
        assert ours.read_cluster_role(reader["metadata"]["name"]).rules[0].resources == ["configmaps"]
        # A new binding of a role whose rights it holds: the escalation check lets it through.
        ours.create_cluster_role_binding(binding)
        assert (
            ours.read_cluster_role_binding(binding["metadata"]["name"]).role_ref.name
            == reader["metadata"]["name"]
        )
        server_side_apply(restore_api, {**reader, "metadata": {**reader["metadata"], "labels": {"x": "y"}}})
        # Nothing beyond its own rights: no role granting more, no binding of cluster-admin.
        grab = rbac.cluster_role(f"grab-{unique}", "restore", [rbac._rule(["*"], ["*"], ["*"])])
        _forbidden(ours.create_cluster_role, grab)
        admin_binding = rbac.cluster_role_binding(
            f"grab-{unique}", "restore", "cluster-admin", rbac.RESTORE_SA, NS
        )
        _forbidden(ours.create_cluster_role_binding, admin_binding)
        # Restores never delete cluster-scoped objects.
        _forbidden(ours.delete_cluster_role, reader["metadata"]["name"])
    finally:
        for call, name in ((theirs.delete_cluster_role_binding, binding["metadata"]["name"]),
                           (theirs.delete_cluster_role, reader["metadata"]["name"])):  # fmt: skip
            try:
                call(name)
            except client.ApiException as e:
                if e.status != 404:
                    raise


# --------------------------------------------------------------------------- drill


def test_drill_works_only_in_its_scratch_namespace(
    drill_api: Any, admin: Any, app_ns: str, unique: str, scratch_ns: str
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(drill_api)
    scratch = scratch_ns
    # No rights inside the new namespace until it binds the workspace role there.
    _forbidden(core.create_namespaced_config_map, scratch, {"metadata": {"name": "settings"}})
    client.RbacAuthorizationV1Api(drill_api).create_namespaced_role_binding(
        scratch, rbac.drill_workspace_binding(scratch, NS)
    )
    core.create_namespaced_config_map(scratch, {"metadata": {"name": "settings"}, "data": {"a": "b"}})
    core.create_namespaced_secret(scratch, {"metadata": {"name": "db"}, "stringData": {"password": "pw"}})
    client.AppsV1Api(drill_api).create_namespaced_deployment(scratch, _deployment("web"))
    assert core.read_namespaced_secret("db", scratch).data["password"]  # verification steps may read
    # Nothing outside the scratch namespace.
    _forbidden(core.create_namespaced_config_map, app_ns, {"metadata": {"name": "x"}})
    _forbidden(core.read_namespaced_secret, "db", app_ns)
    _forbidden(core.list_namespaced_secret, NS)
    # It may bind only the workspace role, nothing stronger.
    grab = rbac.role_binding(
        f"grab-{unique}", scratch, "drill", "ClusterRole", rbac.RESTORE_ROLE,
        [{"kind": "ServiceAccount", "name": rbac.DRILL_SA, "namespace": NS}],
    )  # fmt: skip
    _forbidden(client.RbacAuthorizationV1Api(drill_api).create_namespaced_role_binding, scratch, grab)
    core.delete_namespace(scratch)
    assert scratch not in {n.metadata.name for n in client.CoreV1Api(admin).list_namespace().items}


def test_drill_gc_cleans_dr_namespace_leftovers(drill_api: Any, admin: Any, unique: str) -> None:
    from kubernetes import client

    name = f"dr-mover-left-{unique}"
    pvc = {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    client.CoreV1Api(admin).create_namespaced_persistent_volume_claim(NS, pvc)
    core = client.CoreV1Api(drill_api)
    assert name in {p.metadata.name for p in core.list_namespaced_persistent_volume_claim(NS).items}
    core.delete_namespaced_persistent_volume_claim(name, NS)


def test_drill_residual_risk_without_admission_policy(drill_api: Any, admin: Any, unique: str) -> None:
    """RBAC alone lets the drill account delete any namespace: why the admission policy exists.

    The test cluster does not even serve ValidatingAdmissionPolicies (nor
    enforce any admission policy), so here the deletion goes through; on a real
    cluster (>= 1.30) the policy rendered with the roles rejects it (its CEL is
    checked in test_deploy_policies.py).
    """
    from kubernetes import client

    victim = f"prod-{unique}"
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=victim)))
    guard = rbac.drill_guard_policy(NS)[0]
    assert not served(admin, guard), "the test cluster serves admission policies now: test the guard for real"
    client.CoreV1Api(drill_api).delete_namespace(victim)
    assert victim not in {n.metadata.name for n in client.CoreV1Api(admin).list_namespace().items}


def test_drill_may_not_read_applications(drill_api: Any, app_ns: str) -> None:
    from kubernetes import client

    _forbidden(client.CoreV1Api(drill_api).list_namespaced_config_map, app_ns)
    _forbidden(client.AppsV1Api(drill_api).list_namespaced_deployment, app_ns)


def _allowed(api: Any, verb: str, resource: str, namespace: str | None = None, **attrs: str) -> bool:
    """A SelfSubjectAccessReview: whether ``api``'s identity may do ``verb`` on ``resource``."""
    from kubernetes import client

    ra: dict[str, str] = {"verb": verb, "resource": resource, **attrs}
    if namespace:
        ra["namespace"] = namespace
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        {"spec": {"resourceAttributes": ra}}
    )
    return bool(review.status.allowed)


def test_drill_http_steps_may_use_the_service_proxy_in_scratch_only(
    drill_api: Any, admin: Any, app_ns: str, unique: str, scratch_ns: str
) -> None:
    """``http`` steps go through /api/v1/namespaces/NS/services/NAME:PORT/proxy/: services/proxy rights."""
    from typing import get_args

    from kubernetes import client

    from dr.drill.steps import service_proxy_path
    from dr.runbook.model import HttpStep

    core = client.CoreV1Api(drill_api)
    scratch = scratch_ns
    client.RbacAuthorizationV1Api(drill_api).create_namespaced_role_binding(
        scratch, rbac.drill_workspace_binding(scratch, NS)
    )
    # Every method a step may use maps to an allowed verb (a new method must be added here).
    methods = get_args(HttpStep.model_fields["method"].annotation)
    assert set(methods) == set(rbac.PROXY_VERB_OF_METHOD)
    for method in methods:
        verb = rbac.PROXY_VERB_OF_METHOD[method]
        assert _allowed(drill_api, verb, "services", scratch, subresource="proxy"), method
        assert not _allowed(drill_api, verb, "services", app_ns, subresource="proxy"), method
    assert not _allowed(drill_api, "delete", "services", scratch, subresource="proxy")
    # The real request: past authorization (the Service has no pods, so not 2xx, but never 403).
    core.create_namespaced_service(
        scratch,
        {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
    )
    step = HttpStep.model_validate({"name": "up", "type": "http", "service": "web", "port": 80})
    with pytest.raises(client.ApiException) as e:
        drill_api.call_api(service_proxy_path(scratch, step), "GET", auth_settings=["BearerToken"])
    assert e.value.status != 403, e.value.body


def test_drill_creates_nothing_in_dr_namespace(drill_api: Any, admin: Any, unique: str) -> None:
    """A Job the drill account created in dr's namespace could run as dr-restore: it may only clean up there."""
    from kubernetes import client

    job = {
        "metadata": {"name": f"grab-{unique}"},
        "spec": {"template": {"spec": {
            "serviceAccountName": rbac.RESTORE_SA, "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "dr"}]}}},
    }  # fmt: skip
    _forbidden(client.BatchV1Api(drill_api).create_namespaced_job, NS, job)
    pvc = {"metadata": {"name": f"x-{unique}"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip
    _forbidden(client.CoreV1Api(drill_api).create_namespaced_persistent_volume_claim, NS, pvc)
    snap = {"group": "snapshot.storage.k8s.io"}
    assert not _allowed(drill_api, "create", "volumesnapshots", NS, **snap)
    # What gc and run need there: find and delete leftovers, read what drills copy.
    for resource, attrs in (
        ("jobs", {"group": "batch"}),
        ("persistentvolumeclaims", {}),
        ("volumesnapshots", snap),
    ):
        for verb in ("get", "list", "delete"):
            assert _allowed(drill_api, verb, resource, NS, **attrs), (verb, resource)
    assert _allowed(drill_api, "get", "configmaps", NS, name="dr-config")
    assert not _allowed(drill_api, "list", "secrets", NS)
    name = f"dr-mover-left-{unique}"
    job["metadata"]["name"] = name
    client.BatchV1Api(admin).create_namespaced_job(NS, job)
    assert name in {j.metadata.name for j in client.BatchV1Api(drill_api).list_namespaced_job(NS).items}
    client.BatchV1Api(drill_api).delete_namespaced_job(name, NS, propagation_policy="Background")


def test_restore_and_drill_share_dr_config_copies(
    restore_api: Any, drill_api: Any, admin: Any, app_ns: str, scratch_ns: str, unique: str
) -> None:
    """Copies of dr-config and the credentials Secret that runs share (``MoverConfigCopies``): made, registered
    on (conditional merge patch), unregistered from and deleted (conditional delete) by the restore account in
    an app's namespace and by the drill account in its scratch namespace, with no 403 on the way."""
    from kubernetes import client

    from dr.cli.volume_access import MoverConfigCopies
    from dr.config import MoverOptions
    from dr.kube.client import KubeClient
    from dr.kube.collect import get_object
    from dr.kube.jobs import CONFIG_MAPS, SECRETS

    core = client.CoreV1Api(admin)
    source = f"drsrc-{unique}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=source)))
    core.create_namespaced_config_map(source, {"metadata": {"name": "dr-config"}, "data": {"dr.yaml": "{}"}})
    core.create_namespaced_secret(source, {"metadata": {"name": "creds"}, "stringData": {"K": "v"}})
    try:
        mover = MoverOptions(namespace=source, credentials_secret="creds")
        restore_kube = KubeClient(restore_api)
        a, b = (MoverConfigCopies(restore_kube, mover, f"restore-{x}") for x in "ab")
        a.ensure(app_ns)
        b.ensure(app_ns)  # registers on a's copies: patch
        assert a.delete_all() == []  # b still registered: unregisters (patch)
        assert get_object(restore_kube, SECRETS, app_ns, "creds") is not None
        assert b.delete_all() == []  # the last one out: conditional delete
        assert get_object(restore_kube, CONFIG_MAPS, app_ns, "dr-config") is None
        assert get_object(restore_kube, SECRETS, app_ns, "creds") is None
    finally:
        core.delete_namespace(source)
    # The drill reads dr-config in dr's namespace by name only; it copies it (and runs' shares) in its scratch.
    try:
        core.create_namespaced_config_map(NS, {"metadata": {"name": "dr-config"}, "data": {"dr.yaml": "{}"}})
    except client.ApiException as e:
        if e.status != 409:
            raise
    client.RbacAuthorizationV1Api(drill_api).create_namespaced_role_binding(
        scratch_ns, rbac.drill_workspace_binding(scratch_ns, NS)
    )  # as the drill does
    drill_kube = KubeClient(drill_api)
    mover = MoverOptions(namespace=NS)
    a, b = (MoverConfigCopies(drill_kube, mover, f"drill-{x}", credentials=False) for x in "ab")
    a.ensure(scratch_ns)
    b.ensure(scratch_ns)
    assert get_object(drill_kube, CONFIG_MAPS, scratch_ns, "dr-config") is not None
    assert a.delete_all() == [] and b.delete_all() == []
    assert get_object(drill_kube, CONFIG_MAPS, scratch_ns, "dr-config") is None


def test_an_identity_that_may_not_patch_uses_copies_unregistered(
    restore_api: Any, backup_api: Any, admin: Any, app_ns: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A person running ``dr runbook verify`` who may make and delete ConfigMaps in the app's namespace but
    not patch them (the backup account, bound to such a role here, stands in): a copy another run uses is
    used unregistered, said as such, and left to that run without a failed write; a killed run's leftover
    (its registration expired) is removed, as before copies were shared."""
    import time

    from kubernetes import client

    from dr.cli.volume_access import MoverConfigCopies
    from dr.config import MoverOptions
    from dr.kube.client import KubeClient
    from dr.kube.collect import get_object
    from dr.kube.jobs import CONFIG_MAPS

    core = client.CoreV1Api(admin)
    source, left = f"drsrc-{unique}", f"left-{unique}"
    for ns in (source, left):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_config_map(source, {"metadata": {"name": "dr-config"}, "data": {"dr.yaml": "{}"}})
    rbac_api = client.RbacAuthorizationV1Api(admin)
    name = f"copies-{unique}"
    for ns in (app_ns, left):
        rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "delete"]}
        rbac_api.create_namespaced_role(ns, rbac.role(name, ns, "test", [rule]))
        subject = {"kind": "ServiceAccount", "name": rbac.BACKUP_SA, "namespace": NS}
        rbac_api.create_namespaced_role_binding(
            ns, rbac.role_binding(name, ns, "test", "Role", name, [subject])
        )
    try:
        mover = MoverOptions(namespace=source)
        restore = MoverConfigCopies(KubeClient(restore_api), mover, "restore-a", credentials=False)
        restore.ensure(app_ns)
        person = MoverConfigCopies(KubeClient(backup_api), mover, "verify-rb", credentials=False)
        person.ensure(app_ns)
        assert f"cannot register on the copy of ConfigMap dr-config in {app_ns} (403 Forbidden" in caplog.text
        assert "used unregistered" in caplog.text
        assert person.delete_all() == [], "no 403 from taking off a registration it never made"
        assert get_object(KubeClient(admin), CONFIG_MAPS, app_ns, "dr-config") is not None, "the restore's"
        assert restore.delete_all() == []
        assert get_object(KubeClient(admin), CONFIG_MAPS, app_ns, "dr-config") is None

        long_ago = time.time() - mover.deadline.total_seconds() - 2 * 3600
        MoverConfigCopies(KubeClient(restore_api), mover, "killed", now=long_ago, credentials=False).ensure(
            left
        )
        person = MoverConfigCopies(KubeClient(backup_api), mover, "verify-rb", credentials=False)
        person.ensure(left)
        assert person.delete_all() == []
        assert get_object(KubeClient(admin), CONFIG_MAPS, left, "dr-config") is None, (
            "the leftover is removed"
        )
    finally:
        for ns in (source, left):
            core.delete_namespace(ns)


# --------------------------------------------------------------------------- the backup's Jobs


def _cel(expression: str, request: dict[str, Any]) -> bool:
    """The subset of CEL our admission policies use (has(), in, ==, !=, &&, ||, !), evaluated in Python.

    The test cluster does not serve ValidatingAdmissionPolicies, so this is
    how the expressions are checked against real manifests here.
    """
    import re

    def lookup(path: str) -> Any:
        value: Any = request
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                raise KeyError(path)
            value = value[part]
        return value

    def has(path: str) -> bool:
        try:
            lookup(path)
        except KeyError:
            return False
        return True

    py = re.sub(r"has\(([\w.]+)\)", r'has("\1")', expression)
    py = re.sub(r"(?<![\"\w.])((?:request|object)(?:\.\w+)+)", r'lookup("\1")', py)
    py = py.replace("&&", " and ").replace("||", " or ").replace("!has", " not has")
    return bool(eval(py, {"has": has, "lookup": lookup}))  # our own expressions, never input


def _admits(policy: dict[str, Any], user: str, resource: str, namespace: str, obj: dict[str, Any]) -> bool:
    """Whether ``policy`` lets ``user`` create ``obj`` (True also when it does not match the request)."""
    spec = policy["spec"]
    match = spec["matchConstraints"]
    if match["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] != namespace:
        return True
    if not any(resource in r["resources"] and "CREATE" in r["operations"] for r in match["resourceRules"]):
        return True
    request = {"request": {"userInfo": {"username": user}, "resource": {"resource": resource}}, "object": obj}
    if not all(_cel(c["expression"], request) for c in spec["matchConditions"]):
        return True
    return all(_cel(v["expression"], request) for v in spec["validations"])


def test_backup_jobs_in_dr_namespace_run_only_as_the_mover_account() -> None:
    """RBAC lets the backup create Jobs in dr's namespace with any serviceAccountName; the policy does not."""
    from dr.backup.volumes import VolumeBackupContext
    from dr.kube.jobs import MoverJob, mover_job

    policy, binding = rbac.mover_guard_policy(NS)
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy in rbac.rbac_manifests(NS) and binding in rbac.rbac_manifests(NS)
    ctx = VolumeBackupContext(repo_url="s3://b/r", backup_id="b1")
    job = mover_job(
        MoverJob(name="dr-backup-x", namespace=NS, args=["mover"], claim="c", read_only=True, run_id="b1",
                 expires=1, service_account=ctx.service_account),
        ctx.pod_config(),
    )  # fmt: skip
    assert _admits(policy, BACKUP, "jobs", NS, job)
    pod_spec = job["spec"]["template"]["spec"]
    for sa in (rbac.RESTORE_SA, rbac.DRILL_SA, "default"):
        grab = {**job, "spec": {**job["spec"], "template": {"spec": {**pod_spec, "serviceAccountName": sa}}}}
        assert not _admits(policy, BACKUP, "jobs", NS, grab), sa
        assert not _admits(policy, BACKUP, "pods", NS, {"spec": {**pod_spec, "serviceAccountName": sa}}), sa
        # The deprecated alias is the account when serviceAccountName is empty: not a way around it.
        alias = {k: v for k, v in pod_spec.items() if k != "serviceAccountName"} | {"serviceAccount": sa}
        assert not _admits(policy, BACKUP, "pods", NS, {"spec": alias}), sa
        # Other accounts (an admin, the Job controller creating the pods) and other namespaces: not matched.
        assert _admits(policy, RESTORE, "jobs", NS, grab)
        assert _admits(policy, BACKUP, "jobs", "elsewhere", grab)
    assert not _admits(policy, BACKUP, "jobs", NS, {"spec": {"template": {"spec": {"containers": []}}}})


def test_backup_residual_risk_without_admission_policy(backup_api: Any, admin: Any, unique: str) -> None:
    """Where admission policies are not enforced (the test cluster), the backup can run a Job as dr-restore."""
    from kubernetes import client

    guard = rbac.mover_guard_policy(NS)[0]
    assert not served(admin, guard), "the test cluster serves admission policies now: test the guard for real"
    job = {
        "metadata": {"name": f"grab-{unique}"},
        "spec": {"template": {"spec": {
            "serviceAccountName": rbac.RESTORE_SA, "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "dr"}]}}},
    }  # fmt: skip
    created = client.BatchV1Api(backup_api).create_namespaced_job(NS, job)
    assert created.spec.template.spec.service_account_name == rbac.RESTORE_SA
    client.BatchV1Api(admin).delete_namespaced_job(
        job["metadata"]["name"], NS, propagation_policy="Background"
    )
