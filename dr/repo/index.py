"""The index: which blob is where (FORMAT.md §7), in a temporary SQLite database.

Built from every ``index/`` file at open. The same blob may be stored in
several packs (concurrent backups); the first copy seen wins and the others
are kept only so that prune can account for them.

It holds every blob of the repository: a million for 1 TiB in 1 MiB chunks.
Held in memory (dr did until 2026-11-29, compactly: 62 bytes a blob) it made
every process's memory grow with the repository, and a mover pod's memory
limit with it: ~60 MB for 1 TiB, ~0.5 MB more to restore the 4 GiB benchmark
set than the 1 GiB one. Here it is a private temporary SQLite database
(``sqlite3.connect("")``), whose page cache is capped at ``CACHE_KIB``: the
process's memory is the same whatever the repository's size, and the pages
beyond the cap live in a file in ``$TMPDIR`` (an emptyDir in dr's pods, sized
for it by ``mover.tmpSizeLimit``, 4Gi by default; ~165 bytes a blob, ~220 while loading with
SQLite's sorter files) and in the kernel's page cache, which the kernel may drop.
SQLite unlinks that file as soon as it makes it, so nothing is left behind,
not even by a crash. No memory mapping: mapped pages would count as the
process's own.

Four tables: ``packs`` (a pack's number, id and its index-file records,
``PackEntries``, which prune and check read whole), ``blobs`` (the first copy
of each blob: its pack's number and its entry, for lookups), ``files`` (the
pack ids each index file lists) and ``staged`` (the blobs ``add_files`` has
read, until it puts them into ``blobs`` at its end). One connection, used
under a lock by the threads of a backup (lookups and added packs) or a
restore; the sqlite3 module lets other threads run while SQLite works. No
rollback journal (it would cost writes, or memory that grows with a
change): a change that fails part-way cannot be undone, so the index then
refuses every later call.

Measured with blobs in packs of 16 (``bench/index_memory.py``, 2026-11-29):
peak RSS +0.1 MB for 1,000 to 10,000 blobs, +1.5 MB for 100,000 and for
1,000,000 (SQLite's sorter, ``SORT_MIN``); a million load in 4-5 s (in
memory: ~1 s); ``get`` 4.5-7 µs, ``in`` 2.5-4 µs (1-3 µs). A backup asks ``in``
about once per MiB read, and ``missing`` for the content blobs of the files it
finds unchanged, ``_IN_BATCH`` at a time; a restore asks ``get`` once per blob it plans.
Loaded from a store (``load_index``), index files are fetched a bounded amount
ahead of the database (``AHEAD_BYTES``): files of 50,000 blobs, peak RSS of
the load +12.8 MB for 5 of them and +12.9 MB for 40 (two million blobs), where
fetching them all at once took +20 and +120 MB.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from dr.errors import DrError
from dr.repo.format import (
    ID_SIZE,
    INDEX_ENTRY,
    BlobType,
    Codec,
    FormatError,
    PackEntries,
    PackEntry,
    decode_index,
    object_aad,
)
from dr.storage.base import ObjectInfo, ObjectStore

# A pack holds at most this many blobs (FORMAT.md §4 counts them in a u32; more
# than 2^24 of them, 16 MiB packs of 1-byte blobs, is not a pack dr writes).
ENTRY_BITS = 24
# SQLite's page cache for the index, in KiB: what the index costs in memory,
# whatever the repository's size. Lookups that miss it read a page from the
# kernel's page cache (~1 µs); a million blobs take ~165 MB of pages.
CACHE_KIB = 64
# Listed bytes of index files fetched ahead of the one going into the database
# (``load_index``): about one file of the most blobs one holds (50,000: ~2.5 MB)
# besides the one going in. Small files are fetched ``workers`` at a time whatever
# this is (a round trip each from S3).
AHEAD_BYTES = 2 << 20
# Rows read at a time when a whole table is walked (prune, check).
PAGE_ROWS = 512

_SCHEMA = (
    # ``entries`` last: a lookup that joins a pack for its id does not read them.
    "CREATE TABLE packs (no INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, entries BLOB NOT NULL)",
    "CREATE TABLE blobs (id BLOB PRIMARY KEY, pack INTEGER NOT NULL, type INTEGER NOT NULL,"
    " flag INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,"
    " raw_length INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE files (name TEXT PRIMARY KEY, packs BLOB NOT NULL) WITHOUT ROWID",
    # ``add_files``' blobs, in the order read, before they go into ``blobs`` in the order of their ids.
    "CREATE TABLE staged (id BLOB NOT NULL, pack INTEGER NOT NULL, type INTEGER NOT NULL,"
    " flag INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, raw_length INTEGER NOT NULL)",
)
_GET = (
    "SELECT p.id, b.type, b.flag, b.offset, b.length, b.raw_length"
    " FROM blobs b JOIN packs p ON p.no = b.pack WHERE b.id = ?"
)
# INSERT OR IGNORE: the first copy of a blob wins.
_ADD_BLOBS = "INSERT OR IGNORE INTO blobs VALUES (?6, ?7, ?1, ?2, ?3, ?4, ?5)"
_STAGE_BLOBS = "INSERT INTO staged VALUES (?6, ?7, ?1, ?2, ?3, ?4, ?5)"
# Many staged blobs go in sorted by id: a B-tree filled in key order appends to its last
# page, filled in random order (as index files list blobs) it moves cells about in every
# page; 1,000,000 blobs loaded in 4.1 s instead of 6.5. Fewer go in as read: SQLite
# sorts up to ~1 MB in memory (above, in its temporary files), which would make memory
# grow with the repository below that. ``rowid`` second: the first copy read wins.
SORT_MIN = 50_000
# A pack's blobs go in sorted by id, this many at a time: sorted whole, a pack of 20,000
# small files' blobs held ~2.5 MB of tuples while it went in.
SORT_RUN = 1024
# Ids per ``missing`` query: SQLite takes at most 32,766 parameters (999 before 3.32).
_IN_BATCH = 500
_UNSTAGE = "INSERT OR IGNORE INTO blobs SELECT id, pack, type, flag, offset, length, raw_length FROM staged"
_BLOB_TYPES = tuple(sorted(BlobType))
# The dr.yaml key that sizes $TMPDIR (the /tmp emptyDir) in dr's pods: named when it is full.
TMP_SETTING = "mover.tmpSizeLimit"


@dataclass(frozen=True, slots=True)
class BlobLocation:
    pack: bytes
    entry: PackEntry


class IndexDatabaseError(DrError):
    """The index's temporary database failed (no room or no writable directory for it)."""


def _database_error(
    e: sqlite3.Error, what: str = "the repository index's temporary database"
) -> IndexDatabaseError:
    message = f"{what} (a file in {_temp_place()}) failed: {e}"
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        # No room left: in dr's pods that is the /tmp emptyDir, sized by the config.
        message += (
            f" (the index needs ~220 bytes a blob; in dr's pods that is /tmp: raise {TMP_SETTING} in dr.yaml)"
        )
    return IndexDatabaseError(message)


def _temp_place() -> str:
    """Where SQLite makes its temporary files (its Unix search order), for messages."""
    for var in ("SQLITE_TMPDIR", "TMPDIR"):
        if os.environ.get(var):
            return f"${var} = {os.environ[var]}"
    return "/var/tmp, /usr/tmp or /tmp"


class Index:
    """Which pack holds each blob, kept in a temporary database of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Why the index is not to be used any more: a change failed part-way (below).
        self._broken: str | None = None
        with self._using():
            # isolation_level=None: no implicit transactions; the database lives as long
            # as this object, so there is nothing to make durable (journal and syncs off).
            self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)
            for pragma in (
                f"cache_size = -{CACHE_KIB}",
                "journal_mode = OFF",
                "synchronous = OFF",
                "temp_store = FILE",
                "mmap_size = 0",
                "locking_mode = EXCLUSIVE",
            ):
                self._db.execute(f"PRAGMA {pragma}")
            for statement in _SCHEMA:
                self._db.execute(statement)
        # Closed as soon as the index is dropped (prune and check reload it): the sqlite3
        # module's connection is in a reference cycle of its own (its statement cache), so
        # left to itself it kept its file open, and its room in $TMPDIR, until a collection
        # of cycles, and for good once frozen (``gc.freeze``). Hence too ``packs`` and
        # ``files`` are made on access: held here, they made the index a cycle as well.
        # Not at exit: a daemon thread may be using it still (a prefetch the command did not
        # wait for), and closing it under that thread's feet crashed the interpreter. The
        # process's end closes the file.
        weakref.finalize(self, self._db.close).atexit = False

    @property
    def packs(self) -> PackMap:
        return PackMap(self)

    @property
    def files(self) -> FileMap:
        return FileMap(self)

    @contextmanager
    def _using(self) -> Iterator[None]:
        """Hold the lock; a failure of SQLite becomes one line naming the database's place."""
        with self._lock:
            if self._broken is not None:
                raise self._unusable()
            try:
                yield
            except sqlite3.Error as e:
                raise _database_error(e) from None

    def _unusable(self) -> IndexDatabaseError:
        return IndexDatabaseError(f"the repository index is unusable: {self._broken}")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the lock, in one transaction: a statement outside one would be a
        transaction of its own, its pages written out at each commit.

        A transaction that fails leaves what it wrote: without a journal SQLite cannot
        roll back (its ROLLBACK "behaves in an undefined way"; here it undid nothing).
        The index then refuses every later call rather than answer from half a change:
        whatever failed fails the command that was changing it."""
        with self._using():
            try:
                self._db.execute("BEGIN")
                yield
                self._db.execute("COMMIT")
            except BaseException as e:
                self._failed(e)
                raise

    def _failed(self, e: BaseException) -> None:
        """Mark the index unusable after a change that failed part-way (under the lock).
        Said again by every later call: the thread whose change failed is not always the
        one whose error a command reports (a backup's readers look blobs up meanwhile)."""
        if self._broken is not None:
            return
        if isinstance(e, sqlite3.Error):
            self._broken = _database_error(e, "its temporary database").message
        else:
            self._broken = f"a change to it failed part-way ({getattr(e, 'message', None) or e!r})"

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._using():
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """One row, or None. What each lookup is: ``_using`` written out, since its
        generator-based context manager took ~0.8 µs of a ~3.4 µs ``in``."""
        with self._lock:
            if self._broken is not None:
                raise self._unusable()
            try:
                return self._db.execute(sql, args).fetchone()
            except sqlite3.Error as e:
                raise _database_error(e) from None

    def __len__(self) -> int:
        return int(self._one("SELECT count(*) FROM blobs")[0])

    def __contains__(self, blob_id: bytes) -> bool:
        return self._one("SELECT 1 FROM blobs WHERE id = ?", (blob_id,)) is not None

    def missing(self, blob_ids: Sequence[bytes]) -> set[bytes]:
        """Those of ``blob_ids`` the index does not hold: one query per few hundred ids
        (an incremental backup asks for every content blob of every unchanged file; one
        query each cost ~4.6 us, 1.9 s of 400,000 one-line files' 14 s)."""
        found: set[bytes] = set()
        for start in range(0, len(blob_ids), _IN_BATCH):
            part = blob_ids[start : start + _IN_BATCH]
            sql = f"SELECT id FROM blobs WHERE id IN ({','.join('?' * len(part))})"
            found.update(row[0] for row in self._query(sql, part))
        return set(blob_ids) - found

    def get(self, blob_id: bytes) -> BlobLocation | None:
        row = self._one(_GET, (blob_id,))
        if row is None:
            return None
        pack_id, t, flag, offset, length, raw_length = row
        return BlobLocation(pack_id, PackEntry(_BLOB_TYPES[t], flag, offset, length, raw_length, blob_id))

    def add_pack(self, pack_id: bytes, entries: Sequence[PackEntry]) -> None:
        compact = _checked(pack_id, entries)
        with self._writing():
            self._register(pack_id, compact)

    def _register(self, pack_id: bytes, compact: PackEntries, add: str = _ADD_BLOBS) -> None:
        """Add a pack and its blobs (under the lock, in a transaction; ``add``: into
        ``blobs``, or ``staged``); nothing if the pack is listed already (same name, same
        content: the first listing has it all)."""
        added = self._db.execute(
            "INSERT OR IGNORE INTO packs (id, entries) VALUES (?, ?)", (pack_id, compact.raw)
        )
        if not added.rowcount:
            return
        no = added.lastrowid
        # In the order of their ids, a run at a time (sorted is stable: of two copies in
        # one pack the first stays first): the B-tree's pages are then met one after
        # another, not at random through a page cache of CACHE_KIB. A pack of 1,600 small
        # files' blobs went into an index of 20,000 in 4.4 ms instead of 6.6, one of 20,000
        # into an empty one in 48 ms instead of 79; the small-file benchmark set's index
        # (13 packs of 1,600) loads in 47 ms instead of 74.
        records = INDEX_ENTRY.iter_unpack(compact.raw)
        while run := sorted(islice(records, SORT_RUN), key=_record_id):
            self._db.executemany(add, ((*record, no) for record in run))

    def add_file(self, name: str, packs: Iterable[tuple[bytes, Sequence[PackEntry]]]) -> None:
        """Add one index file's packs, and its name and the packs it lists."""
        ids = []
        for pack_id, entries in packs:
            self.add_pack(pack_id, entries)
            ids.append(pack_id)
        with self._writing():
            self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?)", (name, b"".join(ids)))

    def add_files(self, files: Iterable[tuple[str, Sequence[tuple[bytes, Sequence[PackEntry]]]]]) -> None:
        """Add whole index files: what opening a repository does. Each file's packs are
        added as it comes, its blobs staged; they are looked up once all files are in."""
        try:
            for name, packs in files:
                checked = [(pack_id, _checked(pack_id, entries)) for pack_id, entries in packs]
                with self._writing():
                    for pack_id, compact in checked:
                        self._register(pack_id, compact, _STAGE_BLOBS)
                    ids = b"".join(pack_id for pack_id, _ in checked)
                    self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?)", (name, ids))
            with self._writing():
                (staged,) = self._db.execute("SELECT max(rowid) FROM staged").fetchone()
                order = "id, rowid" if (staged or 0) >= SORT_MIN else "rowid"
                self._db.execute(f"{_UNSTAGE} ORDER BY {order}")
                self._db.execute("DELETE FROM staged")
        except BaseException as e:
            # The files read so far are in, their blobs staged but not looked up (and
            # a later add_files would take them in): half an index.
            with self._lock:
                self._failed(e)
            raise

    def blob_ids(self, blob_type: BlobType | None = None) -> Iterator[bytes]:
        """Every blob id (of one type), in the order of the ids, a page of rows at a time."""
        typed = "" if blob_type is None else f"type = {int(blob_type)}"
        return (bid for (bid,) in self._walk("blobs", "id", "id", typed))

    def _walk(self, table: str, key: str, columns: str, where: str = "") -> Iterator[Any]:
        """The rows of ``table`` (those ``where`` holds for) in ``key`` order, a page at a
        time: no more in memory whatever its size."""
        last: Any = None
        while True:
            conditions = [c for c in (where, "" if last is None else f"{key} > ?") if c]
            where_sql = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            rows = self._query(
                f"SELECT {columns} FROM {table}{where_sql} ORDER BY {key} LIMIT {PAGE_ROWS}",
                () if last is None else (last,),
            )
            yield from rows
            if len(rows) < PAGE_ROWS:
                return
            last = rows[-1][0]


def _record_id(record: tuple[Any, ...]) -> bytes:
    return record[-1]  # type: ignore[no-any-return]


def _checked(pack_id: bytes, entries: Sequence[PackEntry]) -> PackEntries:
    """A pack's entries, refused before anything is written if there are too many."""
    compact = PackEntries.of(entries)
    if len(compact) >> ENTRY_BITS:
        raise FormatError(f"pack {pack_id.hex()[:16]}: more than {1 << ENTRY_BITS} blobs")
    return compact


class PackMap(Mapping[bytes, PackEntries]):
    """The index's packs: pack id -> its entries (every copy of every blob), in the order added."""

    def __init__(self, index: Index) -> None:
        self._index = index

    def __getitem__(self, pack_id: bytes) -> PackEntries:
        row = self._index._one("SELECT entries FROM packs WHERE id = ?", (pack_id,))
        if row is None:
            raise KeyError(pack_id)
        return PackEntries(row[0])

    def __contains__(self, pack_id: object) -> bool:
        return self._index._one("SELECT 1 FROM packs WHERE id = ?", (pack_id,)) is not None

    def __iter__(self) -> Iterator[bytes]:
        return (pack_id for _, pack_id in self._index._walk("packs", "no", "no, id"))

    def __len__(self) -> int:
        return int(self._index._one("SELECT count(*) FROM packs")[0])

    def items(self) -> PackItems:  # type: ignore[override]
        return PackItems(self)


class PackItems(Iterable[tuple[bytes, PackEntries]]):
    """(pack id, entries) pairs in one walk, not one query per pack."""

    def __init__(self, packs: PackMap) -> None:
        self._packs = packs

    def __iter__(self) -> Iterator[tuple[bytes, PackEntries]]:
        for _, pack_id, raw in self._packs._index._walk("packs", "no", "no, id, entries"):
            yield pack_id, PackEntries(raw)

    def __len__(self) -> int:
        return len(self._packs)


class FileMap(Mapping[str, list[bytes]]):
    """The index files read or written: name -> the ids of the packs it lists."""

    def __init__(self, index: Index) -> None:
        self._index = index

    def __getitem__(self, name: str) -> list[bytes]:
        row = self._index._one("SELECT packs FROM files WHERE name = ?", (name,))
        if row is None:
            raise KeyError(name)
        raw = row[0]
        return [raw[i : i + ID_SIZE] for i in range(0, len(raw), ID_SIZE)]

    def __iter__(self) -> Iterator[str]:
        return (name for (name,) in self._index._walk("files", "name", "name"))

    def __len__(self) -> int:
        return int(self._index._one("SELECT count(*) FROM files")[0])


def load_index(
    store: ObjectStore,
    codec: Codec,
    files: Sequence[ObjectInfo],
    workers: int = 8,
    on_error: Callable[[str, DrError], None] | None = None,
    on_file: Callable[[], None] | None = None,
) -> Index:
    """Fetch and decode index files (``files``: as the store lists them, in the order
    they are to go in) in parallel, a bounded amount ahead of the database
    (``_fetched_ahead``).

    ``on_error``: an index file that cannot be read or decoded is passed to it and left
    out, instead of failing the whole load (``check`` reports each and checks the rest).
    ``on_file``: called as each file has gone in (or been passed to ``on_error``): a
    progress line counts them."""
    index = Index()

    def fetch(name: str) -> tuple[str, list[tuple[bytes, PackEntries]]]:
        sealed = store.get(name)
        hexname = name.rsplit("/", 1)[-1]
        plain = codec.decode(sealed, object_aad("index", hexname), what=name)
        return name, list(decode_index(plain, name))

    def fetch_or_report(name: str) -> tuple[str, list[tuple[bytes, PackEntries]]] | None:
        try:
            return fetch(name)
        except DrError as e:
            assert on_error is not None
            on_error(name, e)
            return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        if on_error is None:
            index.add_files(_counted(_fetched_ahead(pool, fetch, files, workers), on_file))
        else:
            fetched = _counted(_fetched_ahead(pool, fetch_or_report, files, workers), on_file)
            index.add_files(f for f in fetched if f is not None)
    return index


_Fetched = TypeVar("_Fetched")


def _fetched_ahead(
    pool: ThreadPoolExecutor,
    fetch: Callable[[str], _Fetched],
    files: Sequence[ObjectInfo],
    workers: int,
    ahead_bytes: int = AHEAD_BYTES,
) -> Iterator[_Fetched]:
    """``fetch`` of each file on ``pool``, handed out in order. While the consumer
    works on one, the next ones are fetched: at most ``workers`` of them and
    ``ahead_bytes`` of listed size (one at least, however large). What is fetched
    waits, decoded, until the consumer takes it, and the database takes a large
    index file in slower than a store hands it over: ``pool.map`` fetched them
    all at once, and a million blobs in 20 files peaked 77 MB above the
    process's size (51 MB with one worker)."""
    pending: deque[tuple[int, Future[_Fetched]]] = deque()
    held = 0  # listed bytes of the files in ``pending``
    queued = 0  # files submitted

    def fill() -> None:
        nonlocal held, queued
        while queued < len(files) and len(pending) < workers:
            info = files[queued]
            if pending and held + info.size > ahead_bytes:
                return
            pending.append((info.size, pool.submit(fetch, info.name)))
            held += info.size
            queued += 1

    try:
        fill()
        while pending:
            size, fut = pending.popleft()
            held -= size
            fill()  # the next fetches run while the consumer takes this one in
            yield fut.result()
    finally:
        for _, fut in pending:  # the consumer stopped (an error): fetch no more
            fut.cancel()


def _counted(items: Iterator[_Fetched], on_item: Callable[[], None] | None) -> Iterator[_Fetched]:
    """``items``, with ``on_item()`` called as the consumer asks for the next one: the
    one before has been taken in."""
    if on_item is None:
        return items
    return _calling_after_each(items, on_item)


def _calling_after_each(items: Iterator[_Fetched], on_item: Callable[[], None]) -> Iterator[_Fetched]:
    for item in items:
        yield item
        on_item()
