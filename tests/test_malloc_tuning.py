"""dr caps glibc's malloc arenas: threads that allocate at once share two arenas."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Eight threads allocate and free 1 MiB buffers at the same time, then glibc
# prints its per-arena statistics ("Arena N:") to stderr.
PROGRAM = """
import ctypes, sys, threading
from dr.malloc_tuning import limit_malloc_arenas
if sys.argv[1] == "limit":
    assert limit_malloc_arenas()
start = threading.Barrier(8)
def work():
    start.wait()
    for _ in range(200):
        b = bytearray(1 << 20)
        del b
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str, env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, env=env, check=True
    )
    return sum(1 for line in out.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_threads_share_at_most_two_arenas() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert arenas("default", env) > 2  # what the cap is for: glibc's default gives threads their own
    assert arenas("limit", env) <= 2


def test_the_users_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    from dr.malloc_tuning import limit_malloc_arenas

    assert limit_malloc_arenas() is False
