"""``dr forget``: what it removes, in which order, and what it leaves (file:// repository)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr.cli.main import main
from dr.crypto.providers.local import LocalKeyProvider
from dr.interrupt import INTERRUPTED_EXIT
from dr.repo.locks import Lock
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot, list_snapshots
from dr.storage.file import FileStore
from dr.storage.registry import open_store
from tests.cli_support import write_config
from tests.helpers import run_dr

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _default_repo(home: Path) -> Repository:
    """The repository and key `dr repo init` makes with no configuration."""
    key = LocalKeyProvider(home / "config" / "dr" / "repo.key")
    return Repository.open(
        open_store(f"file://{home}/data/dr/repo"), lambda uri: key if uri == key.uri else None
    )


def _save(repo: Repository, snap: Snapshot, name: str) -> None:
    repo.save_object("snapshots", snap.with_id(name).to_doc(), name=name)


def _volume(repo: Repository, name: str, t: datetime, pvc: str = "data", run: int = 0) -> None:
    """A volume snapshot as a `dr backup` mover Job writes it (per-run hostname and tags)."""
    tags = {"dr.dev/backup": f"run{run}-app", "dr.dev/namespace": "shop", "dr.dev/pvc": pvc,
            "dr.dev/mover-job": f"dr-backup-{pvc}-{run}"}  # fmt: skip
    _save(repo, Snapshot(kind="volume", time=t, hostname=f"dr-backup-{pvc}-{run}-abcde", paths=["/data"],
                         tags=tags), name)  # fmt: skip


def _backup(repo: Repository, name: str, t: datetime, refs: list[str]) -> None:
    _save(repo, Snapshot(kind="backup", time=t, name="app", policy="p", namespaces=["shop"], refs=refs), name)


def _ids(repo: Repository) -> set[str]:
    return {s.id for s in list_snapshots(repo)}


def test_a_forget_stopped_half_way_leaves_no_backup_without_its_volume_snapshot(
    isolated_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    # In hex order the volume snapshot comes first: the order forget used to delete in.
    vol_old, bk_old, vol_new, bk_new = "0" * 63 + "1", "f" * 63 + "1", "0" * 63 + "2", "f" * 63 + "2"
    for v, b, t in ((vol_old, bk_old, T0), (vol_new, bk_new, T0 + timedelta(days=1))):
        _volume(repo, v, t)
        _backup(repo, b, t, [v])
    real = FileStore.delete
    deleted: list[str] = []

    def delete(self: FileStore, name: str) -> None:
        if name.startswith("snapshots/") and deleted:
            raise KeyboardInterrupt("killed")  # the process dies after its first delete
        deleted.append(name)
        real(self, name)

    monkeypatch.setattr(FileStore, "delete", delete)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main(["forget", "--keep-last", "1"])
    # dr's own handling of the interrupt ran (a KeyboardInterrupt escaping main would be a bug).
    assert (stopped.value.code, capsys.readouterr().err.splitlines()[-1]) == (INTERRUPTED_EXIT, "interrupted")
    monkeypatch.setattr(FileStore, "delete", real)
    assert [n for n in deleted if n.startswith("snapshots/")] == [f"snapshots/{bk_old}"]
    r = run_dr(capsys, "repo", "check")
    assert r.code == 0, r.err
    # The next forget removes the volume snapshot the stopped one left.
    assert run_dr(capsys, "forget", "--keep-last", "1").code == 0
    assert _ids(repo) == {vol_new, bk_new}


def _failed_runs(repo: Repository) -> tuple[list[str], list[str]]:
    """Five daily runs of one backup: on days 0-2 the backup failed after its mover wrote
    the volume snapshot. -> (volume snapshot ids, backup ids)."""
    vols, backups = [], []
    for day in range(5):
        t = T0 + timedelta(days=day)
        vols.append(f"{day:064x}")
        _volume(repo, vols[-1], t, run=day)
        if day >= 3:
            backups.append("f" * 63 + str(day))
            _backup(repo, backups[-1], t, [vols[-1]])
    return vols, backups


def test_forget_removes_volume_snapshots_failed_backups_left(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    vols, backups = _failed_runs(repo)
    r = run_dr(capsys, "forget", "--keep-last", "1", "-o", "json")
    assert r.code == 0, r.err
    assert set(r.json()["removed"]) == {*vols[:4], backups[0]}
    assert _ids(repo) == {vols[4], backups[1]}
    # A snapshot of another volume that a backup left is ranked by itself: the newest is kept.
    _volume(repo, "e" * 64, T0, pvc="logs")
    assert run_dr(capsys, "forget", "--keep-last", "1").code == 0
    assert _ids(repo) == {vols[4], backups[1], "e" * 64}


def test_forget_with_a_policy_removes_what_its_failed_backups_left(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(isolated_home, backup_policies=[
        {"name": "p", "schedule": "0 2 * * *", "scope": {"namespaces": ["shop"]}},
    ]))  # fmt: skip
    assert run_dr(capsys, "--config", config, "repo", "init").code == 0
    key = LocalKeyProvider(isolated_home / "repo.key")
    repo = Repository.open(
        open_store(f"file://{isolated_home}/repo"), lambda uri: key if uri == key.uri else None
    )
    vols, backups = _failed_runs(repo)
    _volume(repo, "e" * 64, T0, pvc="logs")  # a volume no backup of p holds: not p's to forget
    r = run_dr(capsys, "--config", config, "forget", "--policy", "p", "--keep-last", "1", "-o", "json")
    assert r.code == 0, r.err
    assert _ids(repo) == {vols[4], backups[1], "e" * 64}


def test_forget_keeps_volume_snapshots_a_running_backup_may_need(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    now = datetime.now(UTC)
    # Two backups of the same volume under way: each mover has written its volume snapshot.
    running = ["c" * 64, "d" * 64]
    _volume(repo, running[0], now - timedelta(minutes=2), run=1)
    _volume(repo, running[1], now - timedelta(minutes=1), run=2)
    _volume(repo, "a" * 64, now - timedelta(days=3), run=0)  # left by a backup that failed
    with Lock(repo, "shared", "backup"):
        r = run_dr(capsys, "forget", "--keep-last", "1", "-o", "json")
        assert r.code == 0, r.err
        rows: dict[str, Any] = {row["id"]: row for row in r.json()["snapshots"]}
        assert rows[running[0]]["keep"] and rows[running[0]]["reasons"] == ["backup in progress"]
        assert _ids(repo) == set(running)
    # Once no backup runs, retention applies to them too.
    assert run_dr(capsys, "forget", "--keep-last", "1").code == 0
    assert _ids(repo) == {running[1]}


def test_forget_names_the_group_of_a_volume_snapshot_made_by_hand(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `dr mover backup` snapshots have no namespace/PVC: their group is their host, paths and tags.
    import socket

    assert run_dr(capsys, "repo", "init").code == 0
    src = isolated_home / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    for args in ([], [], ["--tag", "app=web", "--tag", "tier=db"]):
        assert run_dr(capsys, "mover", "backup", str(src), *args).code == 0
    r = run_dr(capsys, "forget", "--keep-last", "1", "--dry-run")
    assert r.code == 0, r.err
    host = socket.gethostname()
    lines = r.out.splitlines()
    assert lines[0].split()[:4] == ["ID", "KIND", "GROUP", "TIME"]
    groups = sorted(line.split("  ")[2].strip() for line in lines[1:])  # the ID, KIND and GROUP cells
    assert groups == [f"{host}:{src}", f"{host}:{src}", f"{host}:{src} app=web,tier=db"], r.out


def test_forget_with_a_policy_applies_it_in_the_policys_own_repository(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `dr backup --policy p` writes p's backups to p's repository; `dr forget --policy p`
    # (the scheduled retention) looked in the default one and found nothing to forget.

    config = write_config(isolated_home, backup_policies=[
        {"name": "p", "schedule": "0 2 * * *", "repository": "offsite", "scope": {"namespaces": ["shop"]},
         "retention": {"keepLast": 1}},
    ])  # fmt: skip
    doc = yaml.safe_load(config.read_text())
    doc["repositories"].append(
        {**doc["repositories"][0], "name": "offsite", "url": f"file://{isolated_home}/off"}
    )
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    for extra in ((), ("--repo", f"file://{isolated_home}/off")):
        assert run_dr(capsys, "--config", str(config), *extra, "repo", "init").code == 0
    key = LocalKeyProvider(isolated_home / "repo.key")
    offsite = Repository.open(FileStore(isolated_home / "off"), lambda uri: key if uri == key.uri else None)
    for i, name in enumerate(("a" * 64, "b" * 64, "c" * 64)):
        _backup(offsite, name, T0 + timedelta(days=i), [])
    r = run_dr(capsys, "--config", str(config), "forget", "--policy", "p", "-o", "json")
    assert r.code == 0, r.err
    assert _ids(offsite) == {"c" * 64}


def test_forget_with_an_unknown_policy_is_exit_2_and_removes_nothing(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    _backup(repo, "a" * 64, T0, [])
    r = run_dr(capsys, "forget", "--policy", "nope", "--keep-last", "1")
    assert (r.code, r.err) == (2, "error: no backup policy 'nope' in built-in defaults (known: none)\n")
    assert _ids(repo) == {"a" * 64}


def test_forget_with_an_unknown_policy_names_the_policies_the_config_knows(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As `dr backup`, `dr backups list` and `dr restore` do: a misspelt name is found at once.
    config = write_config(isolated_home, backup_policies=[
        {"name": n, "schedule": "0 2 * * *", "scope": {"namespaces": ["shop"]}} for n in ("nightly", "hourly")
    ])  # fmt: skip
    assert run_dr(capsys, "--config", str(config), "repo", "init").code == 0
    r = run_dr(capsys, "--config", str(config), "forget", "--policy", "nightl", "--keep-last", "1")
    assert (r.code, r.err) == (2, f"error: no backup policy 'nightl' in {config} (known: nightly, hourly)\n")


def _object_lock_dr(
    home: Path, capsys: pytest.CaptureFixture[str], s3_env: dict[str, str], s3_client: Any, bucket: str
) -> Callable[..., Any]:
    """A bucket with Object Lock and a dr runner by config: "plain" (no retention set) or
    "locked" (1 day, GOVERNANCE), both on the same repository in it, initialised."""
    s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3 = {"endpoint": s3_env["endpoint"], "region": s3_env["region"], "addressingStyle": "path"}
    configs = {}
    for name, lock in (("plain", None), ("locked", {"mode": "GOVERNANCE", "days": 1})):
        repo = {
            "name": "r",
            "url": f"s3://{bucket}/repo",
            "keys": ["local"],
            "s3": {**s3, **({"objectLock": lock} if lock else {})},
        }
        doc = {
            "repositories": [repo],
            "keyProviders": [{"name": "local", "uri": f"local://{home}/repo.key"}],
        }
        configs[name] = home / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(doc))

    def dr(config: str, *args: str) -> Any:
        return run_dr(capsys, "--config", str(configs[config]), *args)

    assert dr("plain", "repo", "init").code == 0
    return dr


def _kept_by_object_lock(forget_doc: dict[str, Any], snapshot_id: str) -> bool:
    """Whether `dr forget -o json` kept the snapshot, first for Object Lock retention."""
    row = next(row for row in forget_doc["snapshots"] if row["id"] == snapshot_id)
    return row["keep"] is True and row["reasons"][0].startswith("retained by Object Lock until ")


def _generations(src: Path, size: int, backups: Sequence[Callable[..., Any]]) -> list[str]:
    """One mover backup of a new directory ``src`` by each dr runner of ``backups``, each of
    a file of its own (gen0.bin, gen1.bin, ...: ``size`` random bytes, the one before
    removed, so no two share data) -> their ids."""
    src.mkdir()
    ids = []
    for i, backup in enumerate(backups):
        for old in src.iterdir():
            old.unlink()
        (src / f"gen{i}.bin").write_bytes(os.urandom(size))
        r = backup("mover", "backup", str(src), "-o", "json")
        assert r.code == 0, r.err
        ids.append(r.json()["id"])
    return ids


def test_forget_and_prune_under_s3_object_lock_leave_what_is_retained(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    s3_env: dict[str, str],
    s3_client: Any,
    unique: str,
) -> None:
    # With Object Lock, forget stopped at the first snapshot still retained (exit 1, the
    # rest not done) and prune at the first index file still retained: scheduled
    # retention failed every day. What the store keeps now stays, named, exit 0; what it
    # lets go is removed.

    dr = _object_lock_dr(isolated_home, capsys, s3_env, s3_client, f"dr-forget-lock-{unique}")
    src = isolated_home / "src"
    # The first one's objects are not retained.
    ids = _generations(src, 2 << 20, [functools.partial(dr, c) for c in ("plain", "locked", "locked")])

    r = dr("locked", "forget", "--keep-last", "1", "-o", "json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["removed"] == [ids[0]] and doc["retained"] == [ids[1]]
    assert _kept_by_object_lock(doc, ids[1])
    assert "under Object Lock retention and stay" in r.err

    r = dr("locked", "prune", "-o", "json")
    assert r.code == 0, r.err
    pruned = r.json()
    assert pruned["packsDeleted"] >= 1 and pruned["bytesFreed"] > 1 << 20  # the first backup's data
    assert pruned["indexFilesRetained"] == 2 and pruned["packsRetained"] == 0
    assert dr("locked", "repo", "check").code == 0
    r = dr("locked", "mover", "restore", ids[2], str(isolated_home / "out"))
    assert r.code == 0, r.err
    assert (isolated_home / "out" / "gen2.bin").read_bytes() == (src / "gen2.bin").read_bytes()


def test_a_retained_backup_keeps_the_volume_snapshots_it_needs(tmp_path: Path) -> None:
    from dr.cli.repo_cmd import _remove_snapshots
    from tests.repo_helpers import init_repo
    from tests.test_repo_maintenance import RetainingStore

    store = RetainingStore(tmp_path / "repo")
    repo, _ = init_repo(store, tmp_path)
    _volume(repo, "a" * 64, T0)
    _volume(repo, "b" * 64, T0, pvc="logs")
    _backup(repo, "c" * 64, T0, ["a" * 64])
    _backup(repo, "d" * 64, T0, ["b" * 64])
    store.retained = {f"snapshots/{'c' * 64}"}
    by_id = {s.id: s for s in list_snapshots(repo)}
    retained = _remove_snapshots(
        repo, {"backup": {"c" * 64, "d" * 64}, "volume": {"a" * 64, "b" * 64}}, by_id
    )
    assert retained == {
        "c" * 64: "retained by Object Lock until 2030-01-01 00:00 UTC",
        "a" * 64: f"needed by backup {'c' * 8}, which Object Lock retains",
    }
    assert _ids(repo) == {"a" * 64, "c" * 64}


def test_forget_keep_within_keeps_the_backups_of_that_time_before_the_newest(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    days = [f"{'b' * 63}{d}" for d in range(4)]
    for d, name in enumerate(days):
        _backup(repo, name, T0 + timedelta(days=d), [])
    r = run_dr(capsys, "forget", "--keep-within", "36h", "--dry-run", "-o", "json")
    assert r.code == 0, r.err
    assert r.json()["removed"] == days[:2]
    r = run_dr(capsys, "forget", "--keep-within", "1d12h", "-o", "json")
    assert r.code == 0, r.err
    rows = {row["id"]: row for row in r.json()["snapshots"]}
    assert rows[days[2]]["reasons"] == ["within"] and _ids(repo) == set(days[2:])
    for bad, why in (
        ("7days", "invalid duration '7days'"),
        ("0", "'0' must be longer than 0"),
        # The config's limit: further back than year 1 was an OverflowError (exit 1).
        ("800000d", "duration '800000d' is too long (at most 36500d)"),
    ):
        r = run_dr(capsys, "forget", "--keep-within", bad)
        assert r.code == 2 and len(r.err.splitlines()) == 1 and why in r.err, r.err
    assert _ids(repo) == set(days[2:])


def test_forget_with_a_policy_applies_its_keep_within(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(isolated_home, backup_policies=[
        {"name": "p", "schedule": "0 2 * * *", "scope": {"namespaces": ["shop"]},
         "retention": {"keepWithin": "2d"}},
    ]))  # fmt: skip
    assert run_dr(capsys, "--config", config, "repo", "init").code == 0
    key = LocalKeyProvider(isolated_home / "repo.key")
    repo = Repository.open(
        open_store(f"file://{isolated_home}/repo"), lambda uri: key if uri == key.uri else None
    )
    days = [f"{'b' * 63}{d}" for d in range(5)]
    for d, name in enumerate(days):
        _backup(repo, name, T0 + timedelta(days=d), [])
    r = run_dr(capsys, "--config", config, "forget", "--policy", "p")
    assert r.code == 0, r.err
    assert _ids(repo) == set(days[2:])


def _two_backups(repo: Repository) -> dict[str, str]:
    """Two backups of one volume and a volume snapshot both need (as a backup whose
    mover found the volume unchanged could share it) -> their ids by role."""
    ids = {"old": "a1" + "0" * 62, "new": "a2" + "0" * 62, "old_vol": "b1" + "0" * 62,
           "new_vol": "b2" + "0" * 62, "shared": "b3" + "0" * 62}  # fmt: skip
    _volume(repo, ids["old_vol"], T0)
    _volume(repo, ids["shared"], T0, pvc="logs")
    _volume(repo, ids["new_vol"], T0 + timedelta(days=1), run=1)
    _backup(repo, ids["old"], T0, [ids["old_vol"], ids["shared"]])
    _backup(repo, ids["new"], T0 + timedelta(days=1), [ids["new_vol"], ids["shared"]])
    return ids


def test_forget_by_id_removes_that_backup_and_the_volume_snapshots_only_it_needs(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    ids = _two_backups(repo)
    everything = set(ids.values())
    # Too short, as for `dr backups describe`; but not "or 'latest'", which forget refuses.
    r = run_dr(capsys, "forget", "a1", "--dry-run")
    assert (r.code, r.err) == (2, "error: snapshot id 'a1' is too short (give at least 4 characters)\n")
    r = run_dr(capsys, "forget", ids["old"][:8], "--dry-run")
    assert r.code == 0, r.err
    assert "would remove" in r.out and _ids(repo) == everything
    r = run_dr(capsys, "forget", ids["old"][:8], "-o", "json")
    assert r.code == 0, r.err
    doc = r.json()
    assert (doc["dryRun"], doc["removed"], doc["retained"]) == (
        False,
        sorted([ids["old"], ids["old_vol"]]),
        [],
    )
    rows = {row["id"]: (row["keep"], row["group"], row["reasons"]) for row in doc["snapshots"]}
    assert rows == {
        ids["old"]: (False, "p/shop", []),
        ids["old_vol"]: (False, "(part of a removed backup)", []),
        ids["shared"]: (True, "(part of a removed backup)", [f"needed by backup {ids['new'][:8]}"]),
    }
    assert _ids(repo) == everything - {ids["old"], ids["old_vol"]}
    assert run_dr(capsys, "repo", "check").code == 0
    # The last one takes the shared volume snapshot with it.
    r = run_dr(capsys, "forget", ids["new"], "-o", "json")
    assert r.code == 0, r.err
    assert r.json()["removed"] == sorted([ids["new"], ids["new_vol"], ids["shared"]])
    assert _ids(repo) == set()


def test_forget_by_a_retention_leaves_a_volume_snapshot_a_kept_backup_needs(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    ids = _two_backups(repo)
    r = run_dr(capsys, "forget", "--keep-last", "1", "-o", "json")
    assert r.code == 0, r.err
    assert r.json()["removed"] == sorted([ids["old"], ids["old_vol"]])
    assert _ids(repo) == {ids["new"], ids["new_vol"], ids["shared"]}
    assert run_dr(capsys, "repo", "check").code == 0


def test_forget_by_id_refuses_and_removes_nothing(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    ids = _two_backups(repo)
    _volume(repo, "a100" + "f" * 60, T0, pvc="other")  # shares the prefix a100 with a backup
    everything = _ids(repo)
    see = " (see 'dr forget --help')"
    for args, err in (
        (["c0ffee"], "no snapshot with id 'c0ffee'"),
        ([ids["old"][:8], "c0ffee"], "no snapshot with id 'c0ffee'"),  # none of them, not the first
        (["a100"], "snapshot id 'a100' is ambiguous (2 matches)"),
        (["latest"], "forget takes ids, not 'latest': give the backup's id (`dr backups list`)"),
        ([ids["shared"]], f"volume snapshot b3000000 is needed by backup {ids['old'][:8]}, which stays "
                          "(forget that backup: its volume snapshots go with it)"),
        ([ids["old"], "--keep-last", "1"], f"backup ids and --keep-last exclude each other: forget those "
                                           f"backups, or by a retention{see}"),
        ([ids["old"], "--keep-within", "1d", "--policy", "p"], "backup ids and --keep-within, --policy exclude "
                                                               f"each other: forget those backups, or by a retention{see}"),
        ([ids["old"], "--keep-daily", "0"], "backup ids and --keep-daily exclude each other: forget those "
                                            f"backups, or by a retention{see}"),
    ):  # fmt: skip
        r = run_dr(capsys, "forget", *args)
        assert (r.code, r.err) == (2, f"error: {err}\n"), args
        assert _ids(repo) == everything
    # A volume snapshot goes with the backup named beside it.
    r = run_dr(capsys, "forget", ids["old"], ids["old_vol"], "-o", "json")
    assert r.code == 0, r.err
    assert r.json()["removed"] == sorted([ids["old"], ids["old_vol"]])


def test_forget_by_id_refuses_a_volume_snapshot_a_running_backup_may_need(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A running backup has no snapshot object before it is done (FORMAT.md §8): what its
    # movers wrote already is all of it there is to name, and must not go under it.
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    running, failed = "c" * 64, "a" * 64
    _volume(repo, running, datetime.now(UTC) - timedelta(minutes=1), run=1)
    _volume(repo, failed, datetime.now(UTC) - timedelta(days=3), run=0)
    with Lock(repo, "shared", "backup"):
        r = run_dr(capsys, "forget", running)
        assert (r.code, r.err) == (
            2,
            "error: volume snapshot cccccccc may belong to a backup still in progress; forget it once no backup runs\n",
        )
        # One a failed backup left days before is not the running one's.
        r = run_dr(capsys, "forget", failed, "-o", "json")
        assert r.code == 0, r.err
        assert r.json()["removed"] == [failed]
    assert run_dr(capsys, "forget", running).code == 0
    assert _ids(repo) == set()


def test_forget_by_id_of_mover_snapshots_then_prune_frees_their_data(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_dr(capsys, "repo", "init").code == 0
    src = isolated_home / "src"
    ids = _generations(src, 1 << 20, [functools.partial(run_dr, capsys)] * 2)
    r = run_dr(capsys, "forget", ids[0][:12], "--prune", "--dry-run", "-o", "json")
    assert r.code == 0, r.err
    assert r.json()["prune"]["bytesFreed"] > 1 << 20 and _ids(_default_repo(isolated_home)) == set(ids)
    r = run_dr(capsys, "forget", ids[0][:12], "--prune")
    assert r.code == 0, r.err
    assert "removed" in r.out and "prune: deleted" in r.out
    assert _ids(_default_repo(isolated_home)) == {ids[1]}
    assert run_dr(capsys, "repo", "check", "--read-data").code == 0
    r = run_dr(capsys, "mover", "restore", ids[1], str(isolated_home / "out"))
    assert r.code == 0, r.err
    assert (isolated_home / "out" / "gen1.bin").read_bytes() == (src / "gen1.bin").read_bytes()


def test_forget_by_id_under_s3_object_lock_reports_what_stays(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    s3_env: dict[str, str],
    s3_client: Any,
    unique: str,
) -> None:
    # A snapshot the store retains is kept and named, the others named are removed; what
    # was asked for is not all done: exit 3 (forget by retention: 0).
    dr = _object_lock_dr(isolated_home, capsys, s3_env, s3_client, f"dr-forget-id-lock-{unique}")
    src = isolated_home / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(4096))
    ids = []
    for config in ("plain", "locked", "plain"):
        r = dr(config, "mover", "backup", str(src), "-o", "json")
        assert r.code == 0, r.err
        ids.append(r.json()["id"])
    r = dr("locked", "forget", ids[0], ids[1], "-o", "json")
    assert r.code == 3, r.err  # asked for by id and not all done: partially failed
    doc = r.json()
    assert (doc["removed"], doc["retained"]) == ([ids[0]], [ids[1]])
    assert _kept_by_object_lock(doc, ids[1])
    assert "1 snapshot(s) to forget are under Object Lock retention and stay" in r.err
    r = dr("locked", "mover", "ls", ids[1], "-o", "json")
    assert r.code == 0, r.err
    assert dr("locked", "repo", "check").code == 0


def test_failed_runs_do_not_push_the_last_completed_backups_out(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Three good backups, then three runs that failed in part (a credential broke): --keep-last 2
    # kept the two newest failures and removed every good backup.
    assert run_dr(capsys, "repo", "init").code == 0
    repo = _default_repo(isolated_home)
    phases = ["Completed"] * 3 + ["PartiallyFailed"] * 3
    ids = [f"{i:x}" * 64 for i in range(1, 7)]
    for i, (name, phase) in enumerate(zip(ids, phases, strict=True)):
        _save(repo, Snapshot(kind="backup", time=T0 + timedelta(days=i), name="app", policy="p",
                             namespaces=["shop"], phase=phase), name)  # fmt: skip
    r = run_dr(capsys, "forget", "--keep-last", "2", "-o", "json")
    assert r.code == 0, r.err
    assert sorted(r.json()["removed"]) == sorted([ids[0], ids[3]])
    assert _ids(repo) == {ids[1], ids[2], ids[4], ids[5]}
    reasons = {row["id"]: row["reasons"] for row in r.json()["snapshots"]}
    assert reasons[ids[2]] == ["last (of the completed backups)"], reasons
    assert reasons[ids[5]] == ["last"]
