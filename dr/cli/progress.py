"""Progress bars for long work, only on a terminal (never in CronJob logs or with --quiet)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

# rich.progress is imported only when a bar is shown (a terminal): mover Jobs
# and CronJobs never show one and should not pay for the import.


def enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _stderr() -> Console:
    """Bars go to stderr, the terminal ``enabled`` looked at: stdout holds the data
    (JSON, tables), which a bar would interleave with, or into a redirected file."""
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def byte_progress(
    description: str, total: int | None, *, quiet: bool = False
) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(nbytes)``; a no-op when not on a terminal."""
    if not enabled(quiet):
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True, console=_stderr()) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def item_progress(
    description: str, total: int | None, *, quiet: bool = False
) -> Iterator[Callable[[int], None]]:
    if not enabled(quiet):
        yield lambda n: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=True, console=_stderr()) as bar:  # fmt: skip
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
