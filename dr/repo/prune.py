"""Prune: delete data no snapshot needs, under the exclusive lock (FORMAT.md §12).

Order matters for crash safety: (1) repack partly used packs, copying the
still-needed sealed blobs into new packs; (2) write a new, complete index;
(3) delete the index files it supersedes; (4) delete packs nothing references
any more (fully unused, repacked, or never indexed); (5) in a file store, the
temporary files of writes killed half-way. A crash after any step
leaves a repository that still has everything its snapshots need — at worst
some data twice, which the next prune removes (tests/test_prune_crash.py kills a
real prune at each step).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from dr.errors import DrError
from dr.repo import reachable
from dr.repo.format import PackEntry, encode_index, object_aad, pack_name
from dr.repo.locks import EXPIRY, Lock
from dr.repo.repository import Repository
from dr.repo.snapshots import list_snapshots
from dr.storage.base import StorageError
from dr.storage.file import FileStore

log = logging.getLogger(__name__)

# Repack a pack when more than this share of its bytes is unused.
REPACK_UNUSED = 0.2
INDEX_PACKS_PER_FILE = 4096


@dataclass
class PruneResult:
    packs_deleted: int = 0
    packs_repacked: int = 0
    bytes_freed: int = 0
    blobs_kept: int = 0
    blobs_removed: int = 0
    index_files_replaced: int = 0
    # Kept because the store refused to delete them yet (Object Lock retention), or a
    # retained index file still names them: counted neither as deleted nor as freed.
    packs_retained: int = 0
    index_files_retained: int = 0
    dry_run: bool = False
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "dryRun": self.dry_run,
            "packsDeleted": self.packs_deleted,
            "packsRepacked": self.packs_repacked,
            "bytesFreed": self.bytes_freed,
            "blobsKept": self.blobs_kept,
            "blobsRemoved": self.blobs_removed,
            "indexFilesReplaced": self.index_files_replaced,
            "packsRetained": self.packs_retained,
            "indexFilesRetained": self.index_files_retained,
        }


def prune(
    repo: Repository,
    *,
    dry_run: bool = False,
    lock: bool = True,
    ignore_snapshots: Collection[str] = (),
) -> PruneResult:
    """``ignore_snapshots``: ids of snapshots to count as gone — the ones ``forget`` removes,
    so that ``forget --prune --dry-run`` (which removes nothing) reports what prune would free."""
    result = PruneResult(dry_run=dry_run)
    if lock and not dry_run:
        with Lock(repo, "exclusive", "prune"):
            return _prune(repo, result, set(ignore_snapshots))
    return _prune(repo, result, set(ignore_snapshots))


def _prune(repo: Repository, result: PruneResult, ignore: set[str]) -> PruneResult:
    index = repo.reload_index()
    snaps = [s for s in list_snapshots(repo) if s.id not in ignore]
    reach = reachable.collect(repo, snaps)
    if reach.errors:
        # Never delete anything while the repository is damaged: the "unused"
        # computation would be wrong.
        raise DrError(
            "prune refused: the repository has errors; run `dr repo check`", details=reach.errors[:20]
        )
    needed = reach.blobs
    stored = {o.name: o.size for o in repo.store.list("data/")}

    keep: dict[bytes, Sequence[PackEntry]] = {}
    repack: dict[bytes, list[PackEntry]] = {}
    delete: list[str] = []
    claimed: set[bytes] = set()  # first copy of each needed blob wins; duplicates are unused
    absent: list[bytes] = []  # indexed packs missing from storage
    for pack_id, entries in index.packs.items():
        name = pack_name(pack_id)
        if name not in stored:
            absent.append(pack_id)  # its blobs may have a copy in another pack
            continue
        used = []
        for e in entries:
            if e.id in needed and e.id not in claimed:
                used.append(e)
                claimed.add(e.id)
        unused_bytes = sum(e.length for e in entries) - sum(e.length for e in used)
        if not used:
            delete.append(name)
            result.bytes_freed += stored[name]
            result.blobs_removed += len(entries)
        elif unused_bytes > REPACK_UNUSED * stored[name]:
            repack[pack_id] = used
            result.blobs_removed += len(entries) - len(used)
        else:
            keep[pack_id] = entries
    # A needed blob with no copy in a stored pack: the repository is damaged, and the new
    # index would drop the only record of where the blob was (a pack a store lost for a
    # while may come back). A missing pack that holds no needed blob is simply left out.
    lost = [
        pack_name(p) for p in absent if any(e.id in needed and e.id not in claimed for e in index.packs[p])
    ]
    if lost:
        raise DrError(
            "prune refused: the repository has errors; run `dr repo check`",
            details=[f"{name}: missing, holds blobs snapshots need" for name in lost[:20]],
        )
    indexed = {pack_name(p) for p in index.packs}
    for name, size in stored.items():
        if name not in indexed:
            delete.append(name)  # left by an interrupted backup
            result.bytes_freed += size
    result.packs_deleted = len(delete) + len(repack)
    result.packs_repacked = len(repack)
    result.blobs_kept = len(claimed)
    # A dict (in the order read), not a list: with thousands of index files (many small
    # backups) checking each name against a list made the bookkeeping below quadratic.
    old_index_files = dict.fromkeys(index.files)
    result.index_files_replaced = len(old_index_files)
    if result.dry_run:
        return result

    # (1) repack: copy the needed sealed blobs as they are (they are bound to
    # their id, not to their pack), after verifying them.
    new_packs: dict[bytes, Sequence[PackEntry]] = {}
    if repack:
        # The saver adds its packs and index files to ``index`` (the repository's live
        # index) as it goes: what was there before it ran is what the repack supersedes.
        packs_before = set(index.packs)
        with repo.saver() as saver:
            for pack_id, used in repack.items():
                name = pack_name(pack_id)
                data = memoryview(repo.store.get(name))
                for e in used:
                    sealed = bytes(data[e.offset : e.offset + e.length])
                    repo.open_blob(e, sealed, what=f"{name} blob {e.id.hex()[:16]}")
                    saver.uploader.add(e.type, e.id, e.flag, sealed, e.raw_length)
                result.bytes_freed += stored[name]
            saver.flush()
        # The saver's index files already cover the new packs, and it added both to
        # ``index``: collect them there (loading the index again fetched every index file
        # and held a second temporary database in $TMPDIR).
        for pack_id, entries in index.packs.items():
            if pack_id not in packs_before:
                new_packs[pack_id] = entries
        for name in index.files:
            old_index_files.setdefault(name)  # superseded by the complete index below

    # (2) one complete index of what stays.
    final = {**keep, **new_packs}
    items = list(final.items())
    written: set[str] = set()
    for start in range(0, len(items), INDEX_PACKS_PER_FILE):
        repo.check_leases()  # our exclusive lock still holds: nobody else is writing
        name = os.urandom(32).hex()
        _, sealed = repo.codec.encode(
            encode_index(dict(items[start : start + INDEX_PACKS_PER_FILE])), object_aad("index", name)
        )
        repo.store.put(f"index/{name}", sealed)
        written.add(f"index/{name}")

    # (3) superseded index files, (4) packs. Not if our lock lapsed (this process was
    # paused): a backup that started since may be using the packs about to go.
    repo.check_leases()
    # In batches where the store has them (S3: 1,000 names a request, not one each).
    retained_index = list(repo.store.delete_many([n for n in old_index_files if n not in written]))
    # A superseded index file the store still keeps (S3 Object Lock) names its packs: they
    # stay as long as it does. Deleted, they would leave an index naming packs that are
    # gone, and a backup could take a blob it lists as stored. A prune after its retention
    # ends deletes both.
    pinned = {pack_name(p) for name in retained_index for p in index.files[name]}
    doomed = [*(pack_name(p) for p in repack), *delete]
    kept = [name for name in doomed if name in pinned]
    kept += repo.store.delete_many([name for name in doomed if name not in pinned])
    for name in kept:
        result.packs_retained += 1
        result.packs_deleted -= 1
        result.bytes_freed -= stored[name]
    result.index_files_retained = len(retained_index)
    if isinstance(repo.store, FileStore):
        # (5) what writes killed half-way left (S3 and GCS writes are one request, and
        # leave nothing). Older than a lock's expiry: no process still holding a lease
        # can be writing it — a lock being taken beside ours writes one just now.
        try:
            swept = repo.store.remove_temporaries(time.time() - EXPIRY.total_seconds())
        except StorageError as e:  # housekeeping: the prune itself is done, and said so
            log.warning("prune: temporary files of writes that never finished stay: %s", e.message)
        else:
            if swept:
                log.info("prune: removed %d temporary files of writes that never finished", swept)
    if retained_index or result.packs_retained:
        log.warning(
            "prune: %d index files and %d packs are under Object Lock retention (or named by such an "
            "index file) and stay; a prune after their retention ends deletes them",
            len(retained_index),
            result.packs_retained,
        )
    # The index changed under the repository: forget it, for whoever uses it next to
    # load afresh. Not loaded here: nothing in prune needs it, and it would be a second
    # temporary database in $TMPDIR beside the one still held.
    repo.drop_index()
    log.info(
        "prune: deleted %d packs (%d repacked), freed %d bytes",
        result.packs_deleted,
        result.packs_repacked,
        result.bytes_freed,
    )
    return result
