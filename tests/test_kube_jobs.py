"""Mover Jobs: the spec (hardened, secrets by reference only), following a Job, explaining failures, leftovers.

The spec is checked against the Kubernetes 1.36 schema (strict). Following and
cleanup run against the test cluster, with Job and Pod statuses written
through the status subresource as the Job controller and kubelet would.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta
from typing import Any, cast

import kubernetes_validate
import pytest

from dr.config import MoverOptions, Resources
from dr.drill.probe_job import JobDataProbe
from dr.kube.client import KubeClient, connect
from dr.kube.jobs import (
    JOBS,
    JobOutcome,
    MoverContext,
    MoverJob,
    MoverPodConfig,
    TemporaryObjects,
    check_mover_namespace,
    cleanup_leftovers,
    create_job,
    expiry,
    follow_job,
    key_file_source,
    mover_job,
    object_name,
    summary_from_log,
    temporary_labels,
)
from dr.kube.snapshots import PVCS, VOLUME_SNAPSHOT_CONTENTS, VOLUME_SNAPSHOTS, delete_snapshot
from tests import servers

K8S_SCHEMA = "1.36.0"


def pod_config(**kw: Any) -> MoverPodConfig:
    base: dict[str, Any] = {
        "image": "ghcr.io/dr-project/dr:1.2.3",
        "resources": Resources(requests={"cpu": "500m", "memory": "512Mi"}, limits={"memory": "2Gi"}),
        "deadline": timedelta(hours=2),
        "credentials_secret": "dr-repository-credentials",
        "extra_files": (key_file_source("dr-repo-key", "repo.key", "keys/repo.key"),),
    }
    return MoverPodConfig(**{**base, **kw})


def a_job(**kw: Any) -> MoverJob:
    base: dict[str, Any] = {
        "name": "dr-backup-data-0123abcd",
        "namespace": "dr-system",
        "args": ["--repo", "s3://b/p", "mover", "backup", "/data", "-o", "json"],
        "claim": "tmp-claim",
        "read_only": True,
        "run_id": "b" * 64,
        "expires": 1_900_000_000,
    }
    return MoverJob(**{**base, **kw})


# --------------------------------------------------------------------------- the spec


def test_mover_job_is_hardened_labelled_and_valid() -> None:
    job = mover_job(a_job(service_account="dr"), pod_config())
    kubernetes_validate.validate(job, K8S_SCHEMA, strict=True)
    meta, spec = job["metadata"], job["spec"]
    for labels in (meta["labels"], spec["template"]["metadata"]["labels"]):
        assert labels["app.kubernetes.io/name"] == "dr"  # dr's NetworkPolicy lets these pods out
        assert labels["dr.dev/mover"] == "true"
        assert labels["dr.dev/expires"] == "1900000000"
        assert labels["dr.dev/run"] == "b" * 63  # a label value holds at most 63 characters...
    assert meta["annotations"]["dr.dev/run-id"] == "b" * 64  # ...the annotation the whole id
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlSecondsAfterFinished"] == 3600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "dr" and pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/dr-project/dr:1.2.3"
    assert c["args"] == ["--repo", "s3://b/p", "mover", "backup", "/data", "-o", "json"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/data"]["readOnly"] is True and mounts["/etc/dr"]["readOnly"] is True
    assert "/tmp" in mounts  # the only writable place besides a restore's /data
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "tmp-claim", "readOnly": True}
    # Room for the repository index (dr.repo.index): ~19 million blobs as one loads.
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "4Gi"}
    assert volumes["config"]["projected"]["sources"] == [
        {"configMap": {"name": "dr-config", "items": [{"key": "dr.yaml", "path": "dr.yaml"}]}},
        {"secret": {"name": "dr-files", "optional": True}},
        {
            "secret": {
                "name": "dr-repo-key",
                "items": [{"key": "repo.key", "path": "keys/repo.key", "mode": 0o400}],
            }
        },
    ]
    env = {e["name"]: e for e in c["env"]}
    assert env["DR_CONFIG"]["value"] == "/etc/dr/dr.yaml" and env["HOME"]["value"] == "/tmp"
    assert c["envFrom"] == [{"secretRef": {"name": "dr-repository-credentials"}}]


def test_the_tmp_size_limit_comes_from_the_mover_settings() -> None:
    # mover.tmpSizeLimit: room for a repository index larger than the default 4Gi holds,
    # in every Job that carries the mover settings (backup/restore movers, data probes).
    mover = MoverOptions(tmp_size_limit="16Gi")
    probe = JobDataProbe(cast(KubeClient, None), mover)
    for pod in (
        pod_config(tmp_size_limit="16Gi"),
        MoverContext(repo_url="s3://b/p", mover=mover).pod_config(),
        probe.pod_config(timedelta(minutes=5)),
    ):
        job = mover_job(a_job(), pod)
        kubernetes_validate.validate(job, K8S_SCHEMA, strict=True)
        volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
        assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "16Gi"}


def test_mover_job_never_carries_a_secret_value() -> None:
    """Credentials reach the pod only by reference: every env entry is a plain, non-secret setting."""
    job = mover_job(a_job(), pod_config())
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert all(set(e) == {"name", "value"} for e in c["env"])
    assert {e["name"] for e in c["env"]} <= {
        "DR_CONFIG",
        "DR_LOG_FORMAT",
        "HOME",
        "TMPDIR",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
    }
    text = json.dumps(job)
    assert not re.search(r"(?i)(AWS_SECRET|VAULT_TOKEN|password|BEGIN .*PRIVATE KEY)", text)


def test_mover_job_placement_groups_and_root_restore() -> None:
    toleration = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    job = mover_job(
        a_job(
            node_name="node-3", tolerations=[toleration], supplemental_groups=[999, 5, 999], read_only=False
        ),
        pod_config(),
    )
    kubernetes_validate.validate(job, K8S_SCHEMA, strict=True)
    pod = job["spec"]["template"]["spec"]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-3"]}]}]
    assert "nodeName" not in pod  # the scheduler still checks taints and resources
    assert pod["tolerations"] == [toleration]
    assert pod["securityContext"]["supplementalGroups"] == [5, 999]
    assert pod["volumes"][-1]["persistentVolumeClaim"]["readOnly"] is False
    # No service account: the namespace's default one, without a token.
    assert "serviceAccountName" not in pod and pod["automountServiceAccountToken"] is False

    root = mover_job(a_job(run_as_root=True, read_only=False), pod_config())
    kubernetes_validate.validate(root, K8S_SCHEMA, strict=True)
    c = root["spec"]["template"]["spec"]["containers"][0]
    assert c["securityContext"]["runAsUser"] == 0 and c["securityContext"]["runAsNonRoot"] is False
    assert c["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"],
    }
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_object_names_are_unique_dns_labels() -> None:
    names = {
        object_name("dr-backup", "Data_Volume.of-a-very-long-statefulset-name-0123456789-abcdef")
        for _ in range(50)
    }
    assert len(names) == 50
    for n in names:
        assert len(n) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n), n
        assert n.startswith("dr-backup-data-volume-of-a-very")
    assert re.fullmatch(r"dr-[0-9a-f]{8}", object_name("dr", "---"))


def test_labels_and_expiry() -> None:
    assert expiry(1000.0, timedelta(hours=2)) == 1000 + 7200 + 3600
    labels = temporary_labels("backup 2026/01/01 nightly", 5)
    assert labels["dr.dev/run"] == "backup-2026-01-01-nightly"


def test_summary_from_a_log_tail() -> None:
    summary = {"id": "ab" * 32, "files": 3, "bytes": 10, "errors": []}
    log_lines = [json.dumps({"level": "info", "msg": "backing up /data"}), json.dumps(summary, indent=2)]
    assert summary_from_log("\n".join(log_lines)) == summary
    assert summary_from_log('{"level":"info"}\n') is None
    assert summary_from_log('{\n  "id": "x",\n') is None  # cut off
    assert summary_from_log(None) is None


# --------------------------------------------------------------------------- following Jobs in the test cluster


def set_status(kc: KubeClient, path: str, status: dict[str, Any]) -> None:
    kc.call("PATCH", path + "/status", body={"status": status}, content_type="application/merge-patch+json")


def make_pod(kc: KubeClient, ns: str, job: str, state: dict[str, Any]) -> None:
    kc.call(
        "POST",
        f"/api/v1/namespaces/{ns}/pods",
        body={
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{job}-x1", "labels": {"job-name": job}},
            "spec": {"containers": [{"name": "dr", "image": "dr"}]},
        },
    )
    set_status(
        kc,
        f"/api/v1/namespaces/{ns}/pods/{job}-x1",
        {"phase": "Pending", "containerStatuses": [{"name": "dr", "state": state}]},
    )


def start(kc: KubeClient, ns: str, name: str = "dr-backup-x") -> str:
    create_job(kc, mover_job(a_job(name=name, namespace=ns), pod_config()))
    return f"/apis/batch/v1/namespaces/{ns}/jobs/{name}"


def test_follow_a_job_that_completes(kube_client: KubeClient, namespace: str) -> None:
    path = start(kube_client, namespace)

    def controller() -> None:
        time.sleep(0.3)
        set_status(
            kube_client, path, {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        )

    t = threading.Thread(target=controller)
    t.start()
    outcome = follow_job(kube_client, namespace, "dr-backup-x", timeout=30)
    t.join()
    assert outcome.succeeded and outcome.describe() == "Job dr-backup-x succeeded"


def test_follow_a_failed_job_explains_with_the_termination_message(
    kube_client: KubeClient, namespace: str
) -> None:
    path = start(kube_client, namespace)
    make_pod(
        kube_client,
        namespace,
        "dr-backup-x",
        {
            "terminated": {
                "exitCode": 2,
                "reason": "Error",
                "message": "info starting\nError: no volume snapshot with id 'dead'\n",
            }
        },
    )
    set_status(
        kube_client,
        path,
        {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        },
    )
    outcome = follow_job(kube_client, namespace, "dr-backup-x", timeout=30)
    assert not outcome.succeeded
    assert outcome.reason == "BackoffLimitExceeded" and outcome.pod is not None and outcome.pod.exit_code == 2
    assert outcome.log_tail is None  # the test cluster serves no pod logs
    assert outcome.describe() == (
        "Job dr-backup-x failed: BackoffLimitExceeded: Job has reached the specified backoff limit; "
        "pod dr-backup-x-x1, exit code 2 (Error): info starting | Error: no volume snapshot with id 'dead'"
    )


def test_follow_gives_up_on_a_deleted_job_a_stuck_pod_and_a_missing_controller(
    kube_client: KubeClient, namespace: str
) -> None:
    kc = kube_client
    path = start(kc, namespace, "dr-gone")
    kc.request("DELETE", path)
    gone = follow_job(kc, namespace, "dr-gone", timeout=30)
    assert (gone.succeeded, gone.reason) == (False, "JobGone")
    assert "deleted before it finished" in gone.describe()

    start(kc, namespace, "dr-stuck")
    make_pod(
        kc,
        namespace,
        "dr-stuck",
        {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "dr-credentials" not found'}},
    )
    stuck = follow_job(kc, namespace, "dr-stuck", timeout=30, stuck_grace=0, pod_check_every=0)
    assert stuck.reason == "PodStuck"
    assert stuck.describe() == (
        "Job dr-stuck failed: PodStuck: its pod cannot start; pod dr-stuck-x1, "
        'waiting: CreateContainerConfigError: secret "dr-credentials" not found'
    )

    start(kc, namespace, "dr-idle")
    idle = follow_job(kc, namespace, "dr-idle", timeout=0.5)
    assert idle.reason == "Timeout"
    assert "not finished 0.5s after it was created (is the Job controller running?)" in idle.describe()


# --------------------------------------------------------------------------- leftovers and temporary objects


@pytest.fixture
def snapshot_api(snapshot_crds: None) -> None:
    """The snapshot CRDs are installed (cleanup looks at VolumeSnapshots and their contents too)."""


def labelled(expires: int | None) -> dict[str, str]:
    labels = {"dr.dev/mover": "true", "app.kubernetes.io/name": "dr"}
    if expires is not None:
        labels["dr.dev/expires"] = str(expires)
    return labels


def test_cleanup_leftovers_deletes_only_expired_labelled_objects(
    kube_client: KubeClient, namespace: str, snapshot_api: None, unique: str
) -> None:
    kc, ns = kube_client, namespace
    now = time.time()
    old, fresh = int(now) - 10, int(now) + 3600
    for name, labels in (
        ("old", labelled(old)),
        ("fresh", labelled(fresh)),
        ("alien", {"app": "x"}),
        ("nolabel", labelled(None)),
    ):
        job = mover_job(a_job(name=f"job-{name}", namespace=ns), pod_config())
        job["metadata"]["labels"] = labels
        create_job(kc, job)
        kc.call(
            "POST",
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
            body={
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"pvc-{name}", "labels": labels},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
        kc.call(
            "POST",
            f"/apis/snapshot.storage.k8s.io/v1/namespaces/{ns}/volumesnapshots",
            body={
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshot",
                "metadata": {"name": f"vs-{name}", "labels": labels},
                "spec": {"source": {"persistentVolumeClaimName": "x"}},
            },
        )
        kc.call(
            "POST",
            "/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents",
            body={
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshotContent",
                "metadata": {"name": f"vsc-{name}-{unique}", "labels": labels},
                "spec": {
                    "deletionPolicy": "Retain",
                    "driver": "d",
                    "source": {"snapshotHandle": "h"},
                    "volumeSnapshotRef": {"name": "x", "namespace": ns},
                },
            },
        )

    report = cleanup_leftovers(kc, now, namespaces=[ns])

    assert sorted(report.deleted) == sorted(
        [
            f"Job {ns}/job-old",
            f"PersistentVolumeClaim {ns}/pvc-old",
            f"VolumeSnapshot {ns}/vs-old",
            f"VolumeSnapshotContent vsc-old-{unique}",
        ]
    )
    assert report.errors == [] and report.kept >= 4
    remaining = {o["metadata"]["name"] for o in kc.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]}
    assert remaining == {"job-fresh", "job-alien", "job-nolabel"}
    for name in ("fresh", "alien", "nolabel"):
        kc.request("DELETE", f"/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/vsc-{name}-{unique}")


def test_cleanup_leftovers_without_rights_reports_and_goes_on(
    k8s: servers.TestCluster, snapshot_api: None
) -> None:
    if k8s.external:
        pytest.skip("needs the test cluster's identities")
    with connect(k8s.kubeconfig_for("bob"), None) as bob:  # discovery only
        report = cleanup_leftovers(bob, time.time())
    assert report.deleted == []
    assert report.errors[0].startswith(
        'cannot list jobs.batch: 403 Forbidden: jobs.batch is forbidden: User "bob"'
    )
    assert len(report.errors) == 4


def test_temporary_objects_go_in_reverse_order_and_failures_are_listed(
    kube_client: KubeClient, namespace: str, k8s: servers.TestCluster
) -> None:
    kc = kube_client
    temp = TemporaryObjects(kc)
    temp.add(PVCS, namespace, "never-created")  # registered before a create that failed: fine
    temp.add(JOBS, namespace, "dr-backup-x")
    create_job(kc, mover_job(a_job(name="dr-backup-x", namespace=namespace), pod_config()))
    assert temp.delete_all() == [] and len(temp) == 0
    assert kc.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/dr-backup-x")[0] == 404
    if k8s.external:
        return
    with connect(k8s.kubeconfig_for("bob"), None) as bob:
        denied = TemporaryObjects(bob)
        denied.add(VOLUME_SNAPSHOT_CONTENTS, None, "c1")
        denied.add(VOLUME_SNAPSHOTS, namespace, "s1")
        problems = denied.delete_all()
    assert [p.split(":")[0] for p in problems] == [
        f"cannot delete VolumeSnapshot {namespace}/s1",
        "cannot delete VolumeSnapshotContent c1",
    ]
    assert all("403 Forbidden" in p for p in problems)


def test_check_mover_namespace_names_what_is_missing(kube_client: KubeClient, namespace: str) -> None:
    kc, pod = kube_client, pod_config(credentials_secret="creds")
    assert check_mover_namespace(kc, namespace, pod) == (
        f"mover Jobs in namespace {namespace} need the ConfigMap dr-config (dr.yaml) there "
        "(a pod can only mount ConfigMaps of its own namespace)"
    )
    kc.call(
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        body={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "dr-config"},
            "data": {"dr.yaml": "{}"},
        },
    )
    assert check_mover_namespace(kc, namespace, pod) == (
        f"mover Jobs in namespace {namespace} need the Secret creds (repository credentials) there "
        "(a pod can only use Secrets of its own namespace)"
    )
    kc.call(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        body={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"K": "v"}},
    )
    assert check_mover_namespace(kc, namespace, pod) is None
    assert check_mover_namespace(kc, namespace, pod_config(credentials_secret=None)) is None


def _evicted(kc: KubeClient, namespace: str, name: str, message: str) -> JobOutcome:
    """Job ``name`` failed, its pod killed (exit code 137) and evicted by the kubelet with ``message``."""
    path = start(kc, namespace, name)
    make_pod(kc, namespace, name, {"terminated": {"exitCode": 137, "reason": "Error"}})
    set_status(
        kc,
        f"/api/v1/namespaces/{namespace}/pods/{name}-x1",
        {"phase": "Failed", "reason": "Evicted", "message": message},
    )
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}
    set_status(kc, path, {"failed": 1, "conditions": [failed]})
    return follow_job(kc, namespace, name, timeout=30)


def test_an_evicted_or_unschedulable_mover_pod_says_so(kube_client: KubeClient, namespace: str) -> None:
    # The pod's own reason (Evicted, Unschedulable) and message were not read: an evicted
    # mover read "exit code 137 (Error)", one that never found a node just "Pending".
    kc = kube_client
    evicted = _evicted(kc, namespace, "dr-evicted", "The node was low on resource: memory. ")
    assert evicted.describe() == (
        "Job dr-evicted failed: BackoffLimitExceeded: limit; pod dr-evicted-x1, exit code 137 (Error), "
        "Evicted: The node was low on resource: memory."
    )

    path = start(kc, namespace, "dr-nowhere")
    kc.call(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        body={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dr-nowhere-x1",
              "labels": {"job-name": "dr-nowhere"}}, "spec": {"containers": [{"name": "dr", "image": "dr"}]}},
    )  # fmt: skip
    message = (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."
    )
    set_status(
        kc,
        f"/api/v1/namespaces/{namespace}/pods/dr-nowhere-x1",
        {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]},
    )  # fmt: skip
    deadline = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}
    set_status(kc, path, {"failed": 1, "conditions": [deadline]})
    nowhere = follow_job(kc, namespace, "dr-nowhere", timeout=30)
    assert nowhere.describe() == (
        f"Job dr-nowhere failed: DeadlineExceeded: too long; pod dr-nowhere-x1, Unschedulable: {message}"
    )


def test_a_mover_evicted_for_a_full_tmp_names_the_setting_that_sizes_it(
    kube_client: KubeClient, namespace: str
) -> None:
    # The kubelet evicts a pod whose /tmp emptyDir grows past its sizeLimit (the repository
    # index: ~220 bytes a blob); its message names the volume and limit, not dr's setting.
    message = 'Usage of EmptyDir volume "tmp" exceeds the limit "4Gi". '
    evicted = _evicted(kube_client, namespace, "dr-tmpfull", message)
    assert evicted.describe() == (
        "Job dr-tmpfull failed: BackoffLimitExceeded: limit; pod dr-tmpfull-x1, exit code 137 (Error), "
        'Evicted: Usage of EmptyDir volume "tmp" exceeds the limit "4Gi". '
        "(/tmp holds the repository index: raise mover.tmpSizeLimit in dr.yaml)"
    )


def test_an_oom_killed_mover_names_the_setting_of_its_memory_limit(
    kube_client: KubeClient, namespace: str
) -> None:
    # Movers run with a memory limit (mover.resources, 1Gi by default); a large volume's
    # index can outgrow it. The kubelet says OOMKilled, not which of dr's settings to raise.
    kc = kube_client
    path = start(kc, namespace, "dr-oom")
    make_pod(kc, namespace, "dr-oom", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"}
    set_status(kc, path, {"failed": 1, "conditions": [failed]})
    assert follow_job(kc, namespace, "dr-oom", timeout=30).describe() == (
        "Job dr-oom failed: BackoffLimitExceeded: limit; pod dr-oom-x1, exit code 137 (OOMKilled: "
        "the mover outgrew its memory limit: raise mover.resources.limits.memory in dr.yaml)"
    )


def test_a_mover_no_node_takes_gives_up_after_the_stuck_or_the_unschedulable_grace(
    kube_client: KubeClient, namespace: str
) -> None:
    # A file-system copy runs on the node of the pod using the volume. Where that node has
    # no room for the mover, no new node can help, yet dr waited for the Job's deadline
    # (6 h by default), holding a mover slot, to report a DeadlineExceeded.
    kc = kube_client
    message = "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity."
    # The claim exists (one that does not is another reason to give up: dr.kube.jobs._claim_gone).
    kc.call("POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", body={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "tmp-claim"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})  # fmt: skip
    for name, node in (("dr-pinned", "node-7"), ("dr-free", None)):
        create_job(kc, mover_job(a_job(name=name, namespace=namespace, node_name=node), pod_config()))
        kc.call("POST", f"/api/v1/namespaces/{namespace}/pods", body={
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-x1", "labels": {"job-name": name}},
            "spec": {"containers": [{"name": "dr", "image": "dr"}]}})  # fmt: skip
        set_status(kc, f"/api/v1/namespaces/{namespace}/pods/{name}-x1", {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]})  # fmt: skip

    pinned = follow_job(kc, namespace, "dr-pinned", timeout=30, stuck_grace=0, pod_check_every=0)
    assert pinned.describe() == (
        "Job dr-pinned failed: PodStuck: its pod does not fit on the node where the volume is mounted; "
        f"pod dr-pinned-x1, Unschedulable: {message}"
    )
    # Not pinned: a new node (the cluster autoscaler) may come, so the stuck grace does not apply...
    free = follow_job(kc, namespace, "dr-free", timeout=1.0, stuck_grace=0, pod_check_every=0)
    assert free.reason == "Timeout"
    # ...but no node for 30 minutes is no autoscaler on its way: dr waited for the Job's deadline
    # (6 h by default) with a mover slot held. (A clock that runs a minute per look.)
    ticks = iter(range(0, 10**6, 60))
    free = follow_job(kc, namespace, "dr-free", timeout=6 * 3600, stuck_grace=0, pod_check_every=0,
                      sleep=lambda _s: None, clock=lambda: float(next(ticks)))  # fmt: skip
    assert free.describe() == (
        "Job dr-free failed: PodStuck: no node took its pod in 30 min (none fits it, and none was added: see "
        f"the scheduler's message; mover.resources, tolerations); pod dr-free-x1, Unschedulable: {message}"
    )
    assert 1800 <= next(ticks) <= 1800 + 5 * 60


def test_a_mover_waiting_for_its_claims_volume_is_not_one_no_node_takes(
    kube_client: KubeClient, namespace: str
) -> None:
    # A backup's copy of a volume snapshot (a claim with a dataSource) of an Immediate class: the
    # scheduler says Unschedulable while the provisioner fills the volume, which some drivers do by
    # copying, for hours (dr.kube.jobs._not_provisioned leaves such claims alone). No missing node:
    # the 30 minutes of the unschedulable grace failed the volume as if none fitted the pod.
    kc = kube_client
    message = (
        "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes "
        "are available: 3 Preemption is not helpful for scheduling."
    )
    kc.call("POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", body={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "tmp-claim"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "storageClassName": "standard", "dataSource": {
                     "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}}})  # fmt: skip
    create_job(kc, mover_job(a_job(name="dr-clone", namespace=namespace), pod_config()))
    kc.call("POST", f"/api/v1/namespaces/{namespace}/pods", body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dr-clone-x1", "labels": {"job-name": "dr-clone"}},
        "spec": {"containers": [{"name": "dr", "image": "dr"}]}})  # fmt: skip
    set_status(kc, f"/api/v1/namespaces/{namespace}/pods/dr-clone-x1", {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]})  # fmt: skip

    ticks = iter(range(0, 10**6, 60))  # a minute per look
    outcome = follow_job(kc, namespace, "dr-clone", timeout=2 * 3600, stuck_grace=0, pod_check_every=0,
                         sleep=lambda _s: None, clock=lambda: float(next(ticks)))  # fmt: skip
    assert outcome.reason == "Timeout", outcome.describe()  # the Job's deadline bounds the wait, as before


class _RefusedPatchKube:
    """A cluster where dr may get and delete its VolumeSnapshot but not patch its Retain content."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.requests: list[tuple[str, str]] = []

    def request(self, method: str, path: str, **_: Any) -> tuple[int, bytes]:
        self.requests.append((method, path))
        if method == "GET" and path == VOLUME_SNAPSHOTS.object_path(self.ns, "s1"):
            return 200, json.dumps({"status": {"boundVolumeSnapshotContentName": "c1"}}).encode()
        if method == "GET" and path == VOLUME_SNAPSHOT_CONTENTS.object_path(None, "c1"):
            spec = {
                "deletionPolicy": "Retain",
                "source": {"volumeHandle": "vol-1"},
                "volumeSnapshotRef": {"namespace": self.ns, "name": "s1"},
            }
            return 200, json.dumps({"spec": spec}).encode()
        if method == "PATCH":
            return 403, json.dumps({"reason": "Forbidden", "message": "patch is forbidden"}).encode()
        if method == "DELETE":
            return 200, b"{}"
        raise AssertionError(f"unexpected {method} {path}")


def test_a_retain_content_that_cannot_be_switched_to_delete_is_a_warning_and_the_snapshot_goes() -> None:
    kube = _RefusedPatchKube("app")
    temp = TemporaryObjects(kube)  # type: ignore[arg-type]
    temp.add(VOLUME_SNAPSHOTS, "app", "s1")

    (problem,) = temp.delete_all()

    assert problem.startswith(
        "VolumeSnapshotContent c1 has deletionPolicy Retain: its storage snapshot stays (delete it yourself); "
        "cannot switch it to Delete: "
    )
    assert "patch is forbidden" in problem
    assert ("DELETE", VOLUME_SNAPSHOTS.object_path("app", "s1")) in kube.requests


class _SnapshotKube:
    """VolumeSnapshots app/s<i> (uid u<i>), bound to a content or not, and the contents there are.

    A snapshot is gone once deleted unless ``held`` (a finalizer the controller has not
    removed); patching a content is refused with ``patch_status`` 403."""

    def __init__(self, snapshots: dict[str, str | None], contents: dict[str, dict[str, Any]], *,
                 held: bool = False, patch_status: int = 200) -> None:  # fmt: skip
        self.snapshots, self.contents, self.held, self.patch_status = snapshots, contents, held, patch_status
        self.deleted: set[str] = set()
        self.requests: list[tuple[str, str]] = []

    def request(self, method: str, path: str, **_: Any) -> tuple[int, bytes]:
        self.requests.append((method, path))
        for name, bound in self.snapshots.items():
            if path == VOLUME_SNAPSHOTS.object_path("app", name):
                if method == "DELETE":
                    self.deleted.add(name)
                    return 200, b"{}"
                if name in self.deleted and not self.held:
                    return 404, b"{}"
                status = {"boundVolumeSnapshotContentName": bound} if bound else {}
                return 200, json.dumps({"metadata": {"uid": f"u{name[1:]}"}, "status": status}).encode()
        for name, content in self.contents.items():
            if path == VOLUME_SNAPSHOT_CONTENTS.object_path(None, name):
                if method == "PATCH":
                    return self.patch_status, json.dumps({"reason": "Forbidden", "message": "no"}).encode()
                return 200, json.dumps(content).encode()
        if method == "GET":
            return 404, b"{}"
        raise AssertionError(f"unexpected {method} {path}")


def _content(snapshot: str, policy: str = "Delete") -> dict[str, Any]:
    ref = {"namespace": "app", "name": snapshot, "uid": f"u{snapshot[1:]}"}
    return {"spec": {"deletionPolicy": policy, "source": {"volumeHandle": "vol"}, "volumeSnapshotRef": ref}}


def test_bound_snapshots_are_deleted_without_waiting_for_them_to_go() -> None:
    # The wait for a snapshot to be gone (up to 30 s) is for one that had no content yet: a
    # backup's clean-up of many volumes whose snapshots bound is not N x that wait.
    n = 20
    kube = _SnapshotKube({f"s{i}": f"c{i}" for i in range(n)}, {f"c{i}": _content(f"s{i}") for i in range(n)})
    temp = TemporaryObjects(kube)  # type: ignore[arg-type]
    for i in range(n):
        temp.add(VOLUME_SNAPSHOTS, "app", f"s{i}")
    start = time.monotonic()
    assert temp.delete_all() == []
    assert time.monotonic() - start < 1
    assert kube.deleted == {f"s{i}" for i in range(n)}
    # Each snapshot read once, before its delete: not polled after it.
    assert [m for m, p in kube.requests if p.startswith(VOLUME_SNAPSHOTS.object_path("app", "s"))].count(
        "GET"
    ) == n


def test_a_retain_content_made_after_its_snapshot_went_that_cannot_be_switched_is_a_warning() -> None:
    kube = _SnapshotKube({"s1": None}, {"snapcontent-u1": _content("s1", "Retain")}, patch_status=403)
    # At the first look the controller had not made it yet.
    made = kube.contents.pop("snapcontent-u1")
    real = kube.request

    def request(method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        if method == "DELETE":
            kube.contents["snapcontent-u1"] = made
        return real(method, path, **kw)

    kube.request = request  # type: ignore[method-assign]
    deleted, warning = delete_snapshot(kube, "app", "s1", settle_timeout=5)  # type: ignore[arg-type]
    assert deleted and warning is not None
    assert warning.startswith(
        "VolumeSnapshotContent snapcontent-u1 was made for VolumeSnapshot app/s1 after it was deleted and has "
        "deletionPolicy Retain: its storage snapshot stays (delete it yourself); cannot switch it to Delete: "
    )
    assert ("DELETE", VOLUME_SNAPSHOT_CONTENTS.object_path(None, "snapcontent-u1")) not in kube.requests


def test_a_snapshot_without_content_still_held_after_the_wait_is_left_to_the_next_sweep() -> None:
    kube = _SnapshotKube({"s1": None}, {}, held=True)
    assert delete_snapshot(kube, "app", "s1", settle_timeout=0.3) == (True, None)  # type: ignore[arg-type]
    # Not looked for a content of its uid: the controller may still make one, for the next sweep.
    assert kube.requests.count(("GET", VOLUME_SNAPSHOT_CONTENTS.object_path(None, "snapcontent-u1"))) == 1


def test_a_pending_claim_counts_as_unprovisioned_only_where_a_provisioner_alone_is_awaited(
    kube_client: KubeClient, unique: str
) -> None:
    # What a mover waiting for its claim gives up on (after the stuck grace). A claim of a
    # WaitForFirstConsumer class stays Pending, untouched by its provisioner, until the
    # scheduler picks a node for the pod (selected-node): every claim of such a class, the
    # cloud default of EKS/GKE/AKS, would otherwise fail its mover.
    from dr.kube.jobs import _not_provisioned

    kc = kube_client
    classes = {
        f"wffc-{unique}": "WaitForFirstConsumer",
        f"now-{unique}": "Immediate",
        f"local-{unique}": "Immediate",
    }
    for name, mode in classes.items():
        provisioner = "kubernetes.io/no-provisioner" if name.startswith("local-") else "ebs.csi.aws.com"
        kc.call("POST", "/apis/storage.k8s.io/v1/storageclasses", body={
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "volumeBindingMode": mode})  # fmt: skip

    def claim(cls: str | None, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": "data", "namespace": "ns", "annotations": annotations or {}},
                "spec": {"storageClassName": cls, **spec}, "status": {"phase": "Pending"}}  # fmt: skip

    try:
        assert _not_provisioned(kc, "ns", claim(f"wffc-{unique}")) is None
        chosen = claim(f"wffc-{unique}", {"volume.kubernetes.io/selected-node": "node-1"})
        waits = (
            f"PVC ns/data is still Pending: no volume was provisioned for it (StorageClass 'wffc-{unique}': "
            "is its provisioner 'ebs.csi.aws.com' installed and able to make one?)"
        )
        assert _not_provisioned(kc, "ns", chosen) == waits
        assert _not_provisioned(kc, "ns", claim(f"now-{unique}")) == waits.replace("wffc-", "now-")
        # From a snapshot or a clone: a driver may copy for hours. No class yet: the default is coming.
        snapshot = {"kind": "VolumeSnapshot", "name": "s", "apiGroup": "snapshot.storage.k8s.io"}
        assert _not_provisioned(kc, "ns", claim(f"now-{unique}", dataSource=snapshot)) is None
        assert _not_provisioned(kc, "ns", claim(None)) is None
        assert _not_provisioned(kc, "ns", claim("")) == (
            "PVC ns/data is still Pending: no PersistentVolume matches it (no class: static binding)"
        )
        # Volumes made by hand: no provisioner to install, no PV that matches.
        assert _not_provisioned(kc, "ns", claim(f"local-{unique}")) == (
            f"PVC ns/data is still Pending: no PersistentVolume of StorageClass 'local-{unique}' matches it "
            "(its volumes are made by hand: kubernetes.io/no-provisioner)"
        )
        # The restore's rule, one for both (dr.kube.provisioning): no such class, and no volume that may bind it.
        assert _not_provisioned(kc, "ns", claim(f"gone-{unique}")) == (
            f"PVC ns/data cannot be provisioned: its StorageClass 'gone-{unique}' does not exist in this "
            f"cluster (create it, or restore with --storage-class-mapping gone-{unique}=<a class of this cluster>)"
        )
        # A class name only static volumes carry ("manual"): a PV of that name may still bind the claim.
        kc.call("POST", "/api/v1/persistentvolumes", body={
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"pv-manual-{unique}"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": f"manual-{unique}", "hostPath": {"path": "/srv/data"}}})  # fmt: skip
        assert _not_provisioned(kc, "ns", claim(f"manual-{unique}")) is None
    finally:
        for name in classes:
            kc.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{name}")
        kc.request("DELETE", f"/api/v1/persistentvolumes/pv-manual-{unique}")
