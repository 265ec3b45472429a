"""Cron expressions and durations (pure logic)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.cron import CronError, dst_effects, format_duration, parse_cron, parse_duration


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


# From Sunday 2026-11-29 (after the 2026 fall-back in Europe and the US).
DST_FROM = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _effects(expr: str, zone: str | None) -> list[tuple[str, date, tuple[str, ...], str, str]]:
    tz = ZoneInfo(zone) if zone else None
    return [
        (e.kind, e.day, e.times, e.clock_from, e.clock_to)
        for e in dst_effects(parse_cron(expr), tz, DST_FROM)
    ]


@pytest.mark.parametrize(
    ("expr", "zone", "expected"),
    [
        # 2027-03-28 02:00 CET jumps to 03:00 CEST (02:30 does not exist: no run that day);
        # 2027-10-31 03:00 CEST goes back to 02:00 CET (02:30 comes twice: two runs an hour apart).
        (
            "30 2 * * *",
            "Europe/Berlin",
            [
                ("skipped", date(2027, 3, 28), ("02:30",), "02:00", "03:00"),
                ("twice", date(2027, 10, 31), ("02:30",), "03:00", "02:00"),
            ],
        ),
        (
            "0,30 2 * * *",
            "Europe/Berlin",
            [
                ("skipped", date(2027, 3, 28), ("02:00", "02:30"), "02:00", "03:00"),
                ("twice", date(2027, 10, 31), ("02:00", "02:30"), "03:00", "02:00"),
            ],
        ),
        ("30 3 * * *", "Europe/Berlin", []),  # neither jumped over nor repeated
        ("30 1 * * *", "Europe/Berlin", []),
        # Every hour (quarter hour): the clock jumps onto the next run, the repeated hour
        # is one more hour of runs; the spacing in real time is unchanged.
        ("0 * * * *", "Europe/Berlin", []),
        ("*/15 * * * *", "Europe/Berlin", []),
        # Only some days hit it: Sundays in March (Berlin changes on the last one) ...
        ("30 2 * 3 0", "Europe/Berlin", [("skipped", date(2027, 3, 28), ("02:30",), "02:00", "03:00")]),
        ("30 2 * * 1-6", "Europe/Berlin", []),  # ... never on a weekday
        # ... the 25th of March only in the years its last Sunday is the 25th.
        ("30 2 25 3 *", "Europe/Berlin", [("skipped", date(2029, 3, 25), ("02:30",), "02:00", "03:00")]),
        # New York jumps 02:00 -> 03:00 but goes back 02:00 -> 01:00: 01:30 repeats, 02:30 not.
        ("30 2 * * *", "America/New_York", [("skipped", date(2027, 3, 14), ("02:30",), "02:00", "03:00")]),
        ("30 1 * * *", "America/New_York", [("twice", date(2027, 11, 7), ("01:30",), "02:00", "01:00")]),
        # Lord Howe Island changes by 30 minutes (02:00 -> 02:30 in October, back in April).
        ("15 2 * * *", "Australia/Lord_Howe", [("skipped", date(2027, 10, 3), ("02:15",), "02:00", "02:30")]),
        ("45 1 * * *", "Australia/Lord_Howe", [("twice", date(2027, 4, 4), ("01:45",), "02:00", "01:30")]),
        ("30 2 * * *", "UTC", []),
        ("30 2 * * *", "Etc/UTC", []),
        ("30 2 * * *", None, []),
        ("30 2 * * *", "Asia/Tokyo", []),  # no daylight saving time
    ],
)
def test_dst_effects(
    expr: str, zone: str | None, expected: list[tuple[str, date, tuple[str, ...], str, str]]
) -> None:
    assert _effects(expr, zone) == expected


def test_dst_effects_agree_with_next_after() -> None:
    # The day dst_effects says 02:30 is skipped, next_after (the controller's model) finds no
    # run; the day it says 02:30 comes twice, next_after finds two.
    berlin = ZoneInfo("Europe/Berlin")
    cron = parse_cron("30 2 * * *")
    (skipped, twice) = dst_effects(cron, berlin, DST_FROM)
    runs = []
    t = datetime(2027, 3, 27, 0, 0, tzinfo=berlin)
    while (t := cron.next_after(t)).date() <= date(2027, 3, 29):
        runs.append(t.date())
    assert skipped.day == date(2027, 3, 28) and runs == [date(2027, 3, 27), date(2027, 3, 29)]
    t, runs = datetime(2027, 10, 30, 12, 0, tzinfo=berlin), []
    while (t := cron.next_after(t)).date() <= date(2027, 11, 1):
        runs.append(t.date())
    assert runs.count(twice.day) == 2


@pytest.mark.parametrize(
    ("expr", "instead"),
    [
        ("@every 1h", "write '0 * * * *' instead"),
        ("@every 60m", "write '0 * * * *' instead"),
        ("@every 15m", "write '*/15 * * * *' instead"),
        ("@every 1m", "write '* * * * *' instead"),
        ("@every 6h", "write '0 */6 * * *' instead"),
        ("@every 24h", "write '0 0 * * *' instead"),
        # no cron expression runs at that interval: an example of the form
        ("@every 1h30m", "write a five-field cron expression instead (every 6 hours: '0 */6 * * *')"),
        ("@every 7h", "write a five-field cron expression instead (every 6 hours: '0 */6 * * *')"),
        ("@every soon", "write a five-field cron expression instead (every 6 hours: '0 */6 * * *')"),
    ],
)
def test_every_is_refused_saying_why_and_what_instead(expr: str, instead: str) -> None:
    # Kubernetes takes '@every 1h' (robfig/cron's ConstantDelaySchedule); dr said only
    # "unknown macro", as if it were a typo, and listed macros that are not what was meant.
    with pytest.raises(CronError) as e:
        parse_cron(expr)
    assert str(e.value).startswith(
        "@every is not supported: the CronJob controller runs it that long after the CronJob's "
        "last run (or creation), not at set times, so dr cannot tell when it runs next; "
    ), str(e.value)
    assert str(e.value).endswith(instead)
