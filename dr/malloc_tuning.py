"""Process-wide allocator setting for dr's commands: at most two glibc malloc arenas.

glibc gives threads that allocate concurrently arenas of their own, up to
eight per core, and each arena keeps much of what it freed. dr's data path
runs a dozen short-lived worker threads (readers, pack uploads, S3 part
uploads) that allocate megabyte buffers, so the default leaves ~20 MB of
freed memory spread over idle arenas: measured on the 1 GiB benchmark set
into SeaweedFS, peak RSS 212–214 MB with the default, 187–194 MB with two
arenas, same wall time. Two arenas suit two cores (bench/RESULTS.md). A
``MALLOC_ARENA_MAX`` set by the user wins; on a C library without
``mallopt`` (musl, macOS) nothing changes.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads created from now on; True if the C library took it."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the user's own setting, read by glibc at start-up
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
