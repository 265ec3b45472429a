"""Volume backup and restore as dr's own service accounts, under the roles dr deploys (RBAC enforced).

``dr deploy`` grants the backup account (``dr``) snapshot rights next to the
PVCs, a workspace in dr's namespace for temporary PVCs and Jobs, and — opt-in,
per application namespace — the right to run file-level movers there; the
restore account (``dr-restore``) may create Jobs but never read Secrets. This
runs the real volume code with each account's own token against the RBAC
test cluster, so a call the roles do not allow fails the test with a 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dr.backup.volumes import backup_volumes
from dr.deploy import rbac
from dr.kube.client import KubeClient, connect
from dr.restore.volumes import VolumeRestoreTarget, restore_volumes
from dr.testkit.agent import NodeAgent, wait_until
from tests import servers
from tests.deploy_support import api_as, served, server_side_apply
from tests.volume_helpers import (
    create_namespace,
    create_pod,
    create_pvc,
    create_storage,
    delete_storage,
    fill_volume,
    get_pvc,
    install_snapshot_crds,
    make_mover_env,
    tree_listing,
)

NS = "dr-system"
BACKUP = f"system:serviceaccount:{NS}:{rbac.BACKUP_SA}"
RESTORE = f"system:serviceaccount:{NS}:{rbac.RESTORE_SA}"


@pytest.fixture
def rbac_cluster(k8s_dr: servers.TestCluster) -> Iterator[servers.TestCluster]:
    """The RBAC test cluster with dr's namespace, roles and the snapshot CRDs, applied as an admin would."""
    if k8s_dr.external:
        pytest.skip("needs the test cluster's service-account tokens and the node agent")
    admin = api_as(k8s_dr)
    try:
        from kubernetes import client

        try:
            client.CoreV1Api(admin).create_namespace({"metadata": {"name": NS}})
        except client.ApiException as e:
            if e.status != 409:
                raise
        for obj in rbac.rbac_manifests(NS):
            if served(admin, obj):
                server_side_apply(admin, obj)
    finally:
        admin.close()
    with connect(k8s_dr.kubeconfig, None) as kc:
        install_snapshot_crds(kc)
    yield k8s_dr


def bound(kc: KubeClient, agent: NodeAgent, ns: str, name: str, sc: str, seed: int) -> dict[str, Any]:
    create_pvc(kc, ns, name, sc)
    wait_until(lambda: get_pvc(kc, ns, name).get("status", {}).get("phase") == "Bound", what=f"{name} bound")
    fill_volume(agent.volume_dir(ns, name), seed, 300_000)
    return get_pvc(kc, ns, name)


def test_backup_and_restore_as_drs_own_service_accounts(
    rbac_cluster: servers.TestCluster,
    s3_env: dict[str, str],
    s3_bucket: str,
    vault_env: dict[str, str],
    unique: str,
    tmp_path: Path,
) -> None:
    cluster = rbac_cluster
    admin = connect(cluster.kubeconfig, None)
    env = make_mover_env(admin, s3_env, s3_bucket, vault_env, unique, mover_namespace=NS, names=f"-{unique}")
    app, copy = f"app-{unique}", f"copy-{unique}"
    snap_sc, snap_class = create_storage(admin, unique, snapshot_class=True)
    file_sc, _ = create_storage(admin, f"{unique}-f", snapshot_class=False)
    agent = NodeAgent(admin, tmp_path / "node", {NS, app, copy}).start()
    try:
        for ns in (app, copy):
            create_namespace(admin, ns)
            env.prepare(ns)
        # Opt-in, per namespace: file-level movers run next to their PVC.
        api = api_as(cluster)
        server_side_apply(api, rbac.mover_binding(app, NS))
        api.close()
        pvcs = [bound(admin, agent, app, "snap", snap_sc, 1), bound(admin, agent, app, "files", file_sc, 2)]
        create_pod(admin, app, "db-0", ["snap", "files"])

        with connect(cluster.kubeconfig_for(BACKUP), None) as as_backup:
            results = backup_volumes(as_backup, pvcs, env.backup_ctx(f"rbac-{unique}"), env.finder())
        assert [(r.method, r.error) for r in results] == [("snapshot", None), ("filesystem", None)]
        assert all(r.warnings == [] for r in results)  # every temporary object could be deleted
        assert {run.namespace for run in agent.runs} == {NS, app}

        targets = []
        for r in results:
            create_pvc(admin, copy, r.pvc, snap_sc)
            targets.append(VolumeRestoreTarget(namespace=copy, pvc=r.pvc, snapshot_id=str(r.snapshot_id)))
        # The restore account may not read Secrets: the credentials check is skipped, not failed.
        with connect(cluster.kubeconfig_for(RESTORE), None) as as_restore:
            restored = restore_volumes(as_restore, targets, env.restore_ctx(f"rbac-r-{unique}"))
        assert [(r.error, r.warnings) for r in restored] == [(None, []), (None, [])]
        for name in ("snap", "files"):
            assert tree_listing(agent.volume_dir(copy, name)) == tree_listing(agent.volume_dir(app, name))
    finally:
        agent.stop()
        for ns in (app, copy):
            admin.request("DELETE", f"/api/v1/namespaces/{ns}")
        admin.request("DELETE", f"/api/v1/namespaces/{NS}/configmaps/{env.config_map}")
        admin.request("DELETE", f"/api/v1/namespaces/{NS}/secrets/{env.secret_name}")
        delete_storage(admin, snap_sc, snap_class)
        delete_storage(admin, file_sc, None)
        admin.close()
    assert not agent.errors, agent.errors
