"""Cron expressions and durations (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.cron import CronError, format_duration, parse_cron, parse_duration


# From Friday 2026-11-27 12:00, the next minute each expression fires.
@pytest.mark.parametrize(
    ("expr", "fires"),
    [
        ("* * * * *", datetime(2026, 11, 27, 12, 1)),
        ("*/5 * * * *", datetime(2026, 11, 27, 12, 5)),
        ("0 2 * * *", datetime(2026, 11, 28, 2, 0)),
        ("15 1 1,15 * MON-FRI", datetime(2026, 11, 30, 1, 15)),  # either day field: Monday
        ("0 0 1 jan *", datetime(2027, 1, 1, 0, 0)),
        ("@daily", datetime(2026, 11, 28, 0, 0)),
        ("0-30/10 8-18 * * 1-5", datetime(2026, 11, 27, 12, 10)),
        ("0 4 1 * *", datetime(2026, 12, 1, 4, 0)),
        ("0 0 * * 6", datetime(2026, 11, 28, 0, 0)),
        ("0 0 ? * SUN", datetime(2026, 11, 29, 0, 0)),  # robfig/cron takes '?' as '*'
        ("0 0 29 2 *", datetime(2028, 2, 29, 0, 0)),  # leap years only
        ("0 0 30 2 fri", datetime(2027, 2, 5, 0, 0)),  # either day field: every Friday in February
        ("0 0 31 4,5 *", datetime(2027, 5, 31, 0, 0)),
        ("@annually", datetime(2027, 1, 1, 0, 0)),
        ("@midnight", datetime(2026, 11, 28, 0, 0)),
        ("@weekly", datetime(2026, 11, 29, 0, 0)),
        ("@monthly", datetime(2026, 12, 1, 0, 0)),
        ("@hourly", datetime(2026, 11, 27, 13, 0)),
        ("@yearly", datetime(2027, 1, 1, 0, 0)),
        ("0 0 1 JAN-DEC/3 sun-sat", datetime(2027, 1, 1, 0, 0)),
        (" 0 2 * * * ", datetime(2026, 11, 28, 2, 0)),  # Go's strings.Fields ignores them
    ],
)
def test_valid(expr: str, fires: datetime) -> None:
    assert parse_cron(expr).next_after(datetime(2026, 11, 27, 12, 0)) == fires


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("61 * * * *", "minute 61 out of range 0-59"),
        ("* 24 * * *", "hour 24 out of range 0-23"),
        ("* * 0 * *", "day of month 0 out of range 1-31"),
        ("* * * 13 *", "month 13 out of range 1-12"),
        # Kubernetes (robfig/cron) refuses 7 for Sunday: "End of range (7) above maximum (6)".
        ("0 0 * * 7", "day of week 7 out of range 0-6"),
        ("0 0 * * 5-7", "day of week 7 out of range 0-6"),
        ("\u0663 * * * *", "not a number"),  # an Arabic-Indic 3: Go's Atoi refuses it
        ("*/\u0663 * * * *", "bad step"),
        ("* * * *", "expected 5 fields"),
        ("*/0 * * * *", "bad step"),
        ("5-1 * * * *", "goes backwards"),
        ("@sometimes", "unknown macro"),
        ("x * * * *", "not a number"),
        ("CRON_TZ=UTC 0 * * * *", "timeZone"),
        (" @daily", "no spaces around the macro '@daily'"),
        ("@hourly\n", "no spaces around the macro '@hourly'"),
        ("TZ=Europe/Berlin 0 * * * *", "timeZone"),
        ("0 0 * * * *", "expected 5 fields"),  # seconds: Kubernetes' parser has none
        # accepted by Kubernetes, but the CronJob never runs
        ("0 0 30 2 *", r"never fires: no month it names \(Feb\) has day 30"),
        ("0 0 31 apr,jun,sep,nov *", r"never fires: no month it names \(Apr,Jun,Sep,Nov\) has day 31"),
    ],
)
def test_invalid(expr: str, reason: str) -> None:
    with pytest.raises(CronError, match=reason):
        parse_cron(expr)


def test_next_after() -> None:
    c = parse_cron("15 1 * * *")
    assert c.next_after(datetime(2026, 11, 27, 1, 15)) == datetime(2026, 11, 28, 1, 15)
    assert c.next_after(datetime(2026, 11, 27, 0, 0)) == datetime(2026, 11, 27, 1, 15)
    monthly = parse_cron("0 4 1 * *")
    assert monthly.next_after(datetime(2026, 12, 15)) == datetime(2027, 1, 1, 4, 0)
    weekday = parse_cron("0 9 * * mon")
    assert weekday.next_after(datetime(2026, 11, 27)) == datetime(2026, 11, 30, 9, 0)  # a Friday -> Monday
    # both day fields restricted: either matches (Vixie cron)
    either = parse_cron("0 0 13 * fri")
    assert either.next_after(datetime(2026, 11, 1)) == datetime(2026, 11, 6)


def test_day_fields_star_as_robfig() -> None:
    # robfig/cron counts '*/1' and a list holding '*' as '*': the day fields are ANDed
    # (Mondays only), not ORed (every day); '*/2' is a restriction (either may match).
    monday = datetime(2026, 11, 30)
    for expr in ("0 0 */1 * mon", "0 0 1,* * mon", "0 0 * * mon"):
        assert parse_cron(expr).next_after(datetime(2026, 11, 24)) == monday, expr
    assert parse_cron("0 0 */2 * mon").next_after(datetime(2026, 11, 24)) == datetime(2026, 11, 25)


@given(st.integers(min_value=0, max_value=59), st.integers(min_value=0, max_value=23))
def test_daily_fires_every_day(minute: int, hour: int) -> None:
    c = parse_cron(f"{minute} {hour} * * *")
    t = datetime(2026, 3, 1)
    first = c.next_after(t)
    assert c.next_after(first) - first == timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        ("300", 300),
        ("1.5h", 5400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


# Non-ASCII digits: '\u0663' (Arabic-Indic 3) read as 3, and '3\u0663' as 33 seconds.
@pytest.mark.parametrize(
    "text", ["", "soon", "5 minutes", "1h foo", "-5m", "h", "\u0663s", "3\u0663", "1\uff15m"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [float("nan"), float("-inf"), -1])
def test_bad_numeric_durations(value: float) -> None:
    # NaN raised Python's own "cannot convert float NaN to integer".
    with pytest.raises(ValueError, match="duration must be a number of seconds, not negative"):
        parse_duration(value)


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=10**6), st.sampled_from(["s", "m", "h", "d", "w"])),
        min_size=1,
    )
)
def test_duration_parts_add_up(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    assert parse_duration(text) == timedelta(seconds=sum(n * unit[u] for n, u in parts))


def test_format_duration() -> None:
    assert format_duration(3.25) == "3.2s"
    assert format_duration(timedelta(hours=26, minutes=5)) == "1d2h"
    assert format_duration(200) == "3m20s"


BERLIN = ZoneInfo("Europe/Berlin")


def _berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def test_next_after_skips_a_time_the_spring_forward_skips() -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST: 02:30 does not exist that day, and the
    # CronJob (robfig/cron) does not run then; it runs the next day at 02:30 CEST.
    nxt = parse_cron("30 2 * * *").next_after(_berlin(2026, 3, 28, 12, 0))
    assert nxt.astimezone(UTC) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_next_after_is_after_now_in_the_repeated_fall_back_hour() -> None:
    # 2026-10-25 03:00 CEST goes back to 02:00 CET: at 02:10 CET (the second 02:10, fold=1)
    # the next ':30' is 02:30 CET, not 02:30 CEST (an hour before now).
    now = _berlin(2026, 10, 25, 2, 10, fold=1)
    nxt = parse_cron("30 * * * *").next_after(now)
    assert nxt.astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    # ...and in the first pass (02:50 CEST) the next ':00' is 02:00 CET, an hour of wall time back.
    first = parse_cron("0 * * * *").next_after(_berlin(2026, 10, 25, 2, 50))
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["* * * * *", "*/15 * * * *", "30 2 * * *", "0 * * * *", "0 3 * * 0", "45 1 1 * *"]),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Sao_Paulo", "UTC"]),
    st.one_of(
        st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
        # around the 2026 offset changes of these zones, where wall time jumps or repeats
        st.builds(
            lambda at, minutes: at + timedelta(minutes=minutes),
            st.sampled_from(
                [
                    datetime(2026, 3, 29, 1, tzinfo=UTC),
                    datetime(2026, 10, 25, 1, tzinfo=UTC),
                    datetime(2026, 3, 8, 7, tzinfo=UTC),
                    datetime(2026, 11, 1, 6, tzinfo=UTC),
                    datetime(2026, 4, 4, 15, tzinfo=UTC),
                    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
                ]
            ),
            st.integers(min_value=-300, max_value=300),
        ),
    ),
)
def test_next_after_is_the_first_matching_instant(expr: str, zone: str, now: datetime) -> None:
    """Against a brute force over absolute minutes: the first instant after ``now`` whose
    wall-clock time in the zone matches (robfig/cron's rule)."""
    tz = ZoneInfo(zone)
    c = parse_cron(expr)
    nxt = c.next_after(now.astimezone(tz))
    assert nxt > now
    cur = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while cur < nxt:
        assert not c.matches(cur.astimezone(tz)), cur
        cur += timedelta(minutes=1)
    assert c.matches(nxt.astimezone(tz))
