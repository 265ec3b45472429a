"""Restore a volume snapshot (or some of its paths) into a directory.

Plan a batch, then write it: walk the snapshot's trees to list directories,
files and the blobs each file needs at which offsets, up to ``BATCH_FILES``
files, ``BATCH_BLOBS`` blobs or ``BATCH_BYTES`` bytes of files at a time (so
memory does not grow with the number of files in the volume, or with their
size); group the blobs by pack; create the directories and empty files of the
right size; then ``workers`` threads each fetch one pack's needed byte ranges, handed over
blob by blob (``get_pieces``: on S3 one streamed GET per range, so a 16 MiB pack
is one request and memory is one blob; from a file store span by span into
the worker's read buffer), open and
verify every blob (AEAD) and write it to every place it belongs. The next
batch is planned and queued while one is written, so the workers go on into it
instead of waiting for the last packs of each batch; two batches are in memory
at once. Large files are written front to back with direct I/O: from a
file store each one by itself, run of adjacent blobs by run; from S3 or GCS
pack by pack like the rest, through ``OrderedFileWriter`` (a request costs a
round trip there). Their blobs, most of a restore's bytes, are decrypted and
decompressed straight into the file's staging buffer (``Codec.decode_into``):
no blob-sized object is made, zero-filled or copied again, and a worker's memory
is the same few buffers whatever it restores (4 GiB set from a local repository:
user CPU 2.4-2.5 s against 2.6-2.9 s, peak RSS 76-78 MB against 79-82).
Metadata (owner, mode, times) is applied at the end of each batch, and to
directories once all batches are in, deepest first, so writing into them
does not disturb their mtimes. ``--path`` values are checked against the
snapshot before anything is written.

Safety: names come from validated trees (no ``..``, ``/``, empty or
duplicate names), directories are created one component at a time and
refused if something other than a real directory is in the way, and files
are opened with ``O_NOFOLLOW`` — restore never writes outside ``target``
and never through a symlink. A blob that fails verification fails the files
that need it (listed, and not left as zeros or in part: a file created empty
beforehand or written in part is removed; a file of one blob whose blob
failed, or a file with a blob missing from the index, is never opened), the
rest restores; so does a directory whose tree cannot be read.

Small files of one blob (most files of a volume by count) are created,
written and given their metadata by the worker that opens the blob, through
one file descriptor: 20,000 files of ~10 KiB restored in 2.5–3.3 s instead
of 3.3–4.0 s, when the main thread created each empty first and set its
metadata last. Packs of such files are restored by one worker, one after
another, while the other workers restore the packs of larger files: each of a
small file's system calls hands the GIL over when other threads want it, and
four workers on small files were slower than one (``DENSE_FILE_BYTES``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import mmap
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from dr.crypto.aead import OVERHEAD
from dr.errors import DrError, InvalidInput
from dr.malloc_tuning import tune_allocator
from dr.repo.format import ID_SIZE, PackEntry, pack_name
from dr.repo.index import Index
from dr.repo.ordered_writer import EarlyBudget, OrderedFileWriter, StagingPool
from dr.repo.repository import Repository
from dr.repo.snapshots import Snapshot
from dr.repo.tree import TYPE_BITS, Node, read_tree, snapshot_path
from dr.storage.direct_io import ALIGN, SequentialWriter, aligned_buffer, populated, write_sparse

log = logging.getLogger(__name__)

# Files at least this large are restored front to back with direct I/O (one
# range request per run of adjacent blobs, no page cache); smaller ones pack by
# pack, so that many small files cost one request per pack, not one per file.
SEQUENTIAL_MIN = 4 << 20
# Each restore worker's staging buffer for those files (direct I/O writes go out
# this big). Blobs are decoded straight into it (``SequentialWriter.write_decoded``),
# so it holds the largest chunk (4 MiB) after a flush, and a compressed blob's
# payload beside it where there is room. Measured on the benchmark sets from a
# local repository, cold, alternating, against 2 MiB (larger blobs then decoded
# apart and copied): 1 GiB 1.19-1.43 s, peak RSS 72-74 MB against 1.20-1.43 s,
# 75-79 MB; 4 GiB 3.96-4.68 s, 77-78 MB against 4.81-5.85 s, 79-83 MB. (Before
# blobs were decoded in place, 2 MiB was the best size: 4 MiB cost 8 MB more.)
STAGING = (4 << 20) + 2 * ALIGN
# Runs of adjacent blobs a worker reads at once for such a file are at most
# RUN_MAX long (a sealed 4 MiB chunk fits), into one buffer per worker. 4 and 8 MiB
# runs restored as fast as 32 MiB ones (1 GiB set, local, cold).
RUN_MAX = (4 << 20) + ALIGN
# What a planned file or directory keeps of its tree node (content, name, inode, links
# go once planned; so does its type, known from the list it is in). A dict of five keys
# takes 184 bytes, of six or seven 272: a batch of 4,096 files holds one each.
FILE_KEYS = ("mode", "uid", "gid", "mtime", "size", "sparse")
# A pack whose blobs are written to files of less than this on average is "dense":
# restoring it is a few system calls per file (create, write, owner, mode, times,
# close), each of which hands the GIL over when other workers want it. Dense packs
# are restored by one worker, one after another: 20,000 files of ~10 KiB took
# 1.33-1.35 s with one worker against 1.67-1.72 s with four (local, cold; from
# SeaweedFS 1.95-2.25 against 2.52-2.93 s), and four workers made 26 futex calls
# per file.
DENSE_FILE_BYTES = 64 << 10
# Fetch one range covering all needed blobs of a pack unless that would read
# more than this factor of unneeded bytes; then fetch runs of adjacent blobs.
RANGE_WASTE = 2.0
# Files (and symlinks, devices) planned and restored at a time: a planned file costs
# ~1 KB of peak RSS, and two batches are in memory at once (one written while the
# next is planned), so they hold ~4 MB however many files the volume has.
# 20,000 small files restored into tmpfs, one batch at a time, alternating 4,096 with
# 16,384 (which held ~16 MB): from a file store 0.86-0.91 s and 50 MB against
# 0.87-0.91 s and 66 MB; from SeaweedFS 1.17-1.33 s and 69-70 MB against 1.15-1.21 s
# and 85 MB (8,192: 1.16-1.28 s, 75 MB).
BATCH_FILES = 2048
# Blobs planned at a time, as well: a planned blob costs ~0.5 KB (its entry and
# where it goes), and without this bound a batch of large files would plan all
# their blobs at once (16,384 files of 1 GiB: 16M blobs, ~8 GB). A batch ends
# after the file that reaches it (a file is planned whole, so one file larger
# than 32 GiB still plans all of its blobs).
BATCH_BLOBS = 32768
# Bytes of files planned at a time, as well: a batch of large files plans about a
# blob per MiB, and without this bound their plan grew with the volume up to
# BATCH_BLOBS (peak RSS restoring 200 files of 5 MiB 69 MB, 800 of them 70, 1,600
# 72). Two batches are in memory at once (one written while the next is planned),
# so a restore plans at most ~512 MiB of files however large the volume.
BATCH_BYTES = 256 << 20


@dataclass
class RestoreStats:
    files: int = 0  # regular files (hard links included), what a backup's ``files`` counts
    dirs: int = 0
    symlinks: int = 0
    special: int = 0  # fifos and device nodes (sockets are not restored)
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)  # 88 bytes a file instead of 352 with its __dict__
class _File:
    rel: str
    node: Node
    link_to: str | None = None  # hardlink to an earlier file
    failed: bool = False
    # One blob, one writer: created, written and given its metadata by the worker
    # that opens the blob, not created empty beforehand (a file creation is the
    # main cost of a small file, and the workers make them side by side).
    whole: bool = False
    done: bool = False  # written and its metadata applied
    # Large files are written front to back (direct I/O): their blobs' ids in order,
    # back to back (32 bytes a blob, where (id, location) objects took ~300; they are
    # looked up again when the file is written).
    blob_ids: bytearray = field(default_factory=bytearray)


@dataclass
class _Plan:
    dirs: list[tuple[str, Node]] = field(default_factory=list)
    files: list[_File] = field(default_factory=list)
    others: list[tuple[str, Node]] = field(default_factory=list)  # symlinks, fifos, devices
    # pack -> blob id -> (entry, [(file index, offset)])
    packs: dict[bytes, dict[bytes, tuple[PackEntry, list[tuple[int, int]]]]] = field(default_factory=dict)
    sequential: list[int] = field(default_factory=list)  # indexes of files restored front to back
    ordered: list[int] = field(default_factory=list)  # large files restored pack by pack (remote stores)
    missing: list[str] = field(default_factory=list)


def _selected(rel: str, paths: list[str] | None) -> tuple[bool, bool]:
    """(include this entry, descend into it)."""
    if not paths:
        return True, True
    for p in paths:
        if rel == p or rel.startswith(p + "/"):
            return True, True
        if p.startswith(rel + "/"):
            return False, True  # an ancestor of a selected path
    return False, False


def _check_paths(repo: Repository, snap: Snapshot, root: list[Node], paths: list[str]) -> None:
    """Refuse, before anything is written, ``--path`` values that are not in the snapshot.

    Follows each path down from the root's nodes, one tree per further component
    (the tree cache keeps the shared ones). A path below a directory whose tree
    cannot be read is not refused here: the restore names that directory instead.
    """
    missing: list[str] = []
    for p in paths:
        nodes = root
        parts = p.split("/")
        for depth, name in enumerate(parts):
            node = next((n for n in nodes if n["name"] == name), None)
            if node is None or (depth < len(parts) - 1 and node["type"] != "dir"):
                missing.append(p)
                break
            if depth < len(parts) - 1:
                try:
                    nodes = read_tree(repo, node["subtree"])
                except DrError:
                    break
    if missing:
        raise InvalidInput(f"not in snapshot {snap.short_id}: {', '.join(missing)}")


class _Walk:
    """The snapshot's trees, depth first, handed out as plans of at most ``batch`` files
    (and about ``batch_blobs`` blobs and ``batch_bytes`` bytes of files).

    A restore plans the next batch while it restores one, so its memory is
    bounded by two batches, not by the number of files in the volume (~1.2 KB per
    planned file) or by their size. Directories come before their contents, so a batch's
    directories exist before its files are written. What must outlive a batch
    is small: the first path of each hard-linked inode and the directories
    (their metadata is applied once all files are in).
    """

    def __init__(
        self,
        repo: Repository,
        snap: Snapshot,
        paths: list[str] | None,
        *,
        by_pack: bool,
        batch: int,
        batch_blobs: int = BATCH_BLOBS,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        if not snap.tree:
            raise DrError(f"snapshot {snap.short_id} has no file tree")
        self.repo = repo
        # Read here, so that a root that cannot be read fails before anything is written.
        self.root: list[Node] = read_tree(repo, snap.tree, keep=False)
        self.paths = paths
        self.by_pack = by_pack  # large files too are restored pack by pack (``OrderedFileWriter``)
        self.batch = batch
        self.batch_blobs = batch_blobs
        self.batch_bytes = batch_bytes
        self.planned_blobs = 0  # in the batch being planned
        self.planned_bytes = 0
        self.hardlinks: dict[tuple[int, int], str] = {}
        self.plan = _Plan()

    def plans(self) -> Iterator[_Plan]:
        yield from self._visit(self.root, "")
        yield self.plan

    def _visit_dir(self, tree_id: str, rel_dir: str) -> Iterator[_Plan]:
        try:
            nodes = read_tree(self.repo, tree_id, keep=False)  # each directory's tree once
        except DrError as e:
            # A damaged or missing directory tree fails that directory's contents; the rest restores.
            self.plan.missing.append(f"{rel_dir}/: cannot read the directory's contents: {e.message}")
            return
        yield from self._visit(nodes, rel_dir)

    def _visit(self, nodes: list[Node], rel_dir: str) -> Iterator[_Plan]:
        for n in nodes:
            rel = f"{rel_dir}/{n['name']}" if rel_dir else n["name"]
            include, descend = _selected(rel, self.paths)
            if n["type"] == "dir":
                if include or descend:
                    self.plan.dirs.append((rel, _slim(n)))
                if descend:
                    yield from self._visit_dir(n["subtree"], rel)
                continue
            if not include:
                continue
            if n["type"] != "file":
                self.plan.others.append((rel, n))
                continue
            self.planned_blobs += self._add_file(rel, n)
            if self.plan.files[-1].link_to is None:  # a hard link plans no content
                self.planned_bytes += int(n.get("size", 0))
            if (
                len(self.plan.files) + len(self.plan.others) >= self.batch
                or self.planned_blobs >= self.batch_blobs
                or self.planned_bytes >= self.batch_bytes
            ):
                yield self.plan
                self.plan = _Plan()
                self.planned_blobs = self.planned_bytes = 0

    def _add_file(self, rel: str, n: Node) -> int:
        """Plan one file; -> how many blobs it brought into the plan (none for a hard
        link to a file planned before, whose node lists the content all the same)."""
        plan = self.plan
        f = _File(rel, n)
        if n.get("links", 1) > 1 and "device" in n:
            key = (n["device"], n["inode"])
            if key in self.hardlinks:
                f.link_to = self.hardlinks[key]
                f.node = {}
                plan.files.append(f)
                return 0
            self.hardlinks[key] = rel
        idx = len(plan.files)
        plan.files.append(f)
        large = int(n.get("size", 0)) >= SEQUENTIAL_MIN
        sequential = large and not self.by_pack
        if large and self.by_pack:
            plan.ordered.append(idx)
        offset = planned = 0
        for hexid in n.get("content", []):
            bid = bytes.fromhex(hexid)
            loc = self.repo.index.get(bid)
            if loc is None:
                f.failed = True
                plan.missing.append(f"{rel}: blob {hexid[:16]} is missing from the repository")
                break
            planned += 1
            if sequential:
                f.blob_ids += bid
                offset += loc.entry.raw_length
                continue
            blobs = plan.packs.setdefault(loc.pack, {})
            if bid in blobs:
                blobs[bid][1].append((idx, offset))
            else:  # keyed by the entry's own id object: ``bid`` is not kept as a second copy
                blobs[loc.entry.id] = (loc.entry, [(idx, offset)])
            offset += loc.entry.raw_length
        if sequential and not f.failed:
            plan.sequential.append(idx)
        f.whole = not large and len(n.get("content", [])) == 1 and not f.failed
        if not f.failed and offset != n.get("size", 0):
            # The file changed size between the backup's stat and its read (snapshots
            # made before the backup recorded what it read): its content is what the
            # repository holds, and the file is restored at that size.
            log.info("%s: content is %d bytes, recorded size %s", rel, offset, n.get("size", 0))
            n = {**n, "size": offset}
        f.node = _slim(n)
        return planned


def _slim(n: Node) -> Node:
    """Only the node fields a restore needs once planned (content, name, inode, links go;
    a dict does not shrink when keys are deleted, a new one is smaller)."""
    return {k: n[k] for k in FILE_KEYS if k in n}


def _safe_mkdir(path: str) -> None:
    """Make directory ``path`` (its parent is a real directory of the target). Something
    else in the way (a file, a symlink: inside the target) is replaced, never followed."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            return
        os.unlink(path)  # the name only: a symlink's target or a hard link's inode is untouched
        os.mkdir(path, 0o700)


class _InTheWay(DrError):
    """A directory stands where a file is to be restored (it is not removed)."""


def _create(path: str) -> int:
    """Open ``path`` for writing as an empty regular file of its own: created, or an
    existing one emptied. Never through a symlink, and never into an inode that has
    another name: an existing hard link may be to a file outside the target, which
    writing in place (and ``_apply_meta``) would change. Such a link, a symlink or a
    special file in the way is removed first (only its name, inside the target); a
    directory in the way fails the file (``_InTheWay``)."""
    flags = os.O_WRONLY | os.O_NOFOLLOW
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    try:
        # O_NONBLOCK: a fifo put in the way fails to open (ENXIO) instead of blocking.
        fd = os.open(path, flags | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.EISDIR:
            raise _InTheWay(f"{path}: a directory is in the way (not replaced)") from None
        if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EACCES, errno.EPERM, errno.ETXTBSY):
            raise
        fd = -1  # a symlink, a fifo, a file we may not write: replaced below
    if fd >= 0:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            os.set_blocking(fd, True)
            os.ftruncate(fd, 0)
            return fd
        os.close(fd)
    os.unlink(path)
    return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)


def _write_whole(path: str, node: Node, data: bytes | memoryview, *, is_root: bool) -> None:
    """Create a file of one blob, write it, and give it its owner, mode and times. A file
    that cannot be written whole is removed, not left in part."""
    fd = _create(path)
    try:
        if node.get("sparse"):
            write_sparse(fd, data, 0)
            os.ftruncate(fd, len(data))  # a trailing hole
        else:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        _apply_meta(fd, node, is_root=is_root, follow=True)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


def _apply_meta(path: str | int, node: Node, *, is_root: bool, follow: bool = False) -> None:
    """Owner (as root), mode and times of ``path`` (or of an open file descriptor, with ``follow``)."""
    if is_root:
        with contextlib.suppress(OSError):
            os.chown(path, node.get("uid", -1), node.get("gid", -1), follow_symlinks=follow)
    if node.get("type") != "symlink":  # a planned node has no type: a file or a directory
        os.chmod(path, node.get("mode", 0o644))
    mtime = int(node.get("mtime", 0))
    with contextlib.suppress(NotImplementedError, OSError):
        os.utime(path, ns=(mtime, mtime), follow_symlinks=follow)


def _payload_room(e: PackEntry) -> int:
    """Scratch room ``Repository.open_blob_into`` uses for a blob: none if it is stored
    raw (decrypted in place), else its compressed payload."""
    payload = e.length - OVERHEAD
    return 0 if payload == e.raw_length + 1 else payload


def _blob_runs(
    index: Index, blob_ids: bytes | bytearray, max_range: int = RUN_MAX
) -> Iterator[tuple[bytes, int, int, list[PackEntry]]]:
    """Consecutive blobs stored back to back in one pack become one range: (pack, offset,
    length, entries). The blobs were found in the index when the file was planned."""
    run: tuple[bytes, int, int, list[PackEntry]] | None = None
    for i in range(0, len(blob_ids), ID_SIZE):
        loc = index.get(bytes(blob_ids[i : i + ID_SIZE]))
        if loc is None:
            raise DrError(f"blob {blob_ids[i : i + ID_SIZE].hex()[:16]} is missing from the index")
        e = loc.entry
        if run is not None:
            pack, start, length, entries = run
            if pack == loc.pack and start + length == e.offset and length + e.length <= max_range:
                entries.append(e)
                run = (pack, start, length + e.length, entries)
                continue
            yield run
        run = (loc.pack, e.offset, e.length, [e])
    if run is not None:
        yield run


def _ranges(blobs: list[PackEntry]) -> list[list[PackEntry]]:
    """Group a pack's needed entries into ranges to fetch, each a list sorted by
    offset: all of them in one range, unless that would read more than
    ``RANGE_WASTE`` times the bytes needed; then each run of adjacent entries.
    How much of a range is held in memory at once is the store's business
    (``ObjectStore.get_pieces``)."""
    blobs.sort(key=lambda e: e.offset)
    first, last = blobs[0], blobs[-1]
    span = last.offset + last.length - first.offset
    if span <= sum(e.length for e in blobs) * RANGE_WASTE:
        return [blobs]
    out: list[list[PackEntry]] = [[first]]
    for e in blobs[1:]:
        prev = out[-1][-1]
        if e.offset == prev.offset + prev.length:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def restore_snapshot(
    repo: Repository,
    snap: Snapshot,
    target: str | Path,
    *,
    paths: list[str] | None = None,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
    batch: int = BATCH_FILES,
    batch_blobs: int = BATCH_BLOBS,
    batch_bytes: int = BATCH_BYTES,
) -> RestoreStats:
    tune_allocator()
    root = os.path.abspath(target)
    norm_paths = None
    if paths:
        norm_paths = []
        for p in paths:
            q = snapshot_path(p, f"--path {p!r}")
            if not q:
                raise InvalidInput(
                    f"--path {p!r}: give a path inside the snapshot (leave --path out for all of it)"
                )
            norm_paths.append(q)
    # From a remote store every request costs a round trip and ~1.5 ms of client CPU:
    # restore pack by pack (one request per pack range) rather than file by file (one
    # per run of a file's adjacent blobs; backups interleave files in packs). A file
    # store answers a range read in microseconds, and file by file keeps fewer
    # files open at once.
    by_pack = not repo.store.local
    walk = _Walk(
        repo, snap, norm_paths, by_pack=by_pack, batch=batch, batch_blobs=batch_blobs, batch_bytes=batch_bytes
    )
    if norm_paths:
        _check_paths(repo, snap, walk.root, norm_paths)
    stats = RestoreStats()
    restore = _BatchRestore(repo, root, workers=workers, progress=progress, by_pack=by_pack)

    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        raise InvalidInput(f"{root}: cannot create the restore target: {e.strerror or e}") from None
    if not os.path.isdir(root) or os.path.islink(root):
        raise InvalidInput(f"{root}: target is not a directory")
    dirs: list[tuple[str, Node]] = []
    # A batch is started (its files created, its work queued for the workers), then
    # the batch before it is finished (waited for, its files settled), then the next
    # is planned: the workers go from the end of one batch into the next without
    # waiting for its last packs, and two batches are in memory at once.
    in_flight: list[tuple[_Plan, _Writes]] = []
    try:
        for plan in walk.plans():
            for rel, n in plan.dirs:
                _safe_mkdir(os.path.join(root, rel))
                dirs.append((rel, n))
            stats.dirs += len(plan.dirs)
            in_flight.append((plan, restore.start(plan)))
            del plan  # held by in_flight only, and dropped once finished
            if len(in_flight) > 1:
                restore.finish(*in_flight.pop(0), stats)
        while in_flight:
            restore.finish(*in_flight.pop(0), stats)
    except BaseException:
        for _, writes in in_flight:
            writes.abandon()  # nothing of a batch still writes when the error goes up
        raise
    finally:
        restore.close()
        repo.codec.close()
    for rel, n in sorted(dirs, key=lambda d: -d[0].count("/")):
        _apply_meta(os.path.join(root, rel), n, is_root=restore.is_root, follow=True)
    if snap.root is not None and not norm_paths:
        # The volume's own directory last (a full restore only: with --path the target is
        # where the user wants the selection, not the volume's mount point).
        _apply_meta(root, dict(snap.root), is_root=restore.is_root, follow=True)
    return stats


@dataclass
class _Writes:
    """A batch's work on the workers: its tasks, the flag that stops them taking more,
    its large files' writers and why each failed file failed (by its index in the plan)."""

    running: list[Future[int]]
    broken: threading.Event
    ordered: dict[int, OrderedFileWriter]
    file_errors: dict[int, str]

    def finish(self) -> dict[int, str]:
        """Wait for the work; -> why each failed file failed. A task that raised (a
        bug, not a bad blob) stops the rest and is raised once none still writes."""
        try:
            for fut in self.running:
                fut.result()  # bytes are counted by the files that come out whole (_settle_files)
        except BaseException:
            self.abandon()
            raise
        for idx, w in self.ordered.items():
            w.finish()
            if not w.complete and idx not in self.file_errors:
                self.file_errors[idx] = "incomplete: not every blob of the file could be written"
        return self.file_errors

    def abandon(self) -> None:
        """Stop the batch's workers taking more of its work, and wait for what they hold."""
        self.broken.set()
        wait(self.running)


class _BatchRestore:
    """Restores the files, links and special files of plan after plan (directories
    exist): ``start`` queues a plan's work behind the work of the plan before it,
    ``finish`` waits for it and settles the plan's files, in the order they were
    started. What outlives a batch: the worker threads (with their buffers), the
    staging buffers, the budget of early blobs and which paths failed (a hard link
    in a later batch must not link to a file that could not be restored)."""

    def __init__(
        self,
        repo: Repository,
        root: str,
        *,
        workers: int,
        progress: Callable[[int], None] | None,
        by_pack: bool,
    ) -> None:
        self.repo = repo
        self.root = root
        self.workers = workers
        self.progress = progress
        self.by_pack = by_pack
        self.is_root = os.geteuid() == 0
        self.staging = StagingPool()
        # What blobs of large files that arrive early may hold at once, over the
        # batches in flight.
        self.early = EarlyBudget()
        self.failed: set[str] = set()
        self._local = threading.local()
        # One pool for all batches: a worker's buffers (``_read_buffer``, the direct
        # I/O staging of ``restore_sequential``) are its thread's, made resident when
        # first used, and a pool for each batch made them again for every batch.
        # 20,000 small files (5 batches) into tmpfs, alternating 4x: 0.91-0.97 s and
        # 50.1-50.4 MB against 0.94-1.01 s and 50.6-50.8 MB.
        self._pool: ThreadPoolExecutor | None = None
        # Dense packs (``DENSE_FILE_BYTES``) go one after another through a lane of their
        # own, one thread, across batches as within one: with two batches in flight,
        # the next batch's chain waits for the one before rather than starting a
        # second thread (and its buffers) beside it.
        self._dense_lane: ThreadPoolExecutor | None = None

    def _workers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dr-restore")
        return self._pool

    def _dense_workers(self) -> ThreadPoolExecutor:
        if self._dense_lane is None:
            self._dense_lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dr-restore-dense")
        return self._dense_lane

    def close(self) -> None:
        for pool in (self._pool, self._dense_lane):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._dense_lane = None
        self.staging.close()

    def _read_buffer(self, size: int) -> mmap.mmap:
        """This worker's buffer for the runs of blobs it reads from a file store (a large
        file's ``_blob_runs``, the spans of a pack's pieces): the same memory for every
        run rather than an object of each run's size, and all
        of it from the start (``populated``), so memory does not creep up with the
        largest runs a restore happens to meet. A longer run (one blob of a
        repository chunked larger) gets a buffer for itself."""
        if size > RUN_MAX:
            return mmap.mmap(-1, size)
        buf: mmap.mmap | None = getattr(self._local, "read", None)
        if buf is None:
            buf = self._local.read = populated(RUN_MAX)
        return buf

    def start(self, plan: _Plan) -> _Writes:
        """Create the plan's files and queue its work for the workers (behind the work
        of a batch still running)."""
        self._create_files(plan)
        return self._start_writes(plan)

    def finish(self, plan: _Plan, writes: _Writes, stats: RestoreStats) -> None:
        """Wait for the plan's writes, then settle its files and make its special files.
        What failed is named here, in tree order: what failed as the plan was made
        (found while the batch before was written), then what failed writing it."""
        file_errors = writes.finish()
        stats.errors += plan.missing
        self._settle_files(plan, file_errors, stats)
        self._restore_others(plan, stats)

    def _create_files(self, plan: _Plan) -> None:
        """Empty files of the right size (holes where the data will go); a file of one
        blob is created by the worker that writes it. One that cannot be created is
        failed (named in the plan's errors), not the restore."""
        for f in plan.files:
            if f.link_to is not None or f.whole or f.failed:
                continue
            try:
                fd = _create(os.path.join(self.root, f.rel))
            except _InTheWay:
                f.failed = True
                plan.missing.append(f"{f.rel}: a directory is in the way (not replaced)")
                continue
            except OSError as e:
                f.failed = True
                plan.missing.append(f"{f.rel}: cannot create: {e.strerror or e}")
                continue
            try:
                os.ftruncate(fd, int(f.node.get("size", 0)))
            finally:
                os.close(fd)

    def _start_writes(self, plan: _Plan) -> _Writes:
        """Queue the work of fetching, opening and writing every blob of the plan on the
        workers; ``_Writes.finish`` waits for it."""
        repo, root, progress, is_root = self.repo, self.root, self.progress, self.is_root
        file_errors: dict[int, str] = {}
        early = self.early
        ordered = {
            i: OrderedFileWriter(
                os.path.join(root, plan.files[i].rel),
                int(plan.files[i].node.get("size", 0)),
                sparse=bool(plan.files[i].node.get("sparse")),
                pool=self.staging,
                budget=early,
            )
            for i in plan.ordered
            if not plan.files[i].failed
        }

        def fail_file(idx: int, reason: str) -> None:
            file_errors.setdefault(idx, reason)
            if idx in ordered:
                ordered[idx].fail()

        def place(plain: bytes | memoryview, targets: list[tuple[int, int]], fds: dict[int, int]) -> int:
            """Write one opened blob to every place it belongs; -> bytes written."""
            written = 0
            for idx, off in targets:
                f = plan.files[idx]
                if f.failed:
                    continue  # planned as failed (a blob is missing): never opened
                written += len(plain)
                large = ordered.get(idx)
                if large is not None:
                    try:
                        large.put(off, plain)
                    except OSError as e:
                        fail_file(idx, f"write failed: {e.strerror or e}")
                    except DrError as e:  # a blob of the file that waited sealed is bad
                        fail_file(idx, e.message)
                elif f.whole:
                    try:
                        _write_whole(os.path.join(root, f.rel), f.node, plain, is_root=is_root)
                        f.done = True
                    except _InTheWay:
                        fail_file(idx, "a directory is in the way (not replaced)")
                    except OSError as e:
                        fail_file(idx, f"write failed: {e.strerror or e}")
                else:
                    fd = fds.get(idx)
                    if fd is None:
                        fd = fds[idx] = os.open(os.path.join(root, f.rel), os.O_WRONLY | os.O_NOFOLLOW)
                    if f.node.get("sparse"):
                        write_sparse(fd, plain, off)
                    else:
                        os.pwrite(fd, plain, off)
            return written

        def restore_pack(item: tuple[bytes, dict[bytes, tuple[PackEntry, list[tuple[int, int]]]]]) -> int:
            pack_id, blobs = item
            name = pack_name(pack_id)
            written = 0
            by_entry = {e.id: targets for e, targets in blobs.values()}
            # The store hands each range over blob by blob (S3: one streamed GET; a file
            # store span by span into this worker's read buffer, which a remote store
            # would not use and so is not made for it).
            into = None if self.by_pack else memoryview(self._read_buffer(RUN_MAX))
            for entries in _ranges([e for e, _ in blobs.values()]):
                pieces = repo.store.get_pieces(name, [(e.offset, e.length) for e in entries], into=into)
                fds: dict[int, int] = {}  # files of several blobs, open while this range lasts
                try:
                    for i, ent in enumerate(entries):
                        targets = by_entry[ent.id]
                        try:
                            sealed = next(pieces)
                        except DrError as e:
                            for lost in entries[i:]:  # a read that failed ends the range
                                for idx, _ in by_entry[lost.id]:
                                    fail_file(idx, f"cannot read {name}: {e.message}")
                            break
                        large = ordered.get(targets[0][0]) if len(targets) == 1 else None
                        if large is not None:
                            # A large file's blob (most bytes of a restore): decoded
                            # straight into the file's staging buffer.
                            idx, off = targets[0]
                            try:
                                large.put_decoded(
                                    off,
                                    ent.raw_length,
                                    functools.partial(
                                        repo.open_blob_into, ent, sealed, what=f"blob in {name}"
                                    ),
                                    spare=_payload_room(ent),
                                    # A piece read on its own may wait sealed if early; a
                                    # view may be of a buffer the next piece is read into.
                                    held=len(sealed) if isinstance(sealed, bytes) else 0,
                                )
                            except DrError as e:
                                fail_file(idx, e.message)
                                continue
                            except OSError as e:
                                fail_file(idx, f"write failed: {e.strerror or e}")
                                continue
                            written += ent.raw_length
                            if progress:
                                progress(ent.raw_length)
                            del sealed
                            continue
                        try:
                            plain = repo.open_blob_view(ent, sealed, what=f"blob in {name}", rehash=False)
                        except DrError as e:
                            for idx, _ in targets:
                                fail_file(idx, e.message)
                            continue
                        written += place(plain, targets, fds)
                        if progress:
                            progress(len(plain) * len(targets))
                        # Dropped now, not when the next blob replaces them: a worker
                        # holds one blob at a time, not two (peak RSS).
                        del sealed, plain
                finally:
                    pieces.close()
                    for fd in fds.values():
                        os.close(fd)
            return written

        def restore_sequential(idx: int) -> int:
            f = plan.files[idx]
            fd = os.open(os.path.join(root, f.rel), os.O_WRONLY | os.O_NOFOLLOW)
            writer = SequentialWriter(fd, aligned_buffer(STAGING), sparse=bool(f.node.get("sparse")))
            try:
                for pack_id, start, length, run in _blob_runs(repo.index, f.blob_ids):
                    name = pack_name(pack_id)
                    with memoryview(self._read_buffer(length))[:length] as into:
                        data = into[: repo.store.get_range_into(name, start, into)]
                    for ent in run:
                        rel = ent.offset - start
                        writer.write_decoded(
                            ent.raw_length,
                            functools.partial(
                                repo.open_blob_into, ent, data[rel : rel + ent.length], what=f"blob in {name}"
                            ),
                            spare=_payload_room(ent),
                        )
                        if progress:
                            progress(ent.raw_length)
                    del data
                writer.close()
            except DrError as e:
                writer.release()
                file_errors.setdefault(idx, e.message)
            finally:
                os.close(fd)
            return writer.written

        # Packs whose blobs go to small files (DENSE_FILE_BYTES) are restored one after
        # another by one worker, the others side by side by the rest.
        dense: list[Callable[[], int]] = []
        work: list[tuple[int, Callable[[], int]]] = []
        for pack_id, blobs in plan.packs.items():
            restore_this = functools.partial(restore_pack, (pack_id, blobs))
            writes = sum(len(targets) for _, targets in blobs.values())
            if sum(e.raw_length * len(targets) for e, targets in blobs.values()) < DENSE_FILE_BYTES * writes:
                dense.append(restore_this)
            else:
                work.append((sum(e.length for e, _ in blobs.values()), restore_this))
        work += [
            (int(plan.files[i].node.get("size", 0)), functools.partial(restore_sequential, i))
            for i in plan.sequential
            if not plan.files[i].failed  # could not be created
        ]
        if not self.by_pack:
            work.sort(key=lambda w: -w[0])  # biggest first spreads the tail across workers
        # else: packs in the order the plan met them (files in tree order, each file's
        # blobs in order): about the order the backup wrote them, so that the blobs of
        # large files mostly arrive in file order and few wait in OrderedFileWriter.
        # Each worker takes the next piece of work when it is free: one task per worker,
        # not a future per file or pack up front (pool.map's ~1 KB each, which made the
        # peak RSS of a batch of 800 files 0.6 MB above one of 200).
        pending = iter(work)
        taking = threading.Lock()
        broken = threading.Event()  # a worker failed (a bug): the others take no more work

        def drain() -> int:
            done = 0
            while not broken.is_set():
                with taking:
                    item = next(pending, None)
                if item is None:
                    break
                try:
                    done += item[1]()
                except BaseException:
                    broken.set()
                    raise
            return done

        def chain() -> int:
            return sum(restore_this() for restore_this in dense if not broken.is_set())

        # The chain of dense packs on its lane, and the drains share the rest: as many
        # as there are workers, one fewer beside a chain (but one at least).
        running = [self._dense_workers().submit(chain)] if dense else []
        if work:
            pool = self._workers()
            running += [
                pool.submit(drain) for _ in range(min(max(self.workers - len(running), 1), len(work)))
            ]
        return _Writes(running, broken, ordered, file_errors)

    def _settle_files(self, plan: _Plan, file_errors: dict[int, str], stats: RestoreStats) -> None:
        """Name and remove what failed, make the hard links, give the files their metadata."""
        root = self.root
        for idx, reason in sorted(file_errors.items()):
            plan.files[idx].failed = True
            stats.errors.append(f"{plan.files[idx].rel}: {reason}")
        # A file that could not be restored is named in the errors and not left behind
        # as zeros or in part: one that was created empty beforehand is removed here; a
        # file of one blob removed itself if its write failed (``_write_whole``), and if
        # its blob failed it was never opened, nor was a file whose blobs are missing
        # from the index: whatever was there before is untouched.
        for idx in file_errors:
            f = plan.files[idx]
            if not f.whole:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(root, f.rel))
        self.failed.update(f.rel for f in plan.files if f.failed)

        for f in plan.files:
            p = os.path.join(root, f.rel)
            if f.link_to is not None:
                if f.link_to in self.failed:
                    stats.errors.append(
                        f"{f.rel}: not linked: {f.link_to} (the same file) could not be restored"
                    )
                    continue
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(p)  # a directory in the way stays, and fails the link
                    os.link(os.path.join(root, f.link_to), p, follow_symlinks=False)
                except OSError as e:
                    stats.errors.append(f"{f.rel}: not linked: {e.strerror or e}")
                    continue
                stats.files += 1
                continue
            if not f.failed:
                if not f.done:
                    _apply_meta(p, f.node, is_root=self.is_root, follow=True)
                stats.files += 1
                # What was restored, not what was written: a failed file's blobs are not
                # counted, a blob that fills several places of a file is.
                stats.bytes += int(f.node.get("size", 0))

    def _restore_others(self, plan: _Plan, stats: RestoreStats) -> None:
        """Symlinks, fifos and device nodes."""
        for rel, n in plan.others:
            p = os.path.join(self.root, rel)
            with contextlib.suppress(FileNotFoundError):
                if not os.path.isdir(p) or os.path.islink(p):
                    os.unlink(p)
            try:
                if n["type"] == "symlink":
                    os.symlink(n["target"], p)
                elif n["type"] == "fifo":
                    os.mkfifo(p, n.get("mode", 0o644))
                elif n["type"] in ("chardev", "blockdev"):
                    os.mknod(p, TYPE_BITS[n["type"]] | n.get("mode", 0o600), n.get("rdev", 0))
                else:
                    continue  # sockets are not restorable; they are recreated by their server
                _apply_meta(p, n, is_root=self.is_root, follow=False)
            except OSError as e:
                stats.errors.append(f"{rel}: {e.strerror or e}")
                continue
            if n["type"] == "symlink":
                stats.symlinks += 1
            else:
                stats.special += 1
