"""S3 response timestamps are parsed without dateutil, to the same instants as botocore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from botocore.utils import parse_timestamp as botocore_parse
from hypothesis import given
from hypothesis import strategies as st

from dr.storage.s3 import parse_timestamp

instants = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC)
)


@given(instants, st.booleans(), st.sampled_from([0, 2, -5]), st.booleans())
def test_iso_8601_as_in_listings(when: datetime, millis: bool, hours: int, zulu: bool) -> None:
    local = when.astimezone(timezone(timedelta(hours=hours)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{local.microsecond // 1000:03d}" if millis else "")
    text += "Z" if hours == 0 and zulu else f"{hours:+03d}:00"  # "2026-11-27T19:16:34.000Z"
    ours = parse_timestamp(text)
    expected = when if millis else when.replace(microsecond=0)
    assert ours == botocore_parse(text) == expected and ours.tzinfo is not None


@given(instants)
def test_rfc_1123_as_in_headers(when: datetime) -> None:
    text = format_datetime(when.replace(microsecond=0), usegmt=True)  # "Fri, 27 Nov 2026 19:16:34 GMT"
    ours = parse_timestamp(text)
    assert ours == botocore_parse(text) == when.replace(microsecond=0) and ours.tzinfo is not None


def test_other_forms_go_to_botocore() -> None:
    for text in ("1700000000", "1700000000.5", 1700000000):
        assert parse_timestamp(text) == botocore_parse(text)
    assert parse_timestamp("2026-11-27T19:16:34") == datetime(2026, 11, 27, 19, 16, 34, tzinfo=UTC)
    for bad in ("not a date", "2026-13-45T99:00:00Z"):
        with pytest.raises(ValueError):
            botocore_parse(bad)
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_dr_s_botocore_session_parses_with_it() -> None:
    from dr.storage.s3 import botocore_session

    factory = botocore_session().get_component("response_parser_factory")
    # botocore keeps the parser it was given on each protocol's parser (no public getter).
    assert factory.create_parser("rest-xml")._timestamp_parser is parse_timestamp
