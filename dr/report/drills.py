"""The monthly drill report: which apps proved they restore, how fast, and what is missing.

Owns the content of ``dr report drills``: from drill reports (``DrillReport``,
wherever they were read from) and the names of the apps that have a backup
policy, ``build_monthly_report`` computes per app the verdict of the month
(the latest drill decides; every drill is listed), each step's result, RTO
and RPO measured against the objectives, the apps with a backup policy but no
drill this month, and a 12-month trend (pass rate, RTO). ``render_json`` and
``render_markdown`` live here; the HTML page is ``dr.report.html``.

Months are calendar months in UTC; a drill belongs to the month it started in.
Pass rate counts every drill of a month (an error counts as not passed); the
RTO of an app in a month is that of its latest drill; the overall RTO of a
month is the median over all drills that measured one.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from dr.config import Config
from dr.drill.model import DrillReport, ReportModel, human_duration
from dr.errors import InvalidInput
from dr.markdown import md_code, md_text
from dr.runbook.model import Runbook, find_runbook, load_runbook

AppStatus = Literal["passed", "failed", "error", "missing"]
TREND_MONTHS = 12


# --------------------------------------------------------------------------- months


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """``YYYY-MM``; ValueError with the reason otherwise."""
        parts = text.strip().split("-")
        if len(parts) != 2 or len(parts[0]) != 4 or len(parts[1]) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"{text!r} is not a month (YYYY-MM, e.g. 2026-11)")
        m = cls(int(parts[0]), int(parts[1]))
        if not 1 <= m.month <= 12:
            raise ValueError(f"{text!r}: month {m.month} out of range 01-12")
        # No drill is older than the epoch; and a year 0 (or 10000) is no datetime, which
        # the report's titles and windows are.
        if not 1970 <= m.year <= 9999:
            raise ValueError(f"{text!r}: year {parts[0]} out of range 1970-9999")
        return m

    @classmethod
    def of(cls, t: datetime) -> Month:
        t = t.astimezone(UTC) if t.tzinfo else t
        return cls(t.year, t.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def shift(self, months: int) -> Month:
        n = self.year * 12 + (self.month - 1) + months
        return Month(n // 12, n % 12 + 1)

    @property
    def title(self) -> str:
        return datetime(self.year, self.month, 1).strftime("%B %Y")

    @property
    def short(self) -> str:
        return datetime(self.year, self.month, 1).strftime("%b %y")

    def last(self, n: int) -> list[Month]:
        """The ``n`` months ending with this one, oldest first."""
        return [self.shift(-i) for i in range(n - 1, -1, -1)]


# --------------------------------------------------------------------------- the report's model


class StepLine(ReportModel):
    name: str
    type: str
    passed: bool
    message: str
    error: str | None = None
    duration: timedelta


class DrillLine(ReportModel):
    id: str
    started: datetime
    outcome: Literal["passed", "failed", "error"]
    error: str | None = None
    backup_id: str | None = None
    backup_time: datetime | None = None
    namespace: str | None = None
    restore_resources: timedelta | None = None
    restore_data: timedelta | None = None
    time_to_ready: timedelta | None = None
    load_dumps: timedelta | None = None
    verification: timedelta | None = None
    rto_measured: timedelta | None = None
    rpo_measured: timedelta | None = None
    rto_met: bool | None = None
    rpo_met: bool | None = None
    cleanup: str
    # What the restore did not bring back (``RestoreProblems.lines``): each fails the drill.
    restore_problems: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    steps: list[StepLine]

    def phase_durations(self) -> list[tuple[str, timedelta | None]]:
        """The measured RTO's phases in order, as the Markdown and HTML reports name them."""
        return [
            ("restore resources", self.restore_resources),
            ("restore data", self.restore_data),
            ("ready", self.time_to_ready),
            ("load dumps", self.load_dumps),
            ("verification", self.verification),
        ]

    @classmethod
    def of(cls, r: DrillReport) -> DrillLine:
        return cls(
            id=r.id,
            started=r.started,
            outcome=r.outcome,
            error=r.error,
            backup_id=r.backup_id,
            backup_time=r.backup_time,
            namespace=r.namespace,
            restore_resources=r.phases.restore_resources,
            restore_data=r.phases.restore_data,
            time_to_ready=r.phases.time_to_ready,
            load_dumps=r.phases.load_dumps,
            verification=r.phases.verification,
            rto_measured=r.rto_measured,
            rpo_measured=r.rpo_measured,
            rto_met=r.rto_met,
            rpo_met=r.rpo_met,
            cleanup=r.cleanup.summary(),
            restore_problems=r.restore.lines(),
            warnings=r.warnings,
            steps=[
                StepLine(
                    name=s.name,
                    type=s.type,
                    passed=s.passed,
                    message=s.message,
                    error=s.error,
                    duration=s.duration,
                )
                for s in r.steps
            ],
        )


class TrendPoint(ReportModel):
    month: str
    drills: int
    passed: int
    pass_rate: float | None
    rto: timedelta | None


class AppMonth(ReportModel):
    app: str
    status: AppStatus
    has_backup_policy: bool
    rto_objective: timedelta | None = None
    rpo_objective: timedelta | None = None
    latest: DrillLine | None = None
    drills: list[DrillLine]
    trend: list[TrendPoint]

    @property
    def passed_count(self) -> int:
        return sum(1 for d in self.drills if d.outcome == "passed")


class Totals(ReportModel):
    apps: int = 0
    passed: int = 0
    failed: int = 0
    error: int = 0
    missing: int = 0
    drills: int = 0


class MonthlyReport(ReportModel):
    kind: Literal["DrillMonthlyReport"] = "DrillMonthlyReport"
    month: str
    generated: datetime
    totals: Totals
    apps: list[AppMonth]
    missing: list[str]
    trend: list[TrendPoint]
    # What could not be read (a damaged drill report): the report may lack drills, so its readers must know.
    warnings: list[str] = Field(default_factory=list)

    @property
    def title(self) -> str:
        return f"Restore drills — {Month.parse(self.month).title}"

    def attention(self) -> list[tuple[AppMonth, str]]:
        """Apps that need someone: (app, why in one line), worst first."""
        out: list[tuple[AppMonth, str]] = []
        for a in self.apps:
            if a.status == "error" and a.latest:
                out.append((a, f"drill could not run: {a.latest.error or 'unknown reason'}"))
            elif a.status == "failed" and a.latest:
                bad = [f"step {s.name}: {s.message}" for s in a.latest.steps if not s.passed]
                bad = a.latest.restore_problems + bad
                why = bad[0] if bad else "failed"
                more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
                out.append((a, why + more))
            elif a.status == "missing":
                out.append((a, "no drill this month, although it has a backup policy"))
            elif (
                a.status == "passed" and a.latest and (a.latest.rto_met is False or a.latest.rpo_met is False)
            ):
                misses = []
                if a.latest.rto_met is False:
                    misses.append(
                        f"RTO {human_duration(a.latest.rto_measured)} > {human_duration(a.rto_objective)}"
                    )
                if a.latest.rpo_met is False:
                    misses.append(
                        f"RPO {human_duration(a.latest.rpo_measured)} > {human_duration(a.rpo_objective)}"
                    )
                out.append((a, "passed, but missed " + " and ".join(misses)))
        rank = {"error": 0, "failed": 1, "missing": 2, "passed": 3}
        return sorted(out, key=lambda x: (rank[x[0].status], x[0].app))


# --------------------------------------------------------------------------- building


def _trend(reports: Sequence[DrillReport], months: list[Month], per_app: bool) -> list[TrendPoint]:
    points = []
    for m in months:
        these = sorted((r for r in reports if Month.of(r.started) == m), key=lambda r: r.started)
        passed = sum(1 for r in these if r.passed)
        rtos = [r.rto_measured for r in these if r.rto_measured is not None]
        if per_app:
            rto = these[-1].rto_measured if these else None
        else:
            rto = timedelta(seconds=statistics.median(t.total_seconds() for t in rtos)) if rtos else None
        points.append(
            TrendPoint(
                month=str(m),
                drills=len(these),
                passed=passed,
                pass_rate=passed / len(these) if these else None,
                rto=rto,
            )
        )
    return points


def build_monthly_report(
    reports: Iterable[DrillReport],
    month: Month,
    apps_with_backup_policy: Iterable[str] = (),
    *,
    generated: datetime | None = None,
    warnings: Iterable[str] = (),
) -> MonthlyReport:
    """The report of ``month`` from every drill report at hand (older ones feed the trend)."""
    all_reports = list(reports)
    months = month.last(TREND_MONTHS)
    window = [r for r in all_reports if months[0] <= Month.of(r.started) <= month]
    policy_apps = set(apps_with_backup_policy)
    by_app: dict[str, list[DrillReport]] = {}
    for r in window:
        by_app.setdefault(r.app, []).append(r)
    this_month = {
        app: sorted((r for r in rs if Month.of(r.started) == month), key=lambda r: r.started)
        for app, rs in by_app.items()
    }
    names = sorted({a for a, rs in this_month.items() if rs} | policy_apps)
    apps: list[AppMonth] = []
    for name in names:
        drills = this_month.get(name, [])
        latest = drills[-1] if drills else None
        # Objectives: the latest drill's, else the app's latest known (the runbook may have changed).
        known = sorted(by_app.get(name, []), key=lambda r: r.started)
        ref = latest or (known[-1] if known else None)
        apps.append(
            AppMonth(
                app=name,
                status=latest.outcome if latest else "missing",
                has_backup_policy=name in policy_apps,
                rto_objective=ref.objectives.rto if ref else None,
                rpo_objective=ref.objectives.rpo if ref else None,
                latest=DrillLine.of(latest) if latest else None,
                drills=[DrillLine.of(r) for r in reversed(drills)],
                trend=_trend(by_app.get(name, []), months, per_app=True),
            )
        )
    totals = Totals(
        apps=len(apps),
        passed=sum(1 for a in apps if a.status == "passed"),
        failed=sum(1 for a in apps if a.status == "failed"),
        error=sum(1 for a in apps if a.status == "error"),
        missing=sum(1 for a in apps if a.status == "missing"),
        drills=sum(len(a.drills) for a in apps),
    )
    return MonthlyReport(
        month=str(month),
        generated=generated or datetime.now(UTC),
        totals=totals,
        apps=apps,
        missing=[a.app for a in apps if a.status == "missing"],
        trend=_trend(window, months, per_app=False),
        warnings=list(warnings),
    )


# --------------------------------------------------------------------------- inputs


def read_report_dir(directory: Path) -> list[DrillReport]:
    """Drill reports from the ``*.json`` files of a directory (other JSON documents are skipped),
    each drill once: the same report in two files (copied, downloaded twice) is one drill, as
    the repository's reports are counted by id."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: not a directory")
    reports: dict[str, DrillReport] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            problems.append(f"{path}: not readable as JSON: {e}")
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "DrillReport":
            continue
        try:
            report = DrillReport.model_validate(doc)
        except ValidationError as e:
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "(document)"
                problems.append(f"{path}: {loc}: {err['msg']}")
            continue
        reports.setdefault(report.id, report)
    if problems:
        n = len(problems)
        raise InvalidInput(
            f"{directory}: {n} unreadable drill report{'s' if n != 1 else ''}", problems=problems
        )
    return list(reports.values())


def apps_with_backup_policy(config: Config, config_dir: Path | None = None) -> list[str]:
    """App names that should have drills: each drill policy's runbook app, and each backup policy no
    drill policy drills.

    A drill policy drills the backup policy it names, else the one its runbook names
    (``spec.backupPolicy``). A backup policy without a drill policy counts under its own name (that
    is the point: it is backed up but never drilled); a runbook that cannot be read falls back to
    the drill policy's name.
    """
    names: set[str] = set()
    drilled: set[str] = set()
    for d in config.drill_policies:
        runbook = _runbook(Path(d.runbook), config_dir)
        names.add(runbook.name if runbook else d.name)
        linked = d.backup_policy or (runbook.spec.backup_policy if runbook else None)
        if linked:
            drilled.add(linked)
    names.update(p.name for p in config.backup_policies if p.name not in drilled)
    return sorted(names)


def _runbook(path: Path, config_dir: Path | None) -> Runbook | None:
    # Relative to the config first, as dr deploy render (what runs) and dr status read it.
    p = find_runbook(path, config_dir)
    if p is None:
        return None
    try:
        return load_runbook(p)
    except InvalidInput:
        return None


# --------------------------------------------------------------------------- JSON and Markdown


def render_json(report: MonthlyReport) -> str:
    return report.model_dump_json(by_alias=True, indent=2) + "\n"


STATUS_WORDS = {"passed": "passed", "failed": "FAILED", "error": "ERROR", "missing": "no drill"}


def when(t: datetime | None) -> str:
    if t is None:
        return "-"
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def vs(measured: timedelta | None, objective: timedelta | None, met: bool | None) -> str:
    """``12m / 30m ok``: measured against objective, with the verdict in words (prints in black and white)."""
    if measured is None:
        return f"- / {human_duration(objective)}" if objective else "-"
    verdict = "" if met is None else (" ok" if met else " MISSED")
    return f"{human_duration(measured)} / {human_duration(objective)}{verdict}"


def render_markdown(report: MonthlyReport) -> str:
    t = report.totals
    out = [
        f"# {report.title}",
        "",
        f"Generated {when(report.generated)}. {t.apps} apps: {t.passed} passed, {t.failed} failed, "
        f"{t.error} could not run, {t.missing} without a drill; {t.drills} drills this month.",
        "",
    ]
    attention = report.attention()
    out += ["## Needs attention", ""]
    out += [f"- warning: {md_text(w)}" for w in report.warnings]
    if attention:
        out += [f"- **{md_text(a.app)}** ({STATUS_WORDS[a.status]}): {md_text(why)}" for a, why in attention]
    elif not report.warnings:
        out.append("Nothing: every app with a backup policy passed its drill within its objectives.")
    out.append("")

    out += [
        "## Apps",
        "",
        "| App | Result | Drills (passed) | RTO measured / objective | RPO measured / objective | Latest drill |",
        "|---|---|---|---|---|---|",
    ]
    for a in report.apps:
        d = a.latest
        out.append(
            f"| {md_text(a.app)} | {STATUS_WORDS[a.status]} | {len(a.drills)} ({a.passed_count}) "
            f"| {vs(d.rto_measured if d else None, a.rto_objective, d.rto_met if d else None)} "
            f"| {vs(d.rpo_measured if d else None, a.rpo_objective, d.rpo_met if d else None)} "
            f"| {when(d.started) if d else '-'} |"
        )
    out.append("")

    for a in report.apps:
        out += [f"## {md_text(a.app)}", ""]
        d = a.latest
        if d is None:
            out += [
                "No drill this month."
                + (" It has a backup policy: schedule a drill." if a.has_backup_policy else ""),
                "",
            ]
        else:
            out.append(
                f"Latest drill {md_code(d.id)} started {when(d.started)}: **{STATUS_WORDS[d.outcome]}**."
                + (f" Backup {md_code(d.backup_id)} taken {when(d.backup_time)}." if d.backup_id else "")
                + (
                    f" Scratch namespace {md_code(d.namespace)}, cleanup {md_text(d.cleanup)}."
                    if d.namespace
                    else ""
                )
            )
            out.append("")
            if d.error:
                out += [f"The drill could not run: {md_text(d.error)}", ""]
            if d.restore_problems:
                out += ["The restore was not complete:", ""]
                out += [f"- {md_text(p)}" for p in d.restore_problems]
                out.append("")
            if d.warnings:
                out += ["Warnings (the drill did not check these):", ""]
                out += [f"- {md_text(w)}" for w in d.warnings]
                out.append("")
            phases = d.phase_durations()
            shown = [f"{n} {human_duration(v)}" for n, v in phases if v is not None]
            if shown and d.rto_measured is not None:
                out += [
                    "RTO " + vs(d.rto_measured, a.rto_objective, d.rto_met) + ": " + " + ".join(shown) + ".",
                    "",
                ]
            elif shown:  # never ready, or broke off: what ran is no recovery time
                # Broken off (stopped by a signal, an error) it may have been ready: not "not recovered".
                why = (
                    "the drill did not run to its end"
                    if d.outcome == "error"
                    else "the app was not recovered"
                )
                out += [f"No RTO measured ({why}); phases that ran: " + ", ".join(shown) + ".", ""]
            if d.rpo_measured is not None:
                out += [
                    "RPO "
                    + vs(d.rpo_measured, a.rpo_objective, d.rpo_met)
                    + " (age of the backup at the drill).",
                    "",
                ]
            if d.steps:
                out += ["| Step | Type | Result | Time | Why |", "|---|---|---|---|---|"]
                for s in d.steps:
                    res = "passed" if s.passed else ("ERROR" if s.error else "FAILED")
                    out.append(
                        f"| {md_text(s.name)} | {md_text(s.type)} | {res} | {human_duration(s.duration)} | {md_text(s.message)} |"
                    )
                out.append("")
            if len(a.drills) > 1:
                out += ["All drills this month:", ""]
                out += [
                    f"- {when(x.started)} {md_code(x.id)}: {STATUS_WORDS[x.outcome]}, RTO {human_duration(x.rto_measured)}"
                    for x in a.drills
                ]
                out.append("")
        trend = [p for p in a.trend if p.drills]
        if trend:
            out.append(
                "Trend: "
                + ", ".join(f"{p.month} {p.passed}/{p.drills} RTO {human_duration(p.rto)}" for p in trend)
                + "."
            )
            out.append("")

    out += [
        f"## Trend (last {TREND_MONTHS} months)",
        "",
        "| Month | Drills | Passed | Pass rate | Median RTO |",
        "|---|---|---|---|---|",
    ]
    for p in report.trend:
        rate = f"{p.pass_rate:.0%}" if p.pass_rate is not None else "-"
        out.append(f"| {p.month} | {p.drills} | {p.passed} | {rate} | {human_duration(p.rto)} |")
    out.append("")
    return "\n".join(out)
