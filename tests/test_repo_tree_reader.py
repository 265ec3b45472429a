"""Tree blobs live in packs of their own and are read a run at a time (dr.repo.tree_cache)."""

from __future__ import annotations

import itertools
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.repo.archiver import backup_directory
from dr.repo.format import BlobType, FormatError, PackEntry, pack_name
from dr.repo.listing import list_entries
from dr.repo.repository import Repository
from dr.repo.restorer import restore_snapshot
from dr.repo.snapshots import Snapshot
from dr.repo.tree import read_tree
from dr.repo.tree_cache import KEEP_SMALL, pack_trees, tree_run
from dr.storage.base import StorageError
from tests.repo_helpers import describe_tree, init_repo, make_store, open_with


def pack(layout: list[tuple[bool, int]]) -> list[PackEntry]:
    """Entries back to back: (is a tree?, sealed length)."""
    out, pos = [], 0
    for i, (tree, length) in enumerate(layout):
        kind = BlobType.TREE if tree else BlobType.DATA
        out.append(PackEntry(kind, 0, pos, length, length, i.to_bytes(32, "big")))
        pos += length
    return out


@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, 3000)), min_size=1, max_size=50),
    st.integers(0, 49),
    st.integers(1, 20000),
    st.sets(st.integers(0, 49)),
)
def test_a_run_is_the_adjacent_trees_within_the_cap(
    layout: list[tuple[bool, int]], pick: int, cap: int, had: set[int]
) -> None:
    entries = pack(layout)
    trees = [e for e in entries if e.type == BlobType.TREE]
    if not trees:
        return
    wanted = trees[pick % len(trees)]
    have = {i.to_bytes(32, "big") for i in had} - {wanted.id}  # trees the reader holds already

    run = tree_run(pack_trees(list(reversed(entries))), wanted, cap, have.__contains__)  # in any order
    assert wanted in run and all(e.type == BlobType.TREE for e in run)
    assert not any(e.id in have for e in run), "a tree held already is not fetched again"
    assert all(a.offset + a.length == b.offset for a, b in itertools.pairwise(run))
    span = sum(e.length for e in run)
    assert span <= max(cap, wanted.length)
    # maximal: the adjacent tree on either side would not fit, or is held already
    by_end = {e.offset + e.length: e for e in trees}
    by_start = {e.offset: e for e in trees}
    before, after = by_end.get(run[0].offset), by_start.get(run[-1].offset + run[-1].length)
    for e in (before, after):
        if e is not None:
            assert span + e.length > cap or e.id in have


def test_a_tree_between_data_blobs_is_read_alone() -> None:
    # a pack written before trees had packs of their own
    entries = pack([(False, 100), (True, 10), (False, 100), (True, 10), (True, 10)])
    assert tree_run(pack_trees(entries), entries[1]) == [entries[1]]
    assert tree_run(pack_trees(entries), entries[3]) == entries[3:]
    assert tree_run([], entries[1]) == [entries[1]]  # a pack the index does not list


def many_dirs(root: Path, n: int = 40) -> None:
    rng = random.Random(7)
    for i in range(n):
        d = root / f"dir{i:03}" / "sub"
        d.mkdir(parents=True)
        (d / "a.txt").write_text(f"file {i}\n" * (i + 1))
        (d.parent / "b.bin").write_bytes(rng.randbytes(2000 + i))


def backed_up(tmp_path: Path, request: Any, dirs: int) -> tuple[Any, Repository, Any, Snapshot]:
    """A file store holding one backup of ``many_dirs(dirs)``: (store, repo, key, snapshot)."""
    src = tmp_path / "src"
    many_dirs(src, dirs)
    store = make_store("file", tmp_path, request)
    repo, key = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    assert snap.tree
    return store, repo, key, snap


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_trees_have_packs_of_their_own_and_load_in_one_request(
    kind: str, tmp_path: Path, request: Any
) -> None:
    src = tmp_path / "src"
    many_dirs(src)
    store = make_store(kind, tmp_path, request)
    repo, key = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot

    fresh = open_with(store, key)
    for entries in fresh.index.packs.values():
        assert len({e.type for e in entries}) == 1, "a pack mixes trees and data"
    tree_packs = [p for p, es in fresh.index.packs.items() if es[0].type == BlobType.TREE]
    assert len(tree_packs) == 1

    trees_read: list[str] = []
    get_range = store.get_range

    def counted(name: str, offset: int, length: int) -> bytes:
        if name == pack_name(tree_packs[0]):
            trees_read.append(name)
        return get_range(name, offset, length)

    store.get_range = counted  # type: ignore[method-assign]
    listed = list(list_entries(fresh, snap, recursive=True))
    assert len([e for e in listed if e.type == "dir"]) == 80
    assert len(trees_read) == 1 and fresh.trees.requests == 1  # 81 trees, one request

    out = tmp_path / "out"
    assert not restore_snapshot(fresh, snap, out).errors
    assert describe_tree(out) == describe_tree(src)
    assert len(trees_read) == 1, "the restore's plan found every tree in the cache"


def test_a_damaged_tree_fails_alone(tmp_path: Path, request: Any) -> None:
    store, repo, key, snap = backed_up(tmp_path, request, 5)
    src = tmp_path / "src"
    assert snap.tree
    root = read_tree(repo, snap.tree)
    victim = next(n["subtree"] for n in root if n["name"] == "dir002")
    loc = repo.index.get(bytes.fromhex(victim))
    assert loc is not None
    path = tmp_path / "repo" / pack_name(loc.pack)
    raw = bytearray(path.read_bytes())
    raw[loc.entry.offset + loc.entry.length // 2] ^= 0x55
    path.write_bytes(bytes(raw))

    fresh = open_with(store, key)
    assert [n["name"] for n in read_tree(fresh, snap.tree)] == [n["name"] for n in root]
    other = next(n["subtree"] for n in root if n["name"] == "dir003")
    assert read_tree(fresh, other)  # a neighbour in the same run
    with pytest.raises(
        FormatError, match=f"blob {victim[:16]} in {pack_name(loc.pack)}: authentication failed"
    ):
        read_tree(fresh, victim)
    # The restore names the directory it cannot read and restores the rest.
    out = tmp_path / "out"
    stats = restore_snapshot(fresh, snap, out)
    assert stats.errors == [
        f"dir002/: cannot read the directory's contents: blob {victim[:16]} in {pack_name(loc.pack)}: "
        "authentication failed (corrupted, truncated or tampered with)"
    ]
    for i in (0, 1, 3, 4):
        assert describe_tree(out / f"dir{i:03}") == describe_tree(src / f"dir{i:03}")
    assert list((out / "dir002").iterdir()) == []
    # a path under it is named as unreadable, not as absent from the snapshot
    stats = restore_snapshot(fresh, snap, tmp_path / "out2", paths=["dir002/sub/a.txt"])
    assert len(stats.errors) == 1 and stats.errors[0].startswith("dir002/: cannot read")


def test_a_walk_over_many_sibling_directories_opens_each_tree_once(tmp_path: Path, request: Any) -> None:
    # The trees of sibling directories lie in walk order. A run used to reach back
    # over the siblings just read and hold none of the next ones: every directory
    # cost a request and the reopening of a whole run (a 1,500-directory restore
    # plan opened 284,147 trees in 1,280 requests).
    store, _, key, snap = backed_up(tmp_path, request, 40)
    fresh = open_with(store, key)
    trees = [e for es in fresh.index.packs.values() for e in es if e.type == BlobType.TREE]
    fresh.trees.max_range = 10 * max(e.length for e in trees)  # runs of 10 trees or more
    opened: list[bytes] = []
    open_blob = fresh.trees._open

    def counted(entry: PackEntry, sealed: memoryview, what: str) -> bytes:
        opened.append(entry.id)
        return open_blob(entry, sealed, what)

    fresh.trees._open = counted
    dirs = [e for e in list_entries(fresh, snap, recursive=True) if e.type == "dir"]
    assert len(dirs) == 80
    assert sorted(opened) == sorted(set(opened)) and len(opened) == 81, "each tree opened once"
    assert fresh.trees.requests <= 81 // 10 + 1


def test_trees_fetched_ahead_stay_sealed_until_read(tmp_path: Path, request: Any) -> None:
    # A run brings the trees next to the one asked for; they wait in the cache as they
    # came (a restore of 210 directories held 3.3 MB of their plaintexts before) and
    # are opened, and verified, when they are asked for.
    store, _, key, snap = backed_up(tmp_path, request, 40)
    assert snap.tree
    fresh = open_with(store, key)
    reader = fresh.trees
    trees = {e.id: e for es in fresh.index.packs.values() for e in es if e.type == BlobType.TREE}
    opened: list[bytes] = []
    open_blob = reader._open

    def counted(entry: PackEntry, sealed: memoryview, what: str) -> bytes:
        opened.append(entry.id)
        return open_blob(entry, sealed, what)

    reader._open = counted
    root = read_tree(fresh, snap.tree, keep=False)
    assert opened == [bytes.fromhex(snap.tree)] and reader.requests == 1
    ahead = set(trees) - {bytes.fromhex(snap.tree)}
    assert set(reader._cache) == ahead == set(reader._sealed)
    assert reader._size == sum(trees[t].length for t in ahead) < sum(trees[t].raw_length for t in ahead)

    child = next(n["subtree"] for n in root if n["type"] == "dir")
    assert read_tree(fresh, child) == read_tree(open_with(store, key), child)
    assert opened[-1] == bytes.fromhex(child) and len(opened) == 2 and reader.requests == 1
    assert bytes.fromhex(child) in reader._cache and bytes.fromhex(child) not in reader._sealed  # kept, open
    assert reader._size == sum(map(len, reader._cache.values()))


def test_a_tree_fetched_ahead_is_read_while_its_run_is_still_being_opened(
    tmp_path: Path, request: Any
) -> None:
    # A run keeps its trees in the cache before it opens the one asked for (the
    # last): another thread may take one of them meanwhile. It once also took the
    # run's mark of it, and the run, ending, failed on the missing mark and never
    # woke the threads waiting on it.
    store, repo, key, snap = backed_up(tmp_path, request, 5)
    assert snap.tree
    fresh = open_with(store, key)
    reader = fresh.trees
    root = bytes.fromhex(snap.tree)
    child = next(n["subtree"] for n in read_tree(repo, snap.tree) if n["type"] == "dir")
    opening, child_read = threading.Event(), threading.Event()
    open_blob = reader._open

    def slow(entry: PackEntry, sealed: memoryview, what: str) -> bytes:
        if entry.id == root:
            opening.set()
            child_read.wait(10)
        return open_blob(entry, sealed, what)

    reader._open = slow
    got: dict[str, Any] = {}
    t = threading.Thread(target=lambda: got.update(root=read_tree(fresh, snap.tree)))
    t.start()
    assert opening.wait(10)
    got["child"] = read_tree(fresh, child)  # kept sealed by the run being opened
    child_read.set()
    t.join(10)
    assert not t.is_alive()
    assert got == {"root": read_tree(repo, snap.tree), "child": read_tree(repo, child)}
    assert reader._inflight == {} and reader.requests == 1


def test_threads_reading_trees_at_once_share_the_requests(tmp_path: Path, request: Any) -> None:
    store, repo, key, _ = backed_up(tmp_path, request, 30)
    ids = [bid.hex() for bid in repo.index.blob_ids(BlobType.TREE)]
    expected = {t: read_tree(repo, t) for t in ids}

    fresh = open_with(store, key)
    got: dict[str, Any] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def reader(seed: int) -> None:
        order = list(ids)
        random.Random(seed).shuffle(order)
        start.wait()
        try:
            for t in order:
                got[t] = read_tree(fresh, t)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == expected
    assert fresh.trees.requests <= 8


def test_the_cache_stays_within_its_bound(tmp_path: Path, request: Any) -> None:
    store, repo, key, _ = backed_up(tmp_path, request, 20)
    fresh = open_with(store, key)
    reader = fresh.trees
    reader.max_bytes = 2000
    ids = [bid.hex() for bid in fresh.index.blob_ids(BlobType.TREE)]
    for _ in range(2):
        for t in ids:
            assert read_tree(fresh, t) == read_tree(repo, t)
            assert reader._size <= 2000 and reader._size == sum(map(len, reader._cache.values()))


def test_a_failed_fetch_is_reported_and_the_next_read_tries_again(tmp_path: Path, request: Any) -> None:
    store, repo, key, snap = backed_up(tmp_path, request, 3)
    assert snap.tree
    fresh = open_with(store, key)
    get_range = store.get_range
    failures = [StorageError("connection reset")]  # the first fetch fails

    def flaky(name: str, offset: int, length: int) -> bytes:
        if failures:
            raise failures.pop()
        return get_range(name, offset, length)

    store.get_range = flaky  # type: ignore[method-assign]
    with pytest.raises(StorageError, match="connection reset"):
        read_tree(fresh, snap.tree)
    assert read_tree(fresh, snap.tree) == read_tree(repo, snap.tree)
    assert fresh.trees._inflight == {}


def test_a_tree_read_once_is_not_kept_unless_small(tmp_path: Path, request: Any) -> None:
    # A restore reads each directory's tree once: kept, every tree it read stayed
    # in the cache to its end (memory that grew with the volume's directories).
    store, repo, key, snap = backed_up(tmp_path, request, 40)
    assert snap.tree
    fresh = open_with(store, key)
    reader = fresh.trees
    root = fresh.index.get(bytes.fromhex(snap.tree))
    assert root is not None and root.entry.raw_length > KEEP_SMALL  # 40 entries
    assert read_tree(fresh, snap.tree, keep=False) == read_tree(repo, snap.tree)
    assert bytes.fromhex(snap.tree) not in reader._cache
    before = reader.requests
    assert read_tree(fresh, snap.tree, keep=False) == read_tree(repo, snap.tree)
    assert reader.requests == before + 1, "read again, it is fetched again"
    # one kept (a --path check before the walk) is handed out once more, then goes
    read_tree(fresh, snap.tree)
    assert bytes.fromhex(snap.tree) in reader._cache
    read_tree(fresh, snap.tree, keep=False)
    assert bytes.fromhex(snap.tree) not in reader._cache and reader.requests == before + 2
    assert reader._size == sum(map(len, reader._cache.values()))

    # a whole restore: what stays cached is small trees (here, each directory's own)
    fresh = open_with(store, key)
    restore_snapshot(fresh, snap, tmp_path / "out")
    assert describe_tree(tmp_path / "out") == describe_tree(tmp_path / "src")
    cached = fresh.trees._cache
    assert cached and all(len(plain) <= KEEP_SMALL for plain in cached.values())
    assert bytes.fromhex(snap.tree) not in cached


def test_the_trees_remembered_as_taken_are_bounded(
    tmp_path: Path, request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dr.repo.tree_cache as tree_cache

    monkeypatch.setattr(tree_cache, "TAKEN_MAX", 3)
    src = tmp_path / "src"
    for d in range(10):  # trees of 15 entries: each larger than KEEP_SMALL
        (src / f"d{d}").mkdir(parents=True)
        for f in range(15):
            (src / f"d{d}" / f"file-{f:02}.txt").write_text(f"{d} {f}\n")
    store = make_store("file", tmp_path, request)
    repo, key = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    fresh = open_with(store, key)
    restore_snapshot(fresh, snap, tmp_path / "out")
    assert describe_tree(tmp_path / "out") == describe_tree(src)
    assert 0 < len(fresh.trees._taken) <= 3
    assert not any(len(plain) > KEEP_SMALL for plain in fresh.trees._cache.values())
