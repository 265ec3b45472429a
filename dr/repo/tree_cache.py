"""Reading tree blobs a run at a time: one request for many directories.

Restore plans, listings, the parent lookup of an incremental backup, check
and prune all walk trees one directory at a time. From S3 or GCS each tree
read used to be its own range request (5–20 ms), so a volume with 5,000
directories cost a minute of round trips before any data moved. Writers put
tree blobs in packs of their own (FORMAT.md §5.3), where the trees of one
backup lie back to back. ``TreeReader`` therefore fetches, with the tree
asked for, the run of tree blobs adjacent to it in its pack (at most
``max_range`` sealed bytes), opens and verifies the one asked for, and keeps
the others as they came, sealed, in a cache bounded by ``max_bytes`` (least
recently used out); each is opened and verified when it is asked for. A tree
kept sealed takes a fifth to a half of its plaintext (JSON, compressed): a
restore of 20,000 small files in 210 directories held 3.3 MB of plaintext
trees fetched ahead at its first batch.

A damaged neighbour does not fail the tree asked for: it reports its own
error when it is read. In a pack that mixes trees and data (repositories
written before trees had packs of their own) a run is the tree alone, as
before.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

from dr.repo.format import BlobType, PackEntry, pack_name
from dr.repo.index import BlobLocation, Index
from dr.storage.base import ObjectStore

# Sealed bytes fetched in one request: ~1,000 directories of ~20 entries.
MAX_RANGE = 1 << 20
# Plaintext trees kept; a walk reads each tree once, so this only has to span
# the runs fetched ahead of the walk.
MAX_BYTES = 16 << 20
# A tree read with ``keep=False`` leaves the cache unless it is this small: an empty
# directory's tree (one blob for all of them) or a few entries, which a volume may
# hold many copies of, each a request to fetch again.
KEEP_SMALL = 1 << 10
# Ids of trees handed out for good that the reader remembers (~100 bytes each); past
# this it starts again empty, so memory stays bounded for a volume of millions of
# directories, at the cost of a run that may fetch some of them again.
TAKEN_MAX = 1 << 16

OpenBlob = Callable[[PackEntry, memoryview, str], bytes]


def pack_trees(entries: Iterable[PackEntry]) -> list[PackEntry]:
    """The tree entries of a pack, by offset."""
    return sorted((e for e in entries if e.type == BlobType.TREE), key=lambda e: e.offset)


def tree_run(
    trees: list[PackEntry],
    wanted: PackEntry,
    max_range: int = MAX_RANGE,
    have: Callable[[bytes], bool] = lambda bid: False,
) -> list[PackEntry]:
    """The trees stored back to back with ``wanted`` in its pack (``trees``: ``pack_trees`` of
    it), ``wanted`` included, spanning at most ``max_range`` bytes (``wanted`` alone if it is
    longer), and stopping at a tree the reader ``have``s already (cached or on its way).

    Earlier entries come first: a directory's tree is written after its subdirectories'.
    Stopping at trees already had matters for a walk over many sibling directories,
    whose trees lie in walk order: without it, each run after the first would be
    spent on the siblings just read and hold none of the ones to come.
    """
    at = bisect.bisect_left(trees, wanted.offset, key=lambda e: e.offset)
    if at == len(trees) or trees[at].offset != wanted.offset:
        return [wanted]
    lo = hi = at
    span = wanted.length
    while lo > 0:
        prev = trees[lo - 1]
        if prev.offset + prev.length != trees[lo].offset or span + prev.length > max_range or have(prev.id):
            break
        lo -= 1
        span += prev.length
    while hi + 1 < len(trees):
        nxt = trees[hi + 1]
        if trees[hi].offset + trees[hi].length != nxt.offset or span + nxt.length > max_range or have(nxt.id):
            break
        hi += 1
        span += nxt.length
    return trees[lo : hi + 1]


class TreeReader:
    """Tree blobs by id, fetched a run at a time and cached (thread-safe)."""

    def __init__(
        self,
        store: ObjectStore,
        index: Index,
        open_blob: OpenBlob,
        *,
        max_range: int = MAX_RANGE,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.store, self.index, self._open = store, index, open_blob
        self.max_range, self.max_bytes = max_range, max_bytes
        self.requests = 0  # range requests made (tests and benchmarks read it)
        # tree id -> its plaintext, or its sealed blob if it came in a run and has not
        # been asked for yet (then listed in _sealed); _size counts either
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._sealed: dict[bytes, tuple[PackEntry, str]] = {}  # id -> (entry, pack name)
        self._lock = threading.Lock()
        # ids of trees whose run another thread is fetching: wait for it instead of fetching again
        self._inflight: dict[bytes, threading.Event] = {}
        self._trees_of: dict[bytes, list[PackEntry]] = {}  # pack -> its trees by offset
        # Trees handed out with ``keep=False``: a run fetched later stops at them rather
        # than fetch them again, to be kept and never read (a tree's run reaches back
        # over the trees written before it, which a walk has read already).
        self._taken: set[bytes] = set()

    def read(self, loc: BlobLocation, *, keep: bool = True) -> bytes:
        """The plaintext of tree ``loc``. ``keep=False`` for a walk that reads each
        tree once (restore): the tree is not kept once handed out, unless small
        (``KEEP_SMALL``), so the cache holds only the runs fetched ahead. Kept, every
        tree a restore read stayed to its end (4 GiB benchmark set: 385 KiB of
        trees at the first batch, against 102 KiB for 1 GiB; up to ``MAX_BYTES``)."""
        bid = loc.entry.id
        while True:
            with self._lock:
                cached = self._cache.get(bid)
                sealed_in = self._sealed.pop(bid, None)  # listed only while cached
                if cached is not None and sealed_in is None:
                    if keep or len(cached) <= KEEP_SMALL:
                        self._cache.move_to_end(bid)
                    else:
                        self._drop(bid)
                        self._take(bid)
                    return cached
                busy = self._inflight.get(bid)
                if busy is None or sealed_in is not None:
                    done = threading.Event()
                    if sealed_in is not None:
                        # Fetched ahead: opened here, outside the lock. A reader of the
                        # same tree meanwhile waits for this, or for the run that brought
                        # it if that is still being opened, then looks again.
                        self._drop(bid)
                        run = [loc.entry]
                    else:
                        run = self._run_for(loc)
                    for e in run:
                        # A tree fetched ahead may be asked for while the run that
                        # brought it is still being opened: that fetch keeps its mark.
                        self._inflight.setdefault(e.id, done)
                    break
            busy.wait()
        try:
            if sealed_in is None:
                return self._fetch(loc, run, keep)
            entry, name = sealed_in
            assert cached is not None
            return self._opened(entry, self._open(entry, memoryview(cached), _what(entry, name)), keep)
        finally:
            with self._lock:
                for e in run:
                    if self._inflight.get(e.id) is done:
                        del self._inflight[e.id]
            done.set()

    def _run_for(self, loc: BlobLocation) -> list[PackEntry]:
        """The run of trees to fetch with ``loc`` (called with the lock held)."""
        trees = self._trees_of.get(loc.pack)
        if trees is None:
            trees = self._trees_of[loc.pack] = pack_trees(self.index.packs.get(loc.pack) or [])
        return tree_run(trees, loc.entry, self.max_range, self._has)

    def _drop(self, bid: bytes) -> None:
        """Take a tree out of the cache (called with the lock held)."""
        self._size -= len(self._cache.pop(bid))
        self._sealed.pop(bid, None)

    def _take(self, bid: bytes) -> None:
        """Remember a tree handed out for good (called with the lock held)."""
        if len(self._taken) >= TAKEN_MAX:
            self._taken.clear()
        self._taken.add(bid)

    def _has(self, bid: bytes) -> bool:
        """Cached, on its way, or handed out for good (called with the lock held)."""
        return bid in self._cache or bid in self._inflight or bid in self._taken

    def _fetch(self, loc: BlobLocation, run: list[PackEntry], keep: bool) -> bytes:
        name = pack_name(loc.pack)
        start = run[0].offset
        data = memoryview(self.store.get_range(name, start, run[-1].offset + run[-1].length - start))
        with self._lock:
            self.requests += 1
        wanted = b""
        for e in run:
            sealed = data[e.offset - start : e.offset - start + e.length]
            if e.id == loc.entry.id:
                wanted = self._opened(e, self._open(e, sealed, _what(e, name)), keep)
            else:
                # A neighbour, kept as it came (a copy: not a view that would hold the
                # whole run); opened, and any damage reported, when it is asked for.
                self._keep(e.id, bytes(sealed), sealed_in=(e, name))
        return wanted

    def _opened(self, entry: PackEntry, plain: bytes, keep: bool) -> bytes:
        """A tree just opened for a reader: cached or handed out for good; -> its plaintext."""
        if not keep and len(plain) > KEEP_SMALL:
            with self._lock:
                self._take(entry.id)
        else:
            with self._lock:
                self._taken.discard(entry.id)  # asked for to be kept after all
            self._keep(entry.id, plain)
        return plain

    def _keep(self, bid: bytes, data: bytes, sealed_in: tuple[PackEntry, str] | None = None) -> None:
        """Cache a tree's plaintext, or (``sealed_in``: its entry and pack) its sealed blob."""
        with self._lock:
            if bid in self._cache or bid in self._taken or len(data) > self.max_bytes:
                return
            self._cache[bid] = data
            self._size += len(data)
            if sealed_in is not None:
                self._sealed[bid] = sealed_in
            while self._size > self.max_bytes:
                self._drop(next(iter(self._cache)))  # the least recently used


def _what(entry: PackEntry, pack: str) -> str:
    return f"blob {entry.id.hex()[:16]} in {pack}"
