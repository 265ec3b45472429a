"""Pack assembly (dr/repo/pack_writer.py).

Packs go to a real FileStore and are read back through their headers, as a
restore would.
"""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from dr.crypto.aead import Sealer
from dr.repo.format import BlobType, Codec, blob_aad, decode_pack_header
from dr.repo.index import Index
from dr.repo.pack_writer import BlobSaver, PackUploader
from dr.storage.file import FileStore

CODEC = Codec(Sealer(os.urandom(32)), level=1)


def blob_id(data: bytes | memoryview) -> bytes:
    return blake3.blake3(bytes(data)).digest()


def stored_blobs(store: FileStore) -> dict[bytes, bytes]:
    """Every blob of every pack in the store, opened: id -> plaintext."""
    out: dict[bytes, bytes] = {}
    for info in store.list("data/"):
        raw = store.get(info.name)
        for e in decode_pack_header(CODEC, raw, len(raw), info.name):
            sealed = raw[e.offset : e.offset + e.length]
            out[e.id] = CODEC.decode(sealed, blob_aad(e.type, e.id), what=info.name)
    return out


def make_saver(tmp_path: Path, pack_size: int = 1 << 20) -> tuple[FileStore, Index, PackUploader, BlobSaver]:
    store = FileStore(tmp_path / "repo")
    index = Index()
    uploader = PackUploader(store, CODEC, index, pack_size=pack_size)
    return store, index, uploader, BlobSaver(blob_id, CODEC, index, uploader)


def test_a_blob_larger_than_the_pack_buffer_grows_it(tmp_path: Path) -> None:
    # A tree blob of a directory with ~100,000 entries is larger than a pack's
    # buffer (pack size + 5 MiB). The buffer grows; before it was a private
    # mapping, the first write into the grown part was a SIGBUS.
    store, _, uploader, saver = make_saver(tmp_path, pack_size=1 << 20)
    saver.save(BlobType.TREE, b"t" * 1000)
    big = os.urandom(8 << 20)
    saver.save(BlobType.TREE, big)
    uploader.flush()
    uploader.close()
    assert stored_blobs(store)[blob_id(big)] == big
