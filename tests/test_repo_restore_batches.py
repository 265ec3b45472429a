"""A restore plans and restores a volume in batches of files (memory bounded by the batch)."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from dr.repo.archiver import backup_directory
from dr.repo.format import FormatError, pack_name
from dr.repo.restorer import _Walk, restore_snapshot
from tests.repo_helpers import (
    backed_up_then_damaged,
    describe_tree,
    init_repo,
    make_store,
    open_with,
    write_tree,
)


@pytest.mark.parametrize("backend", ["file", "s3"])
@pytest.mark.parametrize("batch", [1, 3])
def test_small_batches_restore_every_kind_of_entry(
    backend: str, batch: int, tmp_path: Path, request: Any
) -> None:
    # write_tree has hard links, symlinks, a fifo, a sparse file, a file of many
    # blobs, modes, owners and times: with batches of 1 or 3, a hard link and its
    # file, and a directory and its files, land in different batches.
    src = tmp_path / "src"
    src.mkdir()
    write_tree(src)
    repo, _ = init_repo(make_store(backend, tmp_path, request), tmp_path)
    snap = backup_directory(repo, src).snapshot

    whole = restore_snapshot(repo, snap, tmp_path / "whole")
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out, batch=batch)
    assert not stats.errors and not whole.errors
    assert (stats.files, stats.dirs, stats.bytes) == (whole.files, whole.dirs, whole.bytes)
    assert describe_tree(out) == describe_tree(src)
    assert os.stat(out / "hardlink.bin").st_ino == os.stat(out / "d1" / "random.bin").st_ino


def _every_kind_and(
    backend: str, tmp_path: Path, request: Any, sizes: dict[str, int]
) -> tuple[Path, Any, Any]:
    """``write_tree`` (every kind of entry) and random files of these names and sizes,
    backed up: -> (source, repository, snapshot)."""
    src = tmp_path / "src"
    src.mkdir()
    write_tree(src)
    rng = random.Random(len(sizes))
    for name, size in sizes.items():
        (src / name).write_bytes(rng.randbytes(size))
    repo, _ = init_repo(make_store(backend, tmp_path, request), tmp_path)
    return src, repo, backup_directory(repo, src).snapshot


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_batches_bounded_by_blobs_restore_every_kind_of_entry(
    backend: str, tmp_path: Path, request: Any
) -> None:
    # files of a few blobs each (chunks: 256 KiB to 4 MiB)
    src, repo, snap = _every_kind_and(
        backend, tmp_path, request, {f"multi-{i}.bin": 3 << 20 for i in range(4)}
    )

    plans = list(_Walk(repo, snap, None, by_pack=backend == "s3", batch=1000, batch_blobs=2).plans())
    assert len(plans) > 4
    for p in plans[:-1]:
        # Blobs planned per file of the batch (large files list theirs, the rest
        # are planned by pack): each batch ends with the file that reached 2.
        per_file = [len(f.blob_ids) // 32 for f in p.files]
        for blobs in p.packs.values():
            for _, targets in blobs.values():
                for idx, _ in targets:
                    per_file[idx] += 1
        assert sum(per_file) >= 2 and sum(per_file[:-1]) < 2, per_file
    assert sum(len(p.files) for p in plans) == sum(
        1 for f in src.rglob("*") if f.is_file() and not f.is_symlink()
    )
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out, batch_blobs=2)
    assert not stats.errors
    assert describe_tree(out) == describe_tree(src)
    assert os.stat(out / "hardlink.bin").st_ino == os.stat(out / "d1" / "random.bin").st_ino


def test_the_walk_never_plans_more_than_a_batch(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in range(4):
        sub = src / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for i in range(9):
            (src / f"d{d}" / f"f{i}.txt").write_text(f"{d} {i}\n")
            (sub / f"g{i}.txt").write_text(f"inner {d} {i}\n")
        os.symlink("f0.txt", src / f"d{d}" / "link")
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot

    plans = list(_Walk(repo, snap, None, by_pack=False, batch=7).plans())
    assert max(len(p.files) + len(p.others) for p in plans) == 7
    assert sum(len(p.files) for p in plans) == 4 * 18 and sum(len(p.others) for p in plans) == 4
    # Every entry's directory is planned in its batch or an earlier one (it exists
    # before the entry is written), and each directory is planned once.
    seen: set[str] = {""}
    for p in plans:
        for rel, _ in p.dirs:
            assert rel not in seen and rel.rpartition("/")[0] in seen
            seen.add(rel)
        for rel in [f.rel for f in p.files] + [rel for rel, _ in p.others]:
            assert rel.rpartition("/")[0] in seen, rel
    assert len(seen) == 1 + 4 * 2


def test_a_hard_link_in_a_later_batch_to_a_damaged_file_is_named(tmp_path: Path) -> None:
    # Batches of one: a.txt fails in the first batch, its hard link comes two batches later.
    files = {"a.txt": "a" * 5000, "b.txt": "b" * 5000, "z-link.txt": "=a.txt"}
    repo, snap = backed_up_then_damaged(tmp_path, files, "a.txt")
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out, batch=1)
    assert [e.split(":")[0] for e in stats.errors] == ["a.txt", "z-link.txt"], stats.errors
    assert "not linked: a.txt (the same file) could not be restored" in stats.errors[1]
    assert (out / "b.txt").read_text() == "b" * 5000
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_a_root_tree_that_cannot_be_read_fails_before_the_target_is_made(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("a")
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    loc = repo.index.get(bytes.fromhex(snap.tree or ""))
    assert loc is not None
    pack = tmp_path / "repo" / pack_name(loc.pack)
    raw = bytearray(pack.read_bytes())
    raw[loc.entry.offset + 20] ^= 0xFF
    pack.write_bytes(bytes(raw))

    out = tmp_path / "out"
    with pytest.raises(FormatError, match="authentication failed"):
        restore_snapshot(open_with(store, key), snap, out)
    assert not out.exists()


def _restore_with_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int, nth: int, **batches: int
) -> int:
    """Restore ``files`` files of 4 MiB (each restored front to back, a piece of work of
    its own) with a bug at the ``nth`` file closed; -> how many were closed."""
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(files)
    for i in range(files):
        (src / f"f{i:02}.bin").write_bytes(rng.randbytes((4 << 20) + 1000))
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot

    from dr.storage import direct_io

    real = direct_io.SequentialWriter.close
    closed = []

    def close(self: direct_io.SequentialWriter) -> None:
        closed.append(1)
        if len(closed) == nth:
            raise RuntimeError("a bug")
        real(self)

    monkeypatch.setattr(direct_io.SequentialWriter, "close", close)
    with pytest.raises(RuntimeError, match="a bug"):
        restore_snapshot(repo, snap, tmp_path / "out", **batches)
    assert not any(t.name.startswith("dr-restore") for t in threading.enumerate())
    return len(closed)


def test_a_bug_in_one_worker_fails_the_restore_and_the_others_stop_taking_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers take the files one at a time from a shared list; an unexpected error
    # (not a damaged blob, which fails only its file) ends the restore.
    closed = _restore_with_a_bug(tmp_path, monkeypatch, 40, 5)
    assert 5 <= closed <= 5 + 3  # what the other three workers had in hand


def test_one_worker_pool_serves_every_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker's buffers belong to its thread: a pool for each batch made them
    # resident again for every batch.
    from concurrent.futures import ThreadPoolExecutor

    from dr.repo import restorer

    pools: list[ThreadPoolExecutor] = []

    class CountedPool(ThreadPoolExecutor):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            pools.append(self)

    monkeypatch.setattr(restorer, "ThreadPoolExecutor", CountedPool)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):  # small files (their packs go through the dense lane) and large ones
        (src / f"f{i:02}.bin").write_bytes(os.urandom(20_000 + i))
        (src / f"g{i:02}.bin").write_bytes(os.urandom((4 << 20) + i))
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    stats = restore_snapshot(repo, snap, tmp_path / "out", batch=3)
    assert stats.files == 24 and not stats.errors
    assert describe_tree(tmp_path / "out") == describe_tree(src)
    # One pool of workers and one dense lane, each made once and shut down at the end.
    assert sorted(p._thread_name_prefix for p in pools) == ["dr-restore", "dr-restore-dense"]
    assert all(p._shutdown for p in pools)


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_batches_bounded_by_bytes_restore_every_kind_of_entry(
    backend: str, tmp_path: Path, request: Any
) -> None:
    src, repo, snap = _every_kind_and(
        backend, tmp_path, request, {f"big-{i}.bin": (1 << 20) + i for i in range(5)}
    )

    bound = 1 << 20
    plans = list(_Walk(repo, snap, None, by_pack=backend == "s3", batch=1000, batch_bytes=bound).plans())
    assert len(plans) >= 5
    for p in plans[:-1]:  # each batch ends with the file that reached the bound
        sizes = [int(f.node.get("size", 0)) for f in p.files]
        assert sum(sizes) >= bound and sum(sizes[:-1]) < bound, sizes
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out, batch_bytes=bound)
    assert not stats.errors
    assert describe_tree(out) == describe_tree(src)
    assert os.stat(out / "hardlink.bin").st_ino == os.stat(out / "d1" / "random.bin").st_ino


def _backed_up(tmp_path: Path, contents: dict[str, bytes]) -> tuple[Path, Any, Any]:
    """Files of these names and contents backed up into a file store: -> (source, repository, snapshot)."""
    src = tmp_path / "src"
    src.mkdir()
    for name, data in contents.items():
        (src / name).write_bytes(data)
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    return src, repo, backup_directory(repo, src).snapshot


def test_the_next_batch_is_started_before_the_one_before_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The workers go from one batch into the next; two batches are in memory at once.
    from dr.repo import restorer

    src, repo, snap = _backed_up(tmp_path, {f"f{i}.bin": os.urandom(30_000 + i) for i in range(7)})
    events: list[str] = []
    start, finish = restorer._BatchRestore.start, restorer._BatchRestore.finish

    def started(self: Any, plan: Any) -> Any:
        events.append("start " + ",".join(f.rel for f in plan.files))
        return start(self, plan)

    def finished(self: Any, plan: Any, writes: Any, stats: Any) -> None:
        finish(self, plan, writes, stats)
        events.append("finish " + ",".join(f.rel for f in plan.files))

    monkeypatch.setattr(restorer._BatchRestore, "start", started)
    monkeypatch.setattr(restorer._BatchRestore, "finish", finished)
    stats = restore_snapshot(repo, snap, tmp_path / "out", batch=3)
    assert stats.files == 7 and not stats.errors
    assert events == [
        "start f0.bin,f1.bin,f2.bin",
        "start f3.bin,f4.bin,f5.bin",
        "finish f0.bin,f1.bin,f2.bin",
        "start f6.bin",
        "finish f3.bin,f4.bin,f5.bin",
        "finish f6.bin",
    ]
    assert describe_tree(tmp_path / "out") == describe_tree(src)


def test_a_bug_in_one_batch_stops_the_batches_queued_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = _restore_with_a_bug(tmp_path, monkeypatch, 24, 3, batch=2)
    # Two batches are in flight at a time: the bug's batch k is at most the third (its
    # close came third, and every batch before k-1 was finished by then), and no
    # batch after k+1 is started: 2 * (k + 1) files at most, never the 24.
    assert 3 <= closed <= 8


def test_dense_packs_of_every_batch_go_through_one_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small files' packs are restored one after another on one thread, also when two
    # batches are in flight (a second thread beside it would make its buffers too).
    from dr.repo import restorer

    src, repo, snap = _backed_up(tmp_path, {f"s{i:02}.txt": f"small {i}\n".encode() * 50 for i in range(30)})
    threads: set[str] = set()
    write_whole = restorer._write_whole

    def recording(*args: Any, **kwargs: Any) -> None:
        threads.add(threading.current_thread().name)
        write_whole(*args, **kwargs)

    monkeypatch.setattr(restorer, "_write_whole", recording)
    stats = restore_snapshot(repo, snap, tmp_path / "out", batch=4)
    assert stats.files == 30 and not stats.errors
    assert describe_tree(tmp_path / "out") == describe_tree(src)
    assert len(threads) == 1 and threads.pop().startswith("dr-restore-dense")
