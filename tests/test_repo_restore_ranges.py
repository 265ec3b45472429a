"""Which byte ranges of a pack a restore fetches (dr.repo.restorer._ranges)."""

from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.repo.archiver import backup_directory
from dr.repo.format import BlobType, PackEntry
from dr.repo.ordered_writer import OrderedFileWriter
from dr.repo.restorer import MAX_RANGE, RANGE_WASTE, _ranges, restore_snapshot
from tests.repo_helpers import describe_tree, init_repo, make_store


def entries(layout: list[tuple[int, int, bool]]) -> tuple[list[PackEntry], list[PackEntry]]:
    """A pack of blobs back to back (gap after each, length, needed?) -> (all, needed)."""
    out, needed, pos = [], [], 0
    for i, (gap, length, want) in enumerate(layout):
        e = PackEntry(BlobType.DATA, 0, pos, length, length, i.to_bytes(32, "big"))
        out.append(e)
        if want:
            needed.append(e)
        pos += length + gap
    return out, needed


layouts = st.lists(
    st.tuples(st.integers(0, 3000), st.integers(1, 5000), st.booleans()), min_size=1, max_size=60
)


@given(layouts, st.integers(1, 40000))
def test_ranges_cover_each_needed_blob_once_within_the_cap(
    layout: list[tuple[int, int, bool]], cap: int
) -> None:
    _, needed = entries(layout)
    if not needed:
        return
    ranges = _ranges(list(needed), max_range=cap)
    got = [e for _, _, group in ranges for e in group]
    assert sorted(got, key=lambda e: e.offset) == sorted(needed, key=lambda e: e.offset)
    for offset, length, group in ranges:
        assert all(offset <= e.offset and e.offset + e.length <= offset + length for e in group)
        assert group[0].offset == offset and group[-1].offset + group[-1].length == offset + length
        assert length <= cap or len(group) == 1
    fetched = sum(length for _, length, _ in ranges)
    assert fetched <= RANGE_WASTE * sum(e.length for e in needed) or all(
        len(g) == 1 or all(b.offset == a.offset + a.length for a, b in itertools.pairwise(g))
        for _, _, g in ranges
    )


def test_a_whole_pack_needed_is_fetched_in_capped_pieces() -> None:
    all_, _ = entries([(0, 1 << 20, True)] * 16)  # 16 blobs of 1 MiB back to back
    ranges = _ranges(list(all_), max_range=8 << 20)
    assert [(o, n, len(g)) for o, n, g in ranges] == [(0, 8 << 20, 8), (8 << 20, 8 << 20, 8)]


def test_restore_from_s3_goes_pack_by_pack(tmp_path: Path, request: Any) -> None:
    # Large files side by side in packs: a request per pack range, not one per run of each file.
    src = tmp_path / "src"
    src.mkdir()
    files = 16
    for i in range(files):
        (src / f"f{i:02}.bin").write_bytes(os.urandom((4 << 20) + i * (64 << 10)))
    store = make_store("s3", tmp_path, request)
    repo, _ = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    ranges: list[tuple[str, int, int]] = []
    get_range = store.get_range

    def counted(name: str, offset: int, length: int) -> bytes:
        ranges.append((name, offset, length))
        return get_range(name, offset, length)

    store.get_range = counted  # type: ignore[method-assign]
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out)
    assert not stats.errors
    assert describe_tree(out) == describe_tree(src)
    data = [r for r in ranges if r[0].startswith("data/")]
    packs = {name for name, _, _ in data}
    assert len(data) < files and len(data) <= 3 * len(packs), data
    assert all(length <= MAX_RANGE for _, _, length in data)


def test_s3_restore_reports_large_files_it_could_not_write(
    tmp_path: Path, request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (src / name).write_bytes(os.urandom(5 << 20))
    store = make_store("s3", tmp_path, request)
    repo, _ = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    put = OrderedFileWriter.put

    def faulty(self: OrderedFileWriter, offset: int, data: Any) -> None:
        if self.path.endswith("a.bin"):
            raise OSError(errno.ENOSPC, "No space left on device")
        if self.path.endswith("b.bin") and offset == 0:
            return  # a blob lost on the way (a bug): the file never completes
        put(self, offset, data)

    monkeypatch.setattr(OrderedFileWriter, "put", faulty)
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out)
    assert stats.errors == [
        "a.bin: write failed: No space left on device",
        "b.bin: incomplete: not every blob of the file could be written",
    ]
    assert (out / "c.bin").read_bytes() == (src / "c.bin").read_bytes()
