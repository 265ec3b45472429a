"""zstd straight into a caller's buffer (dr/repo/compress_into.py), and the staged
payloads built with it (Codec.staged)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from dr.crypto.aead import Sealer
from dr.repo.compress_into import ZstdInto
from dr.repo.format import FLAG_RAW, FLAG_ZSTD, BlobType, Codec, blob_aad, sealed_size

LOG = b"".join(
    b"2024-05-01 10:%02d:%02d INFO req=%d GET /healthz ok dur=%dms\n" % (i % 60, i % 59, i, i % 977)
    for i in range(60000)
)


def reference(data: bytes, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


@pytest.fixture(params=["direct", "fallback"])
def zstd_into(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ZstdInto:
    if request.param == "fallback":
        monkeypatch.setitem(sys.modules, "zstandard._cffi", None)  # as if cffi were missing
    z = ZstdInto(3)
    assert z.direct == (request.param == "direct")
    return z


@given(
    st.binary(max_size=3000) | st.sampled_from([b"", LOG[:100_000], LOG[: 1 << 20], os.urandom(70_000)]),
    st.booleans(),
)
def test_frames_are_those_of_python_zstandard(data: bytes, warm: bool) -> None:
    z = ZstdInto(3)
    if warm:  # a chunk-sized input came first: small ones take the cffi path too
        z.compress_into(LOG[: 1 << 17], memoryview(bytearray(1 << 17)))
    want = reference(data, 3)
    out = bytearray(len(want) + 10)
    n = z.compress_into(data, memoryview(out))
    assert out[:n] == want
    assert zstandard.ZstdDecompressor().decompress(bytes(out[:n])) == data


def test_small_inputs_share_the_context_of_large_ones() -> None:
    # After a chunk-sized input, a thread compresses small ones (trees, tails of files)
    # with the same context: python-zstandard's context, sized anew to every small
    # input, is not made.
    z = ZstdInto(3)
    small = LOG[:3000]
    out = memoryview(bytearray(len(small)))
    z.compress_into(small, out)
    assert hasattr(z._local, "zc")  # before: python-zstandard, the cffi module not mapped for it
    if not z.direct:
        pytest.skip("cffi missing")

    seen: dict[str, object] = {}

    def work() -> None:  # a thread of its own: contexts are per thread
        z.compress_into(LOG[: 1 << 17], memoryview(bytearray(1 << 17)))
        n = z.compress_into(small, out)
        seen.update(frame=bytes(out[:n]), cffi=hasattr(z._local, "cctx"), zc=hasattr(z._local, "zc"))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == {"frame": reference(small, 3), "cffi": True, "zc": False}


def test_a_frame_that_does_not_fit_gives_0_and_the_next_one_works(zstd_into: ZstdInto) -> None:
    noise = os.urandom(200_000)
    room = memoryview(bytearray(len(noise) - 1))  # only frames smaller than the input fit
    assert zstd_into.compress_into(noise, room) == 0
    text = LOG[:500_000]
    n = zstd_into.compress_into(text, memoryview(bytearray(len(text) - 1)))
    assert 0 < n < len(text) // 5
    out = bytearray(len(text))
    assert zstd_into.compress_into(text, memoryview(out)) == n
    assert bytes(out[:n]) == reference(text, 3)


def test_threads_compress_with_contexts_of_their_own(zstd_into: ZstdInto) -> None:
    inputs = [LOG[i * 7919 : i * 7919 + 300_000] for i in range(8)]
    results: dict[int, bytes] = {}

    def work(i: int) -> None:
        for _ in range(3):
            out = bytearray(len(inputs[i]))
            n = zstd_into.compress_into(inputs[i], memoryview(out))
            results[i] = bytes(out[:n])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == reference(inputs[i], 3) for i in range(8))


def test_staged_payloads_make_no_chunk_sized_object() -> None:
    # The point of compressing in place: a 4 MiB chunk costs no heap block of its size
    # (python-zstandard's compress made a ~4 MiB bytes object for each chunk).
    codec = Codec(Sealer(os.urandom(32)))
    aad = blob_aad(BlobType.DATA, bytes(32))
    chunk, noise = LOG[: 4 << 20], os.urandom(4 << 20)
    with codec.staged(chunk):  # the staging buffer and the context exist from here on
        pass
    for data, flag in ((chunk, FLAG_ZSTD), (noise, FLAG_RAW)):
        tracemalloc.start()
        try:
            with codec.staged(data) as payload:
                assert payload[0] == flag
                grown = tracemalloc.get_traced_memory()[1]
                sealed = bytearray(sealed_size(len(payload) - 1))
                codec.seal_payload_into(payload, aad, memoryview(sealed))
        finally:
            tracemalloc.stop()
        assert grown < 64 << 10
        assert codec.decode(bytes(sealed), aad, what="t") == data


def test_restores_do_not_load_the_cffi_module() -> None:
    # A restore decodes, and writes only its lock: the 12 MB cffi module is mapped by
    # the first chunk-sized compression.
    code = """
        import os, sys
        from dr.crypto.aead import Sealer
        from dr.repo.format import Codec
        codec = Codec(Sealer(os.urandom(32)))
        sealed = codec.sealer.seal(bytes([0]) + b"plain", b"aad")
        assert codec.decode(sealed, b"aad", what="t") == b"plain"
        codec.encode(b'{"lock": "shared"}' * 100, b"aad")
        print("zstandard._cffi" in sys.modules)
        codec.encode(b"x" * (64 << 10), b"aad")
        print("zstandard._cffi" in sys.modules)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_a_zstd_error_is_named() -> None:
    # Errors other than "destination too small" are raised with zstd's own name for them.
    from dr.repo.compress_into import _check

    z = ZstdInto(3)
    if not z.direct:
        pytest.skip("cffi missing")
    ffi, lib = z._cffi  # type: ignore[misc]
    cctx = ffi.gc(lib.ZSTD_createCCtx(), lib.ZSTD_freeCCtx)
    code = lib.ZSTD_CCtx_setParameter(cctx, 9999, 1)  # no such parameter
    with pytest.raises(zstandard.ZstdError, match="zstd compression failed: Unsupported parameter"):
        _check(ffi, lib, code)
    _check(ffi, lib, 0)  # success: nothing raised
