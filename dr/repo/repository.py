"""A repository: an object store plus the master key that opens it (FORMAT.md).

Owns: ``init`` (config + first key slot), ``open`` (unlock a key slot and
read the config), the index, reading blobs, saving and loading the named JSON
objects (snapshots, locks, reports), and key-slot management. Higher-level
operations (backup a directory, restore, check, forget, prune) live in their
own modules and use this class.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from dr.crypto.keyring import KeySlot, MasterKey, UnreadableSlot, new_slot, shown, unlock, unwrap_slot
from dr.crypto.providers.base import KeyProvider, KeyProviderError
from dr.errors import DrError, InvalidInput
from dr.repo.chunker import ChunkerParams
from dr.repo.format import (
    FORMAT_VERSION,
    BlobType,
    Codec,
    FormatError,
    PackEntry,
    blob_aad,
    config_aad,
    config_header,
    object_aad,
    pack_name,
    split_config,
)
from dr.repo.index import Index, load_index
from dr.repo.pack_writer import BlobSaver, PackUploader
from dr.repo.tree_cache import TreeReader
from dr.storage.base import ObjectExists, ObjectInfo, ObjectNotFound, ObjectStore, StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# How far a long read has got: ``(what, done, total)`` — "snapshots", 1234, 3650 — told
# with ``done`` 0 when the read starts and last with ``done == total`` when it has ended
# (not when it fails part-way: the caller ends what it showed), from the thread that
# reads. What a terminal's progress line shows (``dr.cli.progress.read_progress``).
ReadProgress = Callable[[str, int, int], None]

PACK_SIZE = 16 << 20
OBJECT_KINDS = ("snapshots", "locks", "reports", "index")
# The largest object of a kind that dr writes or reads (sealed bytes; FORMAT.md §8-§10):
# a damaged or planted object must not make a reader allocate whatever it claims.
# A snapshot of a backup lists its streams' blob ids, ~34 bytes sealed per 1 MiB
# chunk: 1 TiB of resource and dump streams makes a 33 MiB snapshot, so 128 MiB
# leaves room for ~4 TiB. Plaintext may be up to 4x that (ids compress about 2x).
MAX_OBJECT_SIZE = {"snapshots": 128 << 20, "reports": 128 << 20, "locks": 1 << 20}
PLAINTEXT_FACTOR = 4
# What load_object reads of an object it has no listed size for, before asking its size.
FIRST_READ = 256 << 10
# How often keys/ is listed when slots vanish while they are read (read_slots).
SLOT_LISTINGS = 4
# A key slot is ~500 bytes of JSON (a KMS ciphertext included).
MAX_SLOT_SIZE = 64 << 10


class RepositoryError(DrError):
    pass


class Lease(Protocol):
    """A lock this process holds on the repository (``locks.Lock``)."""

    def check(self) -> None:
        """Raise if the lock can no longer be counted on (expired unrefreshed, or removed)."""


@dataclass(frozen=True)
class RepoConfig:
    id: str
    created: str
    chunker: ChunkerParams
    pack_size: int = PACK_SIZE
    version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": self.version,
                "id": self.id,
                "created": self.created,
                "chunker": {
                    "algorithm": "fastcdc2020",
                    "min": self.chunker.min_size,
                    "avg": self.chunker.avg_size,
                    "max": self.chunker.max_size,
                },
                "packSize": self.pack_size,
                "compression": "zstd",
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes, seed: int) -> RepoConfig:
        try:
            d = json.loads(raw)
            ch = d["chunker"]
            if ch.get("algorithm") != "fastcdc2020":
                raise FormatError(f"config: unknown chunker {ch.get('algorithm')!r}")
            return cls(
                id=str(d["id"]),
                created=str(d["created"]),
                chunker=ChunkerParams(int(ch["min"]), int(ch["avg"]), int(ch["max"]), seed),
                pack_size=int(d["packSize"]),
                version=int(d["version"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"config: malformed ({e})") from None


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Repository:
    store: ObjectStore
    master: MasterKey
    config: RepoConfig
    slot: KeySlot | None = None
    compression_level: int = 1
    unlock_notes: list[str] = field(default_factory=list)
    _index: Index | None = None
    _index_loading: Future[Index] | None = None  # prefetch_index
    _trees: TreeReader | None = None
    # Locks held on this repository (``hold``): checked before every write that commits
    # data (an index file, a snapshot), so that a process whose lock lapsed while it was
    # paused does not commit packs a prune has deleted meanwhile.
    _leases: list[Lease] = field(default_factory=list)
    # kind -> {name: size} from the last list_objects(kind)
    _listed_sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    # Told how far the reads of every object of a kind and of the index have got
    # (``ReadProgress``): on S3, one request per snapshot, thousands after a year.
    read_progress: ReadProgress | None = None

    def __post_init__(self) -> None:
        self.codec = Codec(self.master.sealer(), level=self.compression_level)

    # ------------------------------------------------------------------ locks held

    def hold(self, lease: Lease) -> None:
        self._leases.append(lease)

    def unhold(self, lease: Lease) -> None:
        if lease in self._leases:
            self._leases.remove(lease)

    def check_leases(self) -> None:
        """Raise (``locks.LockLost``) if a lock this process holds has lapsed or is gone."""
        for lease in list(self._leases):
            lease.check()

    # ------------------------------------------------------------------ create / open

    @classmethod
    def init(
        cls,
        store: ObjectStore,
        provider: KeyProvider,
        *,
        chunker: ChunkerParams | None = None,
        pack_size: int = PACK_SIZE,
    ) -> Repository:
        """Create a repository in an empty location, with one key slot wrapped by ``provider``."""
        try:
            store.stat("config")
            raise RepositoryError(f"{store.url}: a repository already exists here")
        except ObjectNotFound:
            pass
        master = MasterKey.generate()
        base = chunker or ChunkerParams()
        params = ChunkerParams(base.min_size, base.avg_size, base.max_size, master.chunker_seed())
        cfg = RepoConfig(id=os.urandom(32).hex(), created=iso(now_utc()), chunker=params, pack_size=pack_size)
        # The slot first: a config without a slot would be unopenable forever.
        slot = new_slot(master, cfg.id, provider)
        header = config_header()
        codec = Codec(master.sealer())
        _, sealed = codec.encode(cfg.to_json(), config_aad(header))
        store.put(slot.object_name, slot.to_json())
        try:
            store.put("config", header + sealed)
        except ObjectExists:
            store.delete(slot.object_name)
            raise RepositoryError(f"{store.url}: a repository was created here concurrently") from None
        except Exception:
            # A slot without its config wraps a key nothing will use; left behind, it would
            # join the repository the next `dr repo init` creates and fail every rotation.
            # But a write that failed may still have landed (a lost answer): then the slot
            # is the only way into the repository, and stays.
            landed = _holds(store, "config", header + sealed)
            if landed is False:
                try:
                    store.delete(slot.object_name)
                except Exception as e:  # the store may be what failed: keep the first error
                    log.debug("could not delete key slot %s after the failed init: %s", slot.id, e)
            if not landed:
                raise
            log.info("the config write reported a failure but landed: repository created")
        log.info("created repository %s at %s", cfg.id[:8], store.url)
        return cls(store, master, cfg, slot)

    @classmethod
    def open(
        cls,
        store: ObjectStore,
        providers: Callable[[str], KeyProvider | None],
        *,
        compression_level: int = 1,
        preferred: Callable[[str], bool] | None = None,
    ) -> Repository:
        """Unlock the first key slot that a provider can unwrap; slots of the providers
        ``preferred`` accepts (the configured ones) first (``keyring.unlock``)."""
        try:
            raw = store.get("config")
        except ObjectNotFound:
            raise RepositoryError(
                f"{store.url}: no repository here (no config object); create one with `dr repo init`"
            ) from None
        header, sealed = split_config(raw)
        slots, unreadable = read_slots(store)
        result: dict[str, RepoConfig] = {}

        def check(master: MasterKey) -> bool:
            try:
                plain = Codec(master.sealer()).decode(sealed, config_aad(header), what="config")
            except FormatError:
                return False
            result["cfg"] = RepoConfig.from_json(plain, master.chunker_seed())
            return True

        unlocked = unlock(slots, providers, check, unreadable=unreadable, preferred=preferred)
        cfg = result["cfg"]
        if unlocked.slot.repository != cfg.id:
            raise RepositoryError(f"key slot {unlocked.slot.id} belongs to another repository")
        notes = [f"slot {a.slot[:8]} {a.provider}: {a.reason}" for a in unlocked.attempts]
        return cls(store, unlocked.master, cfg, unlocked.slot, compression_level, notes)

    # ------------------------------------------------------------------ index and blobs

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def index(self) -> Index:
        if self._index is None:
            loading = self._index_loading
            if loading is None:
                self._index = self._load_index()
            else:
                try:
                    self._index = loading.result()  # a failed load raises here, as it would have
                finally:
                    self._index_loading = None
        return self._index

    def prefetch_index(self) -> None:
        """Start loading the index on a thread of its own; ``index`` waits for it.

        For a command that has just written its lock (``Lock(..., prefetch_index=True)``)
        and lists the other locks meanwhile: from S3 each is a round trip or two
        that the other does not need. A daemon thread: a command that stops
        first (its lock conflicts) does not wait for it."""
        if self._index is not None or self._index_loading is not None:
            return
        loading: Future[Index] = Future()

        def load() -> None:
            try:
                loading.set_result(self._load_index())
            except BaseException as e:  # handed to whoever reads ``index``
                loading.set_exception(e)

        self._index_loading = loading
        threading.Thread(target=load, name="dr-index", daemon=True).start()

    def _load_index(self, on_error: Callable[[str, DrError], None] | None = None) -> Index:
        """The index files as listed (their sizes bound what is fetched ahead, ``load_index``)."""
        files = self.listed("index/")
        report = self.read_progress
        taken: Callable[[], None] | None = None
        if report is not None:
            total = len(files)
            report("index", 0, total)
            count = iter(range(1, total))

            def count_file() -> None:
                # The last file in is not the end: its blobs are looked up after it.
                if (done := next(count, None)) is not None:
                    report("index", done, total)

            taken = count_file

        index = load_index(self.store, self.codec, files, workers=self._index_fetchers(), on_error=on_error,
                           on_file=taken)  # fmt: skip
        if report is not None:
            report("index", len(files), len(files))
        return index

    def _index_fetchers(self) -> int:
        """Index files fetched at once: from S3 or GCS each is a round trip, which eight
        overlap; a file store answers in microseconds and the work is the decryption,
        which two threads do as fast on two cores with less memory (the index load's
        peak RSS with 7 and 22 small files, 8 runs each: ~700 and ~800 KB above the
        start with eight threads, ~640 and ~650 with two)."""
        return 2 if self.store.local else 8

    def drop_index(self) -> None:
        """Forget the index, loaded or on its way (a prefetch left running is not waited
        for), and the tree reader built on it."""
        self._index = None
        self._index_loading = None
        self._trees = None

    def reload_index(self, on_error: Callable[[str, DrError], None] | None = None) -> Index:
        """The index read afresh; ``on_error``: see ``load_index`` (bad files left out)."""
        self.drop_index()
        if on_error is not None:
            self._index = self._load_index(on_error)
        return self.index

    @property
    def trees(self) -> TreeReader:
        """Tree blobs, fetched a run at a time and cached (``dr.repo.tree_cache``)."""
        if self._trees is None:
            self._trees = TreeReader(
                self.store, self.index, lambda e, sealed, what: self.open_blob(e, sealed, what=what)
            )
        return self._trees

    def listed(self, prefix: str) -> list[ObjectInfo]:
        """The objects under ``prefix`` as the store lists them, by name."""
        return sorted(self.store.list(prefix), key=lambda o: o.name)

    def list_names(self, prefix: str) -> list[str]:
        return [o.name for o in self.listed(prefix)]

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return self.master.blob_id(data)

    def open_blob(
        self, entry: PackEntry, sealed: bytes | memoryview, *, what: str, rehash: bool = True
    ) -> bytes:
        """Decrypt, decompress and verify one blob.

        The AEAD tag, whose associated data holds the blob's id and type, already
        proves the blob is the one stored under that id, unmodified. ``rehash``
        also recomputes the keyed hash of the plaintext — a check of the writer,
        not of the storage: ``check --read-data`` does it, restore skips it
        (it costs a third of restore's CPU time).
        """
        plain = self.open_blob_view(entry, sealed, what=what, rehash=rehash)
        return plain if isinstance(plain, bytes) else bytes(plain)

    def open_blob_view(
        self, entry: PackEntry, sealed: bytes | memoryview, *, what: str, rehash: bool = True
    ) -> bytes | memoryview:
        """``open_blob`` without copying an uncompressed blob out of its decrypted buffer."""
        plain = self.codec.decode_view(
            sealed, blob_aad(entry.type, entry.id), what=what, max_size=entry.raw_length
        )
        if len(plain) != entry.raw_length or (rehash and self.master.blob_id(plain) != entry.id):
            raise FormatError(f"{what}: content does not match its id")
        return plain

    def open_blob_into(
        self,
        entry: PackEntry,
        sealed: bytes | memoryview,
        out: memoryview,
        spare: memoryview | None,
        *,
        what: str,
    ) -> None:
        """Open a blob straight into ``out[1:]`` (``raw_length`` bytes); ``out[0]`` is
        overwritten, ``spare`` may be (``Codec.decode_into``). Verified by its AEAD
        tag, not rehashed (see ``open_blob``)."""
        if len(out) != entry.raw_length + 1:
            raise ValueError("out must be the blob's length plus one byte")
        self.codec.decode_into(sealed, blob_aad(entry.type, entry.id), out, what=what, spare=spare)

    def read_blob(self, blob_id: bytes, *, keep: bool = True) -> bytes:
        """A blob's plaintext; a tree through the tree reader (``keep``: see ``TreeReader.read``)."""
        loc = self.index.get(blob_id)
        if loc is None:
            raise RepositoryError(f"blob {blob_id.hex()[:16]} is not in the index")
        if loc.entry.type == BlobType.TREE:
            return self.trees.read(loc, keep=keep)
        name = pack_name(loc.pack)
        sealed = self.store.get_range(name, loc.entry.offset, loc.entry.length)
        return self.open_blob(loc.entry, sealed, what=f"blob {blob_id.hex()[:16]} in {name}")

    def saver(self, *, workers: int = 2, index_every: int = 8) -> Saver:
        """A blob-saving session (use as a context manager; ``flush`` at the end)."""
        # A file store writes a pack in ~15 ms (direct I/O), about the time the readers
        # take to fill the next: one pack in flight, so two buffers. With two, a third
        # buffer (16 MiB more) was filled only when a write happened to be slow, and
        # the peak RSS of a backup depended on luck: with two in flight one 4 GiB run
        # of three took 109 MB, the others 92-93; with one, 92-93 MB in three runs
        # (1 GiB: 90-91 MB both ways), same times. Object stores take longer per
        # pack and keep two in flight.
        uploader = PackUploader(
            self.store, self.codec, self.index, pack_size=self.config.pack_size, workers=workers,
            max_inflight=1 if self.store.local else 2, index_every=index_every,
            before_index=self.check_leases,
        )  # fmt: skip
        return Saver(BlobSaver(self.blob_id, self.codec, uploader), uploader)

    # ------------------------------------------------------------------ named JSON objects

    def save_object(self, kind: str, doc: dict[str, Any], name: str | None = None) -> str:
        """Seal and store a JSON document under ``kind/<random id>``; returns the id."""
        assert kind in OBJECT_KINDS
        if kind in ("snapshots", "index"):
            self.check_leases()
        name = name or os.urandom(32).hex()
        _, sealed = self.codec.encode(json.dumps(doc, separators=(",", ":")).encode(), object_aad(kind, name))
        cap = MAX_OBJECT_SIZE.get(kind)
        if cap is not None and len(sealed) > cap:
            # Never write what no reader would read back.
            raise RepositoryError(
                f"{kind}/{name}: {len(sealed)} bytes, more than the {cap} an object may have"
            )
        self.store.put(f"{kind}/{name}", sealed)
        return name

    def load_object(self, kind: str, name: str) -> dict[str, Any]:
        """Read, open and parse ``kind/name``, refused unread if larger than its kind allows."""
        where = f"{kind}/{name}"
        cap = MAX_OBJECT_SIZE[kind]
        size = self._listed_sizes.get(kind, {}).get(name)
        sealed = None
        if size is None:
            # Not listed: read its start, which is all of it but for a damaged one (these
            # objects are kilobytes), instead of a stat and then a read: a round trip less
            # on S3 and GCS, where a restore by full snapshot id starts here.
            first = self.store.get_range(where, 0, FIRST_READ)
            if len(first) < FIRST_READ:
                size, sealed = len(first), first
            else:
                size = self.store.stat(where).size
        if size > cap:
            raise FormatError(
                f"{where}: {size} bytes, more than the {cap} such an object may have (damaged?)"
            )
        if sealed is None:
            sealed = self.store.get(where)
        plain = self.codec.decode(sealed, object_aad(kind, name), what=where, max_size=PLAINTEXT_FACTOR * cap)
        try:
            doc = json.loads(plain)
        except ValueError:
            raise FormatError(f"{where}: not JSON") from None
        except RecursionError:
            raise FormatError(f"{where}: nested too deeply") from None
        if not isinstance(doc, dict):
            raise FormatError(f"{where}: not a JSON object")
        return doc

    def list_objects(self, kind: str) -> list[str]:
        sizes = {o.name.rsplit("/", 1)[-1]: o.size for o in self.store.list(f"{kind}/")}
        # Kept for load_object, which then needs no stat: a name is never reused or
        # rewritten (FORMAT.md §1), so a listed size stays true. The last listing only.
        self._listed_sizes[kind] = sizes
        return sorted(sizes)

    def load_objects(self, kind: str, names: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Load many objects in parallel; unreadable ones raise FormatError. Of ``kind``'s
        objects (``names`` None), one deleted after the listing is left out.

        All of them before returning, with the pool shut down: as a generator that
        held the pool open across its yields, a caller that stopped at an error left
        the pool's shutdown to the garbage collector, which once ran it inside
        threading's own bookkeeping lock and hung the process (seen in CI)."""
        listed = names is None
        names = self.list_objects(kind) if names is None else names

        def load(name: str) -> dict[str, Any] | None:
            try:
                return self.load_object(kind, name)
            except ObjectNotFound:
                if not listed:
                    raise
                # Listed, then deleted before it was read: a forget running beside us
                # (both take shared locks). Gone is gone; not an error.
                return None

        loaded = list(zip(names, self._read_each(kind, load, names), strict=True))
        return [(n, d) for n, d in loaded if d is not None]

    def readable_objects(
        self,
        kind: str,
        parse: Callable[[str, dict[str, Any]], T],
        *,
        unreadable: type[DrError] = FormatError,
        prefix: str = "",
    ) -> tuple[list[T], dict[str, str]]:
        """Every object of ``kind`` (whose name starts with ``prefix``) loaded in parallel and
        parsed (``parse(name, doc)``), and ``{name: problem}`` for those whose load or parse
        raised ``unreadable``: one damaged object must not hide the others from a listing.
        Each object is read once; one deleted after the listing is left out; a listing that
        fails raises. With ``prefix``, the others are not read: one request each on S3 and
        GCS, and a year of nightly backups holds thousands."""

        def one(name: str) -> tuple[T | None, str | None]:
            try:
                return parse(name, self.load_object(kind, name)), None
            except ObjectNotFound:
                return None, None  # deleted since the listing (a concurrent forget)
            except unreadable as e:
                return None, e.message

        names = [n for n in self.list_objects(kind) if n.startswith(prefix)]
        results = list(zip(names, self._read_each(kind, one, names), strict=True))
        return [x for _, (x, _) in results if x is not None], {n: why for n, (_, why) in results if why}

    def _read_each(self, kind: str, read: Callable[[str], R], names: list[str]) -> list[R]:
        """``read`` of each of ``names`` on eight threads (one request each on S3 and GCS),
        in order, every one read before returning (see ``load_objects``); each counted
        to ``read_progress`` as it is taken."""
        report = self.read_progress
        with ThreadPoolExecutor(max_workers=8) as pool:
            if report is None:
                return list(pool.map(read, names))
            report(kind, 0, len(names))
            results: list[R] = []
            for result in pool.map(read, names):
                results.append(result)
                report(kind, len(results), len(names))
            return results

    # ------------------------------------------------------------------ key slots

    def slots(self) -> list[KeySlot]:
        """The readable key slots, oldest first (``read_slots`` also gives the others)."""
        return read_slots(self.store)[0]

    def read_slots(self) -> tuple[list[KeySlot], list[UnreadableSlot]]:
        return read_slots(self.store)

    def add_slot(self, provider: KeyProvider) -> KeySlot:
        slot = new_slot(self.master, self.id, provider)
        self.store.put(slot.object_name, slot.to_json())
        return slot

    def remove_slot(
        self,
        slot_id: str,
        providers: Callable[[str], KeyProvider | None],
        guard: Callable[[KeySlot, list[KeySlot]], None] | None = None,
    ) -> KeySlot | UnreadableSlot:
        """Delete the slot ``slot_id`` (an id or unique prefix), readable or not: a damaged
        slot object must be removable, or it stays in every listing for good.

        A readable slot goes only once another slot has been unwrapped, with
        ``providers``, to this repository's master key: counting slots is not
        enough, as the others may be damaged, wrapped by a lost key file or by a
        key that no longer exists, or belong to another repository. Before that,
        ``guard(slot, readable slots)`` may refuse by raising (the caller's rules,
        e.g. the slots its configuration needs)."""
        # At least 4 characters, as for snapshot ids: a shorter prefix matches by luck.
        if len(slot_id) < 4:
            raise InvalidInput(f"key slot id {slot_id!r} is too short (give at least 4 characters)")
        slots, unreadable = self.read_slots()
        every: list[KeySlot | UnreadableSlot] = [*slots, *unreadable]
        matches = [s for s in every if s.id == slot_id or s.id.startswith(slot_id)]
        if not matches:
            raise InvalidInput(f"no key slot {slot_id!r} (see `dr key list`)")
        if len(matches) > 1:
            raise InvalidInput(f"key slot id {slot_id!r} is ambiguous ({len(matches)} matches)")
        target = matches[0]
        if isinstance(target, KeySlot):
            if guard is not None:
                guard(target, slots)
            self._check_another_slot_opens(target, slots, providers)
        self.store.delete(target.object_name)
        return target

    def _check_another_slot_opens(
        self, target: KeySlot, slots: list[KeySlot], providers: Callable[[str], KeyProvider | None]
    ) -> None:
        others = [s for s in slots if s.id != target.id]
        if not others:
            raise RepositoryError("refusing to remove the last key slot: the repository would be unopenable")
        # The slot this process was opened with first: it has just worked.
        opened_with = self.slot.id if self.slot else None
        others.sort(key=lambda s: s.id != opened_with)
        failures = []
        for s in others:
            got = unwrap_slot(s, providers)
            if isinstance(got, str):
                failures.append(f"slot {s.id[:8]} {shown(s.provider)}: {got}")
            elif s.repository != self.id or not hmac.compare_digest(got.raw, self.master.raw):
                failures.append(f"slot {s.id[:8]} {shown(s.provider)}: holds another key")
            else:
                log.debug("key slot %s opens the repository; removing %s", s.id, target.id)
                return
        raise RepositoryError(
            f"refusing to remove key slot {target.id[:8]}: no other key slot could be unwrapped to this "
            "repository's key here, and without it the repository could be unopenable",
            details=failures,
        )

    def rotate_slot(self, slot: KeySlot, provider: KeyProvider) -> tuple[KeySlot, StorageError | None]:
        """Rewrap one slot with the provider's newest key version: the new slot is written
        first, then the old one deleted. -> the new slot, and why the old one is still
        there (Object Lock retention, a refused or failed delete) or None: the rotation
        is done either way, and the old slot still opens the repository."""
        from dr.crypto.keyring import repository_context

        wrapped = provider.rewrap(slot.wrapped, repository_context(self.id))
        fresh = KeySlot(os.urandom(16).hex(), self.id, slot.provider, wrapped, now_utc())
        self.store.put(fresh.object_name, fresh.to_json())
        return fresh, self.drop_slot(slot)

    def drop_slot(self, slot: KeySlot) -> StorageError | None:
        """Delete a slot object without any check; why it is still there, or None."""
        try:
            self.store.delete(slot.object_name)
        except StorageError as e:
            return e
        return None


@dataclass
class Saver:
    blobs: BlobSaver
    uploader: PackUploader

    def save(self, blob_type: BlobType, data: bytes | memoryview) -> bytes:
        return self.blobs.save(blob_type, data)[0]

    def flush(self) -> None:
        self.uploader.flush()

    def __enter__(self) -> Saver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uploader.close()


def _holds(store: ObjectStore, name: str, data: bytes) -> bool | None:
    """Whether ``name`` holds exactly ``data``; None when the store cannot tell."""
    try:
        return store.get(name) == data
    except ObjectNotFound:
        return False
    except Exception as e:
        log.debug("cannot read %s back: %s", name, e)
        return None


def read_slots(store: ObjectStore) -> tuple[list[KeySlot], list[UnreadableSlot]]:
    """The key slots, oldest first, and the ``keys/`` objects that are not usable slots.

    Each slot is read by itself: slots are not authenticated, and one damaged or
    planted object must not keep the others from opening the repository (FORMAT.md
    §3.1), nor hide itself from ``dr key list`` and ``dr key remove``.

    A slot that vanished between the listing and its read was replaced or removed
    by a concurrent ``dr key rotate`` / ``remove``, whose new slot the listing may
    not hold: ``keys/`` is then listed again (a few times), or an open racing a
    rotation could find no slot at all."""
    for _ in range(SLOT_LISTINGS):
        slots, unreadable, vanished = _read_slots_once(store)
        if not vanished:
            break
        log.debug("%d key slot(s) vanished since keys/ was listed (rotated?): listing again", vanished)
    return slots, unreadable


def _read_slots_once(store: ObjectStore) -> tuple[list[KeySlot], list[UnreadableSlot], int]:
    """The slots of one listing of ``keys/``, and how many listed ones vanished meanwhile."""
    vanished = 0
    slots: list[KeySlot] = []
    unreadable: list[UnreadableSlot] = []
    for info in store.list("keys/"):
        slot_id = info.name[len("keys/") :]
        if info.size > MAX_SLOT_SIZE:
            unreadable.append(UnreadableSlot(slot_id, f"{info.size} bytes, too large for a key slot"))
            continue
        try:
            raw = store.get(info.name)
        except ObjectNotFound:
            vanished += 1  # removed since the listing
            continue
        except DrError as e:
            unreadable.append(UnreadableSlot(slot_id, f"cannot read it: {e.message}"))
            continue
        try:
            slots.append(KeySlot.from_json(slot_id, raw))
        except DrError as e:
            unreadable.append(UnreadableSlot(slot_id, e.message.removeprefix(f"key slot {slot_id}: ")))
    slots.sort(key=lambda s: (s.created, s.id))
    unreadable.sort(key=lambda u: u.id)
    return slots, unreadable, vanished


def hostname() -> str:
    return os.environ.get("DR_HOSTNAME") or socket.gethostname()


__all__ = ["KeyProviderError", "Repository", "RepositoryError", "Saver", "hostname", "iso", "now_utc"]
