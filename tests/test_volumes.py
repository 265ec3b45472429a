"""Volume data end to end: CSI-snapshot and file-system backups by mover Jobs, restores, failures, parallelism.

The cluster is the test cluster with the node agent (``tests/agent.py``)
playing kubelet, Job controller and the PV/snapshot controllers; the mover is
the real ``dr mover`` run as a subprocess, writing to SeaweedFS with a
master key wrapped by OpenBao's transit engine. The code under test —
``backup_volumes``, ``restore_volumes`` — is what runs in a real cluster.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dr.backup.volumes import MOVER_JOB_TAG, VolumeResult, apply_summary, backup_volumes, collect_backup
from dr.kube.client import KubeClient, connect
from dr.kube.jobs import JobOutcome, PodState, summary_from_log
from dr.kube.provisioning import missing_storage_class
from dr.repo.snapshots import list_snapshots
from dr.restore.volumes import VolumeRestoreTarget, restore_volumes
from dr.testkit.agent import NodeAgent, wait_until
from tests.conftest import Kube
from tests.volume_helpers import (
    MoverEnv,
    create_namespace,
    create_pod,
    create_pvc,
    create_storage,
    delete_storage,
    fill_volume,
    get_pvc,
    job_manifests_json,
    tree_listing,
)

MB = 1 << 20


@pytest.fixture
def namespaces(kube_client: KubeClient, unique: str) -> Iterator[list[str]]:
    """Namespaces a test creates through ``new_namespace``; deleted afterwards."""
    made: list[str] = []
    yield made
    for ns in made:
        kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")


def new_namespace(kc: KubeClient, made: list[str], name: str) -> str:
    create_namespace(kc, name)
    made.append(name)
    return name


def restore_namespace(kc: KubeClient, agent: NodeAgent, env: MoverEnv, made: list[str], name: str) -> str:
    """A new namespace to restore volumes into: dr-config there (its movers run in it), the agent
    acting for its claims and pods."""
    ns = new_namespace(kc, made, name)
    env.prepare(ns)
    agent.manage(ns)
    return ns


@pytest.fixture
def storage(kube_client: KubeClient, unique: str) -> Iterator[tuple[str, str | None]]:
    sc, vsc = create_storage(kube_client, unique, snapshot_class=True)
    yield sc, vsc
    delete_storage(kube_client, sc, vsc)


@pytest.fixture
def fs_storage(kube_client: KubeClient, unique: str) -> Iterator[str]:
    """A StorageClass whose driver has no VolumeSnapshotClass: volumes are copied file by file."""
    sc, _ = create_storage(kube_client, unique, snapshot_class=False)
    yield sc
    delete_storage(kube_client, sc, None)


def bound_volumes(
    kc: KubeClient, agent: NodeAgent, ns: str, sc: str, sizes: dict[str, int], seed: int = 1
) -> list[dict[str, Any]]:
    """PVCs bound by the agent and filled with ``sizes[name]`` bytes of files; their current objects."""
    for name in sizes:
        create_pvc(kc, ns, name, sc)
    for i, (name, size) in enumerate(sizes.items()):
        wait_until(
            lambda n=name: get_pvc(kc, ns, n).get("status", {}).get("phase") == "Bound", what=f"{name} bound"
        )
        fill_volume(agent.volume_dir(ns, name), seed + i, size)
    return [get_pvc(kc, ns, n) for n in sizes]


def volume_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def leftovers(kc: KubeClient, namespaces: list[str]) -> list[str]:
    """dr's temporary objects still present (jobs, PVCs, snapshots, contents) in ``namespaces``."""
    found = []
    sel = {"labelSelector": "dr.dev/mover=true"}
    for ns in namespaces:
        for path in (
            f"/apis/batch/v1/namespaces/{ns}/jobs",
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
            f"/apis/snapshot.storage.k8s.io/v1/namespaces/{ns}/volumesnapshots",
        ):
            found += [f"{path}/{o['metadata']['name']}" for o in kc.get(path, sel).get("items", [])]
    contents = kc.get("/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents", sel).get("items", [])
    found += [f"content {o['metadata']['name']}" for o in contents]
    return found


def restore_into_fresh_pvcs(
    kc: KubeClient,
    agent: NodeAgent,
    env: MoverEnv,
    made: list[str],
    name: str,
    sc: str,
    results: list[VolumeResult],
) -> tuple[str, list[VolumeResult]]:
    ns = restore_namespace(kc, agent, env, made, name)
    for r in results:
        create_pvc(kc, ns, r.pvc, sc)
    targets = [VolumeRestoreTarget(namespace=ns, pvc=r.pvc, snapshot_id=str(r.snapshot_id)) for r in results]
    restored = restore_volumes(kc, targets, env.restore_ctx(f"restore-{name}"))
    return ns, restored


def assert_secret_free(agent: NodeAgent, env: MoverEnv) -> None:
    """No credential value appears in any Job the movers ran as; they arrived through envFrom."""
    manifests = job_manifests_json(agent.runs)
    for key, value in env.credentials.items():
        assert value not in manifests, f"{key} appears in a Job spec"
    for run in agent.runs:
        if run.argv:
            assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "VAULT_TOKEN"} <= set(run.env_names)


def test_snapshot_backup_then_restore_into_empty_pvcs(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    namespaces: list[str],
    unique: str,
) -> None:
    kc, agent, env = kube_client, node_agent, mover_env
    sc, _ = storage
    app = new_namespace(kc, namespaces, f"app-{unique}")
    agent.manage(app, env.mover_namespace)
    pvcs = bound_volumes(kc, agent, app, sc, {"data-a": 20 * MB, "data-b": 20 * MB})
    create_pod(kc, app, "db-0", ["data-a"])

    results = backup_volumes(kc, pvcs, env.backup_ctx("backup-1", mode="auto"), env.finder())

    assert [r.error for r in results] == [None, None]
    assert [r.method for r in results] == ["snapshot", "snapshot"]
    assert [r.storage_class for r in results] == [sc, sc]
    assert [r.size for r in results] == ["1Gi", "1Gi"]
    for r in results:
        assert r.snapshot_id and r.job
        assert r.bytes == volume_bytes(agent.volume_dir(app, r.pvc)) and abs(r.bytes - 20 * MB) < 4096
        assert r.files == 43 and r.new_bytes > 0
    # The movers ran in dr's namespace on temporary PVCs restored from the snapshots, read-only.
    assert {run.namespace for run in agent.runs} == {env.mover_namespace}
    for run in agent.runs:
        assert run.outcome == "succeeded"
        claim = run.manifest["spec"]["template"]["spec"]["volumes"][-1]["persistentVolumeClaim"]
        assert claim["readOnly"] is True and claim["claimName"] not in ("data-a", "data-b")
        assert run.mounts["/data"][1] is True
    assert_secret_free(agent, env)
    # The repository holds both, tagged by the Job that made them.
    repo = env.open_repository()
    snaps = {s.id: s for s in list_snapshots(repo, "volume")}
    for r in results:
        snap = snaps[str(r.snapshot_id)]
        assert snap.tags[MOVER_JOB_TAG] == r.job
        assert snap.tags["dr.dev/pvc"] == r.pvc and snap.tags["dr.dev/namespace"] == app
        assert snap.tags["dr.dev/backup"] == "backup-1"
    # Nothing temporary is left: Jobs, temporary PVCs, both VolumeSnapshots, the cloned content.
    wait_until(lambda: not leftovers(kc, [app, env.mover_namespace]), what="no leftovers")

    ns, restored = restore_into_fresh_pvcs(kc, agent, env, namespaces, f"restored-{unique}", sc, results)
    assert [r.error for r in restored] == [None, None]
    assert [r.method for r in restored] == ["restore", "restore"]
    for name in ("data-a", "data-b"):
        assert tree_listing(agent.volume_dir(ns, name)) == tree_listing(agent.volume_dir(app, name))
    restore_runs = [run for run in agent.runs if run.namespace == ns]
    assert len(restore_runs) == 2 and all(run.mounts["/data"][1] is False for run in restore_runs)
    assert not leftovers(kc, [ns])


def test_filesystem_backup_runs_next_to_the_pod_and_restores(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    namespaces: list[str],
    unique: str,
    fs_storage: str,
    fs_app: str,
) -> None:
    kc, agent, env, sc, app = kube_client, node_agent, mover_env, fs_storage, fs_app
    pvcs = bound_volumes(kc, agent, app, sc, {"data-a": 20 * MB, "data-b": 20 * MB}, seed=7)
    toleration = {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}
    create_pod(kc, app, "db-0", ["data-a"], node="node-7", tolerations=[toleration], fs_group=999)

    results = backup_volumes(kc, pvcs, env.backup_ctx("backup-fs", mode="auto"), env.finder())

    assert [(r.method, r.error) for r in results] == [("filesystem", None), ("filesystem", None)]
    by_volume = {run.volume: run for run in agent.runs}
    pinned = by_volume[f"{app}/data-a"].manifest["spec"]["template"]["spec"]
    assert pinned["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}
        ]
    }
    assert pinned["tolerations"] == [toleration]
    assert pinned["securityContext"]["supplementalGroups"] == [999]
    assert "affinity" not in by_volume[f"{app}/data-b"].manifest["spec"]["template"]["spec"]
    for run in agent.runs:
        assert run.namespace == app
        claim = run.manifest["spec"]["template"]["spec"]["volumes"][-1]["persistentVolumeClaim"]
        assert claim == {"claimName": run.volume.split("/")[1], "readOnly": True}
    assert_secret_free(agent, env)
    assert not leftovers(kc, [app, env.mover_namespace])

    ns, restored = restore_into_fresh_pvcs(kc, agent, env, namespaces, f"fs-restored-{unique}", sc, results)
    assert [r.error for r in restored] == [None, None]
    for name in ("data-a", "data-b"):
        assert tree_listing(agent.volume_dir(ns, name)) == tree_listing(agent.volume_dir(app, name))


def test_a_shared_volume_is_copied_wherever_the_scheduler_finds_room(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    fs_storage: str,
    fs_app: str,
) -> None:
    # A ReadWriteMany volume (NFS, CephFS, EFS) mounts on any node. Pinned next to its pod,
    # a mover whose node was full gave up after the stuck grace, "does not fit on the node
    # where the volume is mounted", where any other node would have done.
    kc, agent, env, sc, app = kube_client, node_agent, mover_env, fs_storage, fs_app
    kc.call("POST", f"/api/v1/namespaces/{app}/persistentvolumeclaims", body={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": sc,
                 "resources": {"requests": {"storage": "1Gi"}}}})  # fmt: skip
    wait_until(lambda: get_pvc(kc, app, "shared").get("status", {}).get("phase") == "Bound", what="bound")
    fill_volume(agent.volume_dir(app, "shared"), 3, 10_000)
    toleration = {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}
    create_pod(kc, app, "web-0", ["shared"], node="node-7", tolerations=[toleration], fs_group=33)

    (res,) = backup_volumes(kc, [get_pvc(kc, app, "shared")], env.backup_ctx("b-rwx"), env.finder())

    assert res.method == "filesystem" and res.error is None, res.error
    (run,) = agent.runs
    spec = run.manifest["spec"]["template"]["spec"]
    assert "affinity" not in spec and "tolerations" not in spec
    assert spec["securityContext"]["supplementalGroups"] == [33]  # the files are still the group's


# --------------------------------------------------------------------------- failures


@pytest.fixture
def snap_app(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    namespaces: list[str],
    unique: str,
) -> str:
    """An application namespace whose PVCs are CSI volumes with a VolumeSnapshotClass."""
    app = new_namespace(kube_client, namespaces, f"app-{unique}")
    node_agent.manage(app, mover_env.mover_namespace)
    return app


@pytest.fixture
def fs_app(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    namespaces: list[str],
    unique: str,
) -> str:
    """An application namespace holding dr's ConfigMap and Secret: file-system movers run there."""
    app = new_namespace(kube_client, namespaces, f"app-{unique}")
    mover_env.prepare(app)
    node_agent.manage(app, mover_env.mover_namespace)
    return app


def test_a_killed_mover_fails_its_volume_only_leaves_nothing_and_the_next_run_succeeds(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    pvcs = bound_volumes(kc, agent, app, storage[0], {"data-a": 500_000, "data-b": 500_000})
    agent.kill.add(f"{app}/data-a")

    first = backup_volumes(kc, pvcs, env.backup_ctx("backup-k1"), env.finder())

    a, b = first
    assert a.error is not None and a.snapshot_id is None
    assert a.error.startswith(
        f"Job {a.job} failed: BackoffLimitExceeded: Job has reached the specified backoff limit; "
    )
    assert "exit code 137 (Error)" in a.error  # SIGKILL, as a kubelet reports it
    assert b.error is None and b.snapshot_id
    assert not leftovers(kc, [app, env.mover_namespace])

    agent.kill.clear()
    ctx = env.backup_ctx("backup-k2", parents={f"{app}/data-b": str(b.snapshot_id)})
    second = backup_volumes(kc, pvcs, ctx, env.finder())
    assert [r.error for r in second] == [None, None]
    # Incremental against its parent: no file data is stored again (only directory metadata:
    # the agent's snapshot copy has new inode numbers, which a CSI clone would keep).
    assert second[1].bytes == b.bytes and second[1].new_bytes < 10_000
    assert not leftovers(kc, [app, env.mover_namespace])


def test_a_failing_mover_command_reports_its_own_message(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    pvcs = bound_volumes(kc, agent, app, storage[0], {"data-a": 100_000})
    ctx = env.backup_ctx("backup-bad", parents={f"{app}/data-a": "deadbeef"})
    (res,) = backup_volumes(kc, pvcs, ctx, env.finder())
    # The mover's own error line, from the pod's termination message (the cluster serves no logs).
    assert res.error is not None and "exit code 2 (Error)" in res.error
    assert "no volume snapshot with id 'deadbeef'" in res.error
    assert not leftovers(kc, [app, env.mover_namespace])


def test_names_from_a_volume_reach_the_results_escaped(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    fs_storage: str,
    fs_app: str,
) -> None:
    # File names are anyone's: an app's user can name a file with a terminal escape
    # sequence. The mover names what it could not copy in its termination
    # message; dr quoted that as it was into the volume's error, which `dr backup` prints
    # to the operator's terminal and `dr backup show` from the backup record.
    import os

    kc, agent, env, app = kube_client, node_agent, mover_env, fs_app
    (pvc,) = bound_volumes(kc, agent, app, fs_storage, {"data": 10_000})
    # A directory whose path is just longer than PATH_MAX (4096), below one just shorter:
    # the one entry the mover cannot read (even as root), named last in its error line.
    root = agent.volume_dir(app, "data")
    full, rest = divmod(4000 - len(str(root)), 251)
    names = ["d" * 250] * full + (["f" * (rest - 1)] if rest > 1 else [])
    fd = os.open(root, os.O_RDONLY)
    try:
        for name in [*names, "\x1b]0;owned\x07pipe".ljust(150, "x")]:
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = sub
    finally:
        os.close(fd)

    (res,) = backup_volumes(kc, [pvc], env.backup_ctx("b-esc", mode="filesystem"), env.finder())

    assert res.error is not None and "File name too long" in res.error, res
    assert "\x1b" not in res.error and "\x07" not in res.error, res.error
    assert "\\x1b]0;owned\\x07pipe" in res.error, res.error


def test_the_errors_of_a_mover_summary_become_escaped_warnings() -> None:
    # The summary read from a pod's message or log (where the repository lookup found
    # nothing) lists entries the mover could not copy: names from the volume.
    res = VolumeResult(namespace="ns", pvc="data")
    apply_summary(res, {"id": "abc", "errors": ["/data/\x1b]0;owned\x07x: Permission denied"]})
    assert res.warnings == ["mover: /data/\\x1b]0;owned\\x07x: Permission denied"]


def test_a_summary_of_garbage_in_a_pod_message_is_not_taken_for_the_movers() -> None:
    # Where the repository has no snapshot of the Job, the mover's summary is looked for in
    # its pod's message: the tail of whatever it printed, file names of the volume included
    # (a name may hold newlines and braces). A "summary" whose counts were not numbers
    # raised ValueError out of the volume's thread and ended the whole backup with a traceback.
    garbage = 'warning: /data/x\n{\n"id": "x", "files": "many", "bytes": {}\n}\n: File name too long'
    pod = PodState("dr-backup-data-1-x", exit_code=3, reason="Error", message=garbage)
    res = VolumeResult(namespace="ns", pvc="data")
    collect_backup(
        res, JobOutcome("dr-backup-data-1", False, "BackoffLimitExceeded", "limit", pod=pod), lambda _: None
    )
    assert res.snapshot_id is None and (res.files, res.bytes) == (0, 0)
    assert res.error is not None and res.error.startswith("Job dr-backup-data-1 failed: BackoffLimitExceeded")
    assert summary_from_log(garbage) is None
    good = '{\n"id": "ab", "files": 3, "bytes": 10, "newBytes": 0, "durationSeconds": 0.5, "errors": []\n}'
    assert summary_from_log(garbage + "\n" + good) == json.loads(good)


def test_deadline_snapshot_timeout_and_stuck_pod(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    pvcs = bound_volumes(kc, agent, app, storage[0], {"slow": 10_000, "unready": 10_000, "stuck": 10_000})
    agent.hang.add(f"{app}/slow")
    agent.never_ready.add(f"{app}/unready")
    agent.stuck[f"{app}/stuck"] = "CreateContainerConfigError"
    ctx = env.backup_ctx(
        # 3 s for snapshots: the unready one must time out, the others be taken in time also on a
        # loaded CI machine (1 s was too short there once: the stuck PVC never got its Job).
        "backup-t",
        mover={"deadline": "1s"},
        volume_options={"snapshot_timeout": "3s"},
        stuck_grace=0.0,
    )

    slow, unready, stuck = backup_volumes(kc, pvcs, ctx, env.finder())

    assert slow.error == (
        f"Job {slow.job} failed: DeadlineExceeded: Job was active longer than specified deadline"
        f"; pod {agent_pod(agent, slow.job)}, waiting: ContainerCreating: injected by the test, DeadlineExceeded"
    )
    assert unready.error is not None and unready.error.startswith("VolumeSnapshot ")
    assert unready.error.endswith(" not taken after 3s (no status yet)")
    assert stuck.job is not None, stuck.error
    assert stuck.error == (
        f"Job {stuck.job} failed: PodStuck: its pod cannot start; pod {agent_pod(agent, stuck.job)}, "
        "waiting: CreateContainerConfigError: injected by the test"
    )
    wait_until(lambda: not leftovers(kc, [app, env.mover_namespace]), what="no leftovers")


def agent_pod(agent: NodeAgent, job: str | None) -> str:
    pods = [p for p in agent.kube.get("/api/v1/pods", {"labelSelector": f"job-name={job}"}).get("items", [])]
    if pods:
        return str(pods[0]["metadata"]["name"])
    # Already collected with its Job: the name the agent gave it is in its record.
    run = next(r for r in agent.runs if r.name == job)
    return str(run.pod_name)


def test_volumes_that_cannot_be_backed_up_say_why(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    namespaces: list[str],
    unique: str,
    fs_storage: str,
) -> None:
    kc, agent, env, sc = kube_client, node_agent, mover_env, fs_storage
    app = new_namespace(kc, namespaces, f"plain-{unique}")  # no dr-config here
    agent.manage(app)
    (bound,) = bound_volumes(kc, agent, app, sc, {"data": 1000})
    pending = create_pvc(kc, app, "later", sc)
    pending["status"] = {"phase": "Pending"}
    block = {**bound, "spec": {**bound["spec"], "volumeMode": "Block"}}
    # Lost: its PersistentVolume is gone (deleted, or never came back with the cluster).
    lost = {**bound, "spec": {**bound["spec"], "volumeName": "pv-gone"}, "status": {"phase": "Lost"}}

    fs, unbound, blk, gone = backup_volumes(
        kc, [bound, pending, block, lost], env.backup_ctx("b-x"), env.finder()
    )
    assert fs.method == "filesystem" and fs.error == (
        f"mover Jobs in namespace {app} need the ConfigMap dr-config (dr.yaml) there "
        "(a pod can only mount ConfigMaps of its own namespace)"
    )
    assert unbound.skipped == "PVC is Pending: it holds no data yet" and unbound.error is None
    # Skipped with the reason, and a warning: a raw device is not a failure of each backup.
    reason = "block-mode volume: its data is not backed up (the mover copies files, not devices)"
    assert blk.error is None and blk.skipped == reason and blk.warnings == [reason]
    # Not "no data yet": the data is gone, which whoever reads the backup must hear of.
    reason = "PVC is Lost: its PersistentVolume pv-gone is gone; there is no data to back up"
    assert gone.error is None and gone.skipped == reason and gone.warnings == [reason]

    (snap_only,) = backup_volumes(kc, [bound], env.backup_ctx("b-y", mode="snapshot"), env.finder())
    assert snap_only.error == (
        f"no VolumeSnapshotClass for CSI driver '{unique}.hostpath.csi.k8s.io' (volumes.mode is snapshot)"
    )
    named = env.backup_ctx("b-z", mode="auto", volume_options={"snapshot_class": "missing"})
    (res,) = backup_volumes(kc, [bound], named, env.finder())
    assert res.error == "VolumeSnapshotClass 'missing' (from the policy) does not exist"
    assert backup_volumes(kc, [bound], env.backup_ctx("b-n", mode="none"), env.finder()) == []
    assert agent.runs == []


def test_a_claim_being_deleted_is_skipped_with_a_warning_not_waited_for(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    # A claim deleted while a pod still uses it stays (pvc-protection) until that pod ends. The
    # snapshot controller refuses to snapshot it and the scheduler to place a new pod mounting
    # it: dr waited for the snapshot timeout, or for a mover pod that never started (the
    # stuck grace where pinned, else the mover's deadline), and then blamed the wrong thing.
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    env.prepare(app)  # the file-system movers run here
    going, kept = bound_volumes(kc, agent, app, storage[0], {"going": 1000, "kept": 1000})
    path = f"/api/v1/namespaces/{app}/persistentvolumeclaims/going"
    kc.request("PATCH", path, body={"metadata": {"finalizers": ["test.dr.dev/hold"]}},
               content_type="application/merge-patch+json")  # fmt: skip
    try:
        kc.request("DELETE", path)
        going = get_pvc(kc, app, "going")
        assert going["metadata"].get("deletionTimestamp")
        for mode in ("auto", "filesystem"):
            res, ok = backup_volumes(
                kc, [going, kept], env.backup_ctx(f"b-del-{mode}", mode=mode), env.finder()
            )
            reason = "PVC is being deleted: no new snapshot or pod may use it; its data is not backed up"
            assert (res.error, res.skipped, res.warnings) == (None, reason, [reason]), mode
            assert ok.error is None and ok.snapshot_id, mode
        assert [r.volume for r in agent.runs] == [f"{app}/kept", f"{app}/kept"]
    finally:
        kc.request("PATCH", path, body={"metadata": {"finalizers": None}},
                   content_type="application/merge-patch+json")  # fmt: skip


# --------------------------------------------------------------------------- parallelism


def test_no_more_than_parallelism_movers_at_once(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    parallelism = 2
    count = parallelism + 1  # one more volume than slots
    pvcs = bound_volumes(kc, agent, app, storage[0], {f"v{i}": 50_000 for i in range(count)})
    ctx = env.backup_ctx(f"backup-p{parallelism}", mover={"parallelism": parallelism})
    # A mover of 50 KB can end before the next one starts: the first ``parallelism``
    # start together, so that they overlap whenever the orchestrator let them exist
    # at once (and the agent counts them alive at the same moment).
    agent.start_together(parallelism)
    results = backup_volumes(kc, pvcs, ctx, env.finder())
    assert [r.error for r in results] == [None] * count
    assert len(agent.runs) == count
    assert agent.max_running == parallelism


def test_movers_held_to_start_together_start_alone_when_no_other_comes(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    # The test agent's gate must not turn a lone mover into a hung backup.
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    pvcs = bound_volumes(kc, agent, app, storage[0], {"only": 50_000})
    agent.start_together(2, timeout=1.0)
    results = backup_volumes(kc, pvcs, env.backup_ctx("backup-alone"), env.finder())
    assert [r.error for r in results] == [None]
    assert agent.max_running == 1


# --------------------------------------------------------------------------- restore failures, cleanup on anything


def test_restore_failures_say_why(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    namespaces: list[str],
    unique: str,
) -> None:
    kc, agent, env, sc = kube_client, node_agent, mover_env, storage[0]
    ready = new_namespace(kc, namespaces, f"ready-{unique}")
    bare = new_namespace(kc, namespaces, f"bare-{unique}")
    env.prepare(ready)
    agent.manage(ready, bare)
    create_pvc(kc, ready, "data", sc)
    create_pvc(kc, bare, "data", sc)
    missing_id = "ab" * 32
    targets = [
        VolumeRestoreTarget(namespace=ready, pvc="gone", snapshot_id=missing_id),
        VolumeRestoreTarget(namespace=bare, pvc="data", snapshot_id=missing_id),
        VolumeRestoreTarget(namespace=ready, pvc="data", snapshot_id=missing_id),
    ]
    gone, bare_res, bad_id = restore_volumes(kc, targets, env.restore_ctx("r-fail"))
    assert gone.error == f"PVC {ready}/gone does not exist (restore the PVCs first)"
    assert bare_res.error == (
        f"mover Jobs in namespace {bare} need the ConfigMap dr-config (dr.yaml) there "
        "(a pod can only mount ConfigMaps of its own namespace)"
    )
    assert bad_id.error is not None and bad_id.error.startswith(
        f"Job {bad_id.job} failed: BackoffLimitExceeded"
    )
    # the mover's own reason, from the termination message
    assert f"no volume snapshot with id '{missing_id}'" in bad_id.error
    assert not leftovers(kc, [ready, bare])


def test_a_restore_into_a_claim_of_a_missing_storage_class_fails_at_once(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    namespaces: list[str],
    unique: str,
) -> None:
    # A restore into another cluster whose classes have other names: the claim stays Pending
    # for ever, and its mover pod with it. dr waited for the mover's deadline (6 h by default)
    # and then blamed the Job; the claim's class is what to fix, and it can be seen at once.
    kc, agent, env, sc = kube_client, node_agent, mover_env, storage[0]
    ns = restore_namespace(kc, agent, env, namespaces, f"noclass-{unique}")
    agent.unbound.add(f"{ns}/orphan")
    create_pvc(kc, ns, "orphan", f"gone-{unique}")
    create_pvc(kc, ns, "fine", sc)
    missing_id = "ab" * 32
    targets = [
        VolumeRestoreTarget(namespace=ns, pvc="orphan", snapshot_id=missing_id),
        VolumeRestoreTarget(namespace=ns, pvc="fine", snapshot_id=missing_id),
    ]
    orphan, fine = restore_volumes(kc, targets, env.restore_ctx("r-noclass", mover={"deadline": "20s"}))
    assert orphan.error == (
        f"PVC {ns}/orphan cannot be provisioned: its StorageClass 'gone-{unique}' does not exist in this "
        f"cluster (create it, or restore with --storage-class-mapping gone-{unique}=<a class of this cluster>)"
    )
    assert orphan.job is None and [r.volume for r in agent.runs] == [f"{ns}/fine"]
    # The other volume's mover ran (and failed on its own: the snapshot id is made up).
    assert fine.error is not None and "BackoffLimitExceeded" in fine.error
    assert not leftovers(kc, [ns])


def test_a_claim_of_a_class_name_only_static_volumes_carry_is_not_refused(
    kube_client: KubeClient, namespaces: list[str], unique: str
) -> None:
    # Static provisioning names a class no StorageClass object has ("manual" in the Kubernetes
    # docs): the PV controller binds the claim to an Available PV of that class name. The
    # missing-class check refused such a claim at once, a restore that used to work.
    kc = kube_client
    ns = new_namespace(kc, namespaces, f"manual-{unique}")
    cls = f"manual-{unique}"
    claim = create_pvc(kc, ns, "data", cls)
    assert missing_storage_class(kc, claim) is not None  # no PV of that class: it never binds
    pv = f"pv-{cls}"
    kc.call("POST", "/api/v1/persistentvolumes", body={
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                 "hostPath": {"path": "/srv/data"}},
    })  # fmt: skip
    try:
        assert missing_storage_class(kc, claim) is None
        # A volume bound to another claim does not serve this one.
        kc.call("PATCH", f"/api/v1/persistentvolumes/{pv}", content_type="application/merge-patch+json",
                body=json.dumps({"spec": {"claimRef": {"namespace": ns, "name": "other"}}}).encode())  # fmt: skip
        assert missing_storage_class(kc, claim) is not None
    finally:
        kc.request("DELETE", f"/api/v1/persistentvolumes/{pv}")


def backed_up_claim(
    kc: KubeClient, agent: NodeAgent, env: MoverEnv, app: str, sc: str, backup_id: str
) -> VolumeResult:
    """Claim ``data`` of ``app``, bound and filled, backed up file by file: its result (a snapshot to restore)."""
    (source,) = backup_volumes(
        kc, bound_volumes(kc, agent, app, sc, {"data": 10_000}), env.backup_ctx(backup_id), env.finder()
    )
    assert source.error is None and source.snapshot_id
    return source


def test_a_restore_mover_for_a_claim_a_pod_already_mounts_runs_on_that_pods_node(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    fs_storage: str,
    fs_app: str,
    namespaces: list[str],
    unique: str,
) -> None:
    # A re-run after a failed mover: the first run restored the workloads, whose pod now
    # mounts the claim still awaiting its data. A ReadWriteOnce volume is attached to that
    # pod's node; a mover the scheduler put elsewhere waited in ContainerCreating
    # (Multi-Attach) until its deadline. As for a file-system backup: next to the pod, with
    # its tolerations and groups; a ReadWriteOncePod claim in use is refused at once.
    kc, agent, env, sc, app = kube_client, node_agent, mover_env, fs_storage, fs_app
    source = backed_up_claim(kc, agent, env, app, sc, "b-rwo")
    ns = restore_namespace(kc, agent, env, namespaces, f"rerun-{unique}")
    create_pvc(kc, ns, "data", sc)
    toleration = {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}
    create_pod(kc, ns, "db-0", ["data"], node="node-7", tolerations=[toleration], fs_group=999)
    kc.call("POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "solo"},
        "spec": {"accessModes": ["ReadWriteOncePod"], "storageClassName": sc,
                 "resources": {"requests": {"storage": "1Gi"}}}})  # fmt: skip
    create_pod(kc, ns, "solo-0", ["solo"], node="node-8")
    targets = [
        VolumeRestoreTarget(namespace=ns, pvc=name, snapshot_id=str(source.snapshot_id))
        for name in ("data", "solo")
    ]

    data, solo = restore_volumes(kc, targets, env.restore_ctx("r-rwo"))

    assert data.error is None, data.error
    (run,) = agent.runs[1:]
    spec = run.manifest["spec"]["template"]["spec"]
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-7"]}]}
        ]
    }
    assert spec["tolerations"] == [toleration]
    assert spec["securityContext"]["supplementalGroups"] == [999]
    assert (
        solo.error == "ReadWriteOncePod volume in use: no second pod may mount it (pod solo-0); stop the pod"
    )
    assert tree_listing(agent.volume_dir(ns, "data")) == tree_listing(agent.volume_dir(app, "data"))


def bob_may_move_but_not_list_pods(kc: KubeClient, namespace: str) -> None:
    """User bob may, in ``namespace``, do all a mover needs (claims, config copies, Jobs, their
    pods' logs) and get pods, but not list them."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    kc.call("POST", f"{rbac}/roles", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "mover-no-pod-list"},
        "rules": [{"apiGroups": [""], "resources": ["persistentvolumeclaims", "configmaps", "secrets", "pods/log"],
                   "verbs": ["*"]},
                  {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch"]},
                  {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["*"]}]})  # fmt: skip
    kc.call("POST", f"{rbac}/rolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "bob-moves"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mover-no-pod-list"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]})  # fmt: skip


def test_a_restore_that_may_not_list_pods_warns_and_still_restores_unplaced(
    kube_client: KubeClient,
    kube: Kube,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    fs_storage: str,
    fs_app: str,
    namespaces: list[str],
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An identity whose Role in the namespace grants all a restore mover needs but listing pods:
    # dr cannot see that a pod on node-7 mounts the claim. That is no reason to fail the volume;
    # the mover runs wherever the scheduler puts it, and the warning says so and why — once per
    # namespace, as a warning of the restore (it was only logged: `dr restore -o json` and a
    # drill's report never carried it), not of each volume.
    if kube.cluster.external:
        pytest.skip("runs as an identity of the local test cluster")
    kc, agent, env, sc, app = kube_client, node_agent, mover_env, fs_storage, fs_app
    source = backed_up_claim(kc, agent, env, app, sc, "b-nopods")
    ns = restore_namespace(kc, agent, env, namespaces, f"nopods-{unique}")
    create_pvc(kc, ns, "data", sc)
    create_pvc(kc, ns, "copy", sc)
    create_pod(kc, ns, "db-0", ["data"], node="node-7")
    bob_may_move_but_not_list_pods(kc, ns)
    targets = [VolumeRestoreTarget(namespace=ns, pvc=pvc, snapshot_id=str(source.snapshot_id)) for pvc in ("data", "copy")]  # fmt: skip
    warnings: list[str] = []

    with connect(kube.cluster.kubeconfig_for("bob"), None) as bob, caplog.at_level(logging.WARNING):
        restored = restore_volumes(bob, targets, env.restore_ctx("r-nopods"), on_warning=warnings.append)

    assert [(r.error, r.warnings) for r in restored] == [(None, [])] * 2
    assert warnings == [
        f"cannot list pods in {ns} (movers not placed next to them): 403 Forbidden: pods is forbidden: "
        f'User "bob" cannot list resource "pods" in API group "" in the namespace "{ns}"'
    ]
    assert not [r for r in caplog.records if "cannot list pods" in r.getMessage()]  # in the result: not twice
    assert len(agent.runs[1:]) == 2
    for run in agent.runs[1:]:
        assert "affinity" not in run.manifest["spec"]["template"]["spec"]  # not placed on node-7
    for pvc in ("data", "copy"):
        assert tree_listing(agent.volume_dir(ns, pvc)) == tree_listing(agent.volume_dir(app, "data"))
    assert not leftovers(kc, [ns])


def test_a_backup_that_may_not_list_pods_warns_once_and_still_backs_up(
    kube_client: KubeClient,
    kube: Kube,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    fs_storage: str,
    fs_app: str,
    unique: str,
) -> None:
    # As for the restore: an identity that may do all a file-level backup needs but list pods.
    # Its volumes are copied (no hooks, no node placement) and the backup's result says so, once
    # for the namespace: it was only logged, and the snapshot's warnings never had it.
    if kube.cluster.external:
        pytest.skip("runs as an identity of the local test cluster")
    kc, agent, env, sc, app = kube_client, node_agent, mover_env, fs_storage, fs_app
    pvcs = bound_volumes(kc, agent, app, sc, {"data": 10_000, "logs": 10_000})
    create_pod(kc, app, "db-0", ["data"], node="node-7")
    bob_may_move_but_not_list_pods(kc, app)
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    # Which driver serves a claim and whether it snapshots: PersistentVolume, StorageClass and
    # VolumeSnapshotClasses (cluster-wide).
    cluster_role = f"bob-reads-volumes-{unique}"
    kc.call("POST", f"{rbac}/clusterroles", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": cluster_role},
        "rules": [{"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get"]},
                  {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get"]},
                  {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshotclasses"],
                   "verbs": ["list"]}]})  # fmt: skip
    kc.call("POST", f"{rbac}/clusterrolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": cluster_role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]})  # fmt: skip
    warnings: list[str] = []
    try:
        with connect(kube.cluster.kubeconfig_for("bob"), None) as bob:
            results = backup_volumes(
                bob, pvcs, env.backup_ctx("b-nopods"), env.finder(), on_warning=warnings.append
            )
    finally:
        kc.request("DELETE", f"{rbac}/clusterrolebindings/{cluster_role}")
        kc.request("DELETE", f"{rbac}/clusterroles/{cluster_role}")

    assert [(r.method, r.error, r.warnings) for r in results] == [("filesystem", None, [])] * 2
    assert all(r.snapshot_id for r in results)
    assert warnings == [
        f"cannot list pods in {app} (no hooks, no node placement): 403 Forbidden: pods is forbidden: "
        f'User "bob" cannot list resource "pods" in API group "" in the namespace "{app}"'
    ]
    for run in agent.runs:
        assert "affinity" not in run.manifest["spec"]["template"]["spec"]  # not placed on node-7
    assert not leftovers(kc, [app])


def test_a_mover_whose_claim_is_deleted_before_its_pod_starts_gives_up(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    namespaces: list[str],
    unique: str,
) -> None:
    # The claim goes (a namespace torn down by someone else, a cleanup script) while its
    # mover's pod waits for it. No scheduler places a pod whose claim is gone, Lost or being
    # deleted, ever: dr waited for the mover's deadline and then blamed the Job's deadline.
    kc, agent, env, sc = kube_client, node_agent, mover_env, storage[0]
    ns = restore_namespace(kc, agent, env, namespaces, f"goneclaim-{unique}")
    agent.unbound.add(f"{ns}/data")  # provisioning is slow: the pod waits for its claim
    create_pvc(kc, ns, "data", sc)
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"

    def delete_claim_once_the_mover_exists() -> None:
        wait_until(lambda: kc.get(jobs).get("items"), what="the mover Job")
        kc.call("DELETE", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")

    deleter = threading.Thread(target=delete_claim_once_the_mover_exists, daemon=True)
    deleter.start()
    target = VolumeRestoreTarget(namespace=ns, pvc="data", snapshot_id="ab" * 32)
    ctx = env.restore_ctx("r-gone", mover={"deadline": "60s"}, stuck_grace=3.0)
    started = time.monotonic()
    (res,) = restore_volumes(kc, [target], ctx)
    deleter.join()

    assert time.monotonic() - started < 30
    assert res.error is not None and res.error.startswith(
        f"Job {res.job} failed: PodStuck: its pod cannot start: PVC {ns}/data does not exist; pod "
    ), res.error
    assert not leftovers(kc, [ns])


def test_a_mover_whose_claim_is_lost_or_being_deleted_gives_up_naming_it(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    namespaces: list[str],
    unique: str,
) -> None:
    # The two other states no scheduler places a pod for: a claim being deleted (kept by a
    # finalizer) and a Lost one (its PersistentVolume gone). Each mover gives up after the
    # stuck grace, naming its claim, instead of at the Job's deadline.
    kc, agent, env, sc = kube_client, node_agent, mover_env, storage[0]
    ns = new_namespace(kc, namespaces, f"lostclaim-{unique}")
    env.prepare(ns)
    agent.manage(ns)
    claims = f"/api/v1/namespaces/{ns}/persistentvolumeclaims"
    for name in ("dying", "lost"):
        agent.unbound.add(f"{ns}/{name}")
        create_pvc(kc, ns, name, sc)
    merge = "application/merge-patch+json"
    kc.call("PATCH", f"{claims}/dying", content_type=merge,
            body=json.dumps({"metadata": {"finalizers": ["example.com/hold"]}}).encode())  # fmt: skip
    kc.call("DELETE", f"{claims}/dying")
    kc.call("PATCH", f"{claims}/lost/status", content_type=merge,
            body=json.dumps({"status": {"phase": "Lost"}}).encode())  # fmt: skip
    try:
        targets = [VolumeRestoreTarget(namespace=ns, pvc=n, snapshot_id="ab" * 32) for n in ("dying", "lost")]
        ctx = env.restore_ctx("r-lost", mover={"deadline": "60s"}, stuck_grace=3.0)
        started = time.monotonic()

        dying, lost = restore_volumes(kc, targets, ctx)

        assert time.monotonic() - started < 30
        assert dying.error is not None and dying.error.startswith(
            f"Job {dying.job} failed: PodStuck: its pod cannot start: PVC {ns}/dying is being deleted; pod "
        ), dying.error
        assert lost.error is not None and lost.error.startswith(
            f"Job {lost.job} failed: PodStuck: its pod cannot start: PVC {ns}/lost is Lost (its "
            "PersistentVolume is gone); pod "
        ), lost.error
        assert not leftovers(kc, [ns])
    finally:
        kc.call("PATCH", f"{claims}/dying", content_type=merge,
                body=json.dumps({"metadata": {"finalizers": None}}).encode())  # fmt: skip


def test_a_mover_job_that_gets_no_pod_gives_up_after_the_stuck_grace(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    fs_storage: str,
    fs_app: str,
) -> None:
    # A file-system mover runs in the app's namespace, where a ResourceQuota (exceeded, or
    # asking for a cpu limit the mover does not set) or the Pod Security level refuses its
    # pod: the Job controller makes none, records an Event (dr may not read Events) and
    # tries again until the Job's deadline. dr waited for it (6 h by default).
    kc, agent, env, sc, app = kube_client, node_agent, mover_env, fs_storage, fs_app
    refused, fine = bound_volumes(kc, agent, app, sc, {"refused": 1000, "fine": 1000})
    agent.no_pod.add(f"{app}/refused")
    ctx = env.backup_ctx("b-nopod", mover={"deadline": "60s"}, stuck_grace=3.0)
    started = time.monotonic()

    bad, ok = backup_volumes(kc, [refused, fine], ctx, env.finder())

    assert time.monotonic() - started < 30
    assert bad.error == (
        f"Job {bad.job} failed: NoPod: no pod was made for it in 10s: admission refuses it "
        f"(a ResourceQuota, LimitRange or the Pod Security level of namespace {app}: "
        f"kubectl describe job -n {app} {bad.job})"
    )
    assert ok.error is None and ok.snapshot_id
    assert not leftovers(kc, [app, env.mover_namespace])


def test_a_restore_mover_whose_claim_is_never_provisioned_gives_up(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    namespaces: list[str],
    unique: str,
) -> None:
    # Restored into another cloud, a StorageClass comes back from the backup naming a
    # provisioner this cluster lacks (or one whose quota is spent): the class exists, its
    # claim stays Pending for ever, and so did the mover until its deadline (6 h).
    kc, agent, env, sc = kube_client, node_agent, mover_env, storage[0]
    ns = restore_namespace(kc, agent, env, namespaces, f"noprov-{unique}")
    agent.unbound.add(f"{ns}/data")  # no provisioner acts for it
    create_pvc(kc, ns, "data", sc)
    driver = kc.get(f"/apis/storage.k8s.io/v1/storageclasses/{sc}")["provisioner"]
    target = VolumeRestoreTarget(namespace=ns, pvc="data", snapshot_id="ab" * 32)
    ctx = env.restore_ctx("r-noprov", mover={"deadline": "60s"}, stuck_grace=3.0)
    started = time.monotonic()

    (res,) = restore_volumes(kc, [target], ctx)

    assert time.monotonic() - started < 30
    assert res.error is not None and res.error.startswith(
        f"Job {res.job} failed: PodStuck: its pod cannot start: PVC {ns}/data is still Pending: no "
        f"volume was provisioned for it (StorageClass {sc!r}: is its provisioner {driver!r} installed "
        "and able to make one?); pod "
    ), res.error
    assert not leftovers(kc, [ns])


def test_temporary_objects_go_whatever_happens(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    pvcs = bound_volumes(kc, agent, app, storage[0], {"data-a": 10_000})

    def broken(job: str) -> dict[str, Any] | None:
        raise RuntimeError("the repository went away")

    with pytest.raises(RuntimeError, match="the repository went away"):
        backup_volumes(kc, pvcs, env.backup_ctx("backup-crash"), broken)
    assert len(agent.runs) == 1 and agent.runs[0].outcome == "succeeded"
    wait_until(lambda: not leftovers(kc, [app, env.mover_namespace]), what="no leftovers")


# --------------------------------------------------------------------------- the full size


@pytest.mark.slow
def test_200_mb_snapshot_round_trip(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
    namespaces: list[str],
    unique: str,
) -> None:
    kc, agent, env, app, sc = kube_client, node_agent, mover_env, snap_app, storage[0]
    pvcs = bound_volumes(kc, agent, app, sc, {"big-a": 100 * MB, "big-b": 100 * MB}, seed=11)
    results = backup_volumes(kc, pvcs, env.backup_ctx("backup-big"), env.finder())
    assert [r.error for r in results] == [None, None]
    assert sum(r.bytes for r in results) == pytest.approx(200 * MB, abs=8192)
    ns, restored = restore_into_fresh_pvcs(kc, agent, env, namespaces, f"big-{unique}", sc, results)
    assert [r.error for r in restored] == [None, None]
    for name in ("big-a", "big-b"):
        assert tree_listing(agent.volume_dir(ns, name)) == tree_listing(agent.volume_dir(app, name))


def test_a_snapshot_copy_queued_behind_a_long_one_still_gets_its_clone(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    # With more snapshot volumes than mover slots, a copy waits for a slot for as long as
    # the copies before it take (hours, at night). Its clone then got the rest of the
    # budget that began when its snapshot was cut: none, so it failed at once with
    # "not readyToUse after 10m" although nothing was wrong with it.
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    pvcs = bound_volumes(kc, agent, app, storage[0], {"first": 10_000, "second": 10_000})
    agent.hang.add(f"{app}/first")  # holds the only slot until its deadline (longer than the budget)
    ctx = env.backup_ctx(
        "backup-queued",
        mover={"deadline": "4s", "parallelism": 1},
        volume_options={"snapshot_timeout": "2s"},
    )

    first, second = backup_volumes(kc, pvcs, ctx, env.finder())

    assert first.error is not None and "DeadlineExceeded" in first.error
    assert second.error is None and second.snapshot_id, second.error
    wait_until(lambda: not leftovers(kc, [app, env.mover_namespace]), what="no leftovers")


def test_a_retain_snapshot_class_leaves_no_storage_snapshot_behind(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    # Many clusters' snapshot classes say Retain (kept snapshots survive a deleted
    # VolumeSnapshot). dr's snapshots are temporary: deleting the VolumeSnapshot left its
    # content and the storage snapshot behind, one more leaked cloud snapshot per volume
    # and night, unlabelled, so no cleanup ever found it.
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    kc.call(
        "PATCH",
        f"/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses/{storage[1]}",
        body={"deletionPolicy": "Retain"},
        content_type="application/merge-patch+json",
    )
    pvcs = bound_volumes(kc, agent, app, storage[0], {"data-a": 10_000})

    (res,) = backup_volumes(kc, pvcs, env.backup_ctx("backup-retain"), env.finder())

    assert res.error is None and res.snapshot_id, res.error
    wait_until(lambda: not leftovers(kc, [app, env.mover_namespace]), what="no leftovers")

    def contents_of_app() -> list[str]:
        items = kc.get("/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents").get("items", [])
        return [c["metadata"]["name"] for c in items if c["spec"]["volumeSnapshotRef"]["namespace"] == app]

    wait_until(lambda: not contents_of_app(), what="the snapshot's content deleted")
    wait_until(lambda: not any((agent.root / "snapshots").iterdir()), what="the storage snapshot deleted")


def test_the_temporary_pvc_is_as_large_as_the_snapshot_and_the_volume(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    # The temporary PVC requested the snapshot's restoreSize as it was. Drivers that do not
    # know the size report "0" (CSI: size unspecified), and a claim for 0 bytes is invalid:
    # the copy could never start. It now asks for the larger of restoreSize and the volume's size.
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    pvcs = bound_volumes(kc, agent, app, storage[0], {"unknown": 10_000, "larger": 10_000})
    agent.restore_sizes[f"{app}/unknown"] = "0"
    agent.restore_sizes[f"{app}/larger"] = "5Gi"  # the provider allocated more than was asked for

    results = backup_volumes(kc, pvcs, env.backup_ctx("backup-sizes"), env.finder())

    assert [r.error for r in results] == [None, None]
    temporary = {
        name.rsplit("-", 1)[0]: size
        for (ns, name), size in agent.bound_requests.items()
        if ns == env.mover_namespace
    }
    assert temporary == {"dr-unknown": "1Gi", "dr-larger": "5Gi"}


def test_a_static_volume_without_a_storage_class_is_copied_from_its_snapshot(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    # A statically provisioned CSI volume (storageClassName "") is snapshotted by its
    # driver, but the temporary PVC from the snapshot had no class: the cluster default
    # (another driver, or none) never provisioned it, and the copy waited for the whole
    # mover deadline. It now gets a StorageClass of the snapshot's driver.
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    sc, _ = storage
    driver = kc.get(f"/apis/storage.k8s.io/v1/storageclasses/{sc}")["provisioner"]
    pv = f"static-{app}"
    kc.call("POST", "/api/v1/persistentvolumes", body={
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "csi": {"driver": driver, "volumeHandle": "vol-0123"},
                 "claimRef": {"kind": "PersistentVolumeClaim", "namespace": app, "name": "static"}},
    })  # fmt: skip
    try:
        kc.call("POST", f"/api/v1/namespaces/{app}/persistentvolumeclaims", body={
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "static"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                     "resources": {"requests": {"storage": "1Gi"}}},
        })  # fmt: skip
        wait_until(lambda: get_pvc(kc, app, "static").get("status", {}).get("phase") == "Bound", what="bound")
        fill_volume(agent.volume_dir(app, "static"), 3, 10_000)

        ctx = env.backup_ctx("backup-static", mover={"deadline": "5s"})
        (res,) = backup_volumes(kc, [get_pvc(kc, app, "static")], ctx, env.finder())

        assert res.method == "snapshot" and res.error is None and res.snapshot_id, res.error
        wait_until(lambda: not leftovers(kc, [app, env.mover_namespace]), what="no leftovers")
    finally:
        kc.request("DELETE", f"/api/v1/persistentvolumes/{pv}")


def test_a_snapshot_mover_gets_the_groups_of_the_pods_using_the_volume(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    # The app's fsGroup makes its files group-readable; the file-system mover got that group
    # (supplementalGroups) but the snapshot mover — the default wherever a snapshot class
    # exists — did not: uid 65532 could not read 0640/0660 files of the app's uid.
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    pvcs = bound_volumes(kc, agent, app, storage[0], {"data-a": 10_000})
    create_pod(kc, app, "db-0", ["data-a"], node="node-3", fs_group=999)

    (res,) = backup_volumes(kc, pvcs, env.backup_ctx("backup-groups"), env.finder())

    assert res.method == "snapshot" and res.error is None, res.error
    (run,) = agent.runs
    spec = run.manifest["spec"]["template"]["spec"]
    assert spec["securityContext"]["supplementalGroups"] == [999]
    # Its volume is a copy in dr's namespace: no reason to run on the app's node.
    assert "affinity" not in spec and "tolerations" not in spec


def test_a_generic_ephemeral_volume_is_copied_next_to_its_pod(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    fs_storage: str,
    fs_app: str,
) -> None:
    # A pod's generic ephemeral volume is a PVC named <pod>-<volume>, referenced by the pod as
    # `ephemeral`, not `persistentVolumeClaim`. dr did not see the pod: no hooks, and the
    # file-system mover of the ReadWriteOnce volume was not pinned to the pod's node (a
    # Multi-Attach error: ContainerCreating until the deadline).
    kc, agent, env, sc, app = kube_client, node_agent, mover_env, fs_storage, fs_app
    (pvc,) = bound_volumes(kc, agent, app, sc, {"cache-0-scratch": 1000})
    kc.call("POST", f"/api/v1/namespaces/{app}/pods", body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cache-0"},
        "spec": {"nodeName": "node-5", "containers": [{"name": "app", "image": "app:1"}],
                 "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
                     "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]},
    })  # fmt: skip

    (res,) = backup_volumes(kc, [pvc], env.backup_ctx("backup-eph", mode="filesystem"), env.finder())

    assert res.error is None, res.error
    (run,) = agent.runs
    terms = run.manifest["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-5"]}]}]


def test_an_evicted_mover_is_replaced_and_the_volume_backed_up(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    storage: tuple[str, str | None],
    snap_app: str,
) -> None:
    # backoffLimit 0 (a failed copy is not retried blindly) also failed every volume whose
    # mover was evicted: a node drain, a spot node reclaimed, preemption — routine at night.
    # A disruption says nothing about the copy: the Job's podFailurePolicy now ignores it
    # and the Job controller starts a replacement pod.
    kc, agent, env, app = kube_client, node_agent, mover_env, snap_app
    pvcs = bound_volumes(kc, agent, app, storage[0], {"data-a": 200_000})
    agent.evict.add(f"{app}/data-a")

    (res,) = backup_volumes(kc, pvcs, env.backup_ctx("backup-evict"), env.finder())

    assert res.error is None and res.snapshot_id, res.error
    assert not agent.evict  # it was evicted once
    (run,) = agent.runs
    assert run.outcome == "succeeded"
    wait_until(lambda: not leftovers(kc, [app, env.mover_namespace]), what="no leftovers")
