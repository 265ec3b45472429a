"""The in-memory index (dr.repo.index): lookups, duplicate listings, and its memory per blob."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from dr.repo.format import BlobType, FormatError, PackEntries, PackEntry
from dr.repo.index import ENTRY_BITS, Index


def _pack(n: int, blob_type: BlobType = BlobType.DATA) -> tuple[bytes, list[PackEntry]]:
    entries = [PackEntry(blob_type, 1, i * 1000, 1000, 4000 + i, os.urandom(32)) for i in range(n)]
    return os.urandom(32), entries


def test_lookups_give_each_blob_its_pack_and_entry() -> None:
    index = Index()
    (p1, e1), (p2, e2) = _pack(5), _pack(3, BlobType.TREE)
    index.add_file("index/a", [(p1, e1)])
    index.add_pack(p2, e2)
    assert len(index) == 8 and index.files == {"index/a": [p1]}
    for pack, entries in ((p1, e1), (p2, e2)):
        assert index.packs[pack] == entries
        for e in entries:
            assert e.id in index
            loc = index.get(e.id)
            assert loc is not None and loc.pack == pack and loc.entry == e
    assert index.get(os.urandom(32)) is None and os.urandom(32) not in index
    assert set(index.blob_ids(BlobType.TREE)) == {e.id for e in e2}
    assert set(index.blob_ids(BlobType.DATA)) == {e.id for e in e1}
    assert set(index.blob_ids()) == {e.id for e in e1 + e2}


def test_first_copy_of_a_blob_wins_and_a_pack_listed_twice_counts_once() -> None:
    index = Index()
    p1, e1 = _pack(2)
    p2, e2 = _pack(1)
    again = [PackEntry(BlobType.DATA, 0, 5000, 10, 20, e1[0].id)]  # the same blob, in another pack
    index.add_pack(p1, e1)
    index.add_pack(p2, e2 + again)
    loc = index.get(e1[0].id)
    assert loc is not None and loc.pack == p1
    assert list(index.packs[p2]) == e2 + again  # prune still sees the second copy
    index.add_pack(p1, e1)  # a pack listed by two index files (same name, same content)
    assert len(index.packs) == 2 and len(index) == 3


def test_a_pack_with_too_many_blobs_is_refused() -> None:
    class Huge(PackEntries):
        def __len__(self) -> int:
            return 1 << ENTRY_BITS

    with pytest.raises(FormatError, match="more than 16777216 blobs"):
        Index().add_pack(os.urandom(32), Huge(b""))


def test_memory_per_blob() -> None:
    # The index holds every blob of the repository: a million for 1 TiB in 1 MiB chunks.
    packs = [_pack(16) for _ in range(1000)]
    tracemalloc.start()
    try:
        index = Index()
        for pack_id, entries in packs:
            index.add_pack(pack_id, PackEntries.of(entries))
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(index) == 16_000
    assert used / len(index) < 240, f"{used / len(index):.0f} bytes per blob"  # 336 as objects
