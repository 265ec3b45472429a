"""Byte-level encodings of FORMAT.md: blob sealing, config header, pack header, index files.

Pure functions of bytes and keys; no storage access. Section numbers refer to
FORMAT.md, which this module implements.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import zstandard

from dr.crypto.aead import AuthenticationFailed, Sealer
from dr.errors import DrError

FORMAT_VERSION = 1
CONFIG_MAGIC = b"DRREPO\x00\x00"
INDEX_MAGIC = b"DRIX"
INDEX_VERSION = 1

ID_SIZE = 32
PACK_ENTRY = struct.Struct("<BBII32s")  # type, flag, sealed length, plaintext length, id (§5.3)
INDEX_PACK = struct.Struct("<32sI")  # pack id, blob count (§7)
INDEX_ENTRY = struct.Struct("<BBIII32s")  # type, flag, offset, sealed length, plaintext length, id

FLAG_RAW = 0
FLAG_ZSTD = 1


class BlobType(IntEnum):
    DATA = 0
    TREE = 1


class FormatError(DrError):
    """An object is malformed, tampered with, or of an unknown version."""


class UnsupportedVersion(FormatError):
    pass


# --------------------------------------------------------------------------- §5.2 blob encoding


def blob_aad(blob_type: BlobType, blob_id: bytes) -> bytes:
    return b"dr:blob:" + bytes([blob_type]) + blob_id


def object_aad(kind: str, name: str) -> bytes:
    """Associated data of a named JSON object (snapshot, index, lock, report)."""
    return f"dr:{kind}:{name}".encode()


@dataclass
class Codec:
    """Compression + sealing with one master key. Thread-safe."""

    sealer: Sealer
    level: int = 3

    def __post_init__(self) -> None:
        # zstd contexts are not thread-safe: one per thread via a small pool.
        import threading

        self._local = threading.local()

    def _cctx(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "cctx", None)
        if c is None:
            c = self._local.cctx = zstandard.ZstdCompressor(level=self.level, write_content_size=True)
        return c

    def _dctx(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "dctx", None)
        if d is None:
            d = self._local.dctx = zstandard.ZstdDecompressor()
        return d

    def encode(
        self, plaintext: bytes | memoryview, aad: bytes, *, compress: bool = True
    ) -> tuple[int, bytes]:
        """-> (flag, sealed payload)."""
        flag, body = FLAG_RAW, plaintext
        if compress and len(plaintext) > 64:
            z = self._cctx().compress(plaintext)
            if len(z) < len(plaintext):
                flag, body = FLAG_ZSTD, z
        # One allocation for flag + body: the sealer copies its input anyway.
        payload = bytearray(1 + len(body))
        payload[0] = flag
        payload[1:] = body
        return flag, self.sealer.seal(payload, aad)

    def decode(self, sealed: bytes | memoryview, aad: bytes, *, what: str, max_size: int = 1 << 31) -> bytes:
        plain = self.decode_view(sealed, aad, what=what, max_size=max_size)
        return plain if isinstance(plain, bytes) else bytes(plain)

    def decode_view(
        self, sealed: bytes | memoryview, aad: bytes, *, what: str, max_size: int = 1 << 31
    ) -> bytes | memoryview:
        """Like ``decode``, but an uncompressed payload comes back as a view of the
        decrypted buffer instead of a copy (restore writes it straight to disk)."""
        try:
            payload = self.sealer.open(sealed, aad)
        except AuthenticationFailed:
            raise FormatError(
                f"{what}: authentication failed (corrupted, truncated or tampered with)"
            ) from None
        flag, body = payload[0], memoryview(payload)[1:]
        if flag == FLAG_RAW:
            return body
        if flag == FLAG_ZSTD:
            try:
                return self._dctx().decompress(body, max_output_size=max_size)
            except zstandard.ZstdError as e:
                raise FormatError(f"{what}: bad compressed data: {e}") from None
        raise FormatError(f"{what}: unknown compression flag {flag}")


# --------------------------------------------------------------------------- §4 config header


def config_header(version: int = FORMAT_VERSION) -> bytes:
    return CONFIG_MAGIC + struct.pack("<I", version)


def split_config(raw: bytes, supported: int = FORMAT_VERSION) -> tuple[bytes, bytes]:
    """-> (header, sealed). Refuses unknown magic and newer versions before any key is tried."""
    if len(raw) < 12 or raw[:8] != CONFIG_MAGIC:
        raise FormatError("config: not a dr repository (bad magic)")
    (version,) = struct.unpack_from("<I", raw, 8)
    if version > supported:
        raise UnsupportedVersion(
            f"repository format version {version} is newer than this dr supports (max {supported}); upgrade dr"
        )
    if version < 1:
        raise FormatError(f"config: invalid format version {version}")
    return raw[:12], raw[12:]


def config_aad(header: bytes) -> bytes:
    return b"dr:config:" + header


# --------------------------------------------------------------------------- §5.3 packs


@dataclass(frozen=True, slots=True)
class PackEntry:
    type: BlobType
    flag: int
    offset: int
    length: int  # sealed length
    raw_length: int  # plaintext length
    id: bytes


PACK_HEADER_AAD = b"dr:packheader"


def encode_pack_header(codec: Codec, entries: list[PackEntry]) -> bytes:
    plain = b"".join(PACK_ENTRY.pack(e.type, e.flag, e.length, e.raw_length, e.id) for e in entries)
    sealed = codec.sealer.seal(plain, PACK_HEADER_AAD)
    return sealed + struct.pack("<I", len(sealed))


def decode_pack_header(codec: Codec, tail: bytes, pack_size: int, what: str) -> list[PackEntry]:
    """Decode from the last bytes of a pack (``tail`` must contain the whole header + length)."""
    if len(tail) < 4:
        raise FormatError(f"{what}: too short for a pack")
    (hlen,) = struct.unpack_from("<I", tail, len(tail) - 4)
    if hlen + 4 > len(tail) or hlen + 4 > pack_size:
        raise FormatError(f"{what}: header length {hlen} out of range")
    sealed = tail[len(tail) - 4 - hlen : len(tail) - 4]
    try:
        plain = codec.sealer.open(sealed, PACK_HEADER_AAD)
    except AuthenticationFailed:
        raise FormatError(f"{what}: pack header authentication failed") from None
    if len(plain) % PACK_ENTRY.size:
        raise FormatError(f"{what}: pack header has a partial entry")
    entries, offset = [], 0
    for t, flag, length, raw_length, bid in PACK_ENTRY.iter_unpack(plain):
        entries.append(PackEntry(BlobType(t), flag, offset, length, raw_length, bid))
        offset += length
    if offset + hlen + 4 != pack_size:
        raise FormatError(f"{what}: blob lengths do not add up to the pack size")
    return entries


# --------------------------------------------------------------------------- §7 index files


def encode_index(packs: dict[bytes, list[PackEntry]]) -> bytes:
    out = bytearray(INDEX_MAGIC + struct.pack("<II", INDEX_VERSION, len(packs)))
    for pack_id, entries in packs.items():
        out += INDEX_PACK.pack(pack_id, len(entries))
        for e in entries:
            out += INDEX_ENTRY.pack(e.type, e.flag, e.offset, e.length, e.raw_length, e.id)
    return bytes(out)


def decode_index(plain: bytes, what: str) -> Iterator[tuple[bytes, list[PackEntry]]]:
    if plain[:4] != INDEX_MAGIC or len(plain) < 12:
        raise FormatError(f"{what}: not an index file")
    version, npacks = struct.unpack_from("<II", plain, 4)
    if version != INDEX_VERSION:
        raise UnsupportedVersion(f"{what}: index version {version} is not supported (max {INDEX_VERSION})")
    pos = 12
    try:
        for _ in range(npacks):
            pack_id, n = INDEX_PACK.unpack_from(plain, pos)
            pos += INDEX_PACK.size
            entries = [
                PackEntry(BlobType(t), flag, off, length, raw, bid)
                for t, flag, off, length, raw, bid in INDEX_ENTRY.iter_unpack(
                    plain[pos : pos + n * INDEX_ENTRY.size]
                )
            ]
            if len(entries) != n:
                raise FormatError(f"{what}: truncated")
            pos += n * INDEX_ENTRY.size
            yield pack_id, entries
    except struct.error:
        raise FormatError(f"{what}: truncated") from None
    if pos != len(plain):
        raise FormatError(f"{what}: trailing bytes")


def pack_name(pack_id: bytes) -> str:
    h = pack_id.hex()
    return f"data/{h[:2]}/{h}"
