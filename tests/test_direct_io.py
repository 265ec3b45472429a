"""SequentialWriter and the sparse writes: blobs decoded straight into the staging buffer, holes kept."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dr.storage.direct_io import ALIGN, SPARSE_BLOCK, SequentialWriter, populated, write_sparse


def decoder(blob: bytes, *, spare_needed: int = 0) -> Callable[[memoryview, memoryview], None]:
    """A decode that behaves like Codec.decode_into: scribbles on the lent byte and on
    the spare room it is given, then writes the blob."""

    def decode(out: memoryview, spare: memoryview) -> None:
        assert len(out) == len(blob) + 1
        out[0] = 0xEE
        if len(spare) >= spare_needed:
            spare[:spare_needed] = b"\xdd" * spare_needed
        out[1:] = blob

    return decode


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.integers(0, 40_000), st.booleans(), st.integers(0, 20_000)), max_size=12),
    st.sampled_from([ALIGN + 8192, ALIGN + 65536]),
)
def test_decoded_and_copied_blobs_give_the_file(
    tmp_path_factory: pytest.TempPathFactory, blobs: list[tuple[int, bool, int]], size: int
) -> None:
    path = tmp_path_factory.mktemp("seq") / "f"
    rng = os.urandom
    expected = bytearray()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        w = SequentialWriter(fd, mmap.mmap(-1, size))
        for n, decoded, spare in blobs:
            blob = rng(n)
            if decoded:  # larger than the buffer too: then through memory of its own
                w.write_decoded(n, decoder(blob, spare_needed=spare), spare=spare)
            else:
                w.write(blob)
            expected += blob
        w.close()
    finally:
        os.close(fd)
    assert path.read_bytes() == expected
    assert w.written == len(expected)


def test_a_decode_that_fails_stages_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        w = SequentialWriter(fd, mmap.mmap(-1, ALIGN + 16384))
        w.write(b"first")

        def broken(out: memoryview, spare: memoryview) -> None:
            out[:] = b"\xff" * len(out)  # wrote before it failed (a blob that fails its tag)
            raise ValueError("bad blob")

        with pytest.raises(ValueError, match="bad blob"):
            w.write_decoded(100, broken)
        w.write_decoded(4, decoder(b"next"))
        w.close()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"firstnext"  # the lent byte ("t") was put back


def test_a_buffer_must_hold_more_than_its_lent_page() -> None:
    with pytest.raises(ValueError, match="more than 4096 bytes"):
        SequentialWriter(0, mmap.mmap(-1, ALIGN))


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not hasattr(mmap, "MAP_POPULATE"), reason="Linux only")
def test_populated_memory_is_resident_from_the_start() -> None:
    # So that memory use is the same whatever the data: all of it counts at once.
    before = resident_bytes()
    buf = populated(32 << 20)
    try:
        assert len(buf) == 32 << 20
        assert resident_bytes() - before >= 30 << 20
    finally:
        buf.close()


@pytest.mark.parametrize("sequential", [False, True], ids=["write_sparse", "SequentialWriter"])
def test_sparse_writes_leave_all_zero_blocks_as_holes(tmp_path: Path, sequential: bool) -> None:
    # Blocks of zeros but for their last byte, or their first, are data; whole zero
    # blocks are holes; a short last block is judged by its own length.
    size = 12 * SPARSE_BLOCK + 1000
    data = bytearray(size)
    data[SPARSE_BLOCK - 1] = 1  # block 0: data in its last byte
    data[5 * SPARSE_BLOCK] = 2  # block 5: in its first
    data[-1] = 3  # the short last block
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.truncate(size)
    fd = os.open(path, os.O_WRONLY)
    try:
        if sequential:
            w = SequentialWriter(fd, populated(ALIGN + 4 * SPARSE_BLOCK), sparse=True)
            w.write(bytes(data))
            w.close()
        else:
            write_sparse(fd, bytes(data), 0)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    # 3 blocks of 13 written (ext4 may count a block more until writeback: not a 4th of 64 KiB)
    assert os.stat(path).st_blocks * 512 < 4 * SPARSE_BLOCK
