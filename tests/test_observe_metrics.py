"""Run metrics: a fresh registry per run, an atomic textfile for node-exporter, a real HTTP push."""

from __future__ import annotations

import http.server
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dr.errors import DrError
from dr.observe.metrics import DrillOutcome, RunMetrics, RunOutcome, textfile_for


def ok_backup(policy: str = "shop-nightly", at: float = 1_700_000_000.0) -> RunOutcome:
    return RunOutcome(policy, "shop", at, 42.5, 1_048_576, 120, 0, True)


def failed_backup(policy: str = "shop-nightly", at: float = 1_700_086_400.0) -> RunOutcome:
    return RunOutcome(policy, "shop", at, 3.0, 0, 10, 2, False)


def series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


SHOP = (("app", "shop"), ("policy", "shop-nightly"))


def test_backup_and_drill_series() -> None:
    m = RunMetrics()
    m.record_backup(ok_backup())
    m.record_drill(DrillOutcome("shop-monthly", "shop", 1_700_000_500.0, False, 310.0, 7200.0))
    got = series(m.exposition().decode())
    assert got[("dr_backup_last_success_timestamp_seconds", SHOP)] == 1_700_000_000.0
    assert got[("dr_backup_last_run_success", SHOP)] == 1
    assert got[("dr_backup_duration_seconds", SHOP)] == 42.5
    assert got[("dr_backup_bytes", SHOP)] == 1_048_576
    assert got[("dr_backup_items", SHOP)] == 120
    assert got[("dr_backup_failed_items", SHOP)] == 0
    drill = (("app", "shop"), ("policy", "shop-monthly"))
    assert got[("dr_drill_passed", drill)] == 0
    assert got[("dr_drill_rto_seconds", drill)] == 310.0
    assert got[("dr_drill_rpo_seconds", drill)] == 7200.0
    assert got[("dr_drill_last_run_timestamp_seconds", drill)] == 1_700_000_500.0


def test_a_backups_warnings_are_counted_and_its_success_stands() -> None:
    m = RunMetrics()
    m.record_backup(RunOutcome("shop-nightly", "shop", 1_700_000_000.0, 2.0, 460, 1, 0, True, warnings=3))
    got = series(m.exposition().decode())
    assert got[("dr_backup_warnings", SHOP)] == 3 and got[("dr_backup_last_run_success", SHOP)] == 1
    clean = RunMetrics()
    clean.record_backup(ok_backup())
    assert series(clean.exposition().decode())[("dr_backup_warnings", SHOP)] == 0
    restore = RunMetrics()  # restores have no such series
    restore.record_restore(ok_backup())
    names = {name for name, _ in series(restore.exposition().decode())}
    assert "dr_restore_last_run_success" in names and not [n for n in names if "warnings" in n], names


def test_restore_series_and_a_failed_restore_keeps_the_last_success(tmp_path: Path) -> None:
    path = tmp_path / "dr-restore-shop.prom"
    first = RunMetrics()
    first.record_restore(RunOutcome("shop-nightly", "shop", 1_700_000_000.0, 240.0, 5_000_000, 130, 0, True))
    first.write_textfile(path)
    got = series(path.read_text())
    assert got[("dr_restore_last_run_success", SHOP)] == 1
    assert got[("dr_restore_last_success_timestamp_seconds", SHOP)] == 1_700_000_000.0
    assert got[("dr_restore_duration_seconds", SHOP)] == 240.0
    assert (got[("dr_restore_items", SHOP)], got[("dr_restore_bytes", SHOP)]) == (130, 5_000_000)
    assert got[("dr_restore_failed_items", SHOP)] == 0
    assert not any(name.startswith(("dr_backup", "dr_drill")) for name, _ in got)

    second = RunMetrics()
    second.record_restore(RunOutcome("shop-nightly", "shop", 1_700_000_900.0, 30.0, 0, 100, 3, False))
    second.write_textfile(path)
    got = series(path.read_text())
    assert got[("dr_restore_last_run_success", SHOP)] == 0 and got[("dr_restore_failed_items", SHOP)] == 3
    assert got[("dr_restore_last_run_timestamp_seconds", SHOP)] == 1_700_000_900.0
    assert got[("dr_restore_last_success_timestamp_seconds", SHOP)] == 1_700_000_000.0  # carried over


def test_each_run_has_its_own_registry() -> None:
    a, b = RunMetrics(), RunMetrics()
    a.record_backup(ok_backup("a"))
    assert 'policy="a"' in a.exposition().decode()
    assert 'policy="a"' not in b.exposition().decode()
    assert a.registry is not b.registry


def test_failed_run_sets_no_success_time() -> None:
    m = RunMetrics()
    m.record_backup(failed_backup())
    got = series(m.exposition().decode())
    assert ("dr_backup_last_success_timestamp_seconds", SHOP) not in got
    assert got[("dr_backup_last_run_success", SHOP)] == 0
    assert got[("dr_backup_failed_items", SHOP)] == 2


def test_textfile_is_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "dr.prom"
    m = RunMetrics()
    m.record_backup(ok_backup())
    m.write_textfile(path)
    assert path.read_bytes() == m.exposition()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["dr.prom"]  # no temp file left behind


def test_textfile_keeps_last_success_through_a_failed_run(tmp_path: Path) -> None:
    path = tmp_path / "dr.prom"
    first = RunMetrics()
    first.record_backup(ok_backup())
    first.record_backup(ok_backup("other", at=1_600_000_000.0))
    first.write_textfile(path)
    second = RunMetrics()
    second.record_backup(failed_backup())
    second.write_textfile(path)
    got = series(path.read_text())
    assert got[("dr_backup_last_success_timestamp_seconds", SHOP)] == 1_700_000_000.0
    assert got[("dr_backup_last_run_success", SHOP)] == 0
    other = (("app", "shop"), ("policy", "other"))
    assert got[("dr_backup_last_success_timestamp_seconds", other)] == 1_600_000_000.0
    # A later success replaces the carried-over value.
    third = RunMetrics()
    third.record_backup(ok_backup(at=1_700_200_000.0))
    third.write_textfile(path)
    assert series(path.read_text())[("dr_backup_last_success_timestamp_seconds", SHOP)] == 1_700_200_000.0


def test_textfile_replaces_an_unreadable_old_file(tmp_path: Path) -> None:
    path = tmp_path / "dr.prom"
    path.write_text("this is { not prometheus\n")
    m = RunMetrics()
    m.record_backup(ok_backup())
    m.write_textfile(path)
    assert path.read_bytes() == m.exposition()


def test_textfile_error_names_the_path(tmp_path: Path) -> None:
    m = RunMetrics()
    with pytest.raises(DrError, match=r"cannot write metrics to .*/missing/dr.prom"):
        m.write_textfile(tmp_path / "missing" / "dr.prom")


def test_textfile_for_each_job() -> None:
    assert textfile_for("/var/lib/node-exporter/dr.prom", "backup-shop") == Path(
        "/var/lib/node-exporter/dr-backup-shop.prom"
    )


def test_textfile_naming_the_collectors_directory_writes_into_it(tmp_path: Path) -> None:
    # node-exporter is configured with a directory (--collector.textfile.directory); so may dr be.
    # A file beside that directory is never collected, and an alert on the missing series never fires.
    collector = tmp_path / "textfile"
    collector.mkdir()
    for configured in (str(collector), f"{collector}/"):
        assert textfile_for(configured, "backup-shop") == collector / "dr-backup-shop.prom"
    m = RunMetrics()
    m.record_backup(ok_backup())
    m.write_textfile(textfile_for(str(collector), "backup-shop"))
    assert [p.name for p in tmp_path.iterdir()] == ["textfile"]
    assert [p.name for p in collector.iterdir()] == ["dr-backup-shop.prom"]


@dataclass
class Recorded:
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)


@pytest.fixture
def pushgateway() -> Iterator[tuple[str, Recorded]]:
    """A tiny HTTP server on a free loopback port that records what it is sent."""
    rec = Recorded()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.requests.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        do_PUT = do_POST = _record

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_push_posts_to_the_group(pushgateway: tuple[str, Recorded]) -> None:
    url, rec = pushgateway
    m = RunMetrics()
    m.record_backup(ok_backup())
    m.push(url, "dr-backup", {"policy": "shop-nightly"})
    ((method, path, body),) = rec.requests
    # POST, not PUT: series this run did not set (last success after a failure) survive.
    assert method == "POST"
    assert path == "/metrics/job/dr-backup/policy/shop-nightly"
    assert series(body.decode())[("dr_backup_last_success_timestamp_seconds", SHOP)] == 1_700_000_000.0


def test_push_error_hides_credentials() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    m = RunMetrics()
    with pytest.raises(DrError) as e:
        m.push(f"http://user:hunter2@127.0.0.1:{port}", "dr-backup", {"policy": "p"}, timeout=5)
    assert f"cannot push metrics to http://127.0.0.1:{port}" in e.value.message
    assert "hunter2" not in e.value.message
