"""The shipped RBAC, exercised by the real commands: each service account does its job and no more.

On a test cluster with RBAC on and tokens for dr's three service accounts
(``k8s_dr``), an admin applies the roles and bindings exactly as ``dr deploy
render`` prints them. Then, each with its own token only:

* ``dr`` (backup) runs ``dr backup``;
* ``dr-restore`` runs ``dr restore`` (into a new namespace, and again over it);
* ``dr-drill`` runs ``dr drill run`` on a runbook with a ``resources`` step
  (scratch namespace, isolation, its own RoleBinding there, restore, check,
  cleanup);

and each gets 403 for the jobs of the others (the backup account cannot
restore, the restore account cannot read Secrets, the drill account cannot
read or write application namespaces). What RBAC cannot express — the drill
account deleting an arbitrary namespace — is covered by the admission policy
(``tests/test_deploy_rbac.py`` documents the residual risk).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dr.deploy import rbac
from dr.kube.client import KubeClient, connect
from tests.cli_support import small_namespace, write_config, write_runbook
from tests.deploy_support import newer_builtin_types, served, server_side_apply
from tests.helpers import Result, run_dr, run_dr_process
from tests.kube_helpers import create, get
from tests.servers import TestCluster

NS = "dr-system"
BACKUP = f"system:serviceaccount:{NS}:{rbac.BACKUP_SA}"
RESTORE = f"system:serviceaccount:{NS}:{rbac.RESTORE_SA}"
DRILL = f"system:serviceaccount:{NS}:{rbac.DRILL_SA}"
Capsys = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def cluster(k8s_dr: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> TestCluster:
    """The cluster with dr's namespace and the RBAC that ``dr deploy render`` prints, applied by an admin."""
    if k8s_dr.external:
        pytest.skip("needs the tokens of dr's service accounts (local test cluster)")
    from kubernetes import config as kconfig

    policy = {"name": "app", "schedule": "0 2 * * *", "scope": {"namespaces": ["app-*"]}}
    rendered = run_dr_process("deploy", "render", "--config",
                              str(write_config(tmp_path_factory.mktemp("deploy"), backup_policies=[policy])))  # fmt: skip
    assert rendered.code == 0, rendered.err
    objects = [d for d in yaml.safe_load_all(rendered.out) if d]
    admin = kconfig.new_client_from_config(config_file=k8s_dr.kubeconfig)
    try:
        with connect(k8s_dr.kubeconfig) as kc:
            if get(kc, "v1", "namespaces", NS) is None:
                create(kc, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        wanted = {(o["kind"], o["metadata"]["name"]) for o in rbac.rbac_manifests(NS)}
        applied = 0
        for obj in objects:
            if (obj["kind"], obj["metadata"]["name"]) in wanted and served(admin, obj):
                server_side_apply(admin, obj)
                applied += 1
        # Everything but the two admission policies and their bindings (not served by the test cluster).
        assert applied == len(wanted) - 4
    finally:
        admin.close()
    return k8s_dr


@pytest.fixture
def admin(cluster: TestCluster) -> Iterator[KubeClient]:
    with connect(cluster.kubeconfig) as kc:
        yield kc


@pytest.fixture
def app_ns(admin: KubeClient, unique: str) -> Iterator[str]:
    """An application: ConfigMaps, a Secret, a Service, a ServiceAccount and a Role bound to it."""
    ns = small_namespace(admin, f"app-{unique}")
    create(admin, "services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}, ns)  # fmt: skip
    create(
        admin,
        "serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}},
        ns,
    )
    create(admin, "roles", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                            "metadata": {"name": "config-reader"},
                            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}, ns)  # fmt: skip
    create(admin, "rolebindings", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                                   "metadata": {"name": "config-reader"},
                                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                               "name": "config-reader"},
                                   "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": ns}]}, ns)  # fmt: skip
    yield ns
    for n in (ns, f"{ns}-restored", f"{ns}-elsewhere"):
        admin.request("DELETE", f"/api/v1/namespaces/{n}")


@pytest.fixture
def config(isolated_home: Path, app_ns: str, unique: str) -> str:
    write_runbook(isolated_home / "app.yaml", f"app-{unique}", app_ns, step_timeout="5s")
    return str(write_config(isolated_home))


def dr(capsys: Capsys, cluster: TestCluster, config: str, user: str, *args: str) -> Result:
    return run_dr(capsys, "--config", config, "--kubeconfig", cluster.kubeconfig_for(user), *args)


def forbidden_lines(res: Result) -> list[str]:
    return [
        line.strip() for line in res.err.splitlines() if line.startswith("  ") and "403 Forbidden" in line
    ]


def test_backup_and_restore_run_with_the_shipped_roles_only(
    capsys: Capsys, cluster: TestCluster, admin: KubeClient, config: str, app_ns: str
) -> None:
    assert run_dr(capsys, "--config", config, "repo", "init").code == 0

    # --- backup, as "dr"
    res = dr(capsys, cluster, config, BACKUP, "backup", "-n", app_ns, "--no-data", "-o", "json")
    assert res.code == 0, res.err
    backup = res.json()
    assert backup["phase"] == "Completed" and backup["errors"] == []
    assert {k: v for k, v in backup["counts"].items() if k in ("configmaps", "secrets", "services")} == {
        "configmaps": 2, "secrets": 1, "services": 1}  # fmt: skip
    assert backup["counts"]["roles.rbac.authorization.k8s.io"] == 1
    assert '"level": "warning"' not in res.err  # its Event was recorded too

    # --- restore, as "dr-restore": into a new namespace, then again over it (resumable, idempotent)
    target = f"{app_ns}-restored"
    restore = ("restore", "latest", "--namespace-mapping", f"{app_ns}={target}", "-o", "json")
    res = dr(capsys, cluster, config, RESTORE, *restore)
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["phase"] == "Completed" and doc["namespacesCreated"] == [target]
    assert set(doc["counts"]) == {"created"}
    assert get(admin, "v1", "secrets", "db", target) is not None
    assert get(admin, "rbac.authorization.k8s.io/v1", "rolebindings", "config-reader", target) is not None
    res = dr(capsys, cluster, config, RESTORE, *restore)
    assert res.code == 0, res.err
    again = {(i["item"]["resource"], i["item"]["name"]): i["outcome"] for i in res.json()["items"]}
    assert again[("secrets", "db")] == "unchanged" and set(again.values()) == {"unchanged"}
    assert '"level": "warning"' not in res.err


def test_backup_of_a_newer_cluster_completes_with_the_shipped_role(
    capsys: Capsys, cluster: TestCluster, admin: KubeClient, config: str, app_ns: str
) -> None:
    """A cluster serving FlowSchemas, DRA DeviceClasses/ResourceClaims, CSRs, ... (stand-in CRDs here):
    the backup lists every type it serves, so without a read right on each it ended PartiallyFailed."""
    assert run_dr(capsys, "--config", config, "repo", "init").code == 0
    with newer_builtin_types(admin) as types:
        emulated = {(t.group, t.plural) for t in types}
        assert {
            ("flowcontrol.apiserver.k8s.io", "flowschemas"),
            ("resource.k8s.io", "resourceclaims"),
        } <= emulated
        create(admin, "flowschemas", {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
                                      "metadata": {"name": f"{app_ns}-fs"}})  # fmt: skip
        create(admin, "resourceclaims", {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                                         "metadata": {"name": "gpu"}}, app_ns)  # fmt: skip
        res = dr(capsys, cluster, config, BACKUP, "backup", "-n", app_ns, "--no-data",
                 "--include-cluster-resources", "true", "-o", "json")  # fmt: skip
    assert forbidden_lines(res) == []
    assert res.code == 0, res.err
    backup = res.json()
    assert backup["phase"] == "Completed" and backup["errors"] == []
    assert backup["counts"]["resourceclaims.resource.k8s.io"] == 1
    assert backup["counts"]["flowschemas.flowcontrol.apiserver.k8s.io"] >= 1


def test_drill_runs_with_the_shipped_roles_only(
    capsys: Capsys, cluster: TestCluster, admin: KubeClient, config: str, app_ns: str, isolated_home: Path
) -> None:
    assert run_dr(capsys, "--config", config, "repo", "init").code == 0
    res = dr(capsys, cluster, config, BACKUP, "backup", "-n", app_ns, "--no-data", "-o", "json")
    assert res.code == 0, res.err
    backup = res.json()

    # As "dr-drill": scratch namespace, isolation, its own binding there, restore, check, clean up.
    res = dr(capsys, cluster, config, DRILL, "drill", "run", str(isolated_home / "app.yaml"), "--no-data",
             "-o", "json")  # fmt: skip
    assert res.code == 0, res.out + res.err
    report = res.json()
    assert report["outcome"] == "passed" and report["cleanup"]["status"] == "deleted"
    assert report["backupId"] == backup["id"]
    assert get(admin, "v1", "namespaces", report["namespace"]) is None
    drill_events = admin.get(f"/api/v1/namespaces/{app_ns}/events")["items"]
    assert "DrillPassed" in {e["reason"] for e in drill_events}


def test_each_account_is_refused_the_others_jobs(
    capsys: Capsys, cluster: TestCluster, admin: KubeClient, config: str, app_ns: str
) -> None:
    assert run_dr(capsys, "--config", config, "repo", "init").code == 0
    res = dr(capsys, cluster, config, BACKUP, "backup", "-n", app_ns, "--no-data", "-o", "json")
    assert res.code == 0, res.err
    backup_id = res.json()["id"]

    # The backup account writes nothing: a restore fails for every object (failed, exit 1).
    res = dr(capsys, cluster, config, BACKUP, "restore", backup_id, "--namespace-mapping",
             f"{app_ns}={app_ns}-elsewhere")  # fmt: skip
    assert res.code == 1 and "failed: all " in res.err, res.err
    refused = forbidden_lines(res)
    assert refused and all("cannot create resource" in line for line in refused)
    assert get(admin, "v1", "namespaces", f"{app_ns}-elsewhere") is None

    # The restore account cannot list Secrets: backing up with it loses exactly them.
    res = dr(capsys, cluster, config, RESTORE, "backup", "-n", app_ns, "--no-data", "--include-resources",
             "configmaps,secrets")  # fmt: skip
    assert res.code == 3
    assert forbidden_lines(res) == [
        f'secrets {app_ns}: 403 Forbidden: secrets is forbidden: User "{RESTORE}" cannot list resource "secrets" '
        f'in API group "" in the namespace "{app_ns}"'
    ]

    # The drill account neither reads nor writes application namespaces.
    res = dr(capsys, cluster, config, DRILL, "backup", "-n", app_ns, "--no-data", "--include-resources",
             "configmaps")  # fmt: skip
    assert res.code == 1  # nothing captured: failed
    assert forbidden_lines(res)[0].startswith(f"configmaps {app_ns}: 403 Forbidden: ")
    # ... nor dr's own Secrets (the repository credentials live there), and it writes nothing there:
    res = dr(
        capsys, cluster, config, DRILL, "backup", "-n", NS, "--no-data", "--include-resources", "secrets"
    )
    assert res.code == 1
    assert forbidden_lines(res)[0].startswith(
        f'secrets {NS}: 403 Forbidden: secrets is forbidden: User "{DRILL}"'
    )
    res = dr(capsys, cluster, config, DRILL, "restore", backup_id, "--existing", "update")
    assert res.code == 3
    refused = forbidden_lines(res)
    # Every object it may not write fails with 403; what it can read and finds identical is "unchanged".
    failed = int(res.err.split("partially failed: ")[1].split()[0])
    assert failed >= 6 and len(refused) == failed
    assert all(f'user "{DRILL}"' in line.lower() for line in refused)
    assert get(admin, "v1", "configmaps", "settings", app_ns)["metadata"].get("labels") is None  # type: ignore[index]
