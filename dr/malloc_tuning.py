"""glibc malloc settings for dr's processes: at most two arenas, warm pages kept for the data path.

Arenas (``limit_malloc_arenas``, at CLI start-up). glibc gives threads that
allocate concurrently arenas of their own, up to eight per core, and each
arena keeps much of what it freed. dr's data path runs a dozen short-lived
worker threads (readers, pack uploads, S3 part uploads) that allocate megabyte
buffers, so the default leaves ~20 MB of freed memory spread over idle
arenas: measured on the 1 GiB benchmark set into SeaweedFS, peak RSS 212–214
MB with the default, 187–194 MB with two arenas, same wall time. Two arenas
suit two cores (bench/RESULTS.md). A ``MALLOC_ARENA_MAX`` set by the user wins.

Thresholds (``tune_allocator``, when a backup or restore starts). Every chunk
produces new multi-hundred-KiB buffers (compressed and sealed copies). glibc
serves allocations that large with fresh ``mmap``s and gives freed heap back
eagerly, so each buffer costs first-touch page faults — on these VMs that
doubled the system time of a backup (175,000 minor faults for 1 GiB; 42,000
with the settings below). Keeping such buffers in the heap and not trimming it
makes the allocator reuse warm pages. Memory stays bounded: the pipeline holds
only a few packs and chunks at a time.

On a C library without ``mallopt`` (musl, macOS) nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads created from now on; True if the C library took it."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the user's own setting, read by glibc at start-up
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, arenas))


@functools.cache
def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False if not glibc."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, 64 << 20))
    return bool(mallopt(M_TRIM_THRESHOLD, 64 << 20)) and ok
