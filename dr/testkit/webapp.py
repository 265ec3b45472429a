"""The web-app example (``examples/webapp``): its manifests, its volume's files, and putting both in a cluster.

Test and demo support only (see ``dr.testkit``); reads the example from the
checkout. ``deploy`` creates the manifests' objects (the namespace first);
``write_content`` copies ``content/`` onto a directory standing for the
``uploads`` volume (the node agent's); ``content_loader`` is the ConfigMap and
Job that put the same files onto the volume in a real cluster.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from dr.kube.client import KubeClient

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "webapp"
MANIFESTS = EXAMPLE / "webapp.yaml"
CONTENT = EXAMPLE / "content"
RUNBOOK = ROOT / "runbooks" / "webapp.yaml"
NAMESPACE = "webapp"
PVC = "uploads"
LOADER_IMAGE = "busybox:1.36"

_PATHS = {
    "Namespace": "/api/v1/namespaces",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
}


def manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]


def collection_path(obj: dict[str, Any]) -> str:
    return _PATHS[obj["kind"]].format(ns=(obj.get("metadata") or {}).get("namespace", ""))


def deploy(kube: KubeClient, objects: list[dict[str, Any]] | None = None) -> list[str]:
    """Create the objects (409 = already there is fine); ``kind/name`` of each, in order."""
    done = []
    for obj in objects if objects is not None else manifests():
        status, data = kube.request("POST", collection_path(obj), body=obj)
        if status not in (201, 409):
            raise RuntimeError(f"create {obj['kind']} {obj['metadata']['name']}: {status} {data[:300]!r}")
        done.append(f"{obj['kind'].lower()}/{obj['metadata']['name']}")
    return done


def content_files() -> list[Path]:
    """The volume's files, relative to ``content/``, sorted."""
    return sorted(p.relative_to(CONTENT) for p in CONTENT.rglob("*") if p.is_file())


def write_content(target: Path) -> list[Path]:
    """Copy ``content/`` into ``target`` (the volume's root); the files written."""
    written = []
    for rel in content_files():
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CONTENT / rel, dest)
        os.chmod(dest, 0o644)
        written.append(dest)
    return written


def content_loader(namespace: str = NAMESPACE, name: str = "webapp-content") -> list[dict[str, Any]]:
    """A ConfigMap of ``content/`` and a Job copying it onto the PVC (for clusters with kubelets)."""
    files = content_files()
    keys = {str(rel).replace("/", "__"): str(rel) for rel in files}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: (CONTENT / rel).read_text() for k, rel in keys.items()},
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 300,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 101, "fsGroup": 101},
                    "containers": [{
                        "name": "copy",
                        "image": LOADER_IMAGE,
                        "command": ["sh", "-c", "cp -rL /content/. /data/ && ls -R /data"],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "content", "mountPath": "/content", "readOnly": True},
                                         {"name": "data", "mountPath": "/data"}],
                    }],
                    "volumes": [
                        {"name": "content", "configMap": {
                            "name": name, "items": [{"key": k, "path": rel} for k, rel in keys.items()]}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": PVC}},
                    ],
                }
            },
        },
    }  # fmt: skip
    return [config_map, job]
