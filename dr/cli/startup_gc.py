"""The cyclic garbage collector while a command starts.

Start-up (imports, configuration, botocore's client and service model, opening the
repository) makes ~70,000 container objects that live as long as the process and
no garbage, yet the collector would pass over them ~150 times: 20 ms of a restore's
start (imports and an S3 client: 152-153 ms with collections held back, 173-175 ms
without). ``hold`` raises the first generation's threshold so collections wait;
``release``, once the repository is open, freezes what start-up made (later
collections skip it) and restores the thresholds. A command that opens no
repository keeps the raised threshold: it still collects, less often.
"""

from __future__ import annotations

import gc

# Allocations between two first-generation collections while held (default 700).
HELD_THRESHOLD = 200_000


def hold() -> None:
    threshold = gc.get_threshold()
    if threshold[0] != HELD_THRESHOLD:
        gc.set_threshold(HELD_THRESHOLD, *threshold[1:])


def release(default: int = 700) -> None:
    """Freeze start-up's objects and collect as usual again (once; later calls do nothing)."""
    threshold = gc.get_threshold()
    if threshold[0] == HELD_THRESHOLD:
        gc.freeze()
        gc.set_threshold(default, *threshold[1:])
