"""``dr drill run`` against the test cluster: what a drill reports, what it touches and what it leaves.

Resources only (``--no-data``), a local repository: no node agent is needed
(``test_drill_e2e.py`` drills the web-app example with its data).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.kube.client import KubeClient
from tests import servers
from tests.cli_support import two_repository_config
from tests.conftest import Kube
from tests.helpers import Result, run_dr
from tests.kube_helpers import configmap, create, create_crd, delete_crd, get, make_namespace

Capsys = pytest.CaptureFixture[str]
CM_STEP = {"name": "cm", "type": "resources", "timeout": "2s",
           "expect": [{"kind": "ConfigMap", "names": ["app-config"]}]}  # fmt: skip


def write_runbook(path: Path, name: str, ns: str, steps: list[dict[str, Any]], **drill: Any) -> Path:
    doc = {
        "apiVersion": "dr.dev/v1",
        "kind": "Runbook",
        "metadata": {"name": name},
        "spec": {
            "description": "drill tests",
            "contacts": [{"name": "x", "email": "x@example.com"}],
            "scope": {"namespaces": [ns]},
            "objectives": {"rpo": "24h", "rto": "15m"},
            "drill": {"timeout": "30s", **drill},
            "verification": steps,
            "procedure": [{"title": "t", "text": "t"}],
        },
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def repo(isolated_home: Path, capsys: Capsys) -> Path:
    res = run_dr(capsys, "repo", "init")
    assert res.code == 0, res.err
    return isolated_home


@pytest.fixture
def app_ns(kube_client: KubeClient, unique: str) -> Iterator[str]:
    """The app's namespace ``prod-UNIQUE`` with its ConfigMap app-config (what CM_STEP expects); deleted after."""
    ns = f"prod-{unique}"
    make_namespace(kube_client, ns)
    create(kube_client, "configmaps", configmap("app-config", {"a": "b"}), ns)
    yield ns
    kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")


def drill_namespaces(kc: KubeClient) -> list[str]:
    found = kc.get("/api/v1/namespaces", {"labelSelector": "dr.dev/drill=true"})["items"]
    return [n["metadata"]["name"] for n in found]


def drill(capsys: Capsys, kube: Kube, runbook: Path, *args: str) -> Result:
    return run_dr(capsys, "--kubeconfig", kube.kubeconfig, "drill", "run", str(runbook), *args)


def backup(capsys: Capsys, kube: Kube, *args: str) -> dict[str, Any]:
    res = run_dr(capsys, "--kubeconfig", kube.kubeconfig, "backup", *args, "-o", "json")
    assert res.code == 0, res.err
    doc: dict[str, Any] = res.json()
    return doc


def test_a_drill_that_could_not_make_its_namespace_says_none_was_created(
    capsys: Capsys, kube: Kube, repo: Path, unique: str, app_ns: str
) -> None:
    # bob may not create namespaces: the drill cannot run (exit 1). Its summary said the scratch
    # namespace was "deleted", though there never was one.
    backup(capsys, kube, "-n", app_ns, "--include-cluster-resources", "false")
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", app_ns, [CM_STEP])
    res = run_dr(
        capsys, "--kubeconfig", kube.cluster.kubeconfig_for("bob"), "drill", "run", str(rb), "--no-data"
    )
    assert res.code == 1, res.out + res.err
    [line] = [ln for ln in res.out.splitlines() if ln.startswith("  scratch namespace(s): ")]
    assert line.endswith("(none was created)"), res.out


def test_objects_that_fail_to_restore_fail_the_drill(
    capsys: Capsys, kube_client: KubeClient, kube: Kube, repo: Path, unique: str, app_ns: str
) -> None:
    kc = kube_client
    ns, group = app_ns, f"drill{unique}.example.com"
    create_crd(kc, group)
    create(kc, "widgets", {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"},
                           "spec": {"size": 1}}, ns)  # fmt: skip
    backup(capsys, kube, "-n", ns, "--include-cluster-resources", "false")
    # The CRD is neither in the backup nor in the cluster any more: the Widget cannot be restored.
    delete_crd(kc, f"widgets.{group}")
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", ns, [CM_STEP])
    reports = repo / "reports"

    res = drill(capsys, kube, rb, "--no-data", "--report-dir", str(reports), "-o", "json")

    assert res.code == 4, res.err
    doc = res.json()
    assert doc["outcome"] == "failed" and [s["passed"] for s in doc["steps"]] == [True]
    [failed] = doc["restore"]["failedItems"]
    assert "w1" in failed and "failed" in failed
    assert "1 restore problem(s)" in res.err and "restore failed: " in res.err
    assert res.err.count(failed) == 1, res.err  # the failure's details; not also a log line
    assert f"restore failed: {failed}" in (reports / f"{doc['id']}.md").read_text()
    assert "The restore was not complete" in (reports / f"{doc['id']}.html").read_text()
    assert drill_namespaces(kc) == []


def test_workloads_never_ready_fail_the_drill_and_measure_no_rto(
    capsys: Capsys, kube_client: KubeClient, kube: Kube, repo: Path, unique: str, app_ns: str
) -> None:
    kc = kube_client
    ns = app_ns
    # No controller in the test cluster: the restored Deployment never becomes ready.
    create(kc, "deployments", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}, ns)  # fmt: skip
    backup(capsys, kube, "-n", ns)
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", ns, [CM_STEP], timeout="3s")

    res = drill(capsys, kube, rb, "--no-data", "-o", "json")

    assert res.code == 4, res.err
    doc = res.json()
    assert doc["outcome"] == "failed"
    [pending] = doc["restore"]["notReady"]
    assert pending.startswith(f"{doc['namespace']}/") and "web" in pending
    # The drill's timeout is not a recovery time.
    assert doc["phases"]["timeToReady"] is None and doc["rtoMeasured"] is None and doc["rtoMet"] is None


def test_a_scratch_name_taken_already_is_neither_used_nor_deleted(
    capsys: Capsys,
    kube_client: KubeClient,
    kube: Kube,
    repo: Path,
    unique: str,
    app_ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dr.drill.run

    kc = kube_client
    ns, app = app_ns, f"app{unique}"
    # The run id the drill will pick; something else lives under the scratch name already
    # (a drill kept with --keep, anyone's namespace).
    monkeypatch.setattr(dr.drill.run, "run_id", lambda now: "20261129-000000-dead")
    victim = f"drill-{app}-20261129-000000-dead"
    try:
        backup(capsys, kube, "-n", ns)
        make_namespace(kc, victim)
        create(kc, "configmaps", configmap("precious", {"k": "v"}), victim)
        rb = write_runbook(repo / "rb.yaml", app, ns, [CM_STEP])

        res = drill(capsys, kube, rb, "--no-data", "-o", "json")

        assert res.code == 1, res.err
        doc = res.json()
        assert doc["outcome"] == "error" and f"scratch namespace {victim} exists already" in doc["error"]
        assert doc["cleanup"] == {"status": "deleted", "message": "none was created"}  # not the victim
        left = kc.get(f"/api/v1/namespaces/{victim}")
        assert "deletionTimestamp" not in left["metadata"]
        assert get(kc, "v1", "configmaps", "precious", victim) is not None
    finally:
        kc.request("DELETE", f"/api/v1/namespaces/{victim}")


def test_deleting_a_scratch_namespace_needs_its_uid(kube_client: KubeClient, unique: str) -> None:
    from dr.drill.run import delete_namespace
    from dr.kube.client import ApiError

    kc = kube_client
    name = f"drill-uid-{unique}"
    uid = make_namespace(kc, name)["metadata"]["uid"]
    try:
        # The name now belongs to another namespace than the one the drill created.
        with pytest.raises(ApiError) as e:
            delete_namespace(kc, name, "00000000-0000-0000-0000-000000000000")
        assert e.value.status == 409
        assert "deletionTimestamp" not in kc.get(f"/api/v1/namespaces/{name}")["metadata"]
        delete_namespace(kc, name, uid)
        gone = get(kc, "v1", "namespaces", name)
        assert gone is None or "deletionTimestamp" in gone["metadata"]
    finally:
        kc.request("DELETE", f"/api/v1/namespaces/{name}")


def test_run_ids_differ_within_a_second() -> None:
    from datetime import UTC, datetime

    from dr.drill.run import run_id
    from dr.runbook.model import RUN_ID_LENGTH

    now = datetime(2026, 11, 29, 15, 41, 39, tzinfo=UTC)
    ids = {run_id(now) for _ in range(20)}
    assert len(ids) > 1 and all(i.startswith("20261129-154139-") and len(i) == RUN_ID_LENGTH for i in ids)


def test_a_drill_creates_no_cluster_scoped_objects_and_names_the_missing_ones(
    capsys: Capsys, kube_client: KubeClient, kube: Kube, repo: Path, unique: str, app_ns: str
) -> None:
    kc = kube_client
    ns, rbac = app_ns, "rbac.authorization.k8s.io/v1"
    kept, retired = f"app-reader-{unique}", f"app-writer-{unique}"
    for role in (kept, retired):
        create(
            kc,
            "clusterroles",
            {
                "apiVersion": rbac,
                "kind": "ClusterRole",
                "metadata": {"name": role},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
            },
        )
        create(kc, "rolebindings", {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}, ns)  # fmt: skip
    try:
        taken = backup(capsys, kube, "-n", ns)  # auto: the ClusterRoles of the RoleBindings come along
        assert taken["objects"] >= 5
        kc.request("DELETE", f"/apis/{rbac}/clusterroles/{retired}")  # retired after the backup
        before = get(kc, rbac, "clusterroles", kept)
        assert before is not None
        rb = write_runbook(repo / "rb.yaml", f"app{unique}", ns, [CM_STEP])

        res = drill(capsys, kube, rb, "--no-data", "-o", "json")

        assert res.code == 4, res.err
        doc = res.json()
        [missing] = doc["restore"]["missingClusterResources"]
        assert retired in missing and missing.endswith(": not in the cluster; a restore would create it")
        assert doc["outcome"] == "failed" and "missing cluster-scoped object: " in res.err
        # Nothing outside the scratch namespace changed: the retired role stays gone, the other untouched.
        assert get(kc, rbac, "clusterroles", retired) is None
        after = get(kc, rbac, "clusterroles", kept)
        assert (
            after is not None
            and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        )
    finally:
        for role in (kept, retired):
            kc.request("DELETE", f"/apis/{rbac}/clusterroles/{role}")


def test_an_unknown_backup_is_invalid_input_without_a_report(
    capsys: Capsys, kube_client: KubeClient, kube: Kube, repo: Path, unique: str, app_ns: str
) -> None:
    kc = kube_client
    ns = app_ns
    taken = backup(capsys, kube, "-n", ns)
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", ns, [CM_STEP])
    reports = repo / "reports"

    res = drill(capsys, kube, rb, "--no-data", "--backup", "zzzz", "--report-dir", str(reports))

    assert res.code == 2, res.err
    assert "no backup with id 'zzzz'" in res.err and "Traceback" not in res.err
    assert not reports.exists() and drill_namespaces(kc) == []
    listed = run_dr(capsys, "--kubeconfig", kube.kubeconfig, "report", "drills", "--format", "json")
    assert listed.code == 0 and listed.json()["apps"] == []
    # A prefix of a real backup still works.
    res = drill(capsys, kube, rb, "--no-data", "--backup", taken["id"][:8], "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["backupId"] == taken["id"]


def test_loading_dumps_is_a_phase_of_the_measured_rto(
    capsys: Capsys,
    kube: Kube,
    repo: Path,
    unique: str,
    app_ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    import dr.cli.drill_cmd

    ns = app_ns

    def slow_dumps(*args: Any) -> list[str]:
        time.sleep(1.5)  # a database loading its dump
        return []

    monkeypatch.setattr(dr.cli.drill_cmd, "dump_problems", slow_dumps)
    backup(capsys, kube, "-n", ns)
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", ns, [CM_STEP])

    res = drill(capsys, kube, rb, "-o", "json")

    assert res.code == 0, res.err
    doc = res.json()
    phases = doc["phases"]
    assert phases["loadDumps"] >= 1.5
    assert doc["rtoMeasured"] == pytest.approx(sum(v for v in phases.values() if v is not None))


def test_scratch_network_policies_open_the_configs_endpoints_to_movers_only(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from dr.config import load_config_file
    from dr.deploy.network import config_endpoints
    from dr.drill.run import scratch_manifests
    from dr.runbook.model import Runbook

    cfg = tmp_path / "dr.yaml"
    cfg.write_text(yaml.safe_dump({
        "apiVersion": "dr.dev/v1", "kind": "Config",
        "repositories": [{"name": "main", "url": "s3://backups/dr", "keys": ["vault"],
                          "s3": {"endpoint": "http://seaweed.storage.svc:8333"}}],
        "keyProviders": [{"name": "vault", "uri": "vault://transit/keys/dr",
                          "vault": {"address": "https://vault.example.com:8200"}}],
    }))  # fmt: skip
    rb_path = write_runbook(tmp_path / "rb.yaml", "shop", "shop", [CM_STEP])
    rb = Runbook.model_validate(yaml.safe_load(rb_path.read_text()))
    expires = datetime(2026, 11, 30, tzinfo=UTC)

    manifests = scratch_manifests(
        rb, "drill-x", expires, "dr-system", config_endpoints(load_config_file(cfg))
    )

    policies = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "NetworkPolicy"}
    movers = policies["drill-movers"]
    assert movers["metadata"]["namespace"] == "drill-x"
    # Restore movers and probe Jobs carry dr.dev/mover=true (dr.kube.jobs.temporary_labels).
    assert movers["spec"]["podSelector"] == {"matchLabels": {"dr.dev/mover": "true"}}
    assert movers["spec"]["policyTypes"] == ["Egress"]
    assert movers["spec"]["egress"] == [
        # Vault outside the cluster on 8200, cloud APIs on 443.
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
         "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 8200}]},
        # The in-cluster object store: its namespace and port.
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "storage"}}}],
         "ports": [{"protocol": "TCP", "port": 8333}]},
    ]  # fmt: skip
    # The restored application stays isolated: its policy is unchanged.
    isolation = policies["drill-isolation"]["spec"]
    assert isolation["podSelector"] == {} and all("ipBlock" not in str(r) for r in isolation["egress"])
    # Without endpoints (no config), no extra policy.
    assert "drill-movers" not in {
        m["metadata"]["name"] for m in scratch_manifests(rb, "drill-x", expires, "dr-system")
    }


def test_a_drill_creates_the_mover_egress_policy(
    capsys: Capsys, kube_client: KubeClient, kube: Kube, repo: Path, unique: str, app_ns: str
) -> None:
    kc = kube_client
    ns = app_ns
    scratch = None
    try:
        backup(capsys, kube, "-n", ns)
        rb = write_runbook(repo / "rb.yaml", f"app{unique}", ns, [CM_STEP])
        res = drill(capsys, kube, rb, "--no-data", "--keep", "-o", "json")
        assert res.code == 0, res.err
        scratch = res.json()["namespace"]
        policy = get(kc, "networking.k8s.io/v1", "networkpolicies", "drill-movers", scratch)
        assert policy is not None and policy["spec"]["podSelector"] == {
            "matchLabels": {"dr.dev/mover": "true"}
        }
        # The built-in defaults: a file repository and a local key, so only cloud APIs' HTTPS.
        assert policy["spec"]["egress"] == [
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}
        ]
    finally:
        if scratch:
            kc.request("DELETE", f"/api/v1/namespaces/{scratch}")


def test_cluster_scoped_objects_that_cannot_be_looked_up_are_warnings() -> None:
    """Missing: a restore problem; present: nothing; unreadable (the drill account may not get it): a warning."""
    from dr.drill.run import missing_cluster_resources
    from dr.kube.client import ApiError
    from dr.kube.objects import ResourceItem
    from dr.restore.plan import CLUSTER_SCOPED_SKIP
    from dr.restore.resources import RestoreResult
    from dr.restore.results import ItemResults, RestoreItemResult

    def cluster_scoped(group: str, kind: str, resource: str, name: str, reason: str) -> RestoreItemResult:
        item = ResourceItem(
            group=group, version="v1", kind=kind, resource=resource, namespaced=False, name=name
        )
        return RestoreItemResult(item=item, outcome="skipped", reason=reason)

    results = ItemResults(
        [
            cluster_scoped("storage.k8s.io", "StorageClass", "storageclasses", "gone", CLUSTER_SCOPED_SKIP),
            cluster_scoped("storage.k8s.io", "StorageClass", "storageclasses", "here", CLUSTER_SCOPED_SKIP),
            cluster_scoped("", "PersistentVolume", "persistentvolumes", "pv-1", CLUSTER_SCOPED_SKIP),
            # Skipped for another reason: not looked up at all.
            cluster_scoped("", "PersistentVolume", "persistentvolumes", "pv-2", "never restored: x"),
        ]
    )
    asked: list[str] = []

    class Kube:
        def call(self, method: str, path: str) -> dict[str, Any]:
            asked.append(f"{method} {path}")
            if path.endswith("/gone"):
                raise ApiError(method, path, 404, "NotFound", "not found")
            if path.endswith("/pv-1"):
                raise ApiError(method, path, 403, "Forbidden", "persistentvolumes is forbidden")
            return {}

    warnings: list[str] = []
    missing = missing_cluster_resources(
        Kube(),  # type: ignore[arg-type]
        RestoreResult(backup_id="b", restore_id="r", items=results),
        warnings,
    )
    assert asked == [
        "GET /apis/storage.k8s.io/v1/storageclasses/gone",
        "GET /apis/storage.k8s.io/v1/storageclasses/here",
        "GET /api/v1/persistentvolumes/pv-1",
    ]
    assert missing == ["storageclasses.storage.k8s.io gone: not in the cluster; a restore would create it"]
    assert warnings == [
        "cannot check whether persistentvolumes pv-1 exists: 403 Forbidden: persistentvolumes is forbidden"
    ]


def test_a_drill_restores_what_restore_latest_would(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A drill took the newest backup that had not Failed: an InProgress one (or one
    # without a phase) over an older Completed one. It now proves what `dr restore
    # latest` would restore in an incident: the newest Completed backup, else the newest
    # PartiallyFailed one with a warning, never a Failed or unfinished one.
    from datetime import UTC, datetime, timedelta

    from dr.drill.run import pick_backup
    from dr.errors import DrError
    from dr.repo.snapshots import Snapshot, save_snapshot
    from dr.runbook.model import load_runbook
    from tests.repo_helpers import init_repo, make_store

    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    rb = load_runbook(write_runbook(tmp_path / "rb.yaml", "shop", "shop", [CM_STEP]))
    start = datetime(2026, 11, 1, tzinfo=UTC)

    def backup(phase: str | None, hours: int, ns: str = "shop") -> str:
        snap = Snapshot(kind="backup", time=start + timedelta(hours=hours), namespaces=[ns], phase=phase)
        return save_snapshot(repo, snap).id

    with pytest.raises(DrError, match=r"^no backup of shop in the repository"):
        pick_backup(repo, rb, None)
    failed = backup("Failed", 1)
    with pytest.raises(DrError, match="none is Completed or PartiallyFailed"):
        pick_backup(repo, rb, None)
    partial = backup("PartiallyFailed", 2)
    assert pick_backup(repo, rb, None).id == partial
    assert "no Completed backup of shop; restoring the newest PartiallyFailed one" in caplog.text
    completed = backup("Completed", 3)
    for phase in ("PartiallyFailed", "Failed", "InProgress", None):
        backup(phase, 4)
    backup("Completed", 5, ns="other")  # another app's
    assert pick_backup(repo, rb, None).id == completed
    assert pick_backup(repo, rb, failed[:8]).id == failed  # an id still drills any backup


def test_a_drill_and_the_rendered_runbook_read_the_backup_policys_repository(
    capsys: Capsys, kube: Kube, isolated_home: Path, unique: str, app_ns: str
) -> None:
    # The runbook's backup policy backs up into a repository that is not the default:
    # the drill (no drill policy naming a repository) and the page `dr runbook render`
    # writes looked for the app's backups in the default one and found none.
    home = isolated_home
    config = two_repository_config(
        home,
        capsys,
        backup_policies=[
            {"name": "p", "repository": "other", "schedule": "0 2 * * *", "scope": {"namespaces": [app_ns]}}
        ],
        drill_policies=[{"name": "m", "runbook": "plain.yaml", "schedule": "0 4 1 * *", "backupPolicy": "p"}],
    )
    r = run_dr(capsys, "--config", str(config), "--kubeconfig", kube.kubeconfig, "backup", "--policy", "p",
               "--no-data", "-o", "json")  # fmt: skip
    assert r.code == 0, r.err
    taken = r.json()
    rb = write_runbook(home / "rb.yaml", f"app{unique}", app_ns, [CM_STEP])
    doc = yaml.safe_load(rb.read_text())
    doc["spec"]["backupPolicy"] = "p"
    rb.write_text(yaml.safe_dump(doc, sort_keys=False))

    res = run_dr(capsys, "--config", str(config), "--kubeconfig", kube.kubeconfig, "drill", "run", str(rb),
                 "--no-data", "-o", "json")  # fmt: skip
    assert res.code == 0, res.err
    assert res.json()["backupId"] == taken["id"]
    page = run_dr(capsys, "--config", str(config), "runbook", "render", str(rb))
    assert page.code == 0, page.err
    assert taken["id"][:8] in page.out and "unknown — run" not in page.out, page.out
    # A drill policy naming no repository: its backup policy's, for a runbook that names none
    # (as its CronJob runs it); `dr status` finds the report there.
    plain = write_runbook(home / "plain.yaml", f"plain{unique}", app_ns, [CM_STEP])
    res = run_dr(capsys, "--config", str(config), "--kubeconfig", kube.kubeconfig, "drill", "run", str(plain),
                 "--policy", "m", "--no-data", "-o", "json")  # fmt: skip
    assert res.code == 0, res.err
    assert res.json()["backupId"] == taken["id"]
    res = run_dr(capsys, "--config", str(config), "--kubeconfig", "/nonexistent", "status", "-o", "json")
    (d,) = res.json()["drillPolicies"]
    assert (d["app"], d["outcome"]) == (f"plain{unique}", "passed"), res.err


def test_a_report_dir_that_cannot_be_made_is_invalid_input_before_the_drill_runs(
    capsys: Capsys, kube_client: KubeClient, kube: Kube, repo: Path, unique: str, app_ns: str
) -> None:
    # It used to run the whole drill (scratch namespace, restore, steps, report saved), then end
    # with "error: NotADirectoryError: ..." (exit 1) and print nothing of the result.
    backup(capsys, kube, "-n", app_ns)
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", app_ns, [CM_STEP])
    (repo / "afile").write_text("")
    bad = repo / "afile" / "reports"
    res = drill(capsys, kube, rb, "--no-data", "--report-dir", str(bad), "-o", "json")
    assert (res.code, res.out) == (2, ""), res.err
    assert res.err.splitlines()[-1].startswith(f"error: --report-dir {bad}: cannot create it: ")
    assert drill_namespaces(kube_client) == []
    listed = run_dr(capsys, "--kubeconfig", kube.kubeconfig, "report", "drills", "--format", "json")
    assert listed.code == 0 and listed.json()["apps"] == []


def test_gc_that_deletes_some_namespaces_but_not_others_exits_3(
    capsys: Capsys, kube_client: KubeClient, k8s: servers.TestCluster, repo: Path, unique: str
) -> None:
    # Some items failed, all others done: the contract's exit 3 (it was 1, as if nothing was done).
    kc, rbac = kube_client, "rbac.authorization.k8s.io/v1"
    expired = {"dr.dev/drill": "true", "dr.dev/expires": "1"}
    mine, other = f"drill-gc-a-{unique}", f"drill-gc-b-{unique}"
    for ns in (mine, other):
        make_namespace(kc, ns, expired)
    role = f"gc-{unique}"
    create(kc, "clusterroles", {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": role}, "rules": [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [mine], "verbs": ["delete"]},
    ]})  # fmt: skip
    create(kc, "clusterrolebindings", {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": role},
                                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                   "name": role},
                                       "subjects": [{"kind": "User", "name": "bob",
                                                     "apiGroup": "rbac.authorization.k8s.io"}]})  # fmt: skip
    try:
        res = run_dr(capsys, "--kubeconfig", k8s.kubeconfig_for("bob"), "drill", "gc", "-o", "json")
        assert res.code == 3, res.err
        doc = res.json()
        assert mine in doc["deleted"] and other not in doc["deleted"]
        assert [e for e in doc["errors"] if e.startswith(f"{other}: ")]
        assert [ln for ln in res.err.splitlines() if ln.startswith("error: ")] == [
            f"error: {len(doc['errors'])} namespace(s) could not be deleted"
        ]
    finally:
        kc.request("DELETE", f"/apis/{rbac}/clusterrolebindings/{role}")
        kc.request("DELETE", f"/apis/{rbac}/clusterroles/{role}")
        for ns in (mine, other):
            kc.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_gc_never_deletes_a_drill_labelled_namespace_without_a_valid_expiry(
    capsys: Capsys, kube_client: KubeClient, k8s: servers.TestCluster, repo: Path, unique: str
) -> None:
    # A namespace labelled dr.dev/drill=true but without a readable dr.dev/expires (by hand,
    # or a copy of a drill's manifests) counted as expired and was deleted at once.
    kc = kube_client
    spaces = {
        f"drill-gc-x-{unique}": {"dr.dev/drill": "true", "dr.dev/expires": "1"},
        f"drill-gc-y-{unique}": {"dr.dev/drill": "true"},
        f"drill-gc-z-{unique}": {"dr.dev/drill": "true", "dr.dev/expires": "soon"},
    }
    for ns, labels in spaces.items():
        make_namespace(kc, ns, labels)
    expired, unlabelled, garbled = spaces
    try:
        res = run_dr(capsys, "--kubeconfig", k8s.kubeconfig, "drill", "gc", "-o", "json")
        assert res.code == 3, res.err
        doc = res.json()
        assert (
            expired in doc["deleted"] and unlabelled not in doc["deleted"] and garbled not in doc["deleted"]
        )
        for ns in (unlabelled, garbled):
            assert f"{ns}: labelled dr.dev/drill=true without a valid dr.dev/expires label" in " ".join(
                doc["errors"]
            )
            assert kc.request("GET", f"/api/v1/namespaces/{ns}")[0] == 200
    finally:
        for ns in spaces:
            kc.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_help_names_every_exit_code(capsys: Capsys) -> None:
    # It named 0, 4 and 1; a bad runbook, --backup, --policy or --report-dir exits 2.
    res = run_dr(capsys, "drill", "run", "--help")
    assert res.code == 0
    text = " ".join(res.out.split())
    assert (
        "2 when the runbook, --backup, --policy, --report-dir or --storage-class-mapping is invalid (nothing is run)"
        in text
    )
    # ... and every other code the command returns (3 is gc's alone).
    assert "Exit 0 when the restore was complete and every step passed, 4 when " in text
    assert "1 when the drill could not run" in text and " 3 " not in text


def test_a_report_that_cannot_be_saved_still_prints_the_drills_result(
    capsys: Capsys, kube_client: KubeClient, kube: Kube, repo: Path, unique: str, app_ns: str
) -> None:
    # The drill ran and passed; only saving its report failed. -o json printed nothing at all.
    backup(capsys, kube, "-n", app_ns)
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", app_ns, [CM_STEP])
    reports = repo / "data" / "dr" / "repo" / "reports"
    if reports.is_dir():
        reports.rmdir()
    reports.write_text("")  # where the reports go is a file: the write fails
    res = drill(capsys, kube, rb, "--no-data", "-o", "json")
    assert res.code == 1, res.err
    doc = res.json()
    assert doc["outcome"] == "passed" and doc["reportObject"] is None
    assert res.err.splitlines()[-1].startswith("error: drill passed, but its report could not be saved: ")
    res = drill(capsys, kube, rb, "--no-data")
    assert res.code == 1
    assert res.out.splitlines()[0].endswith(": PASSED") and "  report: not saved" in res.out.splitlines()


def test_the_runbook_pages_latest_backup_is_the_one_a_drill_takes(tmp_path: Path) -> None:
    # A newer `dr backup --no-data` (claims, none of their data) is passed over by the drill
    # (latest_to_restore) and the page's latest good backup alike; with none with data, the newest.
    from datetime import UTC, datetime, timedelta

    from dr.cli.runbook_cmd import latest_backup_for
    from dr.drill.run import pick_backup
    from dr.repo.snapshots import Snapshot, save_snapshot
    from dr.runbook.model import load_runbook
    from tests.repo_helpers import init_repo, make_store

    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    rb = load_runbook(write_runbook(tmp_path / "rb.yaml", "shop", "shop", [CM_STEP]))
    start = datetime(2026, 11, 1, tzinfo=UTC)

    def backup(hours: int, volumes: list[dict[str, Any]]) -> str:
        snap = Snapshot(
            kind="backup", time=start + timedelta(hours=hours), namespaces=["shop"], phase="Completed"
        )
        snap.app = {"counts": {"persistentvolumeclaims": 1}, "volumes": volumes}
        return save_snapshot(repo, snap).id

    first = backup(1, [])
    assert pick_backup(repo, rb, None).id == first
    assert (latest_backup_for(repo, rb) or pytest.fail("none")).id == first
    data = backup(2, [{"namespace": "shop", "name": "d", "bytes": 5}])
    backup(3, [])
    assert pick_backup(repo, rb, None).id == data
    summary = latest_backup_for(repo, rb)
    assert summary is not None and (summary.id, summary.size) == (data, 5)


def _all_rights_but(kc: KubeClient, denied: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    """RBAC rules for every verb on every resource the cluster serves but ``denied``: (group, resource)
    -> verb. RBAC only adds rights: the resources of a group with a denied verb are listed one by one."""
    verbs = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
    paths = {"": "/api/v1", **{g["name"]: f"/apis/{g['preferredVersion']['groupVersion']}"
                               for g in kc.get("/apis")["groups"]}}  # fmt: skip
    limited = {g for g, _ in denied}
    rules: list[dict[str, Any]] = [
        {"apiGroups": [g for g in paths if g not in limited], "resources": ["*"], "verbs": ["*"]}
    ]
    for group in sorted(limited):
        names = [r["name"] for r in kc.get(paths[group])["resources"]]
        rules.append({"apiGroups": [group], "resources": [n for n in names if (group, n) not in denied],
                      "verbs": ["*"]})  # fmt: skip
        rules += [{"apiGroups": [group], "resources": [r], "verbs": [v for v in verbs if v != verb]}
                  for (g, r), verb in denied.items() if g == group]  # fmt: skip
    return rules


@pytest.mark.parametrize("output", ["json", "table"])
def test_what_a_data_step_could_not_check_is_a_warning_of_the_drill(
    capsys: Capsys,
    kube_client: KubeClient,
    kube: Kube,
    repo: Path,
    unique: str,
    app_ns: str,
    monkeypatch: pytest.MonkeyPatch,
    output: str,
) -> None:
    # The drill as an identity that may do everything but read a claim: the data probe cannot check
    # the access modes of the restored claim (a pod of the backup mounts it) and says so; the
    # report lists that under its warnings, as the step's. Nor may it create Jobs, so the probe
    # fails at once after that (the test cluster has no Job controller).
    if kube.cluster.external:
        pytest.skip("runs as an identity of the local test cluster")
    kc, ns, grant = kube_client, app_ns, f"drill-but-pvc-get-{unique}"
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    create(kc, "persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "files"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}, ns)  # fmt: skip
    create(kc, "pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}],
                 "volumes": [{"name": "files", "persistentVolumeClaim": {"claimName": "files"}}]}}, ns)  # fmt: skip
    backup(capsys, kube, "-n", ns, "--no-data")
    data_step = {"name": "files-intact", "type": "data", "pvc": "files", "timeout": "30s",
                 "checks": [{"path": "index.html", "minCount": 1}]}  # fmt: skip
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", ns, [data_step])
    rules = _all_rights_but(kc, {("", "persistentvolumeclaims"): "get", ("batch", "jobs"): "create"})
    kc.call("POST", f"{rbac}/clusterroles", body={"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole", "metadata": {"name": grant}, "rules": rules})  # fmt: skip
    kc.call("POST", f"{rbac}/clusterrolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": grant},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": grant},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]})  # fmt: skip
    if output == "table":
        monkeypatch.setenv("DR_LOG_FORMAT", "text")  # log lines as on a terminal
    try:
        res = run_dr(capsys, "--kubeconfig", kube.cluster.kubeconfig_for("bob"),
                     "drill", "run", str(rb), "--no-data", "-o", output)  # fmt: skip
    finally:
        kc.request("DELETE", f"{rbac}/clusterrolebindings/{grant}")
        kc.request("DELETE", f"{rbac}/clusterroles/{grant}")

    assert res.code == 4, res.out + res.err
    assert drill_namespaces(kc) == []
    if output == "table":
        # Once, in the drill's summary: not also as the probe's log line or the drill's on stderr.
        (scratch,) = {
            ln.split()[2] for ln in res.out.splitlines() if ln.startswith("  scratch namespace(s): ")
        }
        warning = (
            f"cannot read PVC {scratch}/files (its access modes are not checked): 403 Forbidden: "
            f'persistentvolumeclaims "files" is forbidden: User "bob" cannot get resource '
            f'"persistentvolumeclaims" in API group "" in the namespace "{scratch}"'
        )
        assert f"  warning: step files-intact (data): {warning}" in res.out.splitlines(), res.out
        assert (res.out + res.err).count(warning) == 1, res.out + res.err
        return
    doc = res.json()
    (step,) = doc["steps"]
    scratch = doc["namespace"]
    warning = (
        f"cannot read PVC {scratch}/files (its access modes are not checked): 403 Forbidden: "
        f'persistentvolumeclaims "files" is forbidden: User "bob" cannot get resource '
        f'"persistentvolumeclaims" in API group "" in the namespace "{scratch}"'
    )
    assert not step["passed"] and 'cannot create resource "jobs"' in step["error"], step
    assert step["warnings"] == [warning]
    assert f"step files-intact (data): {warning}" in doc["warnings"], doc["warnings"]


def test_the_drills_timeout_bounds_its_verification_steps(
    capsys: Capsys, kube: Kube, repo: Path, unique: str, app_ns: str
) -> None:
    # spec.drill.timeout is the whole drill's ("a drill is stopped after …", says the page); a step
    # with a longer timeout of its own, waiting for an object that never comes, held the drill for
    # its own timeout (here 2 minutes; 36500d is allowed).
    import time

    backup(capsys, kube, "-n", app_ns)
    never = {"name": "never", "type": "resources", "timeout": "2m",
             "expect": [{"kind": "ConfigMap", "names": ["never-there"]}]}  # fmt: skip
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", app_ns, [CM_STEP, never], timeout="5s")
    t0 = time.monotonic()
    res = drill(capsys, kube, rb, "--no-data", "-o", "json")
    took = time.monotonic() - t0
    assert res.code == 4, res.err
    assert took < 60, f"the drill took {took:.0f}s, its timeout is 5s"
    steps = {s["name"]: s for s in res.json()["steps"]}
    assert steps["cm"]["passed"]
    assert not steps["never"]["passed"]
    assert "the drill's timeout (5s) ran out" in steps["never"]["message"], steps["never"]["message"]


@pytest.mark.parametrize(("sig", "code", "why"), [("SIGTERM", 143, "terminated (SIGTERM)"),
                                                  ("SIGINT", 130, "interrupted (Ctrl-C)")])  # fmt: skip
def test_a_stopped_drill_deletes_its_namespace_and_writes_a_report_saying_so(
    capsys: Capsys, kube_client: KubeClient, kube: Kube, repo: Path, unique: str, app_ns: str,
    sig: str, code: int, why: str,
) -> None:  # fmt: skip
    # A scheduled drill stopped by its CronJob's deadline (SIGTERM), or one run by hand and
    # stopped with Ctrl-C, deleted its namespace but wrote no report: `dr report drills` and
    # `dr status` showed the drill before it as the latest, and no metric said it failed.
    import os
    import signal
    import subprocess

    from tests.helpers import DR

    backup(capsys, kube, "-n", app_ns)
    never = {"name": "never", "type": "resources", "timeout": "10m",
             "expect": [{"kind": "ConfigMap", "names": ["never-there"]}]}  # fmt: skip
    app = f"app{unique}"
    rb = write_runbook(repo / "rb.yaml", app, app_ns, [CM_STEP, never], timeout="15m")
    reports = repo / "reports"
    proc = subprocess.Popen(
        [DR, "-vv", "--kubeconfig", kube.kubeconfig, "drill", "run", str(rb), "--no-data",
         "--report-dir", str(reports)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    # Stopped inside the step that never passes: its debug line says the drill got there.
    err_lines: list[str] = []
    in_never = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line)
            if "verification step never" in line:
                in_never.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert in_never.wait(60), "".join(err_lines[-20:])
        time.sleep(0.5)  # past the debug line, into the step's first poll
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=60)
        assert proc.stdout is not None
        out = proc.stdout.read()
        reader.join(10)
        err = "".join(err_lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    [doc] = [json.loads(p.read_text()) for p in reports.glob("*.json")]
    assert doc["outcome"] == "error" and doc["error"] == why, doc
    assert doc["cleanup"]["status"] == "deleted" and doc["cleanup"]["message"] == doc["namespace"]
    assert [s["name"] for s in doc["steps"]] == ["cm"] and doc["steps"][0]["passed"]
    assert f"drill {doc['id']}: ERROR" in out and f"error: {why}" in out
    # In the repository too: the month's report shows the stopped drill as the app's latest.
    res = run_dr(capsys, "report", "drills", "-o", "json")
    [entry] = [a for a in json.loads(res.out)["apps"] if a["app"] == app]
    assert entry["status"] == "error" and entry["latest"]["error"] == why
    # Gone, or going: read from the listing itself (a namespace listed, then finalized before a GET
    # of its own, made that GET a 404).
    listed = kube_client.get("/api/v1/namespaces", {"labelSelector": "dr.dev/drill=true"})["items"]
    left = [n["metadata"] for n in listed if app in n["metadata"]["name"]]
    assert all("deletionTimestamp" in m for m in left), left


def test_a_backup_without_the_apps_namespaces_is_not_drilled(
    capsys: Capsys, kube_client: KubeClient, kube: Kube, isolated_home: Path, unique: str, app_ns: str
) -> None:
    # A backup that holds none of the runbook's namespaces (--backup of another app's, or the newest
    # of a backup policy whose scope no longer names the app) restored nothing, measured an RTO of
    # 2s "met" for it, and the steps failed as if the restore had lost the app's objects.
    home, other = isolated_home, f"other-{unique}"
    make_namespace(kube_client, other)
    try:
        config = two_repository_config(home, capsys, backup_policies=[
            {"name": "p", "schedule": "0 2 * * *", "scope": {"namespaces": [other]}}])  # fmt: skip
        args = ("--config", str(config), "--kubeconfig", kube.kubeconfig)
        r = run_dr(capsys, *args, "backup", "--policy", "p", "--no-data", "-o", "json")
        assert r.code == 0, r.err
        taken = r.json()["id"]
        rb = write_runbook(home / "rb.yaml", f"app{unique}", app_ns, [CM_STEP])

        res = run_dr(capsys, *args, "drill", "run", str(rb), "--no-data", "--backup", taken[:8])
        assert res.code == 2, res.out + res.err
        assert res.err == (
            f"error: --backup {taken[:8]}: backup {taken[:8]} holds no namespace {app_ns} of app{unique} "
            f"(it holds {other}): a drill would restore nothing there\n"
        )
        assert drill_namespaces(kube_client) == []

        doc = yaml.safe_load(rb.read_text())
        doc["spec"]["backupPolicy"] = "p"
        rb.write_text(yaml.safe_dump(doc, sort_keys=False))
        res = run_dr(capsys, *args, "drill", "run", str(rb), "--no-data", "-o", "json")
        assert res.code == 1, res.out + res.err
        d = res.json()
        assert d["outcome"] == "error" and d["rtoMeasured"] is None and d["steps"] == []
        assert d["error"].startswith(f"backup {taken[:8]} holds no namespace {app_ns} of app{unique}"), d
    finally:
        kube_client.request("DELETE", f"/api/v1/namespaces/{other}")


def test_a_drill_reports_the_warnings_of_its_volume_restore_as_dr_restore_prints_them(
    capsys: Capsys,
    kube_client: KubeClient,
    kube: Kube,
    repo: Path,
    unique: str,
    app_ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the data step of a restore says (here: a claim whose data it does not restore) is part of
    # the restore's warnings: `dr restore` printed it, a drill's report dropped it.
    import dr.cli.drill_cmd
    import dr.cli.restore_cmd
    from dr.restore.run import VolumeRestorePhase, VolumeRestoreStep
    from dr.restore.volumes import not_restored

    warning = not_restored([f"{app_ns}/data"])

    def volume_step(*args: Any) -> VolumeRestoreStep:
        return lambda *_: VolumeRestorePhase(warnings=[warning])

    monkeypatch.setattr(dr.cli.drill_cmd, "volume_restore_step", volume_step)
    monkeypatch.setattr(dr.cli.restore_cmd, "volume_restore_step", volume_step)
    backup(capsys, kube, "-n", app_ns, "--include-cluster-resources", "false")
    rb = write_runbook(repo / "rb.yaml", f"app{unique}", app_ns, [CM_STEP])
    copy = f"copy-{unique}"

    res = drill(capsys, kube, rb, "-o", "json")
    restored = run_dr(capsys, "--kubeconfig", kube.kubeconfig, "restore", "latest",
                      "--namespace-mapping", f"{app_ns}={copy}")  # fmt: skip
    kube_client.request("DELETE", f"/api/v1/namespaces/{copy}")

    assert res.code == 0, res.err
    assert warning in res.json()["warnings"]
    assert restored.code == 0, restored.err
    assert restored.err.count(f"warning: {warning}") == 1, restored.err
