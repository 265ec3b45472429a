"""``dr status`` against a real repository and the test cluster.

A dr.yaml with two backup policies — ``shop`` (RPO 24h) and ``logs`` (RPO
1 ms, so its backup is stale as soon as it exists) — and a drill policy; real
backups and a real drill through the CLI; then status in every output format.
The pure parts (next run, RPO verdicts) have unit tests of their own.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.cli.status_cmd import backup_policy_status, drill_policy_status, next_run
from dr.config import BackupPolicy, DrillPolicy, LineMap, validate
from dr.cron import parse_cron
from dr.drill.model import DrillReport, ReportObjectives
from dr.kube.client import KubeClient
from dr.repo.snapshots import Snapshot
from tests import servers
from tests.cli_support import (
    small_namespace,
    two_repository_config,
    unreachable_kubeconfig,
    write_config,
    write_runbook,
)
from tests.helpers import Result, run_dr

Capsys = pytest.CaptureFixture[str]


# --------------------------------------------------------------------------- pure logic


NOW = datetime(2026, 3, 10, 12, 30, 15, tzinfo=UTC)


def snap(policy: str, age: timedelta, phase: str = "Completed", sid: str = "a") -> Snapshot:
    return Snapshot(
        kind="backup", id=sid * 64, policy=policy, phase=phase, time=NOW - age, namespaces=["shop"]
    )


def policy(rpo: str | None = "24h", schedule: str = "0 2 * * *", tz: str | None = None) -> BackupPolicy:
    doc = {"name": "shop", "schedule": schedule, "rpo": rpo, "timeZone": tz}
    return validate(BackupPolicy, doc, LineMap("policy"))


def test_next_run_follows_the_cron_in_the_policy_time_zone() -> None:
    assert next_run("0 2 * * *", None, NOW) == datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
    berlin = next_run("0 2 * * *", "Europe/Berlin", NOW)
    assert berlin is not None and berlin.isoformat() == "2026-03-11T02:00:00+01:00"
    assert next_run("*/15 * * * *", None, NOW) == datetime(2026, 3, 10, 12, 45, tzinfo=UTC)
    assert next_run("0 0 31 2 *", None, NOW) is None  # never fires


def test_backup_status_ok_stale_none() -> None:
    fresh = [snap("shop", timedelta(hours=3))]
    assert backup_policy_status(policy(), fresh, NOW)["status"] == "ok"
    assert backup_policy_status(policy("2h"), fresh, NOW)["status"] == "STALE"
    assert backup_policy_status(policy(None), fresh, NOW)["status"] == "ok"  # no RPO: nothing to be late for
    assert backup_policy_status(policy(), [], NOW)["status"] == "none"
    assert backup_policy_status(policy(), [snap("other", timedelta(hours=1))], NOW)["status"] == "none"
    assert backup_policy_status(policy(), None, NOW)["status"] == "unknown"


def test_a_backup_dated_in_the_future_is_age_zero_with_a_warning() -> None:
    # Clock skew: the mover's (or this machine's) clock is off. The backup is as fresh as
    # can be; a negative age ("-1.8e+04s") read as nonsense and hid the skew.
    ahead = [snap("shop", -timedelta(hours=5))]
    got = backup_policy_status(policy("1h"), ahead, NOW)
    assert got["ageSeconds"] == 0 and got["status"] == "ok"
    assert got["clockSkewSeconds"] == 5 * 3600
    assert (
        backup_policy_status(policy("1h"), [snap("shop", timedelta(hours=2))], NOW)["clockSkewSeconds"]
        is None
    )


def test_last_backup_and_last_successful_differ_after_a_failure() -> None:
    backups = [
        snap("shop", timedelta(hours=30), sid="a"),
        snap("shop", timedelta(hours=5), sid="b"),
        snap("shop", timedelta(hours=1), "PartiallyFailed", sid="c"),
    ]
    got = backup_policy_status(policy("24h"), backups, NOW)
    assert got["lastBackup"]["id"] == "c" * 64 and got["lastBackup"]["phase"] == "PartiallyFailed"
    assert got["lastSuccessful"]["id"] == "b" * 64
    assert got["ageSeconds"] == 5 * 3600 and got["status"] == "ok"
    assert got["rpoSeconds"] == 86400 and got["nextRun"] == "2026-03-11T02:00:00+00:00"
    only_failed = backup_policy_status(policy(), backups[2:], NOW)
    assert only_failed["status"] == "none" and only_failed["lastSuccessful"] is None


def test_a_last_backup_with_warnings_says_so_and_stays_ok() -> None:
    # Completed with warnings is a backup (its age counts against the RPO), but not a plain
    # success: the count and the first warning are in the status, as Velero's status.warnings.
    warned = snap("shop", timedelta(hours=1), sid="b")
    warned.app = {"warnings": ["label selector 'app=x' matched no object in namespace shop: …", "other"]}
    got = backup_policy_status(policy(), [snap("shop", timedelta(hours=5)), warned], NOW)
    assert got["status"] == "ok" and got["lastSuccessful"]["id"] == "b" * 64
    assert got["lastBackup"]["warnings"] == 2
    assert (
        got["lastBackup"]["firstWarning"] == "label selector 'app=x' matched no object in namespace shop: …"
    )
    clean = backup_policy_status(policy(), [snap("shop", timedelta(hours=5))], NOW)["lastBackup"]
    assert (clean["warnings"], clean["firstWarning"]) == (0, None)


def test_the_first_warning_in_the_status_is_masked_as_in_the_event() -> None:
    # A hook's stderr in a warning, kept unmasked by a dr from before hooks masked it (or by a
    # pattern added since): the BackupCompletedWithWarnings event masked it, dr status printed
    # it, table and JSON, into a terminal or a CronJob's log.
    warned = snap("shop", timedelta(hours=1), sid="b")
    warned.app = {"warnings": ["pre hook in db/db-0: exit code 1: PGPASSWORD=hunter2 psql: fatal"]}
    got = backup_policy_status(policy(), [warned], NOW)["lastBackup"]
    assert got["firstWarning"] == "pre hook in db/db-0: exit code 1: PGPASSWORD=[REDACTED] psql: fatal"


def test_drill_status_picks_the_latest_report_of_the_app() -> None:
    doc = {"name": "shop-monthly", "runbook": "shop.yaml", "schedule": "0 4 1 * *"}
    pol = validate(DrillPolicy, doc, LineMap("policy"))

    def report(app: str, days: int, outcome: str) -> DrillReport:
        started = NOW - timedelta(days=days)
        return DrillReport(id=f"{app}-{days}", app=app, runbook="shop.yaml", started=started,
                           finished=started + timedelta(minutes=5), outcome=outcome,  # type: ignore[arg-type]
                           objectives=ReportObjectives(rpo=timedelta(hours=24), rto=timedelta(hours=1)))  # fmt: skip

    reports = [report("shop", 40, "passed"), report("shop", 9, "failed"), report("other", 1, "passed")]
    got = drill_policy_status(pol, "shop", reports, NOW)
    assert got["outcome"] == "failed" and got["lastDrill"]["id"] == "shop-9"
    assert got["ageSeconds"] == (timedelta(days=9) - timedelta(minutes=5)).total_seconds()
    assert got["nextRun"] == "2026-04-01T04:00:00+00:00"
    future = drill_policy_status(pol, "shop", [report("shop", -1, "passed")], NOW)
    assert future["ageSeconds"] == 0  # clock skew: not a negative age
    assert drill_policy_status(pol, "shop", [], NOW)["outcome"] == "none"
    assert drill_policy_status(pol, "shop", None, NOW)["outcome"] == "unknown"


# --------------------------------------------------------------------------- through the CLI, with a cluster


@pytest.fixture
def namespaces(kube_client: KubeClient, unique: str) -> Iterator[dict[str, str]]:
    names = {"shop": f"shop-{unique}", "logs": f"logs-{unique}", "stray": f"stray-{unique}",
             "optout": f"optout-{unique}"}  # fmt: skip
    small_namespace(kube_client, names["shop"])
    small_namespace(kube_client, names["logs"])
    small_namespace(kube_client, names["stray"])
    small_namespace(kube_client, names["optout"], {"dr.dev/backup-policy": "none"})
    yield names
    for ns in names.values():
        kube_client.request("DELETE", f"/api/v1/namespaces/{ns}")


@pytest.fixture
def setup(isolated_home: Path, namespaces: dict[str, str], unique: str) -> dict[str, Any]:
    app = f"shop-{unique}"
    write_runbook(isolated_home / "shop.yaml", app, namespaces["shop"], backup_policy="shop")
    config = write_config(
        isolated_home,
        backup_policies=[
            {"name": "shop", "schedule": "0 2 * * *", "rpo": "24h", "scope": {"namespaces": [namespaces["shop"]]}},
            {"name": "logs", "schedule": "@hourly", "timeZone": "Europe/Berlin", "rpo": "1ms",
             "scope": {"namespaces": [namespaces["logs"]]}},
            {"name": "never-ran", "schedule": "0 3 * * 0", "scope": {"namespaces": ["unused-*"]}},
        ],
        drill_policies=[{"name": "shop-monthly", "runbook": "shop.yaml", "schedule": "0 4 1 * *",
                         "backupPolicy": "shop"}],
    )  # fmt: skip
    return {"config": str(config), "app": app, "home": isolated_home}


def dr(
    capsys: Capsys, k8s: servers.TestCluster, setup: dict[str, Any], *args: str, kubeconfig: str = ""
) -> Result:
    return run_dr(capsys, "--config", setup["config"], "--kubeconfig", kubeconfig or k8s.kubeconfig, *args)


def test_status_of_two_policies_one_stale_a_drill_and_unprotected_namespaces(
    capsys: Capsys, k8s: servers.TestCluster, setup: dict[str, Any], namespaces: dict[str, str]
) -> None:
    assert dr(capsys, k8s, setup, "repo", "init").code == 0
    shop = dr(capsys, k8s, setup, "backup", "--policy", "shop", "--no-data", "-o", "json")
    assert shop.code == 0, shop.err
    logs = dr(capsys, k8s, setup, "backup", "--policy", "logs", "--no-data", "-o", "json")
    assert logs.code == 0, logs.err
    drill = dr(capsys, k8s, setup, "drill", "run", str(setup["home"] / "shop.yaml"), "--no-data",
               "--policy", "shop-monthly")  # fmt: skip
    assert drill.code == 0, drill.out + drill.err
    # A later run of "shop" as an identity that may read nothing: failed (nothing captured).
    failed = dr(capsys, k8s, setup, "backup", "--policy", "shop", "--no-data", "-o", "json",
                kubeconfig=k8s.kubeconfig_for("bob"))  # fmt: skip
    assert failed.code == 1

    before = datetime.now(UTC)
    res = dr(capsys, k8s, setup, "status", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["warnings"] == []
    by_name = {p["name"]: p for p in doc["backupPolicies"]}
    assert list(by_name) == ["shop", "logs", "never-ran"]

    s = by_name["shop"]
    assert s["status"] == "ok" and s["rpoSeconds"] == 86400
    assert s["lastSuccessful"]["id"] == shop.json()["id"]
    assert s["lastBackup"]["id"] == failed.json()["id"] and s["lastBackup"]["phase"] == "Failed"
    assert 0 <= s["ageSeconds"] < 600
    nxt = datetime.fromisoformat(s["nextRun"])
    assert nxt == parse_cron("0 2 * * *").next_after(before) and (nxt.hour, nxt.minute) == (2, 0)

    lg = by_name["logs"]
    assert lg["status"] == "STALE" and lg["lastSuccessful"]["id"] == logs.json()["id"]
    assert lg["ageSeconds"] > lg["rpoSeconds"] == 0.001
    berlin = datetime.fromisoformat(lg["nextRun"])
    assert berlin.minute == 0 and berlin.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert timedelta(0) < berlin - before <= timedelta(hours=1)

    never = by_name["never-ran"]
    assert never["status"] == "none" and never["lastBackup"] is None and never["ageSeconds"] is None

    (d,) = doc["drillPolicies"]
    assert (d["name"], d["app"], d["outcome"]) == ("shop-monthly", setup["app"], "passed")
    assert d["lastDrill"]["backupId"] == shop.json()["id"] and d["ageSeconds"] >= 0
    assert d["nextRun"] == parse_cron("0 4 1 * *").next_after(before).isoformat()

    unprotected = doc["namespacesWithoutBackupPolicy"]
    assert namespaces["stray"] in unprotected
    for covered in ("shop", "logs", "optout"):  # in a scope, or labelled dr.dev/backup-policy
        assert namespaces[covered] not in unprotected
    assert not any(n.startswith("kube-") or n.startswith("drill-") for n in unprotected)

    # The same for people: one table per kind of policy, the verdicts in words.
    res = dr(capsys, k8s, setup, "status")
    assert res.code == 0 and res.err == ""
    lines = res.out.splitlines()
    shop_row = next(line for line in lines if line.split()[:1] == ["shop"])
    assert "ok" in shop_row.split() and "Failed" in shop_row.split() and "24h" in shop_row
    # The failed backup's warnings (bob may not list services either) are not the news: it failed.
    assert "warning(s)" not in shop_row and s["lastBackup"]["warnings"] > 0
    logs_row = next(line for line in lines if line.split()[:1] == ["logs"])
    assert "STALE" in logs_row.split()
    assert "none" in next(line for line in lines if line.split()[:1] == ["never-ran"]).split()
    drill_row = next(line for line in lines if line.split()[:1] == ["shop-monthly"])
    assert setup["app"] in drill_row and "passed" in drill_row
    assert any(line.startswith("namespaces without a backup policy:") and namespaces["stray"] in line
               for line in lines)  # fmt: skip

    res = dr(capsys, k8s, setup, "status", "-o", "yaml")
    assert res.code == 0
    assert yaml.safe_load(res.out)["backupPolicies"][1]["status"] == "STALE"


def test_a_policy_whose_last_backup_has_warnings_says_so_and_exits_0(
    capsys: Capsys, k8s: servers.TestCluster, setup: dict[str, Any], namespaces: dict[str, str]
) -> None:
    # It showed "Completed" and "ok" like any fresh success, though nothing of the app was backed up.
    assert dr(capsys, k8s, setup, "repo", "init").code == 0
    res = dr(capsys, k8s, setup, "backup", "--policy", "shop", "--no-data", "--selector", "app=nothing-matches",
             "-o", "json")  # fmt: skip
    assert res.code == 0, res.err
    backup = res.json()
    (warning,) = backup["warnings"]

    res = dr(capsys, k8s, setup, "status", "-o", "json")
    assert res.code == 0, res.err
    shop = next(p for p in res.json()["backupPolicies"] if p["name"] == "shop")
    assert shop["status"] == "ok" and shop["lastBackup"]["id"] == backup["id"]
    assert (shop["lastBackup"]["warnings"], shop["lastBackup"]["firstWarning"]) == (1, warning)

    res = dr(capsys, k8s, setup, "status")
    assert res.code == 0 and res.err == ""
    lines = res.out.splitlines()
    shop_row = next(line for line in lines if line.split()[:1] == ["shop"])
    assert "Completed, 1 warning(s)" in shop_row and "ok" in shop_row.split()
    assert (
        f"backup policy shop: last backup {backup['shortId']} has 1 warning(s) "
        f"(dr backups describe {backup['shortId']} lists them): {warning}"
    ) in lines
    assert not any(line.startswith("backup policy logs:") for line in lines)


def test_unreachable_cluster_and_missing_repository_are_warnings_exit_0(
    capsys: Capsys, k8s: servers.TestCluster, setup: dict[str, Any], tmp_path: Path
) -> None:
    unreachable, port = unreachable_kubeconfig(k8s.kubeconfig, tmp_path)

    # No `repo init`: the repository does not exist yet.
    res = dr(capsys, k8s, setup, "status", "-o", "json", kubeconfig=str(unreachable))
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["namespacesWithoutBackupPolicy"] is None
    assert [p["status"] for p in doc["backupPolicies"]] == ["unknown"] * 3
    assert doc["drillPolicies"][0]["outcome"] == "unknown"
    warnings = doc["warnings"]
    assert any(w.startswith(f"cannot read repository file://{setup['home'] / 'repo'}: ") for w in warnings)
    # Which server, and why (it was "cluster unreachable: MaxRetryError").
    assert (
        "namespaces without a backup policy: not checked (cannot reach the Kubernetes API at "
        f"https://127.0.0.1:{port}: [Errno 111] Connection refused)"
    ) in warnings

    res = dr(capsys, k8s, setup, "status", kubeconfig=str(unreachable))
    assert res.code == 0
    assert "namespaces without a backup policy: not checked" in res.out
    assert "warning: cannot read repository" in res.err


def test_no_config_no_kubeconfig(capsys: Capsys, isolated_home: Path) -> None:
    res = run_dr(capsys, "status", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["config"] == "built-in defaults" and doc["backupPolicies"] == [] and doc["drillPolicies"] == []
    assert doc["namespacesWithoutBackupPolicy"] is None
    assert doc["warnings"] == ["namespaces without a backup policy: not checked (no Kubernetes configuration: pass "
                               "--kubeconfig, set $KUBECONFIG or create ~/.kube/config (or run inside a cluster))"]  # fmt: skip
    res = run_dr(capsys, "status")
    assert res.code == 0 and "no backup policies in built-in defaults" in res.out


def test_table_prints_square_brackets_as_they_are(capsys: Capsys, isolated_home: Path) -> None:
    # The table view went through rich markup: "[prod]" in a path was taken for a style and dropped.
    cfg = isolated_home / "[prod]" / "dr.yaml"
    cfg.parent.mkdir()
    cfg.write_text("apiVersion: dr.dev/v1\nkind: Config\n")
    res = run_dr(capsys, "--config", str(cfg), "status")
    assert res.code == 0, res.err
    assert f"no backup policies in {cfg}" in res.out


def test_table_cells_are_not_markup() -> None:
    # E.g. a dry run's WHY column with an admission policy's denial, which names the policy in brackets.
    from dr.cli.output import Column, emit

    rows = [{"object": "configmaps shop/settings", "why": "denied: [must-have-owner] owner label [/] needed"}]
    with stdout_of() as out:
        emit(rows, "table", columns=[Column("OBJECT", "object"), Column("WHY", "why")])
    assert "denied: [must-have-owner] owner label [/] needed" in out.getvalue()
    with stdout_of() as out:
        emit({"config": "/etc/[prod]/dr.yaml"}, "table")
    assert "/etc/[prod]/dr.yaml" in out.getvalue()


def test_lines_of_text_are_not_wrapped_off_a_terminal() -> None:
    # A long list of unprotected namespaces, or a long config path, came out over several
    # lines cut at 250 columns: `dr status | grep 'namespaces without'` got the first third.
    from dr.cli.output import emit
    from dr.cli.status_cmd import _render

    names = [f"application-namespace-{i:03d}-with-a-long-name" for i in range(30)]
    config = "/etc/" + "d" * 300 + "/dr.yaml"
    doc = {"config": config, "backupPolicies": [], "drillPolicies": [],
           "namespacesWithoutBackupPolicy": names, "warnings": []}  # fmt: skip
    with stdout_of() as out:
        emit(doc, "table", render=_render(doc))
    assert out.getvalue().splitlines() == [
        f"no backup policies in {config}",
        f"namespaces without a backup policy: {', '.join(names)}",
    ]


@contextmanager
def stdout_of() -> Iterator[io.StringIO]:
    """What ``emit`` writes to sys.stdout (rich's console looks up sys.stdout when it prints)."""
    out = io.StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        yield out
    finally:
        sys.stdout = saved


def test_invalid_config_is_still_exit_2(capsys: Capsys, isolated_home: Path) -> None:
    bad = isolated_home / "dr.yaml"
    bad.write_text("apiVersion: dr.dev/v1\nkind: Config\nbackupPolicies:\n  - name: x\n    schedule: nope\n")
    res = run_dr(capsys, "--config", str(bad), "status")
    assert res.code == 2
    assert "backupPolicies[0].schedule: invalid cron expression 'nope'" in res.err


def test_help_says_status_always_exits_0(capsys: Capsys) -> None:
    res = run_dr(capsys, "status", "--help")
    assert res.code == 0
    assert "Always exits 0 once the configuration is valid" in res.out
    assert "STALE" in res.out


# --------------------------------------------------------------------------- a damaged repository


def _open(home: Path) -> Any:
    from dr.crypto.providers.local import LocalKeyProvider
    from dr.repo.repository import Repository
    from dr.storage.registry import open_store

    key = LocalKeyProvider(home / "repo.key")
    return Repository.open(open_store(f"file://{home}/repo"), lambda uri: key if uri == key.uri else None)


def _shop_repo(capsys: Capsys, home: Path, *, drills: bool = True) -> str:
    """A config with backup policy ``shop`` (and drill policy ``monthly`` of it) and its initialised repository."""
    monthly = {"name": "monthly", "runbook": "shop.yaml", "schedule": "0 4 1 * *", "backupPolicy": "shop"}
    config = str(write_config(
        home,
        backup_policies=[{"name": "shop", "schedule": "0 2 * * *", "rpo": "24h", "scope": {"namespaces": ["shop"]}}],
        drill_policies=[monthly] if drills else [],
    ))  # fmt: skip
    assert run_dr(capsys, "--config", config, "repo", "init").code == 0
    return config


def test_a_damaged_drill_report_is_a_warning_and_the_others_still_count(
    capsys: Capsys, isolated_home: Path
) -> None:
    config = _shop_repo(capsys, isolated_home)
    started = datetime.now(UTC) - timedelta(days=2)
    good = DrillReport(id="r1", app="monthly", runbook="shop.yaml", started=started,
                       finished=started + timedelta(minutes=5), outcome="passed",
                       objectives=ReportObjectives(rpo=timedelta(hours=24), rto=timedelta(hours=1)))  # fmt: skip
    _open(isolated_home).save_object("reports", good.model_dump(mode="json", by_alias=True))
    (isolated_home / "repo" / "reports" / ("ab" * 32)).write_bytes(b"\x00a truncated upload")

    res = run_dr(capsys, "--config", config, "--kubeconfig", "/nonexistent", "status", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert (
        doc["drillPolicies"][0]["outcome"] == "passed" and doc["drillPolicies"][0]["lastDrill"]["id"] == "r1"
    )
    (warning,) = [w for w in doc["warnings"] if "drill report" in w]
    assert warning.startswith(f"drill report {'ab' * 8} cannot be read: reports/{'ab' * 32}")
    res = run_dr(capsys, "--config", config, "--kubeconfig", "/nonexistent", "status")
    assert res.code == 0 and f"warning: drill report {'ab' * 8} cannot be read" in res.err


def test_a_readable_object_that_is_not_a_drill_report_is_a_warning(
    capsys: Capsys, isolated_home: Path
) -> None:
    # Decrypts and parses, but fails the model (a report of a newer format, a bug): named, not fatal.
    config = _shop_repo(capsys, isolated_home)
    name = _open(isolated_home).save_object("reports", {"id": "r9", "outcome": "exploded"})

    res = run_dr(capsys, "--config", config, "--kubeconfig", "/nonexistent", "status", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["drillPolicies"][0]["outcome"] == "none" and doc["drillPolicies"][0]["lastDrill"] is None
    (warning,) = [w for w in doc["warnings"] if "drill report" in w]
    assert warning.startswith(f"drill report {name[:16]} cannot be read: not a drill report (")


def test_a_repository_whose_listing_fails_is_a_warning_and_unknown(
    capsys: Capsys, isolated_home: Path
) -> None:
    config = _shop_repo(capsys, isolated_home)
    for kind in (
        "snapshots",
        "reports",
    ):  # a symlink loop: listing fails with ELOOP (root reads anything else)
        path = isolated_home / "repo" / kind
        if path.is_dir():
            path.rmdir()
        path.symlink_to(path)
    res = run_dr(capsys, "--config", config, "--kubeconfig", "/nonexistent", "status", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["backupPolicies"][0]["status"] == "unknown" and doc["drillPolicies"][0]["outcome"] == "unknown"
    where = f"file://{isolated_home}/repo"
    assert [w.split(": ")[0] for w in doc["warnings"] if w.startswith("cannot list")] == [
        f"cannot list the backups of repository {where}",
        f"cannot list the drill reports of repository {where}",
    ]


def test_unreadable_snapshots_are_a_warning(capsys: Capsys, isolated_home: Path) -> None:
    config = _shop_repo(capsys, isolated_home, drills=False)
    snapshots = isolated_home / "repo" / "snapshots"
    snapshots.mkdir(exist_ok=True)
    (snapshots / ("cd" * 32)).write_bytes(b"\x00a truncated upload")  # perhaps shop's latest backup

    res = run_dr(capsys, "--config", config, "--kubeconfig", "/nonexistent", "status", "-o", "json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["backupPolicies"][0]["status"] == "none"
    assert (f"1 snapshot(s) of repository file://{isolated_home}/repo cannot be read and are left out "
            "(dr repo check names them)") in doc["warnings"]  # fmt: skip


@pytest.mark.parametrize("linked_by", ["drill policy", "runbook"])
def test_a_drill_policys_reports_are_read_where_its_drills_write_them(
    capsys: Capsys, isolated_home: Path, linked_by: str
) -> None:
    # Drill policy `monthly` names no repository; its backup policy (named by the policy,
    # else by its runbook) backs up into `other`, so its drills read backups there and write
    # their reports there: status reads them there too (it read the default repository and
    # said the drill never ran).
    home = isolated_home
    policy = {"name": "monthly", "runbook": "shop.yaml", "schedule": "0 4 1 * *"}
    app = "monthly"  # the runbook cannot be read: the policy's name
    if linked_by == "drill policy":
        policy["backupPolicy"] = "shop"
    else:
        write_runbook(home / "shop.yaml", "shop", "shop", backup_policy="shop")
        app = "shop"
    config = two_repository_config(
        home,
        capsys,
        backup_policies=[
            {
                "name": "shop",
                "repository": "other",
                "schedule": "0 2 * * *",
                "scope": {"namespaces": ["shop"]},
            }
        ],
        drill_policies=[policy],
        main="repo",
    )
    from dr.crypto.providers.local import LocalKeyProvider
    from dr.repo.repository import Repository
    from dr.storage.registry import open_store

    key = LocalKeyProvider(home / "repo.key")
    other = Repository.open(open_store(f"file://{home}/other"), lambda uri: key if uri == key.uri else None)
    started = datetime.now(UTC) - timedelta(days=1)
    report = DrillReport(id="r1", app=app, runbook="shop.yaml", started=started,
                         finished=started + timedelta(minutes=5), outcome="passed",
                         objectives=ReportObjectives(rpo=timedelta(hours=24), rto=timedelta(hours=1)))  # fmt: skip
    other.save_object("reports", report.model_dump(mode="json", by_alias=True))

    res = run_dr(capsys, "--config", str(config), "--kubeconfig", "/nonexistent", "status", "-o", "json")
    assert res.code == 0, res.err
    (d,) = res.json()["drillPolicies"]
    assert (d["outcome"], d["lastDrill"]["id"]) == ("passed", "r1")


def test_runbook_app_finds_the_runbook_next_to_the_config_and_warns_when_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dr.cli.status_cmd import runbook_app

    config_dir, cwd = tmp_path / "etc", tmp_path / "cwd"
    config_dir.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    write_runbook(config_dir / "shop.yaml", "shop", "shop-ns")
    write_runbook(cwd / "shop.yaml", "other", "other-ns")  # the config's directory goes first
    (cwd / "bad.yaml").write_text("kind: Runbook\n")

    def app_of(runbook: str, where: Path | None = config_dir) -> tuple[str, list[str]]:
        warnings: list[str] = []
        policy = DrillPolicy(name="monthly", runbook=runbook, schedule="0 4 1 * *")
        return runbook_app(policy, where, warnings), warnings

    assert app_of("shop.yaml") == ("shop", [])
    assert app_of("shop.yaml", None) == ("other", [])
    assert app_of(str(config_dir / "shop.yaml"), None) == ("shop", [])
    assert app_of("missing.yaml") == (
        "monthly",
        ["drill policy monthly: runbook missing.yaml not found; using the policy's name"],
    )
    name, warnings = app_of("bad.yaml")
    assert name == "monthly" and len(warnings) == 1
    assert warnings[0].startswith(f"drill policy monthly: runbook {Path('bad.yaml')}: ")
