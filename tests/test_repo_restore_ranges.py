"""Which byte ranges of a pack a restore fetches (dr.repo.restorer._ranges)."""

from __future__ import annotations

import errno
import itertools
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.repo import ordered_writer, restorer
from dr.repo.archiver import backup_directory
from dr.repo.format import BlobType, PackEntry, pack_name
from dr.repo.ordered_writer import OrderedFileWriter
from dr.repo.restorer import RANGE_WASTE, _ranges, restore_snapshot
from dr.repo.tree import read_tree
from dr.storage.base import StorageError
from tests.repo_helpers import describe_tree, init_repo, make_store, open_with


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


@given(layouts)
def test_ranges_cover_each_needed_blob_once(layout: list[tuple[int, int, bool]]) -> None:
    _, needed = entries(layout)
    if not needed:
        return
    ranges = _ranges(list(needed))
    got = [e for group in ranges for e in group]
    assert got == sorted(needed, key=lambda e: e.offset)
    fetched = sum(g[-1].offset + g[-1].length - g[0].offset for g in ranges)
    if len(ranges) == 1:
        assert fetched <= RANGE_WASTE * sum(e.length for e in needed)
    else:  # runs of adjacent blobs: nothing unneeded is read
        assert all(b.offset == a.offset + a.length for g in ranges for a, b in itertools.pairwise(g))
        assert fetched == sum(e.length for e in needed)


def test_a_whole_pack_needed_is_one_range() -> None:
    all_, _ = entries([(0, 1 << 20, True)] * 16)  # 16 blobs of 1 MiB back to back
    assert _ranges(list(all_)) == [all_]


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
    requests: list[tuple[str, str]] = []
    store._client.meta.events.register(  # type: ignore[attr-defined]
        "before-send.s3", lambda request, **_: requests.append((request.method, request.url))
    )
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out)
    assert not stats.errors
    assert describe_tree(out) == describe_tree(src)
    data = [url for method, url in requests if method == "GET" and "/data/" in url]
    packs = {url.split("/data/")[1] for url in data}
    assert len(data) == len(packs) < files, data  # one streamed GET per pack


def test_s3_restore_past_the_early_budget_writes_files_in_place(
    tmp_path: Path, request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large sparse file in two packs out of file order: its middle (b) is stored
    # by an earlier backup, its start (a), hole and end (c) in the next backup's
    # pack. The plan meets that pack first (a is the file's first blob), and one
    # worker restores it whole before the earlier pack: the hole's and c's blobs
    # arrive before b is written, early. With no room for early blobs the file is
    # written in place from then on, and comes out whole all the same, its hole
    # left a hole. (With workers side by side, whether a blob is early depends on
    # which worker gets there first.)
    # b long enough that the second backup's chunks fall back into step with the first's
    # within it (with 6 MiB they sometimes did not, and none of b was shared)
    a, b, c = os.urandom(6 << 20), os.urandom(16 << 20), os.urandom(6 << 20)
    first = tmp_path / "first"
    first.mkdir()
    (first / "b.bin").write_bytes(b)
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "f.bin", "wb") as f:
        f.write(a + b)
        f.seek(8 << 20, os.SEEK_CUR)  # a hole of 8 MiB
        f.write(c)
    store = make_store("s3", tmp_path, request)
    repo, _ = init_repo(store, tmp_path)
    # Packs large enough for all the second backup's new data (a, c, the hole's blob
    # and the chunks across b's edges: up to ~20 MiB with random chunk boundaries)
    # and for b alone in the first,
    # so that a and c share its one pack; with 16 MiB packs they sometimes did not.
    repo.config = repo.config.__class__(**{**repo.config.__dict__, "pack_size": 64 << 20})
    backup_directory(repo, first)
    snap = backup_directory(repo, src).snapshot
    assert snap.tree
    node = next(n for n in read_tree(repo, snap.tree) if n["name"] == "f.bin")
    where, offset = [], 0  # (file offset, pack) of each blob
    for h in node["content"]:
        loc = repo.index.get(bytes.fromhex(h))
        assert loc
        where.append((offset, loc.pack))
        offset += loc.entry.raw_length
    late = where[-1][1]
    assert where[0][1] == late  # a and c in the later pack
    assert any(pack != late for at, pack in where if len(a) < at < len(a) + len(b))  # some of b in the first
    monkeypatch.setattr(ordered_writer, "EARLY_BUDGET", 0)
    in_place: list[str] = []
    go_in_place = OrderedFileWriter._go_in_place

    def counting(self: OrderedFileWriter) -> None:
        in_place.append(os.path.basename(self.path))
        go_in_place(self)

    monkeypatch.setattr(OrderedFileWriter, "_go_in_place", counting)
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out, workers=1)
    assert not stats.errors
    assert in_place == ["f.bin"]
    assert describe_tree(out) == describe_tree(src)
    assert os.stat(out / "f.bin").st_blocks * 512 <= (28 << 20) + (1 << 20)  # the hole stayed one


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
    put, put_decoded = OrderedFileWriter.put, OrderedFileWriter.put_decoded

    def fault(self: OrderedFileWriter, offset: int) -> bool:
        if self.path.endswith("a.bin"):
            raise OSError(errno.ENOSPC, "No space left on device")
        # b.bin: a blob lost on the way (a bug): the file never completes
        return self.path.endswith("b.bin") and offset == 0

    def faulty(self: OrderedFileWriter, offset: int, data: Any) -> None:
        if not fault(self, offset):
            put(self, offset, data)

    def faulty_decoded(self: OrderedFileWriter, offset: int, *args: Any, **kwargs: Any) -> None:
        if not fault(self, offset):
            put_decoded(self, offset, *args, **kwargs)

    # Blobs come decoded in place (put_decoded), or decoded already when they wait.
    monkeypatch.setattr(OrderedFileWriter, "put", faulty)
    monkeypatch.setattr(OrderedFileWriter, "put_decoded", faulty_decoded)
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out)
    assert stats.errors == [
        "a.bin: write failed: No space left on device",
        "b.bin: incomplete: not every blob of the file could be written",
    ]
    assert (out / "c.bin").read_bytes() == (src / "c.bin").read_bytes()


def test_s3_restore_of_a_bad_blob_that_waited_sealed_fails_its_file_only(
    tmp_path: Path, request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large file changed in its second chunk: that chunk is in the incremental
    # backup's pack, the others in the first one. Restored by one worker, pack by
    # pack, the blobs after the change arrive early and wait sealed; one of them is
    # damaged in storage. Its file fails, naming the blob, when its turn comes;
    # the other file restores.
    src = tmp_path / "src"
    src.mkdir()
    big = bytearray(os.urandom(12 << 20))  # three chunks at least (4 MiB at most each)
    (src / "big.bin").write_bytes(big)
    (src / "ok.txt").write_text("fine\n" * 1000)
    store = make_store("s3", tmp_path, request)
    repo, key = init_repo(store, tmp_path)
    first = backup_directory(repo, src).snapshot
    assert first.tree

    def blobs(snap_tree: str) -> list[Any]:
        node = next(n for n in read_tree(repo, snap_tree) if n["name"] == "big.bin")
        return [repo.index.get(bytes.fromhex(b)) for b in node["content"]]

    before = blobs(first.tree)
    assert len(before) >= 3 and all(before)
    at = before[0].entry.raw_length + before[1].entry.raw_length // 2  # inside the second chunk
    big[at : at + 100] = os.urandom(100)
    (src / "big.bin").write_bytes(big)
    snap = backup_directory(repo, src, parent=first).snapshot
    assert snap.tree
    after = blobs(snap.tree)
    old = {loc.pack for loc in before}
    first_new = next(i for i, loc in enumerate(after) if loc.pack not in old)
    assert first_new >= 1 and after[-1].pack in old  # the file starts and ends in the first pack
    victim = after[-1]
    name = pack_name(victim.pack)
    raw = bytearray(store.get(name))
    raw[victim.entry.offset + 20] ^= 0xFF
    store.put(name, bytes(raw), if_absent=False)

    waited: list[int] = []
    sealed_init = ordered_writer._Sealed.__init__

    def counted(self: Any, n: int, *args: Any) -> None:
        waited.append(n)
        sealed_init(self, n, *args)

    monkeypatch.setattr(ordered_writer._Sealed, "__init__", counted)
    out = tmp_path / "out"
    stats = restore_snapshot(open_with(store, key), snap, out, workers=1)
    assert waited, "no blob waited sealed: the test does not test what it says"
    assert len(stats.errors) == 1
    assert stats.errors[0].startswith(f"big.bin: blob in {name}: authentication failed"), stats.errors
    assert (out / "ok.txt").read_text() == "fine\n" * 1000


def _twenty_files(tmp_path: Path) -> Path:
    """20 files of ~50 KB, one blob each, that a backup puts in one pack."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i:02}.bin").write_bytes(os.urandom(50_000 + i))
    return src


def test_a_pack_read_that_fails_midway_fails_only_the_blobs_after_it(tmp_path: Path, request: Any) -> None:
    # The store hands a range over blob by blob; when it gives up part way (a
    # connection lost for good), the blobs it handed over are restored and the
    # files of the rest are named, not written.
    src = _twenty_files(tmp_path)
    store = make_store("file", tmp_path, request)
    repo, _ = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    get_pieces = store.get_pieces

    def failing(name: str, pieces: Any, **kw: Any) -> Any:
        inner = get_pieces(name, pieces, **kw)
        try:
            for _ in range(5):
                yield next(inner)
            raise StorageError(f"{name}: connection lost")
        finally:
            inner.close()

    store.get_pieces = failing  # type: ignore[method-assign]
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out)
    assert len(stats.errors) == 15
    assert all("cannot read data/" in e and "connection lost" in e for e in stats.errors)
    restored = sorted(p.name for p in out.iterdir())
    assert len(restored) == 5
    assert all((out / n).read_bytes() == (src / n).read_bytes() for n in restored)
    assert {e.split(":")[0] for e in stats.errors} | set(restored) == {p.name for p in src.iterdir()}


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_packs_of_small_files_are_restored_by_one_worker(
    tmp_path: Path, request: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Small files cost a few system calls each, and every one hands the GIL over
    # when other workers want it: their packs go to one worker, one after another.
    src = tmp_path / "src"
    for d in range(4):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(150):
            (src / f"d{d}" / f"f{i}").write_bytes(os.urandom(2000 + i))
    store = make_store(kind, tmp_path, request)
    repo, _ = init_repo(store, tmp_path, pack_size=256 << 10)  # several packs
    snap = backup_directory(repo, src).snapshot
    small_writers: set[str] = set()
    write_whole = restorer._write_whole

    def recorded(path: str, node: Any, data: Any, *, is_root: bool) -> None:
        small_writers.add(threading.current_thread().name)
        write_whole(path, node, data, is_root=is_root)

    monkeypatch.setattr(restorer, "_write_whole", recorded)
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out)
    assert not stats.errors
    assert describe_tree(out) == describe_tree(src)
    assert len(small_writers) == 1, small_writers


def test_a_truncated_pack_read_from_a_file_store_fails_only_the_blobs_past_the_cut(
    tmp_path: Path, request: Any
) -> None:
    # From a file store the blobs of a pack are read span by span into the
    # restore's own buffer; a pack cut short gives a short read, which fails the
    # blobs past the cut (named, not written) and restores the ones before it.
    src = _twenty_files(tmp_path)
    store = make_store("file", tmp_path, request)
    repo, key = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    name = max(store.list("data/"), key=lambda o: o.size).name  # the files' pack, not the trees'
    data = store.get(name)
    store.delete(name)
    store.put(name, data[: len(data) // 2])
    out = tmp_path / "out"
    stats = restore_snapshot(open_with(store, key), snap, out)
    failed = {e.split(":")[0] for e in stats.errors}
    restored = {p.name for p in out.iterdir()}
    assert failed and restored and failed | restored == {p.name for p in src.iterdir()}
    assert not failed & restored, "a file that failed is not left behind"
    assert all("authentication failed" in e for e in stats.errors), stats.errors
    assert all((out / n).read_bytes() == (src / n).read_bytes() for n in restored)
