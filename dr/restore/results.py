"""Per-object results of a restore: ``RestoreItemResult`` and the compact ``ItemResults`` list.

A restore reports every object it touched (``-o json`` prints them all), so
the results are the one thing that must grow with the number of objects. They
are kept as compact JSON, ~150 bytes for a ConfigMap, instead of pydantic
models (~1.6 KB with their ``ResourceItem``): 10,000 objects cost ~2 MB, and
a restore's memory is dominated by what is in flight, not by what is done.
Results are parsed again when read; the counts per outcome are kept as they
are added, so summaries do not read the list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field

from dr.kube.objects import ResourceItem

Outcome = Literal[
    "created",
    "updated",
    "recreated",
    "unchanged",
    "skipped",
    "failed",
    "would-create",
    "would-update",
    "would-recreate",
]


class RestoreItemResult(BaseModel):
    """What happened (or, in a dry run, would happen) to one object."""

    item: ResourceItem  # as restored: target namespace (and name, for mapped Namespace objects)
    # camelCase in the -o json/yaml output (``dumps``); the compact rows keep the field's name.
    source_namespace: str | None = Field(default=None, serialization_alias="sourceNamespace")
    outcome: Outcome
    reason: str | None = None
    diff: list[str] = Field(default_factory=list)

    def backed_up_as(self) -> str:
        """ "namespace/name" as backed up (before ``--namespace-mapping``): the key of
        ``dr.restore.run.volume_snapshots``."""
        return f"{self.source_namespace or self.item.namespace}/{self.item.name}"

    def describe(self) -> str:
        text = f"{self.item.describe()}: {self.outcome}"
        return text + (f" ({self.reason})" if self.reason else "")


class ItemResults:
    """An append-only list of ``RestoreItemResult`` held as compact JSON; iterating parses each again."""

    __slots__ = ("_counts", "_rows")

    def __init__(self, results: Iterable[RestoreItemResult] = ()) -> None:
        self._rows: list[bytes] = []
        self._counts: Counter[str] = Counter()
        for r in results:
            self.append(r)

    def append(self, result: RestoreItemResult) -> None:
        self._rows.append(result.model_dump_json(exclude_defaults=True).encode())
        self._counts[result.outcome] += 1

    def extend(self, other: ItemResults) -> None:
        self._rows.extend(other._rows)
        self._counts.update(other._counts)

    def __iter__(self) -> Iterator[RestoreItemResult]:
        for row in self._rows:
            yield RestoreItemResult.model_validate_json(row)

    def __len__(self) -> int:
        return len(self._rows)

    def __bool__(self) -> bool:
        return bool(self._rows)

    def __eq__(self, other: object) -> bool:
        """Equal to another ``ItemResults`` or list with the same results in the same order."""
        if isinstance(other, ItemResults):
            return self._rows == other._rows
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like list

    def __repr__(self) -> str:
        return f"ItemResults({len(self)} results: {dict(self._counts)})"

    def counts(self) -> dict[str, int]:
        """Objects per outcome, outcomes sorted by name."""
        return dict(sorted((k, n) for k, n in self._counts.items() if n))

    def with_outcome(self, *outcomes: str) -> list[RestoreItemResult]:
        """The results with one of ``outcomes`` (no parsing when there are none)."""
        if not any(self._counts[o] for o in outcomes):
            return []
        return [r for r in self if r.outcome in outcomes]

    def sort(self, key: Callable[[RestoreItemResult], Any]) -> None:
        """Sort in place; only the keys are held parsed, not the results."""
        keys = [key(r) for r in self]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self._rows = [self._rows[i] for i in order]

    def dumps(self) -> Iterator[dict[str, Any]]:
        """Each result as plain JSON data (``None`` fields left out, camelCase keys), one at a time."""
        for r in self:
            yield r.model_dump(mode="json", exclude_none=True, by_alias=True)
