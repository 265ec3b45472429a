"""Drill acceptance: the web-app example backed up and drilled through the real commands.

The test cluster with the node agent (``dr.testkit.agent``) managing the app's
namespace and every drill namespace of it; the repository on SeaweedFS with a
key wrapped by OpenBao (``mover_env``). The example (``examples/webapp``) is
deployed, its canary files written onto its volume, ``dr backup -n webapp``
copies the data through mover Jobs, and ``dr drill run runbooks/webapp.yaml``
restores into a scratch namespace and runs the runbook's checks: objects,
readiness, the data probe Job, a Job of dr's image. Then: a check that cannot
pass (exit 4, the report says which and why, the namespace is gone), and a
drill killed mid-way whose namespace ``dr drill gc`` removes once expired.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.kube.client import KubeClient
from dr.testkit import webapp
from dr.testkit.agent import DR, NodeAgent, wait_until
from dr.testkit.cluster import install_storage, remove_storage
from tests.conftest import Kube
from tests.helpers import Result, run_dr
from tests.test_cli_volumes import write_mover_config
from tests.volume_helpers import MoverEnv

Capsys = pytest.CaptureFixture[str]
DRILL_SELECTOR = {"labelSelector": "dr.dev/drill=true,dr.dev/drill-app=webapp"}


@dataclass
class Web:
    kc: KubeClient
    agent: NodeAgent
    config: str
    kubeconfig: str
    home: Path

    def args(self, *args: str) -> list[str]:
        return ["--config", self.config, "--kubeconfig", self.kubeconfig, *args]

    def dr(self, capsys: Capsys, *args: str) -> Result:
        return run_dr(capsys, *self.args(*args))

    def drill_namespaces(self) -> list[str]:
        return [n["metadata"]["name"] for n in self.kc.get("/api/v1/namespaces", DRILL_SELECTOR)["items"]]

    def runbook_variant(self, name: str, change: Any) -> Path:
        doc = yaml.safe_load(webapp.RUNBOOK.read_text())
        change(doc["spec"])
        path = self.home / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path


@pytest.fixture
def web(
    kube_client: KubeClient,
    kube: Kube,
    snapshot_crds: None,
    mover_env: MoverEnv,
    isolated_home: Path,
    unique: str,
) -> Iterator[Web]:
    """The web-app example deployed in ``webapp`` with its content on the volume, and an agent for it and its drills."""
    if kube.cluster.external:
        pytest.skip("the node agent stands in for kubelets; DR_TEST_KUBECONFIG points at a real cluster")
    kc = kube_client
    storage = f"web-{unique}"
    install_storage(kc, storage, driver=f"{unique}.hostpath.csi.k8s.io", default=True)
    agent = NodeAgent(
        kc,
        isolated_home / "node",
        {mover_env.mover_namespace},
        namespace_pattern=r"^(webapp|drill-webapp-.+)$",
    ).start()
    try:
        webapp.deploy(kc)
        pvc = f"/api/v1/namespaces/{webapp.NAMESPACE}/persistentvolumeclaims/{webapp.PVC}"
        wait_until(lambda: kc.get(pvc).get("status", {}).get("phase") == "Bound", what="uploads bound")
        webapp.write_content(agent.volume_dir(webapp.NAMESPACE, webapp.PVC))
        yield Web(kc, agent, write_mover_config(mover_env, isolated_home), kube.kubeconfig, isolated_home)
    finally:
        for ns in [
            webapp.NAMESPACE,
            *(n["metadata"]["name"] for n in kc.get("/api/v1/namespaces", DRILL_SELECTOR)["items"]),
        ]:
            kc.request("DELETE", f"/api/v1/namespaces/{ns}")
        agent.stop()
        remove_storage(kc, storage)
    assert not agent.errors, agent.errors


def backup(capsys: Capsys, web: Web) -> dict[str, Any]:
    res = web.dr(capsys, "backup", "-n", webapp.NAMESPACE, "-o", "json")
    assert res.code == 0, res.err
    doc: dict[str, Any] = res.json()
    assert [(v["pvc"], v["method"], v["files"]) for v in doc["volumes"]] == [("uploads", "snapshot", 14)]
    return doc


def test_drill_of_the_webapp_passes_and_writes_reports(capsys: Capsys, web: Web, tmp_path: Path) -> None:
    taken = backup(capsys, web)
    reports = tmp_path / "reports"

    res = web.dr(capsys, "drill", "run", str(webapp.RUNBOOK), "--report-dir", str(reports), "-o", "json")

    assert res.code == 0, res.out + res.err
    report = res.json()
    assert report["outcome"] == "passed" and report["backupId"] == taken["id"]
    assert {s["name"]: s["passed"] for s in report["steps"]} == {
        "objects-restored": True,
        "web-ready": True,
        "uploads-intact": True,
        "dr-image-runs": True,
    }
    data = next(s for s in report["steps"] if s["type"] == "data")
    assert data["message"] == (
        "PVC uploads: canary/canary.txt sha256 matches, gallery 12 files, index.html sha256 matches"
    )
    scratch = report["namespace"]
    assert scratch.startswith("drill-webapp-") and report["cleanup"]["status"] == "deleted"
    assert web.drill_namespaces() == []
    assert report["phases"]["restoreData"] > 0 and report["rtoMeasured"] > 0
    # Reports: JSON (the report itself), Markdown and HTML views.
    files = sorted(p.name for p in reports.iterdir())
    assert files == sorted(f"{report['id']}.{ext}" for ext in ("json", "md", "html"))
    assert json.loads((reports / f"{report['id']}.json").read_text())["outcome"] == "passed"
    assert "uploads-intact" in (reports / f"{report['id']}.md").read_text()
    assert "<html" in (reports / f"{report['id']}.html").read_text().lower()
    # What ran in the scratch namespace: the data restore mover, the probe Job, dr's image for the job step.
    ran = [(r.kind, r.outcome) for r in web.agent.runs if r.namespace == scratch]
    assert sorted(ran) == [("dr", "succeeded"), ("mover", "succeeded"), ("mover", "succeeded")]
    probe = next(r for r in web.agent.runs if r.namespace == scratch and "probe" in r.argv)
    assert (
        probe.termination_message and json.loads(probe.termination_message)["paths"]["gallery"]["count"] == 12
    )


def test_a_check_that_cannot_pass_fails_the_drill_with_exit_4(
    capsys: Capsys, web: Web, tmp_path: Path
) -> None:
    backup(capsys, web)

    def thirteen(spec: dict[str, Any]) -> None:
        step = next(s for s in spec["verification"] if s["name"] == "uploads-intact")
        next(c for c in step["checks"] if c["path"] == "gallery")["count"] = 13

    runbook = web.runbook_variant("webapp-wrong-count.yaml", thirteen)
    reports = tmp_path / "reports"

    res = web.dr(capsys, "drill", "run", str(runbook), "--report-dir", str(reports))

    assert res.code == 4, res.out + res.err
    why = "step uploads-intact (data): PVC uploads: gallery: 12 files, expected 13"
    assert why in res.err and "[FAIL] uploads-intact (data)" in res.out
    report = json.loads(next(reports.glob("*.json")).read_text())
    assert report["outcome"] == "failed"
    failed = [s for s in report["steps"] if not s["passed"]]
    assert [(s["name"], s["message"]) for s in failed] == [
        ("uploads-intact", "PVC uploads: gallery: 12 files, expected 13")
    ]
    assert "gallery: 12 files, expected 13" in next(reports.glob("*.md")).read_text()
    assert report["cleanup"]["status"] == "deleted" and web.drill_namespaces() == []


def test_killed_drill_leaves_a_namespace_that_gc_removes_once_expired(capsys: Capsys, web: Web) -> None:
    backup(capsys, web)

    def never_passes(spec: dict[str, Any]) -> None:
        # A first check that keeps the drill busy until it is killed.
        spec["verification"].insert(0, {"name": "never", "type": "resources", "timeout": "10m",
                                        "expect": [{"kind": "ConfigMap", "names": ["not-in-the-backup"]}]})  # fmt: skip

    runbook = web.runbook_variant("webapp-slow.yaml", never_passes)
    proc = subprocess.Popen(
        [DR, *web.args("drill", "run", str(runbook))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        scratch = wait_until(web.drill_namespaces, timeout=60, what="the scratch namespace")[0]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert web.drill_namespaces() == [scratch]

    # Not expired yet (ttl 24h): gc keeps it.
    res = web.dr(capsys, "drill", "gc")
    assert res.code == 0, res.err
    assert "deleted 0 expired drill namespace(s); 1 still within their expiry" in res.out
    assert web.drill_namespaces() == [scratch]

    # Time passes: its expiry lies in the past now.
    web.kc.call(
        "PATCH",
        f"/api/v1/namespaces/{scratch}",
        body={"metadata": {"labels": {"dr.dev/expires": str(int(time.time()) - 60)}}},
        content_type="application/merge-patch+json",
    )
    res = web.dr(capsys, "drill", "gc", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["deleted"] == [scratch] and doc["kept"] == [] and doc["errors"] == []
    assert web.drill_namespaces() == []


def _shipped_roles(k8s_dr: Any, ns: str) -> None:
    """dr's namespace with the shipped service accounts and roles, and the snapshot CRDs."""
    if k8s_dr.external:
        pytest.skip("needs the tokens of dr's service accounts (local test cluster)")
    from kubernetes import client

    from dr.deploy import rbac
    from dr.kube.client import connect
    from dr.testkit.cluster import install_snapshot_crds
    from tests.deploy_support import api_as, served, server_side_apply

    api = api_as(k8s_dr)
    try:
        try:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        except client.ApiException as e:
            if e.status != 409:
                raise
        for obj in rbac.rbac_manifests(ns):
            if served(api, obj):
                server_side_apply(api, obj)
    finally:
        api.close()
    with connect(k8s_dr.kubeconfig, None) as admin:
        install_snapshot_crds(admin)


def test_gc_as_the_drill_account_cleans_what_crashed_runs_left(
    capsys: Capsys, k8s_dr: Any, unique: str
) -> None:
    """Under the shipped roles (RBAC on): gc looks only where the drill account may, and may delete what it finds."""
    from dr.deploy import rbac
    from dr.kube.client import connect

    ns, past, later = "dr-system", str(int(time.time()) - 60), str(int(time.time()) + 3600)
    _shipped_roles(k8s_dr, ns)
    with connect(k8s_dr.kubeconfig, None) as admin:

        def labels(expires: str) -> dict[str, str]:
            return {"dr.dev/mover": "true", "dr.dev/run": f"crashed-{unique}", "dr.dev/expires": expires}

        snap_api = "/apis/snapshot.storage.k8s.io/v1"
        made = {
            f"Job {ns}/gc-{unique}": (f"/apis/batch/v1/namespaces/{ns}/jobs", {"apiVersion": "batch/v1", "kind": "Job",
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}),
            f"PersistentVolumeClaim {ns}/gc-{unique}": (f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
                {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}),
            f"VolumeSnapshot {ns}/gc-{unique}": (f"{snap_api}/namespaces/{ns}/volumesnapshots",
                {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot", "spec": {}}),
            f"VolumeSnapshotContent gc-{unique}": (f"{snap_api}/volumesnapshotcontents",
                {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent", "spec": {}}),
        }  # fmt: skip
        for path, obj in made.values():
            admin.call(
                "POST", path, body={**obj, "metadata": {"name": f"gc-{unique}", "labels": labels(past)}}
            )
        admin.call("POST", f"/apis/batch/v1/namespaces/{ns}/jobs",
                   body={**made[f"Job {ns}/gc-{unique}"][1],
                         "metadata": {"name": f"running-{unique}", "labels": labels(later)}})  # fmt: skip
        expired, kept = f"drill-gc-{unique}", f"drill-gc-{unique}-kept"
        for name, when in ((expired, past), (kept, later)):
            admin.call("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": name, "labels": {"dr.dev/drill": "true", "dr.dev/expires": when}}})  # fmt: skip
            # As a drill leaves it: the binding that gives the drill account its rights there.
            admin.call("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{name}/rolebindings",
                       body=rbac.drill_workspace_binding(name, ns))  # fmt: skip
        try:
            drill = f"system:serviceaccount:{ns}:{rbac.DRILL_SA}"
            # --dry-run lists the leftovers it would delete too (it listed only namespaces), and
            # deletes nothing.
            res = run_dr(
                capsys, "--kubeconfig", k8s_dr.kubeconfig_for(drill), "drill", "gc", "--dry-run", "-o", "json"
            )
            assert res.code == 0, res.err
            doc = res.json()
            assert (
                doc["dryRun"] and expired in doc["deleted"] and set(made) <= set(doc["leftovers"]["deleted"])
            )
            assert f"Job {ns}/running-{unique}" not in doc["leftovers"]["deleted"]
            assert all(admin.request("GET", path + f"/gc-{unique}")[0] == 200 for path, _ in made.values())
            res = run_dr(capsys, "--kubeconfig", k8s_dr.kubeconfig_for(drill), "drill", "gc", "--dry-run")
            assert f"would delete {len(made)} leftover temporary object(s): " in res.out, res.out

            res = run_dr(capsys, "--kubeconfig", k8s_dr.kubeconfig_for(drill), "drill", "gc", "-o", "json")

            assert res.code == 0, res.err
            doc = res.json()
            assert expired in doc["deleted"] and kept in doc["kept"] and doc["errors"] == []
            assert doc["leftovers"]["errors"] == []
            assert set(made) <= set(doc["leftovers"]["deleted"])
            assert admin.get(f"/apis/batch/v1/namespaces/{ns}/jobs/running-{unique}")["metadata"]["name"]
        finally:
            admin.request("DELETE", f"/apis/batch/v1/namespaces/{ns}/jobs/running-{unique}")
            admin.request("DELETE", f"/api/v1/namespaces/{kept}")


def test_gc_leaves_a_snapshot_it_cannot_switch_from_retain_to_the_backup_account(
    capsys: Capsys, k8s_dr: Any, unique: str
) -> None:
    """A crashed backup's VolumeSnapshot whose content says Retain goes only with its content switched
    to Delete (else the storage snapshot stays, its content unlabelled: nothing finds it again). The
    drill account running gc may not patch contents (its role deletes them: with patch too it could
    destroy any kept storage snapshot); it deleted the snapshot all the same, leaking the storage
    snapshot with a warning. Now gc leaves it, and the backup account's sweep switches and deletes it."""
    from dr.deploy import rbac
    from dr.kube.client import connect
    from dr.kube.jobs import cleanup_leftovers

    ns, past = "dr-system", str(int(time.time()) - 60)
    _shipped_roles(k8s_dr, ns)
    snap_api = "/apis/snapshot.storage.k8s.io/v1"
    name, content = f"gc-retain-{unique}", f"snapcontent-{unique}"
    with connect(k8s_dr.kubeconfig, None) as admin:
        labels = {"dr.dev/mover": "true", "dr.dev/run": f"crashed-{unique}", "dr.dev/expires": past}
        admin.call("POST", f"{snap_api}/namespaces/{ns}/volumesnapshots", body={
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": name, "labels": labels},
            "spec": {"source": {"persistentVolumeClaimName": "data"}, "volumeSnapshotClassName": "retain"}})  # fmt: skip
        admin.call("PATCH", f"{snap_api}/namespaces/{ns}/volumesnapshots/{name}/status",
                   body={"status": {"boundVolumeSnapshotContentName": content, "readyToUse": True}},
                   content_type="application/merge-patch+json")  # fmt: skip
        # As the snapshot controller makes it: unlabelled, dynamic (source.volumeHandle), the class's Retain.
        admin.call("POST", f"{snap_api}/volumesnapshotcontents", body={
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": content},
            "spec": {"deletionPolicy": "Retain", "driver": "hostpath.csi.k8s.io",
                     "source": {"volumeHandle": f"vol-{unique}"},
                     "volumeSnapshotRef": {"kind": "VolumeSnapshot", "namespace": ns, "name": name}}})  # fmt: skip
        try:
            drill = f"system:serviceaccount:{ns}:{rbac.DRILL_SA}"
            res = run_dr(capsys, "--kubeconfig", k8s_dr.kubeconfig_for(drill), "drill", "gc", "-o", "json")

            assert res.code == 0, res.err
            leftovers = res.json()["leftovers"]
            assert f"VolumeSnapshot {ns}/{name}" not in leftovers["deleted"]
            (problem,) = [e for e in leftovers["errors"] if name in e]
            assert problem.startswith(
                f"VolumeSnapshot {ns}/{name} left for the backup account's cleanup: its VolumeSnapshotContent "
                f"{content} has deletionPolicy Retain and this account cannot switch it to Delete ("
            ), problem
            assert admin.get(f"{snap_api}/namespaces/{ns}/volumesnapshots/{name}")["metadata"]["name"] == name
            assert (
                admin.get(f"{snap_api}/volumesnapshotcontents/{content}")["spec"]["deletionPolicy"]
                == "Retain"
            )

            # The next backup sweeps dr's namespace as the backup account, which may patch.
            backup = f"system:serviceaccount:{ns}:{rbac.BACKUP_SA}"
            with connect(k8s_dr.kubeconfig_for(backup), None) as kube:
                swept = cleanup_leftovers(kube, time.time(), namespaces=[ns])
            assert f"VolumeSnapshot {ns}/{name}" in swept.deleted and swept.errors == [], swept
            assert (
                admin.get(f"{snap_api}/volumesnapshotcontents/{content}")["spec"]["deletionPolicy"]
                == "Delete"
            )
            assert admin.request("GET", f"{snap_api}/namespaces/{ns}/volumesnapshots/{name}")[0] == 404
        finally:
            admin.request("DELETE", f"{snap_api}/namespaces/{ns}/volumesnapshots/{name}")
            admin.request("DELETE", f"{snap_api}/volumesnapshotcontents/{content}")


def test_a_backup_of_another_cluster_is_drilled_with_its_storage_class_mapped(
    capsys: Capsys, web: Web, unique: str
) -> None:
    # The backup's claim (and the backup) has class web-<unique>; this cluster, as one recovering
    # from another, has only other-<unique>, of the same driver.
    backup(capsys, web)
    old, new = f"web-{unique}", f"other-{unique}"
    remove_storage(web.kc, old)
    install_storage(web.kc, new, driver=f"{unique}.hostpath.csi.k8s.io", default=False)
    try:
        res = web.dr(capsys, "drill", "run", str(webapp.RUNBOOK))
        assert res.code == 4, res.out + res.err
        assert (
            f"storageclasses.storage.k8s.io {old}: not in the cluster; a restore would create it" in res.err
        )

        # The runbook's mapping: the drill restores with the class this cluster has. An entry no
        # claim of this backup uses (the runbook stands for backups of several clusters) is a
        # warning, not a drill that cannot run.
        mapped = web.runbook_variant("webapp-mapped.yaml", lambda spec: spec.setdefault("drill", {}).update(
            storageClassMapping={old: new, f"gone-{unique}": new}))  # fmt: skip
        res = web.dr(capsys, "drill", "run", str(mapped), "-o", "json")
        assert res.code == 0, res.out + res.err
        assert res.json()["outcome"] == "passed"
        assert f"storage class mapping gone-{unique}={new}: no claim" in res.out + res.err
        # Typed on the command line, the same unused mapping is a mistake, refused as dr restore
        # refuses it (exit 2) before anything is made: it was exit 1 after the drill had made its
        # scratch namespace and saved an error report.
        namespaces = {n["metadata"]["name"] for n in web.kc.get("/api/v1/namespaces")["items"]}
        res = web.dr(capsys, "drill", "run", str(mapped), "--storage-class-mapping", f"gone-{unique}={new}")
        assert res.code == 2, res.out + res.err
        assert f"--storage-class-mapping gone-{unique}={new}: no claim" in res.err
        assert res.out == ""  # no drill summary, no report
        assert {n["metadata"]["name"] for n in web.kc.get("/api/v1/namespaces")["items"]} <= namespaces

        # --storage-class-mapping overrides the runbook's for the same class.
        wrong = web.runbook_variant("webapp-wrong-class.yaml", lambda spec: spec.setdefault("drill", {}).update(
            storageClassMapping={old: "no-such-class"}))  # fmt: skip
        res = web.dr(capsys, "drill", "run", str(wrong), "--storage-class-mapping", f"{old}={new}", "--keep",
                     "-o", "json")  # fmt: skip
        assert res.code == 0, res.out + res.err
        report = res.json()
        assert report["outcome"] == "passed" and report["restore"]["missingClusterResources"] == []
        claim = web.kc.get(f"/api/v1/namespaces/{report['namespace']}/persistentvolumeclaims/{webapp.PVC}")
        assert claim["spec"]["storageClassName"] == new
    finally:
        remove_storage(web.kc, new)
