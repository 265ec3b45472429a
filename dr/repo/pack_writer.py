"""Saving blobs: dedup, seal, collect into ~16 MiB packs, upload, write index files.

``BlobSaver.save`` is called from several worker threads. Hashing,
compression and sealing run in the caller's thread (the C libraries release
the GIL, so two workers use two cores). Each blob is sealed straight into its
pack's buffer: a slot is reserved under a short lock, then filled outside it
(``PackUploader.slot``), so a blob is not copied between the compressor and
the pack. Full packs are uploaded by a small uploader
pool, with at most ``max_inflight`` packs in memory so memory stays bounded
whatever the data size.

Crash safety (FORMAT.md §7): an index file is written every
``index_every`` packs or ``index_max_blobs`` blobs and at ``flush``; a crash loses at most those few
packs, which the next backup uploads again.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from dr.repo.format import (
    BlobType,
    Codec,
    PackEntry,
    blob_aad,
    encode_index,
    encode_pack_header,
    object_aad,
    pack_name,
    sealed_size,
)
from dr.repo.index import Index
from dr.storage.base import ObjectExists, ObjectStore

log = logging.getLogger(__name__)

# A pack's buffer: its target size and this much more, for the blob that fills it
# (a data chunk is at most 4 MiB); a larger blob grows it.
PACK_SLACK = 5 << 20
# Blobs a pack holds at most, and blobs an index file is written for at the latest.
# Each blob of a pack costs a PackEntry (~250 bytes with its id, and its claim) until
# the pack is in an index file; bounded only by size, a pack of tiny files' blobs
# (~45 bytes sealed) held ~370,000 of them and index_every packs eight times that,
# so memory grew with the number of files: a full backup of 100,000 one-line files
# peaked at 133 MB, of 400,000 at 304 MB (bench/RESULTS.md). restic writes an index
# file every 50,000 blobs too.
PACK_MAX_BLOBS = 16_384
INDEX_MAX_BLOBS = 50_000


@dataclass
class SaveStats:
    new_blobs: int = 0
    new_bytes: int = 0  # sealed bytes uploaded in packs
    new_raw_bytes: int = 0  # plaintext bytes of new blobs
    packs: int = 0
    index_files: int = 0


class _Pack:
    """A pack being assembled, in page-aligned memory (written with O_DIRECT without a copy).

    Blobs are placed in two steps: a slot is reserved under the uploader's lock
    (offset, entry), then filled outside it by the thread that reserved it, so two
    workers seal into one pack at the same time. ``writers`` counts slots reserved
    and not yet filled; a pack is uploaded once it is ``closed`` (no more slots) and
    its last slot is filled. The buffer is never resized while a slot is open: a
    resize moves the memory under the writer.
    """

    def __init__(self, capacity: int, blob_type: BlobType) -> None:
        self.blob_type = blob_type
        # Private: a shared anonymous mapping (mmap's default) cannot grow. After
        # ``resize`` its new pages lie past the end of the memory object behind it,
        # and the first write there kills the process with SIGBUS.
        self.buf = mmap.mmap(-1, capacity, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.size = 0
        self.entries: list[PackEntry] = []
        self.writers = 0
        self.closed = False
        self.failed = False

    def reserve(self, end: int) -> None:
        if end > len(self.buf):
            assert self.writers == 0, "pack buffer resized while a slot is being filled"
            self.buf.resize(max(end, len(self.buf) * 2))

    @property
    def ready(self) -> bool:
        """Closed, every slot filled, none failed: to be uploaded."""
        return self.closed and self.writers == 0 and not self.failed

    def slot(self, entry: PackEntry) -> None:
        self.reserve(entry.offset + entry.length)
        self.size = entry.offset + entry.length
        self.entries.append(entry)
        self.writers += 1

    def reset(self) -> None:
        self.size, self.entries, self.writers, self.closed, self.failed = 0, [], 0, False, False


class PackUploader:
    """Assembles packs and uploads them; records uploaded packs for the index."""

    def __init__(
        self,
        store: ObjectStore,
        codec: Codec,
        index: Index,
        *,
        pack_size: int = 16 << 20,
        workers: int = 2,
        max_inflight: int = 2,
        index_every: int = 8,
        pack_max_blobs: int = PACK_MAX_BLOBS,
        index_max_blobs: int = INDEX_MAX_BLOBS,
        before_index: Callable[[], None] = lambda: None,
    ) -> None:
        self.store, self.codec, self.index = store, codec, index
        # Called before each index file is written (it commits the packs it lists):
        # raises if the repository lock has lapsed (``Repository.check_leases``).
        self.before_index = before_index
        self.pack_size = pack_size
        self.index_every = index_every
        self.pack_max_blobs = pack_max_blobs
        self.index_max_blobs = index_max_blobs
        self.stats = SaveStats()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dr-upload")
        self._inflight = threading.BoundedSemaphore(max_inflight)
        self._lock = threading.Lock()
        # One open pack per blob type: trees go into packs of their own (FORMAT.md §5.3),
        # so a snapshot's trees lie back to back and are read in few requests.
        self._current: dict[BlobType, _Pack] = {}
        # Uploads not finished yet, for flush to wait on. A finished one leaves the set
        # (its error, if any, is kept in _error): a list of every upload grew with the
        # data, ~700 bytes a pack (170 KB more at 4 GiB than at 1 GiB; 45 MB for 1 TiB).
        self._pending: set[Future[None]] = set()
        self._unindexed: dict[bytes, list[PackEntry]] = {}
        self._free: list[_Pack] = []  # reused pack buffers (avoid first-touch page faults)
        # Data pack buffers: the open pack and those uploading (or waiting to), at most
        # max_inflight + 1. Without the bound a writer opened a fresh buffer whenever a
        # full pack was still waiting for an upload slot, so some backups held one
        # 16 MiB buffer more than others (peak RSS 92 or 106-111 MB for the same set).
        self._data_buffers = 0
        self._max_buffers = max_inflight + 1
        self._returned = threading.Condition(self._lock)  # a buffer came back, or an error
        self._error: BaseException | None = None
        # Ids claimed by a save and not yet in the index (being sealed, in a pack,
        # uploading): a second save of one is a duplicate. An id leaves once its pack
        # is indexed, so the set stays as small as the packs in flight.
        self._claimed: set[bytes] = set()

    def unknown(self, blob_ids: Sequence[bytes]) -> set[bytes]:
        """Those of ``blob_ids`` neither stored nor being saved."""
        missing = self.index.missing(blob_ids)
        with self._lock:
            return missing - self._claimed

    def claim(self, blob_id: bytes) -> bool:
        """Claim an id for a save: False if the blob is stored or being saved already."""
        with self._lock:
            if blob_id in self.index or blob_id in self._claimed:
                return False
            self._claimed.add(blob_id)
            return True

    def unclaim(self, blob_id: bytes) -> None:
        """Give up a claim (its save failed)."""
        with self._lock:
            self._claimed.discard(blob_id)

    def add(self, blob_type: BlobType, blob_id: bytes, flag: int, sealed: bytes, raw_length: int) -> None:
        """Add a blob sealed elsewhere (prune copies sealed blobs between packs)."""
        with self.slot(blob_type, blob_id, flag, len(sealed), raw_length) as out:
            out[:] = sealed

    @contextlib.contextmanager
    def slot(
        self, blob_type: BlobType, blob_id: bytes, flag: int, length: int, raw_length: int
    ) -> Iterator[memoryview]:
        """``length`` bytes of the open pack of the blob's type, to fill inside the
        ``with``. An exception raised there goes on, and fails the pack (it is never
        uploaded) and with it the backup."""
        pack, offset = self._reserve(blob_type, blob_id, flag, length, raw_length)
        try:
            with memoryview(pack.buf) as mv, mv[offset : offset + length] as out:
                yield out
        except BaseException as e:
            self._filled(pack, e)
            raise
        self._filled(pack)

    def _reserve(
        self, blob_type: BlobType, blob_id: bytes, flag: int, length: int, raw_length: int
    ) -> tuple[_Pack, int]:
        while True:
            with self._lock:
                if self._error:
                    raise self._error
                p = self._current.get(blob_type)
                if p is not None and p.size and p.size + length > self.pack_size:
                    # It would take the pack past its size: close it (its last writer
                    # uploads it, or this call if none is left). Packs stay within
                    # pack_size, so a reused buffer's resident pages stay within it too:
                    # when a pack could end up to a chunk (4 MiB) beyond, the buffers kept
                    # the largest overshoot met so far, and a longer backup met larger
                    # ones. (A blob larger than pack_size goes into an empty pack, whose
                    # buffer grows: no slot is open in it.)
                    done = self._close(blob_type)
                elif p is None and (p := self._open_pack(blob_type, length)) is None:
                    # Every data buffer is full, uploading or waiting to: wait for one
                    # to come back, then look again (another writer may have opened a pack).
                    self._returned.wait()
                    continue
                else:
                    offset = p.size
                    p.slot(PackEntry(blob_type, flag, offset, length, raw_length, blob_id))
                    self.stats.new_blobs += 1
                    self.stats.new_raw_bytes += raw_length
                    if p.size >= self.pack_size or len(p.entries) >= self.pack_max_blobs:
                        # Full by size or by count (the count is checked only here: a pack
                        # that reaches it is closed at once, never offered another blob).
                        self._close(blob_type)  # the slot just reserved is open: _filled uploads it
                    return p, offset
            if done is not None:
                self._submit(done)

    def _open_pack(self, blob_type: BlobType, length: int) -> _Pack | None:
        """A new open pack of the type (under the lock); None when every data buffer
        is in use. A tree pack takes a fresh buffer: only the pages it fills become
        resident, where a reused one would keep a data pack's worth."""
        data = blob_type == BlobType.DATA
        if data and self._free:
            p = self._free.pop()
        elif data and self._data_buffers >= self._max_buffers:
            return None
        else:
            if data:
                self._data_buffers += 1
            p = _Pack(max(self.pack_size + PACK_SLACK, length), blob_type)
        self._current[blob_type] = p
        return p

    def _filled(self, p: _Pack, error: BaseException | None = None) -> None:
        with self._lock:
            p.writers -= 1
            if error is not None:
                p.failed = True
                self._error = self._error or error
                self._returned.notify_all()
            ready = p.ready
        if ready:
            self._submit(p)

    def _close(self, blob_type: BlobType) -> _Pack | None:
        """Take the open pack of a type out of use (under the lock); -> the pack if it
        is ready to upload now, which falls to the caller (else its last writer's
        ``_filled`` uploads it)."""
        p = self._current.pop(blob_type)
        p.closed = True
        return p if p.ready else None

    def _submit(self, pack: _Pack) -> None:
        self._inflight.acquire()  # backpressure: bounded packs in memory
        try:
            fut = self._pool.submit(self._upload, pack)
        except BaseException:
            self._inflight.release()
            raise
        with self._lock:
            self._pending.add(fut)
        fut.add_done_callback(self._finished)  # runs at once if it is done already

    def _finished(self, fut: Future[None]) -> None:
        with self._lock:
            self._pending.discard(fut)

    def _upload(self, pack: _Pack) -> None:
        try:
            header = encode_pack_header(self.codec, pack.entries)
            end = pack.size + len(header)
            pack.reserve(end)
            pack.buf[pack.size : end] = header
            data = memoryview(pack.buf)[:end]
            pack_id = blake3.blake3(data, max_threads=1).digest()
            try:
                self.store.put(pack_name(pack_id), data)
            except ObjectExists:
                pass  # same content, same name: an earlier attempt already stored it
            data.release()
            write_index = None
            with self._lock:
                self.stats.packs += 1
                self.stats.new_bytes += end
                self._unindexed[pack_id] = pack.entries
                # At most index_every packs: counted afresh rather than kept as a second tally.
                blobs = sum(len(entries) for entries in self._unindexed.values())
                if len(self._unindexed) >= self.index_every or blobs >= self.index_max_blobs:
                    write_index, self._unindexed = self._unindexed, {}
            self.index.add_pack(pack_id, pack.entries)
            with self._lock:
                self._claimed.difference_update(e.id for e in pack.entries)
            if write_index:
                self._write_index(write_index)
            if pack.blob_type == BlobType.DATA:
                pack.reset()
                with self._lock:
                    self._free.append(pack)
                    self._returned.notify_all()
            else:
                # A tree pack's buffer is not a data buffer: reused, it was one more
                # than _max_buffers for the rest of the backup (each tree pack filled
                # mid-backup, 16 MiB of trees, left another 16 MiB buffer in use).
                pack.buf.close()
        except BaseException as e:
            with self._lock:
                self._error = self._error or e
                self._returned.notify_all()  # writers waiting for a buffer fail now
            raise
        finally:
            self._inflight.release()

    def _write_index(self, packs: dict[bytes, list[PackEntry]]) -> None:
        self.before_index()
        name = os.urandom(32).hex()
        _, sealed = self.codec.encode(encode_index(packs), object_aad("index", name))
        self.store.put(f"index/{name}", sealed)
        self.index.add_file(f"index/{name}", packs.items())
        with self._lock:
            self.stats.index_files += 1

    def flush(self) -> None:
        """Upload the open pack, wait for all uploads, write the remaining index entries."""
        with self._lock:
            open_packs, self._current = list(self._current.values()), {}
            if any(p.writers for p in open_packs):
                raise RuntimeError("flush while blobs are being saved")
        for p in open_packs:
            if p.entries and not p.failed:
                self._submit(p)
        with self._lock:
            futures = list(self._pending)
        for f in futures:
            f.result()
        with self._lock:
            rest, self._unindexed = self._unindexed, {}
        if rest:
            self._write_index(rest)
        if self._error:
            raise self._error

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._free.clear()


class BlobSaver:
    """Dedup + seal + hand to the pack uploader. Thread-safe."""

    def __init__(
        self, blob_id: Callable[[bytes | memoryview], bytes], codec: Codec, uploader: PackUploader
    ) -> None:
        self._blob_id = blob_id  # keyed BLAKE3 (FORMAT.md §5.1)
        self.codec = codec
        self.uploader = uploader

    def unknown(self, blob_ids: Sequence[bytes]) -> set[bytes]:
        return self.uploader.unknown(blob_ids)

    def save(
        self, blob_type: BlobType, data: bytes | memoryview, blob_id: bytes | None = None
    ) -> tuple[bytes, bool]:
        """Store ``data`` unless a blob with its id exists. -> (id, newly stored)."""
        bid = blob_id if blob_id is not None else self._blob_id(data)
        if not self.uploader.claim(bid):
            return bid, False
        try:
            with (
                self.codec.staged(data) as payload,
                self.uploader.slot(
                    blob_type, bid, payload[0], sealed_size(len(payload) - 1), len(data)
                ) as out,
            ):
                self.codec.seal_payload_into(payload, blob_aad(blob_type, bid), out)
        except BaseException:
            self.uploader.unclaim(bid)
            raise
        return bid, True
