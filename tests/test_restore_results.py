"""The compact per-object results of a restore and their streamed JSON output."""

from __future__ import annotations

import io
import json
import sys
from typing import Any, get_args

from hypothesis import given
from hypothesis import strategies as st

from dr.cli.output import JsonStream, write_json
from dr.kube.objects import ResourceItem
from dr.restore.results import ItemResults, Outcome, RestoreItemResult

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
items = st.builds(
    ResourceItem,
    group=st.sampled_from(["", "apps", "example.com"]),
    version=st.sampled_from(["v1", "v1beta1"]),
    kind=st.sampled_from(["ConfigMap", "Deployment", "Gadget"]),
    resource=st.sampled_from(["configmaps", "deployments", "gadgets"]),
    namespaced=st.booleans(),
    namespace=st.none() | names,
    name=names,
    uid=st.none() | st.uuids().map(str),
    owned=st.booleans(),
    controller_uid=st.none() | st.uuids().map(str),
)
results = st.builds(
    RestoreItemResult,
    item=items,
    source_namespace=st.none() | names,
    outcome=st.sampled_from(get_args(Outcome)),
    reason=st.none() | st.text(max_size=40),
    diff=st.lists(st.text(max_size=30), max_size=3),
)


@given(st.lists(results, max_size=20))
def test_results_come_back_equal_and_counted(rs: list[RestoreItemResult]) -> None:
    kept = ItemResults(rs)
    assert list(kept) == rs
    assert len(kept) == len(rs) and bool(kept) == bool(rs)
    expected_counts: dict[str, int] = {}
    for r in rs:
        expected_counts[r.outcome] = expected_counts.get(r.outcome, 0) + 1
    assert kept.counts() == dict(sorted(expected_counts.items()))
    assert kept.with_outcome("failed") == [r for r in rs if r.outcome == "failed"]


@given(st.lists(results, max_size=20), st.lists(results, max_size=5))
def test_sort_and_extend(rs: list[RestoreItemResult], more: list[RestoreItemResult]) -> None:
    kept = ItemResults(rs)
    kept.extend(ItemResults(more))
    key = lambda r: (r.item.namespace or "", r.item.name, r.outcome)  # noqa: E731
    kept.sort(key=key)
    assert list(kept) == sorted([*rs, *more], key=key)
    assert sum(kept.counts().values()) == len(rs) + len(more)


def test_results_are_held_compactly() -> None:
    r = RestoreItemResult(
        item=ResourceItem(
            group="",
            version="v1",
            kind="ConfigMap",
            resource="configmaps",
            namespaced=True,
            namespace="shop",
            name="obj-00001",
        ),
        source_namespace="shop-src",
        outcome="created",
    )
    kept = ItemResults([r] * 1000)
    per_result = sum(sys.getsizeof(row) + 8 for row in kept._rows) / 1000
    # Why they are kept as JSON: a pydantic result with its item is ~10 times larger.
    assert per_result < 250, per_result


def _doc(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"phase": "Completed", "items": JsonStream(iter(rows), len(rows)), "after": [1, {"a": None}]}


@given(st.lists(st.dictionaries(names, st.none() | st.integers() | names, max_size=3), max_size=5))
def test_streamed_json_equals_the_whole_document(rows: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    write_json(_doc(rows), out)
    whole = {"phase": "Completed", "items": rows, "after": [1, {"a": None}]}
    assert json.loads(out.getvalue()) == whole
    # Byte for byte what printing the whole document at once gives.
    assert out.getvalue() == json.dumps(whole, indent=2, ensure_ascii=False) + "\n"


def test_an_empty_stream_prints_an_empty_list() -> None:
    out = io.StringIO()
    write_json({"items": JsonStream(iter([]), 0)}, out)
    assert json.loads(out.getvalue()) == {"items": []}


def test_equality_is_list_like() -> None:
    r = RestoreItemResult(
        item=ResourceItem(
            group="", version="v1", kind="Secret", resource="secrets", namespaced=True, name="s"
        ),
        outcome="failed",
        reason="403",
    )
    assert ItemResults() == [] and ItemResults([r]) == [r] and ItemResults([r]) == ItemResults([r])
    assert ItemResults([r]) != [] and ItemResults([r]) != ItemResults()
