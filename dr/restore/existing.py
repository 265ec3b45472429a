"""What already exists where a restore writes: one paged LIST per (type, namespace), not a GET per object.

A restore compares each object with the one of the same name in the cluster
(``dr.restore.plan.changes``), and a dry run reports from that alone. Asking
for each object by name costs one request per object (3,001 GETs for a
namespace of 3,001 ConfigMaps and Secrets, restored in place); like Velero,
``ExistingObjects`` lists each namespaced type once per namespace the restore
writes to, in pages (``limit``/``continue``), and answers from that listing.

What it keeps: per listed object the restore will look up (the plan's target
names, ``RestorePlan.restores``), the object without ``status`` and
``metadata.managedFields`` as compact JSON — the comparison reads the object's
content, so that much is what the decision needs; everything else the server
sends is dropped page by page. A copy is let go once looked up (each target
is looked up once), and all copies together stay within ``MAX_KEPT_BYTES``
(a namespace of 50,000 objects of 2 KB would be ~115 MiB, of Helm releases
gigabytes): a listing that reaches it stops there, the objects past it are
read by name. ``clear()`` drops it all (after each stage: a type belongs to
one stage).

Where listing does not pay or is not possible, objects are read one by one as
before (``get_object``, with its errors and so its messages):

* cluster-scoped types (a restore touches a few of a cluster-wide collection)
  and groups of fewer than ``MIN_LOOKUPS`` objects;
* a type whose discovery does not offer ``list``, or whose LIST fails (403
  where the restore may get but not list — RBAC —, or any other error);
* a listing that would take more pages than the restore has objects in it
  (a few objects restored into a namespace of thousands): it stops there, the
  objects it saw answer from it, the others are read by name.

A listing is read once, when the first object of its collection is restored;
the last may be restored minutes later. Where the restore wrote nothing on the
strength of a listed copy (unchanged, skipped, restored by an earlier run),
``changed_since_listed`` reads the collection again at the end of the stage and
names the objects whose copy no longer holds (deleted, changed, being deleted):
the restore does them again by name, as it would have done without listings.
Where it writes, the write tells (``dr.restore.resources``): a delete refused
for the copy's uid (replaced since) and an apply answered with a deletion
timestamp (being deleted since) go on by name; a claim awaiting its data is
always read by name. A dry run is not checked again: it reports a moment, and
read by name each object was also seen at some time during the run.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import DEFAULT_PAGE_SIZE, get_object, iter_pages
from dr.kube.discovery import ApiResource

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = DEFAULT_PAGE_SIZE
# One object is one GET either way; a LIST pays from two (module-level: tests change it).
MIN_LOOKUPS = 2
# What all listed copies may hold at once (module-level: tests change it), counted per copy as
# its JSON, its name and KEPT_OVERHEAD (measured: 50,000 copies take 130-150 bytes each beyond
# their JSON, a 17-character name included).
MAX_KEPT_BYTES = 64 * 2**20
KEPT_OVERHEAD = 150

Collection = tuple[str, str, str]  # (API group, resource plural, namespace): what one LIST reads


@dataclass
class _Listing:
    """One (type, namespace)'s listing: the objects the restore looks up, by name, as compact JSON."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    res: ApiResource | None = None  # the type listed (to read it again)
    listed: bool = False  # the LIST was tried (whatever it gave)
    complete: bool = False  # every page was read: a name not in ``objects`` does not exist
    objects: dict[str, bytes] = field(default_factory=dict)
    # Objects the restore left as their listed copy: name -> that copy's resourceVersion.
    left_as_listed: dict[str, str] = field(default_factory=dict)


class ExistingObjects:
    """The objects the restore will compare with, listed per (type, namespace) on first use. Thread-safe.

    ``lookups`` — objects the restore looks up per (group, plural, target namespace) — decides
    whether a collection is listed and how many pages the listing may take; ``restores(group, plural,
    namespace, name)`` says which listed objects to keep.
    """

    def __init__(
        self,
        kube: KubeClient,
        lookups: Mapping[Collection, int],
        restores: Callable[[str, str, str, str], bool],
    ) -> None:
        self.kube, self.lookups, self.restores = kube, lookups, restores
        self._lock = threading.Lock()
        self._listings: dict[Collection, _Listing] = {}
        self._kept = 0  # bytes of listed copies held (MAX_KEPT_BYTES), under _lock

    @property
    def kept_bytes(self) -> int:
        """What the listed copies not yet looked up hold (approximately, in bytes)."""
        with self._lock:
            return self._kept

    def get(self, res: ApiResource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object as it exists now (as ``get_object``: ``None`` if absent, ``ApiError`` if it
        cannot be read), from the listing where it answers, else read by name."""
        known, obj = self.lookup(res, namespace, name)
        return obj if known else get_object(self.kube, res, namespace, name)

    def lookup(
        self, res: ApiResource, namespace: str | None, name: str
    ) -> tuple[bool, dict[str, Any] | None]:
        """``(True, object or None)`` when the listing tells whether the object exists, else
        ``(False, None)``: the caller reads it by name (or acts as if it did not know)."""
        listing = self._listing(res, namespace)
        if listing is None:
            return False, None
        raw = listing.objects.pop(name, None)  # looked up once: let go
        if raw is not None:
            with self._lock:
                self._kept -= _cost(name, raw)
            found: dict[str, Any] = json.loads(raw)
            return True, found
        return (True, None) if listing.complete else (False, None)

    def left_alone(self, res: ApiResource, namespace: str | None, name: str, listed: dict[str, Any]) -> None:
        """The restore wrote nothing to this object on the strength of its ``listed`` copy (from
        ``lookup``): ``changed_since_listed`` checks that the copy still holds."""
        with self._lock:
            listing = self._listings.get((res.group, res.plural, namespace or ""))
        if listing is None:
            return
        version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        with listing.lock:
            listing.left_as_listed[name] = version

    def changed_since_listed(self) -> set[tuple[str, str, str | None, str]]:
        """The objects ``left_alone`` whose listed copy no longer holds — gone, or of another
        resourceVersion (changed, being deleted, replaced) — as (group, plural, namespace, name).

        Read with one more listing per collection (paged and capped as the first), the objects it
        does not reach by name. What cannot be read counts as changed: restoring it again by name
        is the restore without listings, always right."""
        stale: set[tuple[str, str, str | None, str]] = set()
        with self._lock:
            listings = list(self._listings.items())
        for (group, plural, namespace), listing in listings:
            left = listing.left_as_listed
            if not left or listing.res is None:
                continue
            res = listing.res
            now = _Listing()
            self._fill(now, res, namespace, max(1, len(left) - 1), left.__contains__, _version)
            for name, version in left.items():
                current = now.objects.get(name)
                if current is None and not now.complete:
                    try:
                        obj = get_object(self.kube, res, namespace, name)
                    except ApiError:
                        obj = None
                    current = _version(obj) if obj is not None else None
                if current != version.encode():
                    stale.add((group, plural, namespace, name))
        return stale

    def clear(self) -> None:
        """Forget every listing (a stage is done; the next stage's types are others)."""
        with self._lock:
            self._listings.clear()
            self._kept = 0

    def _listing(self, res: ApiResource, namespace: str | None) -> _Listing | None:
        if not (res.namespaced and namespace and res.supports("list")):
            return None
        key: Collection = (res.group, res.plural, namespace)
        lookups = self.lookups.get(key, 0)
        if lookups < MIN_LOOKUPS:
            return None
        with self._lock:
            listing = self._listings.setdefault(key, _Listing())
        with listing.lock:  # the first worker lists; the others of this collection wait for it
            if not listing.listed:
                listing.res = res
                restored = partial(self.restores, res.group, res.plural, namespace)
                self._fill(listing, res, namespace, max(1, lookups - 1), restored, _slim, budget=True)
                listing.listed = True
        return listing

    def _fill(
        self,
        listing: _Listing,
        res: ApiResource,
        namespace: str,
        max_pages: int,
        wanted: Callable[[str], bool],
        form: Callable[[dict[str, Any]], bytes],
        *,
        budget: bool = False,
    ) -> None:
        """List ``res`` in ``namespace`` into ``listing``: at most ``max_pages`` pages (fewer requests
        than reading each object by name), keeping the ``wanted`` objects (by name) in their ``form``;
        with ``budget``, only while the copies held stay within ``MAX_KEPT_BYTES``."""
        pages = 0
        try:
            for page in iter_pages(self.kube, res, namespace=namespace, limit=LIST_PAGE_SIZE):
                pages += 1
                for obj in page:
                    name = str((obj.get("metadata") or {}).get("name") or "")
                    if not (name and wanted(name)):
                        continue
                    kept = form(obj)
                    if budget and not self._take(_cost(name, kept)):
                        log.debug("%s in %s: listed copies reach %d bytes; the rest are read by name",
                                  res.group_resource, namespace, MAX_KEPT_BYTES)  # fmt: skip
                        return
                    listing.objects[name] = kept
                if page.last:
                    listing.complete = True
                elif pages >= max_pages:
                    log.debug("%s in %s: more than %d pages; objects past them are read by name",
                              res.group_resource, namespace, max_pages)  # fmt: skip
                    break
        except ApiError as e:
            # Not allowed to list (RBAC) or the list fails: read each object by name, as before,
            # so its own answer (and message) is what the restore reports.
            log.debug(
                "cannot list %s in %s (%s): reading objects by name", res.group_resource, namespace, e.short
            )

    def _take(self, cost: int) -> bool:
        """Count ``cost`` bytes as held, if they fit within ``MAX_KEPT_BYTES``."""
        with self._lock:
            if self._kept + cost > MAX_KEPT_BYTES:
                return False
            self._kept += cost
            return True


def _cost(name: str, kept: bytes) -> int:
    return len(name) + len(kept) + KEPT_OVERHEAD


def _version(obj: dict[str, Any]) -> bytes:
    """What tells whether an object changed since it was read: its resourceVersion."""
    return str((obj.get("metadata") or {}).get("resourceVersion") or "").encode()


def _slim(obj: dict[str, Any]) -> bytes:
    """``obj`` as compact JSON, without what no restore decision reads: its status and managedFields
    (often most of an object's size)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    slim = {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}
    return json.dumps(slim, separators=(",", ":"), ensure_ascii=False).encode()
