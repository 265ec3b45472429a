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
