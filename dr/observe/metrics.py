"""Prometheus metrics of one dr run: backup, restore and drill outcomes per policy and app.

dr is a short-lived process (a CronJob run), so nothing is scraped from it:
each run fills a fresh ``CollectorRegistry`` (no global registry, no global
state) and hands it on — always to a node-exporter textfile when one is
configured (:meth:`RunMetrics.write_textfile`, an atomic rename), and to a
Pushgateway when configured (:meth:`RunMetrics.push`).

All series are gauges labelled ``policy`` and ``app``:

=============================================  ==========================================
``dr_backup_last_success_timestamp_seconds``   end of the last successful backup
``dr_backup_last_run_timestamp_seconds``       end of the last backup run, any outcome
``dr_backup_last_run_success``                 1 when the last run succeeded, else 0
``dr_backup_duration_seconds``                 duration of the last run
``dr_backup_bytes``                            bytes read by the last run
``dr_backup_items``                            items (objects, files) backed up
``dr_backup_failed_items``                     items that failed in the last run
``dr_backup_warnings``                         warnings of the last run
``dr_restore_last_success_timestamp_seconds``  end of the last successful restore
``dr_restore_last_run_timestamp_seconds``      end of the last restore run, any outcome
``dr_restore_last_run_success``                1 when the last restore succeeded, else 0
``dr_restore_duration_seconds``                duration of the last restore
``dr_restore_items``                           items (objects, files) restored
``dr_restore_bytes``                           volume bytes restored
``dr_restore_failed_items``                    items that failed in the last restore
``dr_drill_last_run_timestamp_seconds``        end of the last drill
``dr_drill_passed``                            1 when the last drill passed, else 0
``dr_drill_rto_seconds``                       measured time to restore (recovery time)
``dr_drill_rpo_seconds``                       age of the restored backup (data loss window)
=============================================  ==========================================

A failed run must not erase the time of the last *success* (alerts are
"no success for longer than the RPO"). So the textfile keeps the previous
file's last-success series that this run did not set, and the Pushgateway is
sent a POST (replace only the metrics this run has), not a PUT (replace the
whole group).

Restores are labelled with the policy and name of the backup they restored
(``app`` is the backup's name): "the last restore of the nightly shop backup
took 4 minutes" is what an incident review asks. A dry run records nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, generate_latest, pushadd_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from dr.errors import DrError

LABELS = ("policy", "app")
# Series a later run must not lose when it does not set them itself.
CARRIED_OVER = ("dr_backup_last_success_timestamp_seconds", "dr_restore_last_success_timestamp_seconds")


@dataclass(frozen=True)
class RunOutcome:
    """One backup or restore run. Restores carry the policy and name of the backup they restored."""

    policy: str
    app: str
    finished_at: float  # Unix time
    duration_seconds: float
    bytes: int  # read by a backup; volume bytes written by a restore
    items: int  # objects and files backed up / restored
    failed_items: int
    succeeded: bool
    # A backup's warnings (a Completed run's too: a selector that matched nothing); restores have none.
    warnings: int = 0


@dataclass(frozen=True)
class DrillOutcome:
    policy: str
    app: str
    finished_at: float
    passed: bool
    rto_seconds: float
    rpo_seconds: float


def _safe_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class _RunSeries:
    """The gauges of one kind of run (``dr_backup_*``, ``dr_restore_*``)."""

    def __init__(self, gauge: Callable[[str, str], Gauge], kind: str, done: str, bytes_doc: str) -> None:
        self.last_success = gauge(
            f"dr_{kind}_last_success_timestamp_seconds", f"End of the last successful {kind} (Unix time)."
        )
        self.last_run = gauge(
            f"dr_{kind}_last_run_timestamp_seconds", f"End of the last {kind} run (Unix time)."
        )
        self.success = gauge(f"dr_{kind}_last_run_success", f"1 when the last {kind} run succeeded, else 0.")
        self.duration = gauge(f"dr_{kind}_duration_seconds", f"Duration of the last {kind} run.")
        self.bytes = gauge(f"dr_{kind}_bytes", bytes_doc)
        self.items = gauge(f"dr_{kind}_items", f"Items (objects, files) {done} by the last {kind} run.")
        self.failed_items = gauge(f"dr_{kind}_failed_items", f"Items that failed in the last {kind} run.")


class RunMetrics:
    """The metrics of one run, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._set: set[tuple[str, tuple[str, str]]] = set()

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, LABELS, registry=self.registry)

        self.backup = _RunSeries(gauge, "backup", "backed up", "Bytes read by the last backup run.")
        self.restore = _RunSeries(
            gauge, "restore", "restored", "Volume bytes written by the last restore run."
        )
        # Backups only: Velero's velero_backup_warning_total, as a gauge of the last run (a counter
        # would not survive dr's one process per run).
        self.backup_warnings = gauge("dr_backup_warnings", "Warnings of the last backup run.")
        self.drill_last_run = gauge(
            "dr_drill_last_run_timestamp_seconds", "End of the last drill (Unix time)."
        )
        self.drill_passed = gauge("dr_drill_passed", "1 when the last drill passed, else 0.")
        self.drill_rto = gauge("dr_drill_rto_seconds", "Measured recovery time of the last drill.")
        self.drill_rpo = gauge("dr_drill_rpo_seconds", "Age of the backup the last drill restored.")

    def _put(self, g: Gauge, labels: tuple[str, str], value: float) -> None:
        g.labels(*labels).set(value)
        self._set.add((g._name, labels))

    def _record_run(self, series: _RunSeries, o: RunOutcome) -> None:
        key = (o.policy, o.app)
        self._put(series.last_run, key, o.finished_at)
        self._put(series.success, key, 1 if o.succeeded else 0)
        self._put(series.duration, key, o.duration_seconds)
        self._put(series.bytes, key, o.bytes)
        self._put(series.items, key, o.items)
        self._put(series.failed_items, key, o.failed_items)
        if o.succeeded:
            self._put(series.last_success, key, o.finished_at)

    def record_backup(self, o: RunOutcome) -> None:
        self._record_run(self.backup, o)
        self._put(self.backup_warnings, (o.policy, o.app), o.warnings)

    def record_restore(self, o: RunOutcome) -> None:
        self._record_run(self.restore, o)

    def record_drill(self, o: DrillOutcome) -> None:
        key = (o.policy, o.app)
        self._put(self.drill_last_run, key, o.finished_at)
        self._put(self.drill_passed, key, 1 if o.passed else 0)
        self._put(self.drill_rto, key, o.rto_seconds)
        self._put(self.drill_rpo, key, o.rpo_seconds)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def _carry_over(self, previous: str) -> None:
        gauges = {g._name: g for g in (self.backup.last_success, self.restore.last_success)}
        try:
            families = list(text_string_to_metric_families(previous))
        except ValueError:
            return  # an unreadable old file is replaced, not merged
        for family in families:
            if family.name not in CARRIED_OVER:
                continue
            for sample in family.samples:
                labels = (sample.labels.get("policy", ""), sample.labels.get("app", ""))
                if (family.name, labels) not in self._set:
                    self._put(gauges[family.name], labels, sample.value)

    def write_textfile(self, path: str | Path) -> None:
        """Write the metrics for node-exporter's textfile collector, atomically (temp file + rename)."""
        target = Path(path)
        with contextlib.suppress(FileNotFoundError, UnicodeDecodeError):
            self._carry_over(target.read_text(encoding="utf-8"))
        data = self.exposition()
        try:
            # Same directory, so the rename is atomic; the collector never sees half a file.
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            raise DrError(f"cannot write metrics to {target}: {e.strerror or e}") from None

    def push(self, pushgateway_url: str, job: str, grouping_key: dict[str, str], timeout: float = 10) -> None:
        """Send the metrics to a Pushgateway (POST: series this run did not set keep their values)."""
        try:
            pushadd_to_gateway(
                pushgateway_url, job=job, registry=self.registry, grouping_key=grouping_key, timeout=timeout
            )
        except (URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise DrError(f"cannot push metrics to {_safe_url(pushgateway_url)}: {reason}") from None


def textfile_for(base: str | Path, job: str) -> Path:
    """One file per job beside the configured one (``dr.prom`` -> ``dr-backup-shop.prom``).

    The textfile collector reads every ``*.prom`` in its directory, and each
    run rewrites its file whole, so jobs must not share a file. A configured
    directory (node-exporter is configured with one) gets ``dr-<job>.prom``
    inside it: beside it, the file would never be collected.
    """
    p = Path(base)
    if str(base).endswith("/") or p.is_dir():
        return p / f"dr-{job}.prom"
    return p.with_name(f"{p.stem}-{job}{p.suffix or '.prom'}")
