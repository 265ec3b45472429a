"""The counts a repository gives of its long reads (``Repository.read_progress``): every
snapshot, drill report or index file, one request each on S3 and GCS.

On SeaweedFS `dr backups list` of 3,650 snapshots was 5-13 s of silence (minutes on S3):
a terminal's progress line counts these reads.
"""

from __future__ import annotations

from pathlib import Path

from dr.crypto.providers.local import LocalKeyProvider
from dr.repo.check import check, load_snapshots
from dr.repo.format import BlobType
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot, find_snapshot, list_snapshots, readable_snapshots, save_snapshot
from dr.storage.registry import open_store
from tests.cli_support import write_config

INDEX_FILES = 3
POLICY = {"name": "nightly", "schedule": "0 2 * * *", "rpo": "24h", "scope": {"namespaces": ["shop"]}}


def _repository(directory: Path, snapshots: int) -> Path:
    """``directory/dr.yaml`` naming a file:// repository of ``snapshots`` backups and
    ``INDEX_FILES`` index files."""
    directory.mkdir()
    config = write_config(directory, backup_policies=[POLICY])
    key = LocalKeyProvider(directory / "repo.key", create=True)
    repo = Repository.init(open_store(f"file://{directory}/repo"), key)
    for i in range(INDEX_FILES):
        with repo.saver() as saver:
            saver.save(BlobType.DATA, f"blob {i}".encode())
            saver.flush()
    for i in range(snapshots):
        save_snapshot(repo, Snapshot(kind="backup", name=f"nightly-{i}", policy="nightly", phase="Completed"))
    return config


def test_every_read_of_all_snapshots_and_of_the_index_is_counted_from_0_to_its_end(tmp_path: Path) -> None:
    config = _repository(tmp_path / "r", 30)
    key = LocalKeyProvider(config.parent / "repo.key")
    repo = Repository.open(open_store(f"file://{config.parent}/repo"), lambda uri: key)
    told: list[tuple[str, int, int]] = []
    repo.read_progress = lambda what, done, total: told.append((what, done, total))

    def reads() -> list[list[tuple[str, int, int]]]:
        """``told`` cut into reads (each starts at 0), and emptied."""
        runs: list[list[tuple[str, int, int]]] = []
        for t in told:
            if t[1] == 0:
                runs.append([])
            runs[-1].append(t)
        told.clear()
        return runs

    def counted(run: list[tuple[str, int, int]], what: str, total: int) -> None:
        assert run[0] == (what, 0, total) and run[-1] == (what, total, total)
        done = [d for _, d, _ in run]
        assert done == sorted(done) and done.count(total) == 1 and {w for w, _, t in run} == {what}

    for read in (
        lambda: readable_snapshots(repo, "backup"),
        lambda: list_snapshots(repo),
        lambda: find_snapshot(repo, "latest", kind="backup", what="backup"),
        lambda: load_snapshots(repo),
    ):
        read()
        [run] = reads()
        counted(run, "snapshots", 30)
    repo.reload_index()
    [run] = reads()
    counted(run, "index", INDEX_FILES)
    # `dr repo check`: the index (its damaged files counted too), then the snapshots.
    assert check(repo).ok
    index, snaps = reads()
    counted(index, "index", INDEX_FILES)
    counted(snaps, "snapshots", 30)
    # An id prefix reads the snapshots it matches only, and counts those.
    some = list_snapshots(repo)[7]
    told.clear()
    find_snapshot(repo, some.id[:12], kind="backup", what="backup")
    [run] = reads()
    counted(run, "snapshots", 1)
