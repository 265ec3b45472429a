"""Progress bars on a terminal (``dr.cli.progress``), rendered into a string standing for one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from dr.cli import progress


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the bars draw, as on a terminal of 100 columns."""
    out = io.StringIO()
    monkeypatch.setattr(progress, "enabled", lambda quiet: not quiet)
    monkeypatch.setattr(progress, "_stderr", lambda: Console(file=out, force_terminal=True, width=100))
    return out


def test_an_item_bar_without_a_total_counts_items_not_n_of_none(terminal: io.StringIO) -> None:
    # `dr restore` counts objects without knowing their number: its bar read "3/None".
    with progress.item_progress("restore abcd1234", None) as advance:
        advance(3)
    assert "None" not in terminal.getvalue() and " 3 " in terminal.getvalue()


def test_an_item_bar_with_a_total_says_n_of_total(terminal: io.StringIO) -> None:
    with progress.item_progress("verify shop", 5) as advance:
        advance(2)
    assert "2/5" in terminal.getvalue()


def test_a_byte_bar_from_the_first_bytes_draws_nothing_before_them(terminal: io.StringIO) -> None:
    # `dr repo check` reads the index and the snapshots (a line of their own) before any data,
    # and without --read-data no data at all: its "reading data" bar stood empty meanwhile.
    with progress.byte_progress("reading data", None, from_first=True):
        pass
    assert terminal.getvalue() == ""
    with progress.byte_progress("reading data", None, from_first=True) as advance:
        advance(4096)
    assert "reading data" in terminal.getvalue() and "4.1/? kB" in terminal.getvalue()


def test_reads_at_once_each_have_a_line_counted_in_thousands(terminal: io.StringIO) -> None:
    lines = progress._ReadLines(delay=0)
    lines.report("index", 0, 40)
    lines.report("snapshots", 0, 3650)
    lines.report("index", 12, 40)
    lines.report("snapshots", 1234, 3650)
    lines.close()  # the lines as they stood are drawn once more, then erased
    drawn = terminal.getvalue()
    assert "reading the index" in drawn and "12/40 files" in drawn
    assert "reading snapshots" in drawn and "1,234/3,650" in drawn


def test_a_read_shorter_than_the_delay_draws_nothing(terminal: io.StringIO) -> None:
    lines = progress._ReadLines(delay=3600)
    for done in range(0, 3651, 50):
        lines.report("snapshots", done, 3650)
    lines.report("index", 0, 40)
    lines.close()
    assert terminal.getvalue() == ""


def test_a_read_that_ended_leaves_the_others_shown() -> None:
    lines = progress._ReadLines(delay=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(progress, "_stderr", lambda: Console(file=io.StringIO(), force_terminal=True, width=100))
        lines.report("index", 0, 4)
        lines.report("snapshots", 0, 10)
        lines.report("index", 4, 4)
        assert lines._bar is not None and list(lines._tasks) == ["snapshots"]
        lines.report("snapshots", 10, 10)
        assert lines._bar is None  # the last read ended: the display is stopped, its lines erased
