"""Careless input to the cluster commands (``dr restore``, ``dr backup``) through the real CLI.

Each case is input an on-call engineer types in a hurry: the contract (architecture.md,
"Outside contracts") is one line naming the option and the reason, exit 2, and nothing
changed in the cluster, not a restore that half works and exits 0 or 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dr.kube.client import KubeClient
from tests import servers
from tests.cli_support import write_runbook
from tests.helpers import Result, run_dr
from tests.kube_helpers import configmap, create, get, make_namespace

Capsys = pytest.CaptureFixture[str]


def dr(capsys: Capsys, k8s: servers.TestCluster, *args: str) -> Result:
    return run_dr(capsys, "--kubeconfig", k8s.kubeconfig, *args)


def _backup(capsys: Capsys, k8s: servers.TestCluster, *namespaces: str) -> str:
    """A backup of ``namespaces`` without volume data, which must succeed: its short id."""
    res = dr(
        capsys, k8s, "backup", *(arg for ns in namespaces for arg in ("-n", ns)), "--no-data", "-o", "json"
    )
    assert res.code == 0, res.err
    return str(res.json()["shortId"])


@pytest.fixture
def repo(isolated_home: Path, capsys: Capsys) -> Path:
    """The embedded default repository (file://, local key), initialised through the CLI."""
    res = run_dr(capsys, "repo", "init")
    assert res.code == 0, res.err
    return isolated_home / "data" / "dr" / "repo"


@pytest.fixture
def two_apps(kube_client: KubeClient, unique: str) -> Iterator[tuple[str, str]]:
    """Two namespaces, each with a ConfigMap ``settings`` and a claim of storage class ``standard``."""
    names = (f"ina-{unique}", f"inb-{unique}")
    for ns in names:
        make_namespace(kube_client, ns)
        create(kube_client, "configmaps", configmap("settings", {"owner": ns}), ns)
        create(kube_client, "persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}, ns)  # fmt: skip
    try:
        yield names
    finally:
        for ns in (*names, f"merged-{unique}"):
            kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_mapping_two_namespaces_onto_one_is_exit_2_and_creates_nothing(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, two_apps: tuple[str, str],
    unique: str,
) -> None:  # fmt: skip
    a, b = two_apps
    short = _backup(capsys, k8s, a, b)
    merged = f"merged-{unique}"
    # Both apps' `settings` (and `data`) restore to one name: one of them was dropped with a
    # warning ("the first wins"), the merged namespace created, and the restore exited 0.
    for args, why in (
        (["--namespace-mapping", f"{a}={merged}", "--namespace-mapping", f"{b}={merged}"],
         f"--namespace-mapping: namespaces {a} and {b} of backup {short} would both be restored into {merged}"),
        # Onto a namespace the backup also restores as it is: the same collision.
        (["--namespace-mapping", f"{a}={b}"],
         f"--namespace-mapping: namespaces {a} and {b} of backup {short} would both be restored into {b}"),
    ):  # fmt: skip
        for extra in ([], ["--dry-run"]):
            r = dr(capsys, k8s, "restore", "latest", *args, *extra, "-o", "json")
            assert (r.code, r.out, r.err) == (2, "", f"error: {why}\n"), (args, extra)
    assert get(kube_client, "v1", "namespaces", merged) is None
    assert get(kube_client, "v1", "configmaps", "settings", b)["data"] == {"owner": b}  # type: ignore[index]
    # One of them alone into the other's name (-n leaves the other out) is no collision.
    one = ("-n", a, "--namespace-mapping", f"{a}={b}")
    r = dr(capsys, k8s, "restore", "latest", *one, "--dry-run", "-o", "json")
    assert r.code == 0, r.err
    # Swapping two namespaces maps each onto a distinct one: allowed.
    swap = ("--namespace-mapping", f"{a}={b}", "--namespace-mapping", f"{b}={a}")
    r = dr(capsys, k8s, "restore", "latest", *swap, "--dry-run", "-o", "json")
    assert r.code == 0, r.err


@pytest.mark.parametrize("new", ["Fast_SSD", "fast=ssd", "-fast", "a" * 254])
def test_storage_class_mapping_to_a_name_no_class_can_have_is_exit_2_and_creates_nothing(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, two_apps: tuple[str, str],
    unique: str, new: str,
) -> None:  # fmt: skip
    # The claims were created with that storageClassName (an API server that validates it refuses
    # each one, 422, after the namespace was made): exit 0 here, exit 3 on a real cluster.
    a, _ = two_apps
    _backup(capsys, k8s, a)
    target = f"merged-{unique}"
    for extra in ([], ["--dry-run"]):
        r = dr(capsys, k8s, "restore", "latest", "-n", a, "--namespace-mapping", f"{a}={target}",
               "--storage-class-mapping", f"standard={new}", *extra, "-o", "json")  # fmt: skip
        assert (r.code, r.out) == (2, ""), r.err
        assert r.err == (f"error: --storage-class-mapping standard={new}: {new!r} is not a storage class name "
                         "(lower-case letters, digits, '-' and '.', at most 253)\n")  # fmt: skip
    assert get(kube_client, "v1", "namespaces", target) is None


def test_drill_with_a_storage_class_mapping_to_a_bad_name_is_exit_2_and_runs_nothing(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, isolated_home: Path, two_apps: tuple[str, str],
    unique: str,
) -> None:  # fmt: skip
    # It made the scratch namespace, failed at the restore and wrote an ERROR report: exit 1.
    a, _ = two_apps
    _backup(capsys, k8s, a)
    runbook = write_runbook(isolated_home / "shop.yaml", f"shop{unique}"[:20], a)
    r = dr(capsys, k8s, "drill", "run", str(runbook), "--storage-class-mapping", "standard=Fast_SSD")
    assert (r.code, r.out) == (2, ""), r.err
    assert r.err == ("error: --storage-class-mapping standard=Fast_SSD: 'Fast_SSD' is not a storage class name "
                     "(lower-case letters, digits, '-' and '.', at most 253)\n")  # fmt: skip
    assert not list(repo.glob("reports/*"))


@pytest.mark.parametrize("exclude", ["configmaps", "ConfigMap", "cm,secrets"])
def test_excluding_every_included_type_is_exit_2(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, two_apps: tuple[str, str], exclude: str
) -> None:
    # A backup of such a scope was "Completed" with the Namespace object alone, and the restore a
    # plan of nothing, exit 0: the one type asked for silently dropped. (Excluding some of the
    # included types narrows them: exclusion wins, test_kube_backup.)
    a, _ = two_apps
    both = ("--include-resources", "configmaps", "--exclude-resources", exclude)
    why = "error: --include-resources configmaps: every type it names is excluded by --exclude-resources\n"
    r = dr(capsys, k8s, "backup", "-n", a, "--no-data", *both, "-o", "json")
    assert (r.code, r.out, r.err) == (2, "", why)
    assert not list(repo.glob("snapshots/*"))
    _backup(capsys, k8s, a)
    for extra in ([], ["--dry-run"]):
        r = dr(capsys, k8s, "restore", "latest", *both, *extra, "-o", "json")
        assert (r.code, r.out, r.err) == (2, "", why), extra


def test_a_restore_of_which_every_item_failed_is_failed_exit_1_not_partial(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, two_apps: tuple[str, str],
    unique: str,
) -> None:  # fmt: skip
    # An identity without rights (bob: discovery only): each object a 403. It was "partially
    # failed", exit 3, phase PartiallyFailed, which the contract keeps for "some items failed,
    # all others done": an on-call reading it took something for restored.
    a, _ = two_apps
    _backup(capsys, k8s, a)
    target = f"merged-{unique}"
    args = ("restore", "latest", "-n", a, "--namespace-mapping", f"{a}={target}", "--no-data", "-o", "json")
    res = run_dr(capsys, "--kubeconfig", k8s.kubeconfig_for("bob"), *args)
    assert res.code == 1, res.err
    doc = res.json()
    assert doc["phase"] == "Failed" and set(doc["counts"]) == {"failed"}
    n = doc["counts"]["failed"]
    errors = [line for line in res.err.splitlines() if not line.startswith("{")]  # not the JSON log lines
    assert errors[0] == f"error: restore {doc['restoreId']} failed: all {n} item(s) failed"
    assert len(errors) == 1 + n and all("403 Forbidden" in line for line in errors[1:])
    assert get(kube_client, "v1", "namespaces", target) is None


def test_backups_describe_table_says_which_volumes_hold_no_data_and_shows_the_scope_plainly(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, two_apps: tuple[str, str]
) -> None:
    # A claim left out of the data backup (Pending: no data yet) read "volume ns/data: -, 0 bytes,
    # 0 files, snapshot None", as if backed up empty; the scope was a Python dict's repr.
    a, _ = two_apps
    res = dr(capsys, k8s, "backup", "-n", a, "--selector", "tier!=cache", "-o", "json")
    assert res.code == 0, res.err
    skipped = res.json()["volumes"][0]["skipped"]
    assert skipped
    res = dr(capsys, k8s, "backups", "describe", "latest")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert f"  volume {a}/data: not backed up: {skipped}" in lines
    assert f"  scope: namespaces {a}; selector tier!=cache; cluster resources auto" in lines


@pytest.mark.parametrize("given", ["", " ", ","])
def test_an_empty_namespace_is_exit_2_not_every_namespace(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, two_apps: tuple[str, str], given: str
) -> None:
    # `dr backup -n "$NS"` with NS unset backed up the whole cluster (exit 0), and `dr restore
    # latest -n "$NS"` restored every namespace of the backup.
    a, _ = two_apps
    why = f"error: -n/--namespace {given!r}: no namespace name in it (leave -n out for every namespace)\n"
    r = dr(capsys, k8s, "backup", "-n", given, "--no-data", "-o", "json")
    assert (r.code, r.out, r.err) == (2, "", why)
    assert not list(repo.glob("snapshots/*"))
    _backup(capsys, k8s, a)
    r = dr(capsys, k8s, "restore", "latest", "-n", given, "--dry-run", "-o", "json")
    assert (r.code, r.out, r.err) == (2, "", why)


def test_a_mapping_of_a_namespace_that_n_leaves_out_is_exit_2(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, repo: Path, two_apps: tuple[str, str],
    unique: str,
) -> None:  # fmt: skip
    # -n a with b=x: the mapping was quietly not applied, and a restored in place, exit 0.
    a, b = two_apps
    _backup(capsys, k8s, a, b)
    target = f"merged-{unique}"
    r = dr(capsys, k8s, "restore", "latest", "-n", a, "--namespace-mapping", f"{b}={target}", "-o", "json")
    assert (r.code, r.out) == (2, ""), r.err
    assert r.err == f"error: --namespace-mapping {b}={target}: namespace {b!r} is not restored (-n {a})\n"
    assert get(kube_client, "v1", "namespaces", target) is None


def test_a_restore_selector_that_matches_nothing_is_exit_2(
    capsys: Capsys, k8s: servers.TestCluster, repo: Path, two_apps: tuple[str, str]
) -> None:
    # A typo in -l was a restore of nothing: an empty plan ("plan for backup …: " and no counts), exit 0.
    a, _ = two_apps
    _backup(capsys, k8s, a)
    for extra in ([], ["--dry-run"]):
        r = dr(capsys, k8s, "restore", "latest", "-n", a, "--selector", "app=wbe", *extra, "-o", "json")
        assert (r.code, r.out) == (2, ""), r.err
        assert r.err == "error: --selector 'app=wbe': no object of the restore matches it\n"
    r = dr(capsys, k8s, "restore", "latest", "-n", a, "--selector", "app!=wbe", "--dry-run", "-o", "json")
    assert r.code == 0, r.err
