"""Match a runbook's regular expression against a check's output within a time bound.

A runbook's ``stdoutRegex`` or ``bodyRegex`` is matched against up to 1 MiB of
what a check printed. Python's ``re`` backtracks: a pattern such as
``(a+)+$`` against a long run of ``a`` does not finish in any useful time, and
a match is one C call that holds the interpreter — no timeout, signal handler
or drill deadline gets a turn. The drill would hang until its CronJob's
deadline kills the pod, and leave no report.

So the match runs in a forked child (it shares the text and the compiled
pattern without copying them) that is killed when the bound passes; a normal
match costs the fork, ~1-3 ms. The child only matches, writes one byte and
leaves with ``os._exit``: it runs no handlers and touches nothing of the
parent's (other threads are not copied into it).
"""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import time

from dr.interrupt import HANDLED

log = logging.getLogger(__name__)

# The longest any one match may take: a health check's pattern over 1 MiB takes milliseconds.
REGEX_SECONDS = 10.0


class RegexTimeout(Exception):
    """The match did not finish within its bound (or its child died)."""


def search_within(pattern: str, text: str, seconds: float = REGEX_SECONDS) -> bool:
    """Whether ``re.search(pattern, text)`` finds a match, decided within ``seconds``;
    :class:`RegexTimeout` when it is not. ``pattern`` was validated with the runbook."""
    compiled = re.compile(pattern)  # in the parent: compiling is quick, and a bad pattern raises here
    if not hasattr(os, "fork"):  # not on Linux: no bound to be had
        return compiled.search(text) is not None
    read_end, write_end = os.pipe()
    # Blocked across the fork, and in the child for good: a Ctrl-C reaches the whole process
    # group, and dr's handlers (dr.interrupt) run in the child would print their notice again,
    # end the match as failed, or raise out of this function into a copy of the drill.
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)  # dr.interrupt's: never run in the child
    try:
        pid = os.fork()
    except OSError as e:  # a pod's process limit reached: match here, unbounded, rather than fail the step
        os.close(read_end)
        os.close(write_end)
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        log.warning("cannot fork to bound a regex match (%s): matching without a time bound", e)
        return compiled.search(text) is not None
    except BaseException:
        # A handler's exception as os.fork returned (another thread took a signal dr does not
        # block here): the pid is lost, the child ends itself past its bound (below). The mask
        # must not stay: Ctrl-C and SIGTERM would reach dr no more.
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # the child
        code = 0
        try:
            os.close(read_end)
            # Its own end a second after the bound, should the parent lose its pid (a handler's
            # exception as os.fork returned, before the try that kills it): SIGALRM's default.
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, seconds + 1)
            os.write(write_end, b"1" if compiled.search(text) is not None else b"0")
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    try:
        os.close(write_end)
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)  # one that came meanwhile is handled here
        answer = _read_one(read_end, seconds)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)  # also when the line above was not reached
        os.close(read_end)
        _reap(pid)
    if answer is None:
        raise RegexTimeout(f"did not finish within {seconds:g} s")
    if answer not in (b"0", b"1"):
        raise RegexTimeout("the match failed")
    return answer == b"1"


def unfinished_match(pattern: str, what: str, size: int, error: RegexTimeout) -> str:
    """The step's message for a match that did not finish: the pattern, not the check, is at fault."""
    return (
        f"/{pattern}/ against {what} ({size:,} characters) {error}: the pattern backtracks too much"
        " (nested repeats such as (a+)+ do); simplify it"
    )


def _read_one(fd: int, seconds: float) -> bytes | None:
    """One byte from ``fd`` within ``seconds``: b"" when the writer ended without one, None on timeout."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            return os.read(fd, 1)


def _reap(pid: int) -> None:
    """Wait for the child, killed first if it has not ended: it may still be matching (a
    timeout, or the parent interrupted by a signal while it waited)."""
    done, _ = os.waitpid(pid, os.WNOHANG)
    if not done:
        os.kill(pid, signal.SIGKILL)  # a zombie at worst, never gone before it is reaped
        os.waitpid(pid, 0)
