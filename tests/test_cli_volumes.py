"""Volume data through the CLI: ``dr backup -n NS`` and ``dr restore latest`` with mover Jobs, end to end.

A namespace with two PVCs full of files (modes, times, a symlink) is backed
up by the real command — CSI snapshots cut by the node agent
(``dr.testkit.agent``), data copied by ``dr mover`` Jobs into SeaweedFS with
a master key wrapped by OpenBao — then the namespace is deleted (the agent
reclaims the volumes) and ``dr restore latest`` brings objects and files
back: every file byte-identical with its mode and mtime. A mover killed
mid-copy makes the backup exit 3 naming the volume and why, leaves no
temporary object behind, and the next backup succeeds.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.kube.client import KubeClient
from dr.testkit.agent import NodeAgent, wait_until
from tests.conftest import Kube
from tests.helpers import Result, run_dr
from tests.volume_helpers import (
    MoverEnv,
    create_namespace,
    create_pvc,
    create_storage,
    delete_storage,
    fill_volume,
    get_pvc,
    tree_listing,
)

MB = 1 << 20
IMAGE = "ghcr.io/dr-project/dr:test"
Capsys = pytest.CaptureFixture[str]


@dataclass
class App:
    namespace: str
    config: str
    kubeconfig: str
    pvcs: tuple[str, ...] = ("data-a", "data-b")

    def dr(self, capsys: Capsys, *args: str) -> Result:
        return run_dr(capsys, "--config", self.config, "--kubeconfig", self.kubeconfig, *args)

    def config_doc(self) -> dict[str, Any]:
        """Its dr.yaml, parsed: to change into a test's own (``with_config``)."""
        doc: dict[str, Any] = yaml.safe_load(Path(self.config).read_text())
        return doc

    def with_config(self, doc: dict[str, Any], path: Path) -> App:
        """The same application, with ``doc`` written to ``path`` as its dr.yaml."""
        path.write_text(yaml.safe_dump(doc))
        return replace(self, config=str(path))

    def with_policy(self, policy: dict[str, Any], path: Path) -> App:
        """The same application, its dr.yaml (at ``path``) with one backup policy over its namespace."""
        doc = self.config_doc()
        doc["backupPolicies"] = [{**policy, "scope": {"namespaces": [self.namespace]}}]
        return self.with_config(doc, path)


def write_mover_config(env: MoverEnv, directory: Path) -> str:
    """dr.yaml of the command: the movers' repository and key, plus where and how movers run."""
    doc = yaml.safe_load(env.dr_yaml)
    doc["mover"] = {"image": IMAGE, "namespace": env.mover_namespace, "credentialsSecret": env.secret_name}
    path = directory / "dr.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def leftovers(kc: KubeClient, namespaces: list[str]) -> list[str]:
    """dr's temporary objects (Jobs, PVCs, VolumeSnapshots, contents, config copies) still there."""
    sel = {"labelSelector": "dr.dev/mover=true"}
    found = []
    for ns in namespaces:
        for path in (
            f"/apis/batch/v1/namespaces/{ns}/jobs",
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
            f"/apis/snapshot.storage.k8s.io/v1/namespaces/{ns}/volumesnapshots",
            f"/api/v1/namespaces/{ns}/configmaps",
            f"/api/v1/namespaces/{ns}/secrets",
        ):
            found += [f"{path}/{o['metadata']['name']}" for o in kc.get(path, sel).get("items", [])]
    contents = kc.get("/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents", sel).get("items", [])
    return found + [f"content {o['metadata']['name']}" for o in contents]


@pytest.fixture
def app(
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    isolated_home: Path,
    unique: str,
    kube: Kube,
) -> Iterator[App]:
    """Namespace ``vol-<unique>`` with two bound PVCs of a CSI class that has a snapshot class."""
    kc = kube_client
    sc, vsc = create_storage(kc, unique, snapshot_class=True)
    ns = f"vol-{unique}"
    create_namespace(kc, ns)
    node_agent.manage(ns, mover_env.mover_namespace)
    try:
        made = App(ns, write_mover_config(mover_env, isolated_home), kube.kubeconfig)
        for name in made.pvcs:
            create_pvc(kc, ns, name, sc)
        for name in made.pvcs:
            wait_until(lambda n=name: get_pvc(kc, ns, n).get("status", {}).get("phase") == "Bound", what=name)
        yield made
    finally:
        kc.request("DELETE", f"/api/v1/namespaces/{ns}")
        delete_storage(kc, sc, vsc)


def file_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    listing = tree_listing(root)
    listing["."] = ("dir", stat.S_IMODE(root.stat().st_mode))
    return listing


@pytest.mark.parametrize(
    "size", [pytest.param(10 * MB, id="20MB"), pytest.param(100 * MB, id="200MB", marks=pytest.mark.slow)]
)
def test_backup_then_lost_namespace_restored_with_identical_files(
    capsys: Capsys, kube_client: KubeClient, node_agent: NodeAgent, mover_env: MoverEnv, app: App, size: int
) -> None:
    kc, agent = kube_client, node_agent
    for seed, pvc in enumerate(app.pvcs, 1):
        fill_volume(agent.volume_dir(app.namespace, pvc), seed, size)
    before = {pvc: file_tree(agent.volume_dir(app.namespace, pvc)) for pvc in app.pvcs}

    res = app.dr(capsys, "backup", "-n", app.namespace, "-o", "json")
    assert res.code == 0, res.err
    backup = res.json()
    assert backup["phase"] == "Completed" and backup["errors"] == []
    volumes = {v["pvc"]: v for v in backup["volumes"]}
    assert set(volumes) == set(app.pvcs)
    for v in volumes.values():
        assert v["method"] == "snapshot" and v["snapshotId"] and not v.get("error")
        assert v["files"] == 43 and abs(v["bytes"] - size) < 4096, v
    # The movers ran as Jobs in dr's namespace, as dr's image.
    movers = [r for r in agent.runs if r.kind == "mover"]
    assert {r.namespace for r in movers} == {mover_env.mover_namespace} and len(movers) == 2
    assert all(r.outcome == "succeeded" for r in movers)
    wait_until(lambda: not leftovers(kc, [app.namespace, mover_env.mover_namespace]), what="no leftovers")

    # The namespace is lost, and with it the volumes (reclaim policy Delete).
    kc.call("DELETE", f"/api/v1/namespaces/{app.namespace}")
    wait_until(
        lambda: not any(agent.volume_dir(app.namespace, p).exists() for p in app.pvcs),
        what="volumes reclaimed",
    )

    # The preview says the volumes' data comes back too: its summary named only the objects,
    # and the engineer could not tell it from a --no-data restore.
    res = app.dr(capsys, "restore", "latest", "--dry-run")
    assert res.code == 0, res.err
    assert res.out.splitlines()[-1].endswith(f"; the data of {len(app.pvcs)} volume(s) would be restored"), (
        res.out
    )
    res = app.dr(capsys, "restore", "latest", "--dry-run", "--no-data")
    assert res.code == 0 and "volume(s)" not in res.out, res.out

    res = app.dr(capsys, "restore", "latest", "-o", "json")
    assert res.code == 0, res.err
    restored = res.json()
    assert restored["phase"] == "Completed" and restored["volumeErrors"] == []
    assert app.namespace in restored["namespacesCreated"]
    by_pvc = {v["pvc"]: v for v in restored["volumes"]}
    assert set(by_pvc) == set(app.pvcs)
    for pvc, v in by_pvc.items():
        assert v["snapshotId"] == volumes[pvc]["snapshotId"]
        # Counts from the mover's summary or, where logs are not served, from the backup's record.
        assert v["files"] == 43 and v["bytes"] == volumes[pvc]["bytes"]
    for pvc in app.pvcs:
        assert file_tree(agent.volume_dir(app.namespace, pvc)) == before[pvc], pvc
    # The restore movers ran in the restored namespace with copies of dr-config and the
    # credentials Secret, which are gone again.
    restore_movers = [r for r in agent.runs if r.kind == "mover" and r.namespace == app.namespace]
    assert len(restore_movers) == 2 and all(r.outcome == "succeeded" for r in restore_movers)
    assert kc.get(f"/api/v1/namespaces/{app.namespace}/configmaps").get("items") == []
    assert kc.get(f"/api/v1/namespaces/{app.namespace}/secrets").get("items") == []
    wait_until(lambda: not leftovers(kc, [app.namespace, mover_env.mover_namespace]), what="no leftovers")


def test_killed_mover_fails_the_backup_cleanly_and_the_next_backup_succeeds(
    capsys: Capsys, kube_client: KubeClient, node_agent: NodeAgent, mover_env: MoverEnv, app: App
) -> None:
    kc, agent = kube_client, node_agent
    for seed, pvc in enumerate(app.pvcs, 1):
        fill_volume(agent.volume_dir(app.namespace, pvc), seed, 2 * MB)
    agent.kill.add(f"{app.namespace}/data-a")

    res = app.dr(capsys, "backup", "-n", app.namespace)
    assert res.code == 3, res.out + res.err
    assert "partially failed: 1 item(s)" in res.err
    problem = next(line for line in res.err.splitlines() if f"{app.namespace}/data-a" in line)
    # Why: the Job failed, its pod was killed (SIGKILL: exit code 137).
    assert "BackoffLimitExceeded" in problem and "137" in problem, problem
    killed = [r for r in agent.runs if r.volume == f"{app.namespace}/data-a"]
    assert [r.outcome for r in killed] == ["failed"]
    wait_until(lambda: not leftovers(kc, [app.namespace, mover_env.mover_namespace]), what="no leftovers")

    agent.kill.clear()
    res = app.dr(capsys, "backup", "-n", app.namespace, "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["phase"] == "Completed" and all(not v.get("error") for v in doc["volumes"])
    assert len(doc["volumes"]) == 2


def test_a_policy_with_its_own_repository_restores_from_it(
    capsys: Capsys,
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    app: App,
    tmp_path: Path,
) -> None:
    # `dr backup --policy P` writes P's backups to P's repository, but `dr restore latest
    # --policy P` (the on-call page's line) looked in the default repository, and its
    # movers were given the default repository's URL.
    agent = node_agent
    doc = app.config_doc()
    main = doc["repositories"][0]
    empty = {**main, "name": "other", "url": main["url"] + "-other"}
    doc["repositories"] = [empty, main]
    doc["defaultRepository"] = "other"
    doc["backupPolicies"] = [
        {
            "name": "shop",
            "schedule": "0 * * * *",
            "repository": main["name"],
            "scope": {"namespaces": [app.namespace]},
        }
    ]
    app = app.with_config(doc, tmp_path / "two-repos.yaml")
    assert app.dr(capsys, "repo", "init").code == 0  # the default one: empty, but it opens
    fill_volume(agent.volume_dir(app.namespace, "data-a"), 7, MB)
    before = file_tree(agent.volume_dir(app.namespace, "data-a"))
    res = app.dr(capsys, "backup", "--policy", "shop", "-o", "json")
    assert res.code == 0, res.err
    kube_client.call("DELETE", f"/api/v1/namespaces/{app.namespace}")
    wait_until(
        lambda: (
            not any(agent.volume_dir(app.namespace, p).exists() for p in app.pvcs)
            and kube_client.request("GET", f"/api/v1/namespaces/{app.namespace}")[0] == 404
        ),
        what="namespace and volumes gone",
    )

    res = app.dr(capsys, "restore", "latest", "--policy", "shop", "-o", "json")
    assert res.code == 0, res.err
    restored = res.json()
    assert restored["volumeErrors"] == [] and sorted(v["pvc"] for v in restored["volumes"]) == [
        "data-a",
        "data-b",
    ]
    assert file_tree(agent.volume_dir(app.namespace, "data-a")) == before


def test_a_restore_whose_mover_failed_gets_its_data_on_the_next_run(
    capsys: Capsys, kube_client: KubeClient, node_agent: NodeAgent, mover_env: MoverEnv, app: App
) -> None:
    """A re-run fills the claims whose data never arrived, and only those.

    Before, the re-run found the claims "unchanged" and exited 0 with an empty volume.
    """
    kc, agent = kube_client, node_agent
    for seed, pvc in enumerate(app.pvcs, 1):
        fill_volume(agent.volume_dir(app.namespace, pvc), seed, 2 * MB)
    before = {pvc: file_tree(agent.volume_dir(app.namespace, pvc)) for pvc in app.pvcs}
    # data-a's PersistentVolume is backed up with it (reclaim policy Retain: it outlives the namespace).
    pv = f"pv-{app.namespace}"
    sc = get_pvc(kc, app.namespace, "data-a")["spec"]["storageClassName"]
    driver = kc.get(f"/apis/storage.k8s.io/v1/storageclasses/{sc}")["provisioner"]
    kc.call("POST", "/api/v1/persistentvolumes", body={
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": sc,
                 "csi": {"driver": driver, "volumeHandle": "h"},
                 "claimRef": {"kind": "PersistentVolumeClaim", "namespace": app.namespace, "name": "data-a"}},
    })  # fmt: skip
    try:
        kc.call("PATCH", f"/api/v1/namespaces/{app.namespace}/persistentvolumeclaims/data-a",
                body={"spec": {"volumeName": pv}}, content_type="application/merge-patch+json")  # fmt: skip
        restore_after_a_failed_mover(capsys, kc, agent, mover_env, app, before, pv)
    finally:
        kc.request("DELETE", f"/api/v1/persistentvolumes/{pv}")


def restore_after_a_failed_mover(
    capsys: Capsys,
    kc: KubeClient,
    agent: NodeAgent,
    mover_env: MoverEnv,
    app: App,
    before: dict[str, dict[str, tuple[Any, ...]]],
    pv: str,
) -> None:
    res = app.dr(capsys, "backup", "-n", app.namespace)
    assert res.code == 0, res.err
    kc.call("DELETE", f"/api/v1/namespaces/{app.namespace}")
    wait_until(
        lambda: not any(agent.volume_dir(app.namespace, p).exists() for p in app.pvcs),
        what="volumes reclaimed",
    )
    # The plan: data-a's data comes through a mover into a new volume, so its PV is not restored.
    res = app.dr(capsys, "restore", "latest", "--dry-run", "-o", "json")
    assert res.code == 0, res.err
    plan = {(i["item"]["resource"], i["item"]["name"]): i for i in res.json()["items"]}
    assert plan[("persistentvolumes", pv)]["outcome"] == "skipped"
    assert plan[("persistentvolumes", pv)]["reason"] == (
        f"the data of its claim {app.namespace}/data-a is restored by a mover into a new volume"
    )

    agent.kill.add(f"{app.namespace}/data-a")
    res = app.dr(capsys, "restore", "latest")
    assert res.code == 3, res.out + res.err
    assert any(f"{app.namespace}/data-a" in line for line in res.err.splitlines()), res.err
    pending = {p: get_pvc(kc, app.namespace, p)["metadata"].get("annotations", {}) for p in app.pvcs}
    assert "dr.dev/data-pending" in pending["data-a"] and "dr.dev/data-pending" not in pending["data-b"]

    agent.kill.clear()
    res = app.dr(capsys, "restore", "latest", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["phase"] == "Completed" and doc["volumeErrors"] == []
    # data-a gets its data; data-b, filled by the first run, is left alone.
    assert [v["pvc"] for v in doc["volumes"]] == ["data-a"]
    # data-b holds the backup's data (the first run's): not called 'not restored'.
    assert doc["warnings"] == [], doc["warnings"]
    for pvc in app.pvcs:
        assert file_tree(agent.volume_dir(app.namespace, pvc)) == before[pvc], pvc
    claim = get_pvc(kc, app.namespace, "data-a")
    assert "dr.dev/data-pending" not in claim["metadata"].get("annotations", {})
    assert claim["spec"].get("volumeName") != pv

    # Once every claim has its data, another run writes to none of them.
    res = app.dr(capsys, "restore", "latest", "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["volumes"] == [] and res.json()["warnings"] == [], res.json()["warnings"]
    wait_until(lambda: not leftovers(kc, [app.namespace, mover_env.mover_namespace]), what="no leftovers")


def test_dumps_of_a_backup_are_loaded_into_the_restored_pods_that_ask(
    kube_client: KubeClient, namespace: str, tmp_path: Path
) -> None:
    """``restore_backup_dumps`` (what a drill runs after readiness) with the hooks' scripted Exec.

    The test cluster has no kubelets: the restored pods are created with a
    Running status, and the dump's bytes go through ``ScriptedExec``.
    """
    from dr.backup.hooks import run_dump_hooks
    from dr.cli.volume_access import DUMP_PREFIX, dump_problems, restore_backup_dumps
    from dr.repo.snapshots import Snapshot
    from dr.storage.registry import open_store
    from tests.exec_fakes import Script, ScriptedExec
    from tests.repo_helpers import init_repo
    from tests.test_hooks import pod
    from tests.volume_helpers import create_pod

    repo, _ = init_repo(open_store(f"file://{tmp_path / 'repo'}"), tmp_path)
    dump = b"-- PostgreSQL dump\n" * 5000
    ex = ScriptedExec({"pg_dump app": Script(stdout=[dump]), "pg_restore -d app": Script()})
    source = pod("db-0", {"dump.hook.backup.dr.dev/command": '["pg_dump", "app"]'}, ns="shop")
    with repo.saver() as saver:
        outcome = run_dump_hooks(ex, repo, saver, [source])
        saver.flush()
    (rec,) = outcome.records
    # What ``dr backup`` records for it (dr.cli.volume_access.volume_backup_step).
    snap = Snapshot(kind="backup", streams={DUMP_PREFIX + rec.key: rec.stream},
                    app={"dumps": [rec.model_dump(mode="json", exclude={"stream"})]})  # fmt: skip
    hook = {"restore.hook.dr.dev/command": '["pg_restore", "-d", "app"]'}
    create_pod(kube_client, namespace, "db-0", [], annotations=hook)
    create_pod(kube_client, namespace, "web-0", [])

    results = restore_backup_dumps(
        kube_client, repo, snap, {"shop": namespace}, exec_=ex, timeout=5, poll=0.1
    )

    assert [(r.pod, r.ok, r.skipped, r.error) for r in results] == [("db-0", True, False, None)]
    assert ex.stdin[f"{namespace}/db-0"] == dump
    # No pod asks for the dump (here: the namespace is not the restored one): skipped after the wait,
    # which a drill reports as a warning line.
    missing = dump_problems(kube_client, repo, snap, {"shop": f"{namespace}-elsewhere"}, 0.0)
    assert missing == [f"restore hook 'dump' in pod {namespace}-elsewhere/db-0: skipped "
                       f"(no running pod in {namespace}-elsewhere has a restore hook for dump 'dump')"]  # fmt: skip
    # A backup without dumps: nothing to do, no pod listed.
    assert restore_backup_dumps(kube_client, repo, Snapshot(kind="backup"), {}, exec_=ex) == []


def test_a_volume_that_failed_last_night_is_incremental_against_its_last_good_snapshot(
    capsys: Capsys,
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    app: App,
    tmp_path: Path,
) -> None:
    # The parent of each PVC was taken from the policy's latest backup only: a volume that
    # failed there (a killed mover, a node drain) had none the next night and was read and
    # compared in full again — for a large volume hours, and a risk of the next deadline.
    agent = node_agent
    app = app.with_policy({"name": "nightly", "schedule": "0 2 * * *"}, tmp_path / "policy.yaml")
    for seed, pvc in enumerate(app.pvcs, 1):
        fill_volume(agent.volume_dir(app.namespace, pvc), seed, MB)

    res = app.dr(capsys, "backup", "--policy", "nightly", "-o", "json")
    assert res.code == 0, res.err
    good = {v["pvc"]: v["snapshotId"] for v in res.json()["volumes"]}
    agent.kill.add(f"{app.namespace}/data-a")
    assert app.dr(capsys, "backup", "--policy", "nightly").code == 3
    agent.kill.clear()
    runs = len(agent.runs)

    res = app.dr(capsys, "backup", "--policy", "nightly", "-o", "json")
    assert res.code == 0, res.err
    parents = {}
    for run in agent.runs[runs:]:
        argv = run.argv
        parents[run.volume] = argv[argv.index("--parent") + 1] if "--parent" in argv else None
    assert parents[f"{app.namespace}/data-a"] == good["data-a"]
    assert parents[f"{app.namespace}/data-b"] not in (None, good["data-b"])  # last night's own


def deep_tree(root: Path, depth: int = 18) -> None:
    """A file below a path longer than PATH_MAX: one entry the mover cannot read, even as root."""
    import os

    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d" * 250, dir_fd=fd)
            sub = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = sub
    finally:
        os.close(fd)


def test_a_volume_with_an_unreadable_entry_keeps_the_rest_of_its_data(
    capsys: Capsys,
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    app: App,
    tmp_path: Path,
) -> None:
    # The mover saves what it can read and exits 3 naming the rest (a root-only lost+found,
    # a file the volume's writers replaced). dr recorded the volume as failed and left its
    # volume snapshot out of the backup's references: forget could remove it while the
    # backup still pointed restores at it, and the next backup had no parent.
    agent = node_agent
    # A file-system copy (the test agent's snapshot copy cannot copy such a tree either).
    policy = {"name": "fs", "schedule": "0 2 * * *", "volumes": {"mode": "filesystem"}}
    app = app.with_policy(policy, tmp_path / "fs.yaml")
    mover_env.prepare(app.namespace)
    for seed, pvc in enumerate(app.pvcs, 1):
        fill_volume(agent.volume_dir(app.namespace, pvc), seed, MB)
    deep_tree(agent.volume_dir(app.namespace, "data-a"))

    res = app.dr(capsys, "backup", "--policy", "fs", "-o", "json")

    assert res.code == 3, res.err
    doc = res.json()
    a = next(v for v in doc["volumes"] if v["pvc"] == "data-a")
    assert a["snapshotId"] and "File name too long" in a["error"], a
    from dr.repo.snapshots import list_snapshots

    (backup,) = [s for s in list_snapshots(mover_env.open_repository(), "backup") if s.id == doc["id"]]
    assert a["snapshotId"] in backup.refs


def signal_when(check: Any, signum: int) -> threading.Thread:
    """A thread that sends ``signum`` to this process (dr runs in it) once ``check()`` is true."""

    def watch() -> None:
        wait_until(check, timeout=60, what="the moment to signal")
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def mover_jobs(kc: KubeClient, namespace: str) -> list[str]:
    items = kc.get(f"/apis/batch/v1/namespaces/{namespace}/jobs", {"labelSelector": "dr.dev/mover=true"})
    return [str(j["metadata"]["name"]) for j in items.get("items", [])]


def test_a_signal_while_movers_run_leaves_no_job_pod_or_config_copy_behind(
    capsys: Capsys, kube_client: KubeClient, node_agent: NodeAgent, mover_env: MoverEnv, app: App
) -> None:
    # The on-call engineer's Ctrl-C, a CronJob pod's SIGTERM: a mover that would run for hours
    # (its container never starts here) must not outlive dr, nor its snapshot, temporary
    # claim, or the copies of dr-config and the credentials Secret in the app's namespace.
    kc, agent, ns, movers = kube_client, node_agent, app.namespace, mover_env.mover_namespace
    for seed, pvc in enumerate(app.pvcs, 1):
        fill_volume(agent.volume_dir(ns, pvc), seed, 100_000)
    agent.hang.add(f"{ns}/data-a")
    watcher = signal_when(lambda: mover_jobs(kc, movers), signal.SIGTERM)
    res = app.dr(capsys, "backup", "-n", ns)
    watcher.join()
    assert res.code == 143, res.out + res.err
    wait_until(lambda: not leftovers(kc, [ns, movers]), what="no leftovers after the backup")
    wait_until(lambda: not kc.get(f"/api/v1/namespaces/{movers}/pods").get("items"), what="mover pods gone")

    agent.hang.clear()
    res = app.dr(capsys, "backup", "-n", ns)
    assert res.code == 0, res.out + res.err
    kc.call("DELETE", f"/api/v1/namespaces/{ns}")
    wait_until(lambda: not any(agent.volume_dir(ns, p).exists() for p in app.pvcs), what="volumes reclaimed")

    agent.hang.add(f"{ns}/data-a")
    watcher = signal_when(lambda: mover_jobs(kc, ns), signal.SIGINT)
    res = app.dr(capsys, "restore", "latest")
    watcher.join()
    assert res.code == 130, res.out + res.err
    wait_until(lambda: not leftovers(kc, [ns, movers]), what="no leftovers after the restore")
    wait_until(lambda: not kc.get(f"/api/v1/namespaces/{ns}/pods").get("items"), what="mover pods gone")
    assert kc.get(f"/api/v1/namespaces/{ns}/configmaps").get("items") == []
    assert kc.get(f"/api/v1/namespaces/{ns}/secrets").get("items") == []


def test_a_restore_in_place_says_the_data_of_existing_claims_is_not_restored(
    capsys: Capsys, kube_client: KubeClient, node_agent: NodeAgent, mover_env: MoverEnv, app: App
) -> None:
    # The on-call engineer restores a corrupted volume into the live namespace: the claims
    # exist, so dr (rightly) writes into none of them. It said "4 unchanged", exit 0, and
    # the volume stayed as it was: nothing told that its data had not come back.
    agent, ns = node_agent, app.namespace
    for seed, pvc in enumerate(app.pvcs, 1):
        fill_volume(agent.volume_dir(ns, pvc), seed, 100_000)
    assert app.dr(capsys, "backup", "-n", ns).code == 0
    (agent.volume_dir(ns, "data-a") / "corrupt").write_text("x")
    warning = (
        f"warning: the data of 2 volume(s) is not restored: their claims already exist ({ns}/data-a, "
        f"{ns}/data-b) and a restore writes only into claims it creates (delete the claim, its pods "
        "stopped, and restore again; or restore into another namespace: --namespace-mapping)"
    )
    for args in (["--dry-run"], []):
        res = app.dr(capsys, "restore", "latest", *args)
        assert res.code == 0, res.err
        assert res.err.splitlines() == [warning], (args, res.err)
    res = app.dr(capsys, "restore", "latest", "-o", "json")
    assert res.json()["warnings"] == [warning.removeprefix("warning: ")]
    assert (agent.volume_dir(ns, "data-a") / "corrupt").exists()  # written into by no one


def test_a_volume_restores_warnings_reach_the_restores_output(
    capsys: Capsys,
    monkeypatch: pytest.MonkeyPatch,
    kube_client: KubeClient,
    node_agent: NodeAgent,
    mover_env: MoverEnv,
    app: App,
) -> None:
    # A volume's own warnings (its mover Job could not be deleted, say: RBAC, an admission
    # webhook) were kept in the volume's record only: `dr restore` printed none, and a drill's
    # report had none, where the backup's step lists them as "volume NS/PVC: ...".
    import dr.cli.volume_access

    real = dr.cli.volume_access.restore_volumes

    def with_a_cleanup_problem(*args: Any, **kwargs: Any) -> Any:
        restored = real(*args, **kwargs)
        for r in restored:  # what TemporaryObjects.delete_all says of a refused delete
            r.warnings.append(f"cannot delete Job {r.namespace}/mover-x: 403 Forbidden")
        # A namespace's warning (tests/test_volumes.py makes a real one: an identity that may not
        # list pods) was only logged: it is the restore's, once, not any one volume's.
        kwargs["on_warning"](f"cannot list pods in {ns} (movers not placed next to them): 403 Forbidden")
        return restored

    monkeypatch.setattr(dr.cli.volume_access, "restore_volumes", with_a_cleanup_problem)
    ns = app.namespace
    for seed, pvc in enumerate(app.pvcs, 1):
        fill_volume(node_agent.volume_dir(ns, pvc), seed, 10_000)
    assert app.dr(capsys, "backup", "-n", ns).code == 0
    kube_client.call("DELETE", f"/api/v1/namespaces/{ns}")
    wait_until(
        lambda: not any(node_agent.volume_dir(ns, p).exists() for p in app.pvcs), what="volumes reclaimed"
    )

    res = app.dr(capsys, "restore", "latest", "-o", "json")
    assert res.code == 0, res.err
    expected = [f"volume {ns}/{pvc}: cannot delete Job {ns}/mover-x: 403 Forbidden" for pvc in app.pvcs]
    namespaces = [f"cannot list pods in {ns} (movers not placed next to them): 403 Forbidden"]
    assert sorted(res.json()["warnings"]) == namespaces + expected


def test_a_namespace_warning_of_the_volume_backup_reaches_the_backups_output(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch, app: App
) -> None:
    # A namespace whose pods cannot be listed (tests/test_volumes.py makes a real one): no hooks
    # ran there, which the backup only logged; the snapshot's warnings must say it, once.
    import dr.cli.volume_access

    real = dr.cli.volume_access.backup_volumes
    warning = f"cannot list pods in {app.namespace} (no hooks, no node placement): 403 Forbidden"

    def where_pods_cannot_be_listed(*args: Any, **kwargs: Any) -> Any:
        kwargs["on_warning"](warning)
        return real(*args, **kwargs)

    monkeypatch.setattr(dr.cli.volume_access, "backup_volumes", where_pods_cannot_be_listed)
    res = app.dr(capsys, "backup", "-n", app.namespace, "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["warnings"] == [warning]
