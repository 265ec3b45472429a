"""Printing data: ``-o table|json|yaml`` for every command that prints data.

Commands build plain data (dicts and lists of JSON types) once and hand it here
with a description of the table view; JSON and YAML print the data as is, so
scripts get every field while the table shows the ones people read.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

# rich and yaml are imported where a table or YAML is printed: every command
# imports this module, and a mover Job printing JSON should not pay for them
# (~60 ms at start-up, more from a cold disk).

FORMATS = ("table", "json", "yaml")

F = TypeVar("F", bound=Callable[..., Any])


def output_option(default: str = "table") -> Callable[[F], F]:
    return click.option(
        "-o",
        "--output",
        "output",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="Output format.",
    )


class JsonStream(list[Any]):
    """A long list printed element by element, never held whole (e.g. a restore's per-object results).

    json's encoder walks lists with ``for``: this list is empty to Python but
    yields its elements from ``items`` as the encoder reaches them. ``length``
    tells the encoder whether it is empty (it prints ``[]`` then).
    """

    def __init__(self, items: Iterable[Any], length: int) -> None:
        super().__init__()
        self._items, self._length = items, length

    def __iter__(self) -> Iterator[Any]:
        return (_plain(x) for x in self._items)

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:
        return self._length > 0


def _plain(v: Any, *, lazy: bool = False) -> Any:
    """``v`` as JSON types; with ``lazy``, a ``JsonStream`` stays one (its elements converted as printed)."""
    if isinstance(v, JsonStream):
        return v if lazy else list(v)  # its iterator converts each element already
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, dict):
        return {str(k): _plain(x, lazy=lazy) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x, lazy=lazy) for x in v]
    if hasattr(v, "model_dump"):
        return _plain(v.model_dump(mode="json", by_alias=True))
    return v


# Characters of JSON gathered before each write (see write_json).
WRITE_BATCH = 1 << 16


def write_json(data: Any, out: IO[str]) -> None:
    """``data`` as indented JSON, written piece by piece: ``JsonStream`` lists are never held whole.

    The encoder yields a piece per token (~36 per entry of ``dr mover ls -r``): they are
    written ~64 KiB at a time. One ``write`` each made 7.3 million writes for the
    200,000 files of a volume, 8 of its 13 s."""
    pieces: list[str] = []
    size = 0
    for chunk in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(_plain(data, lazy=True)):
        pieces.append(chunk)
        size += len(chunk)
        if size >= WRITE_BATCH:
            out.write("".join(pieces))
            pieces.clear()
            size = 0
    pieces.append("\n")
    out.write("".join(pieces))


@dataclass(frozen=True)
class Column:
    header: str
    key: str | Callable[[dict[str, Any]], Any]
    justify: str = "left"

    def value(self, row: dict[str, Any]) -> str:
        v = self.key(row) if callable(self.key) else row.get(self.key)
        if v is None:
            return "-"
        if isinstance(v, list):
            return ", ".join(str(x) for x in v)
        return str(v)


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal (pipes, CronJob logs) never truncate cells to 80 columns.
    width = None if stream.isatty() else 250
    # No markup: cells are data (paths, server messages such as "[policy-name] denied"), and
    # rich would take "[...]" in them for a style and drop it.
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width, markup=False)


def emit(
    data: Any,
    fmt: str,
    *,
    columns: Sequence[Column] | None = None,
    rows: list[dict[str, Any]] | None = None,
    title: str | None = None,
    render: Callable[[Console], None] | None = None,
) -> None:
    """Print ``data`` as JSON/YAML, or as a table of ``rows`` (default: ``data`` if a list)."""
    if fmt == "json":
        write_json(data, sys.stdout)
        return
    if fmt == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True))
        return
    from rich.table import Table

    out = console()
    if render is not None:
        render(out)
        return
    if columns is None:
        # Key/value view of a mapping.
        table = Table(show_header=False, box=None, title=title, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for k, v in (data or {}).items():
            table.add_row(str(k), v if isinstance(v, str) else json.dumps(_plain(v)))
        out.print(table)
        return
    table = Table(title=title, title_justify="left", box=None, header_style="bold")
    for c in columns:
        # fold: a cell too long for a narrow terminal goes on over lines of its column; rich's
        # default cut it with "…" (a key slot's file, a backup's time: gone from the screen).
        table.add_column(c.header, justify=c.justify, overflow="fold")  # type: ignore[arg-type]
    for r in rows if rows is not None else data:
        table.add_row(*(c.value(r) for c in columns))
    out.print(table)
