"""The in-memory index (dr.repo.index): lookups, duplicate listings, the sorted
arrays against a plain model, readers during merges, and its memory per blob."""

from __future__ import annotations

import os
import sys
import threading
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.repo.format import BlobType, FormatError, PackEntries, PackEntry
from dr.repo.index import ENTRY_BITS, MERGE_MIN, Index


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


def test_blobs_sharing_a_prefix_are_told_apart_by_their_whole_id() -> None:
    # The arrays keep 8 bytes of each id; ids that share them must still be found.
    prefix = os.urandom(8)
    ids = [prefix + os.urandom(24) for _ in range(5)]
    entries = [PackEntry(BlobType.DATA, 1, i * 10, 10, 20, bid) for i, bid in enumerate(ids)]
    for build in ("files", "packs"):
        index = Index()
        if build == "files":
            index.add_files([("index/a", [(os.urandom(32), entries[:3]), (os.urandom(32), entries[3:])])])
        else:
            index.add_pack(os.urandom(32), entries[:3])
            index.add_pack(os.urandom(32), entries[3:])
            assert len(index) == 5  # merges the recent blobs into the arrays
        for e in entries:
            loc = index.get(e.id)
            assert loc is not None and loc.entry == e, build
        assert index.get(prefix + os.urandom(24)) is None


def _model_pack(draw: st.DrawFn, pool: list[bytes]) -> tuple[bytes, list[PackEntry]]:
    ids = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6))
    return os.urandom(32), [PackEntry(BlobType.DATA, 0, i, 1, 1, bid) for i, bid in enumerate(ids)]


@st.composite
def _histories(draw: st.DrawFn) -> list[tuple[str, list[tuple[bytes, list[PackEntry]]]]]:
    """Steps of building an index: ("files", packs) loads index files, ("pack", [one]) adds one pack.
    Ids come from a small pool, many sharing a prefix, so copies and shared prefixes are common."""
    prefixes = [os.urandom(8) for _ in range(3)]
    pool = [draw(st.sampled_from(prefixes)) + os.urandom(24) for _ in range(12)]
    steps = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["files", "pack"]))
        n = draw(st.integers(1, 3)) if kind == "files" else 1
        steps.append((kind, [_model_pack(draw, pool) for _ in range(n)]))
    return steps


@settings(max_examples=150, deadline=None)
@given(_histories())
def test_the_index_answers_as_a_dict_of_first_copies(steps: list[tuple[str, list]]) -> None:
    index, model = Index(), {}  # model: blob id -> (pack, entry) of its first copy
    for n, (kind, packs) in enumerate(steps):
        if kind == "files":
            index.add_files([(f"index/{n}", packs)])
        else:
            index.add_pack(*packs[0])
        for pack_id, entries in packs:
            for e in entries:
                model.setdefault(e.id, (pack_id, e))
        for bid, (pack_id, e) in model.items():
            loc = index.get(bid)
            assert loc is not None and (loc.pack, loc.entry) == (pack_id, e)
    assert len(index) == len(model)
    assert sorted(index.blob_ids()) == sorted(model)


def test_merges_while_others_look_up_lose_no_blob() -> None:
    # Backups look blobs up without the lock while uploads add packs and merge them.
    index = Index()
    index.add_files([("index/a", [_pack(MERGE_MIN) for _ in range(8)])])
    adding = [_pack(32) for _ in range(400)]  # a merge every ~8 packs
    added: list[bytes] = []  # ids of the packs added so far
    done, missed = threading.Event(), []

    def look_up() -> None:
        while not done.is_set():
            # the newest blobs: those a merge is moving out of recent
            missed.extend(b for b in added[-MERGE_MIN:] if b not in index)

    readers = [threading.Thread(target=look_up) for _ in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, inside a merge too
    try:
        for t in readers:
            t.start()
        for pack_id, entries in adding:
            index.add_pack(pack_id, entries)
            added += [e.id for e in entries]
    finally:
        done.set()
        for t in readers:
            t.join()
        sys.setswitchinterval(interval)
    assert missed == []
    assert len(index) == MERGE_MIN * 8 + 32 * 400


@pytest.mark.parametrize("build", ["files", "packs"])
def test_memory_per_blob(build: str) -> None:
    # The index holds every blob of the repository: a million for 1 TiB in 1 MiB chunks.
    # Each blob costs its 46-byte record (made before tracing here) and 16 bytes in the arrays.
    packs = [(pack_id, PackEntries.of(entries)) for pack_id, entries in (_pack(16) for _ in range(1000))]

    def built() -> Index:
        index = Index()
        if build == "files":
            index.add_files([("index/a", packs)])
        else:
            for pack_id, entries in packs:
                index.add_pack(pack_id, entries)
            len(index)  # merges what waits in recent
        return index

    # Built once before tracing: CPython's free lists (a merge's tuples) fill on the
    # first run in a process and would count as the index's (26 bytes a blob when
    # this test ran alone, 21 after other tests).
    built()
    tracemalloc.start()
    try:
        index = built()
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(index) == 16_000
    assert used / len(index) < 24, f"{used / len(index):.0f} bytes per blob"  # 140 as a dict of ids
