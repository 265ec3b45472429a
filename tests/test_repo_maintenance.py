"""Retention (forget), prune and locks."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dr.errors import DrError
from dr.repo import reachable, repository
from dr.repo.archiver import backup_directory
from dr.repo.check import check
from dr.repo.forget import Policy, apply_policy
from dr.repo.format import BlobType
from dr.repo.locks import Lock, LockConflict, is_stale, list_locks, remove_stale
from dr.repo.prune import prune
from dr.repo.restorer import restore_snapshot
from dr.repo.snapshots import list_snapshots
from dr.storage.base import ObjectRetained, StorageError
from dr.storage.file import FileStore
from tests.repo_helpers import describe_tree, init_repo, make_store, open_with


def _times(n: int, step: timedelta, start: datetime | None = None) -> list[tuple[str, datetime]]:
    t0 = start or datetime(2026, 1, 1, 12, tzinfo=UTC)
    return [(f"s{i:03d}", t0 + i * step) for i in range(n)]


def kept(decisions: list, **_: object) -> list[str]:  # type: ignore[type-arg]
    return sorted(d.id for d in decisions if d.keep)


def test_keep_last() -> None:
    items = _times(10, timedelta(hours=1))
    assert kept(apply_policy(items, Policy(last=3))) == ["s007", "s008", "s009"]


def test_keep_within_counts_back_from_the_newest_not_from_now() -> None:
    items = _times(10, timedelta(hours=12))  # s009 is 4.5 days after s000, years ago
    d = {x.id: x for x in apply_policy(items, Policy(within=timedelta(hours=36)))}
    # s006 is exactly 36 h before the newest: kept, as restic does.
    assert kept(list(d.values())) == ["s006", "s007", "s008", "s009"]
    assert d["s009"].reasons == ["within"]
    assert kept(apply_policy(items, Policy(last=1, within=timedelta(hours=11)))) == ["s009"]
    assert not Policy(within=timedelta(hours=1)).empty()


def test_keep_daily_takes_newest_of_each_day() -> None:
    items = _times(72, timedelta(hours=1))  # three days, hourly
    d = apply_policy(items, Policy(daily=2))
    # newest overall (day 3) and the newest of the day before
    assert kept(d) == ["s059", "s071"]


def test_gfs_combination_and_reasons() -> None:
    items = _times(400, timedelta(days=1))
    d = apply_policy(items, Policy(last=2, weekly=4, monthly=6, yearly=2))
    by_id = {x.id: x for x in d}
    assert by_id["s399"].reasons == ["last", "weekly", "monthly", "yearly"]
    for rule, n in (("last", 2), ("weekly", 4), ("monthly", 6), ("yearly", 2)):
        assert sum(rule in x.reasons for x in d) == n
    assert all(x.reasons for x in d if x.keep) and not any(x.reasons for x in d if not x.keep)
    # the newest of each of the 6 most recent months
    monthly = sorted((x.time.year, x.time.month) for x in d if "monthly" in x.reasons)
    assert monthly == [(2026, 9), (2026, 10), (2026, 11), (2026, 12), (2027, 1), (2027, 2)]


BERLIN = ZoneInfo("Europe/Berlin")


def test_retention_counts_days_in_the_policy_time_zone() -> None:
    # A policy running at 01:30 Europe/Berlin across the 2026-03-29 spring-forward: its
    # backups of Mar 29 and Mar 30 (local) both fall on Mar 29 in UTC. keep-daily 3 keeps
    # the backups of the last 3 local days, not an older one in place of Mar 29's.
    local = [datetime(2026, 3, d, 1, 30, tzinfo=BERLIN) for d in (28, 29, 30, 31)]
    items = [(f"d{t.day}", t.astimezone(UTC)) for t in local]
    assert kept(apply_policy(items, Policy(daily=3), BERLIN)) == ["d29", "d30", "d31"]
    # A backup at 00:30 on New Year's Day in Berlin (23:30 UTC the day before) is that year's.
    years = [("y26", datetime(2025, 12, 31, 23, 30, tzinfo=UTC)), ("y25", datetime(2025, 6, 1, tzinfo=UTC))]
    yearly = {d.id: d.reasons for d in apply_policy(years, Policy(yearly=2), BERLIN)}
    assert yearly == {"y26": ["yearly"], "y25": ["yearly"]}
    # The hour the fall-back repeats is two hours: 02:10 CEST and 02:10 CET are both kept.
    repeated = [("cest", datetime(2026, 10, 25, 0, 10, tzinfo=UTC)), ("cet", datetime(2026, 10, 25, 1, 10, tzinfo=UTC)),
                ("one", datetime(2026, 10, 24, 23, 10, tzinfo=UTC))]  # fmt: skip
    assert kept(apply_policy(repeated, Policy(hourly=2), BERLIN)) == ["cest", "cet"]
    # UTC by default, whatever offset a time carries.
    plus2 = [("a", datetime(2026, 5, 2, 1, tzinfo=timezone(timedelta(hours=2)))),
             ("b", datetime(2026, 5, 1, 12, tzinfo=UTC))]  # fmt: skip
    assert kept(apply_policy(plus2, Policy(daily=2))) == ["a"]  # one UTC day: May 1


def test_forget_plan_uses_each_policys_time_zone() -> None:
    from dr.cli.repo_cmd import _plan_forget
    from dr.repo.snapshots import Snapshot

    local = [datetime(2026, 3, d, 1, 30, tzinfo=BERLIN) for d in (28, 29, 30, 31)]
    snaps = [Snapshot(id=f"{t.day:02d}" * 32, kind="backup", policy="web", time=t.astimezone(UTC), namespaces=["web"])
             for t in local]  # fmt: skip
    _rows, remove = _plan_forget(snaps, Policy(daily=3), "web", None, {"web": BERLIN})
    assert remove["backup"] == {"28" * 32}


def test_empty_policy_keeps_everything() -> None:
    assert all(x.keep for x in apply_policy(_times(5, timedelta(days=1)), Policy()))


def test_forget_prune_then_check_and_restore(tmp_path: Path) -> None:
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    snaps = []
    for i in range(3):
        (src / f"gen{i}.bin").write_bytes(os.urandom(3 << 20))
        if i:
            (src / f"gen{i - 1}.bin").unlink()  # each generation's unique data
        snaps.append(backup_directory(repo, src).snapshot)
    size_before = sum(o.size for o in repo.store.list("data/"))
    # forget the first two snapshots, prune their data
    for s in snaps[:2]:
        repo.store.delete(f"snapshots/{s.id}")
    dry = prune(repo, dry_run=True)
    assert dry.packs_deleted >= 1 and sum(o.size for o in repo.store.list("data/")) == size_before
    result = prune(repo)
    assert result.bytes_freed > 5 << 20
    size_after = sum(o.size for o in repo.store.list("data/"))
    assert size_after < size_before - (5 << 20)
    fresh = open_with(repo.store, key)
    assert check(fresh, read_data=1.0).ok
    out = tmp_path / "out"
    restore_snapshot(fresh, list_snapshots(fresh)[0], out)
    assert describe_tree(out) == describe_tree(src)
    # a second prune has nothing to do
    assert prune(fresh).packs_deleted == 0


def _partly_used_pack(repo: Any, tmp_path: Path) -> tuple[Path, Any]:
    """One data pack half used: its snapshot with drop.bin forgotten, one with keep.bin left: (source, it)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.bin").write_bytes(os.urandom(1 << 20))
    (src / "drop.bin").write_bytes(os.urandom(4 << 20))
    first = backup_directory(repo, src).snapshot  # one pack with both files
    (src / "drop.bin").unlink()
    second = backup_directory(repo, src, parent=first).snapshot
    repo.store.delete(f"snapshots/{first.id}")
    return src, second


def test_prune_repacks_partly_used_packs(tmp_path: Path) -> None:
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    src, second = _partly_used_pack(repo, tmp_path)
    result = prune(repo)
    assert result.packs_repacked == 1
    # one complete index remains: the repack's own index files are superseded by it
    assert len(list(repo.store.list("index/"))) == 1
    fresh = open_with(repo.store, key)
    assert check(fresh, read_data=1.0).ok
    out = tmp_path / "out"
    restore_snapshot(fresh, second, out)
    assert (out / "keep.bin").read_bytes() == (src / "keep.bin").read_bytes()


def test_prune_with_thousands_of_index_files_replaces_them_all_with_one(tmp_path: Path) -> None:
    # Many small backups leave one index file each. Prune checked each name against a list
    # of them (quadratic); it is a dict now, and must still supersede every one of them,
    # its repack's own index file included, and keep what the snapshot needs.
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    src, second = _partly_used_pack(repo, tmp_path)
    for _ in range(2000):  # a pack and an index file each, holding a blob nothing needs
        with repo.saver() as saver:
            saver.save(BlobType.DATA, os.urandom(64))
            saver.flush()
    before = len(repo.list_names("index/"))
    assert before > 2000
    fresh = open_with(repo.store, key)
    result = prune(fresh)
    assert (result.packs_repacked, result.index_files_replaced) == (1, before)
    # the small ones, the first backup's tree pack and the repacked one
    assert result.packs_deleted == 2000 + 2
    assert len(repo.list_names("index/")) == 1
    fresh = open_with(repo.store, key)
    assert check(fresh, read_data=1.0).ok
    out = tmp_path / "out"
    restore_snapshot(fresh, second, out)
    assert describe_tree(out) == describe_tree(src)
    assert prune(fresh).packs_deleted == 0


def test_prune_loads_the_index_no_more_than_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each load is a temporary database in $TMPDIR (~220 bytes a blob while loading), a
    # fetch of every index file and seconds per million blobs: prune once loaded it again
    # after its repack (what the repack added was in the index it held already) and a
    # third time at its end, for nobody.
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    _partly_used_pack(repo, tmp_path)
    loads = []
    real = repository.load_index
    monkeypatch.setattr(repository, "load_index", lambda *a, **kw: loads.append(1) or real(*a, **kw))
    assert prune(repo).packs_repacked == 1
    assert len(loads) == 1
    # Whoever uses the repository next gets the index as prune left it.
    assert sorted(repo.index.files) == sorted(repo.list_names("index/"))
    assert len(loads) == 2
    assert check(repo).ok


def test_prune_refuses_a_damaged_repository(tmp_path: Path) -> None:
    from dr.errors import DrError
    from dr.repo.format import pack_name

    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(1 << 20))
    backup_directory(repo, src)
    for idx in repo.list_names("index/"):
        repo.store.delete(idx)  # index lost: everything looks unreferenced
    with pytest.raises(DrError, match="prune refused"):
        prune(open_with(repo.store, key))
    assert list(repo.store.list("data/")), "nothing may be deleted"
    _ = pack_name


def test_locks_conflict_and_expire(tmp_path: Path) -> None:
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    with Lock(repo, "shared", "backup"), Lock(repo, "shared", "backup"):
        with pytest.raises(LockConflict) as e:
            Lock(repo, "exclusive", "prune").acquire()
        assert "shared lock by backup" in e.value.details[0]
    assert list_locks(repo) == []
    with Lock(repo, "exclusive", "prune"), pytest.raises(LockConflict):
        Lock(repo, "shared", "backup").acquire()
    # an expired lock from another host is ignored and removed
    stale = Lock(repo, "exclusive", "prune", expiry=timedelta(seconds=-1))
    stale.name = stale._write()
    [info] = list_locks(repo)
    assert is_stale(info)
    with Lock(repo, "shared", "backup"):
        pass
    assert list_locks(repo) == []


def test_lock_of_a_dead_local_process_is_stale(tmp_path: Path) -> None:
    import subprocess

    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    lk = Lock(repo, "shared", "backup")
    lk.name = lk._write()
    doc = repo.load_object("locks", lk.name)
    repo.store.delete(f"locks/{lk.name}")
    doc["pid"] = dead.pid
    repo.save_object("locks", doc)
    [info] = list_locks(repo)
    assert is_stale(info)
    assert [x.name for x in remove_stale(repo)] == [info.name]


def test_lock_refresh_replaces_the_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import dr.repo.locks as locks

    monkeypatch.setattr(locks, "REFRESH", timedelta(seconds=0.2))
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    with Lock(repo, "shared", "backup", expiry=timedelta(seconds=0.6)) as lk:
        first = lk.name
        [before] = list_locks(repo)
        time.sleep(0.7)
        [info] = list_locks(repo)
        assert info.name != first and not is_stale(info, datetime.now(UTC))
        # when the lock was first taken outlives the refreshes (forget keeps what a
        # backup running since then may still need)
        assert info.held_since == before.held_since == before.created < info.created
    assert list_locks(repo) == []


def _recording(repo: object, calls: list[tuple[str, str]]) -> None:
    """Record the store calls of ``repo`` (the real file store answers them)."""
    store = repo.store  # type: ignore[attr-defined]
    for op in ("get", "put", "list", "delete"):
        real = getattr(store, op)

        def rec(name: str, *a: object, _op: str = op, _real: object = real, **k: object) -> object:
            calls.append((_op, name))
            return _real(name, *a, **k)  # type: ignore[operator]

        setattr(store, op, rec)


def test_a_lock_does_not_read_back_its_own_object(tmp_path: Path) -> None:
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    with Lock(repo, "shared", "backup") as other:
        calls: list[tuple[str, str]] = []
        _recording(repo, calls)
        with Lock(repo, "shared", "backup") as mine:
            read = [name for op, name in calls if op == "get"]
            assert read == [f"locks/{other.name}"], "one round trip less from S3"
            assert mine.name != other.name


def _with_one_backup(store: Any, tmp_path: Path) -> tuple[Any, Any]:
    """A repository in ``store`` holding one small backup: (repo, key)."""
    repo, key = init_repo(store, tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(5000))
    backup_directory(repo, src)
    return repo, key


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_the_index_is_prefetched_once_the_lock_is_written(kind: str, tmp_path: Path, request: Any) -> None:
    store = make_store(kind, tmp_path, request)
    repo, key = _with_one_backup(store, tmp_path)
    fresh = open_with(store, key)
    calls: list[tuple[str, str]] = []
    _recording(fresh, calls)
    with Lock(fresh, "shared", "restore", prefetch_index=True):
        assert fresh._index_loading is not None or fresh._index is not None, "the lock started the load"
        assert sorted(fresh.index.blob_ids()) == sorted(repo.index.blob_ids()) and len(fresh.index)
    ops = [f"{op} {name.split('/')[0]}" for op, name in calls]
    # not sooner: a prune that ends before the lock exists may replace the index
    assert ops.index("put locks") < ops.index("list index"), ops
    assert ops.count("list index") == 1


def test_a_prefetched_index_is_dropped_when_the_lock_conflicts(tmp_path: Path) -> None:
    repo, key = _with_one_backup(make_store("file", tmp_path, None), tmp_path)
    fresh = open_with(repo.store, key)
    with Lock(repo, "exclusive", "prune"):
        with pytest.raises(LockConflict):
            Lock(fresh, "shared", "restore", prefetch_index=True).acquire()
        assert fresh._index is None and fresh._index_loading is None
        # what the prune does meanwhile (here: the index files go) is seen afterwards
        for name in repo.list_names("index/"):
            repo.store.delete(name)
    with Lock(fresh, "shared", "restore", prefetch_index=True):
        assert len(fresh.index) == 0


def test_a_prefetched_index_is_dropped_when_the_locks_cannot_be_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether a prune was under way is then unknown: what was read goes with the error.
    repo, key = _with_one_backup(make_store("file", tmp_path, None), tmp_path)
    fresh = open_with(repo.store, key)
    list_objects = fresh.list_objects

    def failing(kind: str) -> Any:
        if kind == "locks":
            raise StorageError("locks/: listing failed")
        return list_objects(kind)

    monkeypatch.setattr(fresh, "list_objects", failing)
    with pytest.raises(StorageError, match="listing failed"):
        Lock(fresh, "shared", "restore", prefetch_index=True).acquire()
    assert fresh._index is None and fresh._index_loading is None
    monkeypatch.setattr(fresh, "list_objects", list_objects)
    with Lock(fresh, "shared", "restore", prefetch_index=True):
        assert sorted(fresh.index.blob_ids()) == sorted(repo.index.blob_ids())


def test_a_prefetched_index_that_cannot_be_read_fails_where_it_is_used(tmp_path: Path) -> None:
    repo, key = _with_one_backup(make_store("file", tmp_path, None), tmp_path)
    [name] = repo.list_names("index/")
    path = tmp_path / "repo" / name
    assert path.exists()
    path.write_bytes(path.read_bytes()[:-1])
    fresh = open_with(repo.store, key)
    with Lock(fresh, "shared", "restore", prefetch_index=True):
        with pytest.raises(DrError, match=f"{name}: authentication failed"):
            _ = fresh.index
        assert fresh._index_loading is None and fresh._index is None  # the failed load is not kept
        with pytest.raises(DrError, match=f"{name}: authentication failed"):
            _ = fresh.index  # asked again: read again


def _lapse(lk: Lock) -> None:
    """What a pause past the expiry does to a held lock: no refresh until it is stale."""
    import time

    lk._stop.set()
    assert lk._thread is not None
    lk._thread.join()
    time.sleep(max(0.0, lk._held_until - locks_clock()) + 0.05)


def locks_clock() -> float:
    from dr.repo.locks import _clock

    return _clock()


def test_a_lapsed_lock_stops_the_commit(tmp_path: Path) -> None:
    from dr.repo.locks import LockLost

    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(5000))
    with Lock(repo, "shared", "backup", expiry=timedelta(seconds=0.6)) as lk:
        _lapse(lk)
        # another process may now take it for stale; the backup must not commit
        with pytest.raises(LockLost, match=r"lock of this backup was lost \(not refreshed for \d+ s\)"):
            backup_directory(repo, src, lock=False)
        with pytest.raises(LockLost):
            repo.save_object("snapshots", {"x": 1})
    assert list_snapshots(repo) == [] and list(repo.store.list("index/")) == []
    # released: the repository holds no lease any more, writes go on
    repo.check_leases()


def test_a_removed_lock_stops_the_commit_and_is_not_refreshed_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import dr.repo.locks as locks
    from dr.repo.locks import LockLost

    monkeypatch.setattr(locks, "REFRESH", timedelta(seconds=0.1))
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    with Lock(repo, "shared", "backup", expiry=timedelta(minutes=5)) as lk:
        repo.check_leases()  # held: nothing raised
        remove_stale(repo, everything=True)  # `dr repo unlock --all` while it runs
        time.sleep(0.3)  # refreshes come and see it gone
        assert list_locks(repo) == [], "a removed lock is not written again"
        with pytest.raises(LockLost, match="removed by another process"):
            repo.save_object("snapshots", {"x": 1})
        assert lk.name is not None
    assert list_snapshots(repo) == []


def test_a_prune_whose_lock_lapsed_deletes_nothing(tmp_path: Path) -> None:
    from dr.repo.locks import LockLost

    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    for _ in range(2):
        (src / "a").write_bytes(os.urandom(5000))
        backup_directory(repo, src)
    old = min(list_snapshots(repo), key=lambda s: s.time)
    repo.store.delete(f"snapshots/{old.id}")  # its data is now unused
    objects = sorted(o.name for o in repo.store.list(""))
    fresh = open_with(repo.store, key)
    with Lock(fresh, "exclusive", "prune", expiry=timedelta(seconds=0.6)) as lk:
        _lapse(lk)  # paused past the expiry: a backup may have started meanwhile
        with pytest.raises(LockLost, match="lock of this prune was lost"):
            prune(fresh, lock=False)
    assert sorted(o.name for o in repo.store.list("")) == objects
    assert prune(fresh).packs_deleted == 2  # the old backup's data pack and tree pack


def _two_generations(repo: Any, tmp_path: Path) -> tuple[Any, Any]:
    """Two backups of a directory whose every file changed in between: (first, second)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(1 << 20))
    first = backup_directory(repo, src).snapshot
    (src / "a.bin").unlink()
    (src / "b.bin").write_bytes(os.urandom(1 << 20))
    return first, backup_directory(repo, src).snapshot


def test_prune_refuses_when_a_needed_pack_is_missing(tmp_path: Path) -> None:
    from dr.repo.format import pack_name

    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    _, second = _two_generations(repo, tmp_path)
    needed = {b for b in reachable.collect(repo, [second]).data}
    lost = next(p for p, entries in repo.index.packs.items() if needed & {e.id for e in entries})
    repo.store.delete(pack_name(lost))
    objects = sorted(o.name for o in repo.store.list(""))
    with pytest.raises(DrError, match="prune refused") as e:
        prune(open_with(repo.store, key))
    assert any(pack_name(lost) in d for d in e.value.details)
    assert sorted(o.name for o in repo.store.list("")) == objects, "nothing written, nothing deleted"


def test_prune_leaves_out_a_missing_pack_nothing_needs(tmp_path: Path) -> None:
    from dr.repo.format import pack_name

    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    first, second = _two_generations(repo, tmp_path)
    repo.store.delete(f"snapshots/{first.id}")
    needed = reachable.collect(repo, [second]).blobs
    unused = next(p for p, entries in repo.index.packs.items() if not needed & {e.id for e in entries})
    repo.store.delete(pack_name(unused))
    prune(open_with(repo.store, key))
    fresh = open_with(repo.store, key)
    assert unused not in fresh.index.packs
    assert check(fresh, read_data=1.0).ok


def test_check_reports_a_damaged_index_file_and_checks_the_rest(tmp_path: Path) -> None:
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    _two_generations(repo, tmp_path)
    names = repo.list_names("index/")
    assert len(names) == 2  # one per backup
    bad = names[0]
    sealed = bytearray(repo.store.get(bad))
    sealed[-1] ^= 0xFF
    repo.store.put(bad, bytes(sealed), if_absent=False)
    result = check(open_with(repo.store, key))
    assert result.snapshots == 2 and result.trees > 0, "the rest was checked"
    assert any(e.startswith(bad) for e in result.errors), result.errors
    # the blobs only the damaged file listed are named as missing from the index
    assert any("missing from the index" in e for e in result.errors), result.errors


def test_a_snapshot_deleted_while_being_listed_is_gone_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check and forget both take shared locks: a forget may delete a snapshot between
    another command's listing of snapshots/ and its reading of them."""
    from dr.repo.repository import Repository

    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    first, second = _two_generations(repo, tmp_path)
    real = Repository.list_objects

    def list_objects(self: Repository, kind: str) -> list[str]:
        names = real(self, kind)
        if kind == "snapshots" and first.id in names:
            self.store.delete(f"snapshots/{first.id}")  # forget runs right now
        return names

    monkeypatch.setattr(Repository, "list_objects", list_objects)
    assert [s.id for s in list_snapshots(repo)] == [second.id]
    repo.save_object("snapshots", first.to_doc(), name=first.id)
    result = check(open_with(repo.store, key))
    assert result.ok and result.snapshots == 1, result.errors
    # names given by the caller are not listed: one that is missing is an error
    from dr.storage.base import ObjectNotFound

    with pytest.raises(ObjectNotFound):
        repo.load_objects("snapshots", [first.id])


@pytest.mark.parametrize(("change", "what"), [(-1, "truncated"), (+1, "wrong size")])
def test_quick_check_finds_a_pack_of_the_wrong_size(tmp_path: Path, change: int, what: str) -> None:
    from dr.repo.format import pack_name, pack_size

    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    _two_generations(repo, tmp_path)
    stored = {o.name: o.size for o in repo.store.list("data/")}
    for pack_id, entries in repo.index.packs.items():  # the size follows from the index
        assert stored[pack_name(pack_id)] == pack_size(entries)
    name = sorted(stored)[0]
    data = repo.store.get(name)
    # one byte less or more at the end: the blobs all still lie where the index says
    repo.store.put(name, data[:-1] if change < 0 else data + b"\0", if_absent=False)
    result = check(open_with(repo.store, key))
    assert result.errors == [f"{name}: {what} ({len(data) + change} bytes, expected {len(data)})"]


class RetainingStore(FileStore):
    """A file store whose deletes of the names in ``retained`` are refused as S3 Object Lock
    refuses them (``ObjectRetained``); the real refusal is tested against SeaweedFS."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.retained: set[str] = set()

    def delete(self, name: str) -> None:
        if name in self.retained:
            raise ObjectRetained(f"delete {name}: retained", datetime(2030, 1, 1, tzinfo=UTC))
        super().delete(name)


def test_prune_keeps_what_object_lock_retains_and_the_packs_a_retained_index_names(tmp_path: Path) -> None:
    # Under Object Lock a prune failed at the first index file it could not delete yet, and
    # had it gone on, its packs deleted, that index would name packs that are gone. Now
    # what the store keeps stays, with the packs it names, until a later prune.
    store = RetainingStore(tmp_path / "repo")
    repo, key = init_repo(store, tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "old.bin").write_bytes(os.urandom(3 << 20))
    first = backup_directory(repo, src).snapshot
    first_index = set(repo.index.files)
    (src / "old.bin").unlink()
    (src / "new.bin").write_bytes(os.urandom(3 << 20))
    second = backup_directory(repo, src, parent=first).snapshot
    packs_before = {o.name for o in store.list("data/")}
    store.retained = set(first_index)  # the first backup's index file is still under retention
    repo.store.delete(f"snapshots/{first.id}")

    result = prune(repo)
    assert result.index_files_retained == 1 and result.packs_retained >= 1 and result.packs_deleted == 0
    assert result.bytes_freed == 0
    assert {o.name for o in store.list("data/")} == packs_before  # its packs stay with it
    fresh = open_with(store, key)
    assert check(fresh, read_data=1.0).ok  # every index entry names a pack that is there
    out = tmp_path / "out"
    restore_snapshot(fresh, second, out)
    assert describe_tree(out) == describe_tree(src)

    store.retained.clear()  # its retention ends: the next prune deletes both
    later = prune(fresh)
    assert later.index_files_retained == 0 and later.packs_retained == 0 and later.packs_deleted >= 1
    assert later.bytes_freed > 2 << 20
    assert check(open_with(store, key), read_data=1.0).ok


class IndexRetainingStore(RetainingStore):
    """Every index file is retained, those the prune itself writes too (a bucket's
    default Object Lock retention applies to each new object)."""

    def delete(self, name: str) -> None:
        if name.startswith("index/"):
            raise ObjectRetained(f"delete {name}: retained", datetime(2030, 1, 1, tzinfo=UTC))
        super().delete(name)


def test_prune_that_repacks_under_default_retention_keeps_the_index_files_of_its_own_repack(
    tmp_path: Path,
) -> None:
    # A repack's saver writes an index file of its own, superseded by the complete index:
    # prune counted it as an original one and left it, named nowhere as retained.
    store = IndexRetainingStore(tmp_path / "repo")
    repo, key = init_repo(store, tmp_path)
    src, second = _partly_used_pack(repo, tmp_path)
    result = prune(repo)
    assert result.packs_repacked == 1 and result.index_files_retained == 3
    fresh = open_with(store, key)
    assert check(fresh, read_data=1.0).ok
    out = tmp_path / "out"
    restore_snapshot(fresh, second, out)
    assert (out / "keep.bin").read_bytes() == (src / "keep.bin").read_bytes()


def test_a_temporary_file_prune_cannot_remove_is_a_warning_not_a_failed_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Removing what killed writes left is prune's last step, housekeeping: one temporary file it could
    # not remove (EACCES, NFS's ESTALE) failed a prune that had done all its work, its result unsaid.
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(1 << 20))
    snap = backup_directory(repo, src).snapshot
    repo.store.delete(f"snapshots/{snap.id}")
    stale = tmp_path / "repo" / "data" / ".tmp-left-by-a-killed-write"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    unlink = os.unlink

    def refusing(path: Any, *args: Any, **kwargs: Any) -> None:
        if os.path.basename(path) == stale.name:
            raise PermissionError(13, "Permission denied", str(path))
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refusing)
    result = prune(repo)
    assert result.packs_deleted >= 1
    assert stale.exists()
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("prune: temporary files of writes that never finished stay: "), warning
    assert ".tmp-left-by-a-killed-write" in warning
