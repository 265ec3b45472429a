"""What a snapshot needs: the blobs reachable from its trees and streams.

Shared by check (is everything there?), prune (what may go?) and restore
planning of volume data. Trees are read once each even when many snapshots
share them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot
from dr.repo.tree import decode_tree


@dataclass
class Reachable:
    trees: set[bytes] = field(default_factory=set)
    data: set[bytes] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    @property
    def blobs(self) -> set[bytes]:
        return self.trees | self.data


def collect(
    repo: Repository,
    snapshots: Iterable[Snapshot],
    *,
    on_error: Callable[[str], None] | None = None,
) -> Reachable:
    """Walk every tree and stream of ``snapshots``; missing or damaged trees become errors."""
    out = Reachable()
    index = repo.index

    def err(msg: str) -> None:
        out.errors.append(msg)
        if on_error:
            on_error(msg)

    def walk(tree_hex: str, where: str) -> None:
        tid = bytes.fromhex(tree_hex)
        if tid in out.trees:
            return
        out.trees.add(tid)
        if tid not in index:
            err(f"{where.rstrip(':')}: tree {tree_hex[:16]} is missing from the index")
            return
        try:
            nodes = decode_tree(repo.read_blob(tid), f"tree {tree_hex[:16]}")
        except Exception as e:
            err(f"{where.rstrip(':')}: {getattr(e, 'message', e)}")
            return
        for n in nodes:
            path = f"{where}/{n['name']}"
            if n["type"] == "dir":
                walk(n["subtree"], path)
            elif n["type"] == "file":
                for c in n.get("content", []):
                    bid = bytes.fromhex(c)
                    if bid not in out.data:
                        out.data.add(bid)
                        if bid not in index:
                            err(f"{path}: blob {c[:16]} is missing from the index")

    for snap in snapshots:
        if snap.tree:
            walk(snap.tree, f"snapshot {snap.short_id}:")
        for name, stream in snap.streams.items():
            for b in stream.blobs:
                bid = bytes.fromhex(b)
                out.data.add(bid)
                if bid not in index:
                    err(f"snapshot {snap.short_id} stream {name}: blob {b[:16]} is missing from the index")
    return out
