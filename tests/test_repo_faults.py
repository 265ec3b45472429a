"""Bad input and faults: wrong key, corruption, truncation, newer formats, escapes."""

from __future__ import annotations

import gc
import json
import os
import re
import resource
import signal
import stat
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from dr.crypto.providers.local import LocalKeyProvider
from dr.errors import DrError, InvalidInput
from dr.repo.archiver import backup_directory
from dr.repo.check import check
from dr.repo.format import BlobType, FormatError, UnsupportedVersion, pack_name
from dr.repo.repository import Repository, RepositoryError
from dr.repo.restorer import restore_snapshot
from dr.repo.snapshots import Snapshot, find_snapshot, list_snapshots, save_snapshot
from dr.repo.tree import encode_tree
from tests.repo_helpers import backed_up_then_damaged, describe_tree, init_repo, make_store, open_with

BACKENDS = ["file", "s3", "gs"]


def _two_files(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(5 << 20))
    (src / "b.txt").write_text("small file in another pack\n" * 10)
    return src


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_key_is_refused_and_writes_nothing(backend: str, tmp_path: Path, request: Any) -> None:
    store = make_store(backend, tmp_path, request)
    init_repo(store, tmp_path)
    before = sorted(o.name for o in store.list(""))
    other = LocalKeyProvider(tmp_path / "other.key", create=True)
    other.wrap(b"x" * 64, {})  # creates the key file
    with pytest.raises(DrError) as e:
        Repository.open(store, lambda uri: other)
    assert "none of 1 key slot(s) could be unwrapped" in e.value.message
    assert any("wrong key" in d for d in e.value.details)
    assert sorted(o.name for o in store.list("")) == before


def test_missing_provider_is_listed(tmp_path: Path) -> None:
    store = make_store("file", tmp_path, None)
    _, key = init_repo(store, tmp_path)
    os.rename(key.path, tmp_path / "moved.key")
    with pytest.raises(DrError) as e:
        Repository.open(store, lambda uri: LocalKeyProvider(key.path))
    assert e.value.details == [f"slot {e.value.details[0].split()[1]} {key.uri}: key file does not exist"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_newer_format_is_refused(backend: str, tmp_path: Path, request: Any) -> None:
    store = make_store(backend, tmp_path, request)
    _, key = init_repo(store, tmp_path)
    raw = store.get("config")
    store.put("config", raw[:8] + struct.pack("<I", 2) + raw[12:], if_absent=False)
    with pytest.raises(UnsupportedVersion, match="format version 2 is newer than this dr supports"):
        open_with(store, key)


def test_lowered_version_is_detected(tmp_path: Path) -> None:
    store = make_store("file", tmp_path, None)
    _, key = init_repo(store, tmp_path)
    raw = store.get("config")
    store.put("config", raw[:8] + struct.pack("<I", 0) + raw[12:], if_absent=False)
    with pytest.raises(FormatError, match=r"^config: invalid format version 0$"):
        open_with(store, key)


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_a_repository(backend: str, tmp_path: Path, request: Any) -> None:
    store = make_store(backend, tmp_path, request)
    with pytest.raises(RepositoryError, match="no repository here"):
        Repository.open(store, lambda uri: None)
    init_repo(store, tmp_path)
    with pytest.raises(RepositoryError, match="already exists"):
        init_repo(store, tmp_path / "again")


def _corrupt(store: Any, name: str, *, truncate: bool = False) -> None:
    data = bytearray(store.get(name))
    if truncate:
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3] ^= 0xFF
    store.delete(name)
    store.put(name, bytes(data))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_pack_is_named_and_other_files_restore(
    backend: str, damage: str, tmp_path: Path, request: Any
) -> None:
    src = _two_files(tmp_path)
    store = make_store(backend, tmp_path, request)
    repo, key = init_repo(store, tmp_path)
    # small packs so the two files end up in different packs
    repo.config = repo.config.__class__(**{**repo.config.__dict__, "pack_size": 1 << 20})
    snap = backup_directory(repo, src).snapshot
    repo = open_with(store, key)
    # a pack holding a.bin's data and none of b.txt's (the two reader threads may
    # put b.txt's blob into the pack of one of a.bin's chunks)
    tree = json.loads(repo.read_blob(bytes.fromhex(snap.tree or "")))
    nodes = {n["name"]: n for n in tree["nodes"]}

    def packs(node: dict[str, Any]) -> list[bytes]:
        locs = [repo.index.get(bytes.fromhex(c)) for c in node["content"]]
        assert all(locs)
        return [loc.pack for loc in locs if loc is not None]

    b_packs = set(packs(nodes["b.txt"]))
    name = pack_name(next(p for p in packs(nodes["a.bin"]) if p not in b_packs))
    _corrupt(store, name, truncate=damage == "truncate")

    result = check(open_with(store, key), read_data=1.0)
    assert not result.ok
    assert any(name in e for e in result.errors), result.errors

    out = tmp_path / "out"
    stats = restore_snapshot(open_with(store, key), snap, out)
    assert any(e.startswith("a.bin:") for e in stats.errors), stats.errors
    assert (out / "b.txt").read_text() == (src / "b.txt").read_text()
    assert not (out / "a.bin").exists(), "a file that failed is not left behind in part"
    # what was restored: b.txt, not the part of a.bin that was written before it failed
    assert (stats.files, stats.bytes) == (1, (src / "b.txt").stat().st_size)


def test_corrupted_snapshot_is_named(tmp_path: Path) -> None:
    src = _two_files(tmp_path)
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    _corrupt(store, f"snapshots/{snap.id}")
    result = check(open_with(store, key))
    assert result.errors == [
        f"snapshots/{snap.id}: authentication failed (corrupted, truncated or tampered with)"
    ]


def test_renamed_snapshot_is_detected(tmp_path: Path) -> None:
    src = _two_files(tmp_path)
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    store.put(f"snapshots/{'0' * 64}", store.get(f"snapshots/{snap.id}"))
    result = check(open_with(store, key))
    # The name is bound into the snapshot's authentication: the copy fails it, the original is fine.
    assert result.errors == [
        f"snapshots/{'0' * 64}: authentication failed (corrupted, truncated or tampered with)"
    ]


def _malicious_snapshot(repo: Repository, nodes: list[dict[str, Any]]) -> Snapshot:
    # Bypass encode_tree's sorting only; the reader must still reject bad trees.
    with repo.saver() as saver:
        raw = json.dumps({"nodes": nodes}).encode()
        tree = saver.save(BlobType.TREE, raw)
        saver.flush()
    return save_snapshot(repo, Snapshot(kind="volume", tree=tree.hex(), paths=["/x"]))


@pytest.mark.parametrize(
    ("nodes", "why"),
    [
        ([{"name": "..", "type": "file", "mode": 420, "content": []}], "invalid file name '..'"),
        ([{"name": "../../escape", "type": "file", "mode": 420, "content": []}], "invalid file name '../../escape'"),
        ([{"name": "/etc/passwd", "type": "file", "mode": 420, "content": []}], "invalid file name '/etc/passwd'"),
        ([{"name": "", "type": "file", "mode": 420, "content": []}], "invalid file name ''"),
        ([{"name": "x", "type": "symlink", "target": "/etc"}, {"name": "x", "type": "file", "content": []}],
         "duplicate name 'x'"),
        ([{"name": "x", "type": "weird"}], "'x' has unknown type 'weird'"),
    ],
)  # fmt: skip
def test_restore_rejects_trees_that_escape(tmp_path: Path, nodes: list[dict[str, Any]], why: str) -> None:
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = _malicious_snapshot(repo, nodes)
    out = tmp_path / "out"
    with pytest.raises(FormatError, match=f"^tree [0-9a-f]{{16}}: {re.escape(why)}$") as e:
        restore_snapshot(repo, snap, out)
    assert not (tmp_path / "escape").exists()
    assert not out.exists() or not any(out.iterdir())
    [err] = check(repo).errors  # the root tree named once, as "snapshot ID: tree …"
    assert err == f"snapshot {snap.short_id}: {e.value}", err


def test_restore_does_not_write_through_symlinks_in_target(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("data")
    (src / "top.txt").write_text("top")
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    victim = tmp_path / "victim"
    victim.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / "sub")  # an attacker-placed symlink where a directory goes
    os.symlink(victim / "target.txt", out / "top.txt")  # and one where a file goes
    # Inside the target, a symlink in the way is replaced (its name only), never followed.
    assert restore_snapshot(repo, snap, out).errors == []
    assert list(victim.iterdir()) == []
    assert describe_tree(out) == describe_tree(src)


def test_sorted_tree_encoding_is_deterministic() -> None:
    a = encode_tree([{"name": "b"}, {"name": "a"}])
    b = encode_tree([{"name": "a"}, {"name": "b"}])
    assert a == b


def test_unknown_snapshot_version_is_refused(tmp_path: Path) -> None:
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    repo.save_object("snapshots", {"version": 99, "kind": "volume"}, name="ab" * 32)
    with pytest.raises(FormatError, match="unsupported snapshot version 99"):
        list_snapshots(open_with(repo.store, key))


def test_malformed_snapshot_names_the_object_and_field(tmp_path: Path) -> None:
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    name = "cd" * 32
    repo.save_object(
        "snapshots", {"version": 1, "id": name, "kind": "volume", "stats": {"files": "3"}}, name=name
    )
    with pytest.raises(FormatError) as e:
        list_snapshots(open_with(repo.store, key))
    assert e.value.message == f"snapshots/{name}: malformed: stats.files: expected an integer"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uid", -1),  # os.chown's "leave unchanged"
        ("gid", 2**70),  # OverflowError in os.chown
        ("mode", 0o7777777),  # bits past the permission bits
        ("mode", -1),
        ("mtime", 10**30),  # OverflowError in os.utime
        ("uid", 1.5),
    ],
)
def test_a_snapshot_root_out_of_range_names_the_snapshot_and_field(
    tmp_path: Path, field: str, value: Any
) -> None:
    # The volume root's owner, mode and time go to os.chown/chmod/utime on a full
    # restore: they are held to the ranges of a tree node's fields (FORMAT.md §6, §8).
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    doc = backup_directory(repo, src).snapshot.to_doc()
    name = "cd" * 32
    doc["id"], doc["root"][field] = name, value
    repo.save_object("snapshots", doc, name=name)
    repo = open_with(repo.store, key)
    reason = "expected an integer" if isinstance(value, float) else "out of range"
    with pytest.raises(FormatError) as e:
        find_snapshot(repo, name, kind="volume", what="volume snapshot")
    assert e.value.message.startswith(f"snapshots/{name}: malformed: root.{field}: {reason}"), e.value.message
    assert [x for x in check(repo).errors if name in x] == [e.value.message]
    assert not (tmp_path / "out").exists()


def test_a_listing_that_fails_leaves_no_threads_behind(tmp_path: Path) -> None:
    # Objects load on a thread pool. The listing stopped at a malformed snapshot used
    # to leave the pool to the garbage collector, which once shut it down inside
    # threading's own lock and hung the process: it is shut down before the error.
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    for i in range(3):
        save_snapshot(repo, Snapshot(kind="backup", name=f"ok-{i}"))
    repo.save_object("snapshots", {"version": 99, "kind": "volume"}, name="ef" * 32)
    before = {t.ident for t in threading.enumerate()}
    gc.disable()  # only the code under test may end the pool
    try:
        # ``e`` keeps the traceback, and with it the frames the error left (a cycle
        # through this frame, as in most code that catches an error).
        with pytest.raises(FormatError) as e:
            list_snapshots(open_with(repo.store, key))
        left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    finally:
        gc.enable()
    assert "unsupported snapshot version 99" in e.value.message
    assert left == []


def test_a_full_id_of_the_other_kind_is_refused(tmp_path: Path) -> None:
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    app = save_snapshot(repo, Snapshot(kind="backup", name="nightly"))
    with pytest.raises(InvalidInput, match=f"{app.short_id} is a backup snapshot, not a volume snapshot"):
        find_snapshot(repo, app.id, kind="volume", what="volume snapshot")
    assert find_snapshot(repo, app.id, kind="backup", what="backup") == app
    assert find_snapshot(repo, app.id[:6], kind="backup", what="backup") == app


def test_a_volume_snapshot_without_a_tree_is_refused_by_name(tmp_path: Path) -> None:
    from dr.repo.listing import list_entries

    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = save_snapshot(repo, Snapshot(kind="volume", paths=["/x"]))  # written by a broken writer
    with pytest.raises(DrError, match=f"snapshot {snap.short_id} has no file tree"):
        restore_snapshot(repo, snap, tmp_path / "out")
    with pytest.raises(DrError, match=f"snapshot {snap.short_id} has no file tree"):
        next(list_entries(repo, snap))
    assert not (tmp_path / "out").exists()


def test_a_hard_link_to_a_damaged_file_is_named_too(tmp_path: Path) -> None:
    files = {"a.txt": "a" * 5000, "z-link.txt": "=a.txt", "b.txt": "b" * 5000}
    repo, snap = backed_up_then_damaged(tmp_path, files, "a.txt")

    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out)
    assert sorted(e.split(":")[0] for e in stats.errors) == ["a.txt", "z-link.txt"], stats.errors
    assert "not linked: a.txt (the same file) could not be restored" in stats.errors[1]
    assert (out / "b.txt").read_text() == "b" * 5000
    assert not (out / "a.txt").exists() and not (out / "z-link.txt").exists()


def test_a_damaged_small_file_leaves_an_existing_copy_in_the_target_alone(tmp_path: Path) -> None:
    # Restoring over an existing directory: a file whose one blob fails is never
    # opened, so the copy already there is neither emptied nor removed.
    repo, snap = backed_up_then_damaged(
        tmp_path, {"a.txt": "snapshot version " * 300, "b.txt": "b" * 5000}, "a.txt"
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("the copy already there")

    stats = restore_snapshot(repo, snap, out)
    assert [e.split(":")[0] for e in stats.errors] == ["a.txt"]
    assert (out / "a.txt").read_text() == "the copy already there"
    assert (out / "b.txt").read_text() == "b" * 5000


def test_a_small_file_that_cannot_be_written_whole_is_removed(tmp_path: Path) -> None:
    # A real write failure: a file-size limit makes writes past 4 KiB fail with EFBIG.
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.txt").write_text("x" * 6000)
    (src / "small.txt").write_text("y" * 3000)
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    out = tmp_path / "out"
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        stats = restore_snapshot(repo, snap, out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert stats.errors == ["big.txt: write failed: File too large"]
    assert not (out / "big.txt").exists(), "not left in part"
    assert (out / "small.txt").read_text() == "y" * 3000


def test_errors_are_named_in_tree_order_across_overlapping_batches(tmp_path: Path) -> None:
    # Batches of one file, the next planned while one is written: a.txt fails as its
    # batch is written (a damaged blob), b.txt as its batch is planned (a blob the
    # repository lacks), which is sooner; a.txt is still named first.
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    with repo.saver() as saver:
        bad = saver.blobs.save(BlobType.DATA, b"damaged later")[0]
        saver.flush()
    loc = repo.index.get(bad)
    assert loc is not None
    pack = tmp_path / "repo" / pack_name(loc.pack)
    raw = bytearray(pack.read_bytes())
    raw[loc.entry.offset + 20] ^= 0xFF
    pack.write_bytes(bytes(raw))
    lost = "ab" * 32
    snap = _malicious_snapshot(
        repo,
        [
            {"name": "a.txt", "type": "file", "mode": 0o644, "size": 13, "content": [bad.hex()]},
            {"name": "b.txt", "type": "file", "mode": 0o644, "size": 4, "content": [lost]},
        ],
    )
    stats = restore_snapshot(open_with(store, key), snap, tmp_path / "out", batch=1)
    assert [e.split(":")[0] for e in stats.errors] == ["a.txt", "b.txt"], stats.errors
    assert "authentication failed" in stats.errors[0] and "missing from the repository" in stats.errors[1]


def test_a_blob_missing_from_the_index_fails_its_file_only(tmp_path: Path) -> None:
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    with repo.saver() as saver:
        good = saver.blobs.save(BlobType.DATA, b"kept")[0].hex()
        saver.flush()
    lost = "ab" * 32
    snap = _malicious_snapshot(  # well-formed, but one file names a blob the repository lacks
        repo,
        [
            {"name": "gone.txt", "type": "file", "mode": 0o644, "size": 8, "content": [good, lost]},
            {"name": "kept.txt", "type": "file", "mode": 0o644, "size": 4, "content": [good]},
        ],
    )
    out = tmp_path / "out"
    stats = restore_snapshot(repo, snap, out)
    assert stats.errors == [f"gone.txt: blob {lost[:16]} is missing from the repository"]
    assert (out / "kept.txt").read_bytes() == b"kept"
    assert not (out / "gone.txt").exists(), "not left as zeros"
    # Over an existing copy: the file that cannot be restored is never opened, so the
    # copy stays as it was (neither emptied nor removed), and it is still named.
    (out / "gone.txt").write_text("the copy already there")
    stats = restore_snapshot(repo, snap, out)
    assert stats.errors == [f"gone.txt: blob {lost[:16]} is missing from the repository"]
    assert (out / "gone.txt").read_text() == "the copy already there"


def _target_safety_source(tmp_path: Path) -> Path:
    """A file of one blob, an empty one, one of several blobs and a large one (written
    front to back): the restore paths that create a file."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_text("hello")
    (src / "empty").write_bytes(b"")
    (src / "mid.bin").write_bytes(os.urandom(3 << 20))
    (src / "big.bin").write_bytes(os.urandom(6 << 20))
    (src / "keep.txt").write_text("kept")
    return src


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_restore_never_writes_through_a_hard_link_to_a_file_outside_the_target(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    src = _target_safety_source(tmp_path)
    repo, _ = init_repo(make_store(backend, tmp_path, request), tmp_path)
    snap = backup_directory(repo, src).snapshot
    outside, out = tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    out.mkdir()
    for name in ("small.txt", "empty", "mid.bin", "big.bin"):
        victim = outside / name
        victim.write_text("OUTSIDE-SECRET")
        os.chmod(victim, 0o600)
        os.utime(victim, ns=(10**18, 10**18))
        os.link(victim, out / name)  # the target's file is another name of it
    assert restore_snapshot(repo, snap, out).errors == []
    assert describe_tree(out) == describe_tree(src)
    for victim in outside.iterdir():  # content, mode and times as they were
        st = victim.stat()
        assert victim.read_bytes() == b"OUTSIDE-SECRET", victim
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_nlink) == (0o600, 10**18, 1), victim


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_a_directory_in_the_way_fails_that_file_and_the_rest_restores(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    src = _target_safety_source(tmp_path)
    os.link(src / "keep.txt", src / "link.txt")
    repo, _ = init_repo(make_store(backend, tmp_path, request), tmp_path)
    snap = backup_directory(repo, src).snapshot
    out = tmp_path / "out"
    in_the_way = ("small.txt", "empty", "mid.bin", "big.bin", "link.txt")
    for name in in_the_way:
        (out / name).mkdir(parents=True)
        (out / name / "inside").write_text("stays")
    stats = restore_snapshot(repo, snap, out)
    failed = sorted(e.split(":")[0] for e in stats.errors)
    assert failed == sorted(in_the_way), stats.errors
    assert all("directory is in the way" in e or "not linked" in e for e in stats.errors), stats.errors
    assert all((out / name / "inside").read_text() == "stays" for name in in_the_way)
    assert (out / "keep.txt").read_text() == "kept"


def test_fifos_in_the_way_are_replaced_not_opened(tmp_path: Path) -> None:
    src = _target_safety_source(tmp_path)
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = backup_directory(repo, src).snapshot
    out = tmp_path / "out"
    out.mkdir()
    for name in ("small.txt", "mid.bin", "big.bin"):
        os.mkfifo(out / name)  # opening one for writing would wait for a reader
    assert restore_snapshot(repo, snap, out).errors == []
    assert describe_tree(out) == describe_tree(src)


def test_a_recursive_listing_names_a_directory_it_cannot_read_and_goes_on(tmp_path: Path) -> None:
    # `dr mover ls -r -o json` prints as it walks: a damaged subdirectory's tree must
    # not cut the JSON short; it is named at the end (exit 3) and the rest listed.
    from dr.repo.listing import list_entries
    from dr.repo.tree import read_tree

    src = tmp_path / "src"
    for d in ("a", "b", "c"):
        (src / d).mkdir(parents=True)
        (src / d / "f.txt").write_text(d * 10)
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    [b] = [n for n in read_tree(repo, snap.tree or "") if n["name"] == "b"]
    loc = repo.index.get(bytes.fromhex(b["subtree"]))
    assert loc is not None
    path = tmp_path / "repo" / pack_name(loc.pack)
    raw = bytearray(path.read_bytes())
    raw[loc.entry.offset + 20] ^= 0xFF
    path.write_bytes(bytes(raw))
    errors: list[str] = []
    listed = [e.path for e in list_entries(open_with(store, key), snap, recursive=True, errors=errors)]
    assert listed == ["a", "a/f.txt", "b", "c", "c/f.txt"]
    [err] = errors
    assert err.startswith("b/: cannot read the directory's contents:") and "authentication failed" in err
    with pytest.raises(DrError):  # without a list for errors, it raises as before
        list(list_entries(open_with(store, key), snap, recursive=True))


_F = {"type": "file", "mode": 420, "uid": 0, "gid": 0, "mtime": 1, "size": 0, "content": []}


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        ({**_F, "mode": "420"}, "invalid mode '420'"),
        ({**_F, "mode": -1}, "invalid mode -1"),
        ({**_F, "mode": 0o10000}, "invalid mode 4096"),
        ({**_F, "mode": True}, "invalid mode True"),
        ({**_F, "uid": 1 << 32}, "invalid uid"),
        ({**_F, "gid": "0"}, "invalid gid '0'"),
        ({**_F, "mtime": 1.5}, "invalid mtime 1.5"),
        ({**_F, "mtime": 10**30}, "invalid mtime"),
        ({**_F, "size": -1}, "invalid size -1"),
        ({**_F, "size": [5]}, "invalid size list"),
        ({**_F, "inode": -1}, "invalid inode -1"),
        ({**_F, "links": "2"}, "invalid links '2'"),
        ({**_F, "links": 2, "device": 1 << 64, "inode": 1}, "invalid device"),
        ({**_F, "links": 2, "device": 1}, "has a device but no inode"),
        ({**_F, "sparse": "yes"}, "non-boolean sparse flag"),
        ({"type": "chardev", "mode": 420, "rdev": {}}, "invalid rdev dict"),
        ({"type": "symlink", "mode": 511, "target": "a\x00b"}, "invalid target"),
        ({"type": "symlink", "mode": 511, "target": "\ud800"}, "invalid target"),
        ({**_F, "name": "x\ud800"}, "not UTF-8 even with surrogateescape"),
    ],
)
def test_trees_with_fields_of_the_wrong_type_or_range_are_refused_by_name(
    tmp_path: Path, node: dict[str, Any], problem: str
) -> None:
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    snap = _malicious_snapshot(repo, [{"name": "x", **node}])
    with pytest.raises(FormatError, match=re.escape(problem)):
        restore_snapshot(repo, snap, tmp_path / "out")
    [err] = check(repo).errors
    assert err.startswith(f"snapshot {snap.short_id}: tree ") and problem in err, err


def test_a_file_chunk_identical_to_a_tree_restores_from_the_tree_blob(tmp_path: Path) -> None:
    # Blob ids hash the plaintext alone, and the saver stores an id once whatever its
    # type: a file whose bytes are exactly a tree's JSON gets that tree's id and lists
    # the tree blob as its content. The bytes behind that id are the file's bytes.
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    first = _two_files(tmp_path)
    snap = backup_directory(repo, first).snapshot
    tree_json = repo.read_blob(bytes.fromhex(snap.tree or ""))
    src = tmp_path / "src2"
    src.mkdir()
    (src / "tree.json").write_bytes(tree_json)
    second = backup_directory(repo, src).snapshot
    nodes = json.loads(repo.read_blob(bytes.fromhex(second.tree or "")))["nodes"]
    assert nodes[0]["content"] == [snap.tree]
    loc = repo.index.get(bytes.fromhex(snap.tree or ""))
    assert loc is not None and loc.entry.type == BlobType.TREE
    restore_snapshot(repo, second, tmp_path / "out")
    assert (tmp_path / "out" / "tree.json").read_bytes() == tree_json
    assert check(repo).errors == []


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"kind": "volume", "tree": "zz" * 32}, "tree"),
        (
            {"kind": "backup", "streams": {"resources": {"blobs": ["xy" * 32], "size": 1}}},
            "streams.resources.blobs[0]",
        ),
        ({"kind": "backup", "refs": ["not-an-id"]}, "refs[0]"),
    ],
)
def test_snapshot_ids_that_are_not_hex_are_named_by_check(
    tmp_path: Path, fields: dict[str, Any], where: str
) -> None:
    # These once reached bytes.fromhex in check, prune, verify and restore:
    # "ValueError: non-hexadecimal number", the CLI's path for bugs.
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    name = "cd" * 32
    repo.save_object(
        "snapshots", {"version": 1, "id": name, "time": "2026-01-01T00:00:00Z", **fields}, name=name
    )
    result = check(open_with(repo.store, key))
    assert result.errors == [f"snapshots/{name}: malformed: {where}: expected an id of 64 hex digits"]


def _never_read(monkeypatch: pytest.MonkeyPatch, repo: Repository, name: str) -> None:
    get = repo.store.get

    def guarded(n: str) -> bytes:
        assert n != name, f"{name} was read"
        return get(n)

    monkeypatch.setattr(repo.store, "get", guarded)


def test_an_oversized_snapshot_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A damaged or planted object claiming a gigabyte made every listing read it all
    # (1.3 GB RSS for 1 GiB of junk). Sparse: the test writes no gigabyte.
    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    good = backup_directory(repo, _two_files(tmp_path)).snapshot
    name = "ee" * 32
    with open(tmp_path / "repo" / "snapshots" / name, "wb") as f:
        f.truncate(1 << 30)
    fresh = open_with(repo.store, key)
    _never_read(monkeypatch, fresh, f"snapshots/{name}")
    problem = (
        f"snapshots/{name}: 1073741824 bytes, more than the 134217728 such an object may have (damaged?)"
    )
    with pytest.raises(FormatError) as e:
        list_snapshots(fresh)
    assert e.value.message == problem
    with pytest.raises(FormatError) as e:
        find_snapshot(fresh, name, kind="volume", what="volume snapshot")
    assert e.value.message == problem
    result = check(fresh)
    assert result.errors == [problem] and result.snapshots == 1
    assert find_snapshot(fresh, good.id, kind="volume", what="volume snapshot").id == good.id


def test_a_listing_with_a_damaged_snapshot_reads_each_snapshot_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Listings that pass over a damaged snapshot read every snapshot in parallel, gave up
    # at the damaged one, then read them all again one by one (N more round trips).
    from dr.repo.snapshots import readable_snapshots

    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    src = _two_files(tmp_path)
    good = [backup_directory(repo, src).snapshot for _ in range(3)]
    (tmp_path / "repo" / "snapshots" / ("dd" * 32)).write_bytes(b"not sealed")
    fresh = open_with(repo.store, key)
    reads: list[str] = []
    get, get_range = fresh.store.get, fresh.store.get_range
    monkeypatch.setattr(fresh.store, "get", lambda n: reads.append(n) or get(n))
    monkeypatch.setattr(fresh.store, "get_range", lambda n, o, k: reads.append(n) or get_range(n, o, k))
    snaps, bad = readable_snapshots(fresh)
    assert [s.id for s in snaps] == [s.id for s in good] and list(bad) == ["dd" * 32]
    assert sorted(reads) == sorted(f"snapshots/{n}" for n in [*(s.id for s in good), "dd" * 32])


def test_a_snapshot_by_full_id_is_one_read_and_a_large_one_still_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loading an object that no listing sized (a restore by full snapshot id) read it
    # after a stat: a round trip more than needed on S3 and GCS. Its start is read
    # first; only an object at least that long is stat-ed (and refused if too large).
    import dr.repo.repository as repository

    repo, key = init_repo(make_store("file", tmp_path, None), tmp_path)
    small = backup_directory(repo, _two_files(tmp_path)).snapshot
    calls: list[str] = []
    for op in ("stat", "get", "get_range"):

        def counted(*args: Any, _op: str = op, _fn: Any = getattr(repo.store, op)) -> Any:
            calls.append(_op)
            return _fn(*args)

        monkeypatch.setattr(repo.store, op, counted)
    fresh = open_with(repo.store, key)
    calls.clear()
    assert find_snapshot(fresh, small.id, kind="volume", what="volume snapshot").id == small.id
    assert calls == ["get_range"]
    # A snapshot longer than the first read (many refs) is stat-ed and read whole.
    monkeypatch.setattr(repository, "FIRST_READ", 64)
    fresh = open_with(repo.store, key)
    calls.clear()
    assert find_snapshot(fresh, small.id, kind="volume", what="volume snapshot") == small
    assert calls == ["get_range", "stat", "get"]


def test_an_oversized_lock_is_ignored_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dr.repo.locks import list_locks

    repo, _key = init_repo(make_store("file", tmp_path, None), tmp_path)
    (tmp_path / "repo" / "locks").mkdir(exist_ok=True)
    with open(tmp_path / "repo" / "locks" / ("ff" * 32), "wb") as f:
        f.truncate(1 << 30)
    _never_read(monkeypatch, repo, f"locks/{'ff' * 32}")
    assert list_locks(repo) == []


def test_an_object_too_large_to_read_back_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dr.repo.repository as repository

    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    monkeypatch.setitem(repository.MAX_OBJECT_SIZE, "snapshots", 1000)
    doc = Snapshot(kind="backup", refs=[os.urandom(32).hex() for _ in range(40)]).to_doc()
    with pytest.raises(
        RepositoryError, match=r"^snapshots/[0-9a-f]{64}: \d+ bytes, more than the 1000 an object"
    ):
        repo.save_object("snapshots", doc)
    assert repo.list_objects("snapshots") == []


def test_an_object_nested_too_deeply_is_a_format_error(tmp_path: Path) -> None:
    # Authentic (sealed with the repository's key) but nested past what json.loads
    # can parse: a FormatError naming the object, not a RecursionError.
    from dr.repo.format import object_aad

    repo, _key = init_repo(make_store("file", tmp_path, None), tmp_path)
    name = "ab" * 32
    _, sealed = repo.codec.encode(b"[" * 200_000 + b"]" * 200_000, object_aad("snapshots", name))
    repo.store.put(f"snapshots/{name}", sealed)
    with pytest.raises(FormatError) as e:
        repo.load_object("snapshots", name)
    assert e.value.message == f"snapshots/{name}: nested too deeply"
