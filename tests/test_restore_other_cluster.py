"""Recovery into another cluster: the one that ran the app is gone, a new one gets it back.

Cluster A (a test cluster of its own, with its own node agent) runs the
web-app example (``examples/webapp``) with what ties objects to a cluster:
a NodePort Service with its clusterIP and nodePort, the claim bound to a
PersistentVolume (reclaim policy Delete) and a ConfigMap owned by the
Deployment. dr is deployed into A as the README says (``dr deploy render``
applied, the credentials Secret created by hand), the repository lives in
SeaweedFS and its key in OpenBao — both outlive the cluster. ``dr backup``
copies the objects and the volume; then A is stopped, with a lock its mover
left behind in the repository.

Cluster B is new: another storage class, nothing of the app. The operator
applies the same ``dr deploy render`` output, creates the credentials Secret,
and with the same dr.yaml runs ``dr restore latest --storage-class-mapping``.
The objects come back fit for B (no allocations, bindings or owner uids of
A, no status), the files byte for byte, and ``dr runbook verify`` passes on
the restored namespace; a second run's plan finds nothing to change, and a
copy under another name (``--namespace-mapping``) passes the same runbook.
The procedure is the README's "Recovering into a new cluster".
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml

from dr.config import load_config_file
from dr.deploy.render import read_source, render
from dr.kube.client import KubeClient, connect
from dr.repo.repository import Repository
from dr.storage.registry import open_store
from dr.testkit import webapp
from dr.testkit.agent import NodeAgent, wait_until
from dr.testkit.cluster import install_snapshot_crds, install_storage
from tests.deploy_support import api_as, served, server_side_apply
from tests.helpers import Result, run_dr
from tests.servers import TestCluster, remove_tree
from tests.volume_helpers import tree_listing

Capsys = pytest.CaptureFixture[str]
NS = webapp.NAMESPACE
DR_NS = "dr-system"
CREDENTIALS = "dr-repository-credentials"
IMAGE = "ghcr.io/dr-project/dr:test"
CLASS_A, CLASS_B = "fast-a", "standard-b"
CLUSTER_IP, NODE_PORT = "10.96.44.7", 30080
RBAC = "rbac.authorization.k8s.io/v1"
# What dr deploy render makes that the test cluster does not serve (left out when applying).
ADMISSION_POLICIES = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


@dataclass
class Cluster:
    """One test cluster with its node agent: a stand-in for a whole Kubernetes cluster."""

    name: str
    tc: TestCluster
    kc: KubeClient
    agent: NodeAgent
    said: list[str] = field(default_factory=list)  # what every dr command run against it printed

    def shown(self) -> str:
        """All it showed: the dr commands' stdout and stderr, and its movers' and Jobs' output."""
        runs = [f"{r.stdout}{r.stderr}{r.termination_message or ''}" for r in self.agent.runs]
        return "\n".join([*self.said, *runs])

    def stop(self) -> None:
        self.agent.stop()
        self.kc.close()
        self.tc.stop()
        if self.tc.dir is not None:
            remove_tree(self.tc.dir)

    def dr(self, capsys: Capsys, config: Path, *args: str) -> Result:
        res = run_dr(capsys, "--config", str(config), "--kubeconfig", self.tc.kubeconfig, *args)
        self.said.append(res.out + res.err)
        return res

    def get(self, path: str) -> dict[str, Any]:
        return self.kc.get(path)


def start_cluster(name: str, workdir: Path, storage_class: str) -> Cluster:
    """A fresh cluster whose default storage class (and snapshot class) is ``storage_class``."""
    tc = TestCluster.start(workdir)
    if tc.external:
        tc.stop()
        pytest.skip("two clusters of its own are needed; DR_TEST_KUBECONFIG points at one real cluster")
    kc = connect(tc.kubeconfig, None)
    try:
        install_snapshot_crds(kc)
        install_storage(kc, storage_class, default=True)
    except BaseException:
        kc.close()
        tc.stop()
        raise
    agent = NodeAgent(kc, workdir.parent / f"node-{name}", {NS, DR_NS}).start()
    return Cluster(name, tc, kc, agent)


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[dict[str, Cluster]]:
    """Cluster A starts now; the test adds B after A is gone. Whatever is running is stopped."""
    made: dict[str, Cluster] = {}
    try:
        made["a"] = start_cluster("a", tmp_path / "cluster-a", CLASS_A)
        yield made
    finally:
        errors = []
        for c in made.values():
            c.stop()
            errors += c.agent.errors
        assert not errors, errors


@pytest.fixture
def dr_yaml(
    isolated_home: Path, s3_env: dict[str, str], s3_bucket: str, vault_env: dict[str, str], unique: str
) -> Path:
    """The operator's dr.yaml (kept outside the cluster): S3 repository, Vault transit key, movers."""
    mount = f"transit-{unique}"
    root = hvac.Client(url=vault_env["address"], token=vault_env["token"])
    root.sys.enable_secrets_engine("transit", path=mount)
    root.secrets.transit.create_key(name="dr", derived=True, mount_point=mount)
    doc = {
        "apiVersion": "dr.dev/v1",
        "kind": "Config",
        "defaultRepository": "main",
        "repositories": [
            {
                "name": "main",
                "url": f"s3://{s3_bucket}/repo",
                "keys": ["transit"],
                "s3": {"endpoint": s3_env["endpoint"], "region": s3_env["region"], "addressingStyle": "path"},
            }
        ],
        "keyProviders": [
            {"name": "transit", "uri": f"vault://{mount}/keys/dr", "vault": {"address": vault_env["address"]}}
        ],
        "mover": {"image": IMAGE, "namespace": DR_NS, "credentialsSecret": CREDENTIALS},
    }
    path = isolated_home / "dr.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def deploy_dr(cluster: Cluster, config: Path, credentials: dict[str, str]) -> list[str]:
    """What the README says: ``dr deploy render --config dr.yaml | kubectl apply -f -``, then the
    credentials Secret by hand. Kinds the test cluster does not serve are left out (returned)."""
    api = api_as(cluster.tc)
    unserved = []
    try:
        for obj in render(read_source(load_config_file(config), config)):
            if not served(api, obj):
                unserved.append(obj["kind"])
                continue
            server_side_apply(api, obj)
    finally:
        api.close()
    cluster.kc.call(
        "POST",
        f"/api/v1/namespaces/{DR_NS}/secrets",
        body={
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CREDENTIALS},
            "type": "Opaque",
            "stringData": credentials,
        },
    )
    return unserved


def run_app(a: Cluster) -> str:
    """The web-app example in A, with A's allocations: clusterIP, nodePort, a bound PV, an owner uid."""
    objects = webapp.manifests()
    for obj in objects:
        if obj["kind"] == "Service":
            # The test cluster allocates nothing: write what A's API server would have.
            obj["spec"].update(type="NodePort", clusterIP=CLUSTER_IP, clusterIPs=[CLUSTER_IP])
            obj["spec"]["ports"][0]["nodePort"] = NODE_PORT
    webapp.deploy(a.kc, objects)
    pvc_path = f"/api/v1/namespaces/{NS}/persistentvolumeclaims/{webapp.PVC}"
    pvc = wait_until(
        lambda: (p := a.get(pvc_path)).get("status", {}).get("phase") == "Bound" and p, what="bound"
    )
    assert pvc["spec"]["storageClassName"] == CLASS_A
    # The PV the provisioner made for the claim, and the claim pointing at it (the binding).
    pv_name = f"pvc-{pvc['metadata']['uid']}"
    a.kc.call(
        "POST",
        "/api/v1/persistentvolumes",
        body={
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": CLASS_A,
                "csi": {"driver": "hostpath.csi.k8s.io", "volumeHandle": pvc["metadata"]["uid"]},
                "claimRef": {
                    "kind": "PersistentVolumeClaim",
                    "namespace": NS,
                    "name": webapp.PVC,
                    "uid": pvc["metadata"]["uid"],
                },
            },
        },
    )
    a.kc.call(
        "PATCH",
        pvc_path,
        body={
            "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {"volumeName": pv_name},
        },
        content_type="application/merge-patch+json",
    )
    # Two owned ConfigMaps: one by the Deployment (in the backup), one by a cluster-scoped
    # object of A the backup does not take (as an operator's cluster-wide resource would).
    deployment = a.get(f"/apis/apps/v1/namespaces/{NS}/deployments/web")
    operator = a.kc.call(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        body={"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "web-operator"}, "rules": []},
    )
    for name, owner in (("web-cache-settings", deployment), ("web-operator-state", operator)):
        a.kc.call(
            "POST",
            f"/api/v1/namespaces/{NS}/configmaps",
            body={
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "ownerReferences": [
                        {
                            "apiVersion": owner["apiVersion"],
                            "kind": owner["kind"],
                            "name": owner["metadata"]["name"],
                            "uid": owner["metadata"]["uid"],
                        }
                    ],
                },
                "data": {"ttl": "60"},
            },
        )
    webapp.write_content(a.agent.volume_dir(NS, webapp.PVC))
    wait_until(
        lambda: (
            a.get(f"/apis/apps/v1/namespaces/{NS}/deployments/web").get("status", {}).get("readyReplicas")
        ),
        what="web ready in A",
    )
    # What A's Deployment controller observed there (the node agent writes no conditions).
    a.kc.call(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/web/status",
        body={
            "status": {"conditions": [{"type": "Progressing", "status": "True", "message": "in cluster A"}]}
        },
        content_type="application/merge-patch+json",
    )
    return pv_name


def file_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    listing = tree_listing(root)
    listing["."] = ("dir", stat.S_IMODE(root.stat().st_mode))
    return listing


def leave_lock(config: Path, vault_env: dict[str, str], kind: str, operation: str) -> str:
    """A lock as a mover or CronJob pod of cluster A leaves it when the cluster dies under it."""
    from dr.crypto.providers.vault import VaultKeyProvider
    from dr.repo.locks import EXPIRY
    from dr.repo.repository import iso, now_utc

    cfg = load_config_file(config)
    repo_cfg = cfg.repositories[0]
    key = cfg.key_providers[0]
    provider = VaultKeyProvider(
        key.uri,
        address=vault_env["address"],
        client=hvac.Client(url=vault_env["address"], token=vault_env["token"]),
    )
    repo = Repository.open(
        open_store(repo_cfg.url, repo_cfg), lambda uri: provider if uri == key.uri else None
    )
    t = now_utc()
    doc = {
        "kind": kind,
        "hostname": f"dr-{operation}-29040960-x7k2p",
        "pid": 1,
        "operation": operation,
        "created": iso(t),
        "expires": iso(t + EXPIRY),
        "since": iso(t),
    }
    return repo.save_object("locks", doc)


def test_an_app_backed_up_in_a_lost_cluster_is_restored_into_a_new_one(
    capsys: Capsys,
    clusters: dict[str, Cluster],
    dr_yaml: Path,
    s3_env: dict[str, str],
    vault_env: dict[str, str],
    tmp_path: Path,
) -> None:
    a = clusters["a"]
    # The movers' credentials: in a real cluster IRSA/Workload Identity and Vault's Kubernetes
    # auth would do; here the static ones, in the Secret the config names. The movers' token is
    # one of their own (not the dev server's root token "root", too short a word to look for in
    # what they print).
    vault = hvac.Client(url=vault_env["address"], token=vault_env["token"])
    movers_token = vault.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
    credentials = {
        "AWS_ACCESS_KEY_ID": s3_env["access_key"],
        "AWS_SECRET_ACCESS_KEY": s3_env["secret_key"],
        "VAULT_TOKEN": movers_token,
    }

    # ------------------------------------------------------------------ cluster A: the app, dr, a backup
    assert set(deploy_dr(a, dr_yaml, credentials)) <= ADMISSION_POLICIES
    pv_name = run_app(a)
    before = file_tree(a.agent.volume_dir(NS, webapp.PVC))
    res = a.dr(capsys, dr_yaml, "repo", "init")
    assert res.code == 0, res.err
    res = a.dr(capsys, dr_yaml, "backup", "-n", NS, "-o", "json")
    assert res.code == 0, res.err
    backup = res.json()
    assert backup["phase"] == "Completed", backup
    assert [v["pvc"] for v in backup["volumes"]] == [webapp.PVC] and backup["volumes"][0]["snapshotId"]

    # ------------------------------------------------------------------ cluster A is gone
    # A backup mover was running when the cluster died: its lock stays in the repository.
    leave_lock(dr_yaml, vault_env, "shared", "backup")
    clusters.pop("a").stop()
    # A's status times (whole seconds) are all before this; B starts seconds after it.
    a_gone = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)

    # ------------------------------------------------------------------ cluster B: dr, then the restore
    b = clusters["b"] = start_cluster("b", tmp_path / "cluster-b", CLASS_B)
    assert set(deploy_dr(b, dr_yaml, credentials)) <= ADMISSION_POLICIES
    res = b.dr(capsys, dr_yaml, "backups", "list", "-o", "json")
    assert res.code == 0, res.err
    assert [x["id"] for x in res.json()] == [backup["id"]]

    # A's weekly prune was running too: its exclusive lock holds every restore off until it
    # expires (30 min). Nothing of A runs any more, so the operator removes A's locks.
    leave_lock(dr_yaml, vault_env, "exclusive", "prune")
    res = b.dr(capsys, dr_yaml, "restore", "latest", "--storage-class-mapping", f"{CLASS_A}={CLASS_B}")
    assert res.code == 1 and "prune on dr-prune-" in res.err, res.err
    assert "remove the locks with 'dr repo unlock --all'" in res.err, res.err  # not only "try again later"
    assert b.kc.request("GET", f"/api/v1/namespaces/{NS}")[0] == 404, "nothing restored before the lock"
    res = b.dr(capsys, dr_yaml, "repo", "unlock", "--all")
    assert res.code == 0 and "2 lock(s) removed" in res.out, res.out + res.err

    res = b.dr(
        capsys, dr_yaml, "restore", "latest", "--storage-class-mapping", f"{CLASS_A}={CLASS_B}", "-o", "json"
    )
    assert res.code == 0, res.err
    restored = res.json()
    assert restored["phase"] == "Completed", restored
    assert restored["volumeErrors"] == [] and [v["pvc"] for v in restored["volumes"]] == [webapp.PVC]

    # Objects fit for B: nothing A allocated, bound or owned comes along.
    svc = b.get(f"/api/v1/namespaces/{NS}/services/web")
    assert svc["spec"]["type"] == "NodePort"
    assert "clusterIP" not in svc["spec"] and "clusterIPs" not in svc["spec"]
    assert all("nodePort" not in p for p in svc["spec"]["ports"]), svc["spec"]["ports"]
    pvc = b.get(f"/api/v1/namespaces/{NS}/persistentvolumeclaims/{webapp.PVC}")
    assert pvc["spec"]["storageClassName"] == CLASS_B
    assert pvc["spec"].get("volumeName") != pv_name, "bound to a PV of A that B does not have"
    assert "pv.kubernetes.io/bind-completed" not in (pvc["metadata"].get("annotations") or {})
    assert b.get("/api/v1/persistentvolumes").get("items") == [], "A's PV (reclaim Delete) is not restored"
    # No owner uid of A: B's garbage collector would delete what names an owner it lacks.
    for name in ("web-cache-settings", "web-operator-state"):
        cm = b.get(f"/api/v1/namespaces/{NS}/configmaps/{name}")
        assert "ownerReferences" not in cm["metadata"], cm["metadata"]
    deployment = b.get(f"/apis/apps/v1/namespaces/{NS}/deployments/web")
    assert deployment["metadata"]["labels"]["dr.dev/backup"]
    # (an API server drops status on create too: drop_status is for those that do not.) B's
    # node agent may have set a status of its own meanwhile, as B's controllers would: its
    # conditions are younger than A.
    for c in deployment.get("status", {}).get("conditions", []):
        assert datetime.fromisoformat(c["lastTransitionTime"]) >= a_gone, f"A's status came along: {c}"

    # A's class is not brought along when the claims are mapped away from it: nothing would use
    # it, and its default-class annotation would give B two defaults.
    classes = [o["metadata"]["name"] for o in b.get("/apis/storage.k8s.io/v1/storageclasses")["items"]]
    assert classes == [CLASS_B]
    skipped = {i["item"]["name"]: i.get("reason") for i in restored["items"] if i["outcome"] == "skipped"}
    assert skipped[CLASS_A] == f"mapped to {CLASS_B} by --storage-class-mapping: nothing restored uses it"

    # The volume's files, byte for byte (modes and times too).
    assert file_tree(b.agent.volume_dir(NS, webapp.PVC)) == before

    # The runbook's checks pass against the restored namespace in B.
    res = b.dr(capsys, dr_yaml, "runbook", "verify", str(webapp.RUNBOOK))
    assert res.code == 0, res.out + res.err

    # Run again, the plan finds everything in place (nothing of A's left to change).
    res = b.dr(
        capsys, dr_yaml, "restore", "latest", "--storage-class-mapping", f"{CLASS_A}={CLASS_B}", "--dry-run"
    )
    assert res.code == 0, res.err
    assert res.out.strip().splitlines()[-1].endswith(": 2 skipped, 9 unchanged"), res.out

    # A copy beside it under another name, checked by the same runbook through the mapping.
    copy = "webapp-copy"
    b.agent.manage(copy)
    res = b.dr(
        capsys, dr_yaml, "restore", "latest", "--storage-class-mapping", f"{CLASS_A}={CLASS_B}",
        "--namespace-mapping", f"{NS}={copy}", "-o", "json",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert res.json()["namespacesCreated"] == [copy]
    assert file_tree(b.agent.volume_dir(copy, webapp.PVC)) == before
    res = b.dr(
        capsys, dr_yaml, "runbook", "verify", str(webapp.RUNBOOK), "--namespace-mapping", f"{NS}={copy}"
    )
    assert res.code == 0, res.out + res.err

    # The movers had the credentials in their environment (from the Secret), the commands in
    # theirs: no output of either shows them.
    for cluster in (a, b):
        movers = [r for r in cluster.agent.runs if r.kind == "mover" and "VAULT_TOKEN" in r.env_names]
        assert any(r.stdout + r.stderr for r in movers), cluster.name
        shown = cluster.shown()
        for name in ("AWS_SECRET_ACCESS_KEY", "VAULT_TOKEN"):
            assert credentials[name] not in shown, f"{name}'s value shown in cluster {cluster.name}"
