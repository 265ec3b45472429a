"""``dr.interrupt`` by itself: what SIGTERM and Ctrl-C do inside ``signals_handled()``.

``tests/test_cli_signals.py`` stops the real ``dr`` and ``tests/test_hooks.py``
a backup with a frozen application; these tests pin the mechanism under both:
a second SIGTERM does not cut the unwinding short, waiting workers end, the
previous handlers come back, and nothing is installed outside the main thread.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from dr import interrupt
from tests.helpers import run_with_stderr_on_a_terminal


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(5)  # the handler raises here, at once


def test_sigterm_raises_terminated_once_and_later_ones_do_not_cut_the_unwinding_short() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupt.signals_handled():
        assert not interrupt.stopping()
        interrupt.check()
        interrupt.sleep(-1.0)  # nothing left to wait for: returns
        with pytest.raises(interrupt.Terminated):
            _signal_self(signal.SIGTERM)
        assert interrupt.stopping()
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the unwinding goes on
        with pytest.raises(interrupt.Interrupted):
            interrupt.sleep(5)
        with pytest.raises(interrupt.Interrupted):
            interrupt.check()
    assert not interrupt.stopping()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_sighup_unwinds_like_sigterm_with_its_own_exit_code() -> None:
    # A terminal closed under a running dr (ssh dropped): without a handler it
    # would die at once, leaving scratch namespaces and Jobs behind.
    before = signal.getsignal(signal.SIGHUP)
    with interrupt.signals_handled():
        with pytest.raises(interrupt.Terminated) as raised:
            _signal_self(signal.SIGHUP)
        assert (raised.value.signum, raised.value.exit_code) == (signal.SIGHUP, 129)
        assert interrupt.stopping()
        os.kill(os.getpid(), signal.SIGHUP)  # ignored: the unwinding goes on
        with pytest.raises(interrupt.Interrupted):
            interrupt.sleep(5)
    assert signal.getsignal(signal.SIGHUP) == before


def test_ctrl_c_is_a_keyboard_interrupt_each_time_and_stops_too() -> None:
    with interrupt.signals_handled():
        for _ in range(2):
            with pytest.raises(KeyboardInterrupt) as raised:
                _signal_self(signal.SIGINT)
            assert not isinstance(raised.value, interrupt.Terminated)
            assert interrupt.stopping()
    assert not interrupt.stopping()


def test_the_first_ctrl_c_on_a_terminal_says_a_second_one_quits_at_once() -> None:
    # A second Ctrl-C cuts the cleanup short (a drill's report unsaved, its namespace left):
    # conventional, but only fair when the first one says so. Said on a terminal only, once.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import os, signal, sys, time
        from dr import interrupt
        with interrupt.signals_handled():
            for _ in range(2):
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)
                except KeyboardInterrupt:
                    pass
        print("done", flush=True)
        """
    )
    _, out, said = run_with_stderr_on_a_terminal([sys.executable, "-c", code], timeout=60)
    assert out == b"done\n"
    assert said.count(b"Ctrl-C again quits at once") == 1, said
    # What it leaves and what removes it: dr drill gc looks only in dr's namespace and the drill
    # namespaces; a restore's movers and a backup's snapshots, in the app's, go with its next backup.
    assert (
        b"Ctrl-C again quits at once and may leave temporary objects behind (labelled dr.dev/mover=true: "
        b"deleted once expired by the next backup of their namespace, or by dr drill gc in dr's namespace "
        b"and drill namespaces)"
    ) in said.replace(b"\r\n", b"\n"), said
    # Not a terminal (a CronJob's log, a script's pipe): nothing said.
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert piped.stdout == b"done\n" and piped.stderr == b""


def test_a_worker_waiting_in_sleep_ends_when_the_main_thread_gets_sigterm() -> None:
    ended: list[float] = []

    def worker() -> None:
        start = time.monotonic()
        try:
            interrupt.sleep(60)
        except interrupt.Interrupted:
            ended.append(time.monotonic() - start)

    with interrupt.signals_handled():
        t = threading.Thread(target=worker)
        t.start()
        with pytest.raises(interrupt.Terminated):
            _signal_self(signal.SIGTERM)
        t.join(10)
    assert len(ended) == 1 and ended[0] < 10


def test_outside_the_main_thread_no_handler_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def other_program_thread() -> None:
        with interrupt.signals_handled():
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=other_program_thread)
    t.start()
    t.join(10)
    assert seen == [before]
