"""Back up Kubernetes resources: discover, list what the scope selects, stream each object to a sink.

``backup_resources(kube, scope, sink)`` is the whole resource half of
``dr backup`` (volume data is separate). It

1. reads the server version and discovers every resource type (preferred
   version of each group, CRDs included; a group whose discovery fails is a
   warning, but for the metrics APIs, which serve nothing a backup holds),
2. resolves the scope: namespaces (names, globs), label selector, included and
   excluded types, minus what is never backed up (``dr.kube.managed``),
3. lists each selected type page by page (``limit``/``continue``) and hands
   every object to ``sink.add(item, obj)`` as soon as its page arrives, so
   memory does not grow with the number of objects,
4. adds the cluster-scoped objects the scope asks for (``dr.backup.scope``).

Objects owned by a controller (Pods of a ReplicaSet, ReplicaSets of a
Deployment, Jobs of a CronJob, ControllerRevisions, …) are backed up like any
other but marked ``owned`` with their controller's uid; restore leaves them to
their restored controllers.

dr's own namespaces are left out of a selection by glob, of all namespaces
(no ``namespaces``) and of a label selector over all namespaces: dr's
namespace (``dr_namespace``: its CronJobs, Secrets, mover Jobs and temporary
snapshots) and drill scratch namespaces (labelled ``dr.dev/drill=true``,
holding restored copies of applications: backing them up would make a drill
copy the ``latest`` a restore picks, and snapshot its PVCs). One named
exactly (``-n dr-system``, a policy listing it) is backed up. What was left
out is logged and recorded (``excluded_namespaces``). When every other
namespace is selected, types are still listed across all namespaces, and an
object of a namespace not selected (left out, or made after the namespaces
were listed: a drill starting meanwhile) is skipped.

Namespaces given by name or glob of which none exists are invalid input
(``InvalidInput``, before anything is listed): an empty backup would become
the ``latest`` a restore picks. Some named ones missing next to others found
is invalid input too with ``missing_namespaces="error"`` (names the user
typed: the backup would lack what was asked for), a warning with ``"warn"``
(a policy's scope: a namespace deleted in an incident must not stop the
backups of the rest).

A selected namespace being deleted (Terminating) is backed up with what is
left of it, and a warning naming it: its objects go while they are listed.

A label selector that matches no object leaves the backup with the Namespace
objects alone: a warning, naming the selector and namespaces (nothing failed,
so the backup is ``Completed``; but a scheduled backup must not capture
nothing of the application unnoticed).

A type that cannot be listed (403, 5xx after the client's retries) or a
dependency that cannot be read becomes an error entry naming the type (and
namespace or object) and the server's reason; the backup goes on and ends
``PartiallyFailed``. A type forbidden (403) in every one of several namespaces
is one error for the type, not one a namespace. A type that answers 404 was
removed after discovery (a CRD uninstalled meanwhile): a warning, since none
of its objects exist. A type named in ``include_resources`` (``plural.group``)
whose group could not be discovered is an error too: what was asked for is
missing because of a failure, not a typo (which is a warning).
Errors of the sink (the repository) are not caught: they fail the backup. The
sink is only ever called from the calling thread.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from dr.backup.scope import BackupScope, is_glob, match_namespaces
from dr.deploy.rbac import DRILL_LABEL
from dr.errors import DrError, InvalidInput
from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import DEFAULT_PAGE_SIZE, get_object, iter_pages
from dr.kube.discovery import ApiResource, Discovery, check_not_all_excluded, discover, match_specs
from dr.kube.managed import NOTHING_BACKED_UP_GROUPS, backupable, object_skip_reason
from dr.kube.objects import ResourceItem
from dr.kube.selectors import parse_selector

log = logging.getLogger(__name__)

# Built-in API groups: a type in any other group may be served by a CRD, whose
# definition is then backed up too (auto mode). Some CRD groups end in .k8s.io
# (snapshot.storage.k8s.io, gateway.networking.k8s.io), so the list is explicit.
BUILTIN_GROUPS = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)

CRD = ("apiextensions.k8s.io", "customresourcedefinitions")
PV = ("", "persistentvolumes")
PVC = ("", "persistentvolumeclaims")
STORAGE_CLASS = ("storage.k8s.io", "storageclasses")
CLUSTER_ROLE = ("rbac.authorization.k8s.io", "clusterroles")
CLUSTER_ROLE_BINDING = ("rbac.authorization.k8s.io", "clusterrolebindings")
ROLE_BINDING = ("rbac.authorization.k8s.io", "rolebindings")
NAMESPACES = ("", "namespaces")
SERVICES = ("", "services")
SERVICE_ACCOUNT = ("", "serviceaccounts")
ENDPOINTS = ("", "endpoints")
STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


class ResourceSink(Protocol):
    """Receives every backed-up object (e.g. encrypts and stores it in the repository)."""

    def add(self, item: ResourceItem, obj: dict[str, Any]) -> None: ...


class BackupItemError(BaseModel):
    """A type, a namespace of a type, or one object that could not be backed up."""

    resource: str  # plural.group
    namespace: str | None = None
    name: str | None = None
    reason: str

    def describe(self) -> str:
        where = "/".join(p for p in (self.namespace, self.name) if p)
        return f"{self.resource}{' ' + where if where else ''}: {self.reason}"


class BackupTimings(BaseModel):
    discovery_seconds: float = 0.0
    listing_seconds: float = 0.0
    total_seconds: float = 0.0


class ResourceBackupResult(BaseModel):
    phase: Literal["Completed", "PartiallyFailed"] = "Completed"
    cluster_version: str = ""
    # Group ("core" for the core group) -> API version its objects were read in.
    api_versions: dict[str, str] = Field(default_factory=dict)
    namespaces: list[str] = Field(default_factory=list)
    # dr's namespace and drill scratch namespaces the selection matched but left out (not named exactly).
    excluded_namespaces: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)  # plural.group -> objects backed up
    total: int = 0
    owned: int = 0  # of which owned by a controller (kept, not restored by default)
    skipped: dict[str, int] = Field(default_factory=dict)  # why -> objects left out on purpose
    errors: list[BackupItemError] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    timings: BackupTimings = Field(default_factory=BackupTimings)


# What a literal namespace name of the scope that does not exist is: invalid input (names given
# on the command line) or a warning (a policy's scope, run on a schedule).
MissingNamespaces = Literal["error", "warn"]


def backup_resources(
    kube: KubeClient,
    scope: BackupScope,
    sink: ResourceSink,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    missing_namespaces: MissingNamespaces = "warn",
    dr_namespace: str | None = None,
) -> ResourceBackupResult:
    """Back up the resources ``scope`` selects into ``sink``; see the module docstring.

    ``dr_namespace`` is dr's own namespace (``mover.namespace``), left out unless named exactly.
    """
    return _BackupRun(kube, scope, sink, page_size, missing_namespaces, dr_namespace).run()


class _BackupRun:
    def __init__(
        self,
        kube: KubeClient,
        scope: BackupScope,
        sink: ResourceSink,
        page_size: int,
        missing_namespaces: MissingNamespaces,
        dr_namespace: str | None,
    ) -> None:
        self.kube, self.scope, self.sink, self.page_size = kube, scope, sink, page_size
        self.missing_namespaces = missing_namespaces
        self.dr_namespace = dr_namespace
        # With a cluster-wide listing: the namespaces whose objects are backed up (None: not filtered).
        self.selected: set[str] | None = None
        self.selector = str(parse_selector(scope.selector)) or None
        self.result = ResourceBackupResult()
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.emitted: set[tuple[str, str, str]] = set()  # cluster-scoped (group, plural, name)
        # Dependencies noted while listing namespaced objects (auto mode).
        self.custom_types: set[tuple[str, str]] = set()
        self.pv_names: dict[str, str] = {}  # PV name -> the PVC (ns/name) bound to it
        self.storage_classes: set[str] = set()
        self.cluster_roles: set[str] = set()
        self.service_accounts: set[tuple[str, str]] = set()  # (namespace, name)

    # ------------------------------------------------------------------ helpers

    def error(
        self, res: ApiResource, reason: str, namespace: str | None = None, name: str | None = None
    ) -> None:
        self.result.errors.append(
            BackupItemError(resource=res.group_resource, namespace=namespace, name=name, reason=reason)
        )

    def warn(self, text: str) -> None:
        self.result.warnings.append(text)

    def emit(self, res: ApiResource, obj: dict[str, Any]) -> None:
        item = ResourceItem.of(res, obj)
        if not res.namespaced:
            key = (res.group, res.plural, item.name)
            if key in self.emitted:
                return
            self.emitted.add(key)
        self.sink.add(item, obj)
        self.counts[res.group_resource] += 1
        self.result.api_versions[res.group or "core"] = res.version
        if item.owned:
            self.result.owned += 1

    # ------------------------------------------------------------------ run

    def run(self) -> ResourceBackupResult:
        t0 = time.monotonic()
        try:
            self.result.cluster_version = str(self.kube.version().get("gitVersion", ""))
            disc = discover(self.kube)
        except ApiError as e:
            raise DrError(f"cannot read the cluster's API: {e}") from None
        quiet = {text for group, text in disc.failures if group in NOTHING_BACKED_UP_GROUPS}
        for text in disc.warnings:
            if text in quiet:
                log.info("%s (it serves nothing a backup holds)", text)
            else:
                self.warn(text)
        t1 = time.monotonic()
        self.result.timings.discovery_seconds = round(t1 - t0, 3)

        types = self.select_types(disc)
        by_key = {(r.group, r.plural): r for r in disc.preferred_resources()}
        ns_res = by_key.get(NAMESPACES)
        if ns_res is None:
            raise DrError("the cluster serves no namespaces resource")
        namespaces, ns_objects, all_namespaces = self.resolve_namespaces(ns_res)
        self.result.namespaces = namespaces
        if all_namespaces:
            self.selected = set(namespaces)

        namespaced = [r for r in types if r.namespaced]
        if namespaces:
            selector_services = self.selector_services(by_key, namespaces, all_namespaces, namespaced)
            for res in namespaced:
                self.list_type(res, namespaces, all_namespaces, selector_services)

        excluded, _ = match_specs(self.scope.exclude_resources, disc.preferred_resources())
        if NAMESPACES not in excluded:
            for ns in namespaces:
                obj = ns_objects.get(ns)
                if obj is None:
                    obj = self.get_dependency(ns_res, ns, None)
                if obj is not None:
                    self.emit(ns_res, obj)
        mode = self.scope.include_cluster_resources
        if mode == "true":
            for res in types:
                if not res.namespaced and (res.group, res.plural) != NAMESPACES:
                    self.list_type(res, [], True, set())
        if mode in ("auto", "true"):
            self.add_dependencies(by_key, excluded, namespaces)

        t2 = time.monotonic()
        self.result.timings.listing_seconds = round(t2 - t1, 3)
        self.result.timings.total_seconds = round(t2 - t0, 3)
        self.result.counts = dict(sorted(self.counts.items()))
        self.result.total = sum(self.counts.values())
        self.warn_if_selector_matched_nothing(namespaces, all_namespaces)
        self.result.skipped = dict(sorted(self.skipped.items()))
        self.result.phase = "PartiallyFailed" if self.result.errors else "Completed"
        return self.result

    def warn_if_selector_matched_nothing(self, namespaces: list[str], all_namespaces: bool) -> None:
        """A label selector that matched no object (a typo, labels changed in a redeploy): the
        backup holds the Namespace objects at most, nothing of the application. Not an error:
        nothing failed, and the scope was done. But a scheduled backup must not capture
        nothing unnoticed, so it is a warning of the backup. (With errors, the types that
        failed may hold the matches; the errors are listed and say more.)"""
        if not self.scope.selector or self.result.errors:
            return
        if any(n for kind, n in self.counts.items() if kind != "namespaces"):
            return
        if all_namespaces:
            where = "in any namespace"
        else:
            shown = ", ".join(namespaces[:10]) + (
                f", … ({len(namespaces)} in all)" if len(namespaces) > 10 else ""
            )
            where = f"in namespace{'s' if len(namespaces) > 1 else ''} {shown}"
        if self.scope.include_cluster_resources == "true":
            where += " nor among cluster-scoped objects"
        kept = self.counts["namespaces"]
        backed_up = (
            "nothing was backed up"
            if not kept
            else "nothing of the application was backed up, only the Namespace object"
            + ("s" if kept > 1 else "")
        )
        self.warn(f"label selector {self.scope.selector!r} matched no object {where}: {backed_up}")

    def select_types(self, disc: Discovery) -> list[ApiResource]:
        candidates = [r for r in disc.preferred_resources() if backupable(r)]
        every = disc.preferred_resources()
        types = candidates
        included: set[tuple[str, str]] | None = None
        if self.scope.include_resources:
            included, unknown = match_specs(self.scope.include_resources, every)
            undiscovered = False
            for spec in unknown:
                group = spec.strip().lower().partition(".")[2]
                if group in disc.failed_groups:
                    # Asked for by name, and left out by a failure (its API down): not a typo.
                    self.result.errors.append(BackupItemError(
                        resource=spec, reason=f"not backed up: its API group {group} could not be discovered"
                    ))  # fmt: skip
                    undiscovered = True
                else:
                    self.warn(f"include resource {spec!r} matches no resource type the cluster serves")
            if not included and not undiscovered:
                raise InvalidInput(
                    f"--include-resources {','.join(self.scope.include_resources)}: "
                    "no such resource type in this cluster"
                )
            types = [r for r in types if (r.group, r.plural) in included]
        if self.scope.exclude_resources:
            excluded, unknown = match_specs(self.scope.exclude_resources, every)
            for spec in unknown:
                self.warn(f"exclude resource {spec!r} matches no resource type the cluster serves")
            check_not_all_excluded(self.scope.include_resources, included, excluded)
            types = [r for r in types if (r.group, r.plural) not in excluded]
        # Services first: their selectors decide which Endpoints are controller-managed.
        return sorted(types, key=lambda r: (r.group, r.plural) != SERVICES)

    def resolve_namespaces(self, ns_res: ApiResource) -> tuple[list[str], dict[str, dict[str, Any]], bool]:
        """(selected namespaces, their Namespace objects when listed, whether that is every namespace)."""
        patterns = self.scope.namespaces
        try:
            objs = {str(o["metadata"]["name"]): o for page in iter_pages(self.kube, ns_res) for o in page}
        except ApiError as e:
            if patterns and not any(is_glob(p) for p in patterns):
                # A namespace-scoped identity cannot list namespaces but may back up the ones it names.
                self.warn(f"cannot list namespaces ({e.short}); using the given names as they are")
                return sorted(set(patterns)), {}, False
            what = "match " + ", ".join(patterns) if patterns else "back up all namespaces"
            raise DrError(f"cannot list namespaces to {what}: {e.short}") from None
        matched, missing = match_namespaces(patterns, list(objs))
        named = {p for p in patterns if not is_glob(p)}
        left_out = [n for n in matched if n not in named and self.is_drs_own(n, objs[n])]
        chosen = [n for n in matched if n not in left_out]
        why = self.left_out(left_out)
        if patterns and not chosen:
            # A mistyped -n (or a policy whose namespaces are all gone) would otherwise be an
            # empty "Completed" backup, which `restore latest` then picks: nothing is written.
            raise InvalidInput(
                f"no namespace matches {', '.join(patterns)}: nothing to back up"
                + (f" ({why})" if why else "")
            )
        if not chosen and left_out:
            raise InvalidInput(f"no namespace to back up ({why})")
        if missing and self.missing_namespaces == "error":
            names = ", ".join(repr(n) for n in missing)
            were = "does not exist" if len(missing) == 1 else "do not exist"
            raise InvalidInput(f"namespace{'s' * (len(missing) > 1)} {names} {were}: nothing backed up")
        for name in missing:
            self.warn(f"namespace {name!r} does not exist")
        for name in chosen:
            # Terminating: its objects are being deleted while they are listed; this backup may
            # hold only part of the application, and still be the `latest` a restore picks.
            since = (objs[name].get("metadata") or {}).get("deletionTimestamp")
            if since:
                self.warn(
                    f"namespace {name} is being deleted (since {since}): its objects may be partly gone"
                )
        # Every namespace but dr's own: still one cluster-wide list per type (list_into_sink filters).
        return chosen, {n: objs[n] for n in chosen}, len(chosen) + len(left_out) == len(objs)

    def is_drs_own(self, name: str, obj: dict[str, Any]) -> bool:
        """dr's namespace, or a drill's scratch namespace (a restored copy of an application)."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return name == self.dr_namespace or labels.get(DRILL_LABEL) == "true"

    def left_out(self, names: list[str]) -> str:
        """Record and log the namespaces of dr left out; the reason, for messages ("" when none)."""
        if not names:
            return ""
        self.result.excluded_namespaces = names
        parts = [f"dr's namespace {n}" for n in names if n == self.dr_namespace]
        drills = [n for n in names if n != self.dr_namespace]
        if drills:
            parts.append(f"drill scratch namespace{'s' if len(drills) > 1 else ''} {', '.join(drills)}")
        text = f"left out {' and '.join(parts)} (name {'them' if len(names) > 1 else 'it'} to back up)"
        log.info("%s", text)
        return text

    def selector_services(
        self,
        by_key: dict[tuple[str, str], ApiResource],
        namespaces: list[str],
        all_ns: bool,
        types: list[ApiResource],
    ) -> set[tuple[str, str]]:
        """(namespace, name) of Services with a selector, when Endpoints are to be listed."""
        svc = by_key.get(SERVICES)
        if svc is None or not any((r.group, r.plural) == ENDPOINTS for r in types):
            return set()
        out: set[tuple[str, str]] = set()
        for ns in [None] if all_ns else namespaces:
            try:
                for page in iter_pages(self.kube, svc, namespace=ns, limit=self.page_size):
                    out |= {
                        (o["metadata"].get("namespace"), o["metadata"]["name"])
                        for o in page
                        if (o.get("spec") or {}).get("selector")
                    }
            except ApiError as e:
                self.warn(
                    f"cannot list services{' in ' + ns if ns else ''} to recognise managed endpoints: {e.short}"
                )
        return out

    def list_type(
        self, res: ApiResource, namespaces: list[str], all_ns: bool, selector_services: set[tuple[str, str]]
    ) -> None:
        if not res.namespaced or all_ns:
            try:
                self.list_into_sink(res, None, selector_services)
                return
            except ApiError as e:
                if self.vanished(res, e):
                    return
                if not res.namespaced or not namespaces or e.status != 403:
                    self.error(res, e.short)
                    return
                # No right to list across namespaces: try namespace by namespace.
        failures: list[tuple[str, ApiError]] = []
        for ns in namespaces:
            try:
                self.list_into_sink(res, ns, selector_services)
            except ApiError as e:
                if self.vanished(res, e):
                    return
                failures.append((ns, e))
        if (
            len(failures) > 1
            and len(failures) == len(namespaces)
            and all(e.status == 403 for _, e in failures)
        ):
            # No right on the type at all (a CRD's type dr's role does not name): one error, not
            # one a namespace, which in a cluster of hundreds drowns every other failure.
            self.error(
                res, f"{failures[0][1].short} (and in each of the other {len(failures) - 1} namespaces)"
            )
            return
        for ns, failure in failures:
            self.error(res, failure.short, namespace=ns)

    def vanished(self, res: ApiResource, e: ApiError) -> bool:
        """A 404 for a whole type: it was discovered, then removed (a CRD deleted while
        the backup ran). There is nothing of it to back up; say so, as a warning."""
        if e.status != 404:
            return False
        self.warn(
            f"{res.group_resource}: no longer served (removed while the backup ran); nothing backed up for it"
        )
        return True

    def list_into_sink(
        self, res: ApiResource, namespace: str | None, selector_services: set[tuple[str, str]]
    ) -> None:
        gr = (res.group, res.plural)
        listed = 0
        pages = iter_pages(
            self.kube,
            res,
            namespace=namespace,
            label_selector=self.selector,
            limit=self.page_size,
            on_warning=self.warn,
        )
        try:
            for page in pages:
                for obj in page:
                    listed += 1
                    if self.selected is not None and res.namespaced:
                        ns = (obj.get("metadata") or {}).get("namespace")
                        if ns not in self.selected:
                            continue
                    why = object_skip_reason(res.group, res.plural, obj, selector_services)
                    if why:
                        self.skipped[why] += 1
                        continue
                    self.emit(res, obj)
                    self.note_dependencies(gr, res, obj)
        except ApiError as e:
            if not listed:
                raise
            # The objects of the pages before the failure are in the sink; say the list is incomplete.
            message = f"{e.server_message} (listing stopped after {listed} objects)"
            raise ApiError(e.method, e.path, e.status, e.reason, message) from None

    # ------------------------------------------------------------------ dependencies (auto mode)

    def note_dependencies(self, gr: tuple[str, str], res: ApiResource, obj: dict[str, Any]) -> None:
        if res.group not in BUILTIN_GROUPS:
            self.custom_types.add(gr)
        spec = obj.get("spec") or {}
        if gr == PVC:
            if spec.get("volumeName"):
                meta = obj["metadata"]
                self.pv_names[str(spec["volumeName"])] = f"{meta.get('namespace')}/{meta.get('name')}"
            sc = spec.get("storageClassName") or (obj["metadata"].get("annotations") or {}).get(
                STORAGE_CLASS_ANNOTATION
            )
            if sc:
                self.storage_classes.add(str(sc))
        elif gr == SERVICE_ACCOUNT:
            self.service_accounts.add((str(obj["metadata"].get("namespace")), str(obj["metadata"]["name"])))
        elif gr in (ROLE_BINDING, CLUSTER_ROLE_BINDING):
            ref = obj.get("roleRef") or {}
            if ref.get("kind") == "ClusterRole" and ref.get("name"):
                self.cluster_roles.add(str(ref["name"]))
        elif gr == PV and spec.get("storageClassName"):
            self.storage_classes.add(str(spec["storageClassName"]))

    def get_dependency(self, res: ApiResource, name: str, needed_by: str | None) -> dict[str, Any] | None:
        """One cluster-scoped object by name; errors and absence are reported (None returned)."""
        try:
            obj = get_object(self.kube, res, None, name)
        except ApiError as e:
            self.error(res, f"needed by {needed_by}: {e.short}" if needed_by else e.short, name=name)
            return None
        if obj is None:
            self.warn(
                f"{needed_by} refers to {res.kind} {name!r}, which does not exist"
                if needed_by
                else f"{res.kind} {name!r} does not exist"
            )
            return None
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        return obj

    def add_dependencies(
        self,
        by_key: dict[tuple[str, str], ApiResource],
        excluded: set[tuple[str, str]],
        namespaces: list[str],
    ) -> None:
        def wanted(key: tuple[str, str]) -> ApiResource | None:
            res = by_key.get(key)
            return res if res is not None and key not in excluded and res.supports("get") else None

        if crd := wanted(CRD):
            for group, plural in sorted(self.custom_types):
                name = f"{plural}.{group}"
                if (crd.group, crd.plural, name) in self.emitted:
                    continue
                try:
                    obj = get_object(self.kube, crd, None, name)
                except ApiError as e:
                    self.error(crd, f"needed by the backed-up {name}: {e.short}", name=name)
                    continue
                if obj is not None:  # None: an aggregated API, not a CRD
                    obj.setdefault("apiVersion", crd.api_version)
                    obj.setdefault("kind", crd.kind)
                    self.emit(crd, obj)

        if pv := wanted(PV):
            for name, claim in sorted(self.pv_names.items()):
                if (pv.group, pv.plural, name) not in self.emitted and (
                    obj := self.get_dependency(pv, name, f"PersistentVolumeClaim {claim}")
                ):
                    self.emit(pv, obj)
                    self.note_dependencies(PV, pv, obj)

        crb = wanted(CLUSTER_ROLE_BINDING)
        if crb is not None and crb.supports("list") and self.service_accounts:
            self.add_cluster_role_bindings(crb)

        if sc := wanted(STORAGE_CLASS):
            for name in sorted(self.storage_classes):
                if (sc.group, sc.plural, name) not in self.emitted and (
                    obj := self.get_dependency(sc, name, "backed-up volumes")
                ):
                    self.emit(sc, obj)

        if cr := wanted(CLUSTER_ROLE):
            for name in sorted(self.cluster_roles):
                if (cr.group, cr.plural, name) not in self.emitted and (
                    obj := self.get_dependency(cr, name, "backed-up role bindings")
                ):
                    self.emit(cr, obj)

    def add_cluster_role_bindings(self, crb: ApiResource) -> None:
        """ClusterRoleBindings granting a backed-up ServiceAccount (and, later, their ClusterRoles)."""
        try:
            pages: Iterable[list[dict[str, Any]]] = list(iter_pages(self.kube, crb, limit=self.page_size))
        except ApiError as e:
            # Optional in auto mode: a namespace-scoped identity still gets a useful backup.
            self.warn(
                f"cannot list clusterrolebindings to find those of backed-up service accounts: {e.short}"
            )
            return
        for page in pages:
            for obj in page:
                subjects = obj.get("subjects") or []
                if any(
                    s.get("kind") == "ServiceAccount"
                    and (s.get("namespace"), s.get("name")) in self.service_accounts
                    for s in subjects
                ):
                    self.emit(crb, obj)
                    ref = obj.get("roleRef") or {}
                    if ref.get("kind") == "ClusterRole" and ref.get("name"):
                        self.cluster_roles.add(str(ref["name"]))
