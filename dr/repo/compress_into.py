"""zstd compression straight into a caller's buffer (``compress_into``).

python-zstandard's ``ZstdCompressor.compress`` returns a new ``bytes`` sized for
the worst case (``ZSTD_compressBound``: the input plus ~0.4%) and shrinks it
afterwards, and its streaming calls copy the input into zstd's window first (3%
more CPU, measured). A backup compresses every chunk (up to 4 MiB), two workers
at once, so every chunk made a multi-megabyte heap block that was cut down, then
copied into the sealing buffer and freed, and the heap kept the largest pair of
them (local full backups, peak RSS: 1 GiB set 98-99 MB, 4 GiB 99-100 MB).
With this module: 90-92 MB and 92 MB, same times (bench/RESULTS.md).

Here one ``ZSTD_compress2`` call writes the frame into the caller's buffer, whose
size is the largest output worth keeping: a frame that does not fit is not
smaller than its input, and the blob is stored raw (FORMAT.md §5.2) — zstd
stops with "destination too small" instead. The C function is the zstd that
python-zstandard bundles, called through the cffi module its wheel ships
(``zstandard._cffi``; cffi releases the GIL for the call, so the two workers
compress side by side). Frames are byte for byte those of
``ZstdCompressor(level=..., write_content_size=True).compress`` (tested). Where
that module cannot load (no cffi), ``compress_into`` falls back to
``compress`` and a copy.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import zstandard

# Smaller inputs (locks, snapshots, most trees) go through python-zstandard's
# compress until a larger one has mapped the cffi module: its bytes object is small,
# and a restore, which writes only its lock, then never maps that module (664 KB of
# it read from a cold disk).
DIRECT_MIN = 64 << 10


class ZstdInto:
    """Per-thread zstd contexts at one level; thread-safe."""

    def __init__(self, level: int) -> None:
        self.level = level
        self._local = threading.local()

    @functools.cached_property
    def _cffi(self) -> tuple[Any, Any] | None:
        """(ffi, lib) of zstandard's cffi module, loaded on first use (a restore never
        compresses, and need not map its 12 MB); None without cffi."""
        try:
            from zstandard._cffi import ffi, lib
        except ImportError:  # cffi missing: compress, then copy
            return None
        return ffi, lib

    @property
    def direct(self) -> bool:
        """True when frames are written straight into the caller's buffer."""
        return self._cffi is not None

    def compress_into(self, src: bytes | bytearray | memoryview, dst: memoryview) -> int:
        """Compress ``src`` into ``dst`` as one zstd frame (content size in its header);
        -> the frame's length, or 0 when it would not fit in ``dst`` (nothing usable
        in ``dst`` then; a caller passing ``len(src) - 1`` bytes keeps only frames
        smaller than their input)."""
        # Once mapped, the cffi module takes every size: a thread then keeps one context,
        # not one of each kind. python-zstandard's context sized its workspace anew to
        # each small input (in a 4 GiB backup, 114 heap blocks of 4-488 KB, ~1.4 MB of
        # them live at the end, and holes left between). 4 GiB full backup, peak RSS
        # 91.1-91.6 MB against 92.7-92.9. (A cached_property's value is in the
        # instance dict once computed: there only after a large input has loaded it.)
        cffi = self._cffi if len(src) >= DIRECT_MIN else self.__dict__.get("_cffi")
        if cffi is None:
            return self._fallback(src, dst)
        ffi, lib = cffi
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = ffi.gc(lib.ZSTD_createCCtx(), lib.ZSTD_freeCCtx)
            if cctx == ffi.NULL:
                raise MemoryError("zstd: cannot create a compression context")
            for param, value in (
                (lib.ZSTD_c_compressionLevel, self.level),
                (lib.ZSTD_c_contentSizeFlag, 1),
                (lib.ZSTD_c_checksumFlag, 0),  # the AEAD tag covers every byte (§5.2)
            ):
                _check(ffi, lib, lib.ZSTD_CCtx_setParameter(cctx, param, value))
            self._local.cctx = cctx
        n = lib.ZSTD_compress2(
            cctx, ffi.from_buffer(dst, require_writable=True), len(dst), ffi.from_buffer(src), len(src)
        )
        if lib.ZSTD_isError(n):
            # A failed call leaves the context mid-frame: start the next one afresh.
            lib.ZSTD_CCtx_reset(cctx, lib.ZSTD_reset_session_only)
            if lib.ZSTD_getErrorCode(n) == lib.ZSTD_error_dstSize_tooSmall:
                return 0
            _check(ffi, lib, n)
        return int(n)

    def _fallback(self, src: bytes | bytearray | memoryview, dst: memoryview) -> int:
        cctx = getattr(self._local, "zc", None)
        if cctx is None:
            cctx = self._local.zc = zstandard.ZstdCompressor(level=self.level, write_content_size=True)
        z = cctx.compress(src)
        if len(z) > len(dst):
            return 0
        dst[: len(z)] = z
        return len(z)


def _check(ffi: Any, lib: Any, code: int) -> None:
    if lib.ZSTD_isError(code):
        name = ffi.string(lib.ZSTD_getErrorName(code)).decode()
        raise zstandard.ZstdError(f"zstd compression failed: {name}")
