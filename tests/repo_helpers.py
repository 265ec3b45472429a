"""Helpers for repository tests: stores on every backend, test trees, comparisons."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path
from typing import Any

from dr.config import GCSOptions, S3Options
from dr.config import Repository as RepositoryConfig
from dr.crypto.providers.local import LocalKeyProvider
from dr.repo.archiver import backup_directory
from dr.repo.format import pack_name
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot
from dr.storage.base import ObjectStore
from dr.storage.registry import open_store


def make_store(kind: str, tmp_path: Path, request: Any) -> ObjectStore:
    """A fresh, empty store of ``kind`` (file, s3 or gs) for one test."""
    if kind == "file":
        return open_store(f"file://{tmp_path}/repo")
    if kind == "s3":
        info = request.getfixturevalue("s3_env")
        bucket = request.getfixturevalue("s3_bucket")
        url = f"s3://{bucket}/repo"
        cfg = RepositoryConfig(
            name="t",
            url=url,
            s3=S3Options(endpoint=info["endpoint"], region="us-east-1", addressing_style="path"),
        )
        return open_store(url, cfg)
    if kind == "gs":
        info = request.getfixturevalue("gcs_env")
        bucket = request.getfixturevalue("gcs_bucket")
        url = f"gs://{bucket}/repo"
        return open_store(url, RepositoryConfig(name="t", url=url, gcs=GCSOptions(endpoint=info["endpoint"])))
    raise ValueError(kind)


def init_repo(store: ObjectStore, tmp_path: Path, **kw: Any) -> tuple[Repository, LocalKeyProvider]:
    key = LocalKeyProvider(tmp_path / "keys" / "repo.key", create=True)
    return Repository.init(store, key, **kw), key


def open_with(store: ObjectStore, key: LocalKeyProvider) -> Repository:
    return Repository.open(store, lambda uri: key if uri == key.uri else None)


def write_tree(root: Path, seed: int = 1, big: int = 9 << 20) -> None:
    """A directory with the kinds of entries a volume holds."""
    rng = random.Random(seed)
    (root / "d1" / "d2" / "empty-dir").mkdir(parents=True)
    (root / "d1" / "random.bin").write_bytes(rng.randbytes(300_000))
    (root / "d1" / "text.log").write_text("".join(f"line {i} {rng.random()}\n" for i in range(20_000)))
    # larger than the maximum chunk size: spans several chunks and packs' worth
    (root / "d1" / "d2" / "big.bin").write_bytes(
        rng.randbytes(big // 2) + bytes(big // 4) + rng.randbytes(big // 4)
    )
    (root / "empty").write_bytes(b"")
    (root / "unicode-ñame-✓.txt").write_text("héllo")
    os.symlink("d1/text.log", root / "link-to-log")
    os.symlink("/etc/passwd", root / "abs-link")
    os.link(root / "d1" / "random.bin", root / "hardlink.bin")
    os.mkfifo(root / "fifo")
    # a sparse file: 8 MiB with 4 KiB of data in the middle
    with open(root / "sparse.img", "wb") as f:
        f.truncate(8 << 20)
        f.seek(4 << 20)
        f.write(rng.randbytes(4096))
    # a name that is not valid UTF-8
    nonutf = os.fsencode(str(root)) + b"/bad-\xff-name"
    with open(nonutf, "wb") as f:
        f.write(b"bytes")
    os.chmod(root / "d1" / "random.bin", 0o640)
    os.chmod(root / "d1" / "d2", 0o750)
    os.chmod(root / "empty", 0o4755)
    for p in (root / "d1" / "text.log", root / "empty"):
        os.utime(p, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    if os.geteuid() == 0:
        os.chown(root / "d1" / "text.log", 1234, 5678)
    os.utime(root / "d1", ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))


def describe_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything restore must keep: type, mode, owner, mtime, size, content, link target."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(str(root))):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, os.fsencode(str(root)))
            st = os.lstat(full)
            content: Any = None
            if stat.S_ISREG(st.st_mode):
                content = Path(os.fsdecode(full)).read_bytes()
                if st.st_nlink > 1:
                    content = ("hardlink-group", inodes.setdefault(st.st_ino, os.fsdecode(rel)), content)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(full)
            mtime = st.st_mtime_ns if not stat.S_ISLNK(st.st_mode) else None
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else None
            out[os.fsdecode(rel)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                     mtime, size, content)  # fmt: skip
    return out


def backed_up_then_damaged(
    tmp_path: Path, files: dict[str, str], damaged: str
) -> tuple[Repository, Snapshot]:
    """Back up top-level ``files`` (``name: text``, or ``"=other"`` for a hard link) into a
    file store, then flip a byte inside the one blob of ``damaged`` and nothing else.
    -> (the repository opened afresh, the snapshot)."""
    src = tmp_path / "src"
    src.mkdir()
    for name, text in files.items():
        if text.startswith("="):
            os.link(src / text[1:], src / name)
        else:
            (src / name).write_text(text)
    store = make_store("file", tmp_path, None)
    repo, key = init_repo(store, tmp_path)
    snap = backup_directory(repo, src).snapshot
    tree = json.loads(repo.read_blob(bytes.fromhex(snap.tree or "")))
    [blob] = next(n for n in tree["nodes"] if n["name"] == damaged)["content"]
    loc = repo.index.get(bytes.fromhex(blob))
    assert loc is not None
    path = tmp_path / "repo" / pack_name(loc.pack)
    raw = bytearray(path.read_bytes())
    raw[loc.entry.offset + 20] ^= 0xFF
    path.write_bytes(bytes(raw))
    return open_with(store, key), snap
