"""Back up and restore directories on every backend: contents and metadata survive."""

from __future__ import annotations

import os
import random
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from dr.errors import InvalidInput
from dr.repo import archiver
from dr.repo.archiver import backup_directory
from dr.repo.check import check
from dr.repo.repository import Repository
from dr.repo.restorer import restore_snapshot
from dr.repo.snapshots import list_snapshots
from tests.repo_helpers import describe_tree, init_repo, make_store, open_with, write_tree

BACKENDS = ["file", "s3", "gs"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_roundtrip_every_backend(backend: str, tmp_path: Path, request: Any) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_tree(src)
    store = make_store(backend, tmp_path, request)
    repo, key = init_repo(store, tmp_path)
    result = backup_directory(repo, src)
    assert not result.errors
    snap = result.snapshot
    assert snap.stats and snap.stats.files >= 8 and snap.stats.new_bytes > 0

    # A second process would open the repository from scratch: do the same.
    repo2 = open_with(make_store_again(store), key)
    [listed] = list_snapshots(repo2)
    assert listed.id == snap.id
    out = tmp_path / "out"
    stats = restore_snapshot(repo2, listed, out)
    assert not stats.errors
    assert describe_tree(out) == describe_tree(src)
    # hardlinks are links again, the sparse file has holes again
    assert os.stat(out / "hardlink.bin").st_ino == os.stat(out / "d1" / "random.bin").st_ino
    assert os.stat(out / "sparse.img").st_blocks * 512 < 1 << 20
    assert check(repo2, read_data=1.0).ok


def make_store_again(store: Any) -> Any:
    return store  # stores are stateless clients; reuse keeps the test fast


def test_incremental_does_not_reread_unchanged_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_tree(src)
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    first = backup_directory(repo, src).snapshot
    second = backup_directory(repo, src, parent=first)
    assert second.unchanged_files == first.stats.files if first.stats else False
    assert second.snapshot.tree == first.tree
    assert second.snapshot.stats and second.snapshot.stats.new_blobs == 0

    # change one file: only it is read again, and the change is in the snapshot
    (src / "d1" / "text.log").write_text("changed\n")
    third = backup_directory(repo, src, parent=second.snapshot)
    assert first.stats is not None
    assert third.unchanged_files == first.stats.files - 1
    out = tmp_path / "out"
    restore_snapshot(repo, third.snapshot, out)
    assert (out / "d1" / "text.log").read_text() == "changed\n"
    assert describe_tree(out) == describe_tree(src)


def test_incremental_takes_unchanged_directories_trees_from_the_parent(
    tmp_path: Path, monkeypatch: Any
) -> None:
    src = tmp_path / "src"
    for d in ("a/x", "a/y", "b"):
        (src / d).mkdir(parents=True)
        (src / d / "f.txt").write_text(f"in {d}\n")
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    first = backup_directory(repo, src).snapshot
    encoded: list[list[str]] = []
    real = archiver.encode_tree

    def counted(nodes: list[Any]) -> bytes:
        encoded.append(sorted(n["name"] for n in nodes))
        return real(nodes)

    monkeypatch.setattr(archiver, "encode_tree", counted)
    second = backup_directory(repo, src, parent=first)
    assert second.snapshot.tree == first.tree and encoded == []  # nothing encoded again
    (src / "a" / "y" / "f.txt").write_text("changed\n")
    third = backup_directory(repo, src, parent=second.snapshot)
    # Only the changed file's directory and those above it: a/y, a, the root.
    assert encoded == [["f.txt"], ["x", "y"], ["a", "b"]]
    out = tmp_path / "out"
    restore_snapshot(repo, third.snapshot, out)
    assert describe_tree(out) == describe_tree(src)


def _lose_from_index(repo: Repository, blob_id: bytes) -> None:
    """Take ``blob_id``, which the index holds, out of it: as after a pack was lost and the
    index rebuilt without it."""
    assert blob_id in repo.index
    with repo.index._db:
        repo.index._db.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))


def test_incremental_stores_again_an_empty_directory_whose_parent_tree_is_lost(tmp_path: Path) -> None:
    # An unreadable parent tree reads as empty: an empty directory then has all of its
    # (no) nodes in the parent, yet the parent's tree id names nothing the repository has.
    src = tmp_path / "src"
    (src / "empty").mkdir(parents=True)
    (src / "f.txt").write_text("kept\n")
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    first = backup_directory(repo, src).snapshot
    empty = repo.blob_id(b'{"nodes":[]}')
    _lose_from_index(repo, empty)
    second = backup_directory(repo, src, parent=first)
    assert not second.errors
    assert empty in repo.index  # the empty directory's tree stored again
    out = tmp_path / "out"
    restore_snapshot(repo, second.snapshot, out)
    assert describe_tree(out) == describe_tree(src)


def test_incremental_reads_again_a_file_whose_blobs_the_repository_lost(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # Same size, mtime and inode as in the parent is not enough: each content blob must be
    # in the repository (FORMAT.md §6), checked for many files at once, in batches.
    monkeypatch.setattr(archiver, "CANDIDATE_BLOBS", 3)
    src = tmp_path / "src"
    for i in range(10):
        (src / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 2}" / f"f{i}.txt").write_text(f"file {i}\n")
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    first = backup_directory(repo, src).snapshot
    assert first.stats is not None and first.stats.files == 10
    lost = repo.blob_id(b"file 7\n")
    _lose_from_index(repo, lost)
    second = backup_directory(repo, src, parent=first)
    assert not second.errors
    assert second.unchanged_files == 9  # f7 read again, its blob stored again
    assert second.snapshot.stats and second.snapshot.stats.new_blobs == 1
    assert lost in repo.index
    out = tmp_path / "out"
    restore_snapshot(repo, second.snapshot, out)
    assert describe_tree(out) == describe_tree(src)


def test_incremental_reads_each_parent_tree_once_ahead_of_the_walk(tmp_path: Path, monkeypatch: Any) -> None:
    # More directories at one level than the read-ahead holds, and nesting below them.
    src = tmp_path / "src"
    for i in range(archiver.PARENT_TREES_AHEAD + 6):
        d = src / f"d{i:03}" / "inner"
        d.mkdir(parents=True)
        (d / "f.txt").write_text(f"file {i}\n")
    (src / "d000" / "moved.txt").write_text("old\n")
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    first = backup_directory(repo, src).snapshot
    (src / "d000" / "moved.txt").rename(src / "d001" / "inner" / "moved.txt")  # one directory changes

    reads: list[str] = []
    ahead: list[str] = []  # read by the read-ahead threads, not by the walk
    read_parent = archiver._Archiver._read_parent

    def counted(self: Any, tree_id: str) -> Any:
        reads.append(tree_id)
        if threading.current_thread().name.startswith("dr-tree"):
            ahead.append(tree_id)
        return read_parent(self, tree_id)

    monkeypatch.setattr(archiver._Archiver, "_read_parent", counted)
    second = backup_directory(repo, src, parent=first)
    assert not second.errors
    assert first.stats is not None
    assert second.unchanged_files == first.stats.files - 1  # the moved file is read again
    dirs = 1 + 2 * (archiver.PARENT_TREES_AHEAD + 6)
    assert len(reads) == len(set(reads)) == dirs  # every parent tree once, none twice
    assert len(ahead) >= dirs - 1 - 6  # all but the root and those beyond the bound at the top level
    out = tmp_path / "out"
    restore_snapshot(repo, second.snapshot, out)
    assert describe_tree(out) == describe_tree(src)


def test_deduplication_across_snapshots(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "x.bin").write_bytes(os.urandom(3 << 20))
    b.mkdir()
    (b / "copy.bin").write_bytes((a / "x.bin").read_bytes())
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    first = backup_directory(repo, a).snapshot
    second = backup_directory(repo, b).snapshot
    assert first.stats and second.stats
    # only a tree blob is new the second time
    assert second.stats.new_bytes < first.stats.new_bytes / 100


def test_restore_selected_paths(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_tree(src)
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out, paths=["d1/d2", "empty"])
    assert not stats.errors
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "d1", "d1/d2", "d1/d2/big.bin", "d1/d2/empty-dir", "empty",
    ]  # fmt: skip
    assert (out / "d1" / "d2" / "big.bin").read_bytes() == (src / "d1" / "d2" / "big.bin").read_bytes()
    # Refused before anything is written: a path that is absent, or below a file.
    with pytest.raises(InvalidInput, match=f"not in snapshot {snap.short_id}: d1/nope, nope, empty/x$"):
        restore_snapshot(repo, snap, tmp_path / "out2", paths=["d1/nope", "empty", "nope", "empty/x"])
    assert not (tmp_path / "out2").exists()
    with pytest.raises(InvalidInput, match="give a path inside the snapshot"):
        restore_snapshot(repo, snap, tmp_path / "out2", paths=["d1/../.."])


def test_restore_into_existing_target_overwrites_in_place(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("backed up")
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("a much longer local modification that must disappear")
    restore_snapshot(repo, snap, out)
    assert (out / "a.txt").read_text() == "backed up"


def test_concurrent_backups_are_safe(tmp_path: Path) -> None:
    import threading

    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    dirs = []
    for i in range(3):
        d = tmp_path / f"src{i}"
        d.mkdir()
        (d / "shared.bin").write_bytes(b"same content in every source " * 50_000)
        (d / "own.bin").write_bytes(os.urandom(2 << 20))
        dirs.append(d)
    errors: list[BaseException] = []

    def run(d: Path) -> None:
        try:
            backup_directory(open_with(repo.store, key), d)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(d,)) for d in dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    fresh = open_with(repo.store, key)
    snaps = list_snapshots(fresh)
    assert len(snaps) == 3
    assert check(fresh, read_data=1.0).ok
    for s in snaps:
        out = tmp_path / f"out-{s.short_id}"
        restore_snapshot(fresh, s, out)
        assert describe_tree(out) == describe_tree(Path(s.paths[0]))


@pytest.mark.skipif(os.geteuid() != 0, reason="creating device nodes needs root")
def test_device_nodes_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mknod(src / "null", stat.S_IFCHR | 0o620, os.makedev(1, 3))
    os.mknod(src / "loop", stat.S_IFBLK | 0o600, os.makedev(7, 200))
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    out = tmp_path / "out"
    assert restore_snapshot(repo, snap, out).errors == []
    for name, kind in (("null", stat.S_IFCHR), ("loop", stat.S_IFBLK)):
        st = os.lstat(out / name)
        assert stat.S_IFMT(st.st_mode) == kind and st.st_rdev == os.lstat(src / name).st_rdev
        assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(os.lstat(src / name).st_mode)


def test_small_and_large_files_interleaved_keep_their_contents(tmp_path: Path, monkeypatch: Any) -> None:
    # Small files go to the readers in batches, large ones alone; every file must
    # still get its own content, whatever the order the tasks finish in. A small
    # file is a few system calls, each handing the GIL over: the batches go to one
    # reader thread of their own, beside the readers of larger files.
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(3)
    for i in range(70):
        size = (1 << 20) + rng.randint(0, 1 << 20) if i % 9 == 4 else rng.randint(0, 40_000)
        (src / f"f{i:03}.bin").write_bytes(rng.randbytes(size))
    readers: dict[str, set[str]] = {"small": set(), "large": set()}
    read_files = archiver._Archiver._read_files

    def recorded(self: Any, paths: list[tuple[str, int]]) -> Any:
        small = all(os.path.getsize(p) < archiver.BATCH_BYTES for p, _ in paths)
        readers["small" if small else "large"].add(threading.current_thread().name)
        return read_files(self, paths)

    monkeypatch.setattr(archiver._Archiver, "_read_files", recorded)
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    result = backup_directory(repo, src)
    assert not result.errors and result.snapshot.stats and result.snapshot.stats.files == 70
    assert len(readers["small"]) == 1 and all(n.startswith("dr-read-small") for n in readers["small"])
    assert readers["large"] and not readers["large"] & readers["small"]
    out = tmp_path / "out"
    assert not restore_snapshot(repo, result.snapshot, out).errors
    assert describe_tree(out) == describe_tree(src)


def test_files_that_vanish_during_the_backup_are_named_and_the_rest_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):  # three batches of small files: 16, 16, 8
        (src / f"f{i:02}.txt").write_text(f"file {i}\n" * (i + 1))
    doomed = [src / f"f{i:02}.txt" for i in range(35, 40)]
    calls = 0

    def delete_late_files(_: int) -> None:
        # After the first file is saved (one reader: the last batch is not open yet).
        nonlocal calls
        calls += 1
        if calls == 1:
            for p in doomed:
                p.unlink()

    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    result = backup_directory(repo, src, workers=1, progress=delete_late_files)
    assert sorted(result.errors) == [f"{p}: No such file or directory" for p in doomed]
    out = tmp_path / "out"
    assert not restore_snapshot(repo, result.snapshot, out).errors
    assert describe_tree(out) == describe_tree(src)  # the 35 files left, contents intact


def test_small_sparse_files_keep_their_holes(tmp_path: Path) -> None:
    # Files of one blob are created and written by the restore worker itself.
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "holes.img", "wb") as f:  # hole, 4 KiB of data, trailing hole
        f.truncate(512 << 10)
        f.seek(256 << 10)
        f.write(random.Random(1).randbytes(4096))
    (src / "plain.txt").write_text("x" * 3000)
    os.chmod(src / "plain.txt", 0o604)
    os.utime(src / "holes.img", ns=(1_500_000_000_000_000_001, 1_500_000_000_000_000_001))
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    out = tmp_path / "out"
    out.mkdir()
    (out / "plain.txt").write_text("an older, longer local copy that must not survive" * 100)
    assert not restore_snapshot(repo, snap, out).errors
    assert describe_tree(out) == describe_tree(src)
    # The data's 64 KiB block is written (write_sparse leaves whole zero blocks as holes),
    # and ext4 may count a block more while it is not yet written back (68 KiB seen in
    # CI); written in full, the file would take 512 KiB.
    assert os.stat(out / "holes.img").st_blocks * 512 <= 128 << 10


def test_a_large_directory_costs_little_memory_per_entry(tmp_path: Path, monkeypatch: Any) -> None:
    # A directory's nodes are held until its tree is saved; nothing else per entry
    # should be (the walk once kept every DirEntry with its cached stat: ~1.9 KB
    # per entry in all, 977 MB of peak RSS for 500,000 files). Two directories,
    # so that what a backup allocates once (chunk buffers, threads) cancels out.
    import tracemalloc

    src = tmp_path / "src"
    sizes = {"a": 2_000, "b": 22_000}
    for name, count in sizes.items():
        (src / name).mkdir(parents=True)
        for i in range(count):
            (src / name / f"{random.Random(i).randbytes(12).hex()}.eml").touch()
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    held: dict[int, int] = {}
    encode = archiver.encode_tree

    def measured(nodes: list[Any]) -> bytes:
        held[len(nodes)] = tracemalloc.get_traced_memory()[0]
        return encode(nodes)

    monkeypatch.setattr(archiver, "encode_tree", measured)
    tracemalloc.start()
    try:
        snap = backup_directory(repo, src).snapshot
    finally:
        tracemalloc.stop()
    assert snap.stats is not None and snap.stats.files == sum(sizes.values())
    per_entry = (held[sizes["b"]] - held[sizes["a"]]) / (sizes["b"] - sizes["a"])
    assert per_entry < 1000, f"{per_entry:.0f} bytes held per directory entry"


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_files_that_change_size_while_read_are_stored_and_restored_as_read(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: Any, caplog: Any
) -> None:
    # A live volume: files grow (a log) or shrink between the walk's stat and the read.
    # The snapshot records what was read, and restores it whole, from a file store
    # (front to back) and from S3 (pack by pack, through the ordered writer).
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    sizes = {
        "grows.bin": 5_000_000,
        "shrinks.bin": 6_000_000,
        "small.log": 2_000,
        "large-small.bin": 3_000_000,
    }
    for name, size in sizes.items():
        (src / name).write_bytes(rng.randbytes(size))
    changes = {
        "grows.bin": 9_000_000,
        "shrinks.bin": 4_500_000,
        "small.log": 70_000,
        "large-small.bin": 5_000_000,
    }
    read_files = archiver._Archiver._read_files

    def racing(self: Any, paths: list[tuple[str, int]]) -> Any:
        for p, _ in paths:
            name = os.path.basename(p)
            with open(p, "r+b") as f:  # same inode, new size
                data = f.read()[: changes[name]]
                f.seek(0)
                f.write(data + rng.randbytes(changes[name] - len(data)))
                f.truncate()
        return read_files(self, paths)

    monkeypatch.setattr(archiver._Archiver, "_read_files", racing)
    repo, _ = init_repo(make_store(backend, tmp_path, request), tmp_path)
    result = backup_directory(repo, src)
    assert not result.errors
    warned = [r.getMessage() for r in caplog.records if "changed size while being read" in r.getMessage()]
    assert len(warned) == 4, warned
    assert result.snapshot.stats and result.snapshot.stats.bytes == sum(changes.values())
    out = tmp_path / "out"
    assert restore_snapshot(repo, result.snapshot, out).errors == []
    for name in sizes:
        assert (out / name).read_bytes() == (src / name).read_bytes(), name


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_a_snapshot_whose_sizes_disagree_with_its_content_restores_the_content(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    # Snapshots made before the backup recorded what it read may say a file is larger
    # or smaller than its content; the content is what is restored (from S3 a file
    # whose blobs ran past its size was written over its own head).
    from dataclasses import replace

    from dr.repo.format import BlobType
    from dr.repo.snapshots import save_snapshot
    from dr.repo.tree import encode_tree, read_tree

    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(6)
    for name in ("a.bin", "b.bin", "c.bin"):
        (src / name).write_bytes(rng.randbytes(9_000_000 if name == "a.bin" else 4_500_000))
    repo, _ = init_repo(make_store(backend, tmp_path, request), tmp_path)
    snap = backup_directory(repo, src).snapshot
    assert snap.tree
    nodes = read_tree(repo, snap.tree)
    said = {"a.bin": 5_000_000, "b.bin": 6_000_000, "c.bin": 3_000_000}
    for n in nodes:
        n["size"] = said[n["name"]]
    with repo.saver() as saver:
        tree = saver.save(BlobType.TREE, encode_tree(nodes)).hex()
        saver.flush()
    wrong = save_snapshot(repo, replace(snap, tree=tree))
    out = tmp_path / "out"
    assert restore_snapshot(repo, wrong, out).errors == []
    for name in said:
        assert (out / name).read_bytes() == (src / name).read_bytes(), name


def test_a_file_replaced_by_a_fifo_while_backed_up_is_named_not_waited_for(
    tmp_path: Path, monkeypatch: Any
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    (src / "b.txt").write_text("b")
    read_files = archiver._Archiver._read_files

    def racing(self: Any, paths: list[tuple[str, int]]) -> Any:
        os.unlink(src / "a.txt")
        os.mkfifo(src / "a.txt")  # opening it to read would wait for a writer
        return read_files(self, paths)

    monkeypatch.setattr(archiver._Archiver, "_read_files", racing)
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    result = backup_directory(repo, src)
    assert result.errors == [f"{src / 'a.txt'}: replaced while being backed up; not read"]
    out = tmp_path / "out"
    assert restore_snapshot(repo, result.snapshot, out).errors == []
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_the_volume_root_keeps_its_owner_mode_and_time(tmp_path: Path) -> None:
    # A volume's root is the mount point: an application running as a non-root user
    # that owned it must find it so after a restore (a full one).
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    os.chmod(src, 0o750)
    if os.geteuid() == 0:
        os.chown(src, 999, 998)
    os.utime(src, ns=(978_307_200_123_456_789, 978_307_200_123_456_789))
    want = os.stat(src)
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    assert snap.root == {"mode": 0o750, "uid": want.st_uid, "gid": want.st_gid, "mtime": want.st_mtime_ns}
    [stored] = list_snapshots(repo)
    assert stored.root == snap.root
    out = tmp_path / "out"
    assert restore_snapshot(repo, snap, out).errors == []
    got = os.stat(out)
    assert (stat.S_IMODE(got.st_mode), got.st_uid, got.st_gid, got.st_mtime_ns) == (
        0o750, want.st_uid, want.st_gid, want.st_mtime_ns
    )  # fmt: skip
    part = tmp_path / "part"
    part.mkdir(mode=0o700)
    assert restore_snapshot(repo, snap, part, paths=["a.txt"]).errors == []
    assert stat.S_IMODE(os.stat(part).st_mode) == 0o700, "--path leaves the target as it is"
