"""Retention: which snapshots a keep-last/within/hourly/daily/weekly/monthly/yearly policy keeps.

Pure logic over (id, time) pairs, grandfather-father-son as in restic: within
one group, ``keep_last N`` keeps the N newest; ``keep_daily N`` keeps the
newest snapshot of each of the N most recent days that have one; likewise
for hours, ISO weeks, months and years — counted on the clock of the backups'
policy's ``timeZone`` (UTC when it has none), where its schedule runs: a backup at
00:30 Europe/Berlin (23:30 UTC the day before) is of its Berlin day, month and
year. ``keep_within D`` keeps every snapshot made at most D before the group's
newest (not before now, as restic: a policy whose backups stopped does not lose
them all as time passes). A snapshot kept by any rule is kept,
with every reason recorded. A policy with no rule keeps everything (never
"delete all" by omission).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta = timedelta(0)

    def empty(self) -> bool:
        return not any(
            (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly, self.within)
        )


@dataclass
class Decision:
    id: str
    time: datetime
    keep: bool
    reasons: list[str] = field(default_factory=list)


_BUCKETS: list[tuple[str, Callable[[datetime], tuple[object, ...]]]] = [
    # With the offset: the hour a fall-back repeats is two hours, not one.
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour, t.utcoffset())),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: t.isocalendar()[:2]),
    ("monthly", lambda t: (t.year, t.month)),
    ("yearly", lambda t: (t.year,)),
]


def apply_policy(items: Sequence[tuple[str, datetime]], policy: Policy, zone: tzinfo = UTC) -> list[Decision]:
    """Decisions for ``items`` (any order), newest first; hours, days, weeks, months
    and years as read on the clock of ``zone``."""
    ordered = sorted(items, key=lambda it: (it[1], it[0]), reverse=True)
    decisions = [Decision(i, t, False) for i, t in ordered]
    if policy.empty():
        for d in decisions:
            d.keep = True
            d.reasons.append("no retention rule")
        return decisions
    for d in decisions[: policy.last]:
        d.keep = True
        d.reasons.append("last")
    if policy.within and decisions:
        # restic's --keep-within: counted back from the group's newest snapshot.
        since = decisions[0].time - policy.within
        for d in decisions:
            if d.time >= since:
                d.keep = True
                d.reasons.append("within")
    for name, bucket in _BUCKETS:
        n = getattr(policy, name)
        seen: set[tuple[object, ...]] = set()
        for d in decisions:
            if len(seen) >= n:
                break
            b = bucket(d.time.astimezone(zone))
            if b not in seen:
                seen.add(b)
                d.keep = True
                d.reasons.append(name)
    return decisions
