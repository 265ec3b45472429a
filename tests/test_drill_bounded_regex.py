"""dr.drill.bounded_regex: a runbook's regex is matched within a time bound, in a child
that is always reaped."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.drill.bounded_regex import RegexTimeout, search_within, unfinished_match

# Backtracks exponentially in the length of the run of "a": 40 of them take far longer than a test.
CATASTROPHIC = r"(a+)+$"
RUN = "a" * 40 + "!"


def _children() -> set[int]:
    """This process's live and unreaped children."""
    found = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
            found.update(int(pid) for pid in f.read().split())
    return found


@pytest.fixture
def no_child_left() -> Iterator[None]:
    before = _children()
    yield
    assert _children() - before == set()


@given(st.sampled_from([r"ok", r"^\d+ rows$", r"(?m)^ready$", r"x{2,}", r"[é]"]), st.text(max_size=200))
@settings(max_examples=60, deadline=None)
def test_answers_as_re_search(pattern: str, text: str) -> None:
    assert search_within(pattern, text) == (re.search(pattern, text) is not None)


def test_a_long_text_is_matched(no_child_left: None) -> None:
    text = "row\n" * (1 << 18) + "done\n"  # the 1 MiB an exec step keeps
    assert search_within(r"done$", text)
    assert not search_within(r"^missing$", text)


def test_a_catastrophic_pattern_is_cut_at_its_bound(no_child_left: None) -> None:
    start = time.monotonic()
    with pytest.raises(RegexTimeout, match=r"did not finish within 0\.5 s"):
        search_within(CATASTROPHIC, RUN, 0.5)
    assert time.monotonic() - start < 3  # 0.5 s and the kill, not the match's minutes


def test_a_signal_while_waiting_kills_the_child(no_child_left: None) -> None:
    # A drill stopped (SIGTERM, Ctrl-C) during a long match: the exception reaches the drill and
    # the child matching in the background is killed and reaped, not left running.
    class Stopped(Exception):
        pass

    def stop(signum: int, frame: object) -> None:
        raise Stopped

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(Stopped):
            search_within(CATASTROPHIC, RUN, 30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_the_message_blames_the_pattern() -> None:
    msg = unfinished_match(CATASTROPHIC, "the output", 41, RegexTimeout("did not finish within 10 s"))
    assert msg == (
        "/(a+)+$/ against the output (41 characters) did not finish within 10 s: the pattern backtracks"
        " too much (nested repeats such as (a+)+ do); simplify it"
    )


def test_without_a_fork_it_matches_here(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A pod at its process limit (EAGAIN): the step still gets its answer, with a warning.
    def refuse() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refuse)
    assert search_within(r"^ok$", "ok") and not search_within(r"^ok$", "no")
    assert "matching without a time bound" in caplog.text


def _forks(monkeypatch: pytest.MonkeyPatch, after: Callable[[int], None]) -> None:
    """``os.fork`` as it is, then ``after(pid)`` in the parent."""
    real = os.fork

    def fork() -> int:
        pid = real()
        if pid:
            after(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)


def test_a_ctrl_c_reaching_the_child_runs_none_of_the_parents_handlers(
    no_child_left: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Ctrl-C reaches the terminal's whole process group, the matching child too, which inherits
    # dr's handlers: run there, they print the first Ctrl-C's notice a second time, end the match
    # as failed, or (raised before the child's try) send a copy of the drill on into its cleanup.
    ran = tmp_path / "handler-ran-in"  # a file: what a child appends to a list stays in the child

    def handler(signum: int, frame: object) -> None:
        with ran.open("a") as f:
            f.write(f"{os.getpid()}\n")
        raise KeyboardInterrupt

    def ctrl_c_soon(pid: int) -> None:
        threading.Timer(0.2, os.kill, (pid, signal.SIGINT)).start()

    _forks(monkeypatch, ctrl_c_soon)
    old = signal.signal(signal.SIGINT, handler)
    try:
        # ~1 s of backtracking that ends (no match): the child gets the signal while it matches.
        assert search_within(CATASTROPHIC, "a" * 24 + "!", 30) is False
    finally:
        signal.signal(signal.SIGINT, old)
    assert not ran.exists(), ran.read_text()


def test_a_child_its_parent_lost_ends_itself_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # A signal handler's exception as os.fork returns (another thread took the signal; the main
    # thread runs the handler as the call ends) loses the pid before the try that kills the child:
    # it matched on, a CPU taken for good, after dr had gone.
    class Lost(Exception):
        pass

    forked: list[int] = []

    def lose(pid: int) -> None:
        forked.append(pid)
        raise Lost

    _forks(monkeypatch, lose)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    with pytest.raises(Lost):
        search_within(CATASTROPHIC, RUN, 0.5)
    # The signals blocked across the fork are not left blocked: dr would not stop on Ctrl-C.
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
    deadline = time.monotonic() + 10
    try:
        while os.waitpid(forked[0], os.WNOHANG) == (0, 0):
            assert time.monotonic() < deadline, "the child is still matching"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(forked[0], os.WNOHANG) == (0, 0):
                os.kill(forked[0], signal.SIGKILL)
                os.waitpid(forked[0], 0)


def test_a_child_that_dies_without_an_answer_is_a_failed_match(
    no_child_left: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed from outside (the OOM killer, a pod's process limit reaping it): no byte comes,
    # and the step is told the match failed, not that the output did not match.
    _forks(monkeypatch, lambda pid: os.kill(pid, signal.SIGKILL))
    with pytest.raises(RegexTimeout, match=r"^the match failed$"):
        search_within(r"^ok$", "ok", 5)
