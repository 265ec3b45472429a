"""Allocator tuning for the data path.

Every chunk produces new multi-hundred-KiB buffers (compressed and sealed
copies). glibc serves allocations that large with fresh ``mmap``s and gives
freed heap back eagerly, so each buffer costs first-touch page faults — on
these VMs that doubled the system time of a backup (175,000 minor faults for
1 GiB; 42,000 with the settings below). Keeping such buffers in the heap
and not trimming it makes the allocator reuse warm pages. Memory stays
bounded: the pipeline holds only a few packs and chunks at a time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


@functools.cache
def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False if not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, 64 << 20))
    ok = bool(mallopt(M_TRIM_THRESHOLD, 64 << 20)) and ok
    return ok
