"""FORMAT.md suffices to read a repository: ``tests.format_spec_reader`` (written from the
document alone, importing nothing from ``dr``) rebuilds what ``dr mover restore`` rebuilds
from repositories the real CLI wrote, and rejects what the document says it must reject."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest

from dr.repo.format import BlobType
from dr.repo.restorer import restore_snapshot
from dr.repo.snapshots import Snapshot, save_snapshot
from tests.format_spec_reader import SpecError, SpecRepository
from tests.helpers import run_dr
from tests.repo_helpers import describe_tree, init_repo, make_store

Capsys = pytest.CaptureFixture[str]
MiB = 1 << 20
NON_UTF8 = b"caf\xe9-latin1.txt"


@dataclass
class Backups:
    repo: Path
    key: Path
    src: Path
    first: str
    second: str


def write_source(src: Path) -> None:
    """A tree with every kind of entry FORMAT.md §6 describes that a test can make."""
    rng = random.Random(7)
    (src / "a" / "b" / "c").mkdir(parents=True)
    (src / "a" / "b" / "c" / "deep.txt").write_text("deep\n")
    # several chunks each (1 MiB average): incompressible, and compressible
    (src / "a" / "random.bin").write_bytes(rng.randbytes(3 * MiB))
    (src / "text.log").write_text("".join(f"line {i} {rng.randrange(10**6)}\n" for i in range(250_000)))
    (src / "empty").write_bytes(b"")
    (src / "a" / "b" / "also-empty").write_bytes(b"")
    os.symlink("a/random.bin", src / "link")
    os.symlink("/nowhere/at/all", src / "a" / "dangling")
    (src / "hard-1").write_bytes(rng.randbytes(70_000))
    os.link(src / "hard-1", src / "a" / "hard-2")
    with open(src / "sparse.img", "wb") as f:  # 6 MiB, 8 KiB of data in the middle
        f.truncate(6 * MiB)
        f.seek(3 * MiB)
        f.write(rng.randbytes(8192))
    with open(os.path.join(os.fsencode(src), NON_UTF8), "wb") as f:
        f.write(b"latin-1 name\n")
    os.mkfifo(src / "a" / "fifo")
    os.chmod(src / "a" / "random.bin", 0o640)
    os.chmod(src / "a" / "b", 0o750)
    os.chmod(src / "empty", 0o4755)
    if os.geteuid() == 0:
        os.chown(src / "text.log", 1234, 5678)
    os.utime(src / "text.log", ns=(1_600_000_000_123_456_789,) * 2)
    os.utime(src / "link", ns=(1_500_000_000_000_000_001,) * 2, follow_symlinks=False)
    os.utime(src / "a", ns=(1_400_000_000_000_000_000,) * 2)
    os.chmod(src, 0o711)
    os.utime(src, ns=(1_300_000_000_000_000_000,) * 2)


def change_source(src: Path) -> None:
    """What the incremental backup sees: a grown file, a new one, one gone, a new mode."""
    with open(src / "text.log", "a") as f:
        f.write("one more line\n")
    (src / "a" / "b" / "new.bin").write_bytes(random.Random(8).randbytes(200_000))
    (src / "a" / "b" / "c" / "deep.txt").unlink()
    os.chmod(src / "hard-1", 0o600)


def backup(capsys: Capsys, repo: str, src: Path, *args: str) -> str:
    r = run_dr(capsys, "--repo", repo, "mover", "backup", str(src), *args, "-o", "json")
    assert r.code == 0, r.err
    return str(json.loads(r.out)["id"])


@pytest.fixture
def backups(isolated_home: Path, capsys: Capsys) -> Backups:
    """A repository the real CLI made (local key), with a full and an incremental backup."""
    repo = isolated_home / "repo"
    url = f"file://{repo}"
    assert run_dr(capsys, "--repo", url, "repo", "init").code == 0
    src = isolated_home / "src"
    src.mkdir()
    write_source(src)
    first = backup(capsys, url, src)
    change_source(src)
    second = backup(capsys, url, src, "--parent", first)
    return Backups(repo, isolated_home / "config" / "dr" / "repo.key", src, first, second)


def describe(root: Path) -> dict[str, Any]:
    """Everything restore keeps (``describe_tree``), with symlinks' own mtimes and the root's metadata."""
    out: dict[str, Any] = dict(describe_tree(root))
    for rel in out:
        path = root / rel
        if path.is_symlink():
            out[rel] = (*out[rel], os.lstat(path).st_mtime_ns)
    st = os.stat(root)
    out["."] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
    return out


def restore_both(capsys: Capsys, b: Backups, snapshot: str, into: Path) -> tuple[Path, Path]:
    """-> (what ``dr mover restore`` made, what the spec reader made) of ``snapshot``."""
    by_dr, by_spec = into / "dr", into / "spec"
    r = run_dr(capsys, "--repo", f"file://{b.repo}", "mover", "restore", snapshot, str(by_dr))
    assert r.code == 0, r.err
    reader = SpecRepository(b.repo, b.key)
    reader.restore(reader.snapshots()[snapshot], by_spec)
    return by_dr, by_spec


def test_the_spec_reader_rebuilds_both_snapshots_as_dr_restores_them(
    backups: Backups, capsys: Capsys, tmp_path: Path
) -> None:
    reader = SpecRepository(backups.repo, backups.key)
    reader.check()  # every pack whole: its name, header, and every blob's tag and id
    snaps = reader.snapshots()
    assert snaps[backups.second]["parent"] == backups.first
    assert snaps[backups.first]["kind"] == snaps[backups.second]["kind"] == "volume"
    source = describe(backups.src)
    for snapshot, out in ((backups.first, tmp_path / "one"), (backups.second, tmp_path / "two")):
        by_dr, by_spec = restore_both(capsys, backups, snapshot, out)
        assert describe(by_spec) == describe(by_dr)
    # The incremental snapshot is the source as it is now, byte for byte.
    assert describe(by_spec) == source
    assert (by_spec / "a" / "hard-2").stat().st_ino == (by_spec / "hard-1").stat().st_ino
    assert os.path.exists(os.path.join(os.fsencode(by_spec), NON_UTF8))
    assert stat.S_ISFIFO(os.lstat(by_spec / "a" / "fifo").st_mode)
    for where in (by_spec, by_dr):  # the sparse file's zeros are holes in both
        st = os.stat(where / "sparse.img")
        assert st.st_blocks * 512 < 1 * MiB < st.st_size
    # The first restore has what the second backup no longer does.
    assert (tmp_path / "one" / "spec" / "a" / "b" / "c" / "deep.txt").read_text() == "deep\n"


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_in_a_pack_fails_the_blob_and_the_pack(backups: Backups, tmp_path: Path) -> None:
    reader = SpecRepository(backups.repo, backups.key)
    tree = reader.snapshots()[backups.first]["tree"]
    node = next(n for n in reader.tree(tree) if n["name"] == "text.log")
    blob = bytes.fromhex(node["content"][0])
    [loc] = reader.index[blob]
    flip(reader.pack_path(loc.pack), loc.offset + loc.sealed_length // 2)
    with pytest.raises(SpecError, match=f"blob {blob.hex()} .*authentication failed"):
        reader.read_blob(blob)
    with pytest.raises(SpecError, match="does not hash to its name"):
        reader.check()
    with pytest.raises(SpecError, match="authentication failed"):
        reader.restore(reader.snapshots()[backups.first], tmp_path / "out")


def test_a_flipped_byte_in_a_pack_header_fails_the_pack(backups: Backups) -> None:
    reader = SpecRepository(backups.repo, backups.key)
    pack = next(iter(reader.index.values()))[0].pack
    path = reader.pack_path(pack)
    flip(path, path.stat().st_size - 10)  # inside the sealed header's tag
    # Renamed to its new hash, so that only the header's own authentication can catch it.
    moved = reader.pack_path(blake3.blake3(path.read_bytes()).digest())
    moved.parent.mkdir(exist_ok=True)
    path.rename(moved)
    with pytest.raises(SpecError, match="header: authentication failed"):
        reader.check_pack(bytes.fromhex(moved.name))


def test_a_flipped_byte_in_an_index_file_fails_the_open(backups: Backups) -> None:
    index = sorted((backups.repo / "index").iterdir())[0]
    flip(index, 20)
    with pytest.raises(SpecError, match=f"index/{index.name}: authentication failed"):
        SpecRepository(backups.repo, backups.key)


@pytest.mark.parametrize("kind", ["snapshots", "index"])
def test_an_object_under_another_name_is_rejected(backups: Backups, kind: str) -> None:
    # FORMAT.md §1: objects are bound to their type and name.
    victim = sorted((backups.repo / kind).iterdir())[0]
    victim.rename(victim.with_name("0" * 64))
    with pytest.raises(SpecError, match=f"{kind}/{'0' * 64}: authentication failed"):
        SpecRepository(backups.repo, backups.key).snapshots()


def test_two_swapped_snapshots_are_both_rejected(backups: Backups) -> None:
    one, two = (backups.repo / "snapshots" / s for s in (backups.first, backups.second))
    a, b = one.read_bytes(), two.read_bytes()
    one.write_bytes(b)
    two.write_bytes(a)
    # Each alone in snapshots/ (the reader stops at the first it rejects): both are rejected.
    for kept, aside in ((one, two), (two, one)):
        moved = aside.rename(backups.repo / aside.name)
        with pytest.raises(SpecError, match=f"snapshots/{kept.name}: authentication"):
            SpecRepository(backups.repo, backups.key).snapshots()
        moved.rename(aside)


def test_an_index_moved_to_snapshots_is_rejected(backups: Backups) -> None:
    index = sorted((backups.repo / "index").iterdir())[0]
    shutil.copy(index, backups.repo / "snapshots" / index.name)
    with pytest.raises(SpecError, match=f"snapshots/{index.name}: authentication failed"):
        SpecRepository(backups.repo, backups.key).snapshots()


def test_a_blob_read_as_the_other_type_or_from_another_blobs_place_fails(backups: Backups) -> None:
    # §5.2: the blob's type and id are its associated data.
    reader = SpecRepository(backups.repo, backups.key)
    one, two = [b for b, locs in reader.index.items() if locs[0].type == 0][:2]
    place = reader.index[one][0]
    assert reader.read_blob(one)
    reader.index[one] = [dataclasses.replace(place, type=1)]
    with pytest.raises(SpecError, match=f"blob {one.hex()} .*authentication failed"):
        reader.read_blob(one)
    reader.index[two] = [place]  # a data blob, read where another data blob is stored
    with pytest.raises(SpecError, match=f"blob {two.hex()} .*authentication failed"):
        reader.read_blob(two)


def test_a_key_slot_copied_from_another_repository_does_not_open_it(
    backups: Backups, capsys: Capsys, isolated_home: Path
) -> None:
    # §3.1: the slot's wrap binds the repository id; the same key file wrapped both.
    other = isolated_home / "other"
    assert run_dr(capsys, "--repo", f"file://{other}", "repo", "init").code == 0
    [own] = (other / "keys").iterdir()
    other_id = json.loads(own.read_bytes())["repository"]
    own.unlink()
    [slot] = (backups.repo / "keys").iterdir()
    doc = json.loads(slot.read_bytes())
    assert doc["provider"] == f"local://{backups.key}" and doc["repository"] != other_id
    shutil.copy(slot, other / "keys" / slot.name)
    with pytest.raises(SpecError, match="no key slot opens the repository"):
        SpecRepository(other, backups.key)
    # Claiming the other repository's id in the copy fails the unwrap itself.
    doc["repository"] = other_id
    (other / "keys" / slot.name).write_text(json.dumps(doc))
    with pytest.raises(SpecError, match="no key slot opens the repository"):
        SpecRepository(other, backups.key)


def test_nodes_with_fields_left_out_restore_as_the_spec_says_and_as_dr_does(tmp_path: Path) -> None:
    # FORMAT.md §6: only name, type, subtree and target are required; a file restores to its
    # content's length whatever its size says; sockets are not restored; nodes need not be sorted.
    repo, _ = init_repo(make_store("file", tmp_path, None), tmp_path)
    with repo.saver() as saver:
        hello = saver.save(BlobType.DATA, b"hello, world").hex()
        empty_tree = saver.save(BlobType.TREE, b'{"nodes":[]}').hex()
        nodes = [
            {"name": "short-size", "type": "file", "size": 3, "content": [hello], "mtime": 10**18},
            {"name": "bare-file", "type": "file"},
            {"name": "bare-dir", "type": "dir", "subtree": empty_tree},
            {"name": "bare-link", "type": "symlink", "target": "short-size"},
            {"name": "socket", "type": "socket", "mode": 0o755},
            {"name": "a-fifo", "type": "fifo", "mode": 0o600, "uid": 0, "gid": 0, "mtime": 10**18},
        ]
        tree = saver.save(BlobType.TREE, json.dumps({"nodes": nodes}).encode()).hex()
        saver.flush()
    snap = save_snapshot(repo, Snapshot(kind="volume", tree=tree, paths=["/x"]))
    assert restore_snapshot(repo, snap, tmp_path / "dr").errors == []
    reader = SpecRepository(tmp_path / "repo", tmp_path / "keys" / "repo.key")
    reader.restore(reader.snapshots()[snap.id], tmp_path / "spec")
    # No root in the snapshot: each target directory keeps its own metadata (§8).
    out, by_dr = (describe(tmp_path / d) for d in ("spec", "dr"))
    del out["."], by_dr["."]
    assert out == by_dr
    assert out["short-size"][4:] == (10**18, 12, b"hello, world")
    assert out["bare-file"][1:] == (0o644, os.geteuid(), os.getegid(), 0, 0, b"")
    assert out["bare-dir"][:2] == (stat.S_IFDIR, 0o644)
    assert "socket" not in out
