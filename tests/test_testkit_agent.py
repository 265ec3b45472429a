"""The test node agent's controller and kubelet stand-ins (``dr.testkit.agent``) against the test cluster.

What the drill and demo tests rely on beyond the mover Jobs (those are
exercised by ``tests/test_volumes*.py``): the default StorageClass, volume
reclaim, workload status once the claims are bound (StatefulSet claim
templates, DaemonSets per node), Jobs of dr's image run with their
termination message, and Jobs of any other image failing ``ImageNotRunnable``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dr.kube.client import KubeClient
from dr.testkit.agent import DR, NodeAgent, image_repository, wait_until, workload_status
from dr.testkit.cluster import install_storage, remove_storage
from tests.volume_helpers import create_namespace

APPS = "/apis/apps/v1/namespaces/{ns}/{plural}"


@pytest.fixture
def cluster(
    kube_client: KubeClient, tmp_path: Path, unique: str, k8s: Any, snapshot_crds: None
) -> Iterator[tuple[KubeClient, NodeAgent, str]]:
    """A namespace managed by pattern, a default StorageClass, and an agent with 3 nodes."""
    if k8s.external:
        pytest.skip("the node agent stands in for kubelets; DR_TEST_KUBECONFIG points at a real cluster")
    ns = f"agent-{unique}"
    create_namespace(kube_client, ns)
    storage = f"agent-{unique}"
    install_storage(kube_client, storage, driver=f"{unique}.csi", default=True)
    agent = NodeAgent(kube_client, tmp_path / "node", namespace_pattern=f"^{ns}$", nodes=3).start()
    try:
        yield kube_client, agent, ns
    finally:
        agent.stop()
        kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")
        remove_storage(kube_client, storage)
    assert not agent.errors, agent.errors


def pod_template(claims: list[str], image: str = "app:1") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "a"}},
        "spec": {
            "containers": [{"name": "app", "image": image}],
            "volumes": [
                {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)
            ],
        },
    }


def workload(kind: str, name: str, claims: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": pod_template(claims), **spec},
    }


def pvc(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip


def status_of(kc: KubeClient, ns: str, plural: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = kc.get(APPS.format(ns=ns, plural=plural) + f"/{name}").get("status") or {}
    return status


def test_workloads_become_ready_once_their_claims_are_bound(
    cluster: tuple[KubeClient, NodeAgent, str],
) -> None:
    kc, agent, ns = cluster
    kc.call("POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body=pvc("data"))
    for plural, obj in (
        ("deployments", workload("Deployment", "web", ["data"], replicas=2)),
        ("deployments", workload("Deployment", "orphan", ["never-created"])),
        ("statefulsets", workload("StatefulSet", "db", [], replicas=2, volumeClaimTemplates=[
            {"metadata": {"name": "pgdata"}, "spec": pvc("x")["spec"]}])),
        ("daemonsets", workload("DaemonSet", "agent", [])),
        ("replicasets", workload("ReplicaSet", "rs", ["data"], replicas=1)),
    ):  # fmt: skip
        kc.call("POST", APPS.format(ns=ns, plural=plural), body=obj)

    wait_until(lambda: status_of(kc, ns, "deployments", "web").get("readyReplicas") == 2, what="web ready")
    claim = kc.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
    # The default class was assigned (retroactively, like the PV controller) and the claim bound.
    assert claim["spec"]["storageClassName"] == f"agent-{ns.removeprefix('agent-')}"
    assert claim["status"]["phase"] == "Bound" and agent.volume_dir(ns, "data").is_dir()
    web = status_of(kc, ns, "deployments", "web")
    assert (web["replicas"], web["availableReplicas"], web["updatedReplicas"], web["observedGeneration"]) == (
        2,
        2,
        2,
        1,
    )
    # StatefulSet claims from the templates, named like the controller names them.
    wait_until(lambda: status_of(kc, ns, "statefulsets", "db").get("readyReplicas") == 2, what="db ready")
    names = {
        p["metadata"]["name"] for p in kc.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims")["items"]
    }
    assert names == {"data", "pgdata-db-0", "pgdata-db-1"}
    wait_until(lambda: status_of(kc, ns, "daemonsets", "agent").get("numberReady") == 3, what="agent ready")
    assert status_of(kc, ns, "daemonsets", "agent")["desiredNumberScheduled"] == 3
    wait_until(lambda: status_of(kc, ns, "replicasets", "rs").get("readyReplicas") == 1, what="rs ready")
    # A claim that does not exist keeps the pods from starting: replicas counted, none ready.
    orphan = status_of(kc, ns, "deployments", "orphan")
    # (the API server leaves out zero counts)
    assert (orphan["replicas"], orphan.get("readyReplicas", 0), orphan["unavailableReplicas"]) == (1, 0, 1)

    # Reclaim policy Delete: the volume goes with its claim.
    kc.call("DELETE", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
    wait_until(lambda: not agent.volume_dir(ns, "data").exists(), what="volume reclaimed")


def job(
    name: str, image: str, args: list[str], *, claim: str | None = None, command: list[str] | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": image, "args": args,
                                 "terminationMessagePolicy": "FallbackToLogsOnError"}  # fmt: skip
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if command:
        container["command"] = command
    if claim:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": spec}}}  # fmt: skip


def finished(kc: KubeClient, ns: str, name: str) -> dict[str, Any] | None:
    obj = kc.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")
    conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
    return conds.get("Complete") or conds.get("Failed")


def terminated(kc: KubeClient, ns: str, job_name: str) -> dict[str, Any]:
    pods = kc.get(f"/api/v1/namespaces/{ns}/pods", {"labelSelector": f"job-name={job_name}"})["items"]
    state: dict[str, Any] = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    return state


def test_jobs_of_drs_image_run_with_their_termination_message(
    cluster: tuple[KubeClient, NodeAgent, str],
) -> None:
    kc, agent, ns = cluster
    kc.call("POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body=pvc("files"))
    wait_until(lambda: agent.volume_dir(ns, "files").is_dir(), what="files bound")
    (agent.volume_dir(ns, "files") / "a.txt").write_text("a\n")
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    kc.call("POST", path, body=job("probe", "ghcr.io/dr-project/dr:1.0", ["mover", "probe", "/data", "--path", "a.txt"],
                                   claim="files"))  # fmt: skip
    kc.call("POST", path, body=job("bad", "ghcr.io/dr-project/dr@sha256:" + "0" * 64, ["no-such-command"]))
    # A mount path that this machine's dr lies below (the demo's venv under /tmp, an emptyDir at /tmp):
    # the container's paths are rewritten, the executable standing in for its entrypoint is not.
    shadow = job("shadow", "ghcr.io/dr-project/dr:1.0", ["--version"])
    shadow["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "t", "mountPath": str(Path(DR).parents[2])}
    ]
    shadow["spec"]["template"]["spec"]["volumes"] = [{"name": "t", "emptyDir": {}}]
    kc.call("POST", path, body=shadow)

    assert wait_until(lambda: finished(kc, ns, "probe"), what="probe done")["type"] == "Complete"
    # dr wrote its answer to the file the kubelet reads (DR_TERMINATION_LOG here): the pod's message.
    answer = json.loads(terminated(kc, ns, "probe")["message"])
    assert answer["paths"]["a.txt"]["kind"] == "file"
    bad = wait_until(lambda: finished(kc, ns, "bad"), what="bad done")
    assert (bad["type"], bad["reason"]) == ("Failed", "BackoffLimitExceeded")
    state = terminated(kc, ns, "bad")
    # Nothing in the file and a failure: the log tail (FallbackToLogsOnError).
    assert state["exitCode"] == 2 and "no-such-command" in state["message"]
    assert wait_until(lambda: finished(kc, ns, "shadow"), what="shadow done")["type"] == "Complete"
    assert {r.name: r.kind for r in agent.runs} == {"probe": "dr", "bad": "dr", "shadow": "dr"}


def test_jobs_the_agent_cannot_run_fail_image_not_runnable(
    cluster: tuple[KubeClient, NodeAgent, str],
) -> None:
    kc, agent, ns = cluster
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    kc.call("POST", path, body=job("smoke", "ghcr.io/acme/smoke-tests:2", ["--checkout"]))
    kc.call("POST", path, body=job("shell", "ghcr.io/dr-project/dr:1.0", ["-c", "true"], command=["/bin/sh"]))

    smoke = wait_until(lambda: finished(kc, ns, "smoke"), what="smoke done")
    assert (smoke["type"], smoke["reason"]) == ("Failed", "ImageNotRunnable")
    assert "cannot run image 'ghcr.io/acme/smoke-tests:2'" in smoke["message"]
    assert terminated(kc, ns, "smoke")["reason"] == "ImageNotRunnable"
    shell = wait_until(lambda: finished(kc, ns, "shell"), what="shell done")
    assert shell["reason"] == "ImageNotRunnable" and "'/bin/sh'" in shell["message"]
    assert all(r.kind == "refused" and r.outcome == "refused" and not r.argv for r in agent.runs)


def test_image_repository_and_workload_status() -> None:
    assert image_repository("ghcr.io/dr-project/dr:1.2") == "ghcr.io/dr-project/dr"
    assert image_repository("localhost:5000/dr@sha256:abc") == "localhost:5000/dr"
    assert image_repository("localhost:5000/dr") == "localhost:5000/dr"
    sts = {"metadata": {"generation": 3}, "spec": {"replicas": 0}}
    assert workload_status("StatefulSet", sts, True) == {
        "observedGeneration": 3, "replicas": 0, "readyReplicas": 0, "availableReplicas": 0,
        "updatedReplicas": 0, "currentReplicas": 0,
    }  # fmt: skip
    ds = workload_status("DaemonSet", {"metadata": {}}, False, nodes=2)
    assert (ds["desiredNumberScheduled"], ds["numberReady"], ds["numberUnavailable"]) == (2, 0, 2)
