"""The index (dr.repo.index): lookups, duplicate listings, the database against a
plain model, readers while packs are added, its memory against its size, and a
failing temporary database."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dr.errors import DrError
from dr.repo.format import BlobType, FormatError, PackEntries, PackEntry, encode_index, object_aad
from dr.repo.index import ENTRY_BITS, SORT_RUN, Index, IndexDatabaseError, _fetched_ahead
from dr.storage.base import ObjectInfo
from dr.storage.file import FileStore
from tests.repo_helpers import init_repo


def _pack(n: int, blob_type: BlobType = BlobType.DATA) -> tuple[bytes, list[PackEntry]]:
    entries = [PackEntry(blob_type, 1, i * 1000, 1000, 4000 + i, os.urandom(32)) for i in range(n)]
    return os.urandom(32), entries


class _Huge(PackEntries):
    def __len__(self) -> int:
        return 1 << ENTRY_BITS


def test_lookups_give_each_blob_its_pack_and_entry() -> None:
    index = Index()
    (p1, e1), (p2, e2) = _pack(5), _pack(3, BlobType.TREE)
    index.add_file("index/a", [(p1, e1)])
    index.add_pack(p2, e2)
    assert len(index) == 8 and index.files == {"index/a": [p1]}
    for pack, entries in ((p1, e1), (p2, e2)):
        assert index.packs[pack] == entries
        for e in entries:
            assert e.id in index
            loc = index.get(e.id)
            assert loc is not None and loc.pack == pack and loc.entry == e
    assert index.get(os.urandom(32)) is None and os.urandom(32) not in index
    assert set(index.blob_ids(BlobType.TREE)) == {e.id for e in e2}
    assert set(index.blob_ids(BlobType.DATA)) == {e.id for e in e1}
    assert set(index.blob_ids()) == {e.id for e in e1 + e2}


def test_missing_asks_for_many_ids_at_once() -> None:
    index = Index()
    packs = [_pack(300) for _ in range(4)]  # 1,200 ids: more than one query's worth
    for pack_id, entries in packs:
        index.add_pack(pack_id, entries)
    present = [e.id for _, entries in packs for e in entries]
    absent = [os.urandom(32) for _ in range(7)]
    ids = present[:600] + absent[:3] + present[600:] + absent[3:] + present[:5]  # repeats too
    assert index.missing(ids) == set(absent)
    assert index.missing(present) == set() and index.missing([]) == set()


def test_first_copy_of_a_blob_wins_and_a_pack_listed_twice_counts_once() -> None:
    index = Index()
    p1, e1 = _pack(2)
    p2, e2 = _pack(1)
    again = [PackEntry(BlobType.DATA, 0, 5000, 10, 20, e1[0].id)]  # the same blob, in another pack
    index.add_pack(p1, e1)
    index.add_pack(p2, e2 + again)
    loc = index.get(e1[0].id)
    assert loc is not None and loc.pack == p1
    assert list(index.packs[p2]) == e2 + again  # prune still sees the second copy
    index.add_pack(p1, e1)  # a pack listed by two index files (same name, same content)
    assert len(index.packs) == 2 and len(index) == 3


def test_of_two_copies_in_one_large_pack_the_first_wins() -> None:
    # A pack's blobs go in sorted by id, SORT_RUN at a time: the copies here are runs apart.
    bid = os.urandom(32)
    pack_id, entries = _pack(3 * SORT_RUN)
    entries[10] = PackEntry(BlobType.DATA, 1, 10_000, 7, 70, bid)
    entries[-10] = PackEntry(BlobType.DATA, 1, 99_000, 9, 90, bid)
    for build in ("pack", "files"):
        index = Index()
        if build == "pack":
            index.add_pack(pack_id, entries)
        else:
            index.add_files([("index/a", [(pack_id, entries)])])
        loc = index.get(bid)
        assert loc is not None and loc.entry == entries[10], build
        assert len(index) == 3 * SORT_RUN - 1


def test_of_two_copies_loaded_sorted_by_id_the_first_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    # From SORT_MIN staged blobs on, add_files puts them into ``blobs`` in the order of their ids:
    # of two copies of one blob (in two packs, or in two files) the one read first still wins.
    monkeypatch.setattr("dr.repo.index.SORT_MIN", 1)
    bid = os.urandom(32)
    (p1, e1), (p2, e2), (p3, e3) = _pack(5), _pack(5), _pack(5)
    e1[3] = PackEntry(BlobType.DATA, 1, 10_000, 7, 70, bid)
    e2[1] = PackEntry(BlobType.DATA, 1, 20_000, 8, 80, bid)
    e3[0] = PackEntry(BlobType.DATA, 1, 30_000, 9, 90, bid)
    index = Index()
    index.add_files([("index/a", [(p1, e1), (p2, e2)]), ("index/b", [(p3, e3)])])
    loc = index.get(bid)
    assert loc is not None and (loc.pack, loc.entry) == (p1, e1[3])
    assert len(index) == 13


def test_a_pack_with_too_many_blobs_is_refused() -> None:
    with pytest.raises(FormatError, match="more than 16777216 blobs"):
        Index().add_pack(os.urandom(32), _Huge(b""))


def test_a_refused_pack_leaves_the_index_as_it_was() -> None:
    index = Index()
    pack_id, entries = _pack(2)
    index.add_pack(pack_id, entries)
    with pytest.raises(FormatError):
        index.add_pack(os.urandom(32), _Huge(b""))
    assert list(index.packs) == [pack_id] and len(index) == 2 and entries[0].id in index


def test_an_index_whose_change_failed_part_way_is_not_used_again() -> None:
    # The database has no rollback journal (journal_mode OFF, for speed and memory):
    # what a failed change wrote stays, ROLLBACK or not. An index left so would answer
    # wrongly; it refuses to answer instead.
    first, second = _pack(3), _pack(3)

    def files() -> Iterator[tuple[str, list[tuple[bytes, list[PackEntry]]]]]:
        yield "index/a", [first]
        raise DrError("index/b: cannot be read")  # as load_index's fetch of the next file

    index = Index()
    with pytest.raises(DrError, match="cannot be read"):
        index.add_files(files())
    # It listed index/a's pack while its blobs were not found (staged, never looked up),
    # and the next add_files would have brought them in.
    with pytest.raises(IndexDatabaseError, match=r"unusable: .*cannot be read"):
        index.get(first[1][0].id)
    with pytest.raises(IndexDatabaseError, match="unusable"):
        index.add_files([("index/c", [second])])
    # A file refused half-way: its first pack was written, and stayed after ROLLBACK.
    index = Index()
    with pytest.raises(FormatError):
        index.add_files([("index/a", [first, (os.urandom(32), _Huge(b""))])])
    with pytest.raises(IndexDatabaseError, match="unusable"):
        assert first[0] not in index.packs


def test_blobs_sharing_a_prefix_are_told_apart_by_their_whole_id() -> None:
    # Ids alike in their first bytes (the old in-memory index sorted by 8 of them).
    prefix = os.urandom(8)
    ids = [prefix + os.urandom(24) for _ in range(5)]
    entries = [PackEntry(BlobType.DATA, 1, i * 10, 10, 20, bid) for i, bid in enumerate(ids)]
    for build in ("files", "packs"):
        index = Index()
        if build == "files":
            index.add_files([("index/a", [(os.urandom(32), entries[:3]), (os.urandom(32), entries[3:])])])
        else:
            index.add_pack(os.urandom(32), entries[:3])
            index.add_pack(os.urandom(32), entries[3:])
            assert len(index) == 5
        for e in entries:
            loc = index.get(e.id)
            assert loc is not None and loc.entry == e, build
        assert index.get(prefix + os.urandom(24)) is None


def _model_pack(draw: st.DrawFn, pool: list[bytes]) -> tuple[bytes, list[PackEntry]]:
    ids = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6))
    return os.urandom(32), [PackEntry(BlobType.DATA, 0, i, 1, 1, bid) for i, bid in enumerate(ids)]


@st.composite
def _histories(draw: st.DrawFn) -> list[tuple[str, list[tuple[bytes, list[PackEntry]]]]]:
    """Steps of building an index: ("files", packs) loads index files, ("pack", [one]) adds one pack.
    Ids come from a small pool, many sharing a prefix, so copies and shared prefixes are common."""
    prefixes = [os.urandom(8) for _ in range(3)]
    pool = [draw(st.sampled_from(prefixes)) + os.urandom(24) for _ in range(12)]
    steps = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["files", "pack"]))
        n = draw(st.integers(1, 3)) if kind == "files" else 1
        steps.append((kind, [_model_pack(draw, pool) for _ in range(n)]))
    return steps


@settings(max_examples=150, deadline=None)
@given(_histories())
def test_the_index_answers_as_a_dict_of_first_copies(steps: list[tuple[str, list]]) -> None:
    index, model = Index(), {}  # model: blob id -> (pack, entry) of its first copy
    for n, (kind, packs) in enumerate(steps):
        if kind == "files":
            index.add_files([(f"index/{n}", packs)])
        else:
            index.add_pack(*packs[0])
        for pack_id, entries in packs:
            for e in entries:
                model.setdefault(e.id, (pack_id, e))
        for bid, (pack_id, e) in model.items():
            loc = index.get(bid)
            assert loc is not None and (loc.pack, loc.entry) == (pack_id, e)
    assert len(index) == len(model)
    assert sorted(index.blob_ids()) == sorted(model)


def test_readers_while_packs_are_added_lose_no_blob() -> None:
    # Backups look blobs up from their reader threads while uploads add packs.
    index = Index()
    index.add_files([("index/a", [_pack(256) for _ in range(8)])])
    adding = [_pack(32) for _ in range(400)]
    added: list[bytes] = []  # ids of the packs added so far
    done, missed, failed = threading.Event(), [], []

    def look_up() -> None:
        try:
            while not done.is_set():
                missed.extend(b for b in added[-256:] if b not in index)
        except BaseException as e:  # an error in a reader thread must fail the test
            failed.append(e)

    readers = [threading.Thread(target=look_up) for _ in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, inside an add too
    try:
        for t in readers:
            t.start()
        for pack_id, entries in adding:
            index.add_pack(pack_id, entries)
            added += [e.id for e in entries]
    finally:
        done.set()
        for t in readers:
            t.join()
        sys.setswitchinterval(interval)
    assert missed == [] and failed == []
    assert len(index) == 256 * 8 + 32 * 400


_BUILD = """
import os, resource, sys
from dr.repo.format import BlobType, PackEntry
from dr.repo.index import Index
blobs, per_file = int(sys.argv[1]), 16 * 64
def files():  # made as they are read: the test's own data does not grow with N
    for f in range(blobs // per_file):
        yield f"index/{f}", [
            (os.urandom(32), [PackEntry(BlobType.DATA, 1, i * 9, 9, 20, os.urandom(32)) for i in range(16)])
            for _ in range(per_file // 16)
        ]
index = Index()
index.add_files(files())
assert len(index) == blobs and len(index.packs) == blobs // 16
probe = os.urandom(32)
index.add_pack(os.urandom(32), [PackEntry(BlobType.DATA, 1, 0, 9, 20, probe)])
assert index.get(probe) is not None
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _build(blobs: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BUILD, str(blobs)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_memory_does_not_grow_with_the_number_of_blobs() -> None:
    # The index holds every blob of the repository: a million for 1 TiB in 1 MiB chunks.
    # Held in memory at 62 bytes a blob (before 2026-11-29), 16 times as many blobs
    # took ~9.5 MB more here; in the database, whose cache is capped, the same.
    small, large = _build(10_240), _build(163_840)
    assert small.returncode == 0 and large.returncode == 0, small.stderr + large.stderr
    grew_kb = int(large.stdout) - int(small.stdout)
    assert grew_kb < 1024, f"peak RSS {small.stdout.strip()} KB -> {large.stdout.strip()} KB"


def _open_temporary_files() -> int:
    """How many of SQLite's temporary files (unlinked, named etilqs_*) this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += "etilqs_" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return count


def test_a_dropped_index_closes_its_database_at_once() -> None:
    # prune and check reload the index: each dropped one held its file open (and its
    # room in /tmp) until a collection of cycles found it, never if frozen by gc.freeze.
    gc.collect()
    before = _open_temporary_files()
    gc.disable()
    try:
        for _ in range(3):
            index = Index()
            index.add_files([("index/a", [_pack(16) for _ in range(256)])])  # past the page cache
            assert _open_temporary_files() == before + 1
            assert len(index.packs) == 256 and list(index.files) == ["index/a"]
            del index
            assert _open_temporary_files() == before
    finally:
        gc.enable()


_EXIT_WHILE_IN_USE = """
import os, sys, threading, time
from dr.repo.format import BlobType, PackEntry
from dr.repo.index import Index
def use():
    index = Index()
    index.add_files(
        (f"index/{f}", [(os.urandom(32), [PackEntry(BlobType.DATA, 1, i, 9, 20, os.urandom(32)) for i in range(16)])])
        for f in range(2000)
    )
    while True:
        os.urandom(32) in index
threading.Thread(target=use, daemon=True).start()
time.sleep(float(sys.argv[1]))
"""


def test_a_process_may_exit_while_a_daemon_thread_uses_an_index() -> None:
    # As a command does whose index was being prefetched (Repository.prefetch_index) when
    # it stopped. Closing the database at exit (a finalizer's default) under that thread's
    # feet crashed the interpreter (SIGSEGV) in about one exit of three.
    for i in range(12):
        done = subprocess.run(
            [sys.executable, "-c", _EXIT_WHILE_IN_USE, str(i / 100)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stderr) == (0, ""), f"exit after {i / 100} s"


def test_its_temporary_file_is_gone_when_it_is_and_a_failing_one_is_one_line(tmp_path: Path) -> None:
    # SQLite unlinks the file as soon as it makes it: nothing to clean up, even after a crash.
    ok = _build(20_480, {"SQLITE_TMPDIR": str(tmp_path)})
    assert ok.returncode == 0, ok.stderr
    assert list(tmp_path.iterdir()) == []
    # A full file system (here: a file size limit of 0) is one line, not a traceback.
    full = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, signal, runpy, sys;"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0));"
            f"sys.argv = ['-c', '20480'];"
            f"exec({_BUILD!r})",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode != 0
    last = full.stderr.strip().splitlines()[-1]
    assert "IndexDatabaseError: the repository index's temporary database" in last, full.stderr
    assert "failed: " in last


_FILL = """
import os, resource, signal
from dr.repo.format import BlobType, PackEntry
from dr.repo.index import Index, IndexDatabaseError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
index = Index()
try:
    while True:  # a backup adding packs until its file system is full
        index.add_pack(os.urandom(32), [PackEntry(BlobType.DATA, 1, i, 9, 20, os.urandom(32)) for i in range(64)])
except IndexDatabaseError as e:
    print(e.message)
try:
    os.urandom(32) in index  # another thread of the backup, looking a blob up
except IndexDatabaseError as e:
    print(e.message)
"""


def test_a_change_that_failed_in_sqlite_is_named_as_such_by_every_later_call(tmp_path: Path) -> None:
    # The thread whose change failed is not always the one whose error the command
    # reports: a backup's readers, looking blobs up, may meet the unusable index first.
    done = subprocess.run(
        [sys.executable, "-c", _FILL],
        capture_output=True,
        text=True,
        env={**os.environ, "SQLITE_TMPDIR": str(tmp_path)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    failed, later = done.stdout.splitlines()
    place = f"(a file in $SQLITE_TMPDIR = {tmp_path}) failed: "
    assert failed.startswith("the repository index's temporary database ") and place in failed
    # Not "failed part-way (OperationalError('disk I/O error'))": which file, and what.
    assert later.startswith("the repository index is unusable: its temporary database ") and place in later


_FULL = """
import os
from dr.repo.format import BlobType, PackEntry
from dr.repo.index import Index, IndexDatabaseError
index = Index()
try:
    while True:  # a repository's index larger than the room in $TMPDIR
        index.add_pack(os.urandom(32), [PackEntry(BlobType.DATA, 1, i, 9, 20, os.urandom(32)) for i in range(64)])
except IndexDatabaseError as e:
    print(e.message)
"""


def test_a_full_temporary_directory_names_the_setting_that_sizes_it() -> None:
    # A file system that is really full (a 1 MiB tmpfs in a mount namespace of its own):
    # SQLite says "database or disk is full"; in dr's pods that is the /tmp emptyDir,
    # whose size mover.tmpSizeLimit sets, or the node's ephemeral storage.
    script = (
        "mkdir -p /tmp/dr-index-full && mount -t tmpfs -o size=1m tmpfs /tmp/dr-index-full"
        ' && SQLITE_TMPDIR=/tmp/dr-index-full exec "$0" -c "$1"'
    )
    try:
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, sys.executable, _FULL],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except FileNotFoundError:
        pytest.skip("no unshare here")
    if "mount" in done.stderr or "unshare" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert "(a file in $SQLITE_TMPDIR = /tmp/dr-index-full) failed: database or disk is full" in line
    assert "mover.tmpSizeLimit" in line, line


def test_walks_go_page_by_page_over_every_row_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # blob_ids, packs and files read PAGE_ROWS rows at a time, each page after the last key.
    monkeypatch.setattr("dr.repo.index.PAGE_ROWS", 4)
    index = Index()
    packs = [_pack(3 + i % 4, BlobType.TREE if i % 3 else BlobType.DATA) for i in range(9)]
    index.add_files([(f"index/{i}", [pack]) for i, pack in enumerate(packs)])
    entries = [e for _, es in packs for e in es]
    assert list(index.blob_ids()) == sorted(e.id for e in entries)
    for t in (BlobType.DATA, BlobType.TREE):
        assert list(index.blob_ids(t)) == sorted(e.id for e in entries if e.type == t)
    assert list(index.packs) == [p for p, _ in packs]
    assert [(p, list(es)) for p, es in index.packs.items()] == packs
    assert sorted(index.files) == list(index.files) == sorted(f"index/{i}" for i in range(9))


def _listed(sizes: list[int]) -> list[ObjectInfo]:
    return [ObjectInfo(f"index/{i:03}", size) for i, size in enumerate(sizes)]


def test_index_files_are_fetched_ahead_in_order_and_a_bounded_amount() -> None:
    # Fetched index files wait, decoded, until the database takes them in: at most
    # ``workers`` of them and ``ahead_bytes`` of listed size (one at least) ahead of it.
    files = _listed([3 << 20] * 5 + [1000] * 30 + [5 << 20] * 2)
    size = {f.name: f.size for f in files}
    started: list[str] = []
    lock = threading.Lock()

    def fetch(name: str) -> str:
        with lock:
            started.append(name)
        return name

    taken: list[str] = []
    most = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        for name in _fetched_ahead(pool, fetch, files, 4, ahead_bytes=4 << 20):
            taken.append(name)
            time.sleep(0.005)  # what was submitted has started
            with lock:
                ahead = set(started) - set(taken)
            most = max(most, len(ahead))
            assert len(ahead) <= 4
            assert len(ahead) <= 1 or sum(size[n] for n in ahead) <= 4 << 20, (name, sorted(ahead))
    assert taken == [f.name for f in files]
    assert most == 4  # the small files went four at a time


def test_the_next_index_file_is_fetched_while_one_goes_in() -> None:
    # One large file at least is fetched ahead: the consumer taking one in and the
    # store handing over the next overlap (the load is not fetch, insert, fetch, ...).
    files = _listed([8 << 20] * 3)
    second_started = threading.Event()

    def fetch(name: str) -> str:
        if name == files[1].name:
            second_started.set()
        return name

    with ThreadPoolExecutor(max_workers=8) as pool:
        fetched = _fetched_ahead(pool, fetch, files, 8, ahead_bytes=1 << 20)
        assert next(fetched) == files[0].name
        assert second_started.wait(10), "the second file was not fetched while the first went in"
        assert list(fetched) == [files[1].name, files[2].name]


def test_a_failed_fetch_ends_the_load_and_fetches_no_more() -> None:
    files = _listed([1000] * 50)
    started: list[str] = []

    def fetch(name: str) -> str:
        started.append(name)
        if name == files[3].name:
            raise DrError(f"{name}: cannot read")
        return name

    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(DrError, match="index/003: cannot read"):
        for _ in _fetched_ahead(pool, fetch, files, 2):
            time.sleep(0.002)
    assert len(started) <= 3 + 1 + 2  # those before it, it, and what was on its way


def test_a_failed_fetch_cancels_the_fetches_queued_behind_it() -> None:
    # The bound above holds whether or not the load cancels what it queued (with two threads,
    # what is queued mostly runs at once). Here one thread, held in the fetch after the failed
    # one until the load has ended: the one queued behind it runs only if it was not cancelled.
    files = _listed([1000] * 50)
    started: list[str] = []
    release = threading.Event()

    def fetch(name: str) -> str:
        started.append(name)
        if name == files[3].name:
            raise DrError(f"{name}: cannot read")
        if name == files[4].name:
            release.wait(10)
        return name

    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(DrError, match="index/003: cannot read"):
            for _ in _fetched_ahead(pool, fetch, files, 2):
                pass
        release.set()
    # The failed one's successor may have started before the load ended; the one after it not.
    assert started in ([f.name for f in files[:4]], [f.name for f in files[:5]]), started


_LOAD = """
import sys
from pathlib import Path
from dr.crypto.providers.local import LocalKeyProvider
from dr.repo.repository import Repository
from dr.storage.file import FileStore
root = Path(sys.argv[1])
key = LocalKeyProvider(root / "keys" / "repo.key")
repo = Repository.open(FileStore(str(root / "repo")), lambda uri: key if uri == key.uri else None)
def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
# The peak so far is the parent's (a forked child starts at its parent's high-water
# mark): set it back to what the process holds now ("5", Linux 4.0 and later).
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
blobs = len(repo.index)
print(blobs, status("VmHWM") - before)
"""


def _load(root: Path, files: int, per_file: int = 20_000) -> int:
    """Peak RSS (KB) of a fresh process loading the index of a repository of ``files``
    index files, above what it had before."""
    store = FileStore(str(root / "repo"))
    repo, _ = init_repo(store, root)
    for _ in range(files):
        packs = {
            os.urandom(32): [PackEntry(BlobType.DATA, 0, i * 9, 9, 20, os.urandom(32)) for i in range(1000)]
            for _ in range(per_file // 1000)
        }
        name = os.urandom(32).hex()
        store.put(f"index/{name}", repo.codec.encode(encode_index(packs), object_aad("index", name))[1])
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    blobs, grew_kb = map(int, done.stdout.split())
    assert blobs == files * per_file
    return grew_kb


def test_loading_the_index_of_a_file_store_does_not_grow_with_its_index_files(tmp_path: Path) -> None:
    # Opening a repository fetches its index files in parallel: all at once, they
    # waited decoded for the database (files of 20,000 blobs: 12 +20.9 MB, 36 +46.6 MB).
    # Now what waits is bounded (12 and 36: +12.3 MB), and so is what SQLite sorts in
    # memory (the peak grows from 1 file to ~12, 2.9 to 12.3 MB, and no further).
    few, many = _load(tmp_path / "few", 12), _load(tmp_path / "many", 36)
    assert many - few < 4096, f"loading 12 index files peaked {few} KB above the start, 36 {many} KB"
