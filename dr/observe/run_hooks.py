"""What ``dr backup``, ``dr restore`` and ``dr drill run`` tell the outside world when they finish.

The commands call these hooks once per run, success or failure:

* Prometheus metrics (``dr.observe.metrics``) — written to the configured
  node-exporter textfile (one file per job, ``textfile_for``) and pushed to
  the configured Pushgateway (job ``dr-backup`` / ``dr-drill``, grouped by
  policy or app — a backup or drill without a policy by its empty policy and
  its name or app, ``backup_metrics_group``, ``drill_metrics_group``;
  ``dr-restore`` by the restored backup's name); nothing when ``metrics`` is
  not configured.
* Kubernetes Events (``dr.observe.events``) on the namespaces the run was
  about: the backed-up namespaces, the restore's target namespaces, the
  drilled application's own namespaces (the scratch namespace is gone by
  then). A dry run changes nothing and reports nothing.

Emitting is best effort: a textfile that cannot be written, a Pushgateway
that does not answer or an Event the API refuses is logged as a warning and
returned, never raised — the run's own result and exit code stand. Event
messages are composed here from counts, object names and dr's own error
messages; per-item server reasons and object contents (which might carry
secret values) stay in the snapshot or report. A backup completed with
warnings says how many and quotes the first (masked like a hook's stderr, its
control and bidi characters escaped).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TypeVar

from dr.backup.run import BackupOutcome as BackupRunOutcome
from dr.backup.run import BackupRequest
from dr.backup.scope import is_glob
from dr.config import Config
from dr.drill.model import DrillReport, human_duration
from dr.errors import DrError
from dr.kube.client import KubeClient
from dr.observe import metrics
from dr.observe.events import MAX_MESSAGE, NamespaceNotFound, Reason, record_event
from dr.printable import printable
from dr.redact import redacted_head
from dr.repo.snapshots import Snapshot
from dr.restore.plan import RestoreOptions
from dr.restore.run import RestoreOutcome

log = logging.getLogger(__name__)

BACKUP_JOB = "dr-backup"
DRILL_JOB = "dr-drill"
RESTORE_JOB = "dr-restore"
MAX_LISTED = 5  # failed items named in an event message; the snapshot / report has them all

T = TypeVar("T")


@dataclass
class Emitter:
    """Where one run's metrics and events go; collects what could not be emitted."""

    config: Config
    kube: KubeClient | None
    warnings: list[str]

    def metrics(self, m: metrics.RunMetrics, job: str, file_job: str, grouping: dict[str, str]) -> None:
        cfg = self.config.metrics
        if cfg.textfile:
            self._try(lambda: m.write_textfile(metrics.textfile_for(cfg.textfile or "", file_job)))
        if cfg.pushgateway:
            self._try(lambda: m.push(cfg.pushgateway or "", job, grouping))

    def events(self, namespaces: list[str], reason: Reason, message: str) -> None:
        if self.kube is None:
            return
        for ns in dict.fromkeys(namespaces):
            self._try(partial(record_event, self.kube.api_client, ns, reason, message))

    def _try(self, emit: Callable[[], object]) -> None:
        try:
            emit()
        except NamespaceNotFound as e:
            # Nothing there to record on (a restore that failed before making its namespace, a
            # backup of a namespace that is gone): not a problem worth a warning in an incident.
            log.debug("%s: the namespace does not exist, no event", e.message)
        except DrError as e:
            self._warn(e.message)
        except Exception as e:  # an emitter's bug or a client library's surprise must not fail the run
            log.debug("emitting failed", exc_info=True)
            self._warn(f"{type(e).__name__}: {e}")

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        log.warning("%s (the run's result is not affected)", text)


def _failure_names(failures: list[str]) -> str:
    """``secrets shop: 403 …`` -> ``secrets shop``: which items, not the server's words."""
    names = [f.split(": ", 1)[0] for f in failures[:MAX_LISTED]]
    more = f" and {len(failures) - MAX_LISTED} more" if len(failures) > MAX_LISTED else ""
    return ", ".join(names) + more


def _problem_name(line: str) -> str:
    """``restore failed: secrets ns/db: failed (<server's words>)`` -> ``restore failed: secrets ns/db``.

    A drill's restore problems (``RestoreProblems.lines``) are ``kind: item: why``; like
    ``_failure_names``, the event names the item and leaves the why (the API server's or a
    webhook's words, which may quote the object) to the report.
    """
    kind, _, rest = line.partition(": ")
    return f"{kind}: {rest.split(': ', 1)[0]}" if rest else kind


def human_duration_s(seconds: float) -> str:
    return human_duration(timedelta(seconds=seconds))


def _warning_text(warning: str) -> str:
    """A backup's warning for an event: dr's words, but one may quote a hook's stderr, so what
    looks like a secret is masked; last in the message, where the event's 1 KiB cut falls, and
    on one line (a stderr tail has several). One may also quote a path from a volume (a mover's
    warning), anyone's text: its control and bidi characters are escaped (``dr.printable``), or
    ``kubectl get events`` prints them to a terminal as they are."""
    return printable(" ".join(redacted_head(warning, MAX_MESSAGE).split()))


def _error_text(e: BaseException) -> str:
    # DrError messages are dr's own words; anything else is named by type only.
    return e.message if isinstance(e, DrError) else f"unexpected {type(e).__name__}"


# --------------------------------------------------------------------------- backup


def backup_finished(
    config: Config,
    kube: KubeClient | None,
    request: BackupRequest,
    outcome: BackupRunOutcome | None,
    duration_seconds: float,
    error: BaseException | None = None,
    now: Callable[[], float] = time.time,
) -> list[str]:
    """Record one backup run: ``outcome`` when it finished, ``error`` when it raised. Returns warnings."""
    out = Emitter(config, kube, [])
    policy = request.policy or ""
    m = metrics.RunMetrics()
    if outcome is not None:
        snap = outcome.snapshot
        volumes = snap.app.get("volumes", [])
        data_bytes = sum(s.size for s in snap.streams.values()) + sum(
            int(v.get("bytes") or 0) for v in volumes
        )
        items = outcome.resources.total + sum(int(v.get("files") or 0) for v in volumes)
        errors, warnings = outcome.errors, outcome.warnings
        m.record_backup(metrics.RunOutcome(policy, request.name, now(), duration_seconds, data_bytes, items,
                                              len(errors), not errors, len(warnings)))  # fmt: skip
        namespaces = snap.namespaces
        what = f"backup {snap.short_id} ({request.name})"
        size = f"{outcome.resources.total} objects, {len(volumes)} volume(s), {data_bytes:,} bytes"
        if outcome.phase == "Failed":
            reason = Reason.BACKUP_FAILED
            message = f"{what} failed: nothing was backed up, {len(errors)} item(s) failed ({_failure_names(errors)})"
        elif errors:
            reason = Reason.BACKUP_PARTIALLY_FAILED
            message = (
                f"{what} partially failed: {len(errors)} item(s) failed ({_failure_names(errors)}); {size}"
            )
        elif warnings:
            reason = Reason.BACKUP_COMPLETED_WITH_WARNINGS
            message = (f"{what} completed with {len(warnings)} warning(s): {size} in "
                       f"{human_duration_s(duration_seconds)}; first: {_warning_text(warnings[0])}")  # fmt: skip
        else:
            reason = Reason.BACKUP_COMPLETED
            message = f"{what} completed: {size} in {human_duration_s(duration_seconds)}"
    else:
        m.record_backup(metrics.RunOutcome(policy, request.name, now(), duration_seconds, 0, 0, 0, False))
        namespaces = [n for n in request.scope.namespaces if not is_glob(n)]
        reason = Reason.BACKUP_FAILED
        message = f"backup {request.name} failed: {_error_text(error) if error else 'no result'}"
    out.metrics(m, BACKUP_JOB, *backup_metrics_group(request))
    out.events(namespaces, reason, message)
    return out.warnings


def backup_metrics_group(request: BackupRequest) -> tuple[str, dict[str, str]]:
    """The textfile job and the Pushgateway grouping key of a backup's metrics.

    A policy's runs share its group (``policy``) and file (``backup-<policy>``).
    A backup without a policy gets a group keyed by its series' own labels,
    ``policy=""`` and ``app=<name>`` (prometheus_client sends the empty value
    as ``policy@base64/=``, the Pushgateway's encoding), and the file
    ``backup.<name>`` ("." is in no policy name): an ad-hoc run — even one
    named like a policy — never replaces a policy's metrics, and the
    Pushgateway, which sets a group's labels on its series, keeps them as sent.
    """
    if request.policy:
        return f"backup-{request.policy}", {"policy": request.policy}
    return f"backup.{request.name}", {"policy": "", "app": request.name}


@contextmanager
def observe_backup(
    config: Config, kube: KubeClient | None, request: BackupRequest
) -> Iterator[Callable[[BackupRunOutcome], BackupRunOutcome]]:
    """``with observe_backup(…) as observed: outcome = observed(run_backup(…))`` — records on the way out."""
    t0 = time.monotonic()
    done: list[BackupRunOutcome] = []
    try:
        yield _keeper(done)
    except Exception as e:
        backup_finished(config, kube, request, None, time.monotonic() - t0, e)
        raise
    backup_finished(config, kube, request, done[-1] if done else None, time.monotonic() - t0)


def _keeper(done: list[T]) -> Callable[[T], T]:
    def keep(value: T) -> T:
        done.append(value)
        return value

    return keep


# --------------------------------------------------------------------------- restore


def restore_target_namespaces(snap: Snapshot, options: RestoreOptions) -> list[str]:
    """The namespaces a restore of ``snap`` writes into (its source namespaces, mapped)."""
    import fnmatch

    chosen = [n for n in snap.namespaces
              if not options.namespaces or any(fnmatch.fnmatchcase(n, p) for p in options.namespaces)]  # fmt: skip
    return [options.namespace_mapping.get(n, n) for n in chosen]


def restore_finished(
    config: Config,
    kube: KubeClient | None,
    snap: Snapshot,
    options: RestoreOptions,
    outcome: RestoreOutcome | None,
    duration_seconds: float,
    error: BaseException | None = None,
    now: Callable[[], float] = time.time,
) -> list[str]:
    """Record one restore (a dry run records nothing). Returns warnings."""
    if options.dry_run:
        return []
    out = Emitter(config, kube, [])
    m = metrics.RunMetrics()
    app = snap.name or snap.short_id
    if outcome is not None:
        r = outcome.resources
        volumes = outcome.volumes.volumes
        restored = sum(n for k, n in r.counts.items() if k in ("created", "updated", "recreated"))
        items = restored + sum(int(v.get("files") or 0) for v in volumes)
        data_bytes = sum(int(v.get("bytes") or 0) for v in volumes)
        namespaces = sorted({i.item.namespace for i in r.items if i.item.namespace}
                            | set(r.namespaces_created)) or restore_target_namespaces(snap, options)  # fmt: skip
        failures = [i.item.describe() for i in r.failures] + outcome.volumes.errors + outcome.dump_errors
        what = f"restore {r.restore_id} of backup {snap.short_id}"
        counts = ", ".join(f"{n} {k}" for k, n in sorted(r.counts.items()))
        if failures and outcome.nothing_restored:
            reason = Reason.RESTORE_FAILED
            message = f"{what} failed: all {len(failures)} item(s) failed ({_failure_names(failures)})"
        elif failures:
            reason = Reason.RESTORE_PARTIALLY_FAILED
            message = f"{what} partially failed: {len(failures)} item(s) failed ({_failure_names(failures)}); {counts}"
        else:
            reason = Reason.RESTORE_COMPLETED
            message = f"{what} completed: {counts} in {human_duration_s(duration_seconds)}"
        m.record_restore(metrics.RunOutcome(snap.policy or "", app, now(), duration_seconds, data_bytes, items,
                                                len(failures), not failures))  # fmt: skip
    else:
        m.record_restore(metrics.RunOutcome(snap.policy or "", app, now(), duration_seconds, 0, 0, 0, False))
        namespaces = restore_target_namespaces(snap, options)
        reason = Reason.RESTORE_FAILED
        message = f"restore of backup {snap.short_id} failed: {_error_text(error) if error else 'no result'}"
    out.metrics(m, RESTORE_JOB, f"restore-{app}", {"app": app})
    out.events(namespaces, reason, message)
    return out.warnings


@contextmanager
def observe_restore(
    config: Config, kube: KubeClient | None, snap: Snapshot, options: RestoreOptions
) -> Iterator[Callable[[RestoreOutcome], RestoreOutcome]]:
    """``with observe_restore(…) as observed: outcome = observed(run_restore(…))``."""
    t0 = time.monotonic()
    done: list[RestoreOutcome] = []
    try:
        yield _keeper(done)
    except Exception as e:
        restore_finished(config, kube, snap, options, None, time.monotonic() - t0, e)
        raise
    restore_finished(config, kube, snap, options, done[-1] if done else None, time.monotonic() - t0)


# --------------------------------------------------------------------------- drill


def drill_metrics_group(app: str, policy: str | None) -> tuple[str, dict[str, str]]:
    """The textfile job and the Pushgateway grouping key of a drill's metrics.

    A scheduled drill (run with ``--policy``, its drill's name) keeps the group
    ``app`` and the file ``drill-<app>``. A drill run by hand without a policy
    gets a group keyed by its series' own labels, ``app`` and ``policy=""``,
    and the file ``drill.<app>`` ("." is in no app name): it used to replace
    the scheduled drill's series, so a passing drill by hand hid a scheduled one
    that had stopped running. (As ``backup_metrics_group``.)
    """
    if policy:
        return f"drill-{app}", {"app": app}
    return f"drill.{app}", {"app": app, "policy": ""}


def drill_finished(
    config: Config, kube: KubeClient | None, report: DrillReport, policy: str | None = None
) -> list[str]:
    """Record one drill from its report (passed, failed or error). Returns warnings."""
    out = Emitter(config, kube, [])
    finished = (report.finished or report.started).timestamp()
    rto, rpo = report.rto_measured, report.rpo_measured
    m = metrics.RunMetrics()
    # NaN, not 0, when a drill measured nothing: 0 s would read as an instant recovery.
    m.record_drill(metrics.DrillOutcome(policy or "", report.app, finished, report.outcome == "passed",
                                        rto.total_seconds() if rto is not None else math.nan,
                                        rpo.total_seconds() if rpo is not None else math.nan))  # fmt: skip
    out.metrics(m, DRILL_JOB, *drill_metrics_group(report.app, policy))
    passed = sum(1 for s in report.steps if s.passed)
    what = f"drill {report.id} of {report.app}"
    backup = f"backup {report.backup_id[:8]}" if report.backup_id else "no backup"
    timing = f"RTO {human_duration(rto)} (objective {human_duration(report.objectives.rto)})"
    if report.outcome == "passed":
        reason = Reason.DRILL_PASSED
        message = f"{what} passed: {passed}/{len(report.steps)} step(s), {backup}, {timing}"
    elif report.outcome == "failed":
        reason = Reason.DRILL_FAILED
        failed = [s.name for s in report.steps if not s.passed]
        restore = report.restore.lines()
        why = [f"{len(restore)} restore problem(s) ({_problem_name(restore[0])})"] if restore else []
        why += [f"step(s) {', '.join(failed[:MAX_LISTED])} did not pass"] if failed else []
        message = (f"{what} failed: {'; '.join(why)} "
                   f"({passed}/{len(report.steps)} passed), {backup}, {timing}")  # fmt: skip
    else:
        reason = Reason.DRILL_FAILED
        message = f"{what} could not run: {report.error or 'unknown error'}"
    out.events(list(report.namespaces), reason, message)
    return out.warnings
