"""Progress bars for long work, only on a terminal (never in CronJob logs or with --quiet)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

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


def _item_bar(total: int | None) -> Progress:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    # Without a total (a restore counts objects as it goes) the count alone, not "3/None".
    count = TextColumn("{task.completed}/{task.total}" if total is not None else "{task.completed}")
    return Progress(TextColumn("{task.description}"), BarColumn(), count, TimeRemainingColumn(),
                    transient=True, console=_stderr())  # fmt: skip


@contextmanager
def item_progress(
    description: str, total: int | None, *, quiet: bool = False
) -> Iterator[Callable[[int], None]]:
    if not enabled(quiet):
        yield lambda n: None
        return
    with _item_bar(total) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def item_lines(
    description: str, total: int | None, *, quiet: bool = False
) -> Iterator[Callable[[str | None], None]]:
    """Yields ``done(line)``: one item finished, its line (if any) printed on stdout at once and
    the bar advanced — so that what finished is on screen also when the rest never comes (Ctrl-C).

    The bar, on stderr, is taken down while a line is written and drawn again below it: both
    are often the same terminal, and a line written under a live bar would be overdrawn. Not
    rich's own redirection of stdout (into the bar's console): that would put the lines on
    stderr, away from a pipe or file stdout goes to. Without a terminal, only the lines."""
    if not enabled(quiet):

        def echo(line: str | None) -> None:
            if line is not None:
                click.echo(line)

        yield echo
        return
    with _item_bar(total) as bar:
        task = bar.add_task(description, total=total)

        def done(line: str | None) -> None:
            if line is not None:
                bar.stop()
                try:
                    click.echo(line)
                finally:
                    bar.start()
            bar.advance(task, 1)

        yield done
