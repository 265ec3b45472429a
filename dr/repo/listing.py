"""What a volume snapshot holds: its entries under a path, for ``dr mover ls``.

Walks the snapshot's trees (FORMAT.md §6) lazily, one tree blob at a time,
so listing a volume of a million files holds one directory's nodes per level,
not the whole listing. Paths are relative to the snapshot root, ``/``
separated, as ``dr mover restore --path`` takes them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dr.errors import DrError, InvalidInput
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot
from dr.repo.tree import TYPE_BITS, Node, read_tree, snapshot_path


@dataclass(frozen=True)
class Entry:
    path: str
    node: Node

    @property
    def display_path(self) -> str:
        """The path as printable text: bytes that are not UTF-8 shown as ``\\xNN``."""
        return os.fsencode(self.path).decode("utf-8", "backslashreplace")

    @property
    def display_target(self) -> str:
        """A symlink's target as printable text, like ``display_path`` (a target is any bytes;
        as read it may hold lone surrogates, which no UTF-8 output can carry)."""
        return os.fsencode(str(self.node.get("target", ""))).decode("utf-8", "backslashreplace")

    @property
    def type(self) -> str:
        return str(self.node["type"])

    @property
    def permissions(self) -> str:
        """``ls -l`` style: ``-rw-r--r--``, ``drwxr-xr-x``, ``lrwxrwxrwx``."""
        return stat.filemode(TYPE_BITS[self.type] | int(self.node.get("mode", 0)))

    @property
    def mtime(self) -> datetime:
        return datetime.fromtimestamp(int(self.node.get("mtime", 0)) / 1e9, UTC)

    def to_doc(self) -> dict[str, Any]:
        n = self.node
        doc: dict[str, Any] = {
            "path": self.display_path,
            "type": self.type,
            "mode": int(n.get("mode", 0)),
            "permissions": self.permissions,
            "uid": int(n.get("uid", 0)),
            "gid": int(n.get("gid", 0)),
            "size": int(n.get("size", 0)),
            "mtime": self.mtime.isoformat().replace("+00:00", "Z"),
        }
        if self.type == "symlink":
            doc["target"] = self.display_target
        return doc


def list_entries(
    repo: Repository,
    snap: Snapshot,
    path: str | None = None,
    *,
    recursive: bool = False,
    errors: list[str] | None = None,
) -> Iterator[Entry]:
    """The entries under ``path`` (the snapshot root by default), in name order.

    A directory lists its children (with ``recursive``, every descendant,
    depth first); a file or any other entry lists itself. A path that is not
    in the snapshot is an ``InvalidInput`` naming it. With ``errors``, a
    subdirectory whose tree cannot be read is named there and the listing goes
    on (a listing printed as it goes stays whole); without, it raises.
    """
    if not snap.tree:
        raise DrError(f"snapshot {snap.short_id} has no file tree")
    rel = snapshot_path(path, repr(path)) if path is not None else ""
    parts = rel.split("/") if rel else []
    tree: str | None = snap.tree
    node: Node | None = None
    for i, name in enumerate(parts):
        if tree is None:
            where = "/".join(parts[:i])
            raise InvalidInput(f"not in snapshot {snap.short_id}: {rel} ({where} is not a directory)")
        node = next((n for n in read_tree(repo, tree) if n["name"] == name), None)
        if node is None:
            raise InvalidInput(f"not in snapshot {snap.short_id}: {rel}")
        tree = node.get("subtree") if node["type"] == "dir" else None
    if node is not None and tree is None:
        yield Entry(rel, node)
        return
    assert tree is not None
    yield from _walk(repo, tree, rel, recursive, errors, top=True)


def _walk(
    repo: Repository, tree: str, prefix: str, recursive: bool, errors: list[str] | None, *, top: bool = False
) -> Iterator[Entry]:
    try:
        nodes = read_tree(repo, tree)
    except DrError as e:
        if errors is None or top:
            raise
        errors.append(f"{prefix}/: cannot read the directory's contents: {e.message}")
        return
    for n in nodes:
        rel = f"{prefix}/{n['name']}" if prefix else str(n["name"])
        yield Entry(rel, n)
        if recursive and n["type"] == "dir" and n.get("subtree"):
            yield from _walk(repo, n["subtree"], rel, recursive, errors)
