"""Helpers for the volume-data tests: snapshot CRDs, the mover environment, volume trees, comparisons.

``MoverEnv`` is what a cluster running dr's movers has: a repository (S3 on
SeaweedFS, master key wrapped by a Vault transit key on OpenBao), dr.yaml in
the ConfigMap ``dr-config`` and the credentials (AWS keys, a Vault token) in
a Secret, both in dr's namespace and — for movers that run next to the
PVC — in the application namespaces (``prepare``). The test process opens
the same repository with the same key to check what the movers wrote.
"""

from __future__ import annotations

import json
import os
import random
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dr.backup.volumes import RepositorySnapshotFinder, VolumeBackupContext
from dr.config import MoverOptions, S3Options, VolumeOptions
from dr.config import Repository as RepositoryConfig
from dr.crypto.providers.vault import VaultKeyProvider
from dr.kube.client import KubeClient
from dr.repo.repository import Repository
from dr.restore.volumes import VolumeRestoreContext
from dr.storage.registry import open_store
from dr.testkit.cluster import DRIVER, install_snapshot_crds  # noqa: F401  (install_snapshot_crds: for conftest)


# The snapshot CRDs and the CSI driver name the node agent plays: shared with the demo.
def create(kc: KubeClient, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    return kc.call("POST", path, body=obj)


def create_storage(kc: KubeClient, unique: str, *, snapshot_class: bool) -> tuple[str, str | None]:
    """A StorageClass for the CSI driver and (optionally) a VolumeSnapshotClass: their names."""
    sc = f"csi-{unique}"
    create(
        kc,
        "/apis/storage.k8s.io/v1/storageclasses",
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": sc},
            "provisioner": f"{unique}.{DRIVER}",
        },
    )
    if not snapshot_class:
        return sc, None
    vsc = f"snap-{unique}"
    create(
        kc,
        "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses",
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClass",
            "metadata": {"name": vsc},
            "driver": f"{unique}.{DRIVER}",
            "deletionPolicy": "Delete",
        },
    )
    return sc, vsc


def delete_storage(kc: KubeClient, sc: str, vsc: str | None) -> None:
    kc.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{sc}")
    if vsc:
        kc.request("DELETE", f"/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses/{vsc}")


def create_namespace(kc: KubeClient, name: str) -> None:
    create(kc, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def create_pvc(kc: KubeClient, ns: str, name: str, storage_class: str, size: str = "1Gi") -> dict[str, Any]:
    return create(
        kc,
        f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class,
                "resources": {"requests": {"storage": size}},
            },
        },
    )


def get_pvc(kc: KubeClient, ns: str, name: str) -> dict[str, Any]:
    return kc.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")


def create_pod(
    kc: KubeClient,
    ns: str,
    name: str,
    claims: list[str],
    *,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    node: str | None = "node-a",
    running: bool = True,
    tolerations: list[dict[str, Any]] | None = None,
    fs_group: int | None = None,
    supplemental_groups: list[int] | None = None,
) -> dict[str, Any]:
    """An application pod mounting ``claims``; with ``running`` its status says Running on ``node``."""
    spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "side:1"}],
        "volumes": [
            {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)
        ],
    }
    if node:
        spec["nodeName"] = node
    if tolerations:
        spec["tolerations"] = tolerations
    if fs_group is not None:
        spec["securityContext"] = {"fsGroup": fs_group}
    if supplemental_groups:
        spec.setdefault("securityContext", {})["supplementalGroups"] = supplemental_groups
    meta: dict[str, Any] = {"name": name, "annotations": annotations or {}, "labels": labels or {}}
    pod = create(
        kc,
        f"/api/v1/namespaces/{ns}/pods",
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
    )
    if running:
        kc.call(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{name}/status",
            body={"status": {"phase": "Running"}},
            content_type="application/merge-patch+json",
        )
    return pod


# --------------------------------------------------------------------------- the mover environment


@dataclass
class MoverEnv:
    kc: KubeClient
    repo_url: str
    dr_yaml: str
    mover_namespace: str
    credentials: dict[str, str]  # the Secret's values (tests check none appears in a Job)
    provider: VaultKeyProvider
    repo_config: RepositoryConfig
    secret_name: str = "dr-credentials"
    config_map: str = "dr-config"
    prepared: list[str] = field(default_factory=list)

    def prepare(self, namespace: str) -> None:
        """dr.yaml's ConfigMap and the credentials Secret in ``namespace`` (movers there need their own copies)."""
        create(
            self.kc,
            f"/api/v1/namespaces/{namespace}/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self.config_map},
                "data": {"dr.yaml": self.dr_yaml},
            },
        )
        create(
            self.kc,
            f"/api/v1/namespaces/{namespace}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": self.secret_name},
                "type": "Opaque",
                "stringData": self.credentials,
            },
        )
        self.prepared.append(namespace)

    def open_repository(self) -> Repository:
        store = open_store(self.repo_url, self.repo_config)
        return Repository.open(store, lambda uri: self.provider if uri == self.provider.uri else None)

    def finder(self) -> RepositorySnapshotFinder:
        return RepositorySnapshotFinder(self.open_repository())

    def mover_options(self, **kw: Any) -> MoverOptions:
        base: dict[str, Any] = {
            "image": "ghcr.io/dr-project/dr:test",
            "namespace": self.mover_namespace,
            "credentials_secret": self.secret_name,
            "parallelism": 2,
        }
        return MoverOptions(**{**base, **kw})

    def backup_ctx(
        self,
        backup_id: str,
        *,
        mode: Literal["auto", "snapshot", "filesystem", "none"] = "auto",
        mover: dict[str, Any] | None = None,
        **kw: Any,
    ) -> VolumeBackupContext:
        volumes = VolumeOptions(mode=mode, **kw.pop("volume_options", {}))
        return VolumeBackupContext(
            repo_url=self.repo_url,
            backup_id=backup_id,
            mover=self.mover_options(**(mover or {})),
            volumes=volumes,
            stuck_grace=kw.pop("stuck_grace", 300.0),
            config_map=self.config_map,
            **kw,
        )

    def restore_ctx(
        self, restore_id: str, *, mover: dict[str, Any] | None = None, **kw: Any
    ) -> VolumeRestoreContext:
        return VolumeRestoreContext(
            repo_url=self.repo_url,
            restore_id=restore_id,
            mover=self.mover_options(**(mover or {})),
            config_map=self.config_map,
            **kw,
        )


def make_mover_env(
    kc: KubeClient,
    s3: dict[str, str],
    bucket: str,
    vault: dict[str, str],
    unique: str,
    *,
    mover_namespace: str | None = None,
    names: str = "",
) -> MoverEnv:
    """Repository, key and dr's namespace (``drm-<unique>``, or an existing ``mover_namespace``).

    ``names`` suffixes the ConfigMap and Secret names, for a namespace that others share.
    """
    import hvac

    root = hvac.Client(url=vault["address"], token=vault["token"])
    mount = f"transit-{unique}"
    root.sys.enable_secrets_engine("transit", path=mount)
    root.secrets.transit.create_key(name="dr", derived=True, mount_point=mount)
    # A token of its own (random, unlike the dev root token) so that a leak would be visible.
    token = root.auth.token.create(policies=["root"], ttl="2h")["auth"]["client_token"]
    uri = f"vault://{mount}/keys/dr"
    url = f"s3://{bucket}/repo"
    s3_opts = S3Options(endpoint=s3["endpoint"], region=s3["region"], addressing_style="path")
    config = {
        "apiVersion": "dr.dev/v1",
        "kind": "Config",
        "defaultRepository": "main",
        "repositories": [
            {
                "name": "main",
                "url": url,
                "keys": ["transit"],
                "s3": {"endpoint": s3["endpoint"], "region": s3["region"], "addressingStyle": "path"},
            }
        ],
        "keyProviders": [{"name": "transit", "uri": uri, "vault": {"address": vault["address"]}}],
    }
    # The test's own access to the repository: the same transit key, the same token.
    provider = VaultKeyProvider(
        uri, address=vault["address"], client=hvac.Client(url=vault["address"], token=token)
    )
    repo_config = RepositoryConfig(name="main", url=url, s3=s3_opts)
    Repository.init(open_store(url, repo_config), provider)
    mover_ns = mover_namespace or f"drm-{unique}"
    if mover_namespace is None:
        create_namespace(kc, mover_ns)
    env = MoverEnv(
        kc=kc,
        repo_url=url,
        dr_yaml=yaml.safe_dump(config),
        mover_namespace=mover_ns,
        credentials={
            "AWS_ACCESS_KEY_ID": s3["access_key"],
            "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
            "VAULT_TOKEN": token,
        },
        provider=provider,
        repo_config=repo_config,
        secret_name=f"dr-credentials{names}",
        config_map=f"dr-config{names}",
    )
    env.prepare(mover_ns)
    return env


# --------------------------------------------------------------------------- volume contents


def fill_volume(root: Path, seed: int, size: int) -> None:
    """About ``size`` bytes: a large file (random and zero runs), 40 logs, nested dirs, modes, mtimes, a symlink."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "db" / "base").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    per_log = min(9_000, size // 120)
    big = max(size - 40 * per_log, 4)
    (root / "db" / "base" / "table.dat").write_bytes(
        rng.randbytes(big // 2) + bytes(big // 4) + rng.randbytes(big - big // 2 - big // 4)
    )
    for i in range(40):
        text = "".join(f"{seed} line {j} {rng.random()}\n" for j in range(per_log // 30 + 1))
        (root / "logs" / f"app-{i}.log").write_text(text[:per_log])
    (root / "db" / "PG_VERSION").write_text("16\n")
    (root / "empty").write_bytes(b"")
    os.symlink("db/PG_VERSION", root / "version-link")
    os.chmod(root / "db" / "base" / "table.dat", 0o600)
    os.chmod(root / "db" / "PG_VERSION", 0o640)
    os.chmod(root / "db" / "base", 0o700)
    for i, p in enumerate(sorted(root.rglob("*"))):
        if not p.is_symlink():
            t = 1_600_000_000_000_000_000 + i * 1_000_000_123
            os.utime(p, ns=(t, t))


def tree_listing(root: Path) -> dict[str, tuple[Any, ...]]:
    """path -> (type, mode, mtime_ns, content or link target) for every entry below ``root``."""
    out: dict[str, tuple[Any, ...]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, p.read_bytes())
    return out


def job_manifests_json(runs: list[Any]) -> str:
    return json.dumps([r.manifest for r in runs])
