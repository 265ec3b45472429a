"""Progress bars for long work, only on a terminal (never in CronJob logs or with --quiet)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from dr.repo.repository import Repository

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
    description: str, total: int | None, *, quiet: bool = False, from_first: bool = False
) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(nbytes)``; a no-op when not on a terminal. ``from_first``: the bar
    is shown from the first bytes on, not before (``dr repo check`` reads the index and
    the snapshots first, under a line of their own, ``read_progress``; and reads no data
    at all without --read-data)."""
    if not enabled(quiet):
        yield lambda n: None
        return
    if from_first:
        with ExitStack() as stack:
            shown: list[Callable[[int], None]] = []

            def advance(n: int) -> None:
                if not shown:
                    shown.append(stack.enter_context(byte_progress(description, total)))
                shown[0](n)

            yield advance
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


# A read shows its line once it has gone on this long. By time, not by a number of
# objects: what takes long is the store's round trips, not the count — 3,650 snapshots
# read in about a second from a file repository (a line would only flash) and take 5-13 s
# from SeaweedFS, minutes from S3, where 40 index files may take seconds too. Half a
# second is about when a silent terminal starts to look stuck; a read that ends sooner
# does not import rich.progress either (~30 ms).
READ_LINE_DELAY = 0.5

# How each read reads on its line ("reading the index 12/40 files"): the kinds of
# ``Repository.read_progress``; any other is "reading KIND".
_READS = {"index": ("reading the index", " files"), "reports": ("reading drill reports", "")}


@contextmanager
def read_progress(repo: Repository, *, quiet: bool = False) -> Iterator[None]:
    """While in it, a read of every snapshot, drill report or index file of ``repo`` that
    takes longer than ``READ_LINE_DELAY`` shows a transient line on a terminal
    ("reading snapshots 1,234/3,650"), on stderr; taken down when the read ends, and
    at the latest when this ends (a read that failed). Nothing off a terminal."""
    if not enabled(quiet):
        yield
        return
    lines = _ReadLines(READ_LINE_DELAY)
    before = repo.read_progress
    repo.read_progress = lines.report
    try:
        yield
    finally:
        repo.read_progress = before
        lines.close()


class _ReadLines:
    """The lines of the reads under way (an index may load beside a snapshot listing), in
    one display, started when the first read has gone on for ``delay`` and stopped (its
    lines erased) when the last has ended. Told from any thread (``report``)."""

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}  # what -> when its read started
        self._tasks: dict[str, TaskID] = {}  # what -> its line, once shown
        self._bar: Progress | None = None

    def report(self, what: str, done: int, total: int) -> None:
        with self._lock:
            now = time.monotonic()
            if done == 0:
                self._started[what] = now
            if done >= total:
                self._end(what)
                return
            label, unit = _READS.get(what, (f"reading {what}", ""))
            count = f"{done:,}/{total:,}{unit}"
            task = self._tasks.get(what)
            if task is not None:
                assert self._bar is not None
                self._bar.update(task, completed=done, total=total, count=count)
            elif now - self._started.setdefault(what, now) >= self._delay:
                self._tasks[what] = self._display().add_task(label, total=total, completed=done, count=count)

    def _display(self) -> Progress:
        if self._bar is None:
            from rich.progress import BarColumn, Progress, TextColumn

            # Not rich's redirection of stdout (into this stderr console): stdout holds data.
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                                 transient=True, console=_stderr(), redirect_stdout=False)  # fmt: skip
            self._bar.start()
        return self._bar

    def _end(self, what: str) -> None:
        self._started.pop(what, None)
        task = self._tasks.pop(what, None)
        if task is not None and self._bar is not None:
            self._bar.remove_task(task)
        if not self._tasks:
            self._stop()

    def close(self) -> None:
        with self._lock:
            self._tasks.clear()
            self._stop()

    def _stop(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.stop()  # transient: its lines are erased
