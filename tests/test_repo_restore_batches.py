"""A restore plans and restores a volume in batches of files (memory bounded by the batch)."""

from __future__ import annotations

import os
import random
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


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_batches_bounded_by_blobs_restore_every_kind_of_entry(
    backend: str, tmp_path: Path, request: Any
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_tree(src)
    rng = random.Random(5)
    for i in range(4):  # files of a few blobs each (chunks: 256 KiB to 4 MiB)
        (src / f"multi-{i}.bin").write_bytes(rng.randbytes(3 << 20))
    repo, _ = init_repo(make_store(backend, tmp_path, request), tmp_path)
    snap = backup_directory(repo, src).snapshot

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


def test_a_bug_in_one_worker_fails_the_restore_and_the_others_stop_taking_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers take the files one at a time from a shared list; an unexpected error
    # (not a damaged blob, which fails only its file) ends the restore.
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(7)
    for i in range(40):  # large enough to be restored front to back, each a piece of work
        (src / f"f{i:02}.bin").write_bytes(rng.randbytes((4 << 20) + 1000))
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot

    from dr.storage import direct_io

    real = direct_io.SequentialWriter.close
    closed = []

    def close(self: direct_io.SequentialWriter) -> None:
        closed.append(1)
        if len(closed) == 5:
            raise RuntimeError("a bug")
        real(self)

    monkeypatch.setattr(direct_io.SequentialWriter, "close", close)
    with pytest.raises(RuntimeError, match="a bug"):
        restore_snapshot(repo, snap, tmp_path / "out")
    assert 5 <= len(closed) <= 5 + 3  # what the other three workers had in hand


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
    for i in range(12):
        (src / f"f{i:02}.bin").write_bytes(os.urandom(20_000 + i))
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    stats = restore_snapshot(repo, snap, tmp_path / "out", batch=3)
    assert stats.files == 12 and not stats.errors
    assert describe_tree(tmp_path / "out") == describe_tree(src)
    assert len(pools) == 1 and pools[0]._shutdown, "one pool, shut down at the end"
