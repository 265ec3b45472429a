"""Byte-level encodings of FORMAT.md: blob sealing, config header, pack header, index files.

Pure functions of bytes and keys; no storage access. Section numbers refer to
FORMAT.md, which this module implements.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeGuard, overload

import zstandard

from dr.crypto.aead import OVERHEAD, AuthenticationFailed, Sealer
from dr.errors import DrError
from dr.repo.compress_into import ZstdInto
from dr.storage.direct_io import populated

FORMAT_VERSION = 1
CONFIG_MAGIC = b"DRREPO\x00\x00"
INDEX_MAGIC = b"DRIX"
INDEX_VERSION = 1

ID_SIZE = 32
_HEX_DIGITS = frozenset("0123456789abcdef")


def is_hex_id(v: object) -> TypeGuard[str]:
    """Whether ``v`` is an id as JSON objects hold it: 64 lower-case hex digits."""
    return isinstance(v, str) and len(v) == 2 * ID_SIZE and _HEX_DIGITS.issuperset(v)


PACK_ENTRY = struct.Struct("<BBII32s")  # type, flag, sealed length, plaintext length, id (§5.3)
INDEX_PACK = struct.Struct("<32sI")  # pack id, blob count (§7)
INDEX_ENTRY = struct.Struct("<BBIII32s")  # type, flag, offset, sealed length, plaintext length, id

FLAG_RAW = 0
FLAG_ZSTD = 1

# Largest payload Codec.staged builds in its reused per-thread buffer: a data
# chunk (4 MiB at most) and its flag; larger ones (trees) get a buffer of their own.
STAGING_KEPT = (4 << 20) + 1
# A thread whose payloads are all at most this large stages them in a mapping of
# this size, its pages made resident only as written.
STAGING_SMALL = 64 << 10
# Largest payload Codec.decode_into decrypts in its kept scratch mapping: the same
# bound (a stored payload is smaller than its chunk and flag, or the chunk is stored raw).
SCRATCH_KEPT = STAGING_KEPT


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


def sealed_size(body_length: int) -> int:
    """Bytes of a sealed blob whose compressed (or raw) body has ``body_length`` bytes:
    nonce, flag, body, tag (§5.2)."""
    return 1 + body_length + OVERHEAD


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
        self._zstd = ZstdInto(self.level)
        # decode_into's scratch: one, used by one worker at a time, kept once made.
        self._scratch_lock = threading.Lock()
        self._scratch: mmap.mmap | None = None

    def _dctx(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "dctx", None)
        if d is None:
            d = self._local.dctx = zstandard.ZstdDecompressor()
        return d

    def encode(
        self, plaintext: bytes | memoryview, aad: bytes, *, compress: bool = True
    ) -> tuple[int, bytes]:
        """-> (flag, sealed payload)."""
        with self.staged(plaintext, compress=compress) as payload:
            sealed = bytearray(sealed_size(len(payload) - 1))
            with memoryview(sealed) as out:
                self.seal_payload_into(payload, aad, out)
            return payload[0], bytes(sealed)

    @contextlib.contextmanager
    def staged(self, plaintext: bytes | memoryview, *, compress: bool = True) -> Iterator[memoryview]:
        """The payload of ``plaintext`` (flag + body, zstd only where smaller: §5.2),
        lent for the with-block; ``len(payload) - 1`` is the body's length, which
        sizes the sealed blob (``sealed_size``) before it is sealed.

        The payload is built in a staging buffer per thread, reused (an mmap: only
        the pages written become resident), and AES-GCM seals it from there: zstd
        writes its frame straight into it (``ZstdInto``), a raw body is copied in
        once. A payload larger than a chunk (a big directory's tree) gets a buffer
        of its own, unmapped after."""
        n = len(plaintext)
        kept = n + 1 <= STAGING_KEPT
        staging = self._staging(n + 1) if kept else mmap.mmap(-1, n + 1)
        try:
            with memoryview(staging) as mv:
                # Room for n - 1 bytes of frame: one that does not fit is not smaller.
                size = 0
                if compress and n > 64:
                    with mv[1:n] as room:
                        size = self._zstd.compress_into(plaintext, room)
                if size:
                    mv[0] = FLAG_ZSTD
                else:
                    mv[0] = FLAG_RAW
                    mv[1 : n + 1] = plaintext
                    size = n
                with mv[: 1 + size] as payload:
                    yield payload
        finally:
            if not kept:
                staging.close()

    def seal_payload_into(self, payload: memoryview, aad: bytes, out: memoryview) -> None:
        """Seal a ``staged`` payload into ``out`` (``sealed_size(len(payload) - 1)``
        bytes) with a nonce of its own: backups seal each blob straight into its pack."""
        self.sealer.seal_into(payload, aad, out)

    def _staging(self, size: int) -> mmap.mmap:
        buf: mmap.mmap | None = getattr(self._local, "staging", None)
        if buf is None or len(buf) < size:
            if buf is not None:
                buf.close()
            # A thread staging chunks gets room for the largest at once, all of it
            # resident (``populated``): grown to the largest payload met so far, its
            # resident pages crept up with the largest chunk a backup happened to meet,
            # so a longer backup peaked higher (bench/RESULTS.md). Threads staging only
            # small payloads (trees, index files, locks) keep a small lazy mapping.
            big = size > STAGING_SMALL
            buf = self._local.staging = populated(STAGING_KEPT) if big else mmap.mmap(-1, STAGING_SMALL)
        return buf

    def decode_into(
        self,
        sealed: bytes | memoryview,
        aad: bytes,
        out: memoryview,
        *,
        what: str,
        spare: memoryview | None = None,
    ) -> None:
        """Decode a payload whose plaintext is ``len(out) - 1`` bytes into ``out[1:]``;
        ``out[0]`` is overwritten (the flag's place), so the caller lends that byte.

        Restore decodes each blob straight into the file's staging buffer: a blob
        stored raw is decrypted in place (its payload is the flag and the blob),
        a compressed one is decrypted into ``spare`` (memory the caller does not
        need, if it is large enough; else a mapping of its own) and decompressed
        into place. No blob-sized object is zero-filled or copied again."""
        n = len(sealed) - OVERHEAD
        if n == len(out):  # as long as flag + blob: stored raw (zstd is kept only where smaller)
            self._open_into(sealed, aad, out, what)
            if out[0] == FLAG_RAW:
                return
            with memoryview(bytes(out)) as payload:  # never written by dr, but valid
                self._unpack_into(payload, out, what)
            return
        if n < 1:
            raise FormatError(f"{what}: authentication failed (corrupted, truncated or tampered with)")
        if spare is not None and len(spare) >= n:
            with spare[:n] as payload:
                self._open_into(sealed, aad, payload, what)
                self._unpack_into(payload, out, what)
            return
        # No room lent (a large chunk that compressed little): decrypted into a scratch
        # mapping of ``SCRATCH_KEPT`` bytes, made the first time and kept (its payload fits if
        # the blob is a chunk of at most 4 MiB, as the chunker makes); a larger one
        # gets a mapping of its own, given back to the system when closed. Not from
        # the heap (a bytearray): dr keeps the heap untrimmed (dr.malloc_tuning), so
        # the largest of these stayed with the process and a restore's RSS grew with
        # the largest chunks it happened to meet (4 GiB set: +1.6 MB over 1 GiB from
        # this alone, 92 such blobs against 16). One worker at a time: workers that
        # met such chunks together held one each, and the peak grew with how many
        # coincided. Kept, not made for each blob: a fresh 4 MiB mapping is 1,024
        # page faults, and the profile of a restore from S3 found 2% of its samples
        # there.
        with self._scratch_lock:
            if n <= SCRATCH_KEPT:
                if self._scratch is None:
                    self._scratch = populated(SCRATCH_KEPT)  # resident at once: decrypts fill it
                scratch, own = self._scratch, False
            else:
                scratch, own = populated(n), True
            try:
                with memoryview(scratch)[:n] as payload:
                    self._open_into(sealed, aad, payload, what)
                    self._unpack_into(payload, out, what)
            finally:
                if own:
                    scratch.close()

    def close(self) -> None:
        """Give back decode_into's scratch mapping (made again if needed)."""
        with self._scratch_lock:
            if self._scratch is not None:
                self._scratch.close()
                self._scratch = None

    def _unpack_into(self, payload: memoryview, out: memoryview, what: str) -> None:
        """A decrypted payload (flag + body) into ``out[1:]``: only a compressed one gets here."""
        flag = payload[0]
        if flag == FLAG_ZSTD:
            with payload[1:] as body, out[1:] as dest:
                self._decompress_into(body, dest, what)
        elif flag == FLAG_RAW:
            raise FormatError(f"{what}: content does not match its id")
        else:
            raise FormatError(f"{what}: unknown compression flag {flag}")

    def _open_into(self, sealed: bytes | memoryview, aad: bytes, out: memoryview, what: str) -> None:
        try:
            self.sealer.open_into(sealed, aad, out)
        except AuthenticationFailed:
            raise FormatError(
                f"{what}: authentication failed (corrupted, truncated or tampered with)"
            ) from None

    def _decompress_into(self, body: memoryview, dest: memoryview, what: str) -> None:
        """Decompress ``body`` into ``dest``, which it must fill exactly. zstd decodes
        a whole frame straight into a buffer that can hold it (its size is in the
        frame header), so this is as fast as ``decompress`` without the copy."""
        try:
            with self._dctx().stream_reader(body) as reader:
                got = 0
                while got < len(dest):
                    k = reader.readinto(dest[got:])
                    if not k:
                        break
                    got += k
                extra = reader.read(1)
        except zstandard.ZstdError as e:
            raise FormatError(f"{what}: bad compressed data: {e}") from None
        if got != len(dest) or extra:
            raise FormatError(f"{what}: content does not match its id")

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
_BLOB_TYPE_VALUES = frozenset(int(t) for t in BlobType)


def encode_pack_header(codec: Codec, entries: list[PackEntry]) -> bytes:
    plain = b"".join(PACK_ENTRY.pack(e.type, e.flag, e.length, e.raw_length, e.id) for e in entries)
    sealed = codec.sealer.seal(plain, PACK_HEADER_AAD)
    return sealed + struct.pack("<I", len(sealed))


def pack_size(entries: Iterable[PackEntry]) -> int:
    """The exact size of a pack holding ``entries`` (all of its blobs, §5.3): the sealed
    blobs, the sealed header (42 bytes an entry) and its u32 length."""
    n = total = 0
    for e in entries:
        n, total = n + 1, total + e.length
    return total + PACK_ENTRY.size * n + OVERHEAD + 4


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
    for i, (t, flag, length, raw_length, bid) in enumerate(PACK_ENTRY.iter_unpack(plain)):
        if t not in _BLOB_TYPE_VALUES:  # BlobType(t) would raise ValueError, a traceback
            raise FormatError(f"{what}: pack header entry {i} has an unknown blob type {t}")
        entries.append(PackEntry(BlobType(t), flag, offset, length, raw_length, bid))
        offset += length
    if offset + hlen + 4 != pack_size:
        raise FormatError(f"{what}: blob lengths do not add up to the pack size")
    return entries


# --------------------------------------------------------------------------- §7 index files


# BlobType by value, faster than calling the enum (decode_index checks the values).
_BLOB_TYPES = tuple(sorted(BlobType))


class PackEntries(Sequence[PackEntry]):
    """A pack's entries as the index file stores them: ``INDEX_ENTRY`` records,
    46 bytes each, one ``bytes`` object per pack. ``PackEntry`` objects are made
    on access.

    The index holds an entry for every blob of the repository; as
    objects (a ``PackEntry`` and its three ints) each took ~270 bytes, as a
    record 46. A repository of 1 TiB in 1 MiB chunks has a million blobs.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) % INDEX_ENTRY.size:
            raise ValueError("not a whole number of index entries")
        self.raw = raw

    @classmethod
    def of(cls, entries: Iterable[PackEntry]) -> PackEntries:
        if isinstance(entries, PackEntries):
            return entries
        return cls(
            b"".join(
                INDEX_ENTRY.pack(e.type, e.flag, e.offset, e.length, e.raw_length, e.id) for e in entries
            )
        )

    def __len__(self) -> int:
        return len(self.raw) // INDEX_ENTRY.size

    @overload
    def __getitem__(self, i: int) -> PackEntry: ...

    @overload
    def __getitem__(self, i: slice) -> list[PackEntry]: ...

    def __getitem__(self, i: int | slice) -> PackEntry | list[PackEntry]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("pack entry index out of range")
        return self.entry(i)

    def __iter__(self) -> Iterator[PackEntry]:
        types = _BLOB_TYPES
        for t, flag, off, length, raw, bid in INDEX_ENTRY.iter_unpack(self.raw):
            yield PackEntry(types[t], flag, off, length, raw, bid)

    def entry(self, i: int) -> PackEntry:
        """Entry ``i`` (0 <= i < len), without ``__getitem__``'s checks: the index's lookups."""
        t, flag, off, length, raw, bid = INDEX_ENTRY.unpack_from(self.raw, i * INDEX_ENTRY.size)
        return PackEntry(_BLOB_TYPES[t], flag, off, length, raw, bid)

    def ids(self) -> Iterator[bytes]:
        """The blob ids, in entry order (without making the entries)."""
        size, at = INDEX_ENTRY.size, INDEX_ENTRY.size - ID_SIZE
        raw = self.raw
        return (raw[i + at : i + size] for i in range(0, len(raw), size))

    def type_at(self, i: int) -> BlobType:
        return _BLOB_TYPES[self.raw[i * INDEX_ENTRY.size]]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackEntries):
            return self.raw == other.raw
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PackEntries({list(self)!r})"


def encode_index(packs: Mapping[bytes, Sequence[PackEntry]]) -> bytes:
    out = bytearray(INDEX_MAGIC + struct.pack("<II", INDEX_VERSION, len(packs)))
    for pack_id, entries in packs.items():
        out += INDEX_PACK.pack(pack_id, len(entries))
        out += PackEntries.of(entries).raw
    return bytes(out)


def decode_index(plain: bytes, what: str) -> Iterator[tuple[bytes, PackEntries]]:
    if plain[:4] != INDEX_MAGIC or len(plain) < 12:
        raise FormatError(f"{what}: not an index file")
    version, npacks = struct.unpack_from("<II", plain, 4)
    if version != INDEX_VERSION:
        raise UnsupportedVersion(f"{what}: index version {version} is not supported (max {INDEX_VERSION})")
    pos = 12
    types = {int(t) for t in BlobType}
    try:
        for _ in range(npacks):
            pack_id, n = INDEX_PACK.unpack_from(plain, pos)
            pos += INDEX_PACK.size
            raw = plain[pos : pos + n * INDEX_ENTRY.size]
            if len(raw) != n * INDEX_ENTRY.size:
                raise FormatError(f"{what}: truncated")
            # Checked here, so that reading an entry later cannot fail.
            if any(raw[i] not in types for i in range(0, len(raw), INDEX_ENTRY.size)):
                raise FormatError(f"{what}: unknown blob type in the entries of pack {pack_id.hex()[:16]}")
            pos += n * INDEX_ENTRY.size
            yield pack_id, PackEntries(raw)
    except struct.error:
        raise FormatError(f"{what}: truncated") from None
    if pos != len(plain):
        raise FormatError(f"{what}: trailing bytes")


def pack_name(pack_id: bytes) -> str:
    h = pack_id.hex()
    return f"data/{h[:2]}/{h}"
