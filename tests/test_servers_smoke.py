"""Each real test server answers its real client (the harness works)."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.conftest import Kube


def test_s3_multipart_put_get(s3_client: Any, s3_bucket: str) -> None:
    part = os.urandom(5 * 1024 * 1024)
    up = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="big")
    etags = []
    for n in (1, 2):
        r = s3_client.upload_part(
            Bucket=s3_bucket, Key="big", PartNumber=n, UploadId=up["UploadId"], Body=part
        )
        etags.append({"PartNumber": n, "ETag": r["ETag"]})
    s3_client.complete_multipart_upload(
        Bucket=s3_bucket, Key="big", UploadId=up["UploadId"], MultipartUpload={"Parts": etags}
    )
    body = s3_client.get_object(Bucket=s3_bucket, Key="big")["Body"].read()
    assert body == part + part
    # create-only write: a second put with If-None-Match fails
    s3_client.put_object(Bucket=s3_bucket, Key="once", Body=b"1", IfNoneMatch="*")
    with pytest.raises(s3_client.exceptions.ClientError) as e:
        s3_client.put_object(Bucket=s3_bucket, Key="once", Body=b"2", IfNoneMatch="*")
    assert e.value.response["Error"]["Code"] in ("PreconditionFailed", "412")


def test_gcs_upload_download(gcs_bucket: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="dr-test", credentials=AnonymousCredentials())
    blob = client.bucket(gcs_bucket).blob("hello")
    blob.upload_from_string(b"world", if_generation_match=0)
    assert client.bucket(gcs_bucket).blob("hello").download_as_bytes() == b"world"
    assert [b.name for b in client.list_blobs(gcs_bucket)] == ["hello"]


def test_vault_transit_roundtrip(vault_env: dict[str, str], unique: str) -> None:
    import hvac

    v = hvac.Client(url=vault_env["address"], token=vault_env["token"])
    assert v.is_authenticated()
    try:
        v.sys.enable_secrets_engine("transit")
    except hvac.exceptions.InvalidRequest:
        pass  # already enabled by another test
    v.secrets.transit.create_key(name=f"k-{unique}")
    plain = base64.b64encode(b"master key material").decode()
    ct = v.secrets.transit.encrypt_data(name=f"k-{unique}", plaintext=plain)["data"]["ciphertext"]
    assert ct.startswith("vault:v1:")
    pt = v.secrets.transit.decrypt_data(name=f"k-{unique}", ciphertext=ct)["data"]["plaintext"]
    assert base64.b64decode(pt) == b"master key material"


def test_kms_generate_data_key(kms_env: dict[str, str]) -> None:
    import boto3

    kms = boto3.session.Session().client("kms", endpoint_url=kms_env["endpoint"])
    key = kms.create_key(Description="dr smoke")["KeyMetadata"]["KeyId"]
    dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"repo": "r1"})
    assert len(dk["Plaintext"]) == 32
    back = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext={"repo": "r1"})
    assert back["Plaintext"] == dk["Plaintext"]


def test_kubernetes_namespace_configmap_discovery(kube: Kube, unique: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(kube.api)
    ns = f"smoke-{unique}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "1"})
        )
        assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["cm"]
        assert ns in [n.metadata.name for n in core.list_namespace().items]
        # discovery: API groups and the resources of apps/v1
        groups = {g.name for g in client.ApisApi(kube.api).get_api_versions().groups}
        assert {"apps", "batch", "rbac.authorization.k8s.io"} <= groups
        apps = client.AppsV1Api(kube.api).get_api_resources()
        assert "deployments" in {r.name for r in apps.resources}
        core_resources = {r.name for r in core.get_api_resources().resources}
        assert {"configmaps", "secrets", "namespaces"} <= core_resources
    finally:
        core.delete_namespace(ns)


def test_a_server_that_finds_its_port_taken_is_started_again(tmp_path: Path) -> None:
    # free_port() cannot reserve a port: another process may bind it before the server
    # does. The server then exits saying so, and start_with_retry picks new ports.
    attempts: list[Path] = []

    def factory(workdir: Path) -> servers.Server:
        attempts.append(workdir)
        if len(attempts) == 1:
            argv = [
                sys.executable,
                "-c",
                "import sys; print('Port allocation failed: port 1 is not available'); sys.exit(1)",
            ]
        else:
            argv = [sys.executable, "-c", "import time; time.sleep(60)"]
        return servers.Server("stand-in", argv, lambda: len(attempts) > 1, workdir)

    server = servers.start_with_retry(factory, tmp_path)
    try:
        assert len(attempts) == 2 and attempts[1] != attempts[0]
    finally:
        server.stop()

    def failing(workdir: Path) -> servers.Server:
        argv = [sys.executable, "-c", "import sys; print('config error'); sys.exit(3)"]
        return servers.Server("broken", argv, lambda: False, workdir)

    with pytest.raises(RuntimeError, match="broken exited with 3") as e:
        servers.start_with_retry(failing, tmp_path / "b")
    assert not isinstance(e.value, servers.PortTaken)  # other failures are not retried
