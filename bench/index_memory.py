#!/usr/bin/env python3
"""In-memory index benchmark: memory per blob and lookup times at repository scale.

    .venv/bin/python bench/index_memory.py [--blobs N] [--per-pack N]

Every backup and restore holds the repository's whole index (dr.repo.index),
as restic does its own: a million blobs for 1 TiB in 1 MiB chunks. This makes
N random blob ids in packs as index files store them, loads them the way
opening a repository does (``Index.add_files``) and the way a backup adds its
packs (``Index.add_pack``), and prints bytes of Python objects per blob (the
46-byte records, made before measuring, not counted), the peak while loading,
the load time and the time of ``get`` and ``in``. Beside it: a dict from each
blob id to its place, the index dr had before (2026-11-29), built the same way.
Not a test: figures go into bench/RESULTS.md by hand, with the machine and date.
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from collections.abc import Callable, Sequence

from dr.repo.format import BlobType, PackEntries, PackEntry
from dr.repo.index import Index

Packs = list[tuple[bytes, PackEntries]]


class DictIndex:
    """The reference: blob id -> (pack number << 24 | entry number), as dr kept it before."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, int] = {}
        self._packs: list[PackEntries] = []

    def add_pack(self, pack_id: bytes, entries: PackEntries) -> None:
        ref = len(self._packs) << 24
        self._packs.append(entries)
        for i, bid in enumerate(entries.ids()):
            self._blobs.setdefault(bid, ref | i)

    def add_files(self, files: Sequence[tuple[str, Packs]]) -> None:
        for _, packs in files:
            for pack_id, entries in packs:
                self.add_pack(pack_id, entries)

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self._blobs

    def get(self, blob_id: bytes) -> PackEntry | None:
        ref = self._blobs.get(blob_id)
        return None if ref is None else self._packs[ref >> 24].entry(ref & 0xFFFFFF)

    def __len__(self) -> int:
        return len(self._blobs)


def make_packs(blobs: int, per_pack: int) -> Packs:
    return [
        (
            os.urandom(32),
            PackEntries.of(
                [PackEntry(BlobType.DATA, 1, i * 1000, 1000, 4000, os.urandom(32)) for i in range(per_pack)]
            ),
        )
        for _ in range(blobs // per_pack)
    ]


def measure(make: Callable[[], Index | DictIndex], how: str, packs: Packs) -> dict[str, float]:
    def build() -> Index | DictIndex:
        index = make()
        if how == "add_files":
            index.add_files([("index/all", packs)])
        else:
            for pack_id, entries in packs:
                index.add_pack(pack_id, entries)
        len(index)  # an Index merges what waits in its recent dict
        return index

    tracemalloc.start()
    index = build()
    used, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del index
    t = time.perf_counter()
    index = build()
    load = time.perf_counter() - t
    n = len(index)
    hits = [entries.entry(i).id for _, entries in packs[:: max(1, len(packs) // 2000)] for i in range(10)]
    misses = [os.urandom(32) for _ in range(len(hits))]
    t = time.perf_counter()
    for bid in hits:
        index.get(bid)
    get = (time.perf_counter() - t) / len(hits)
    t = time.perf_counter()
    for bid in hits:
        _ = bid in index
    for bid in misses:
        _ = bid in index
    contains = (time.perf_counter() - t) / (2 * len(hits))
    return {"used": used / n, "peak": peak / n, "load": load, "get": get * 1e6, "in": contains * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blobs", type=int, default=1_000_000)
    ap.add_argument("--per-pack", type=int, default=16, help="blobs per pack (16 MiB packs of 1 MiB chunks)")
    args = ap.parse_args()
    packs = make_packs(args.blobs, args.per_pack)
    print(f"{args.blobs:,} blobs in {len(packs):,} packs; bytes a blob besides the 46-byte records")
    print(
        f"{'index':<12} {'built by':<10} {'B/blob':>7} {'peak':>7} {'load s':>7} {'get µs':>7} {'in µs':>7}"
    )
    for name, make in (("dr", Index), ("dict (old)", DictIndex)):
        for how in ("add_files", "add_pack"):
            m = measure(make, how, packs)
            print(
                f"{name:<12} {how:<10} {m['used']:7.0f} {m['peak']:7.0f} {m['load']:7.2f} {m['get']:7.2f} {m['in']:7.2f}"
            )


if __name__ == "__main__":
    main()
