"""Label selectors: parsing the Kubernetes text form, matching, and clear errors."""

from __future__ import annotations

import pytest

from dr.errors import InvalidInput
from dr.kube.selectors import parse_selector


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app!=web", {"app": "db"}, True),
        ("app!=web", {}, True),  # as in Kubernetes: a missing key is "not equal"
        ("app in (web, db)", {"app": "db"}, True),
        ("app in (web,db)", {"app": "cache"}, False),
        ("app notin (web)", {}, True),
        ("app notin (web)", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("app", {}, False),
        ("!app", {}, True),
        ("!app", {"app": "x"}, False),
        ("app=web,tier in (front),!legacy", {"app": "web", "tier": "front"}, True),
        ("app=web,tier in (front),!legacy", {"app": "web", "tier": "front", "legacy": "1"}, False),
        ("example.com/part-of=shop", {"example.com/part-of": "shop"}, True),
        ("", {"anything": "x"}, True),
    ],
)
def test_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(selector).matches(labels) is expected


def test_text_form_round_trips() -> None:
    sel = parse_selector("app=web, tier in (b,a),!legacy,env")
    assert str(sel) == "app=web,tier in (a,b),!legacy,env"
    assert parse_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("app=web,", "empty requirement"),
        ("app in (web", "unbalanced '('"),
        ("app=we b", "invalid label key 'app=we b'"),
        ("-app=web", "invalid label key '-app'"),
        ("app=web!", "invalid label value 'web!'"),
        ("app in (a,b c)", "invalid label value 'b c'"),
    ],
)
def test_bad_selectors_name_the_problem(selector: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_selector(selector)
    assert str(e.value) == f"label selector {selector!r}: {problem}"
