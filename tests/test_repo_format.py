"""Property tests of the byte formats (FORMAT.md): round trips and tamper detection."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.crypto.aead import Sealer
from dr.repo.chunker import ChunkerParams, FileChunker, StreamChunker
from dr.repo.format import (
    BlobType,
    Codec,
    FormatError,
    PackEntry,
    blob_aad,
    config_header,
    decode_index,
    decode_pack_header,
    encode_index,
    encode_pack_header,
    split_config,
)
from dr.repo.tree import check_tree, decode_tree, encode_tree

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
    with pytest.raises(FormatError):
        CODEC.decode(bytes(tampered), aad, what="t")
    with pytest.raises(FormatError):
        CODEC.decode(sealed[:-1], aad, what="t")


@given(st.lists(entries, max_size=50))
def test_index_roundtrip(items: list[PackEntry]) -> None:
    packs = {os.urandom(32): items, os.urandom(32): items[:3]}
    decoded = dict(decode_index(encode_index(packs), "t"))
    assert decoded == packs


@given(st.binary(min_size=1, max_size=200))
def test_index_rejects_garbage(junk: bytes) -> None:
    with pytest.raises(FormatError):
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
    with pytest.raises(FormatError):
        decode_pack_header(CODEC, pack[:-1] + b"\xff", len(pack), "t")


names = st.text(min_size=1, max_size=30).filter(
    lambda n: n not in (".", "..") and "/" not in n and "\x00" not in n
)


@given(st.lists(names, unique=True, max_size=30))
def test_tree_roundtrip(ns: list[str]) -> None:
    nodes = [{"name": n, "type": "file", "mode": 0o644, "content": [os.urandom(32).hex()]} for n in ns]
    decoded = decode_tree(encode_tree(list(nodes)), "t")
    assert sorted(n["name"] for n in decoded) == sorted(ns)


def test_tree_accepts_undecodable_names() -> None:
    bad = os.fsdecode(b"bad-\xff")
    nodes = decode_tree(encode_tree([{"name": bad, "type": "file", "content": []}]), "t")
    assert os.fsencode(nodes[0]["name"]) == b"bad-\xff"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\x00b", 7])
def test_tree_rejects_bad_names(name: object) -> None:
    with pytest.raises(FormatError):
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
