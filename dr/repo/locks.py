"""Repository locks (FORMAT.md §9): shared for backup/restore, exclusive for prune.

Create-only objects with an expiry, refreshed by a background thread by
writing a new lock and deleting the old one (the store has no overwrite in
append-only mode). A crashed process's lock goes stale after ``EXPIRY``
without anyone having to clean it up.

The other side of that: a live process can lose its lock. Paused past the
expiry (a frozen VM, SIGSTOP, a store it could not reach to refresh), its lock
looks stale to everyone else, and a prune removes it and deletes packs the
paused backup has uploaded but not yet committed. So a held lock is a lease
(``Lock.check``, called by ``Repository.check_leases`` before every index file
and snapshot is written): it holds until ``expiry`` minus a margin for clocks
that differ between hosts after the last lock object this process wrote, by
a clock that counts time suspended (``CLOCK_BOOTTIME``), and only while that
object still exists. Past that the operation fails (``LockLost``) instead of
committing, as restic does; a lapsed lock is never refreshed back to life.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from dr.errors import DrError
from dr.repo.format import FormatError
from dr.repo.repository import Repository, hostname, iso, now_utc
from dr.storage.base import ObjectNotFound

log = logging.getLogger(__name__)

EXPIRY = timedelta(minutes=30)
REFRESH = timedelta(minutes=5)
# A held lock counts as held until this share of its expiry before it expires: room
# for other hosts' clocks being ahead of ours (they judge it stale by their clock).
MARGIN = 1 / 6

# shared: backups, restores, checks, forget. exclusive: prune (nobody else at all).
# keys: key slot changes (add, remove, rotate): one at a time, beside everything but
# prune, since a backup or a restore never writes keys/ (FORMAT.md §9).
Kind = Literal["shared", "exclusive", "keys"]


class LockConflict(DrError):
    pass


class LockLost(DrError):
    """This process's lock lapsed or was removed while it worked: stop before committing."""


def _clock() -> float:
    """Seconds that keep counting while the machine is suspended (unlike ``monotonic``)."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


@dataclass(frozen=True)
class LockInfo:
    name: str
    kind: str
    hostname: str
    pid: int
    operation: str
    created: datetime
    expires: datetime
    # When the lock was first taken: kept by every refresh (``created`` is the refresh's).
    # Locks written before the field existed give their ``created``.
    since: datetime | None = None

    @property
    def held_since(self) -> datetime:
        return self.since or self.created

    def describe(self) -> str:
        return (
            f"{self.kind} lock by {self.operation} on {self.hostname} (pid {self.pid}), "
            f"created {iso(self.created)}, expires {iso(self.expires)}"
        )


def conflicting(kind: str, other: str) -> bool:
    """Whether a lock of ``kind`` cannot be held beside one of ``other`` (a kind this
    version does not know counts as shared, as older versions read "keys")."""
    return "exclusive" in (kind, other) or kind == other == "keys"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def is_stale(lock: LockInfo, now: datetime | None = None) -> bool:
    """Expired, or created on this host by a process that no longer exists (as restic does)."""
    if lock.expires < (now or now_utc()):
        return True
    return lock.hostname == hostname() and _process_gone(lock.pid)


def remove_stale(repo: Repository, *, everything: bool = False) -> list[LockInfo]:
    """Delete stale locks (or all locks with ``everything``); returns what was removed."""
    removed = []
    for lk in list_locks(repo):
        if everything or is_stale(lk):
            repo.store.delete(f"locks/{lk.name}")
            removed.append(lk)
    return removed


def _time(value: object) -> datetime:
    """A lock document's time, as ``iso`` writes it (``...Z``)."""
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def list_locks(repo: Repository, *, besides: str | None = None) -> list[LockInfo]:
    """The repository's locks, read one by one; ``besides`` names one not to read (one's own)."""
    out = []
    for name in repo.list_objects("locks"):
        if name == besides:
            continue
        try:
            d = repo.load_object("locks", name)
            out.append(
                LockInfo(
                    name,
                    str(d["kind"]),
                    str(d["hostname"]),
                    int(d["pid"]),
                    str(d.get("operation", "")),
                    _time(d["created"]),
                    _time(d["expires"]),
                    _time(d["since"]) if "since" in d else None,
                )
            )
        except ObjectNotFound:
            continue  # released while listing
        except (FormatError, KeyError, ValueError) as e:
            log.warning("ignoring unreadable lock %s: %s", name, e)
    return out


class Lock:
    """``with Lock(repo, "shared", "backup"):`` — raises LockConflict if it can't be taken.

    ``prefetch_index``: start loading the repository's index (``Repository.prefetch_index``)
    as soon as the lock object is written, while the other locks are listed. Not
    sooner: a prune that ends before the lock exists may replace index files and
    delete packs, and an index read before that would name them; one that starts
    after sees this lock and stops, and one under way is found by the listing,
    which then fails the acquire. For a shared lock only.
    """

    def __init__(
        self,
        repo: Repository,
        kind: Kind,
        operation: str,
        *,
        expiry: timedelta = EXPIRY,
        prefetch_index: bool = False,
    ) -> None:
        self.repo, self.kind, self.operation, self.expiry = repo, kind, operation, expiry
        self.prefetch_index = prefetch_index and kind == "shared"
        self.name: str | None = None
        self._held_until = 0.0  # by _clock(): when the lease lapses (check)
        self._since: datetime | None = None  # when first written (kept by refreshes)
        self._lost: str | None = None  # why the lock was lost, once it is
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def _write(self) -> str:
        started = _clock()
        t = now_utc()
        doc = {
            "kind": self.kind,
            "hostname": hostname(),
            "pid": os.getpid(),
            "operation": self.operation,
            "created": iso(t),
            "expires": iso(t + self.expiry),
            "since": iso(self._since or t),
        }
        name = self.repo.save_object("locks", doc)
        self._held_until = started + self.expiry.total_seconds() * (1 - MARGIN)
        self._since = self._since or t
        return name

    def acquire(self) -> Lock:
        self.name = self._write()
        if self.prefetch_index:
            self.repo.prefetch_index()
        try:
            conflicts = self._conflicts()
            if conflicts:
                self.repo.store.delete(f"locks/{self.name}")
                self.name = None
                # A lock's holder may be gone for good (a cluster lost with its dr pods): waiting
                # for it to expire is not the only way out, but removing it is the operator's call.
                raise LockConflict(
                    f"repository is locked ({len(conflicts)} conflicting lock(s)); try again later, or, "
                    "if no dr process uses the repository any more (its host or cluster is gone), "
                    "remove the locks with 'dr repo unlock --all'",
                    details=[c.describe() for c in conflicts],
                )
        except BaseException:
            if self.prefetch_index:
                # Read while a prune may have been changing it, or with no way to tell.
                self.repo.drop_index()
            raise
        self.repo.hold(self)
        self._thread = threading.Thread(target=self._refresh_loop, name="dr-lock-refresh", daemon=True)
        self._thread.start()
        return self

    def check(self) -> None:
        """Raise ``LockLost`` unless this lock still holds: refreshed recently enough that
        no other process can take it for stale, and its object still in the repository."""
        with self._mutex:
            if self.name is None:
                return  # released, or never taken: nothing to hold
            if self._lost is None:
                self._lost = self._why_lost(self.name)
            if self._lost is not None:
                raise LockLost(
                    f"the repository lock of this {self.operation} was lost ({self._lost}); "
                    "stopped before committing anything. Run it again."
                )

    def _why_lost(self, name: str) -> str | None:
        """(under the mutex) Why the lock named ``name`` no longer holds, or None."""
        late = _clock() - self._held_until
        if late > 0:
            return f"not refreshed for {self.expiry.total_seconds() * (1 - MARGIN) + late:.0f} s"
        try:
            self.repo.store.stat(f"locks/{name}")
        except ObjectNotFound:
            return "its lock object was removed by another process"
        return None

    def _conflicts(self) -> list[LockInfo]:
        """The other locks this one cannot stand beside; stale ones are removed on the way."""
        now = now_utc()
        conflicts = []
        for other in list_locks(self.repo, besides=self.name):
            if is_stale(other, now):
                log.info("removing stale lock: %s", other.describe())
                self.repo.store.delete(f"locks/{other.name}")
                continue
            if conflicting(self.kind, other.kind):
                conflicts.append(other)
        return conflicts

    def _refresh_loop(self) -> None:
        interval = min(REFRESH, self.expiry / 3).total_seconds()
        while not self._stop.wait(interval):
            try:
                with self._mutex:
                    if self.name is None or self._lost is not None:
                        return
                    # Never bring a lapsed lock back: another process may have acted on
                    # it being stale. check() then fails the operation.
                    self._lost = self._why_lost(self.name)
                    if self._lost is not None:
                        log.warning("the repository lock was lost: %s", self._lost)
                        return
                    old, self.name = self.name, self._write()
                self.repo.store.delete(f"locks/{old}")
            except Exception as e:  # keep trying; the lock only expires if we keep failing
                log.warning("could not refresh the repository lock: %s", e)

    def release(self) -> None:
        self.repo.unhold(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._mutex:
            if self.name is not None:
                self.repo.store.delete(f"locks/{self.name}")
                self.name = None

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
