"""Stopping dr cleanly on SIGTERM, SIGHUP and Ctrl-C: unwind, run every ``finally``, thaw what was frozen.

Kubernetes stops a pod with SIGTERM (a CronJob's ``activeDeadlineSeconds``,
an eviction, a node drain), then SIGKILL after the pod's
``terminationGracePeriodSeconds``. Python's default action for SIGTERM ends
the process at once, without running ``finally`` blocks: a backup stopped
while an application is frozen by a pre hook left it frozen, and temporary
Jobs and snapshots behind. Inside ``signals_handled()``:

* SIGTERM raises ``Terminated`` in the main thread. It is a
  ``KeyboardInterrupt``, so it unwinds exactly like Ctrl-C (code that cleans
  up after an interrupt does so for both); ``dr`` exits with 143 (128 +
  SIGTERM, what shells and Kubernetes report for a process ended by
  SIGTERM) instead of 130 for Ctrl-C. Later SIGTERMs are ignored: the first
  one already started the unwinding, which must not be cut short.
* SIGHUP is handled like SIGTERM and exits 129 (128 + SIGHUP): a terminal
  closed under a running command (an ssh session dropped during an incident)
  must clean up too — a drill's scratch namespace, a verify's Jobs — where
  the default action would end dr on the spot.
* Ctrl-C raises ``KeyboardInterrupt`` each time: a second one cuts the
  cleanup short, as users of terraform or helm expect. The first one says so
  on a terminal.
* All three set ``STOP``. Signals reach only the main thread; worker threads (the
  volumes of a backup, each with its hooks) wait in ``sleep`` below, which
  raises ``Interrupted`` once ``STOP`` is set — so each worker ends its
  wait, runs its post hooks and cleanup, and the main thread's unwinding is
  not held up by a mover Job that would run for hours.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from dr.errors import DrError

# Exit code of a dr stopped by SIGTERM (128 + 15), SIGHUP (128 + 1); Ctrl-C exits 130 (128 + 2).
TERMINATED_EXIT = 128 + signal.SIGTERM
HANGUP_EXIT = 128 + signal.SIGHUP
INTERRUPTED_EXIT = 128 + signal.SIGINT

STOP = threading.Event()


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (or SIGHUP): unwind like Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signal.Signals(signum)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, what shells report for a process it ended."""
        return 128 + int(self.signum)


def stop_reason(e: KeyboardInterrupt) -> str:
    """What stopped dr, in words: ``terminated (SIGTERM)``, ``terminated (SIGHUP)`` or
    ``interrupted (Ctrl-C)``."""
    return f"terminated ({e.signum.name})" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"


class Interrupted(DrError):
    """A wait ended because dr is stopping (SIGTERM or Ctrl-C in the main thread)."""


def stopping() -> bool:
    return STOP.is_set()


def check() -> None:
    """``Interrupted`` if dr is stopping: work not started yet is not started."""
    if STOP.is_set():
        raise Interrupted("interrupted: dr is stopping")


def sleep(seconds: float) -> None:
    """``time.sleep`` that ends early, raising ``Interrupted``, when dr is stopping."""
    if STOP.wait(max(0.0, seconds)):
        raise Interrupted("interrupted: dr is stopping")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    first = not STOP.is_set()
    STOP.set()
    if first:
        raise Terminated(signum)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if not STOP.is_set() and _stderr_is_terminal():
        # A second Ctrl-C cuts the unwinding short (as in terraform or helm): say so before
        # the cleanup's wait (a scratch namespace deleted, a report saved) tempts one.
        # dr drill gc looks only in dr's namespace and the drill namespaces: a restore's movers and
        # a backup's snapshots, in an app's namespace, are swept by the next backup there.
        _say(_fresh_line() + b"interrupted: stopping and cleaning up; Ctrl-C again quits at once and may leave "
             b"temporary objects behind (labelled dr.dev/mover=true: deleted once expired by the next "
             b"backup of their namespace, or by dr drill gc in dr's namespace and drill namespaces)\n")  # fmt: skip
    STOP.set()
    raise KeyboardInterrupt()


def _fresh_line() -> bytes:
    """Where the notice starts: a line of its own after the echoed ^C; over a progress line
    when one is up (a live display has ``sys.stderr`` redirected through it, and leaves the
    cursor at the end of its one line), which is then drawn again below the notice and
    taken down from there. Started below it, the line was left standing above the notice
    when it was taken down (``dr backups list`` interrupted while it read the snapshots)."""
    live = getattr(sys.stderr, "rich_proxied_file", None) is not None
    return b"\r\x1b[2K" if live else b"\n"


def _stderr_is_terminal() -> bool:
    try:
        return os.isatty(2)
    except OSError:
        return False


def _say(line: bytes) -> None:
    """Straight to file descriptor 2: the interrupted code may be inside a write to
    ``sys.stderr`` (a progress bar), which a second write from here would break."""
    try:
        os.write(2, line)
    except OSError:
        pass


_HANDLERS = {signal.SIGTERM: _on_sigterm, signal.SIGHUP: _on_sigterm, signal.SIGINT: _on_sigint}
# The signals ``signals_handled`` turns into an unwinding (code that forks blocks them in the child).
HANDLED = frozenset(_HANDLERS)


@contextmanager
def signals_handled() -> Iterator[None]:
    """SIGTERM, SIGHUP and SIGINT as above while inside; the previous handlers afterwards.

    Only the main thread may set signal handlers; elsewhere (dr called from a
    thread of another program) nothing is installed.
    """
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum, handler in _HANDLERS.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        STOP.clear()
