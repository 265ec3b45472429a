"""What a year of nightly backups costs: requests, reads and writes counted, not timed.

Each test counts what a command does at scale (objects read, requests made, writes)
instead of timing it: the figures measured on 3,650 snapshots and on a volume of
200,000 files are in bench/RESULTS.md ("Scale (helper pass, 2026-11-30)").
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dr.cli.output import JsonStream, write_json
from dr.errors import InvalidInput
from dr.repo.check import check
from dr.repo.prune import prune
from dr.repo.snapshots import Snapshot, SnapshotNotFound, find_snapshot, save_snapshot
from dr.repo.streams import StreamWriter, read_stream
from dr.storage import s3
from dr.storage.file import FileStore
from tests.repo_helpers import init_repo, make_store, open_with


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Reads of ``kind/…`` objects from file stores, by kind (get and get_range alike)."""
    reads: Counter[str] = Counter()
    real_get, real_range = FileStore.get, FileStore.get_range

    def get(self: FileStore, name: str) -> bytes:
        reads[name.split("/", 1)[0]] += 1
        return real_get(self, name)

    def get_range(self: FileStore, name: str, offset: int, length: int) -> bytes:
        reads[name.split("/", 1)[0]] += 1
        return real_range(self, name, offset, length)

    monkeypatch.setattr(FileStore, "get", get)
    monkeypatch.setattr(FileStore, "get_range", get_range)
    return reads


def test_an_id_prefix_reads_only_the_snapshots_it_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `dr backups describe 1a2b3c4d`, `dr restore 1a2b3c4d`, `dr drill run --backup 1a2b3c4d`: on a
    # repository of 3,650 snapshots each read all of them (3,652 GETs on SeaweedFS) to pick one.
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    snaps = [save_snapshot(repo, Snapshot(kind="backup", name=f"nightly-{i}")) for i in range(40)]
    volume = save_snapshot(repo, Snapshot(kind="volume", paths=["/data"]))
    repo = open_with(repo.store, key)
    reads = _count_reads(monkeypatch)
    target = snaps[17]
    assert find_snapshot(repo, target.id[:8], kind="backup", what="backup") == target
    assert reads["snapshots"] == 1
    # Upper case is the same id; a volume snapshot's prefix is no backup (and is read to know).
    assert find_snapshot(repo, target.id[:10].upper(), kind="backup", what="backup") == target
    with pytest.raises(SnapshotNotFound, match="no backup with id"):
        find_snapshot(repo, volume.id[:8], kind="backup", what="backup")
    assert reads["snapshots"] == 3
    # Too short: refused before anything is read. `latest` still reads every one.
    with pytest.raises(InvalidInput, match="too short"):
        find_snapshot(repo, target.id[:3], kind="backup", what="backup")
    assert reads["snapshots"] == 3
    assert find_snapshot(repo, "latest", kind="backup", what="backup") == max(
        snaps, key=lambda s: (s.time, s.id)
    )
    assert reads["snapshots"] == 3 + 41


def test_an_ambiguous_prefix_is_still_refused(tmp_path: Path) -> None:
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    for name in ("abcd" + "0" * 60, "abcd" + "1" * 60):
        repo.save_object("snapshots", Snapshot(kind="backup", name="x").with_id(name).to_doc(), name=name)
    with pytest.raises(InvalidInput, match=r"'abcd' is ambiguous \(2 matches\)"):
        find_snapshot(repo, "abcd", kind="backup", what="backup")
    assert find_snapshot(repo, "abcd1", kind="backup", what="backup").id == "abcd" + "1" * 60


class _CountingWriter(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def test_a_long_json_listing_is_written_in_few_large_writes() -> None:
    # `dr mover ls -r -o json` of 200,000 files: one write per encoder token was 7.3 million
    # writes to stdout, 8 of the command's 13 s.
    rows = [
        {"path": f"team{i // 100}/f{i}.txt", "type": "file", "size": i, "mode": "-rw-r--r--"}
        for i in range(5000)
    ]
    out = _CountingWriter()
    write_json({"entries": JsonStream(iter(rows), len(rows))}, out)
    assert out.getvalue() == json.dumps({"entries": rows}, indent=2, ensure_ascii=False) + "\n"
    assert out.writes <= len(out.getvalue()) // 65536 + 2, out.writes


def _s3_operations(store: Any) -> Counter[str]:
    """The S3 operations ``store``'s client makes from now on, by name (botocore's own event)."""
    ops: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        ops[model.name] += 1

    store._client.meta.events.register("before-call.s3", count)
    return ops


@pytest.mark.parametrize("batch", [1000, 7])
def test_prune_deletes_in_batches_on_s3(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    # A year of nightly backups, forgotten down to the GFS keeps: prune deleted 7,779 packs and
    # index files with one DeleteObject each (12.7 s against SeaweedFS on the same host).
    monkeypatch.setattr(s3, "DELETE_BATCH", batch)
    store = make_store("s3", tmp_path, request)
    repo, key = init_repo(store, tmp_path)
    snaps = []
    for i in range(24):  # each backup writes its own pack and index file, as `dr backup` does
        with repo.saver() as saver:
            writer = StreamWriter(repo, saver)
            writer.write(os.urandom(2000) + f"backup {i}".encode())
            stream = writer.close()
            saver.flush()
        snaps.append(
            save_snapshot(repo, Snapshot(kind="backup", name=f"b{i}", streams={"resources": stream}))
        )
    for s in snaps[:-2]:
        store.delete(f"snapshots/{s.id}")
    packs_before = len(list(store.list("data/")))
    ops = _s3_operations(store)
    result = prune(open_with(store, key))
    assert result.packs_deleted == 22 and result.index_files_replaced == 24
    assert len(list(store.list("data/"))) == packs_before - 22
    assert len(list(store.list("index/"))) == 1
    assert ops["DeleteObject"] == 1  # prune's own lock
    assert ops["DeleteObjects"] == -(-24 // batch) + -(-22 // batch)
    fresh = open_with(store, key)
    assert check(fresh, read_data=1.0).ok
    assert [b"".join(read_stream(fresh, s.streams["resources"]))[-9:] for s in snaps[-2:]] == [
        b"backup 22",
        b"backup 23",
    ]
