"""A reader of dr repositories written from FORMAT.md alone, to prove the document suffices.

It imports nothing from ``dr``: only the standard library and the primitives FORMAT.md names
(AES-256-GCM from ``cryptography``, ``blake3``, ``zstandard``). It opens a ``file://``
repository with a ``local://`` key file, reads the config, key slots, index files, volume
snapshots, trees and packs, authenticates every object and recomputes every blob id, and
rebuilds a snapshot's files. Section numbers in comments point into FORMAT.md. Anything the
document promises to reject raises :class:`SpecError` naming the object.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"DRREPO\0\0"
FORMAT_VERSION = 1
NONCE = 12
TAG = 16
ENTRY = 42  # pack header entry, §5.3
INDEX_ENTRY = 46  # index blob entry, §7
TYPES = {0: "data", 1: "tree"}
NODE_TYPES = {"file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket"}
KEY_FILE_MAX = 4096
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# §6: an mtime is nanoseconds since the epoch, from 0001-01-02 to 9999-12-31 (00:00 UTC).
MTIME_MIN = int((datetime(1, 1, 2, tzinfo=UTC) - EPOCH).total_seconds()) * 10**9
MTIME_MAX = int((datetime(9999, 12, 31, tzinfo=UTC) - EPOCH).total_seconds()) * 10**9
SPARSE_BLOCK = 64 << 10  # §6: restore leaves all-zero 64 KiB blocks of a chunk as holes


class SpecError(Exception):
    """An object FORMAT.md says a reader must reject."""


# --------------------------------------------------------------------------- §2 primitives


def open_sealed(key: bytes, sealed: bytes, ad: bytes, what: str) -> bytes:
    """§2 AEAD: ``nonce(12) ‖ ciphertext ‖ tag(16)``."""
    if len(sealed) < NONCE + TAG:
        raise SpecError(f"{what}: {len(sealed)} bytes is shorter than a sealed object")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE], sealed[NONCE:], ad)
    except InvalidTag:
        raise SpecError(f"{what}: authentication failed") from None


def open_payload(key: bytes, sealed: bytes, ad: bytes, what: str) -> bytes:
    """§5.2 blob encoding: a sealed ``flag(u8) ‖ body``, flag 1 meaning a zstd frame."""
    payload = open_sealed(key, sealed, ad, what)
    if not payload:
        raise SpecError(f"{what}: empty payload")
    flag, body = payload[0], payload[1:]
    if flag == 0:
        return body
    if flag == 1:
        try:
            return zstandard.ZstdDecompressor().decompressobj().decompress(body)
        except zstandard.ZstdError as e:
            raise SpecError(f"{what}: bad zstd frame: {e}") from None
    raise SpecError(f"{what}: unknown compression flag {flag}")


def keyed_hash(key: bytes, data: bytes) -> bytes:
    return blake3.blake3(data, key=key).digest()


# --------------------------------------------------------------------------- §3 keys


def read_local_key(path: Path) -> bytes:
    """§3.2: one line of base64 of 32 bytes; a regular file, no group/other permission, ≤ 4 KiB."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"{path}: not a regular file")
    if st.st_mode & 0o077:
        raise SpecError(f"{path}: readable by group or others (mode {stat.S_IMODE(st.st_mode):o})")
    if st.st_size > KEY_FILE_MAX:
        raise SpecError(f"{path}: {st.st_size} bytes, more than a key file holds")
    key = base64.b64decode(path.read_bytes().strip(), validate=True)
    if len(key) != 32:
        raise SpecError(f"{path}: key of {len(key)} bytes, not 32")
    return key


def slot_context(repository_id: str) -> bytes:
    """§3.1: the canonical bytes of ``{"dr-repository": id}`` a local key file binds as AD."""
    doc = json.dumps(
        {"dr-repository": repository_id}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return b"dr-keyslot-context-v1\n" + doc.encode("ascii")


def parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise SpecError(f"{what}: not an RFC 3339 time")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(f"{what}: not an RFC 3339 time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # §3.1: no offset reads as UTC


@dataclass(frozen=True)
class Slot:
    name: str
    repository: str
    provider: str
    created: datetime
    wrapped: bytes


def parse_slot(name: str, raw: bytes) -> Slot:
    what = f"keys/{name}"
    try:
        doc = json.loads(raw)
    except ValueError:
        raise SpecError(f"{what}: not JSON") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{what}: not a JSON object")
    for field in ("repository", "provider", "created", "wrapped"):
        if not isinstance(doc.get(field), str):
            raise SpecError(f"{what}: field {field} missing or not a string")
    if doc.get("format") != 1:
        raise SpecError(f"{what}: unknown slot format {doc.get('format')!r}")
    try:
        wrapped = base64.b64decode(doc["wrapped"], validate=True)
    except ValueError:
        raise SpecError(f"{what}: wrapped is not base64") from None
    return Slot(
        name, doc["repository"], doc["provider"], parse_time(doc["created"], f"{what} created"), wrapped
    )


# --------------------------------------------------------------------------- §5, §7 index


@dataclass(frozen=True)
class Location:
    pack: bytes
    type: int
    flag: int
    offset: int
    sealed_length: int
    plain_length: int


def parse_index(plain: bytes, what: str) -> list[tuple[bytes, Location]]:
    """§7: ``"DRIX" ‖ version ‖ pack-count``, then per pack its id and blobs."""
    if len(plain) < 12 or plain[:4] != b"DRIX":
        raise SpecError(f"{what}: no DRIX magic")
    version, packs = struct.unpack_from("<II", plain, 4)
    if version != 1:
        raise SpecError(f"{what}: index version {version} unknown")
    pos, out = 12, []
    for _ in range(packs):
        if pos + 36 > len(plain):
            raise SpecError(f"{what}: truncated")
        pack = plain[pos : pos + 32]
        (count,) = struct.unpack_from("<I", plain, pos + 32)
        pos += 36
        for _ in range(count):
            if pos + INDEX_ENTRY > len(plain):
                raise SpecError(f"{what}: truncated")
            typ, flag, offset, sealed, length = struct.unpack_from("<BBIII", plain, pos)
            blob_id = plain[pos + 14 : pos + 46]
            if typ not in TYPES:
                raise SpecError(f"{what}: blob {blob_id.hex()} of unknown type {typ}")
            out.append((blob_id, Location(pack, typ, flag, offset, sealed, length)))
            pos += INDEX_ENTRY
    if pos != len(plain):
        raise SpecError(f"{what}: {len(plain) - pos} bytes after the last pack")
    return out


# --------------------------------------------------------------------------- §6 trees


def check_uint(node: dict[str, Any], field: str, top: int, what: str) -> None:
    if field not in node:  # §6: every integer field is optional
        return
    value = node[field]
    if type(value) is not int or not 0 <= value <= top:  # booleans are not integers here
        raise SpecError(f"{what}: field {field} out of range: {value!r}")


def name_bytes(name: str, what: str) -> bytes:
    """§6: names (and targets) are stored with ``surrogateescape`` for bytes that are not UTF-8."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise SpecError(f"{what}: does not encode with UTF-8 surrogateescape") from None


def check_node(node: Any, what: str) -> None:
    if not isinstance(node, dict):
        raise SpecError(f"{what}: node is not an object")
    name = node.get("name")
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise SpecError(f"{what}: invalid name {name!r}")
    what = f"{what} node {name!r}"
    name_bytes(name, what)
    if node.get("type") not in NODE_TYPES:
        raise SpecError(f"{what}: field type unknown: {node.get('type')!r}")
    check_uint(node, "mode", 0o7777, what)
    check_uint(node, "uid", 2**32 - 1, what)
    check_uint(node, "gid", 2**32 - 1, what)
    mtime = node.get("mtime", 0)
    if type(mtime) is not int or not MTIME_MIN <= mtime <= MTIME_MAX:
        raise SpecError(f"{what}: field mtime out of range: {mtime!r}")
    for field in ("inode", "device", "links", "rdev"):
        check_uint(node, field, 2**64 - 1, what)
    if "device" in node and "inode" not in node:
        raise SpecError(f"{what}: device without inode")
    kind = node["type"]
    if kind == "file":
        check_uint(node, "size", 2**63 - 1, what)
        content = node.get("content", [])
        if not isinstance(content, list) or not all(is_id(c) for c in content):
            raise SpecError(f"{what}: field content is not a list of ids")
        if not isinstance(node.get("sparse", False), bool):
            raise SpecError(f"{what}: field sparse is not a boolean")
    elif kind == "dir":
        if not is_id(node.get("subtree")):
            raise SpecError(f"{what}: field subtree is not an id")
    elif kind == "symlink":
        target = node.get("target")
        if not isinstance(target, str) or "\0" in target:
            raise SpecError(f"{what}: field target invalid")
        name_bytes(target, f"{what} target")
    elif kind in ("chardev", "blockdev"):
        check_uint(node, "rdev", 2**64 - 1, what)


def is_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def parse_tree(plain: bytes, what: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(plain)
    except ValueError:
        raise SpecError(f"{what}: not JSON") from None
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, list):
        raise SpecError(f"{what}: no nodes list")
    seen: set[str] = set()
    for node in nodes:  # §6: writers sort the nodes, readers do not rely on it
        check_node(node, what)
        if node["name"] in seen:
            raise SpecError(f"{what}: duplicate name {node['name']!r}")
        seen.add(node["name"])
    return nodes


# --------------------------------------------------------------------------- the repository


class SpecRepository:
    """A ``file://`` repository opened with a ``local://`` key file."""

    def __init__(self, root: Path, key_file: Path) -> None:
        self.root = root
        raw = (root / "config").read_bytes()
        # §4: magic and version before any key is tried.
        if raw[:8] != MAGIC:
            raise SpecError("config: bad magic")
        (version,) = struct.unpack_from("<I", raw, 8)
        if version > FORMAT_VERSION:
            raise SpecError(
                f"repository format version {version} is newer than this dr supports (max {FORMAT_VERSION})"
            )
        config_ad = b"dr:config:" + raw[:12]
        local = read_local_key(key_file)
        failures: list[str] = []
        slots = []
        for path in sorted((root / "keys").iterdir()):
            try:
                slots.append(parse_slot(path.name, path.read_bytes()))
            except SpecError as e:
                failures.append(str(e))
        slots.sort(key=lambda s: s.created)
        self.config: dict[str, Any] | None = None
        for slot in slots:
            if slot.provider != f"local://{key_file}":
                continue
            try:
                master = open_sealed(local, slot.wrapped, slot_context(slot.repository), f"keys/{slot.name}")
                if len(master) != 64:
                    raise SpecError(f"keys/{slot.name}: master key of {len(master)} bytes")
                config = json.loads(open_payload(master[:32], raw[12:], config_ad, "config"))
            except SpecError as e:
                failures.append(str(e))
                continue
            if config.get("id") != slot.repository:
                failures.append(
                    f"keys/{slot.name}: slot of repository {slot.repository}, not {config.get('id')}"
                )
                continue
            self.config, self.k_enc, self.k_id = config, master[:32], master[32:]
            break
        if self.config is None:
            raise SpecError("no key slot opens the repository: " + "; ".join(failures))
        if self.config.get("version") != version:
            raise SpecError("config: version differs from the header's")
        self.index = self._load_index()

    # §7
    def _load_index(self) -> dict[bytes, list[Location]]:
        index: dict[bytes, list[Location]] = {}
        for path in sorted((self.root / "index").iterdir()):
            what = f"index/{path.name}"
            plain = open_payload(self.k_enc, path.read_bytes(), b"dr:index:" + path.name.encode(), what)
            for blob_id, loc in parse_index(plain, what):
                index.setdefault(blob_id, []).append(loc)
        return index

    def pack_path(self, pack: bytes) -> Path:
        return self.root / "data" / pack.hex()[:2] / pack.hex()

    def read_blob(self, blob_id: bytes) -> bytes:
        """§5.2: open the blob at its indexed place, check its length and its id."""
        locations = self.index.get(blob_id)
        if not locations:
            raise SpecError(f"blob {blob_id.hex()}: not in the index")
        loc = locations[0]  # any copy may be used
        with open(self.pack_path(loc.pack), "rb") as f:
            f.seek(loc.offset)
            sealed = f.read(loc.sealed_length)
        what = f"blob {blob_id.hex()} in pack {loc.pack.hex()}"
        plain = open_payload(self.k_enc, sealed, b"dr:blob:" + bytes([loc.type]) + blob_id, what)
        if len(plain) != loc.plain_length:
            raise SpecError(f"{what}: {len(plain)} bytes, the index says {loc.plain_length}")
        if keyed_hash(self.k_id, plain) != blob_id:
            raise SpecError(f"{what}: plaintext does not hash to its id")
        return plain

    # §5.3
    def check_pack(self, pack: bytes) -> list[tuple[bytes, Location]]:
        """Verify a whole pack: its name, its header, every blob in it; -> its blobs as the header says."""
        raw = self.pack_path(pack).read_bytes()
        what = f"pack {pack.hex()}"
        if blake3.blake3(raw).digest() != pack:
            raise SpecError(f"{what}: content does not hash to its name")
        (header_length,) = struct.unpack_from("<I", raw, len(raw) - 4)
        header_start = len(raw) - 4 - header_length
        entries = open_sealed(self.k_enc, raw[header_start:-4], b"dr:packheader", f"{what} header")
        if len(entries) % ENTRY:
            raise SpecError(f"{what}: header of {len(entries)} bytes is not whole entries")
        blobs, offset = [], 0
        for pos in range(0, len(entries), ENTRY):
            typ, flag, sealed, length = struct.unpack_from("<BBII", entries, pos)
            blob_id = entries[pos + 10 : pos + ENTRY]
            loc = Location(pack, typ, flag, offset, sealed, length)
            plain = open_payload(
                self.k_enc,
                raw[offset : offset + sealed],
                b"dr:blob:" + bytes([typ]) + blob_id,
                f"{what} blob",
            )
            if len(plain) != length or keyed_hash(self.k_id, plain) != blob_id:
                raise SpecError(f"{what}: blob {blob_id.hex()} does not match its header entry")
            blobs.append((blob_id, loc))
            offset += sealed
        if offset != header_start:
            raise SpecError(f"{what}: blobs end at {offset}, the header starts at {header_start}")
        return blobs

    def check(self) -> None:
        """Every indexed pack verifies whole and agrees with every index entry that names it."""
        packs: dict[bytes, set[tuple[bytes, Location]]] = {}
        for blob_id, locations in self.index.items():
            for loc in locations:
                packs.setdefault(loc.pack, set()).add((blob_id, loc))
        for pack, indexed in packs.items():
            # Each index entry is the header's entry of its blob, at the offset the lengths give.
            if not indexed <= set(self.check_pack(pack)):
                raise SpecError(f"pack {pack.hex()}: the index disagrees with the pack header")

    # §8
    def snapshots(self) -> dict[str, dict[str, Any]]:
        out = {}
        for path in sorted((self.root / "snapshots").iterdir()):
            what = f"snapshots/{path.name}"
            doc = json.loads(
                open_payload(self.k_enc, path.read_bytes(), b"dr:snapshots:" + path.name.encode(), what)
            )
            if doc.get("version") != 1:
                raise SpecError(f"{what}: snapshot version {doc.get('version')!r} unknown")
            if doc.get("id") != path.name:
                raise SpecError(f"{what}: id {doc.get('id')!r} is not the object's name")
            if doc.get("kind") == "volume":
                if not is_id(doc.get("tree")):
                    raise SpecError(f"{what}: field tree is not an id")
                if doc.get("parent") is not None and not is_id(doc["parent"]):
                    raise SpecError(f"{what}: field parent is not an id")
                if "root" in doc:
                    if not isinstance(doc["root"], dict):
                        raise SpecError(f"{what}: field root is not an object")
                    check_node(
                        {"name": "root", "type": "dir", **doc["root"]} | {"subtree": doc["tree"]}, what
                    )
            out[path.name] = doc
        return out

    def tree(self, tree_id: str) -> list[dict[str, Any]]:
        return parse_tree(self.read_blob(bytes.fromhex(tree_id)), f"tree {tree_id}")

    # §6, §12 restore
    def restore(self, snapshot: dict[str, Any], target: Path) -> None:
        """Rebuild a volume snapshot's tree under ``target`` (an existing or new directory)."""
        target.mkdir(parents=True, exist_ok=True)
        links: dict[tuple[int, int], bytes] = {}
        dirs: list[tuple[bytes, dict[str, Any]]] = []
        self._restore_dir(snapshot["tree"], os.fsencode(target), links, dirs)
        if "root" in snapshot:
            dirs.append((os.fsencode(target), snapshot["root"]))
        for path, meta in reversed(dirs):  # directories' metadata last, deepest first
            set_metadata(path, meta)

    def _restore_dir(
        self,
        tree_id: str,
        path: bytes,
        links: dict[tuple[int, int], bytes],
        dirs: list[tuple[bytes, dict[str, Any]]],
    ) -> None:
        for node in self.tree(tree_id):
            full = os.path.join(path, name_bytes(node["name"], "name"))
            kind = node["type"]
            if kind == "dir":
                os.mkdir(full, 0o700)
                dirs.append((full, node))
                self._restore_dir(node["subtree"], full, links, dirs)
                continue
            if kind == "file":
                linked = node.get("links", 1) > 1 and "device" in node
                key = (node["device"], node["inode"]) if linked else None
                if key is not None and key in links:
                    os.link(links[key], full)
                    continue
                self._write_file(node, full)
                if key is not None:
                    links[key] = full
            elif kind == "symlink":
                os.symlink(name_bytes(node["target"], "target"), full)
            elif kind == "fifo":
                os.mkfifo(full)
            elif kind in ("chardev", "blockdev"):
                os.mknod(
                    full, (stat.S_IFCHR if kind == "chardev" else stat.S_IFBLK) | 0o600, node.get("rdev", 0)
                )
            else:
                continue  # a socket cannot be recreated from a tree
            set_metadata(full, node)

    def _write_file(self, node: dict[str, Any], path: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            offset = 0
            for blob in node.get("content", []):
                data = self.read_blob(bytes.fromhex(blob))
                for start in range(0, len(data), SPARSE_BLOCK):
                    block = data[start : start + SPARSE_BLOCK]
                    if not node.get("sparse") or block.count(0) != len(block):
                        os.pwrite(fd, block, offset + start)
                offset += len(data)
            # §6: the content's length wins over a recorded size that differs from it.
            os.ftruncate(fd, offset)
        finally:
            os.close(fd)


def set_metadata(path: bytes, node: dict[str, Any]) -> None:
    """Owner, permission bits and mtime of a restored entry (a symlink's own, never its target's)."""
    if os.geteuid() == 0:
        os.chown(path, node.get("uid", -1), node.get("gid", -1), follow_symlinks=False)
    if node.get("type") != "symlink":
        os.chmod(path, node.get("mode", 0o644))
    mtime = node.get("mtime", 0)
    os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
