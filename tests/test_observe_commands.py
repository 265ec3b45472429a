"""Metrics and Events from the real commands: ``dr backup``, ``dr restore``, ``dr drill run``.

Each test runs the CLI with a dr.yaml whose ``metrics`` section points at a
textfile directory and/or a small real HTTP server standing in for the
Pushgateway (it records what it is sent), against the test cluster, then
reads the Prometheus text and the namespace's Events back. Failures to emit
are warnings that leave the command's exit code alone.
"""

from __future__ import annotations

import http.server
import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dr.kube.client import KubeClient
from tests import servers
from tests.cli_support import events, small_namespace, write_config, write_runbook
from tests.helpers import Result, run_dr
from tests.kube_helpers import create

Capsys = pytest.CaptureFixture[str]
RBAC = "rbac.authorization.k8s.io/v1"


def series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@dataclass
class Pushgateway:
    url: str
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)


@pytest.fixture
def pushgateway() -> Iterator[Pushgateway]:
    """A tiny HTTP server on a free loopback port that answers 200 and records each request."""
    gw = Pushgateway("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            gw.requests.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        do_PUT = do_POST = _record

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gw.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gw
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def shop(kube_client: KubeClient, unique: str) -> Iterator[str]:
    ns = small_namespace(kube_client, f"shop-{unique}")
    yield ns
    for n in (ns, f"{ns}-copy"):
        kube_client.request("DELETE", f"/api/v1/namespaces/{n}")


@pytest.fixture
def textfile_dir(isolated_home: Path) -> Path:
    d = isolated_home / "node-exporter"
    d.mkdir()
    return d


def configure(home: Path, shop: str, metrics: dict[str, str], app: str) -> str:
    write_runbook(home / "shop.yaml", app, shop, backup_policy="shop", step_timeout="1s")
    return str(write_config(
        home,
        backup_policies=[{"name": "shop", "schedule": "0 2 * * *", "rpo": "24h", "scope": {"namespaces": [shop]}}],
        drill_policies=[{"name": "shop-monthly", "runbook": "shop.yaml", "schedule": "0 4 1 * *",
                         "backupPolicy": "shop"}],
        metrics=metrics,
    ))  # fmt: skip


def dr(capsys: Capsys, config: str, k8s: servers.TestCluster, *args: str, user: str | None = None) -> Result:
    kubeconfig = k8s.kubeconfig_for(user) if user else k8s.kubeconfig
    return run_dr(capsys, "--config", config, "--kubeconfig", kubeconfig, *args)


def by_reason(kc: KubeClient, ns: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events(kc, ns):
        if (e.get("source") or {}).get("component") == "dr":
            out.setdefault(e["reason"], []).append(e)
    return out


# --------------------------------------------------------------------------- backup and restore


def test_backup_writes_metrics_and_events_and_a_failed_run_keeps_the_last_success(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, isolated_home: Path, textfile_dir: Path,
    shop: str, unique: str,
) -> None:  # fmt: skip
    config = configure(isolated_home, shop, {"textfile": str(textfile_dir / "dr.prom")}, f"shop-{unique}")
    assert dr(capsys, config, k8s, "repo", "init").code == 0
    res = dr(capsys, config, k8s, "backup", "--policy", "shop", "--no-data", "-o", "json")
    assert res.code == 0, res.err
    backup = res.json()

    # One file per job beside the configured path; series labelled by policy and app.
    assert sorted(p.name for p in textfile_dir.iterdir()) == ["dr-backup-shop.prom"]
    got = series((textfile_dir / "dr-backup-shop.prom").read_text())
    key = (("app", "shop"), ("policy", "shop"))
    assert got[("dr_backup_last_run_success", key)] == 1
    assert (
        got[("dr_backup_last_success_timestamp_seconds", key)]
        == got[("dr_backup_last_run_timestamp_seconds", key)]
    )
    assert got[("dr_backup_items", key)] == backup["objects"] == 4  # namespace, 2 ConfigMaps, Secret
    assert got[("dr_backup_failed_items", key)] == 0
    assert got[("dr_backup_bytes", key)] > 0 and got[("dr_backup_duration_seconds", key)] > 0
    last_success = got[("dr_backup_last_success_timestamp_seconds", key)]

    (event,) = by_reason(kube_client, shop)["BackupCompleted"]
    assert event["type"] == "Normal" and event["involvedObject"] == {
        "apiVersion": "v1", "kind": "Namespace", "name": shop, "namespace": shop}  # fmt: skip
    assert event["message"].startswith(
        f"backup {backup['shortId']} (shop) completed: 4 objects, 0 volume(s), "
    )

    # The next run cannot list Secrets (backup-sa may read ConfigMaps and its namespace, write Events, here only).
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
             {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"], "resourceNames": [shop]},
             {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]  # fmt: skip
    create(kube_client, "roles", {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "cm-reader"},
                                  "rules": rules}, shop)  # fmt: skip
    create(kube_client, "rolebindings", {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "cm-reader"},
                                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                     "name": "cm-reader"},
                                         "subjects": [{"kind": "User", "name": "backup-sa",
                                                       "apiGroup": "rbac.authorization.k8s.io"}]}, shop)  # fmt: skip
    res = dr(capsys, config, k8s, "backup", "--policy", "shop", "--no-data", "--include-resources",
             "configmaps,secrets", user="backup-sa")  # fmt: skip
    assert res.code == 3, res.err
    got = series((textfile_dir / "dr-backup-shop.prom").read_text())
    assert got[("dr_backup_last_run_success", key)] == 0
    assert got[("dr_backup_failed_items", key)] == 1
    assert got[("dr_backup_last_success_timestamp_seconds", key)] == last_success  # carried over
    assert got[("dr_backup_last_run_timestamp_seconds", key)] > last_success
    (partial,) = by_reason(kube_client, shop)["BackupPartiallyFailed"]
    assert partial["type"] == "Warning"
    # Which item, not the server's words.
    assert f"1 item(s) failed (secrets {shop})" in partial["message"] and "403" not in partial["message"]

    # A run that fails outright (bad input inside the backup) is recorded too, and still exits 2.
    res = dr(
        capsys, config, k8s, "backup", "--policy", "shop", "--no-data", "--include-resources", "nosuchtype"
    )
    assert res.code == 2
    (failed,) = by_reason(kube_client, shop)["BackupFailed"]
    assert failed["type"] == "Warning"
    assert (
        failed["message"]
        == "backup shop failed: --include-resources nosuchtype: no such resource type in this cluster"
    )
    got = series((textfile_dir / "dr-backup-shop.prom").read_text())
    assert got[("dr_backup_last_run_success", key)] == 0 and got[("dr_backup_items", key)] == 0
    assert got[("dr_backup_last_success_timestamp_seconds", key)] == last_success


def test_a_backup_completed_with_warnings_is_a_warning_event_and_counted_in_its_metrics(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, isolated_home: Path, textfile_dir: Path,
    shop: str, unique: str,
) -> None:  # fmt: skip
    # A scheduled backup whose selector matches nothing is Completed (exit 0) with a warning that
    # only the CronJob's log showed: its Event said "BackupCompleted" (Normal) and no metric knew.
    config = configure(isolated_home, shop, {"textfile": str(textfile_dir / "dr.prom")}, f"shop-{unique}")
    assert dr(capsys, config, k8s, "repo", "init").code == 0
    res = dr(capsys, config, k8s, "backup", "--policy", "shop", "--no-data", "--selector", "app=nothing-matches",
             "-o", "json")  # fmt: skip
    assert res.code == 0, res.err
    backup = res.json()
    warning = (
        f"label selector 'app=nothing-matches' matched no object in namespace {shop}: "
        "nothing of the application was backed up, only the Namespace object"
    )
    assert backup["phase"] == "Completed" and backup["warnings"] == [warning]

    recorded = by_reason(kube_client, shop)
    assert "BackupCompleted" not in recorded
    (event,) = recorded["BackupCompletedWithWarnings"]
    assert event["type"] == "Warning"
    assert event["message"].startswith(
        f"backup {backup['shortId']} (shop) completed with 1 warning(s): 1 objects, 0 volume(s), "
    )
    assert event["message"].endswith(f"; first: {warning}")

    key = (("app", "shop"), ("policy", "shop"))
    got = series((textfile_dir / "dr-backup-shop.prom").read_text())
    assert got[("dr_backup_warnings", key)] == 1
    assert got[("dr_backup_last_run_success", key)] == 1  # Completed: a warning is no failure

    # The next backup without warnings: a Normal event, and the count back to 0.
    assert dr(capsys, config, k8s, "backup", "--policy", "shop", "--no-data").code == 0
    (event,) = by_reason(kube_client, shop)["BackupCompleted"]
    assert event["type"] == "Normal"
    assert series((textfile_dir / "dr-backup-shop.prom").read_text())[("dr_backup_warnings", key)] == 0


def test_an_ad_hoc_backup_pushes_to_a_group_of_its_own_never_a_policys(
    capsys: Capsys, k8s: servers.TestCluster, isolated_home: Path, textfile_dir: Path,
    pushgateway: Pushgateway, shop: str, unique: str,
) -> None:  # fmt: skip
    # Without a policy, `dr backup` pushed to the group policy=<backup name> while its series said
    # policy="": the Pushgateway overwrote the label with the group's, and `dr backup -n shop --name
    # shop` replaced the metrics of policy shop (its last success included) with an ad-hoc run's.
    config = configure(isolated_home, shop, {"textfile": str(textfile_dir / "dr.prom"),
                                             "pushgateway": pushgateway.url}, f"shop-{unique}")  # fmt: skip
    assert dr(capsys, config, k8s, "repo", "init").code == 0
    assert dr(capsys, config, k8s, "backup", "--policy", "shop", "--no-data").code == 0
    policy_file = (textfile_dir / "dr-backup-shop.prom").read_text()

    for args, name in ((("--name", "shop"), "shop"), ((), "manual")):
        pushgateway.requests.clear()
        assert dr(capsys, config, k8s, "backup", "-n", shop, *args, "--no-data").code == 0
        ((method, path, body),) = pushgateway.requests
        # The grouping key is the series' own labels; the empty policy in the Pushgateway's encoding.
        assert (method, path) == ("POST", f"/metrics/job/dr-backup/app/{name}/policy@base64/=")
        assert series(body.decode())[("dr_backup_last_run_success", (("app", name), ("policy", "")))] == 1
        got = series((textfile_dir / f"dr-backup.{name}.prom").read_text())
        assert got[("dr_backup_last_run_success", (("app", name), ("policy", "")))] == 1
    # The policy's file is the policy's run alone.
    assert (textfile_dir / "dr-backup-shop.prom").read_text() == policy_file


def test_restore_records_metrics_and_events_on_its_target_namespaces_and_a_dry_run_records_nothing(
    capsys: Capsys,
    k8s: servers.TestCluster,
    kube_client: KubeClient,
    isolated_home: Path,
    textfile_dir: Path,
    shop: str,
    unique: str,
) -> None:
    config = configure(isolated_home, shop, {"textfile": str(textfile_dir / "dr.prom")}, f"shop-{unique}")
    assert dr(capsys, config, k8s, "repo", "init").code == 0
    assert dr(capsys, config, k8s, "backup", "--policy", "shop", "--no-data").code == 0
    copy = f"{shop}-copy"

    res = dr(capsys, config, k8s, "restore", "latest", "--namespace-mapping", f"{shop}={copy}", "--dry-run")
    assert res.code == 0, res.err
    assert "Restore" not in str(
        by_reason(kube_client, shop)
    )  # nothing on the source; the copy does not exist
    assert sorted(p.name for p in textfile_dir.iterdir()) == ["dr-backup-shop.prom"]  # no restore series

    res = dr(capsys, config, k8s, "restore", "latest", "--namespace-mapping", f"{shop}={copy}", "-o", "json")
    assert res.code == 0, res.err
    rid = res.json()["restoreId"]
    (event,) = by_reason(kube_client, copy)["RestoreCompleted"]
    assert event["type"] == "Normal"
    assert event["message"].startswith(f"restore {rid} of backup ") and "4 created" in event["message"]
    assert "RestoreCompleted" not in by_reason(kube_client, shop)  # the source was not touched
    # Series labelled with the restored backup's policy and name.
    got = series((textfile_dir / "dr-restore-shop.prom").read_text())
    key = (("app", "shop"), ("policy", "shop"))
    assert got[("dr_restore_last_run_success", key)] == 1 and got[("dr_restore_failed_items", key)] == 0
    assert got[("dr_restore_items", key)] == res.json()["counts"]["created"] == 4
    assert got[("dr_restore_duration_seconds", key)] > 0
    last_success = got[("dr_restore_last_success_timestamp_seconds", key)]
    assert last_success == got[("dr_restore_last_run_timestamp_seconds", key)]

    res = dr(capsys, config, k8s, "restore", "latest", "--namespace-mapping", f"{shop}={copy}",
             "--include-resources", "nosuchtype")  # fmt: skip
    assert res.code == 2
    (failed,) = by_reason(kube_client, copy)["RestoreFailed"]
    assert failed["type"] == "Warning" and failed["message"].startswith("restore of backup ")
    assert "no such resource type in the backup" in failed["message"]
    got = series((textfile_dir / "dr-restore-shop.prom").read_text())
    assert got[("dr_restore_last_run_success", key)] == 0 and got[("dr_restore_items", key)] == 0
    assert got[("dr_restore_last_success_timestamp_seconds", key)] == last_success  # carried over


def test_a_restore_whose_dump_fails_to_load_is_recorded_as_partially_failed(
    capsys: Capsys,
    k8s: servers.TestCluster,
    kube_client: KubeClient,
    isolated_home: Path,
    textfile_dir: Path,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dr.cli.volume_access as volume_access
    from tests.exec_fakes import Script, ScriptedExec
    from tests.volume_helpers import create_pod

    # The test cluster serves no pods/exec: the dump and its load run through the Exec seam.
    ex = ScriptedExec(
        {
            "pg_dump app": Script(stdout=[b"-- dump\n" * 1000]),
            "pg_restore -d app": Script(exit_code=1, stderr=b"pg_restore: error: relation exists\n"),
        }
    )
    monkeypatch.setattr(volume_access, "KubernetesExec", lambda kube: ex)
    create_pod(kube_client, namespace, "db-0", [], annotations={
        "dump.hook.backup.dr.dev/command": '["pg_dump", "app"]',
        "restore.hook.dr.dev/command": '["pg_restore", "-d", "app"]',
    })  # fmt: skip
    config = str(write_config(isolated_home, metrics={"textfile": str(textfile_dir / "dr.prom")}))
    assert dr(capsys, config, k8s, "repo", "init").code == 0
    assert dr(capsys, config, k8s, "backup", "--namespace", namespace).code == 0

    res = dr(capsys, config, k8s, "restore", "latest", "-o", "json")
    failure = f"dump {namespace}/db-0/dump: exit code 1: pg_restore: error: relation exists"
    assert res.code == 3 and failure in res.err
    assert res.json()["phase"] == "PartiallyFailed" and res.json()["dumpErrors"] == [failure]
    (event,) = by_reason(kube_client, namespace)["RestorePartiallyFailed"]
    assert "1 item(s) failed" in event["message"] and "RestoreCompleted" not in by_reason(
        kube_client, namespace
    )
    (prom,) = [p for p in textfile_dir.iterdir() if p.name.startswith("dr-restore-")]
    got = {name: v for (name, _), v in series(prom.read_text()).items()}
    assert got["dr_restore_last_run_success"] == 0 and got["dr_restore_failed_items"] == 1


def test_a_dump_no_restored_pod_loads_is_a_warning(
    capsys: Capsys,
    k8s: servers.TestCluster,
    kube_client: KubeClient,
    isolated_home: Path,
    textfile_dir: Path,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dr.cli.volume_access as volume_access
    from tests.exec_fakes import Script, ScriptedExec
    from tests.volume_helpers import create_pod

    ex = ScriptedExec({"pg_dump app": Script(stdout=[b"-- dump\n" * 1000])})
    monkeypatch.setattr(volume_access, "KubernetesExec", lambda kube: ex)
    # No pod will ever ask for the dump: wait a second for one, not five minutes.
    wait = volume_access.restore_backup_dumps
    monkeypatch.setattr(volume_access, "restore_backup_dumps",
                        lambda *a, **kw: wait(*a, **{**kw, "timeout": 1.0, "poll": 0.2}))  # fmt: skip
    create_pod(
        kube_client,
        namespace,
        "db-0",
        [],
        annotations={"dump.hook.backup.dr.dev/command": '["pg_dump", "app"]'},
    )
    config = str(write_config(isolated_home, metrics={"textfile": str(textfile_dir / "dr.prom")}))
    assert dr(capsys, config, k8s, "repo", "init").code == 0
    assert dr(capsys, config, k8s, "backup", "--namespace", namespace).code == 0

    warning = (f"dump {namespace}/db-0/dump was not loaded: "
               f"no running pod in {namespace} has a restore hook for dump 'dump'")  # fmt: skip
    res = dr(capsys, config, k8s, "restore", "latest")
    assert res.code == 0 and f"warning: {warning}" in res.err.splitlines()
    res = dr(capsys, config, k8s, "restore", "latest", "-o", "json")
    assert res.code == 0 and res.json()["dumpWarnings"] == [warning] and res.json()["dumpErrors"] == []


def test_mysql_passwords_in_hook_commands_reach_no_record_log_or_event(
    capsys: Capsys,
    k8s: servers.TestCluster,
    kube_client: KubeClient,
    isolated_home: Path,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `mysqldump -u root -pSECRET` and `--password SECRET` went into the dump and restore
    # records as written (kept in the repository, shown by `dr backups describe`), and a
    # script's `sh -x` trace of them on stderr into errors: only PGPASSWORD=, --password=
    # and tokens were masked. Through the real commands at -vvv: no record, output, log
    # line or Event holds them; the records still show where the password was.
    import dr.cli.volume_access as volume_access
    from tests.exec_fakes import Script, ScriptedExec
    from tests.volume_helpers import create_pod

    secrets = ("hunter2", "hunt er3", "s3cr3t-sep")
    trace = b"+ mysqldump -u root --password s3cr3t-sep --all-databases\nmysqldump: Got error: 1045\n"
    ex = ScriptedExec(
        {
            "mysqldump -u root -phunter2 app": Script(stdout=[b"-- dump\n" * 1000]),
            "/bin/sh -c mysqldump -u root --password s3cr3t-sep --all-databases": Script(
                exit_code=2, stderr=trace
            ),
            "/bin/sh -c mysql -uroot -p'hunt er3' app": Script(
                exit_code=1, stderr=b"+ mysql -uroot -p'hunt er3' app\nERROR 1045 (28000): Access denied\n"
            ),
        }
    )
    monkeypatch.setattr(volume_access, "KubernetesExec", lambda kube: ex)
    create_pod(kube_client, namespace, "db-0", [], annotations={
        "dump.hook.backup.dr.dev/command": '["mysqldump", "-u", "root", "-phunter2", "app"]',
        "restore.hook.dr.dev/command": "mysql -uroot -p'hunt er3' app",
    })  # fmt: skip
    create_pod(kube_client, namespace, "db-1", [], annotations={
        "dump.hook.backup.dr.dev/command": "mysqldump -u root --password s3cr3t-sep --all-databases",
    })  # fmt: skip
    config = str(write_config(isolated_home))
    assert dr(capsys, config, k8s, "repo", "init").code == 0
    runs = [dr(capsys, config, k8s, "-vvv", "backup", "--namespace", namespace, "-o", "json")]
    assert runs[0].code == 3, runs[0].err  # db-1's dump failed
    runs.append(dr(capsys, config, k8s, "backups", "describe", "latest", "-o", "json"))
    runs.append(dr(capsys, config, k8s, "-vvv", "restore", "latest", "-o", "json"))
    assert runs[2].code == 3, runs[2].err  # the load into db-0 failed
    texts = [t for r in runs for t in (r.out, r.err)]
    texts += [json.dumps(e) for e in events(kube_client, namespace)]
    assert ["mysqldump", "-u", "root", "-phunter2", "app"] in [c[3] for c in ex.calls]  # ran as written
    for text in texts:
        for secret in secrets:
            assert secret not in text, text
    (dump,) = [d for d in runs[1].json()["app"]["dumps"] if d["pod"] == "db-0"]
    assert dump["command"] == ["mysqldump", "-u", "root", "-p[REDACTED]", "app"]
    assert "+ mysqldump -u root --password [REDACTED] --all-databases" in runs[0].err
    assert "+ mysql -uroot -p[REDACTED] app" in runs[2].err
    assert {"BackupPartiallyFailed", "RestorePartiallyFailed"} <= set(by_reason(kube_client, namespace))


# --------------------------------------------------------------------------- drills


def test_drill_writes_metrics_pushes_and_records_events_passed_and_failed(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, isolated_home: Path, textfile_dir: Path,
    pushgateway: Pushgateway, shop: str, unique: str,
) -> None:  # fmt: skip
    app = f"shop-{unique}"
    config = configure(isolated_home, shop, {"textfile": str(textfile_dir / "dr.prom"),
                                             "pushgateway": pushgateway.url}, app)  # fmt: skip
    assert dr(capsys, config, k8s, "repo", "init").code == 0
    assert dr(capsys, config, k8s, "backup", "--policy", "shop", "--no-data").code == 0
    ((method, path, body),) = pushgateway.requests
    assert (method, path) == ("POST", "/metrics/job/dr-backup/policy/shop")
    assert series(body.decode())[("dr_backup_last_run_success", (("app", "shop"), ("policy", "shop")))] == 1

    runbook = str(isolated_home / "shop.yaml")
    res = dr(
        capsys, config, k8s, "drill", "run", runbook, "--no-data", "--policy", "shop-monthly", "-o", "json"
    )
    assert res.code == 0, res.err
    report = res.json()
    key = (("app", app), ("policy", "shop-monthly"))
    got = series((textfile_dir / f"dr-drill-{app}.prom").read_text())
    assert got[("dr_drill_passed", key)] == 1
    assert got[("dr_drill_rto_seconds", key)] == pytest.approx(report["rtoMeasured"])
    assert got[("dr_drill_rpo_seconds", key)] == pytest.approx(report["rpoMeasured"])
    assert got[("dr_drill_last_run_timestamp_seconds", key)] > 0
    method, path, body = pushgateway.requests[-1]
    assert (method, path) == ("POST", f"/metrics/job/dr-drill/app/{app}")
    assert series(body.decode())[("dr_drill_passed", key)] == 1
    # The event goes to the application's namespace (the scratch namespace is gone).
    (passed,) = by_reason(kube_client, shop)["DrillPassed"]
    assert passed["type"] == "Normal" and passed["message"].startswith(
        f"drill {report['id']} of {app} passed: 1/1"
    )

    # A drill run by hand (no --policy) pushed into the scheduled drill's group and file,
    # replacing its series: a passing drill by hand hid a scheduled one that stopped running.
    scheduled_file = (textfile_dir / f"dr-drill-{app}.prom").read_text()
    pushgateway.requests.clear()
    assert dr(capsys, config, k8s, "drill", "run", runbook, "--no-data").code == 0
    ((method, path, body),) = pushgateway.requests
    assert (method, path) == ("POST", f"/metrics/job/dr-drill/app/{app}/policy@base64/=")
    assert series(body.decode())[("dr_drill_passed", (("app", app), ("policy", "")))] == 1
    assert (
        series((textfile_dir / f"dr-drill.{app}.prom").read_text())[
            ("dr_drill_passed", (("app", app), ("policy", "")))
        ]
        == 1
    )
    assert (textfile_dir / f"dr-drill-{app}.prom").read_text() == scheduled_file

    # The app loses a ConfigMap the runbook expects; the next backup and drill fail the check.
    kube_client.request("DELETE", f"/api/v1/namespaces/{shop}/configmaps/settings")
    assert dr(capsys, config, k8s, "backup", "--policy", "shop", "--no-data").code == 0
    res = dr(capsys, config, k8s, "drill", "run", runbook, "--no-data", "--policy", "shop-monthly")
    assert res.code == 4, res.err
    # The failed step, named in the error's details as `dr runbook verify` names one.
    assert (
        f"error: drill of {app} failed: 1 step(s) did not pass\n  step config-present (resources): "
        in res.err
    )
    got = series((textfile_dir / f"dr-drill-{app}.prom").read_text())
    assert got[("dr_drill_passed", key)] == 0
    (failed,) = by_reason(kube_client, shop)["DrillFailed"]
    assert failed["type"] == "Warning"
    assert "failed: step(s) config-present did not pass (0/1 passed)" in failed["message"]


def test_emitting_problems_are_warnings_not_failures(
    capsys: Capsys,
    k8s: servers.TestCluster,
    kube_client: KubeClient,
    isolated_home: Path,
    shop: str,
    unique: str,
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    metrics = {"textfile": str(isolated_home / "missing-dir" / "dr.prom"),
               "pushgateway": f"http://user:hunter2@127.0.0.1:{port}"}  # fmt: skip
    config = configure(isolated_home, shop, metrics, f"shop-{unique}")
    assert dr(capsys, config, k8s, "repo", "init").code == 0
    res = dr(capsys, config, k8s, "backup", "--policy", "shop", "--no-data")
    assert res.code == 0, res.err
    assert "backup " in res.out and "Completed" in res.out
    warnings = [line for line in res.err.splitlines() if '"level": "warning"' in line]
    assert len(warnings) == 2
    assert f"cannot write metrics to {isolated_home / 'missing-dir' / 'dr-backup-shop.prom'}" in warnings[0]
    assert f"cannot push metrics to http://127.0.0.1:{port}" in warnings[1]
    assert "hunter2" not in res.err
    # Events still went out.
    assert "BackupCompleted" in by_reason(kube_client, shop)


def test_a_drill_that_cannot_run_is_recorded_as_failed_with_unknown_rto(
    capsys: Capsys, k8s: servers.TestCluster, kube_client: KubeClient, isolated_home: Path, textfile_dir: Path,
    shop: str, unique: str,
) -> None:  # fmt: skip
    app = f"shop-{unique}"
    config = configure(isolated_home, shop, {"textfile": str(textfile_dir / "dr.prom")}, app)
    assert dr(capsys, config, k8s, "repo", "init").code == 0  # no backup at all
    res = dr(capsys, config, k8s, "drill", "run", str(isolated_home / "shop.yaml"), "--no-data")
    assert res.code == 1
    assert f"error: drill of {app} could not run: no backup of {app} in the repository" in res.err
    key = (("app", app), ("policy", ""))
    got = series((textfile_dir / f"dr-drill.{app}.prom").read_text())  # no --policy: run by hand
    assert got[("dr_drill_passed", key)] == 0
    # Nothing was measured: NaN, not 0 (which would read as an instant recovery).
    assert math.isnan(got[("dr_drill_rto_seconds", key)]) and math.isnan(got[("dr_drill_rpo_seconds", key)])
    (event,) = by_reason(kube_client, shop)["DrillFailed"]
    assert event["type"] == "Warning"
    assert event["message"].endswith(
        f"could not run: no backup of {app} in the repository (namespaces {shop})"
    )


def test_event_messages_name_items_not_server_words() -> None:
    from dr.observe.run_hooks import _failure_names, restore_target_namespaces
    from dr.repo.snapshots import Snapshot
    from dr.restore.plan import RestoreOptions

    failures = [f"secrets ns{i}: 403 Forbidden: secrets is forbidden: …" for i in range(7)]
    assert (
        _failure_names(failures)
        == "secrets ns0, secrets ns1, secrets ns2, secrets ns3, secrets ns4 and 2 more"
    )
    snap = Snapshot(kind="backup", namespaces=["shop", "shop-db", "logs"])
    options = RestoreOptions(namespaces=["shop*"], namespace_mapping={"shop": "shop-copy"})
    assert restore_target_namespaces(snap, options) == ["shop-copy", "shop-db"]


def test_a_failed_drills_event_names_the_restore_problem_not_the_servers_words(
    kube_client: KubeClient, shop: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from dr.config import Config
    from dr.drill.model import DrillReport, ReportObjectives, RestoreProblems
    from dr.observe.run_hooks import drill_finished

    # What the API server (or an admission webhook) said about an object can quote the object.
    reason = 'admission webhook "policy.example" denied the request: DB_PASSWORD="hunter2" is not allowed'
    started = datetime.now(UTC)
    report = DrillReport(
        id="shop-20261129-abcd", app="shop", runbook="shop.yaml", started=started,
        finished=started + timedelta(minutes=3), namespaces={shop: f"drill-{shop}"},
        objectives=ReportObjectives(rpo=timedelta(hours=24), rto=timedelta(hours=1)),
        restore=RestoreProblems(failed_items=[f"secrets drill-{shop}/db-env: failed ({reason})"],
                                not_ready=[f"drill-{shop}/deployment web: 0/1 ready"]),
        outcome="failed",
    )  # fmt: skip
    assert drill_finished(Config(), kube_client, report) == []
    (event,) = by_reason(kube_client, shop)["DrillFailed"]
    assert "hunter2" not in event["message"] and "webhook" not in event["message"]
    assert f"2 restore problem(s) (restore failed: secrets drill-{shop}/db-env)" in event["message"]
