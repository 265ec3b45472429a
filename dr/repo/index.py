"""The in-memory index: which blob is where (FORMAT.md §7).

Built from every ``index/`` file at open; lookups are a dict access. The
same blob may be stored in several packs (concurrent backups); the first
copy seen wins and the others are kept only so that prune can account for
them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dr.repo.format import BlobType, Codec, PackEntry, decode_index, object_aad
from dr.storage.base import ObjectStore


@dataclass(frozen=True, slots=True)
class BlobLocation:
    pack: bytes
    entry: PackEntry


class Index:
    def __init__(self) -> None:
        self._blobs: dict[bytes, BlobLocation] = {}
        self.packs: dict[bytes, list[PackEntry]] = {}
        # index object name -> pack ids it lists
        self.files: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._blobs)

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self._blobs

    def get(self, blob_id: bytes) -> BlobLocation | None:
        return self._blobs.get(blob_id)

    def add_pack(self, pack_id: bytes, entries: list[PackEntry]) -> None:
        with self._lock:
            self.packs.setdefault(pack_id, entries)
            for e in entries:
                self._blobs.setdefault(e.id, BlobLocation(pack_id, e))

    def add_file(self, name: str, packs: Iterable[tuple[bytes, list[PackEntry]]]) -> None:
        ids = []
        for pack_id, entries in packs:
            self.add_pack(pack_id, entries)
            ids.append(pack_id)
        with self._lock:
            self.files[name] = ids

    def blob_ids(self, blob_type: BlobType | None = None) -> Iterator[bytes]:
        for bid, loc in self._blobs.items():
            if blob_type is None or loc.entry.type == blob_type:
                yield bid


def load_index(store: ObjectStore, codec: Codec, names: list[str], workers: int = 8) -> Index:
    """Fetch and decode index files in parallel."""
    index = Index()

    def fetch(name: str) -> tuple[str, list[tuple[bytes, list[PackEntry]]]]:
        sealed = store.get(name)
        hexname = name.rsplit("/", 1)[-1]
        plain = codec.decode(sealed, object_aad("index", hexname), what=name)
        return name, list(decode_index(plain, name))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for name, packs in pool.map(fetch, names):
            index.add_file(name, packs)
    return index
