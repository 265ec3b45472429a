#!/usr/bin/env python3
"""Index benchmark: memory, load and lookup times at repository scale.

    .venv/bin/python bench/index_memory.py [--blobs N ...] [--per-pack N]

Every backup and restore consults the repository's whole index
(dr.repo.index): a million blobs for 1 TiB in 1 MiB chunks. For each size,
in a fresh process each, this makes N random blob ids in packs as index
files store them, made as they are loaded so that the benchmark's own data
does not grow with N, loads them the way opening a repository does
(``Index.add_files``), then adds packs the way a backup does
(``Index.add_pack``), and prints the process's peak RSS above what it had
before loading, the load time and the time of ``get`` and ``in``. Beside it:
a dict from each blob id to its place, the index dr had until 2026-11-28
(the compact in-memory one that followed took 62 bytes a blob). Not a test:
figures go into bench/RESULTS.md by hand, with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator

from dr.repo.format import BlobType, PackEntries, PackEntry
from dr.repo.index import Index

Packs = list[tuple[bytes, PackEntries]]


class DictIndex:
    """The reference: blob id -> (pack number << 24 | entry number), as dr kept it once."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, int] = {}
        self._packs: list[PackEntries] = []

    def add_pack(self, pack_id: bytes, entries: PackEntries) -> None:
        ref = len(self._packs) << 24
        self._packs.append(entries)
        for i, bid in enumerate(entries.ids()):
            self._blobs.setdefault(bid, ref | i)

    def add_files(self, files: Iterator[tuple[str, Packs]]) -> None:
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


def pack(per_pack: int) -> tuple[bytes, PackEntries]:
    entries = [PackEntry(BlobType.DATA, 1, i * 1000, 1000, 4000, os.urandom(32)) for i in range(per_pack)]
    return os.urandom(32), PackEntries.of(entries)


def measure(kind: str, blobs: int, per_pack: int) -> dict[str, float]:
    """In this process: load ``blobs`` blobs into a fresh index of ``kind``, then look up."""
    index = Index() if kind == "dr" else DictIndex()
    sample: list[bytes] = []  # ~2,000 ids to look up, kept as the files are made
    every = max(1, blobs // per_pack // 2000)

    def files() -> Iterator[tuple[str, Packs]]:
        per_file = 64  # packs an index file lists
        n = 0
        for f in range(0, blobs // per_pack, per_file):
            packs = [pack(per_pack) for _ in range(min(per_file, blobs // per_pack - f))]
            for _, entries in packs:
                if n % every == 0:
                    sample.append(entries.entry(0).id)
                n += 1
            yield f"index/{f}", packs

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    index.add_files(files())
    load = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(100):  # a backup's new packs
        pack_id, entries = pack(per_pack)
        index.add_pack(pack_id, entries)
    add = (time.perf_counter() - t) / (100 * per_pack)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    misses = [os.urandom(32) for _ in sample]
    t = time.perf_counter()
    for bid in sample:
        assert index.get(bid) is not None
    get = (time.perf_counter() - t) / len(sample)
    t = time.perf_counter()
    for bid in sample + misses:
        _ = bid in index
    contains = (time.perf_counter() - t) / (2 * len(sample))
    return {"rss_kb": grew, "load": load, "add": add * 1e6, "get": get * 1e6, "in": contains * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--blobs", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--per-pack", type=int, default=16, help="blobs per pack (16 MiB packs of 1 MiB chunks)")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "BLOBS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.per_pack)))
        return
    print(f"packs of {args.per_pack} blobs; peak RSS above the process's before loading")
    print(
        f"{'index':<10} {'blobs':>10} {'RSS MB':>7} {'B/blob':>7} {'load s':>7} {'add µs':>7} {'get µs':>7} {'in µs':>7}"
    )
    for kind in ("dr", "dict"):
        for blobs in args.blobs:
            out = subprocess.run(
                [sys.executable, __file__, "--one", kind, str(blobs), "--per-pack", str(args.per_pack)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            m = json.loads(out)
            print(
                f"{kind:<10} {blobs:>10,} {m['rss_kb'] / 1024:7.1f} {m['rss_kb'] * 1024 / blobs:7.1f} "
                f"{m['load']:7.2f} {m['add']:7.2f} {m['get']:7.2f} {m['in']:7.2f}"
            )


if __name__ == "__main__":
    main()
