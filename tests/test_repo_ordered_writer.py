"""OrderedFileWriter: a restored file's blobs in any order, from any thread, written front to back."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dr.repo.ordered_writer import EarlyBudget, OrderedFileWriter, StagingPool
from dr.storage.direct_io import ALIGN


def pieces(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [(a, data[a:b]) for a, b in itertools.pairwise(bounds)]


def new_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def decoded(piece: bytes) -> Callable[[memoryview, memoryview], None]:
    """A decode like Codec.decode_into's: writes the lent byte, then the piece."""

    def decode(out: memoryview, spare: memoryview) -> None:
        out[0] = 0xEE
        out[1:] = piece

    return decode


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(1, 3 << 20),
    st.lists(st.integers(0, 1 << 30), max_size=12),
    st.randoms(use_true_random=False),
    st.integers(1, 4),
    st.booleans(),
    st.sampled_from([0, 300_000, None]),
    st.booleans(),
)
def test_any_order_any_threads_gives_the_file(
    tmp_path_factory: pytest.TempPathFactory,
    size: int,
    cuts: list[int],
    rnd: random.Random,
    threads: int,
    decode: bool,
    limit: int | None,
    sealed: bool,
) -> None:
    # Blobs handed over decoded (put) or to decode in place (put_decoded; a 1 MiB
    # buffer, so that some are larger than it), early ones waiting decoded or, read
    # on their own, sealed; held up to a budget (none, some, the default), past
    # which the file is written in place.
    path = tmp_path_factory.mktemp("ordered") / "f"
    data = os.urandom(size)
    new_file(path, size)
    parts = pieces(data, cuts)
    rnd.shuffle(parts)
    budget = EarlyBudget(limit)
    w = OrderedFileWriter(str(path), size, pool=StagingPool(ALIGN + (1 << 20)), budget=budget)

    def put(part: tuple[int, bytes]) -> None:
        if decode:
            held = len(part[1]) // 2 + 1 if sealed else 0
            w.put_decoded(part[0], len(part[1]), decoded(part[1]), spare=1000, held=held)
        else:
            w.put(*part)

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, parts))
        assert w.complete and not w.failed
        assert path.read_bytes() == data
        assert w.written == size
        assert budget.held == 0
    finally:
        path.unlink()


def test_past_the_budget_a_file_is_written_in_place(tmp_path: Path) -> None:
    data = os.urandom(50_000)
    paths = [tmp_path / "a", tmp_path / "b"]
    for p in paths:
        new_file(p, len(data))
    budget = EarlyBudget(15_000)  # shared: what one file holds, the other cannot
    a, b = (OrderedFileWriter(str(p), len(data), budget=budget) for p in paths)
    a.put(0, data[:5000])  # staged, front to back
    a.put(20_000, data[20_000:30_000])  # early, held
    assert budget.held == 10_000 and not a.in_place
    b.put(40_000, data[40_000:])  # 10,000 more would pass 15,000: b goes in place
    assert b.in_place and budget.held == 10_000
    a.put(30_000, data[30_000:40_000])  # a too: the staged bytes and what waits are written
    assert a.in_place and budget.held == 0
    for w in (a, b):
        w.put(5000, data[5000:20_000])
        w.put(30_000, data[30_000:40_000])  # again: counted once
    a.put(40_000, data[40_000:])
    b.put(0, data[:5000])
    b.put(20_000, data[20_000:30_000])
    for w, p in zip((a, b), paths, strict=True):
        assert w.complete and not w.failed and w.written == len(data)
        assert p.read_bytes() == data


def test_a_file_that_cannot_go_in_place_fails_and_gives_its_budget_back(tmp_path: Path) -> None:
    path = tmp_path / "gone"
    path.mkdir()  # not a file: opening it for writing fails
    budget = EarlyBudget(1000)
    w = OrderedFileWriter(str(path), 3000, budget=budget)
    w.put(1000, b"b" * 1000)  # held
    with pytest.raises(IsADirectoryError):
        w.put(2000, b"c" * 1000)  # past the budget: in place, which cannot open the file
    assert w.failed and budget.held == 0


def test_a_decode_that_fails_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "f"
    new_file(path, 3000)
    w = OrderedFileWriter(str(path), 3000)

    def broken(out: memoryview, spare: memoryview) -> None:
        out[:] = b"\xff" * len(out)
        raise ValueError("bad blob")

    for offset in (0, 2000):  # the next blob (into the buffer), an early one (memory of its own)
        with pytest.raises(ValueError, match="bad blob"):
            w.put_decoded(offset, 1000, broken)
    assert not w.failed
    w.put_decoded(1000, 1000, decoded(b"b" * 1000))
    w.put_decoded(0, 1000, decoded(b"a" * 1000))
    w.put(2000, b"c" * 1000)
    assert w.complete and path.read_bytes() == b"a" * 1000 + b"b" * 1000 + b"c" * 1000


def test_a_blob_repeated_in_the_file_is_written_once_per_place(tmp_path: Path) -> None:
    blob = os.urandom(5000)
    data = blob + os.urandom(3000) + blob
    path = tmp_path / "f"
    new_file(path, len(data))
    w = OrderedFileWriter(str(path), len(data))
    w.put(8000, blob)  # early
    w.put(0, blob)
    w.put(0, blob)  # again: already written, ignored
    w.put(5000, data[5000:8000])
    assert w.complete and path.read_bytes() == data


@pytest.mark.parametrize("limit", [None, 0])  # early blobs held; written in place
def test_sparse_file_keeps_its_holes(tmp_path: Path, limit: int | None) -> None:
    size = 8 << 20
    data = bytearray(size)
    data[4 << 20 : (4 << 20) + 4096] = os.urandom(4096)
    path = tmp_path / "sparse.img"
    new_file(path, size)
    w = OrderedFileWriter(str(path), size, sparse=True, budget=EarlyBudget(limit))
    for off in reversed(range(0, size, 1 << 20)):  # all early but the last
        w.put(off, bytes(data[off : off + (1 << 20)]))
    assert w.in_place == (limit == 0)
    assert w.complete and path.read_bytes() == data
    assert os.stat(path).st_blocks * 512 < 1 << 20


def test_a_failed_file_drops_what_waits_and_takes_no_more(tmp_path: Path) -> None:
    path = tmp_path / "f"
    new_file(path, 3000)
    w = OrderedFileWriter(str(path), 3000)
    w.put(1000, b"b" * 1000)
    w.fail()  # e.g. the blob at offset 0 failed verification
    w.put(0, b"a" * 1000)
    w.put(2000, b"c" * 1000)
    assert w.failed and not w.complete
    assert path.read_bytes() == bytes(3000)  # nothing written: the restore reports the file failed


def test_finish_closes_an_incomplete_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    new_file(path, 2000)
    w = OrderedFileWriter(str(path), 2000)
    w.put(0, b"a" * 1000)  # opened, staged, never completed
    w.finish()
    assert w.failed and not w.complete


def test_a_write_error_fails_the_file_and_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "gone"
    path.mkdir()  # not a file: opening it for writing fails
    w = OrderedFileWriter(str(path), 1000)
    w.put(500, b"b" * 500)  # early: nothing opened yet
    with pytest.raises(IsADirectoryError):
        w.put(0, b"a" * 500)
    assert w.failed and not w.complete
    w.put(0, b"a" * 500)  # a failed file takes no more
    w.finish()


def test_a_write_error_of_a_decoded_blob_fails_the_file_and_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "gone"
    path.mkdir()  # not a file: opening it for writing fails
    w = OrderedFileWriter(str(path), 1000)
    w.put_decoded(500, 500, decoded(b"b" * 500))  # early: decoded apart, nothing opened yet
    with pytest.raises(IsADirectoryError):
        w.put_decoded(0, 500, decoded(b"a" * 500))
    assert w.failed and not w.complete
    w.put_decoded(0, 500, decoded(b"a" * 500))  # a failed file takes no more
    w.finish()


def test_files_share_staging_buffers_from_a_pool(tmp_path: Path) -> None:
    # Ten files, at most three open at a time, several threads: each file comes out
    # whole, and the pool made no more buffers than files were open at once.
    pool = StagingPool(64 << 10)
    made: list[object] = []
    take = pool.take

    def counting_take() -> object:
        buf = take()
        if all(buf is not b for b in made):
            made.append(buf)
        return buf

    pool.take = counting_take  # type: ignore[method-assign]
    datas = [os.urandom(200_000 + i) for i in range(10)]
    paths = [tmp_path / f"f{i}" for i in range(10)]
    for p, d in zip(paths, datas, strict=True):
        new_file(p, len(d))
    for group in (range(0, 3), range(3, 6), range(6, 9), range(9, 10)):
        writers = {i: OrderedFileWriter(str(paths[i]), len(datas[i]), pool=pool) for i in group}
        parts = [(i, off, piece) for i in group for off, piece in pieces(datas[i], [70_000, 150_000])]
        random.Random(len(group)).shuffle(parts)
        with ThreadPoolExecutor(3) as ex:
            list(ex.map(lambda p, w=writers: w[p[0]].put(p[1], p[2]), parts))
        assert all(w.complete and not w.failed for w in writers.values())
    pool.close()
    assert [p.read_bytes() for p in paths] == datas
    assert len(made) <= 3


def test_a_failed_file_gives_its_buffer_back(tmp_path: Path) -> None:
    pool = StagingPool()
    used = pool.take()
    pool.give(used)
    path = tmp_path / "f"
    new_file(path, 3000)
    w = OrderedFileWriter(str(path), 3000, pool=pool)
    w.put(0, b"a" * 1000)  # opened: it took the pool's one buffer
    assert pool.take() is not used
    w.fail()
    assert pool.take() is used  # back, and no longer exported: closing it works
    used.close()
    pool.close()


def test_an_early_blob_read_on_its_own_waits_sealed(tmp_path: Path) -> None:
    # put_decoded with ``held``: an early blob keeps what was read (counted in the
    # budget) and is decoded when its turn comes, straight into the staging buffer.
    path = tmp_path / "f"
    new_file(path, 3000)
    budget = EarlyBudget(1000)
    w = OrderedFileWriter(str(path), 3000, budget=budget)
    calls: list[int] = []

    def counted(piece: bytes) -> Callable[[memoryview, memoryview], None]:
        decode = decoded(piece)

        def run(out: memoryview, spare: memoryview) -> None:
            calls.append(len(piece))
            decode(out, spare)

        return run

    w.put_decoded(2000, 1000, counted(b"c" * 1000), held=400)  # sealed: 400 bytes
    w.put_decoded(1000, 1000, counted(b"b" * 1000), held=500)  # 900 of 1000 now
    assert calls == [] and budget.held == 900 and not w.in_place
    w.put_decoded(1000, 1000, counted(b"x" * 1000), held=500)  # the same blob again: ignored
    w.put_decoded(0, 1000, counted(b"a" * 1000), held=100)  # the next one: the others follow
    assert calls == [1000] * 3 and budget.held == 0
    assert w.complete and path.read_bytes() == b"a" * 1000 + b"b" * 1000 + b"c" * 1000


def test_past_the_budget_a_sealed_blob_is_decoded_and_waits_or_goes_in_place(tmp_path: Path) -> None:
    path = tmp_path / "f"
    new_file(path, 3000)
    budget = EarlyBudget(1000)
    w = OrderedFileWriter(str(path), 3000, budget=budget)
    w.put_decoded(2000, 1000, decoded(b"c" * 1000), held=800)  # waits sealed
    w.put_decoded(1000, 1000, decoded(b"b" * 1000), held=800)  # no room: decoded, and then
    assert w.in_place and budget.held == 0  # ... no room either: the file goes in place
    w.put_decoded(0, 1000, decoded(b"a" * 1000), held=800)
    assert w.complete and path.read_bytes() == b"a" * 1000 + b"b" * 1000 + b"c" * 1000


@pytest.mark.parametrize("turn", ["next", "put", "in place"])
def test_a_sealed_blob_that_fails_when_its_turn_comes_fails_the_file(tmp_path: Path, turn: str) -> None:
    path = tmp_path / "f"
    new_file(path, 3000)
    budget = EarlyBudget(2000)
    w = OrderedFileWriter(str(path), 3000, budget=budget)

    def broken(out: memoryview, spare: memoryview) -> None:
        out[:] = b"\xff" * len(out)
        raise ValueError("bad blob at 1000")

    w.put_decoded(1000, 1000, broken, held=500)  # waits: nothing decoded yet
    assert not w.failed and budget.held == 500
    w.put_decoded(2000, 1000, decoded(b"c" * 1000), held=500)
    with pytest.raises(ValueError, match="bad blob at 1000"):
        if turn == "next":  # the blob before it, decoded in place, drains it
            w.put_decoded(0, 1000, decoded(b"a" * 1000))
        elif turn == "put":  # or handed over decoded
            w.put(0, b"a" * 1000)
        else:  # or the file goes in place: what waits is decoded to be placed
            budget.limit = 0
            w.put(500, b"z" * 10)
    assert w.failed and not w.complete and budget.held == 0
    w.put(0, b"a" * 1000)  # a failed file takes no more
    w.finish()


@pytest.mark.parametrize("decode", [False, True])
def test_a_blob_past_the_files_size_fails_the_file_and_is_raised(tmp_path: Path, decode: bool) -> None:
    # A plan whose blobs add up to more than the recorded size must not write on past
    # the end (a complete file is closed; a new writer would start over at offset 0).
    from dr.errors import DrError

    path = tmp_path / "f"
    new_file(path, 2000)
    w = OrderedFileWriter(str(path), 2000)
    w.put(0, b"a" * 1000)
    with pytest.raises(DrError, match="runs past the file's size 2000"):
        if decode:
            w.put_decoded(1000, 1500, decoded(b"b" * 1499))
        else:
            w.put(1000, b"b" * 1500)
    assert w.failed and not w.complete
    w.finish()
    assert os.path.getsize(path) == 2000
