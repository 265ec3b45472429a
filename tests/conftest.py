"""Session fixtures: each real server starts once per pytest(-xdist) worker, on first use.

Tests get unique names (namespaces, buckets, transit keys) from ``unique`` so
they can share a server and run in parallel.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import servers


@pytest.fixture
def unique() -> str:
    """A short unique, DNS-label-safe suffix."""
    return uuid.uuid4().hex[:10]


def _serve(factory: Any, tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[servers.Server]:
    workdir = tmp_path_factory.mktemp(name)
    server = servers.start_with_retry(factory, workdir)
    try:
        yield server
    finally:
        server.stop()
        servers.remove_tree(workdir / "data")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    yield from _serve(servers.seaweedfs, tmp_path_factory, "seaweedfs")


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    yield from _serve(servers.fake_gcs, tmp_path_factory, "fakegcs")


@pytest.fixture(scope="session")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    yield from _serve(servers.openbao, tmp_path_factory, "openbao")


@pytest.fixture(scope="session")
def kms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    yield from _serve(servers.moto, tmp_path_factory, "moto")


@pytest.fixture(scope="session")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.TestCluster]:
    cluster = servers.TestCluster.start(tmp_path_factory.mktemp("k8s"))
    try:
        yield cluster
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- client helpers


@pytest.fixture
def s3_env(s3_server: servers.Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Standard AWS credential chain pointing at SeaweedFS (dr reads credentials from env)."""
    info = s3_server.info
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", info["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", info["secret_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", info["region"])
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return info


@pytest.fixture
def s3_client(s3_env: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    # A session of its own: boto3's default session caches the first credentials
    # it resolves, which in one pytest worker may be another server's (moto's).
    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3_env["endpoint"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@pytest.fixture
def s3_bucket(s3_client: Any, unique: str) -> str:
    name = f"dr-test-{unique}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def gcs_env(gcs_server: servers.Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.info["endpoint"])
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "dr-test")
    return gcs_server.info


@pytest.fixture
def gcs_bucket(gcs_env: dict[str, str], unique: str) -> str:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="dr-test", credentials=AnonymousCredentials())
    name = f"dr-test-{unique}"
    client.create_bucket(name)
    return name


@pytest.fixture
def vault_env(vault_server: servers.Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("VAULT_ADDR", vault_server.info["address"])
    monkeypatch.setenv("VAULT_TOKEN", vault_server.info["token"])
    return vault_server.info


@pytest.fixture
def kms_env(kms_server: servers.Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", kms_server.info["region"])
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", kms_server.info["endpoint"])
    # The AWS KMS provider asks STS for the caller's account (a slot naming another key).
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", kms_server.info["endpoint"])
    return kms_server.info


@dataclass
class Kube:
    cluster: servers.TestCluster
    kubeconfig: str
    api: Any  # kubernetes.client.ApiClient


@pytest.fixture
def kube(k8s: servers.TestCluster) -> Iterator[Kube]:
    from kubernetes import config as kconfig

    api = kconfig.new_client_from_config(config_file=k8s.kubeconfig)
    try:
        yield Kube(k8s, k8s.kubeconfig, api)
    finally:
        api.close()


@pytest.fixture
def namespace(kube: Kube, unique: str) -> Iterator[str]:
    """A fresh namespace, deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(kube.api)
    name = f"t-{unique}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except client.ApiException as e:
            if e.status != 404:
                raise


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG dirs and cwd in a temp dir, no config in the environment."""
    for var in ("DR_CONFIG", "DR_REPO", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_configure(config: pytest.Config) -> None:
    # Never let a test talk to a real cloud by accident.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    os.environ.setdefault("NO_GCE_CHECK", "true")


# --------------------------------------------------------------------------- dr's in-cluster identities

DR_IDENTITIES = (
    # The test cluster ships system:serviceaccount:dr-system:dr (the backup account) already.
    "system:serviceaccount:dr-system:dr-restore",
    "system:serviceaccount:dr-system:dr-drill",
)


@pytest.fixture(scope="session")
def k8s_dr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.TestCluster]:
    """A second test cluster (RBAC on) with tokens for all of dr's service accounts.

    Separate from ``k8s`` because it holds cluster-wide objects with fixed
    names (dr-system, dr's ClusterRoles) that tests apply for real.
    """
    cluster = servers.TestCluster.start(tmp_path_factory.mktemp("k8s-dr"), users=DR_IDENTITIES)
    try:
        yield cluster
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- dr's own Kubernetes client


@pytest.fixture
def kube_client(kube: Kube) -> Iterator[Any]:
    """``dr.kube.client.KubeClient`` for the test cluster's admin (raw JSON requests)."""
    from dr.kube.client import connect

    client = connect(kube.kubeconfig, None)
    try:
        yield client
    finally:
        client.close()


# --------------------------------------------------------------------------- volume data: snapshot CRDs, node agent, movers


@pytest.fixture(scope="session")
def snapshot_crds(k8s: servers.TestCluster) -> None:
    """The ``snapshot.storage.k8s.io/v1`` CRDs (minimal: any fields, status subresource) in the test cluster."""
    from dr.kube.client import connect
    from tests.volume_helpers import install_snapshot_crds

    with connect(k8s.kubeconfig, None) as kc:
        install_snapshot_crds(kc)


@pytest.fixture
def node_agent(k8s: servers.TestCluster, snapshot_crds: None, tmp_path: Path) -> Iterator[Any]:
    """The test agent playing kubelet, Job controller, PV and snapshot controllers (``tests/agent.py``).

    It manages only the namespaces a test hands it (``agent.manage(ns)``) and
    fails the test if it ran into trouble itself.
    """
    if k8s.external:
        pytest.skip("the node agent stands in for kubelets; DR_TEST_KUBECONFIG points at a real cluster")
    from dr.kube.client import connect
    from dr.testkit.agent import NodeAgent

    kc = connect(k8s.kubeconfig, None)
    agent = NodeAgent(kc, tmp_path / "node").start()
    try:
        yield agent
    finally:
        agent.stop()
        kc.close()
    assert not agent.errors, agent.errors


@pytest.fixture
def mover_env(
    kube_client: Any, s3_env: dict[str, str], s3_bucket: str, vault_env: dict[str, str], unique: str
) -> Iterator[Any]:
    """A repository (S3 + Vault transit key) and dr's namespace with dr-config and the credentials Secret."""
    from tests.volume_helpers import make_mover_env

    env = make_mover_env(kube_client, s3_env, s3_bucket, vault_env, unique)
    try:
        yield env
    finally:
        kube_client.request("DELETE", f"/api/v1/namespaces/{env.mover_namespace}")
