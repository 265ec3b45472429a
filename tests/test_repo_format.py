"""Property tests of the byte formats (FORMAT.md): round trips and tamper detection."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.crypto.aead import OVERHEAD, Sealer
from dr.repo.chunker import ChunkerParams, FileChunker, StreamChunker
from dr.repo.format import (
    FLAG_ZSTD,
    PACK_HEADER_AAD,
    SCRATCH_KEPT,
    BlobType,
    Codec,
    FormatError,
    PackEntries,
    PackEntry,
    blob_aad,
    config_header,
    decode_index,
    decode_pack_header,
    encode_index,
    encode_pack_header,
    split_config,
)
from dr.repo.snapshots import (
    SNAPSHOT_VERSION,
    MalformedSnapshot,
    Snapshot,
    Stream,
    VolumeStats,
    decode_snapshot,
)
from dr.repo.tree import INT_FIELDS, TYPE_BITS, check_tree, decode_tree, encode_tree, node_type

CODEC = Codec(Sealer(os.urandom(32)), level=1)
ids = st.binary(min_size=32, max_size=32)
entries = st.builds(
    PackEntry,
    type=st.sampled_from(list(BlobType)),
    flag=st.sampled_from([0, 1]),
    offset=st.integers(0, 2**32 - 1),
    length=st.integers(0, 2**32 - 1),
    raw_length=st.integers(0, 2**32 - 1),
    id=ids,
)


@given(st.binary(max_size=5000), st.booleans(), ids)
def test_blob_roundtrip_and_binding(data: bytes, compress: bool, bid: bytes) -> None:
    aad = blob_aad(BlobType.DATA, bid)
    _, sealed = CODEC.encode(data, aad, compress=compress)
    assert CODEC.decode(sealed, aad, what="t") == data
    assert bytes(CODEC.decode_view(sealed, aad, what="t")) == data  # a view for raw payloads, same bytes
    assert type(CODEC.decode(sealed, aad, what="t")) is bytes
    with pytest.raises(FormatError, match="authentication failed"):
        CODEC.decode(sealed, blob_aad(BlobType.TREE, bid), what="t")
    tampered = bytearray(sealed)
    tampered[len(tampered) // 2] ^= 1
    with pytest.raises(
        FormatError, match=r"^t: authentication failed \(corrupted, truncated or tampered with\)$"
    ):
        CODEC.decode(bytes(tampered), aad, what="t")
    with pytest.raises(FormatError, match=r"^t: authentication failed"):
        CODEC.decode(sealed[:-1], aad, what="t")


@given(st.binary(max_size=5000), st.booleans(), ids, st.sampled_from([None, 0, 10, 6000]))
def test_decode_into_gives_what_decode_gives(
    data: bytes, compress: bool, bid: bytes, spare: int | None
) -> None:
    aad = blob_aad(BlobType.DATA, bid)
    _, sealed = CODEC.encode(data, aad, compress=compress)
    out = bytearray(b"\xaa" * (len(data) + 2))  # one byte lent before the blob, one after it
    room = None if spare is None else memoryview(bytearray(spare))  # too small: a buffer of its own
    CODEC.decode_into(sealed, aad, memoryview(out)[: len(data) + 1], what="t", spare=room)
    assert out[1:-1] == data and out[-1] == 0xAA  # nothing written past the blob
    for wrong in (blob_aad(BlobType.TREE, bid), aad + b"x"):
        with pytest.raises(FormatError, match="t: authentication failed"):
            CODEC.decode_into(sealed, wrong, memoryview(out)[: len(data) + 1], what="t")


@pytest.mark.parametrize("lent", [False, True])
def test_blobs_without_lent_room_take_scratch_one_at_a_time(lent: bool) -> None:
    # Scratch of its own (no room lent) is a mapping, one at a time: workers that met
    # large chunks together held one each, and a restore's peak RSS grew with that.
    codec = Codec(Sealer(os.urandom(32)))
    data = b"log line that compresses\n" * 40_000
    aad = blob_aad(BlobType.DATA, bytes(32))
    _, sealed = codec.encode(data, aad)
    active, most, lock = [0], [0], threading.Lock()
    open_into = codec._open_into

    def slow_open_into(*args: Any) -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.02)
        open_into(*args)
        with lock:
            active[0] -= 1

    codec._open_into = slow_open_into  # type: ignore[method-assign,assignment]
    start = threading.Barrier(4)
    outs = [bytearray(len(data) + 1) for _ in range(4)]

    def decode(out: bytearray) -> None:
        room = memoryview(bytearray(len(sealed))) if lent else None
        start.wait()
        codec.decode_into(sealed, aad, memoryview(out), what="t", spare=room)

    threads = [threading.Thread(target=decode, args=(out,)) for out in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(out[1:] == data for out in outs)
    assert most[0] == (4 if lent else 1)


def test_scratch_without_lent_room_is_made_once_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh 4 MiB mapping for each such blob cost 1,024 page faults every time.
    import dr.repo.format as fmt

    made: list[int] = []
    real = fmt.populated

    def counted(size: int) -> Any:
        made.append(size)
        return real(size)

    codec = Codec(Sealer(os.urandom(32)))
    aad = blob_aad(BlobType.DATA, bytes(32))
    blobs = [b"log line that compresses %d\n" % i * 40_000 for i in range(3)]
    # larger than the kept scratch once compressed (a chunker with a larger maximum)
    big = os.urandom(SCRATCH_KEPT) + bytes(1 << 20)
    # Sealed first: encoding makes the thread's staging buffer, not counted here.
    sealed_blobs = [(data, codec.encode(data, aad)[1]) for data in [*blobs, big, blobs[0]]]
    monkeypatch.setattr(fmt, "populated", counted)
    for data, sealed in sealed_blobs:
        out = bytearray(len(data) + 1)
        codec.decode_into(sealed, aad, memoryview(out), what="t")
        assert out[1:] == data
    assert made[0] == SCRATCH_KEPT and len(made) == 2 and made[1] > SCRATCH_KEPT
    kept = codec._scratch
    assert kept is not None and not kept.closed
    codec.close()
    assert kept.closed and codec._scratch is None
    sealed = sealed_blobs[1][1]
    codec.decode_into(sealed, aad, memoryview(bytearray(len(blobs[1]) + 1)), what="t")
    assert len(made) == 3 and made[2] == SCRATCH_KEPT  # made again after close


def test_decode_into_refuses_a_blob_of_another_length() -> None:
    aad = blob_aad(BlobType.DATA, bytes(32))
    for data in (os.urandom(1000), b"log line\n" * 100):  # stored raw, stored compressed
        _, sealed = CODEC.encode(data, aad)
        for size in (len(data) - 1, len(data) + 1):
            with pytest.raises(FormatError, match=r"^t: content does not match its id$"):
                CODEC.decode_into(sealed, aad, memoryview(bytearray(size + 1)), what="t")
    with pytest.raises(FormatError, match="authentication failed"):
        CODEC.decode_into(sealed[:20], aad, memoryview(bytearray(10)), what="t")  # shorter than nonce + tag


def sealed_payload(flag: int, body: bytes, aad: bytes) -> bytes:
    out = bytearray(len(body) + 1 + OVERHEAD)
    CODEC.seal_payload_into(memoryview(bytes([flag]) + body), aad, memoryview(out))
    return bytes(out)


def test_decode_into_names_bad_flags_and_bad_compressed_data() -> None:
    aad = blob_aad(BlobType.DATA, bytes(32))
    with pytest.raises(FormatError, match=r"^t: unknown compression flag 7$"):
        CODEC.decode_into(sealed_payload(7, b"abc", aad), aad, memoryview(bytearray(20)), what="t")
    with pytest.raises(FormatError, match=r"^t: bad compressed data"):
        CODEC.decode_into(
            sealed_payload(FLAG_ZSTD, b"not zstd", aad), aad, memoryview(bytearray(20)), what="t"
        )


def test_decode_into_takes_a_compressed_payload_as_long_as_the_blob() -> None:
    # dr keeps zstd only where it is smaller, so a payload of flag + blob length is a
    # raw one, decrypted in place; one written otherwise still decodes.
    aad = blob_aad(BlobType.DATA, bytes(32))
    data = next(d for d in (b"a" * k for k in range(1, 100)) if len(zstandard.compress(d)) == len(d))
    sealed = sealed_payload(FLAG_ZSTD, zstandard.compress(data), aad)
    out = bytearray(len(data) + 1)
    CODEC.decode_into(sealed, aad, memoryview(out), what="t")
    assert out[1:] == data


@given(st.lists(entries, max_size=50))
def test_index_roundtrip(items: list[PackEntry]) -> None:
    packs = {os.urandom(32): items, os.urandom(32): items[:3]}
    decoded = dict(decode_index(encode_index(packs), "t"))
    assert decoded == packs


@given(st.lists(entries, max_size=50), st.data())
def test_pack_entries_keep_every_field(items: list[PackEntry], data: st.DataObject) -> None:
    compact = PackEntries.of(items)
    assert len(compact) == len(items) and len(compact.raw) == 46 * len(items)
    assert list(compact) == items and compact == items
    assert list(compact.ids()) == [e.id for e in items]
    assert [compact.type_at(i) for i in range(len(items))] == [e.type for e in items]
    if items:
        i = data.draw(st.integers(-len(items), len(items) - 1))
        assert compact[i] == items[i]
    j, k = data.draw(st.integers(-60, 60)), data.draw(st.integers(-60, 60))
    assert compact[j:k] == items[j:k]
    for out in (len(items), -len(items) - 1):
        with pytest.raises(IndexError):
            compact[out]
    assert PackEntries.of(compact) is compact and PackEntries(compact.raw) == compact


def test_pack_entries_refuse_a_partial_record() -> None:
    with pytest.raises(ValueError):
        PackEntries(b"\0" * 45)


def test_index_rejects_an_unknown_blob_type() -> None:
    entry = PackEntry(BlobType.DATA, 0, 0, 10, 10, b"\x01" * 32)
    raw = bytearray(encode_index({b"\xaa" * 32: [entry]}))
    raw[12 + 36] = 7  # the entry's type: after the file header (12) and the pack's (36)
    with pytest.raises(FormatError, match="index/x: unknown blob type in the entries of pack aaaaaaaa"):
        list(decode_index(bytes(raw), "index/x"))


@given(st.binary(min_size=1, max_size=200))
def test_index_rejects_garbage(junk: bytes) -> None:
    with pytest.raises(FormatError, match=r"^t: "):  # named by the object it was read from
        list(decode_index(b"DRIX" + junk, "t"))


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20))
def test_pack_header_roundtrip(blobs: list[bytes]) -> None:
    body, ents, off = b"", [], 0
    for b in blobs:
        bid = os.urandom(32)
        _, sealed = CODEC.encode(b, blob_aad(BlobType.DATA, bid))
        ents.append(PackEntry(BlobType.DATA, 0, off, len(sealed), len(b), bid))
        body += sealed
        off += len(sealed)
    pack = body + encode_pack_header(CODEC, ents)
    got = decode_pack_header(CODEC, pack, len(pack), "t")
    assert [(e.id, e.offset, e.length) for e in got] == [(e.id, e.offset, e.length) for e in ents]
    with pytest.raises(FormatError, match=r"^t: "):
        decode_pack_header(CODEC, pack[:-1] + b"\xff", len(pack), "t")


def test_pack_header_rejects_an_unknown_blob_type() -> None:
    entry = b"\x07\x00" + (10).to_bytes(4, "little") * 2 + b"\x01" * 32  # type 7
    header = CODEC.sealer.seal(entry, PACK_HEADER_AAD)
    pack = b"x" * 10 + header + len(header).to_bytes(4, "little")
    with pytest.raises(FormatError, match=r"^data/ab: pack header entry 0 has an unknown blob type 7$"):
        decode_pack_header(CODEC, pack, len(pack), "data/ab")


names = st.text(min_size=1, max_size=30).filter(
    lambda n: n not in (".", "..") and "/" not in n and "\x00" not in n
)


@given(st.lists(names, unique=True, max_size=30))
def test_tree_roundtrip(ns: list[str]) -> None:
    nodes = [{"name": n, "type": "file", "mode": 0o644, "content": [os.urandom(32).hex()]} for n in ns]
    decoded = decode_tree(encode_tree(list(nodes)), "t")
    assert sorted(n["name"] for n in decoded) == sorted(ns)


file_nodes = st.fixed_dictionaries(
    {
        "type": st.just("file"),
        "mode": st.integers(0, 0o7777),
        "uid": st.integers(0, (1 << 32) - 1),
        "gid": st.integers(0, (1 << 32) - 1),
        # Past 2262 (a signed 64-bit count of nanoseconds ends there; ext4 does not).
        "mtime": st.integers(-(10**18), 15 * 10**18),
        "size": st.integers(0, (1 << 63) - 1),
        "inode": st.integers(0, (1 << 64) - 1),
        "links": st.integers(0, (1 << 64) - 1),
        "content": st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex), max_size=3),
    },
    optional={"sparse": st.booleans(), "device": st.integers(0, (1 << 64) - 1)},
)
other_nodes = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("symlink"), "target": st.text(min_size=1).filter(lambda t: "\x00" not in t)}
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["chardev", "blockdev"]), "rdev": st.integers(0, (1 << 64) - 1)}
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["fifo", "socket"]), "mode": st.integers(0, 0o7777)}),
)


@given(st.dictionaries(names, file_nodes | other_nodes, max_size=10))
def test_tree_roundtrip_keeps_every_valid_field(by_name: dict[str, dict[str, object]]) -> None:
    nodes = [{"name": n, **fields} for n, fields in by_name.items()]
    decoded = decode_tree(encode_tree([dict(n) for n in nodes]), "t")
    assert sorted(decoded, key=lambda n: str(n["name"])) == sorted(nodes, key=lambda n: str(n["name"]))


def test_tree_accepts_undecodable_names() -> None:
    bad = os.fsdecode(b"bad-\xff")
    nodes = decode_tree(encode_tree([{"name": bad, "type": "file", "content": []}]), "t")
    assert os.fsencode(nodes[0]["name"]) == b"bad-\xff"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\x00b", 7])
def test_tree_rejects_bad_names(name: object) -> None:
    with pytest.raises(FormatError, match=f"^t: invalid file name {re.escape(repr(name))}$"):
        check_tree([{"name": name, "type": "file", "content": []}], "t")


def test_config_header_versions() -> None:
    header, _ = split_config(config_header(1) + b"x" * 40)
    assert header == config_header(1)
    with pytest.raises(FormatError, match="bad magic"):
        split_config(b"NOTDR...." + b"x" * 40)


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=0, max_size=3 << 20), st.integers(1, 5))
def test_stream_chunker_matches_file_chunker(data: bytes, pieces: int) -> None:
    params = ChunkerParams(min_size=64 << 10, avg_size=256 << 10, max_size=1 << 20, seed=12345)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # writer child: a pipe delivers the data in arbitrary read sizes
        os.close(r)
        for i in range(0, len(data), 60000):
            os.write(w, data[i : i + 60000])
        os._exit(0)
    os.close(w)
    from_file = [bytes(c) for c in FileChunker(params).chunks_fd(r)]
    os.close(r)
    os.waitpid(pid, 0)
    sc = StreamChunker(params)
    step = max(1, len(data) // pieces)
    from_stream: list[bytes] = []
    for i in range(0, len(data), step):
        from_stream += sc.feed(data[i : i + step])
    from_stream += sc.finish()
    assert from_stream == from_file
    assert b"".join(from_file) == data
    assert all(len(c) <= params.max_size for c in from_file)


text = st.text(max_size=20)
hex_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
snapshots = st.builds(
    Snapshot,
    kind=st.sampled_from(["volume", "backup"]),
    id=st.text("0123456789abcdef", min_size=64, max_size=64),
    time=st.datetimes(timezones=st.just(UTC)),
    hostname=text,
    tags=st.dictionaries(text, text, max_size=3),
    paths=st.lists(text, max_size=3),
    tree=st.none() | hex_ids,
    parent=st.none() | hex_ids,
    stats=st.none() | st.builds(VolumeStats, files=st.integers(0, 2**40), new_bytes=st.integers(0, 2**40),
                                duration_seconds=st.floats(0, 1e6)),
    root=st.none() | st.fixed_dictionaries({}, optional={k: st.integers(*INT_FIELDS[k])
                                                          for k in ("mode", "uid", "gid", "mtime")}),
    name=st.none() | text,
    policy=st.none() | text,
    namespaces=st.lists(text, max_size=3),
    phase=st.none() | st.sampled_from(["Completed", "PartiallyFailed"]),
    streams=st.dictionaries(text, st.builds(Stream, blobs=st.lists(hex_ids, max_size=3), size=st.integers(0, 2**40)),
                            max_size=2),
    refs=st.lists(hex_ids, max_size=3),
    app=st.dictionaries(text, st.integers() | text, max_size=3),
)  # fmt: skip


@given(snapshots)
def test_snapshot_document_roundtrip(snap: Snapshot) -> None:
    doc = json.loads(json.dumps(snap.to_doc()))  # what the repository stores
    assert decode_snapshot(doc) == snap
    assert doc["time"].endswith("Z") and "statsFiles" not in doc
    assert all(v is not None for v in doc.values())  # null fields are left out


def test_snapshot_document_fields_are_camel_case_and_extra_fields_ignored() -> None:
    doc = {
        "version": SNAPSHOT_VERSION, "id": "ab" * 32, "kind": "volume", "time": "2026-05-01T10:00:00Z",
        "stats": {"files": 3, "newBytes": 10, "durationSeconds": 2}, "addedLater": {"x": 1},
    }  # fmt: skip
    snap = decode_snapshot(doc)
    assert snap.stats == VolumeStats(files=3, new_bytes=10, duration_seconds=2.0)
    assert snap.time == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert decode_snapshot({**doc, "time": "2026-05-01T10:00:00"}).time == snap.time  # no zone: UTC


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("kind", "pvc", "kind: expected one of volume, backup"),
        ("tags", {"a": 1}, "tags.a: expected a string"),
        ("paths", "/x", "paths: expected a list"),
        ("stats", {"files": "3"}, "stats.files: expected an integer"),
        ("stats", {"files": True}, "stats.files: expected an integer"),
        ("time", "yesterday", "time: expected an RFC 3339 time"),
        ("streams", {"r": {"blobs": [1]}}, "streams.r.blobs[0]: expected an id of 64 hex digits"),
        (
            "streams",
            {"r": {"blobs": ["ab" * 31 + "zz"]}},
            "streams.r.blobs[0]: expected an id of 64 hex digits",
        ),
        (
            "streams",
            {"r": {"blobs": ["ab" * 32 + "\n"]}},
            "streams.r.blobs[0]: expected an id of 64 hex digits",
        ),
        ("tree", "AB" * 32, "tree: expected an id of 64 hex digits"),
        ("parent", "../" + "ab" * 30 + "a", "parent: expected an id of 64 hex digits"),
        ("refs", ["ab" * 16], "refs[0]: expected an id of 64 hex digits"),
        ("app", [], "app: expected a mapping"),
        ("tree", 5, "tree: expected an id of 64 hex digits"),
        ("root", {"mode": "0755"}, "root.mode: expected an integer"),
        ("root", [], "root: expected a mapping"),
    ],
)
def test_malformed_snapshot_fields_are_named(field: str, value: object, where: str) -> None:
    doc = {"version": SNAPSHOT_VERSION, "id": "ab" * 32, "kind": "volume", field: value}
    with pytest.raises(MalformedSnapshot, match=re.escape(where)):
        decode_snapshot(doc)


def test_node_types_and_mode_bits_map_both_ways() -> None:
    for name, bits in TYPE_BITS.items():
        assert node_type(bits | 0o7755) == name
    assert node_type(0o644) is None  # no file-type bits: not a kind the format knows
