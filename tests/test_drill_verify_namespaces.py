"""``dr.drill.verify`` without a cluster: which namespace each step of a several-namespace runbook checks.

``tests/test_runbook_verify.py`` runs ``dr runbook verify`` on a one-namespace
app; here a runbook scoped to two namespaces, with a step naming the second,
is verified through ``--namespace`` and ``--namespace-mapping`` as a restore
into new namespaces maps it, with data steps whose probe records where it ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.drill.probe import PathProbe
from dr.drill.verify import VerifyDeps, checked_namespaces, run_verification, target_namespaces
from dr.errors import InvalidInput
from dr.runbook.model import Runbook, load_runbook


def _data_step(name: str, namespace: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {
        "name": name,
        "type": "data",
        "pvc": "files",
        "checks": [{"path": "x", "minCount": 0}],
    }
    if namespace:
        step["namespace"] = namespace
    return step


@pytest.fixture
def runbook(tmp_path: Path) -> Runbook:
    spec = {
        "description": "Two namespaces.",
        "contacts": [{"name": "Ops", "email": "ops@example.com"}],
        "scope": {"namespaces": ["shop", "shop-db", "shop-*"]},
        "objectives": {"rpo": "24h", "rto": "1h"},
        "verification": [
            _data_step("db-files", "shop-db"),
            _data_step("files"),
            _data_step("db-again", "shop-db"),
        ],
        "procedure": [{"title": "Restore", "text": "Restore the latest backup."}],
    }
    doc = {"apiVersion": "dr.dev/v1", "kind": "Runbook", "metadata": {"name": "shop"}, "spec": spec}
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_runbook(path)


def test_each_step_checks_its_namespace_as_mapped(runbook: Runbook) -> None:
    targets = target_namespaces(runbook, "shop-new", {"shop-db": "shop-db-new"})
    assert targets == {"shop": "shop-new", "shop-db": "shop-db-new"}
    # In the order of the steps, each once; the glob of the scope is no namespace to check.
    assert checked_namespaces(runbook, targets) == ["shop-db-new", "shop-new"]
    probed: list[str] = []

    def probe(
        namespace: str, pvc: str, paths: Sequence[str], *, timeout: float, warnings: list[str]
    ) -> Mapping[str, PathProbe]:
        probed.append(namespace)
        if namespace == "shop-new":
            warnings.append(f"not placed in {namespace}")
        return {p: PathProbe("dir", count=1) for p in paths}

    heard: list[str] = []
    results = run_verification(
        runbook,
        targets,
        VerifyDeps(api=None, exec=None, data_probe=probe),
        on_result=lambda r: heard.append(r.name),  # type: ignore[arg-type]
    )
    assert probed == ["shop-db-new", "shop-new", "shop-db-new"]
    assert [(r.name, r.passed) for r in results] == [("db-files", True), ("files", True), ("db-again", True)]
    assert heard == ["db-files", "files", "db-again"]
    assert [r.details["namespace"] for r in results] == probed
    # What a probe could not check is its own step's, not the next one's.
    assert [r.warnings for r in results] == [[], ["not placed in shop-new"], []]


def test_without_options_the_runbooks_own_namespaces(runbook: Runbook) -> None:
    targets = target_namespaces(runbook)
    assert targets == {"shop": "shop", "shop-db": "shop-db"}
    assert checked_namespaces(runbook, targets) == ["shop-db", "shop"]
    # --namespace and a mapping of the first namespace may agree.
    assert target_namespaces(runbook, "x", {"shop": "x"})["shop"] == "x"


def test_a_mapping_to_no_namespace_name_is_invalid_input(runbook: Runbook) -> None:
    with pytest.raises(
        InvalidInput, match="--namespace-mapping shop-db=Bad_Name: 'Bad_Name' is not a namespace name"
    ):
        target_namespaces(runbook, None, {"shop-db": "Bad_Name"})
    with pytest.raises(InvalidInput, match="is not a namespace name"):
        target_namespaces(runbook, None, {"shop-db": "x" * 64})
