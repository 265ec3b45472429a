"""Acceptance through the real CLI: ``dr backup`` / ``dr restore`` of Kubernetes resources.

Everything goes through ``dr.cli.main`` (``run_dr``) with the embedded
defaults (a file:// repository and a local key under the test's XDG dirs)
against the RBAC-enabled test cluster: a realistic application namespace
(``tests.kube_helpers.build_app``) is backed up, lost, restored in place and
into another namespace, planned with ``--dry-run``; restricted identities
(``backup-sa``, ``bob``) with Roles made here show the partial-failure paths.
Restored objects are compared with the originals through the intended changes
written out in ``tests.test_kube_roundtrip.intended``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.kube.client import KubeClient
from dr.kube.objects import ResourceItem
from dr.testkit.agent import wait_until
from tests import servers
from tests.cli_support import two_repository_config, unreachable_kubeconfig, write_config
from tests.helpers import Result, run_dr
from tests.kube_helpers import (
    App,
    app_drill_and_own_namespaces,
    build_app,
    cleanup_app,
    configmap,
    create,
    delete,
    delete_crd,
    delete_namespace,
    get,
    make_namespace,
    normalise,
)
from tests.test_kube_roundtrip import OWNED, intended

RBAC = "rbac.authorization.k8s.io/v1"
Capsys = pytest.CaptureFixture[str]


def dr(capsys: Capsys, k8s: servers.TestCluster, *args: str, user: str | None = None) -> Result:
    kubeconfig = k8s.kubeconfig_for(user) if user else k8s.kubeconfig
    return run_dr(capsys, "--kubeconfig", kubeconfig, *args)


@pytest.fixture
def repo(isolated_home: Path, capsys: Capsys) -> Path:
    """The embedded default repository (file://, local key), initialised through the CLI."""
    res = run_dr(capsys, "repo", "init")
    assert res.code == 0, res.err
    path = isolated_home / "data" / "dr" / "repo"
    assert (path / "config").exists()
    return path


@pytest.fixture
def app(kube_client: KubeClient, unique: str) -> Iterator[App]:
    ns = f"cli-{unique}"
    application = build_app(kube_client, ns, unique)
    try:
        yield application
    finally:
        cleanup_app(kube_client, application, ns, f"{ns}-copy")


def result_items(restore_doc: dict[str, Any]) -> list[ResourceItem]:
    return [ResourceItem.model_validate(i["item"]) for i in restore_doc["items"]]


def by_key(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["item"]["resource"], i["item"]["name"]): i for i in doc["items"]}


def current(kc: KubeClient, item: ResourceItem, namespace: str | None) -> dict[str, Any] | None:
    return get(kc, item.api_version, item.resource, item.name, namespace if item.namespaced else None)


def resource_versions(kc: KubeClient, items: list[ResourceItem], ns: str) -> dict[str, str | None]:
    return {
        i.describe(): (current(kc, i, ns) or {}).get("metadata", {}).get("resourceVersion") for i in items
    }


def repo_bytes(path: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(path.rglob("*")) if p.is_file()]


# --------------------------------------------------------------------------- the whole story


def test_backup_lose_restore_mapped_and_dry_run(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, app: App, unique: str
) -> None:
    kc, ns = kube_client, app.namespace
    # A Secret whose value must never appear in the repository, in plaintext or base64.
    plaintext = f"pa55-{unique}-do-not-leak"
    create(kc, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-key"},
                           "stringData": {"token": plaintext}}, ns)  # fmt: skip

    # --- backup
    res = dr(capsys, k8s, "backup", "-n", ns, "--no-data", "-o", "json")
    assert res.code == 0, res.err
    backup = res.json()
    assert backup["phase"] == "Completed" and backup["errors"] == []
    assert backup["namespaces"] == [ns]
    assert backup["counts"]["secrets"] == 2 and backup["counts"][f"widgets.{app.crd_group}"] == 2
    assert backup["counts"]["services"] == 3 and backup["counts"]["jobs.batch"] == 2
    assert backup["objects"] == sum(backup["counts"].values())

    # --- no Secret value at rest: not the plaintext, not its base64, not the other Secret's
    files = repo_bytes(repo)
    assert any(p.parent.name != "repo" for p, _ in files), "the repository holds data"
    needles = [plaintext.encode(), base64.b64encode(plaintext.encode()), b"hunter2", b"aHVudGVyMg=="]
    leaks = [(str(p.relative_to(repo)), n) for p, data in files for n in needles if n in data]
    assert leaks == []

    described = run_dr(capsys, "backups", "describe", "latest", "-o", "json")
    assert described.code == 0, described.err
    snap = described.json()
    assert snap["id"] == backup["id"] and snap["phase"] == "Completed"
    backup_id = snap["app"]["backupId"]

    # --- a dry run right after the backup: nothing would change; it also lists every backed-up object
    res = dr(capsys, k8s, "restore", "latest", "--dry-run", "-o", "json")
    assert res.code == 0, res.err
    untouched = res.json()
    items = result_items(untouched)
    assert len(items) == backup["objects"]
    assert {
        k: v["outcome"] for k, v in by_key(untouched).items() if v["outcome"] != "unchanged"
    } == dict.fromkeys(OWNED, "skipped")
    originals: dict[tuple[str, str], dict[str, Any]] = {}
    for i in items:
        obj = current(kc, i, ns)
        assert obj is not None, i.describe()
        originals[(i.resource, i.name)] = obj

    # --- the namespace and its cluster-scoped dependencies are lost
    delete_namespace(kc, ns)
    delete_crd(kc, app.crd_name)
    delete(kc, "v1", "persistentvolumes", app.pv)
    delete(kc, "storage.k8s.io/v1", "storageclasses", app.storage_class)
    delete(kc, RBAC, "clusterroles", app.cluster_role)

    res = dr(capsys, k8s, "restore", "latest", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["phase"] == "Completed" and doc["dryRun"] is False and doc["backupId"] == backup_id
    assert doc["namespacesCreated"] == [ns]
    assert [i.describe() for i in result_items(doc)] == [i.describe() for i in items]  # one result per object
    outcomes = {k: v["outcome"] for k, v in by_key(doc).items()}
    for key in OWNED:
        assert outcomes.pop(key) == "skipped"
    assert set(outcomes.values()) == {"created"}
    assert doc["counts"] == {"created": len(items) - len(OWNED), "skipped": len(OWNED)}
    for item in items:
        now = current(kc, item, ns)
        if (item.resource, item.name) in OWNED:
            assert now is None, f"{item.describe()} is left to its controller"
            continue
        assert now is not None, item.describe()
        want = intended(originals[(item.resource, item.name)], item, target_ns=None, pv_restored=True,
                        backup_id=backup_id, restore_id=doc["restoreId"])  # fmt: skip
        assert normalise(now) == want, item.describe()
    restored_secret = get(kc, "v1", "secrets", "api-key", ns)
    assert restored_secret is not None
    assert base64.b64decode(restored_secret["data"]["token"]).decode() == plaintext

    # --- the same backup again, into another namespace
    copy_ns = f"{ns}-copy"
    res = dr(capsys, k8s, "restore", "latest", "--namespace-mapping", f"{ns}={copy_ns}", "-o", "json")
    assert res.code == 0, res.err
    mapped = res.json()
    assert mapped["phase"] == "Completed" and mapped["namespacesCreated"] == [copy_ns]
    outcomes = {k: v["outcome"] for k, v in by_key(mapped).items()}
    for key in OWNED:
        assert outcomes.pop(key) == "skipped"
    assert outcomes.pop(("customresourcedefinitions", app.crd_name)) == "unchanged"
    assert outcomes.pop(("storageclasses", app.storage_class)) == "unchanged"
    assert outcomes.pop(("clusterroles", app.cluster_role)) == "unchanged"
    # The PV's claimRef would point into the copy: it differs and is left alone (existing=skip).
    assert outcomes.pop(("persistentvolumes", app.pv)) == "skipped"
    assert set(outcomes.values()) == {"created"}
    for item in result_items(mapped):
        if (item.resource, item.name) in OWNED or not (item.namespaced or item.resource == "namespaces"):
            continue
        source = (item.resource, ns if item.resource == "namespaces" else item.name)
        now = (
            get(kc, "v1", "namespaces", copy_ns)
            if item.resource == "namespaces"
            else current(kc, item, copy_ns)
        )
        assert now is not None, item.describe()
        want = intended(originals[source], item, target_ns=copy_ns, pv_restored=False, backup_id=backup_id,
                        restore_id=mapped["restoreId"])  # fmt: skip
        assert normalise(now) == want, item.describe()

    # --- dry run on the existing namespace, with one object changed since the backup
    kc.call("PATCH", f"/api/v1/namespaces/{ns}/configmaps/settings", body={"data": {"workers": "8"}},
            content_type="application/merge-patch+json")  # fmt: skip
    before = resource_versions(kc, items, ns)
    res = dr(capsys, k8s, "restore", "latest", "--dry-run", "--existing", "update", "-o", "json")
    assert res.code == 0, res.err
    plan = res.json()
    assert plan["dryRun"] is True and plan["namespacesCreated"] == []
    changing = {k: (v["outcome"], v["diff"]) for k, v in by_key(plan).items()
                if v["outcome"] not in ("unchanged", "skipped")}  # fmt: skip
    assert changing == {("configmaps", "settings"): ("would-update", ['data.workers: "8" → "4"'])}
    assert plan["counts"] == {
        "unchanged": len(items) - len(OWNED) - 1,
        "skipped": len(OWNED),
        "would-update": 1,
    }

    # The table view says the same to a person: the action and the diff line.
    res = dr(capsys, k8s, "restore", "latest", "--dry-run", "--existing", "update")
    assert res.code == 0, res.err
    row = next(line for line in res.out.splitlines() if f"configmaps {ns}/settings " in line)
    assert "would-update" in row
    assert f'configmaps {ns}/settings: data.workers: "8" → "4"' in res.out
    assert "plan for backup" in res.out
    # With the default (existing=skip) the changed object is planned as skipped, and why.
    res = dr(capsys, k8s, "restore", "latest", "--dry-run")
    assert res.code == 0, res.err
    row = next(line for line in res.out.splitlines() if f"configmaps {ns}/settings " in line)
    assert "skipped" in row and "already exists and differs (existing=skip)" in row

    assert resource_versions(kc, items, ns) == before
    assert get(kc, "v1", "configmaps", "settings", ns)["data"]["workers"] == "8"  # type: ignore[index]


# --------------------------------------------------------------------------- restricted identities


def _grant(kc: KubeClient, ns: str, user: str, name: str, rules: list[dict[str, Any]]) -> None:
    subject = [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]
    create(kc, "roles", {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": name}, "rules": rules}, ns)
    create(kc, "rolebindings", {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": name},
                                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                                "subjects": subject}, ns)  # fmt: skip


@pytest.fixture
def grants(kube_client: KubeClient, unique: str) -> Iterator[list[str]]:
    """Cluster-scoped grants a test makes (ClusterRole + binding of the same name), removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        kube_client.request("DELETE", f"/apis/{RBAC}/clusterrolebindings/{name}")
        kube_client.request("DELETE", f"/apis/{RBAC}/clusterroles/{name}")


def _grant_namespace_get(
    kc: KubeClient, grants: list[str], user: str, namespaces: list[str], unique: str
) -> None:
    name = f"ns-get-{user}-{unique}"
    create(kc, "clusterroles", {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name},
                                "rules": [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": namespaces,
                                           "verbs": ["get"]}]})  # fmt: skip
    create(kc, "clusterrolebindings", {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": name},
                                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                   "name": name},
                                       "subjects": [{"kind": "User", "name": user,
                                                     "apiGroup": "rbac.authorization.k8s.io"}]})  # fmt: skip
    grants.append(name)


@pytest.fixture
def small_app(kube_client: KubeClient, unique: str) -> Iterator[str]:
    """A namespace with two ConfigMaps, two Secrets and a Deployment."""
    ns = f"small-{unique}"
    make_namespace(kube_client, ns)
    for name in ("settings", "features"):
        create(kube_client, "configmaps", configmap(name, {"k": name}), ns)
    for name in ("db", "tls"):
        create(kube_client, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                                        "stringData": {"v": name}}, ns)  # fmt: skip
    create(kube_client, "deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }, ns)  # fmt: skip
    try:
        yield ns
    finally:
        for n in (ns, f"{ns}-target"):
            kube_client.request("DELETE", f"/api/v1/namespaces/{n}")


def test_restore_as_identity_lacking_rights_to_one_type_exits_3_listing_each_failure(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, small_app: str,
    grants: list[str], unique: str,
) -> None:  # fmt: skip
    kc, ns = kube_client, small_app
    res = dr(capsys, k8s, "backup", "-n", ns, "--no-data", "--include-cluster-resources", "false")
    assert res.code == 0, res.err

    # bob may write ConfigMaps and Deployments in the target namespace, but not Secrets.
    target = f"{ns}-target"
    make_namespace(kc, target)
    write = ["get", "list", "watch", "create", "update", "patch"]
    _grant(kc, target, "bob", "restorer", [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": write},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": write},
    ])  # fmt: skip
    _grant_namespace_get(kc, grants, "bob", [target], unique)

    # The target namespace exists; bob may read it but not create namespaces (restore creates first,
    # so the backed-up Namespace object would fail too: leave it out, the secrets are the point here).
    mapping = ("--namespace-mapping", f"{ns}={target}", "--exclude-resources", "namespaces")
    res = dr(capsys, k8s, "restore", "latest", *mapping, user="bob")
    assert res.code == 3, res.err
    # bob may not create Events either: a warning, and the exit code is still the restore's own.
    warning, *err = res.err.splitlines()
    assert '"level": "warning"' in warning
    assert f"cannot record event RestorePartiallyFailed in namespace {target}: 403 Forbidden" in warning
    assert err[0].startswith("error: restore ") and err[0].endswith("partially failed: 2 item(s)")
    failures = sorted(line.strip() for line in err[1:] if line.startswith("  "))
    assert len(failures) == 2
    for name, line in zip(("db", "tls"), failures, strict=True):
        assert line.startswith(f"secrets {target}/{name}: failed (403 Forbidden: ")
        assert 'User "bob" cannot' in line and 'resource "secrets"' in line
    # Everything else was restored.
    assert {c["metadata"]["name"] for c in kc.get(f"/api/v1/namespaces/{target}/configmaps")["items"]} == {
        "settings", "features"}  # fmt: skip
    assert get(kc, "apps/v1", "deployments", "web", target) is not None
    assert kc.get(f"/api/v1/namespaces/{target}/secrets")["items"] == []

    # -o json: the same failures, per item, and the exit code is still 3.
    res = dr(capsys, k8s, "restore", "latest", *mapping, "-o", "json", user="bob")
    assert res.code == 3
    doc = res.json()
    assert doc["phase"] == "PartiallyFailed"
    got = {(i["item"]["resource"], i["item"]["name"]): i["outcome"] for i in doc["items"]}
    assert got == {("configmaps", "settings"): "unchanged",
                   ("configmaps", "features"): "unchanged", ("deployments", "web"): "unchanged",
                   ("secrets", "db"): "failed", ("secrets", "tls"): "failed"}  # fmt: skip


def test_restore_of_which_every_item_failed_is_recorded_as_failed(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, small_app: str,
    grants: list[str], unique: str,
) -> None:  # fmt: skip
    # bob may read the target namespace and record Events there, nothing else: every object a 403.
    # The command said "failed" (exit 1) while its Event said RestorePartiallyFailed.
    kc, ns = kube_client, small_app
    assert dr(capsys, k8s, "backup", "-n", ns, "--no-data", "--include-cluster-resources", "false").code == 0
    target = f"{ns}-target"
    make_namespace(kc, target)
    _grant(
        kc, target, "bob", "events-only", [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    )
    _grant_namespace_get(kc, grants, "bob", [target], unique)
    mapping = ("--namespace-mapping", f"{ns}={target}", "--exclude-resources", "namespaces")
    res = dr(capsys, k8s, "restore", "latest", *mapping, user="bob")
    assert res.code == 1, res.err
    reasons = [e["reason"] for e in kc.get(f"/api/v1/namespaces/{target}/events")["items"]
               if (e.get("source") or {}).get("component") == "dr"]  # fmt: skip
    assert reasons == ["RestoreFailed"], reasons


def test_backup_that_captured_nothing_is_failed_exit_1(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, small_app: str,
    grants: list[str], unique: str,
) -> None:  # fmt: skip
    # bob may read the namespace and record Events there, list nothing: a 403 for every type. It was
    # "PartiallyFailed" (exit 3) with 0 objects, which the contract keeps for "some failed, the rest done".
    kc, ns = kube_client, small_app
    _grant(kc, ns, "bob", "events-only", [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}])
    _grant_namespace_get(kc, grants, "bob", [ns], unique)
    res = dr(capsys, k8s, "backup", "-n", ns, "--no-data", "--include-resources", "configmaps,secrets",
             "-o", "json", user="bob")  # fmt: skip
    assert res.code == 1, res.err
    doc = res.json()
    assert doc["phase"] == "Failed" and len(doc["errors"]) == 2, doc
    assert "failed: nothing was backed up, 2 item(s) failed" in res.err
    reasons = [e["reason"] for e in kc.get(f"/api/v1/namespaces/{ns}/events")["items"]
               if (e.get("source") or {}).get("component") == "dr"]  # fmt: skip
    assert reasons == ["BackupFailed"], reasons
    # Never what `latest` restores.
    res = dr(capsys, k8s, "restore", "latest", "--dry-run")
    assert res.code == 2 and "none is Completed or PartiallyFailed" in res.err and "is Failed" in res.err, (
        res.err
    )


def test_backup_that_cannot_list_one_type_exits_3_and_the_snapshot_records_it(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, small_app: str,
    grants: list[str], unique: str,
) -> None:  # fmt: skip
    ns = small_app
    _grant(kube_client, ns, "backup-sa", "cm-reader",
           [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}])  # fmt: skip
    _grant_namespace_get(kube_client, grants, "backup-sa", [ns], unique)

    res = dr(capsys, k8s, "backup", "-n", ns, "--no-data", "--include-resources", "configmaps,secrets",
             user="backup-sa")  # fmt: skip
    assert res.code == 3, res.err
    reason = (f'secrets {ns}: 403 Forbidden: secrets is forbidden: User "backup-sa" cannot list resource '
              f'"secrets" in API group "" in the namespace "{ns}"')  # fmt: skip
    assert "error: backup " in res.err and "partially failed: 1 item(s)" in res.err
    assert f"  {reason}" in res.err.splitlines()
    assert "PartiallyFailed" in res.out

    described = run_dr(capsys, "backups", "describe", "latest", "-o", "json")
    assert described.code == 0, described.err
    snap = described.json()
    assert snap["phase"] == "PartiallyFailed"
    assert snap["app"]["errors"] == [reason]
    assert snap["app"]["counts"] == {"configmaps": 2, "namespaces": 1}
    listed = run_dr(capsys, "backups", "list", "-o", "json")
    assert [(b["phase"], b["errors"]) for b in listed.json()] == [("PartiallyFailed", 1)]

    # What could be read restores: the partial backup is still a backup.
    res = dr(capsys, k8s, "restore", "latest", "--namespace-mapping", f"{ns}={ns}-target", "-o", "json")
    assert res.code == 0, res.err
    assert {i["item"]["name"] for i in res.json()["items"]} == {"settings", "features", f"{ns}-target"}


def _clone_backups(home: Path, source_id: str, phases: list[tuple[str, str | None]]) -> dict[str, str]:
    """Save a copy of backup ``source_id`` per ``(phase, policy)``, each a minute newer
    than the last, labelled ``<phase>-<policy>`` (the restore's backupId): backups of
    phases ``dr backup`` does not write (Failed, InProgress), as another or a later
    writer might. Returns ``{label: snapshot id}``."""
    import dataclasses
    from datetime import timedelta

    from dr.crypto.providers.local import LocalKeyProvider
    from dr.repo.snapshots import load_snapshot, save_snapshot
    from dr.storage.file import FileStore
    from tests.repo_helpers import open_with

    key = LocalKeyProvider(home / "config" / "dr" / "repo.key")
    repo = open_with(FileStore(home / "data" / "dr" / "repo"), key)
    source = load_snapshot(repo, source_id)
    out = {}
    for n, (phase, policy) in enumerate(phases, start=1):
        label = f"{phase}-{policy}"
        snap = dataclasses.replace(source, phase=phase, policy=policy, time=source.time + timedelta(minutes=n),
                                   app={**source.app, "backupId": label})  # fmt: skip
        out[label] = save_snapshot(repo, snap).id
    return out


def test_restore_latest_is_the_newest_completed_backup_never_a_failed_or_unfinished_one(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, small_app: str, isolated_home: Path
) -> None:
    # Like Velero's restore --from-schedule: `latest` (of the repository, or of one
    # policy) is the newest Completed backup, whatever newer ones failed or are unfinished.
    res = dr(
        capsys, k8s, "backup", "-n", small_app, "--no-data", "--include-resources", "configmaps", "-o", "json"
    )
    assert res.code == 0, res.err
    ids = _clone_backups(isolated_home, res.json()["id"], [
        ("Completed", "nightly"), ("Completed", "weekly"), ("PartiallyFailed", "nightly"),
        ("Failed", "nightly"), ("InProgress", "nightly"), ("Failed", "weekly"), ("PartiallyFailed", "hourly"),
        ("Failed", "hourly"), ("Failed", "monthly"),
    ])  # fmt: skip

    def restored(*args: str) -> Result:
        return dr(capsys, k8s, "restore", *args, "--dry-run", "-o", "json")

    for args, label in (([], "Completed-weekly"), (["--policy", "nightly"], "Completed-nightly"),
                        (["--policy", "weekly"], "Completed-weekly")):  # fmt: skip
        r = restored("latest", *args)
        assert (r.code, r.json()["backupId"]) == (0, label), r.err
        assert "PartiallyFailed" not in r.err
    # Nothing Completed: the newest PartiallyFailed one, with a warning that names it.
    r = restored("latest", "--policy", "hourly")
    assert (r.code, r.json()["backupId"]) == (0, "PartiallyFailed-hourly"), r.err
    short = ids["PartiallyFailed-hourly"][:8]
    assert (
        f"no Completed backup of policy 'hourly'; restoring the newest PartiallyFailed one, {short}" in r.err
    )
    # Nothing but failed ones: none is `latest`, exit 2; by id it is still restorable.
    r = dr(capsys, k8s, "restore", "latest", "--policy", "monthly", "--dry-run")
    assert r.code == 2 and r.out == ""
    assert r.err == (
        f"error: no backup of policy 'monthly' to restore as 'latest': none is Completed or PartiallyFailed "
        f"(the newest, {ids['Failed-monthly'][:8]}, is Failed); give its id to restore it anyway\n"
    )
    r = restored(ids["Failed-monthly"][:8], "--policy", "monthly")
    assert (r.code, r.json()["backupId"]) == (0, "Failed-monthly"), r.err
    r = restored(ids["InProgress-nightly"])
    assert (r.code, r.json()["backupId"]) == (0, "InProgress-nightly"), r.err


def test_restore_with_a_policy_reads_the_policys_repository(
    capsys: Capsys, k8s: servers.TestCluster, small_app: str, isolated_home: Path
) -> None:
    # `dr backup --policy p` writes into p's repository; `dr restore latest --policy p` (the
    # line `dr runbook render` writes) looked into the default one and found no backup of p.
    home = isolated_home
    config = two_repository_config(
        home,
        capsys,
        backup_policies=[
            {
                "name": "p",
                "repository": "other",
                "schedule": "0 2 * * *",
                "scope": {"namespaces": [small_app], "includeResources": ["configmaps"]},
            }
        ],
    )
    r = dr(capsys, k8s, "--config", str(config), "backup", "--policy", "p", "--no-data", "-o", "json")
    assert r.code == 0, r.err
    assert (home / "other" / "snapshots" / r.json()["id"]).is_file()
    r = dr(
        capsys, k8s, "--config", str(config), "restore", "latest", "--policy", "p", "--dry-run", "-o", "json"
    )
    assert r.code == 0, r.err
    assert {"features", "settings"} <= {i["item"]["name"] for i in r.json()["items"]}


# --------------------------------------------------------------------------- bad input


def test_restore_of_unknown_backup_is_one_line_exit_2(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path
) -> None:
    res = dr(capsys, k8s, "restore", "nosuchid")
    assert res.code == 2
    # Where it looked: an ID copied from a runbook, in a shell with another configuration,
    # said only "no backup with id", and nothing told the engineer to look elsewhere.
    assert (
        res.err
        == f"error: no backup with id 'nosuchid' in file://{repo} (configuration: built-in defaults)\n"
    )
    assert res.out == ""


def test_restore_latest_of_an_empty_repository_is_exit_2(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path
) -> None:
    res = dr(capsys, k8s, "restore", "latest")
    assert (res.code, res.err) == (
        2,
        f"error: no backup found in file://{repo} (configuration: built-in defaults)\n",
    )


def test_restore_of_a_policy_without_backups_says_when_the_config_does_not_know_it(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path
) -> None:
    # A restore takes a policy the config no longer names (a new cluster with only --repo), but
    # a mistyped name, or a shell without the runbook's dr.yaml, read as if the backups were gone.
    res = dr(capsys, k8s, "restore", "latest", "--policy", "nightly", "--dry-run")
    assert (res.code, res.err) == (
        2,
        f"error: no backup of policy 'nightly' found in file://{repo} (configuration: built-in defaults; "
        "it names no backup policy 'nightly', known: none)\n",
    )


def test_restore_of_an_id_with_policy_takes_a_backup_made_by_hand(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, small_app: str
) -> None:
    # The runbook page names the app's newest backup, made by its policy or by hand, with the
    # policy's --policy (its repository): `dr restore ID --policy P` said "no backup of policy P
    # with id ID" for one made by hand. `latest --policy P` still picks among P's backups.
    made = dr(capsys, k8s, "backup", "-n", small_app, "--no-data", "-o", "json")
    assert made.code == 0, made.err
    res = dr(capsys, k8s, "restore", made.json()["id"], "--policy", "nightly", "--dry-run", "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["backupId"].endswith("-manual"), res.json()  # the backup made by hand, its label
    res = dr(capsys, k8s, "restore", "latest", "--policy", "nightly", "--dry-run")
    assert res.code == 2 and "no backup of policy 'nightly' found" in res.err, res.err


def test_an_empty_backup_list_says_where_it_looked(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path
) -> None:
    # The runbook's `dr backups list` in a shell without its configuration printed an empty
    # table, exit 0: "there are no backups", when they were in another repository.
    res = dr(capsys, k8s, "backups", "list", "--namespace", "shop", "--policy", "nightly")
    assert res.code == 0
    assert res.err == (
        f"no backup of policy 'nightly' of namespace 'shop' in file://{repo} (configuration: built-in defaults; "
        "it names no backup policy 'nightly', known: none)\n"
    )
    assert dr(capsys, k8s, "--quiet", "backups", "list").err == ""
    as_json = dr(capsys, k8s, "backups", "list", "-o", "json")
    assert (as_json.out.strip(), as_json.err) == ("[]", "")  # the note is the table's: none here


def test_backup_with_unknown_policy_is_exit_2(capsys: Capsys, k8s: servers.TestCluster, repo: Path) -> None:
    res = dr(capsys, k8s, "backup", "--policy", "nope")
    assert res.code == 2
    assert res.err == "error: no backup policy 'nope' in built-in defaults (known: none)\n"
    assert not list(repo.glob("snapshots/*"))


def test_bad_namespace_mapping_is_exit_2(capsys: Capsys, k8s: servers.TestCluster, repo: Path) -> None:
    res = dr(capsys, k8s, "restore", "latest", "--namespace-mapping", "shop=Not_A_Name")
    assert res.code == 2
    assert len(res.err.splitlines()) == 1 and "'Not_A_Name' is not a valid namespace name" in res.err


def test_describe_shows_the_scope_in_words_not_as_a_python_dict(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, unique: str
) -> None:
    # It printed "scope: {'namespaces': [...], 'selector': None, 'include_resources': [], ...}".
    ns = f"descr-{unique}"
    make_namespace(kube_client, ns)
    try:
        create(kube_client, "configmaps", configmap("settings", {"k": "v"}, labels={"app": "web"}), ns)
        res = dr(
            capsys, k8s, "backup", "-n", ns, "--selector", "app=web", "--include-resources", "configmaps"
        )
        assert res.code == 0, res.err
        res = dr(capsys, k8s, "backups", "describe", "latest")
        assert res.code == 0, res.err
        scope = [line for line in res.out.splitlines() if line.startswith("  scope: ")]
        assert scope == [
            f"  scope: namespaces {ns}; selector app=web; include resources configmaps; cluster resources auto"
        ]
        # -o json names its fields as the rest of the output and dr.yaml's scope do (the snapshot
        # stores BackupScope's names: it showed include_resources, include_cluster_resources).
        res = dr(capsys, k8s, "backups", "describe", "latest", "-o", "json")
        assert res.json()["app"]["scope"] == {
            "namespaces": [ns], "selector": "app=web", "includeResources": ["configmaps"],
            "excludeResources": [], "includeClusterResources": "auto",
        }  # fmt: skip
    finally:
        delete_namespace(kube_client, ns)


def test_a_selector_that_matches_nothing_is_a_warning_of_the_backup(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, small_app: str
) -> None:
    # It ended "Completed" with the Namespace object alone and said nothing: a scheduled backup
    # that captures nothing of the app, unnoticed. Exit 0 still: nothing failed (3 is "some
    # items failed"), and a CronJob's Job retried on failure would only repeat it.
    ns = small_app
    warning = (
        f"label selector 'app=nothing-matches' matched no object in namespace {ns}: "
        "nothing of the application was backed up, only the Namespace object"
    )
    res = dr(capsys, k8s, "backup", "-n", ns, "--selector", "app=nothing-matches", "--no-data")
    assert res.code == 0, res.err
    assert f"warning: {warning}" in res.err.splitlines(), res.err
    assert "Completed, 1 objects" in res.out
    res = dr(capsys, k8s, "backups", "describe", "latest")
    assert res.code == 0 and f"  warning: {warning}" in res.out.splitlines(), res.out
    res = dr(capsys, k8s, "backups", "describe", "latest", "-o", "json")
    assert res.json()["app"]["warnings"] == [warning]

    # A selector that matches something: no such warning.
    create(kube_client, "configmaps", configmap("labelled", {"k": "v"}, labels={"app": "web"}), ns)
    res = dr(capsys, k8s, "backup", "-n", ns, "--selector", "app=web", "--no-data", "-o", "json")
    assert res.code == 0, res.err
    assert (res.json()["warnings"], res.json()["counts"]) == ([], {"configmaps": 1, "namespaces": 1})
    # Nor without a selector: a namespace may well be empty.
    res = dr(capsys, k8s, "backup", "-n", ns, "--no-data", "--include-resources", "cronjobs", "-o", "json")
    assert res.code == 0 and res.json()["warnings"] == [], res.err


@pytest.mark.parametrize("name", ["../../etc/x", "Shop", "shop_db", "-shop", "a" * 53])
def test_backup_name_that_is_not_a_policy_like_name_is_exit_2_and_writes_nothing(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, name: str
) -> None:
    # The name becomes the backup id's tail and the metrics textfile's name (dr-backup.NAME.prom).
    res = dr(capsys, k8s, "backup", "-n", "default", "--no-data", "--name", name)
    assert (res.code, res.out) == (2, ""), res.err
    assert res.err.splitlines() == [
        f"error: --name {name!r}: lowercase letters, digits and '-', starting and ending with a letter or digit, "
        "at most 52 characters"
    ]
    assert not list(repo.glob("snapshots/*"))


def test_backup_of_a_namespace_that_does_not_exist_is_exit_2_and_writes_no_backup(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, unique: str
) -> None:
    # A mistyped -n used to write an empty "Completed" backup (exit 0), which then became `latest`.
    for patterns in ([f"gone-{unique}"], [f"gone-{unique}", f"nothing-{unique}-*"]):
        args = [a for p in patterns for a in ("-n", p)]
        res = dr(capsys, k8s, "backup", *args, "--no-data", "-o", "json")
        assert (res.code, res.out) == (2, ""), res.err
        # (Before it: a warning that the BackupFailed event has no namespace to go to.)
        assert (
            res.err.splitlines()[-1]
            == f"error: no namespace matches {', '.join(patterns)}: nothing to back up"
        )
    assert not list(repo.glob("snapshots/*"))


def test_a_glob_leaves_out_drill_copies_and_drs_namespace_unless_named(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, isolated_home: Path, unique: str
) -> None:
    # `dr backup -n 'p-*'` also backed up a drill's scratch namespace (a restored copy of the app,
    # which `restore latest` could then bring back) and dr's own namespace (mover.namespace).
    with app_drill_and_own_namespaces(kube_client, f"p{unique}") as (app, drill, own):
        config = write_config(isolated_home)
        doc = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**doc, "mover": {"namespace": own}}))
        assert run_dr(capsys, "--config", str(config), "repo", "init").code == 0
        base = ("--config", str(config), "backup", "--no-data", "-o", "json")

        res = dr(capsys, k8s, *base, "-n", f"p{unique}-*")
        assert res.code == 0, res.err
        assert res.json()["namespaces"] == [app] and res.json()["excludedNamespaces"] == [own, drill]
        assert f"left out dr's namespace {own} and drill scratch namespace {drill}" in res.err

        res = dr(capsys, k8s, *base, "-n", f"p{unique}-*", "-n", drill)
        assert res.code == 0, res.err
        assert res.json()["namespaces"] == [app, drill] and res.json()["excludedNamespaces"] == [own]


def test_restore_of_namespaces_the_backup_does_not_hold_is_exit_2(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, small_app: str
) -> None:
    ns = small_app
    res = dr(capsys, k8s, "backup", "-n", ns, "--no-data", "-o", "json")
    assert res.code == 0, res.err
    short = res.json()["shortId"]
    # -n names a namespace the backup does not hold (a typo): nothing to restore, not an empty success.
    for args, why in (
        (["-n", "shpo"], f"namespace 'shpo' is not in backup {short} (it holds: {ns})"),
        (["-n", "sh*"], f"-n/--namespace sh*: no namespace of backup {short} matches (it holds: {ns})"),
        # A mapping of a namespace the backup does not hold would quietly restore into the original one.
        (["--namespace-mapping", f"shpo={ns}-copy"],
         f"--namespace-mapping shpo={ns}-copy: namespace 'shpo' is not in backup {short} (it holds: {ns})"),
    ):  # fmt: skip
        for extra in ([], ["--dry-run"]):
            r = dr(capsys, k8s, "restore", "latest", *args, *extra, "-o", "json")
            assert (r.code, r.out, r.err) == (2, "", f"error: {why}\n"), args
    assert get(kube_client, "v1", "namespaces", f"{ns}-copy") is None
    # A name or glob that matches is still fine, also next to one that matches nothing.
    r = dr(capsys, k8s, "restore", "latest", "-n", ns, "-n", "other-*", "--dry-run", "-o", "json")
    assert r.code == 0, r.err
    planned = {i["item"].get("namespace") for i in r.json()["items"] if i["item"]["namespaced"]}
    assert planned == {ns} and r.json()["counts"] == {"unchanged": len(r.json()["items"])}


def test_restore_json_keys_are_camel_case(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, small_app: str
) -> None:
    ns = small_app
    web = get(kube_client, "apps/v1", "deployments", "web", ns)
    assert web is not None
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": web["metadata"]["uid"],
             "controller": True}  # fmt: skip
    owned = configmap("owned", {})
    owned["metadata"]["ownerReferences"] = [owner]
    create(kube_client, "configmaps", owned, ns)
    assert dr(capsys, k8s, "backup", "-n", ns, "--no-data").code == 0
    res = dr(
        capsys, k8s, "restore", "latest", "--namespace-mapping", f"{ns}={ns}-x", "--dry-run", "-o", "json"
    )
    assert res.code == 0, res.err
    doc = res.json()

    def keys(v: Any) -> set[str]:
        if isinstance(v, dict):
            return set(v) | {k for x in v.values() for k in keys(x)}
        if isinstance(v, list):
            return {k for x in v for k in keys(x)}
        return set()

    # counts and stages are keyed by outcome and resource type, not field names.
    fields = keys({k: v for k, v in doc.items() if k not in ("counts", "timings")}) | set(doc["timings"])
    assert {k for k in fields if "_" in k} == set()
    cms = [i for i in doc["items"] if i["item"]["resource"] == "configmaps"]
    assert cms and all(i["sourceNamespace"] == ns for i in cms)
    assert [i["item"]["controllerUid"] for i in cms if i["item"]["owned"]] == [web["metadata"]["uid"]]


def test_a_kubeconfig_that_cannot_be_read_is_one_line_exit_2(
    capsys: Capsys, repo: Path, isolated_home: Path
) -> None:
    broken = isolated_home / "broken.kubeconfig"
    broken.write_text("clusters: [\n")
    for args in (["backup", "-n", "shop", "--no-data"], ["drill", "gc"], ["backup", "-o", "json"]):
        res = run_dr(capsys, "--kubeconfig", str(broken), *args)
        assert (res.code, res.out) == (2, ""), res.err
        assert res.err == (
            f"error: kubeconfig {broken}: not valid YAML "
            "(line 2, column 1: expected the node content, but found '<stream end>')\n"
        )
    # dr status only warns about what it cannot check.
    res = run_dr(capsys, "--kubeconfig", str(broken), "status", "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["warnings"] == [
        f"namespaces without a backup policy: not checked (kubeconfig {broken}: not valid YAML "
        "(line 2, column 1: expected the node content, but found '<stream end>'))"
    ]


def test_kubeconfig_option_is_one_path_with_a_colon_in_it(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, small_app: str, tmp_path: Path
) -> None:
    # --kubeconfig was split on ':' like $KUBECONFIG; kubectl takes it as exactly one path.
    folder = tmp_path / "cluster:prod"
    folder.mkdir()
    config = folder / "admin:kube.config"
    config.write_text(Path(k8s.kubeconfig).read_text())
    res = run_dr(capsys, "--kubeconfig", str(config), "backup", "-n", small_app, "--no-data", "-o", "json")
    assert res.code == 0, res.err
    assert res.json()["namespaces"] == [small_app]


def test_an_unreachable_cluster_is_one_error_line_without_the_http_library_retries(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, small_app: str, tmp_path: Path
) -> None:
    assert dr(capsys, k8s, "backup", "-n", small_app, "--no-data").code == 0
    unreachable, port = unreachable_kubeconfig(k8s.kubeconfig, tmp_path)
    # urllib3 logged a "Retrying (Retry(total=...)) after connection broken by ..." warning for each of
    # its retries of each of dr's attempts: ten lines before the error. dr retries and says the outcome.
    res = run_dr(capsys, "--kubeconfig", str(unreachable), "restore", "latest", "--dry-run")
    assert (res.code, res.out) == (1, "")
    assert len(res.err.splitlines()) == 1, res.err
    assert (
        res.err.startswith("error: ")
        and f"cannot reach the Kubernetes API at https://127.0.0.1:{port}: " in res.err
    )
    res = run_dr(capsys, "-v", "--kubeconfig", str(unreachable), "restore", "latest", "--dry-run")
    assert "Retrying" in res.err  # -v still shows them


def test_dry_run_into_a_new_namespace_plans_and_changes_nothing(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, small_app: str
) -> None:
    ns, kc = small_app, kube_client
    assert dr(capsys, k8s, "backup", "-n", ns, "--no-data").code == 0
    target = f"{ns}-dry"
    events_before = len(kc.get(f"/api/v1/namespaces/{ns}/events")["items"])
    mapping = ("--namespace-mapping", f"{ns}={target}", "--dry-run")
    res = dr(capsys, k8s, "restore", "latest", *mapping, "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["dryRun"] is True and doc["namespacesCreated"] == []
    assert {i["outcome"] for i in doc["items"]} == {"would-create"}
    res = dr(capsys, k8s, "restore", "latest", *mapping)
    assert res.code == 0, res.err
    rows = [line.split() for line in res.out.splitlines()]
    assert ["configmaps", f"{target}/settings", "would-create"] in [r[:3] for r in rows]
    assert res.out.splitlines()[-1].startswith("plan for backup ")
    # Nothing was created: not the namespace, not an Event about the restore.
    assert get(kc, "v1", "namespaces", target) is None
    assert len(kc.get(f"/api/v1/namespaces/{ns}/events")["items"]) == events_before


def test_quiet_prints_only_errors_and_the_requested_data(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, small_app: str, unique: str
) -> None:
    # --help: "Only errors and requested data". Warnings still came: the backup's own
    # ("warning: exclude resource ... matches no resource type") and logged ones (JSON lines off
    # a terminal).
    ns = small_app
    args = ("backup", "-n", ns, "--exclude-resources", f"nosuch{unique}", "--no-data")
    loud = dr(capsys, k8s, *args)
    assert loud.code == 0, loud.err
    assert f"warning: exclude resource 'nosuch{unique}' matches no resource type" in loud.err
    quiet = dr(capsys, k8s, "--quiet", *args)
    assert quiet.code == 0 and quiet.err == ""
    assert quiet.out.startswith("backup ")  # the data asked for
    res = dr(capsys, k8s, "--quiet", "restore", "nosuchid")
    assert (res.code, res.err[: res.err.index(" in file://")]) == (2, "error: no backup with id 'nosuchid'")


def test_restore_json_names_the_backup_by_the_id_dr_takes(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, small_app: str
) -> None:
    # The table says "plan for backup 1a2b3c4d"; the JSON had only backupId, the backup's label
    # (20261129174259-manual), which no command takes: a script could not tell which backup `latest` was.
    taken = dr(capsys, k8s, "backup", "-n", small_app, "--no-data", "-o", "json")
    assert taken.code == 0, taken.err
    res = dr(capsys, k8s, "restore", "latest", "--dry-run", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["snapshotId"] == taken.json()["id"]
    assert doc["backupId"] == f"{doc['backupId'][:14]}-manual"  # the label stays as it was
    table = dr(capsys, k8s, "restore", doc["snapshotId"], "--dry-run")
    assert table.code == 0 and f"plan for backup {doc['snapshotId'][:8]} " in table.out


def test_storage_class_mapping_that_no_claim_uses_is_exit_2(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, small_app: str
) -> None:
    # A mistyped class (restoring into a cluster whose classes have other names) was not applied and
    # not reported: the claims came back with the old class, Pending for ever, and the restore "Completed".
    ns = small_app
    create(kube_client, "persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}, ns)  # fmt: skip
    assert dr(capsys, k8s, "backup", "-n", ns, "--no-data").code == 0
    target = f"{ns}-sc"
    mapping = ("--namespace-mapping", f"{ns}={target}")
    res = dr(
        capsys, k8s, "restore", "latest", *mapping, "--storage-class-mapping", "standrad=fast", "-o", "json"
    )
    assert (res.code, res.out) == (2, ""), res.err
    # Only the error: no warning that the RestoreFailed event found no namespace (there is none yet).
    assert res.err.splitlines() == [
        "error: --storage-class-mapping standrad=fast: no claim, volume or StatefulSet of the restore "
        "uses storage class 'standrad' (they use: standard)"
    ]
    assert get(kube_client, "v1", "namespaces", target) is None
    res = dr(capsys, k8s, "restore", "latest", *mapping, "--storage-class-mapping", "standard=fast", "--dry-run",
             "-o", "json")  # fmt: skip
    assert res.code == 0, res.err
    assert res.json()["dryRun"] is True
    assert by_key(res.json())[("persistentvolumeclaims", "data")]["outcome"] == "would-create"
    assert get(kube_client, "v1", "namespaces", target) is None
    # And restored: the claim comes back with the class it was mapped to.
    res = dr(
        capsys, k8s, "restore", "latest", *mapping, "--storage-class-mapping", "standard=fast", "-o", "json"
    )
    try:
        assert (res.code, res.json()["phase"]) == (0, "Completed"), res.err
        claim = get(kube_client, "v1", "persistentvolumeclaims", "data", target)
        assert claim is not None and claim["spec"]["storageClassName"] == "fast"
    finally:
        kube_client.request("DELETE", f"/api/v1/namespaces/{target}")


def test_restore_latest_of_a_namespace_takes_the_newest_backup_that_holds_it(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, isolated_home: Path, unique: str
) -> None:
    # The incident deleted billing; the policy's next backup warned and backed up shop
    # alone. The on-call page's `dr restore latest --policy P -n billing` then took that
    # newest backup and refused (billing not in it): it must take the last that holds billing.
    from tests.cli_support import shop_and_billing_nightly

    with shop_and_billing_nightly(kube_client, isolated_home, unique) as (shop, billing, config):

        def dr(*args: str) -> Result:
            return run_dr(capsys, "--config", str(config), "--kubeconfig", k8s.kubeconfig, *args)

        assert dr("repo", "init").code == 0
        first = dr("backup", "--policy", "nightly", "--no-data", "-o", "json")
        assert first.code == 0, first.err
        kube_client.request("DELETE", f"/api/v1/namespaces/{billing}")
        wait_until(lambda: kube_client.request("GET", f"/api/v1/namespaces/{billing}")[0] == 404, what="gone")
        second = dr("backup", "--policy", "nightly", "--no-data", "-o", "json")
        assert second.code == 0 and second.json()["namespaces"] == [shop], second.err

        r = dr("restore", "latest", "--policy", "nightly", "-n", billing, "--dry-run", "-o", "json")
        assert r.code == 0, r.err
        assert r.json()["snapshotId"] == first.json()["id"]
        assert f"does not hold {billing}; restoring {first.json()['id'][:8]}" in r.err
        # shop is in both: the newest.
        r = dr("restore", "latest", "--policy", "nightly", "-n", shop, "--dry-run", "-o", "json")
        assert r.code == 0 and r.json()["snapshotId"] == second.json()["id"], r.err


def test_restore_latest_of_a_policy_passes_over_an_unreadable_snapshot_out_loud(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A damaged snapshot must not hide the policy's good backups from a restore; it is
    # named in a warning, as `latest` may then be an older backup than the newest.
    from dr.cli.restore_cmd import _backup
    from dr.repo.snapshots import Snapshot
    from dr.storage.file import FileStore
    from tests.repo_helpers import init_repo

    store = FileStore(tmp_path / "repo")
    repo, _ = init_repo(store, tmp_path)
    good, bad = "a" * 64, "b" * 64
    for name in (good, bad):
        snap = Snapshot(kind="backup", name="app", policy="p", phase="Completed").with_id(name)
        repo.save_object("snapshots", snap.to_doc(), name=name)
    path = tmp_path / "repo" / "snapshots" / bad
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0xFF
    path.write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        assert _backup(repo, "latest", "p").id == good
    warned = [r.getMessage() for r in caplog.records if "passed over" in r.getMessage()]
    assert len(warned) == 1 and f"snapshots/{bad}" in warned[0], warned


def test_backup_naming_one_missing_namespace_next_to_existing_ones_is_exit_2_and_writes_no_backup(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, small_app: str, unique: str
) -> None:
    # `-n shop -n typo` used to back up shop alone, exit 0 with a warning: the backup the user
    # asked for (typo meaning another namespace) silently lacked a namespace.
    typo = f"typo-{unique}"
    res = dr(capsys, k8s, "backup", "-n", small_app, "-n", typo, "--no-data", "-o", "json")
    assert (res.code, res.out) == (2, ""), res.err
    assert res.err.splitlines()[-1] == f"error: namespace {typo!r} does not exist: nothing backed up"
    assert not list(repo.glob("snapshots/*"))


def test_policy_backup_with_a_namespace_gone_warns_and_backs_up_the_rest(
    capsys: Capsys, k8s: servers.TestCluster, isolated_home: Path, small_app: str, unique: str
) -> None:
    # A scheduled policy backup must not stop because one of its namespaces was deleted (the
    # incident it is there for); a namespace given with -n next to --policy is the user's word.
    gone = f"gone-{unique}"
    policy = {"name": "p", "repository": "other", "schedule": "0 2 * * *",
              "scope": {"namespaces": [small_app, gone], "includeResources": ["configmaps"]}}  # fmt: skip
    config = two_repository_config(isolated_home, capsys, backup_policies=[policy])
    r = dr(capsys, k8s, "--config", str(config), "backup", "--policy", "p", "--no-data", "-o", "json")
    assert r.code == 0, r.err
    doc = r.json()
    assert (doc["namespaces"], doc["phase"]) == ([small_app], "Completed")
    assert doc["warnings"] == [f"namespace {gone!r} does not exist"]
    r = dr(capsys, k8s, "--config", str(config), "backup", "--policy", "p", "-n", small_app, "-n", gone,
           "--no-data", "-o", "json")  # fmt: skip
    assert (r.code, r.err.splitlines()[-1]) == (
        2,
        f"error: namespace {gone!r} does not exist: nothing backed up",
    )
    assert len(list((isolated_home / "other" / "snapshots").glob("*"))) == 1


def test_restore_latest_passes_over_a_backup_without_its_volumes_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An ad-hoc `dr backup --no-data` before a change became `latest`: restored, its claims
    # came back empty. latest takes the newest with its volumes' data (warned); with
    # --no-data, or when none has data, the newest; a backup without claims has no data to lack.
    from datetime import UTC, datetime, timedelta

    from dr.cli.restore_cmd import _backup
    from dr.repo.snapshots import Snapshot
    from dr.storage.file import FileStore
    from tests.repo_helpers import init_repo

    repo, _ = init_repo(FileStore(tmp_path / "repo"), tmp_path)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    with_data = {"counts": {"persistentvolumeclaims": 1}, "volumes": [{"namespace": "a", "name": "d"}]}
    no_data = {"counts": {"persistentvolumeclaims": 1}, "volumes": []}
    no_claims = {"counts": {"configmaps": 2}, "volumes": []}

    def save(name: str, hours: int, app: dict[str, Any], policy: str = "p") -> str:
        snap = Snapshot(
            kind="backup", name="app", policy=policy, phase="Completed", time=t0 + timedelta(hours=hours)
        )
        snap.app = app
        repo.save_object("snapshots", snap.with_id(name).to_doc(), name=name)
        return name

    data = save("a" * 64, 0, with_data)
    save("b" * 64, 1, no_data)
    with caplog.at_level("WARNING"):
        assert _backup(repo, "latest", "p").id == data
    assert any("holds no volume data (taken with --no-data)" in r.getMessage() for r in caplog.records)
    assert _backup(repo, "latest", "p", data=False).id == "b" * 64
    only = save("c" * 64, 2, no_data, policy="q")
    assert _backup(repo, "latest", "q").id == only  # none has data: the newest
    claimless = save("d" * 64, 3, no_claims)
    assert _backup(repo, "latest", "p").id == claimless


def test_restore_latest_of_a_namespace_passing_over_a_backup_without_data_warns_only_of_the_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `dr restore latest -n shop` after a `dr backup -n shop --no-data`: the newest backup holds
    # shop but not its volumes' data. Only that is warned; it printed also "the newest backup,
    # … does not hold ; restoring …", naming no namespace.
    from datetime import UTC, datetime, timedelta

    from dr.cli.restore_cmd import _backup
    from dr.repo.snapshots import Snapshot
    from dr.storage.file import FileStore
    from tests.repo_helpers import init_repo

    repo, _ = init_repo(FileStore(tmp_path / "repo"), tmp_path)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    for hours, name, volumes in ((0, "a" * 64, [{"namespace": "shop", "name": "d"}]), (1, "b" * 64, [])):
        snap = Snapshot(kind="backup", name="app", phase="Completed", time=t0 + timedelta(hours=hours),
                        namespaces=["shop"])  # fmt: skip
        snap.app = {"counts": {"persistentvolumeclaims": 1}, "volumes": volumes}
        repo.save_object("snapshots", snap.with_id(name).to_doc(), name=name)
    with caplog.at_level("WARNING"):
        assert _backup(repo, "latest", None, ["shop"]).id == "a" * 64
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "holds no volume data (taken with --no-data)" in warnings[0], warnings


def test_a_backup_says_what_it_left_out_on_purpose(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, unique: str
) -> None:
    # A service-account token Secret is left out (the cluster mints its own): `dr backup -o json`
    # said nothing of it, nor did `dr backups describe` (the snapshot recorded it all along).
    ns = f"skips-{unique}"
    kube_client.call("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": ns}})  # fmt: skip
    try:
        create(
            kube_client,
            "configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
            ns,
        )
        create(kube_client, "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "t", "annotations": {"kubernetes.io/service-account.name": "default"}},
            "type": "kubernetes.io/service-account-token"}, ns)  # fmt: skip
        res = dr(capsys, k8s, "backup", "-n", ns, "--no-data", "-o", "json")
        assert res.code == 0, res.err
        doc = res.json()
        assert doc["skipped"] == {"service-account token secrets": 1} and doc["owned"] == 0
        res = dr(capsys, k8s, "backups", "describe", doc["id"])
        assert "  left out on purpose: service-account token secrets: 1" in res.out.splitlines(), res.out
    finally:
        kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")
