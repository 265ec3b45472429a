"""Helpers for the command-level tests: a dr.yaml with a file repository, runbooks, small app namespaces."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from dr.kube.client import KubeClient
from tests.kube_helpers import configmap, create, make_namespace


def write_config(
    directory: Path,
    *,
    backup_policies: list[dict[str, Any]] | None = None,
    drill_policies: list[dict[str, Any]] | None = None,
    metrics: dict[str, str] | None = None,
    repo_dir: Path | None = None,
) -> Path:
    """``directory/dr.yaml``: a file:// repository (``directory/repo``) with a local key, and the given policies."""
    doc: dict[str, Any] = {
        "apiVersion": "dr.dev/v1",
        "kind": "Config",
        "repositories": [
            {"name": "main", "url": f"file://{repo_dir or directory / 'repo'}", "keys": ["local"]}
        ],
        "keyProviders": [{"name": "local", "uri": f"local://{directory / 'repo.key'}"}],
        "backupPolicies": backup_policies or [],
        "drillPolicies": drill_policies or [],
    }
    if metrics:
        doc["metrics"] = metrics
    path = directory / "dr.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def two_repository_config(
    home: Path,
    capsys: Any,
    *,
    backup_policies: list[dict[str, Any]] | None = None,
    drill_policies: list[dict[str, Any]] | None = None,
    main: str = "main",
) -> Path:
    """``home/dr.yaml`` with two initialised file:// repositories, ``main`` (the default, in
    ``home/<main>``) and ``other`` (``home/other``), one local key, and the given policies:
    for the commands that must find a policy's backups or reports outside the default."""
    from tests.helpers import run_dr

    config = home / "dr.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "dr.dev/v1", "kind": "Config",
        "repositories": [{"name": "main", "url": f"file://{home}/{main}", "keys": ["local"]},
                         {"name": "other", "url": f"file://{home}/other", "keys": ["local"]}],
        "keyProviders": [{"name": "local", "uri": f"local://{home}/repo.key"}],
        "backupPolicies": backup_policies or [],
        "drillPolicies": drill_policies or [],
    }))  # fmt: skip
    for name in (main, "other"):
        r = run_dr(capsys, "--config", str(config), "--repo", f"file://{home}/{name}", "repo", "init")
        assert r.code == 0, r.err
    return config


def write_runbook(path: Path, app: str, namespace: str, *, backup_policy: str | None = None,
                  expect_configmaps: list[str] | None = None, step_timeout: str = "30s") -> Path:  # fmt: skip
    """A runbook whose only verification step checks ConfigMaps by name (no workloads needed)."""
    spec: dict[str, Any] = {
        "description": f"The {app} application.",
        "contacts": [{"name": "Ops", "email": "ops@example.com"}],
        "scope": {"namespaces": [namespace]},
        "objectives": {"rpo": "24h", "rto": "1h"},
        "drill": {"timeout": "5m"},
        "verification": [
            {
                "name": "config-present",
                "type": "resources",
                "timeout": step_timeout,
                "expect": [{"kind": "ConfigMap", "names": expect_configmaps or ["settings"]}],
            },
        ],
        "procedure": [{"title": "Restore", "text": "Restore the latest backup.", "dr": "dr restore latest"}],
    }
    if backup_policy:
        spec["backupPolicy"] = backup_policy
    doc = {"apiVersion": "dr.dev/v1", "kind": "Runbook", "metadata": {"name": app}, "spec": spec}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def unreachable_kubeconfig(kubeconfig: str, directory: Path) -> tuple[Path, int]:
    """``directory/unreachable.kubeconfig``: ``kubeconfig`` with its server a loopback port nothing
    listens on: (its path, the port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    unreachable = directory / "unreachable.kubeconfig"
    unreachable.write_text(yaml.safe_dump(doc))
    return unreachable, port


def small_namespace(kc: KubeClient, name: str, labels: dict[str, str] | None = None) -> str:
    """A namespace with two ConfigMaps (``settings``, ``features``) and a Secret (``db``)."""
    make_namespace(kc, name, labels)
    create(kc, "configmaps", configmap("settings", {"mode": "production"}), name)
    create(kc, "configmaps", configmap("features", {"beta": "off"}), name)
    create(kc, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                           "stringData": {"password": "not-in-any-event"}}, name)  # fmt: skip
    return name


def events(kc: KubeClient, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kc.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    return items


@contextmanager
def shop_and_billing_nightly(kc: KubeClient, directory: Path, unique: str) -> Iterator[tuple[str, str, Path]]:
    """Small namespaces ``shop-<unique>`` and ``billing-<unique>`` (deleted afterwards) and
    ``directory/dr.yaml`` with one backup policy, nightly, over both: (shop, billing, config)."""
    shop, billing = f"shop-{unique}", f"billing-{unique}"
    for ns in (shop, billing):
        small_namespace(kc, ns)
    config = write_config(directory, backup_policies=[
        {"name": "nightly", "schedule": "0 2 * * *", "scope": {"namespaces": [shop, billing]}}])  # fmt: skip
    try:
        yield shop, billing, config
    finally:
        for ns in (shop, billing):
            kc.request("DELETE", f"/api/v1/namespaces/{ns}")
