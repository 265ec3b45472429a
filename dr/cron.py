"""Cron expressions (the five-field Kubernetes CronJob dialect) and durations.

Owns parsing and validation only, plus ``next_after`` for ``dr status`` and
``dst_effects`` (runs a daylight-saving change skips or repeats) for ``dr config
validate`` and ``dr deploy render``; the schedule itself is run by Kubernetes
CronJobs, never by dr. Accepted: five
fields (minute hour day-of-month month day-of-week) with ``*``, ``a-b``,
``*/n``, ``a-b/n``, lists, month and weekday names, and the macros
``@yearly @annually @monthly @weekly @daily @midnight @hourly`` — what the
CronJob controller accepts (robfig/cron standard parser), except ``@every
DURATION``: the controller runs that a fixed delay after the CronJob's last
scheduled run (status.lastScheduleTime, which dr never sees), not at set times,
so dr could not tell when it runs next; it is refused with the cron expression
to write instead.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_MONTH_NAMES = [m.capitalize() for m in _MONTHS]
_MONTH_DAYS = dict(zip(range(1, 13), (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31), strict=True))
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    # 0-6 as robfig/cron's bounds: the API server refuses 7 ("above maximum (6)").
    ("day of week", 0, 6, _DAYS),
)


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_star: bool
    dow_star: bool

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        # Vixie cron (and robfig/cron): when both day fields are restricted, either may match.
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def matches(self, t: datetime) -> bool:
        return (
            t.minute in self.minutes
            and t.hour in self.hours
            and t.month in self.months
            and self._day_matches(t)
        )

    def _next_wall(self, cur: datetime, limit: datetime) -> datetime | None:
        """The first matching wall-clock minute at or after naive ``cur``, before ``limit``."""
        while cur < limit:
            if cur.month not in self.months:
                cur = (cur.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(cur):
                cur = cur.replace(hour=0, minute=0) + timedelta(days=1)
            elif cur.hour not in self.hours:
                cur = cur.replace(minute=0) + timedelta(hours=1)
            elif cur.minute not in self.minutes:
                cur += timedelta(minutes=1)
            else:
                return cur
        return None

    def next_after(self, t: datetime) -> datetime:
        """The first matching minute strictly after ``t`` (searches up to 5 years).

        For an aware ``t``: the first instant whose wall-clock time in ``t``'s zone matches,
        as robfig/cron (the CronJob controller) finds it — a time a spring-forward skips
        does not fire that day; one a fall-back repeats may fire in either pass."""
        tz = t.tzinfo
        wall = t.replace(tzinfo=None, second=0, microsecond=0)
        if tz is None:
            found = self._next_wall(wall + timedelta(minutes=1), wall + timedelta(days=366 * 5))
            if found is None:
                raise CronError(f"{self.expression!r} never fires")
            return found
        # Wall-clock time is not monotonic around a fall-back: the next instant may have an
        # earlier wall time than now's, so look from a few hours (more than any offset change)
        # back and keep the earliest instant after ``t`` among the real ones.
        # Instants are compared in UTC: aware datetimes of one zone compare by wall time.
        slack = timedelta(hours=3)
        limit = wall + timedelta(days=366 * 5)
        after = t.astimezone(UTC)
        cur, best, best_wall = wall - slack, None, None
        while (w := self._next_wall(cur, limit)) is not None:
            if best_wall is not None and w > best_wall + slack:
                break
            for fold in (0, 1):
                instant = w.replace(tzinfo=tz, fold=fold).astimezone(UTC)
                real = instant.astimezone(tz).replace(tzinfo=None) == w  # not in a spring-forward gap
                if real and instant > after and (best is None or instant < best):
                    best, best_wall = instant, w
            cur = w + timedelta(minutes=1)
        if best is None:
            raise CronError(f"{self.expression!r} never fires")
        return best.astimezone(tz)


@dataclass(frozen=True)
class DstEffect:
    """Runs of a schedule that a change of the clocks skips or repeats, the first day it happens.

    ``skipped``: the clocks jump from ``clock_from`` forward to ``clock_to`` and ``times`` do
    not exist that day; the CronJob controller (robfig/cron, ``Cron.next_after``) runs only
    instants whose wall time matches, so those runs do not happen. ``twice``: the clocks go
    back and ``times`` come twice; both instants match, so each run happens twice."""

    kind: Literal["skipped", "twice"]
    day: date
    times: tuple[str, ...]
    clock_from: str
    clock_to: str


# Long enough for a rule's date to go through every weekday and day of the month (the
# Gregorian calendar repeats every 28 years in 1901-2099): '30 2 25 3 *' in Europe/Berlin
# hits the spring-forward only in the years its last Sunday of March is the 25th.
DST_YEARS = 28


@functools.lru_cache(maxsize=64)
def _offset_changes(tz: tzinfo, start: date, years: int) -> tuple[tuple[datetime, timedelta, timedelta], ...]:
    """(UTC instant, offset before, offset after) of each change of ``tz``'s UTC offset."""
    t = datetime(start.year, start.month, start.day, tzinfo=UTC)
    end = t.replace(year=t.year + years)
    day = timedelta(days=1)

    def offset(at: datetime) -> timedelta:
        return at.astimezone(tz).utcoffset() or timedelta(0)

    out = []
    before = offset(t)
    while t < end:
        after = offset(t + day)
        if after != before:
            # Zones change on a whole minute; find it within the day.
            lo, hi = 0, 24 * 60
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(t + timedelta(minutes=mid)) == before else (lo, mid)
            out.append((t + timedelta(minutes=hi), before, after))
        t, before = t + day, after
    return tuple(out)


def dst_effects(cron: Cron, tz: tzinfo | None, start: datetime, years: int = DST_YEARS) -> list[DstEffect]:
    """The first day (from ``start``, within ``years``) a change of ``tz``'s clocks skips runs
    of ``cron``, and the first it runs some twice; none in UTC or a zone without changes.

    A run is not counted when the schedule also runs the length of the change later (every
    hour, every 15 minutes): at a spring-forward the clock jumps onto that run, at a
    fall-back the repeated hour is one more hour of runs, and the runs keep their spacing
    in real time. A daily 02:30 does not: it has no run that day, or two an hour apart."""
    if tz is None:
        return []
    found: dict[str, DstEffect] = {}
    for at, before, after in _offset_changes(tz, start.date(), years):
        kind: Literal["skipped", "twice"] = "skipped" if after > before else "twice"
        if kind in found:
            continue
        # The wall times the change jumps over (forward) or that come again (back).
        first = (at + min(before, after)).replace(tzinfo=None)
        shift = abs(after - before)
        times = [
            w
            for m in range(int(shift.total_seconds()) // 60)
            if cron.matches(w := first + timedelta(minutes=m)) and not cron.matches(w + shift)
        ]
        if times:
            wall_from, wall_to = (at + before).replace(tzinfo=None), (at + after).replace(tzinfo=None)
            found[kind] = DstEffect(
                kind,
                first.date(),
                tuple(f"{w:%H:%M}" for w in times),
                f"{wall_from:%H:%M}",
                f"{wall_to:%H:%M}",
            )
        if len(found) == 2:
            break
    return sorted(found.values(), key=lambda e: e.day)


def _parse_value(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> int:
    low = text.lower()
    if low in names:
        return names[low]
    # ASCII only: str.isdigit() takes '٣' and '²', which Go's strconv.Atoi refuses.
    if not (text.isascii() and text.isdigit()):
        raise CronError(f"{name}: {text!r} is not a number" + (" or a name" if names else ""))
    v = int(text)
    if not lo <= v <= hi:
        raise CronError(f"{name} {v} out of range {lo}-{hi}")
    return v


def _parse_field(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> tuple[set[int], bool]:
    """The values of one field, and whether it counts as ``*`` for the day-of-month /
    day-of-week rule: as robfig/cron, when any element is ``*`` or ``?`` with a step of
    at most 1 (``*/1`` and ``1,*`` too; ``*/2`` not)."""
    out: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise CronError(f"{name}: empty list element in {text!r}")
        rng, _, step_s = part.partition("/")
        step = 1
        if step_s:
            if not (step_s.isascii() and step_s.isdigit()) or int(step_s) == 0:
                raise CronError(f"{name}: bad step {step_s!r}")
            step = int(step_s)
        if rng in ("*", "?"):
            a, b = lo, hi
            star = star or step == 1
        elif "-" in rng:
            a_s, _, b_s = rng.partition("-")
            a, b = _parse_value(a_s, name, lo, hi, names), _parse_value(b_s, name, lo, hi, names)
            if a > b:
                raise CronError(f"{name}: range {rng!r} goes backwards")
        else:
            a = _parse_value(rng, name, lo, hi, names)
            b = hi if step_s else a
        out.update(range(a, b + 1, step))
    return out, star


# Go's time.ParseDuration, which robfig/cron reads '@every' with.
_GO_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _every_as_cron(duration: str) -> str | None:
    """The cron expression that runs at ``duration``'s interval, at set times: for a
    divisor of an hour in minutes or of a day in hours; None for any other."""
    pos, seconds = 0, 0.0
    for m in _GO_DURATION_RE.finditer(duration):
        if m.start() != pos:
            return None
        seconds += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(duration) or not duration or seconds % 60:
        return None
    minutes = int(seconds) // 60
    if 0 < minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours, rest = divmod(minutes, 60)
    if rest or not 0 < hours <= 24 or 24 % hours:
        return None
    return "0 * * * *" if hours == 1 else "0 0 * * *" if hours == 24 else f"0 */{hours} * * *"


def _every_refusal(expr: str) -> str:
    # Kubernetes accepts it (robfig/cron's ConstantDelaySchedule: the last scheduled time plus
    # the duration); what dr cannot do is say when that is — dr status names the next run.
    same = _every_as_cron(expr.removeprefix("@every ").strip())
    instead = f"write {same!r}" if same else "write a five-field cron expression"
    example = "" if same else " (every 6 hours: '0 */6 * * *')"
    return (
        "@every is not supported: the CronJob controller runs it that long after the CronJob's last run "
        f"(or creation), not at set times, so dr cannot tell when it runs next; {instead} instead{example}"
    )


def parse_cron(expression: str) -> Cron:
    expr = expression.strip()
    if expr.startswith("@"):
        if expr != expression:
            # robfig/cron takes a macro only as the whole schedule: ' @daily' is one field
            # too few, '@daily ' an unrecognized descriptor (the CronJob is rendered as written).
            raise CronError(f"no spaces around the macro {expr!r}")
        if expr.startswith("@every "):
            raise CronError(_every_refusal(expr))
        if expr not in _MACROS:
            raise CronError(f"unknown macro {expr!r} (known: {', '.join(sorted(_MACROS))})")
        expr = _MACROS[expr]
    if expr.upper().startswith(("TZ=", "CRON_TZ=")):
        # Kubernetes rejects TZ inside the schedule; it has spec.timeZone instead.
        raise CronError("time zones go in the policy's timeZone field, not in the schedule")
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    parsed = [
        _parse_field(f, n, lo, hi, names) for f, (n, lo, hi, names) in zip(fields, _FIELDS, strict=True)
    ]
    days, months = parsed[2][0], parsed[3][0]
    if parsed[4][1] and not any(d <= _MONTH_DAYS[m] for d in days for m in months):
        # Kubernetes takes it, and the CronJob never runs: a backup that silently never happens.
        named = ",".join(_MONTH_NAMES[m - 1] for m in sorted(months))
        raise CronError(f"never fires: no month it names ({named}) has day {min(days)}")
    return Cron(
        expression=expression,
        minutes=frozenset(parsed[0][0]),
        hours=frozenset(parsed[1][0]),
        days=frozenset(parsed[2][0]),
        months=frozenset(parsed[3][0]),
        weekdays=frozenset(parsed[4][0]),
        dom_star=parsed[2][1],
        dow_star=parsed[4][1],
    )


# ASCII digits only: \d and str.isdigit() take other scripts' digits ('\u0663s' was 3s).
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> timedelta:
    """Parse ``90s``, ``15m``, ``1h30m``, ``7d``, ``2w`` (or a number of seconds)."""
    if isinstance(text, int | float):
        if math.isnan(text) or text < 0:  # (inf overflows timedelta: "too long" to the caller)
            raise ValueError("duration must be a number of seconds, not negative")
        return timedelta(seconds=text)
    s = text.strip()
    if s.isascii() and s.isdigit():
        return timedelta(seconds=int(s))
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {text!r} (examples: 90s, 15m, 1h30m, 7d)")
    return timedelta(seconds=total)


def format_duration(d: timedelta | float) -> str:
    """Short human form: ``1d2h``, ``3m20s``, ``0.4s``."""
    secs = d.total_seconds() if isinstance(d, timedelta) else float(d)
    if secs < 10:
        return f"{secs:.1f}s"
    secs_i = round(secs)
    parts = []
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs_i >= n:
            parts.append(f"{secs_i // n}{unit}")
            secs_i %= n
    return "".join(parts[:2])
