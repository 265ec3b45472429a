"""Tree blobs (FORMAT.md §6): one directory's nodes, encoded as JSON, validated on read.

Nodes are plain dicts (a tree can hold 100,000 entries; building models for
each would dominate small-file backups). ``check_tree`` enforces the rules
that keep restore inside its target: single, unique, non-special names.
"""

from __future__ import annotations

import json
import posixpath
import stat
from typing import TYPE_CHECKING, Any

from dr.errors import InvalidInput
from dr.repo.format import FormatError, is_hex_id

if TYPE_CHECKING:
    from dr.repo.repository import Repository

Node = dict[str, Any]

# Node type names (FORMAT.md §6) and the file-type bits of st_mode they stand for.
TYPE_BITS = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "chardev": stat.S_IFCHR,
    "blockdev": stat.S_IFBLK,
    "socket": stat.S_IFSOCK,
}
NODE_TYPES = frozenset(TYPE_BITS)
_TYPE_NAMES = {bits: name for name, bits in TYPE_BITS.items()}


def node_type(mode: int) -> str | None:
    """The node type of an ``st_mode`` (None for a kind the format does not know)."""
    return _TYPE_NAMES.get(stat.S_IFMT(mode))


def encode_tree(nodes: list[Node]) -> bytes:
    nodes.sort(key=lambda n: n["name"].encode("utf-8", "surrogateescape"))
    # ensure_ascii keeps undecodable names (lone surrogates) representable in JSON.
    return json.dumps({"nodes": nodes}, separators=(",", ":"), ensure_ascii=True).encode()


def decode_tree(raw: bytes, what: str) -> list[Node]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise FormatError(f"{what}: not JSON") from None
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, list):
        raise FormatError(f"{what}: no node list")
    check_tree(nodes, what)
    return nodes


def read_tree(repo: Repository, tree_id: str, what: str = "tree", *, keep: bool = True) -> list[Node]:
    """The validated nodes of tree blob ``tree_id`` (hex); ``keep=False`` for a walk
    that reads each tree once (``TreeReader.read``)."""
    return decode_tree(repo.read_blob(bytes.fromhex(tree_id), keep=keep), f"{what} {tree_id[:16]}")


def snapshot_path(path: str, what: str) -> str:
    """A path a user gives inside a snapshot (``--path``, ``mover ls``) as ``/``-separated
    names relative to its root: ``""`` for the root itself. ``..`` as a component that
    leaves the snapshot is refused (a name that merely starts with ``..`` is fine)."""
    q = posixpath.normpath(path).strip("/")
    if q == ".." or q.startswith("../"):
        raise InvalidInput(f"{what}: give a path inside the snapshot")
    return "" if q == "." else q


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\x00" in name:
        raise FormatError(f"{what}: invalid file name {name!r}")
    if not _encodable(name):
        raise FormatError(f"{what}: invalid file name {name!r} (not UTF-8 even with surrogateescape)")
    return name


def _encodable(text: str) -> bool:
    # Names and targets become bytes with surrogateescape (FORMAT.md §6); a lone
    # surrogate outside U+DC80..U+DCFF has no byte form and would fail at restore.
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
# mtime: nanoseconds that ``datetime`` can show (years 1..9999, a day inside each end),
# wider than a signed 64-bit count, which stops in 2262 while ext4 goes to 2446.
_MTIME = (-62135510400 * 10**9, 253402214400 * 10**9)
# Integer node fields (FORMAT.md §6): each optional, but in range when present.
# A volume snapshot's ``root`` (§8) holds mode, uid, gid and mtime in these ranges too.
INT_FIELDS: dict[str, tuple[int, int]] = {
    "mode": (0, 0o7777),
    "uid": (0, _U32),
    "gid": (0, _U32),
    "mtime": _MTIME,
    "size": (0, (1 << 63) - 1),
    "inode": (0, _U64),
    "device": (0, _U64),
    "links": (0, _U64),
    "rdev": (0, _U64),
}


def _check_fields(n: dict[str, Any], name: str, what: str) -> None:
    """Field types and ranges, so that restore, ``ls`` and ``check`` never meet a string
    for a mode or a size past what the OS takes (each was a traceback)."""
    for key, (lo, hi) in INT_FIELDS.items():
        if key in n:
            v = n[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                shown = repr(v) if isinstance(v, int | float | str | None) else type(v).__name__
                raise FormatError(f"{what}: {name!r} has an invalid {key} {shown[:40]}")
    if "sparse" in n and not isinstance(n["sparse"], bool):
        raise FormatError(f"{what}: {name!r} has a non-boolean sparse flag")
    if "device" in n and "inode" not in n:
        raise FormatError(f"{what}: {name!r} has a device but no inode")


def check_tree(nodes: list[Any], what: str) -> None:
    seen: set[str] = set()
    for n in nodes:
        if not isinstance(n, dict):
            raise FormatError(f"{what}: node is not an object")
        name = check_name(n.get("name"), what)
        if name in seen:
            raise FormatError(f"{what}: duplicate name {name!r}")
        seen.add(name)
        t = n.get("type")
        if t not in NODE_TYPES:
            raise FormatError(f"{what}: {name!r} has unknown type {t!r}")
        _check_fields(n, name, what)
        if t == "file":
            content = n.get("content", [])
            if not isinstance(content, list) or not all(is_hex_id(c) for c in content):
                raise FormatError(f"{what}: {name!r} has an invalid content list")
        elif t == "dir":
            sub = n.get("subtree")
            if not is_hex_id(sub):
                raise FormatError(f"{what}: directory {name!r} has no valid subtree")
        elif t == "symlink":
            target = n.get("target")
            if not isinstance(target, str):
                raise FormatError(f"{what}: symlink {name!r} has no target")
            if "\x00" in target or not _encodable(target):
                raise FormatError(f"{what}: symlink {name!r} has an invalid target {target[:40]!r}")
