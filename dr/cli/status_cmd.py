"""``dr status``: is every application protected right now?

Per backup policy of dr.yaml: the last backup (any phase) and the last
successful one (phase ``Completed``), the latter's age against the policy's
RPO (``ok`` / ``STALE`` / ``none`` when there is no successful backup at all,
``unknown`` when its repository cannot be read), and the next run of its
schedule. Per drill policy: the last drill of its runbook's app, its outcome
and age, and the next run. Then the namespaces no backup policy covers
(``dr.deploy.policy_check``), which needs the cluster.

A last backup Completed with warnings (a selector that matched nothing, a
volume skipped) is still a backup and its age counts, but it is no plain
success: the table counts its warnings and a line under it quotes the first,
masked as in the event (the JSON counts the warnings of any last backup).

Status is informational: it always exits 0 once the configuration is valid.
What it cannot find out (an unreadable repository, an unreachable cluster) is
a warning in the output, not a failure — alerting belongs to the metrics
(``dr_backup_last_success_timestamp_seconds``), not to this command's exit
code. The pure part (``backup_policy_status``, ``drill_policy_status``) takes
the snapshots and reports, so it is tested without a repository.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from rich.console import Console
from rich.table import Table

from dr.cli.context import AppContext, app
from dr.cli.output import emit, output_option
from dr.config import BackupPolicy, DrillPolicy
from dr.cron import CronError, parse_cron
from dr.drill.model import DrillReport, human_duration
from dr.errors import DrError, ExitCode, InvalidInput
from dr.printable import printable
from dr.redact import redact
from dr.repo.snapshots import Snapshot

if TYPE_CHECKING:
    from dr.runbook.model import Runbook

log = logging.getLogger(__name__)

OK, STALE, NONE, UNKNOWN = "ok", "STALE", "none", "unknown"


# --------------------------------------------------------------------------- pure status of one policy


def next_run(schedule: str, time_zone: str | None, now: datetime) -> datetime | None:
    """When the policy's CronJob fires next (in its time zone, UTC by default); None if it never does."""
    try:
        tz = ZoneInfo(time_zone) if time_zone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        tz = UTC
    try:
        return parse_cron(schedule).next_after(now.astimezone(tz))
    except CronError:
        return None


def _backup_doc(snap: Snapshot | None) -> dict[str, Any] | None:
    if snap is None:
        return None
    # The count and the first, as Velero's status.warnings: `dr backups describe` lists them all.
    # Masked as in the BackupCompletedWithWarnings event: one may quote a hook's stderr, kept
    # unmasked by a dr from before hooks masked it (status goes to terminals and CronJob logs).
    warnings = list(snap.app.get("warnings") or [])
    return {"id": snap.id, "shortId": snap.short_id, "time": snap.time.isoformat(), "phase": snap.phase,
            "namespaces": snap.namespaces, "warnings": len(warnings),
            "firstWarning": redact(str(warnings[0])) if warnings else None}  # fmt: skip


def backup_policy_status(
    policy: BackupPolicy, backups: list[Snapshot] | None, now: datetime
) -> dict[str, Any]:
    """``backups``: every backup snapshot of the repository (None when it could not be read)."""
    mine = sorted((s for s in backups or [] if s.policy == policy.name), key=lambda s: (s.time, s.id))
    last = mine[-1] if mine else None
    good = [s for s in mine if s.phase == "Completed"]
    last_ok = good[-1] if good else None
    age = now - last_ok.time if last_ok else None
    skew = None
    if age is not None and age < timedelta(0):
        # Dated in the future: a clock (the mover pod's, or this one) is off. The backup is
        # as fresh as it gets; the skew is reported on its own, not as a negative age.
        skew, age = -age, timedelta(0)
    if backups is None:
        status = UNKNOWN
    elif age is None:
        status = NONE
    elif policy.rpo is not None and age > policy.rpo:
        status = STALE
    else:
        status = OK
    nxt = next_run(policy.schedule, policy.time_zone, now)
    return {
        "name": policy.name,
        "schedule": policy.schedule,
        "timeZone": policy.time_zone,
        "repository": policy.repository,
        "rpoSeconds": policy.rpo.total_seconds() if policy.rpo is not None else None,
        "lastBackup": _backup_doc(last),
        "lastSuccessful": _backup_doc(last_ok),
        "ageSeconds": round(age.total_seconds(), 3) if age is not None else None,
        "clockSkewSeconds": round(skew.total_seconds(), 3) if skew is not None else None,
        "status": status,
        "nextRun": nxt.isoformat() if nxt else None,
    }


def _drill_doc(last: DrillReport | None, ended: datetime | None) -> dict[str, Any] | None:
    if last is None:
        return None
    rto = last.rto_measured
    return {
        "id": last.id,
        "started": last.started.isoformat(),
        "finished": ended.isoformat() if ended else None,
        "outcome": last.outcome,
        "backupId": last.backup_id,
        "rtoSeconds": rto.total_seconds() if rto is not None else None,
        "rtoMet": last.rto_met,
        "rpoMet": last.rpo_met,
    }


def drill_policy_status(
    policy: DrillPolicy, app_name: str, reports: list[DrillReport] | None, now: datetime
) -> dict[str, Any]:
    """``reports``: every drill report of the repository (None when it could not be read)."""
    mine = sorted((r for r in reports or [] if r.app == app_name), key=lambda r: r.started)
    last = mine[-1] if mine else None
    ended = (last.finished or last.started) if last else None
    nxt = next_run(policy.schedule, policy.time_zone, now)
    return {
        "name": policy.name,
        "app": app_name,
        "runbook": policy.runbook,
        "schedule": policy.schedule,
        "timeZone": policy.time_zone,
        "backupPolicy": policy.backup_policy,
        "lastDrill": _drill_doc(last, ended),
        "outcome": last.outcome if last else (UNKNOWN if reports is None else NONE),
        "ageSeconds": round(max((now - ended).total_seconds(), 0), 3) if ended else None,
        "nextRun": nxt.isoformat() if nxt else None,
    }


# --------------------------------------------------------------------------- gathering


@dataclass
class _Sources:
    """Snapshots and reports per repository name, read once; problems become warnings."""

    ctx: AppContext
    # A line on a terminal while every snapshot or report is read (``read_progress``).
    progress: bool = False
    warnings: list[str] = field(default_factory=list)
    _backups: dict[str | None, list[Snapshot] | None] = field(default_factory=dict)
    _reports: dict[str | None, list[DrillReport] | None] = field(default_factory=dict)

    def _repo(self, name: str | None) -> Any:
        from dr.cli.repo_access import open_repository

        try:
            return open_repository(self.ctx, name)
        except DrError as e:
            self.warnings.append(f"cannot read repository {self._where(name)}: {e.message}")
            return None

    def _where(self, name: str | None) -> str:
        from dr.cli.repo_access import repository_config

        try:
            return repository_config(self.ctx, name).url
        except DrError:
            return name or "default"

    def _reading(self, repo: Any) -> AbstractContextManager[None]:
        from dr.cli.progress import read_progress

        return read_progress(repo, quiet=self.ctx.quiet or not self.progress)

    def backups(self, name: str | None) -> list[Snapshot] | None:
        if name not in self._backups:
            from dr.repo.snapshots import readable_snapshots

            repo = self._repo(name)
            snaps: list[Snapshot] | None = None
            if repo is not None:
                try:
                    with self._reading(repo):
                        snaps, bad = readable_snapshots(repo, "backup")
                except DrError as e:  # listing failed (storage): the policies' status is unknown
                    self.warnings.append(
                        f"cannot list the backups of repository {self._where(name)}: {e.message}"
                    )
                else:
                    # A damaged snapshot may be a policy's latest backup: its status could be
                    # wrong (older, or none), so say that something was left out.
                    if bad:
                        self.warnings.append(
                            f"{len(bad)} snapshot(s) of repository {self._where(name)} cannot be read "
                            "and are left out (dr repo check names them)"
                        )
            self._backups[name] = snaps
        return self._backups[name]

    def reports(self, name: str | None) -> list[DrillReport] | None:
        if name not in self._reports:
            repo = self._repo(name)
            reports: list[DrillReport] | None = None
            if repo is not None:
                from dr.drill.run import readable_reports  # the drill machinery only when reports are read

                try:
                    with self._reading(repo):
                        reports, bad = readable_reports(repo)
                except DrError as e:
                    self.warnings.append(
                        f"cannot list the drill reports of repository {self._where(name)}: {e.message}"
                    )
                else:
                    self.warnings += [
                        f"drill report {n[:16]} cannot be read: {why}" for n, why in bad.items()
                    ]
            self._reports[name] = reports
        return self._reports[name]


def policy_runbook(policy: DrillPolicy, config_dir: Path | None, warnings: list[str]) -> Runbook | None:
    """The runbook a drill policy drills, or None (with a warning) when it is missing or unreadable."""
    from dr.runbook.model import find_runbook, load_runbook

    p = find_runbook(policy.runbook, config_dir)
    if p is None:
        warnings.append(
            f"drill policy {policy.name}: runbook {policy.runbook} not found; using the policy's name"
        )
        return None
    try:
        return load_runbook(p)
    except InvalidInput as e:
        warnings.append(f"drill policy {policy.name}: runbook {p}: {e.message}")
        return None


def runbook_app(policy: DrillPolicy, config_dir: Path | None, warnings: list[str]) -> str:
    """The app a drill policy drills: its runbook's name (the policy's name if the runbook is unreadable)."""
    rb = policy_runbook(policy, config_dir, warnings)
    return rb.name if rb else policy.name


def unprotected_namespaces(ctx: AppContext, warnings: list[str]) -> list[str] | None:
    """Namespaces without a backup policy, or None (with a warning) when the cluster cannot be asked."""
    from dr.cli.kube_access import warn_once_if_unverified
    from dr.deploy.policy_check import namespaces_without_backup_policy
    from dr.kube.client import connect

    config = ctx.loaded.config
    try:
        kube = connect(ctx.kubeconfig, ctx.kube_context or config.kube_context, timeout=10)
    except DrError as e:
        warnings.append(f"namespaces without a backup policy: not checked ({e.message})")
        return None
    warn_once_if_unverified(kube)
    try:
        kube.probe()  # a server that never answers: a warning within a bounded time, not a hang
        return namespaces_without_backup_policy(kube.api_client, config)
    except DrError as e:
        warnings.append(f"namespaces without a backup policy: not checked ({e.message})")
    except Exception as e:  # unreachable cluster: urllib3 errors after its retries
        log.debug("cluster check failed", exc_info=True)
        warnings.append(
            f"namespaces without a backup policy: not checked (cluster unreachable: {type(e).__name__})"
        )
    finally:
        kube.close()
    return None


def gather(ctx: AppContext, now: datetime, *, progress: bool = False) -> dict[str, Any]:
    """``progress``: a line on a terminal while a repository's snapshots or reports are read."""
    loaded = ctx.loaded
    config = loaded.config
    config_dir = loaded.config_dir
    sources = _Sources(ctx, progress)
    backups = [backup_policy_status(p, sources.backups(p.repository), now) for p in config.backup_policies]
    drills = []
    for d in config.drill_policies:
        rb = policy_runbook(d, config_dir, sources.warnings)
        # Where `dr drill run --policy` saves the reports (also by the runbook's backup policy).
        reports = sources.reports(config.drill_repository(d, rb.spec.backup_policy if rb else None))
        drills.append(drill_policy_status(d, rb.name if rb else d.name, reports, now))
    for b in backups:
        if b["clockSkewSeconds"] is not None:
            sources.warnings.append(
                f"backup policy {b['name']}: the last successful backup is dated "
                f"{_age(b['clockSkewSeconds'])} in the future (clock skew?); its age is shown as 0"
            )
    unprotected = unprotected_namespaces(ctx, sources.warnings)
    return {
        "time": now.isoformat(),
        "config": loaded.source,
        "backupPolicies": backups,
        "drillPolicies": drills,
        "namespacesWithoutBackupPolicy": unprotected,
        "warnings": sources.warnings,
    }


# --------------------------------------------------------------------------- table view


def _age(seconds: float | None) -> str:
    return human_duration(timedelta(seconds=seconds)) if seconds is not None else "-"


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _warned(backup: dict[str, Any] | None) -> str:
    """``, 2 warning(s)`` for a Completed backup with warnings. A failed one may have some too (an
    identity that may read nothing cannot list services either), but its phase says more."""
    if backup is None or backup["phase"] != "Completed" or not backup["warnings"]:
        return ""
    return f", {backup['warnings']} warning(s)"


def _render(doc: dict[str, Any]) -> Any:
    def render(out: Console) -> None:
        if doc["backupPolicies"]:
            t = Table(box=None, header_style="bold", title="Backup policies", title_justify="left")
            for h in ("POLICY", "LAST BACKUP", "LAST SUCCESSFUL", "AGE", "RPO", "STATUS", "NEXT RUN"):
                t.add_column(h)
            for p in doc["backupPolicies"]:
                last, ok = p["lastBackup"], p["lastSuccessful"]
                rpo = _age(p["rpoSeconds"]) if p["rpoSeconds"] is not None else "-"
                t.add_row(
                    p["name"],
                    f"{last['shortId']} {_when(last['time'])} {last['phase']}{_warned(last)}" if last else "-",
                    f"{ok['shortId']} {_when(ok['time'])}" if ok else "-",
                    _age(p["ageSeconds"]), rpo, p["status"], _when(p["nextRun"]),
                )  # fmt: skip
            out.print(t)
            for p in doc["backupPolicies"]:
                last = p["lastBackup"]
                if _warned(last):
                    # soft_wrap: one line however long, for grep and for the CronJob's log.
                    out.print(f"backup policy {p['name']}: last backup {last['shortId']} has {last['warnings']} "
                              f"warning(s) (dr backups describe {last['shortId']} lists them): "
                              f"{printable(last['firstWarning'])}", soft_wrap=True)  # fmt: skip
        else:
            out.print(f"no backup policies in {doc['config']}", soft_wrap=True)
        if doc["drillPolicies"]:
            t = Table(box=None, header_style="bold", title="Drill policies", title_justify="left")
            for h in ("POLICY", "APP", "LAST DRILL", "OUTCOME", "AGE", "NEXT RUN"):
                t.add_column(h)
            for d in doc["drillPolicies"]:
                last = d["lastDrill"]
                t.add_row(d["name"], d["app"], _when(last["started"]) if last else "-", d["outcome"],
                          _age(d["ageSeconds"]), _when(d["nextRun"]))  # fmt: skip
            out.print(t)
        unprotected = doc["namespacesWithoutBackupPolicy"]
        if unprotected is None:
            out.print("namespaces without a backup policy: not checked", soft_wrap=True)
        elif unprotected:
            # soft_wrap: one line however long (rich cuts text at the console's width otherwise).
            out.print(f"namespaces without a backup policy: {', '.join(unprotected)}", soft_wrap=True)
        else:
            out.print("every namespace has a backup policy", soft_wrap=True)

    return render


@click.command("status")
@output_option()
def status(output: str) -> int:
    """Last backup and drill per policy, their age against the RPO, namespaces without a policy.

    \b
    Backup status: ok (last successful backup within the RPO), STALE (older),
    none (no successful backup), unknown (repository unreadable). A last
    backup completed with warnings says how many, and the first.
    Always exits 0 once the configuration is valid: status is informational.
    What cannot be checked (repository, cluster) is shown as a warning.
    """
    ctx = app()
    doc = gather(ctx, datetime.now(UTC), progress=output == "table")
    emit(doc, output, render=_render(doc))
    if output == "table" and not ctx.quiet:
        for w in doc["warnings"]:
            click.echo(f"warning: {w}", err=True)
    return ExitCode.OK


COMMANDS = [status]
