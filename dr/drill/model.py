"""Drill results: ``StepResult`` of one verification step and ``DrillReport`` of one drill run.

Owns the report format that drills write (to the repository's ``reports/``
and ``--report-dir``) and that reports and runbooks read back. Durations are
``timedelta`` in Python and seconds (floats) in JSON, so ``jq`` users get
numbers; field names are camelCase like the rest of dr's documents.

Reading is lenient (unknown fields are ignored) because reports are kept for
years and read by newer and older versions of dr; measured values derived
from others (RTO, RPO, whether objectives were met) are computed, written for
readers of the JSON, and recomputed on reading, never trusted from the file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field
from pydantic.alias_generators import to_camel

REPORT_KIND: Literal["DrillReport"] = "DrillReport"
REPORT_API_VERSION: Literal["dr.dev/v1"] = "dr.dev/v1"

Outcome = Literal["passed", "failed", "error"]


class ReportModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        ser_json_timedelta="float",
    )


class StepResult(ReportModel):
    name: str
    type: str
    passed: bool
    message: str = Field(description="why, in one line")
    duration: timedelta = Field(description="seconds in JSON")
    details: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(
        default=None, description="set when the check could not be carried out (API error, exec not possible)"
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="what the step could not do or check, without failing it (a data probe placed on no node)",
    )

    def failure_line(self) -> str:
        """The step in an error's details: ``step NAME (TYPE): message`` (drill run, runbook verify)."""
        return f"step {self.name} ({self.type}): {self.message}"

    def warning_lines(self) -> list[str]:
        """Its warnings among a run's: ``step NAME (TYPE): warning`` (drill run, runbook verify)."""
        return [f"step {self.name} ({self.type}): {w}" for w in self.warnings]


class Phases(ReportModel):
    """How long each part of the recovery took; None when the phase did not run."""

    restore_resources: timedelta | None = None
    restore_data: timedelta | None = None
    time_to_ready: timedelta | None = Field(
        default=None, description="None also when the workloads never became ready (see restore.notReady)"
    )
    # Loading the backup's database dumps into the ready pods: the app has no data before it ends.
    load_dumps: timedelta | None = None
    verification: timedelta | None = None

    def total(self) -> timedelta | None:
        parts = [
            p
            for p in (
                self.restore_resources,
                self.restore_data,
                self.time_to_ready,
                self.load_dumps,
                self.verification,
            )
            if p
        ]
        return sum(parts, timedelta()) if parts else None


class RestoreProblems(ReportModel):
    """What the drill's restore did not bring back: every entry fails the drill.

    Verification steps check what the runbook names; an object that failed to
    restore, a volume whose data did not arrive or a workload that never became
    ready is a restore that would not have worked in an incident, even when
    every step passed. Empty in reports written before this field existed.
    """

    failed_items: list[str] = Field(default_factory=list, description="objects that failed, with the reason")
    volume_errors: list[str] = Field(default_factory=list, description="volume data that was not restored")
    dump_errors: list[str] = Field(default_factory=list, description="database dumps that were not loaded")
    not_ready: list[str] = Field(
        default_factory=list, description="workloads not ready before the drill timeout, with their state"
    )
    missing_cluster_resources: list[str] = Field(
        default_factory=list,
        description="cluster-scoped objects of the backup that the cluster lacks: a drill does not create "
        "them, a real restore would need them",
    )

    def lines(self) -> list[str]:
        """One line per problem, with what kind of problem it is."""
        return (
            [f"restore failed: {x}" for x in self.failed_items]
            + [f"volume data: {x}" for x in self.volume_errors]
            + [f"dump: {x}" for x in self.dump_errors]
            + [f"not ready: {x}" for x in self.not_ready]
            + [f"missing cluster-scoped object: {x}" for x in self.missing_cluster_resources]
        )

    def __bool__(self) -> bool:
        return bool(self.lines())


class ReportObjectives(ReportModel):
    rpo: timedelta
    rto: timedelta


# A drill that could not make its scratch namespace had none to delete.
NONE_CREATED = "none was created"


class Cleanup(ReportModel):
    status: Literal["deleted", "kept", "failed", "pending"] = "pending"
    message: str | None = None

    @property
    def state(self) -> str:
        """The status for people: ``none was created`` where there was nothing to delete."""
        return NONE_CREATED if self.status == "deleted" and self.message == NONE_CREATED else self.status

    def summary(self) -> str:
        """The state and what it concerned (``deleted: drill-shop-…``)."""
        if self.state == NONE_CREATED:
            return NONE_CREATED
        return self.status + (f": {self.message}" if self.message else "")


class DrillReport(ReportModel):
    api_version: Literal["dr.dev/v1"] = REPORT_API_VERSION
    kind: Literal["DrillReport"] = REPORT_KIND
    id: str
    app: str = Field(description="the runbook's metadata.name")
    runbook: str = Field(description="path of the runbook file the drill ran")
    backup_id: str | None = None
    backup_time: AwareDatetime | None = None
    started: AwareDatetime
    finished: AwareDatetime | None = None
    namespace: str | None = Field(default=None, description="the scratch namespace")
    namespaces: dict[str, str] = Field(default_factory=dict, description="source -> scratch namespace")
    phases: Phases = Field(default_factory=Phases)
    objectives: ReportObjectives
    restore: RestoreProblems = Field(default_factory=RestoreProblems)
    warnings: list[str] = Field(
        default_factory=list, description="what the drill could not do or check, without failing it"
    )
    steps: list[StepResult] = Field(default_factory=list)
    outcome: Outcome
    error: str | None = Field(default=None, description="why the drill could not run (outcome error)")
    cleanup: Cleanup = Field(default_factory=Cleanup)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rto_measured(self) -> timedelta | None:
        """Restore of resources + restore of data + time to ready + loading dumps + verification.

        None when the workloads never became ready or the drill could not run to its end (outcome
        ``error``): the recovery was not reached, so there is no time to measure (the drill's timeout,
        or the phases before it broke off, would report a made-up RTO; a short one looks like a fast
        recovery in the monthly median and in ``dr_drill_rto_seconds``).
        """
        if self.restore.not_ready or self.outcome == "error":
            return None
        return self.phases.total()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rpo_measured(self) -> timedelta | None:
        """Age of the restored backup when the drill started: the data a real incident would lose."""
        if self.backup_time is None:
            return None
        return self.started - self.backup_time

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rto_met(self) -> bool | None:
        rto = self.rto_measured
        return None if rto is None else rto <= self.objectives.rto

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rpo_met(self) -> bool | None:
        rpo = self.rpo_measured
        return None if rpo is None else rpo <= self.objectives.rpo

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> DrillReport:
        return cls.model_validate_json(text)


def outcome_of(
    steps: list[StepResult], error: str | None = None, restore: RestoreProblems | None = None
) -> Outcome:
    """``error`` when the drill could not run, ``failed`` when the restore was incomplete or any step said no,
    else ``passed``."""
    if error is not None:
        return "error"
    if restore:
        return "failed"
    if not steps:
        return "error"
    return "passed" if all(s.passed for s in steps) else "failed"


def human_duration(d: timedelta | None) -> str:
    """``24h``, ``30m``, ``7d``, ``1h30m``: days only from two days up (a day's RPO reads as 24h)."""
    if d is None:
        return "-"
    secs = round(d.total_seconds())
    if secs < 60:
        return f"{d.total_seconds():.3g}s"
    units = (
        (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
        if secs >= 2 * 86400
        else (("h", 3600), ("m", 60), ("s", 1))
    )
    parts = []
    for unit, n in units:
        if secs >= n:
            parts.append(f"{secs // n}{unit}")
            secs %= n
    return "".join(parts[:2])


def utcnow() -> datetime:
    return datetime.now(UTC)
