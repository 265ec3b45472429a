"""Restore Kubernetes resources from a backup's objects into the cluster.

``restore_resources(kube, items, options, backup_id, restore_id)`` is the
resource half of ``dr restore``. It plans (``dr.restore.plan``), then goes
through the stages of ``dr.restore.order`` one after another; within a stage
objects are transformed (``dr.restore.transforms``) and sent with a small
thread pool (``options.workers`` concurrent requests).

Per object:

* create it; if it already exists (409), compare with what is there
  (``plan.changes``): identical → ``unchanged``; else by ``options.existing``:
  ``skip`` (reported with the differences), ``update`` (server-side apply as
  field manager ``dr``, forced), ``recreate`` (delete with a uid precondition,
  wait until gone, create). Namespaces are never recreated — deleting one
  deletes everything in it — ``recreate`` updates them instead;
* a cluster-scoped object the restore would take from someone else is
  skipped with the reason, whatever ``options.existing`` says: a
  PersistentVolume bound to another claim, a ClusterRoleBinding whose
  service-account subjects the namespace mapping changed (it still serves
  the source namespace) — see ``_used_by_another``;
* an object that is still being deleted (say the namespace whose loss this
  restore repairs, still terminating) is waited for, then created;
* an object carrying this restore's ``dr.dev/restore`` label was restored by an
  earlier, interrupted run of the same restore: it counts as created, so
  running a restore again after a crash finishes it without duplicates (a
  re-run gets a new restore id, so its objects compare ``unchanged`` instead;
  claims whose data never arrived are found by their ``dr.dev/data-pending``
  mark, see ``dr.restore.volumes``). An update never adds that mark to a claim
  that has lost it: the claim holds its data;
* a StorageClass keeps its default-class annotation only when the cluster
  has no other default class: a restore does not make a second default;
* an owner reference whose owner is not in this cluster with the uid it
  names (another cluster's, or deleted since) is dropped: the garbage
  collector would delete the object for it (references to owners in the
  backup are dropped by the transforms);
* any error (403, 422, a type the cluster does not serve, …) fails that object
  only, with the server's reason; the restore ends ``PartiallyFailed``.

Namespaces the restored objects need are created if missing (labelled like
every restored object): from the backed-up Namespace object (transformed like
any object) when the filters left it out of the restore, bare when the backup
has none.
After the CRD stage, restore waits until each created CRD is Established and
its versions are served, so its custom objects can follow.

What exists is learned with one paged LIST per namespaced type and target
namespace (``dr.restore.existing``), not one GET per object; where that list
cannot be had (RBAC), objects are read by name as before. What the restore left
alone on the strength of a listing (unchanged, skipped) is checked at the end of
its stage; objects deleted or changed since they were listed are done again.

A dry run sends nothing that changes the cluster: it reads what exists and
reports per object would-create / would-update (with the differences) /
would-recreate / unchanged / skipped and why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from dr.errors import DrError
from dr.kube import apply as kapply
from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import get_object, list_objects
from dr.kube.discovery import ApiResource, Discovery, discover
from dr.kube.objects import (
    DEFAULT_STORAGE_CLASS_ANNOTATIONS,
    ResourceItem,
    is_default_storage_class,
    label_value,
    labels_of,
)
from dr.kube.wait import wait_for_crd_established, wait_for_deletion, wait_for_served
from dr.restore.existing import ExistingObjects
from dr.restore.order import CRD_STAGE, NAMESPACE_STAGE, STAGES, stage_of
from dr.restore.plan import (
    ItemSource,
    PlanEntry,
    RestoreOptions,
    RestorePlan,
    build_plan,
    changes,
    claim_of_pv,
)
from dr.restore.results import ItemResults, Outcome, RestoreItemResult
from dr.restore.transforms import (
    BACKUP_LABEL,
    RESTORE_LABEL,
    TransformContext,
    apply_transforms,
    data_pending,
    keep_owner_references,
    without_data_mark,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[RestoreItemResult, int, int], None]  # (result, done, total)
StageCallback = Callable[[str, ItemResults], None]  # (stage name, its results)

PV_STAGE = stage_of("", "persistentvolumes")
RESTORED_OUTCOMES = frozenset(
    {"created", "updated", "recreated", "would-create", "would-update", "would-recreate"}
)
REPLACED_DELETED = "after the existing object, which was being deleted, was gone"
NAMESPACE_TYPE = ApiResource("", "v1", "namespaces", "Namespace", False, frozenset({"get", "create"}))


class RestoreTimings(BaseModel):
    discovery_seconds: float = 0.0
    total_seconds: float = 0.0
    stages: dict[str, float] = Field(default_factory=dict)


class RestoreResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    backup_id: str
    restore_id: str
    dry_run: bool = False
    phase: Literal["Completed", "PartiallyFailed"] = "Completed"
    items: ItemResults = Field(default_factory=ItemResults)  # compact; see dr.restore.results
    counts: dict[str, int] = Field(default_factory=dict)  # outcome -> objects
    filtered: int = 0  # left out by the namespace, type and label filters
    namespaces_created: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    timings: RestoreTimings = Field(default_factory=RestoreTimings)

    @field_serializer("items")
    def _dump_items(self, items: ItemResults) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in items]

    @property
    def failures(self) -> list[RestoreItemResult]:
        return self.items.with_outcome("failed")


def restore_resources(
    kube: KubeClient,
    items: Iterable[tuple[ResourceItem, dict[str, Any]]],
    options: RestoreOptions,
    backup_id: str,
    restore_id: str,
    progress: ProgressCallback | None = None,
    *,
    after_stage: StageCallback | None = None,
    reread: ItemSource | None = None,
    data_volumes: Mapping[str, str] | None = None,
) -> RestoreResult:
    """Restore the backed-up objects ``items``; see the module docstring.

    Without ``reread`` the objects are read once and held (compactly) in memory.
    With ``reread`` — a function that reads the same objects again, e.g. from the
    repository — each stage reads them again and memory stays flat whatever the
    number of objects; only the per-object results are kept.

    ``progress(result, done, total)`` is called in the calling thread after each object
    (``total`` grows when missing namespaces are added). ``after_stage(name, results)`` is
    called in the calling thread after each stage of ``dr.restore.order.STAGES``, in order,
    with that stage's results (empty for a stage with nothing to restore) — e.g. to restore
    volume data after the PersistentVolumeClaims stage, before any workload. ``data_volumes``
    ("namespace/pvc" as backed up -> volume snapshot) names the claims whose data that step
    restores: they are created marked as awaiting it (``pvc_mark_data_pending``). Raises ``DrError`` only when the
    cluster's API cannot be read at all, ``InvalidInput`` for options that select nothing;
    every per-object problem is a ``failed`` item in the result.
    """
    run = _RestoreRun(kube, options, backup_id, restore_id, progress, after_stage, reread, data_volumes)
    return run.run(items)


STORAGE_CLASSES = ("storage.k8s.io", "storageclasses")
STORAGE_CLASS_API = ("storage.k8s.io", "v1", "storageclasses")


class _RestoreRun:
    def __init__(
        self,
        kube: KubeClient,
        options: RestoreOptions,
        backup_id: str,
        restore_id: str,
        progress: ProgressCallback | None,
        after_stage: StageCallback | None = None,
        reread: ItemSource | None = None,
        data_volumes: Mapping[str, str] | None = None,
    ) -> None:
        self.kube, self.options, self.progress, self.after_stage = kube, options, progress, after_stage
        self.reread = reread
        self.data_volumes: dict[str, str] = dict(data_volumes or {})
        self.result = RestoreResult(backup_id=backup_id, restore_id=restore_id, dry_run=options.dry_run)
        self.restore_label = label_value(restore_id)
        self.disc = Discovery()
        self.total = 0
        self.done = 0
        self.namespaces_created: set[str] = set()
        self.restored_pvs: set[str] = set()
        self.absent_namespaces: set[str] = set()  # dry run: target namespaces that would be created
        self.pending_types: set[tuple[str, str]] = set()  # dry run: types of CRDs that would be created
        # Guards discovery updates from the CRD waits and what the object workers share (owners, warnings).
        self.lock = threading.Lock()
        self.owners: dict[str, bool] = {}  # owner references checked: present in this cluster?
        self.existing = ExistingObjects(kube, {}, lambda *_: False)  # replaced once the plan is made

    # ------------------------------------------------------------------ reporting

    def report(self, result: RestoreItemResult, into: ItemResults | None = None) -> None:
        """Record one result (in ``into``, a stage's results, else directly in the restore's)."""
        (self.result.items if into is None else into).append(result)
        if result.item.kind == "Namespace" and result.outcome in ("created", "recreated"):
            self.namespaces_created.add(result.item.name)
        self.done += 1
        if self.progress is not None:
            self.progress(result, self.done, max(self.total, self.done))

    # ------------------------------------------------------------------ run

    def run(self, items: Iterable[tuple[ResourceItem, dict[str, Any]]]) -> RestoreResult:
        t0 = time.monotonic()
        try:
            self.disc = discover(self.kube, all_versions=True)
        except ApiError as e:
            raise DrError(f"cannot read the cluster's API: {e}") from None
        self.result.warnings.extend(self.disc.warnings)
        self.result.timings.discovery_seconds = round(time.monotonic() - t0, 3)

        plan = build_plan(
            items,
            self.options,
            known_types=self.disc.resources,
            reread=self.reread,
            data_claims=frozenset(self.data_volumes),
        )
        self.result.warnings.extend(plan.warnings)
        self.result.filtered = plan.filtered
        self.existing = ExistingObjects(self.kube, plan.lookups, plan.restores)
        self.total = len(plan.skipped) + plan.entry_count
        for skipped in plan.skipped:
            self.report(skipped)

        pool = ThreadPoolExecutor(max_workers=self.options.workers, thread_name_prefix="dr-restore")
        try:
            self.run_stages(pool, plan)
        except BaseException:
            # Interrupted (Ctrl-C, a failing progress callback): send nothing more, let in-flight requests end.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

        self.result.items.sort(key=_report_order)
        self.result.namespaces_created = sorted(self.namespaces_created)
        self.result.counts = self.result.items.counts()
        self.result.phase = "PartiallyFailed" if self.result.failures else "Completed"
        self.result.timings.total_seconds = round(time.monotonic() - t0, 3)
        return self.result

    def run_stages(self, pool: ThreadPoolExecutor, plan: RestorePlan) -> None:
        for index, stage in enumerate(STAGES):
            size = plan.stage_size(index)
            started = time.monotonic()
            # CRDs are needed again after their stage (to wait for them): a small stage, kept as a list.
            crds = list(plan.stage_entries(index)) if index == CRD_STAGE else None
            entries = plan.stage_entries(index) if crds is None else crds
            stage_results = self.run_stage(pool, plan, entries) if size else ItemResults()
            if size and not self.options.dry_run:
                stage_results = self.again_where_stale(pool, plan, index, stage_results)
            self.result.items.extend(stage_results)
            if crds:
                self.after_crds(pool, crds, stage_results)
            if index == PV_STAGE:
                # PVCs keep volumeName only when their volume is restored too (pvc_drop_binding).
                # PersistentVolumes are cluster-scoped: restored under their backed-up name.
                self.restored_pvs = {r.item.name for r in stage_results if self.restored(r)}
            if index == NAMESPACE_STAGE:
                self.ensure_namespaces(pool, plan, stage_results)
            if size:
                self.result.timings.stages[stage.name] = round(time.monotonic() - started, 3)
            self.existing.clear()  # the listings of this stage's types: no later stage reads them
            if self.after_stage is not None:
                self.after_stage(stage.name, stage_results)

    def again_where_stale(
        self, pool: ThreadPoolExecutor, plan: RestorePlan, index: int, results: ItemResults
    ) -> ItemResults:
        """The stage's results, with the objects left alone on the strength of a listing that no
        longer holds (deleted, changed or being deleted since it was read) restored again, each read
        by name as without listings, and their new results in place of the first."""
        stale = self.existing.changed_since_listed()
        if not stale:
            return results
        listings, self.existing = self.existing, ExistingObjects(self.kube, {}, plan.restores)
        try:
            entries = [e for e in plan.stage_entries(index) if e.target.key in stale]
            self.total += len(entries)
            again = self.run_stage(pool, plan, entries)
        finally:
            self.existing = listings
        redone = {r.item.key for r in again}
        return ItemResults([*(r for r in results if r.item.key not in redone), *again])

    def restored(self, r: RestoreItemResult) -> bool:
        return r.outcome in RESTORED_OUTCOMES

    def context(self, plan: RestorePlan) -> TransformContext:
        return TransformContext(
            backup_id=self.result.backup_id,
            restore_id=self.result.restore_id,
            namespace_mapping=self.options.namespace_mapping,
            storage_class_mapping=self.options.storage_class_mapping,
            preserve_nodeports=self.options.preserve_nodeports,
            backup_uids=plan.backup_uids,
            restored_pvs=frozenset(self.restored_pvs),
            data_volumes=self.data_volumes,
        )

    def run_stage(
        self, pool: ThreadPoolExecutor, plan: RestorePlan, entries: Iterable[PlanEntry]
    ) -> ItemResults:
        """Restore one stage's objects; their results in the order they finished."""
        ctx = self.context(plan)
        results = ItemResults()
        pending: set[Future[RestoreItemResult]] = set()
        # A bounded window of objects in flight: memory stays flat whatever the stage's size.
        window = self.options.workers * 4

        def drain(keep: int) -> None:
            while len(pending) > keep:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    pending.discard(fut)
                    self.report(fut.result(), results)

        for entry in entries:
            desired, dropped_by = apply_transforms(entry.obj, ctx)
            if desired is None:
                self.report(self.outcome(entry, "skipped", f"dropped by the {dropped_by} transform"), results)
                continue
            pending.add(pool.submit(self.restore_one, entry, desired))
            if len(pending) >= window:
                drain(window - 1)
        drain(0)
        return results

    # ------------------------------------------------------------------ one object

    def outcome(
        self, entry: PlanEntry, outcome: Outcome, reason: str | None = None, diff: list[str] | None = None
    ) -> RestoreItemResult:
        return RestoreItemResult(
            item=entry.target,
            source_namespace=entry.item.namespace,
            outcome=outcome,
            reason=reason,
            diff=diff or [],
        )

    def resource_for(self, item: ResourceItem) -> ApiResource | str:
        res = self.disc.lookup(item.group, item.version, item.resource)
        if res is not None:
            return res
        served = self.disc.versions_of(item.group, item.resource)
        hint = f" (it serves {', '.join(served)})" if served else ""
        return f"{item.api_version} {item.resource} is not served by this cluster{hint}"

    def restore_one(self, entry: PlanEntry, desired: dict[str, Any]) -> RestoreItemResult:
        try:
            res = self.resource_for(entry.item)
            desired = self.without_absent_owners(desired)
            if (entry.item.group, entry.item.resource) == STORAGE_CLASSES:
                desired = self.without_second_default(desired)
            if self.options.dry_run:
                return self.plan_one(entry, desired, res)
            if isinstance(res, str):
                return self.outcome(entry, "failed", res)
            return self.apply_one(entry, desired, res)
        except ApiError as e:
            return self.outcome(entry, "failed", e.short)
        except DrError as e:
            return self.outcome(entry, "failed", e.message)
        except Exception as e:
            # A bug must not abandon the rest of a restore during an incident: fail this object, log why.
            log.exception("restoring %s", entry.target.describe())
            return self.outcome(entry, "failed", f"internal error: {type(e).__name__}: {e}")

    def without_absent_owners(self, desired: dict[str, Any]) -> dict[str, Any]:
        """``desired`` without the owner references whose owner is not in this cluster.

        The transforms dropped references to owners in the backup (restored with new
        uids). The others name an owner by the uid it has in the cluster it lives in:
        restored into another cluster, or after that owner was deleted, the garbage
        collector finds no owner with that uid and deletes the restored object.
        """
        namespace = (desired.get("metadata") or {}).get("namespace")
        return keep_owner_references(
            desired, lambda r: not isinstance(r, dict) or self.owner_present(r, namespace)
        )

    def without_second_default(self, desired: dict[str, Any]) -> dict[str, Any]:
        """A StorageClass without its default-class annotations when the cluster has another default.

        The backed-up class was the default of the cluster it came from; restored into
        one with a default of its own (another cluster, most often), it would be a second
        default, and Kubernetes gives new claims without a class the newest default: every
        other application's. A restore does not change which class is the default. Where the
        classes cannot be listed it cannot tell: the class as backed up, and a warning.
        """
        meta = desired.get("metadata") or {}
        if not is_default_storage_class(desired):
            return desired
        res = self.disc.lookup(*STORAGE_CLASS_API)
        if res is None:
            return desired
        try:
            classes = list(list_objects(self.kube, res))
        except ApiError as e:
            # Cannot tell: as backed up, and said (into another cluster it may be a second default).
            with self.lock:
                self.result.warnings.append(
                    f"StorageClass {meta.get('name')}: cannot list StorageClasses to check for another "
                    f"default ({e.short}): restored with its default-class annotation"
                )
            return desired
        if not any(
            (c.get("metadata") or {}).get("name") != meta.get("name") and is_default_storage_class(c)
            for c in classes
        ):
            return desired  # no other default
        kept = {k: v for k, v in meta["annotations"].items() if k not in DEFAULT_STORAGE_CLASS_ANNOTATIONS}
        new_meta = {k: v for k, v in meta.items() if k != "annotations"}
        if kept:
            new_meta["annotations"] = kept
        return {**desired, "metadata": new_meta}

    def owner_present(self, ref: dict[str, Any], namespace: str | None) -> bool:
        """Whether the owner a reference names exists here with the uid it names (cached per restore)."""
        api_version, kind, name, uid = (ref.get(k) for k in ("apiVersion", "kind", "name", "uid"))
        if not all(isinstance(v, str) and v for v in (api_version, kind, name, uid)):
            return True  # malformed: the server's to judge, as before
        group = str(api_version).rpartition("/")[0]
        key = f"{api_version}\0{kind}\0{namespace or ''}\0{name}\0{uid}"
        with self.lock:
            if key in self.owners:
                return self.owners[key]
            # Any version of the owner's group and kind: the garbage collector maps it the same way.
            res = next((r for r in self.disc.resources if r.group == group and r.kind == kind), None)
        if res is None and group in self.disc.failed_groups:
            present = True  # cannot tell: the group's discovery failed, it may serve the kind
        elif res is None:
            present = False  # a type this cluster does not serve has no objects
        else:
            try:
                owner = get_object(self.kube, res, namespace if res.namespaced else None, str(name))
                present = owner is not None and _uid(owner) == uid
            except ApiError:
                present = True  # cannot tell (e.g. not allowed to read it): keep the reference
        with self.lock:
            self.owners[key] = present
        return present

    def restored_by_us(self, existing: dict[str, Any]) -> bool:
        return labels_of(existing).get(RESTORE_LABEL) == self.restore_label

    def apply_one(self, entry: PlanEntry, desired: dict[str, Any], res: ApiResource) -> RestoreItemResult:
        target = entry.target
        _, existing = self.existing.lookup(res, target.namespace, target.name)
        # A claim awaiting its data is read by name: deleted since it was listed, an update from
        # the copy would create it without the data-pending mark (empty, and never filled).
        if existing is not None and not data_pending(desired):
            try:
                return self.settle_existing(entry, desired, res, existing, listed=True)
            except _ReplacedSinceListed:
                pass  # read by name below, as without listings
        # Not there when listed, or not known: create it, and compare only if it is there after all.
        try:
            kapply.create(self.kube, res, desired)
            return self.outcome(entry, "created")
        except ApiError as e:
            if e.status == 403:
                # Not allowed to create — but the object may already be there as
                # backed up (e.g. a namespace a tenant may read, not create).
                try:
                    present = get_object(self.kube, res, target.namespace, target.name)
                except ApiError:
                    present = None
                if present is not None and not changes(desired, present):
                    return self.outcome(entry, "unchanged", "already exists (no right to create it)")
                raise
            if not e.already_exists:
                raise
        existing = get_object(self.kube, res, target.namespace, target.name)
        if existing is None:  # deleted between our create and get: try once more
            kapply.create(self.kube, res, desired)
            return self.outcome(entry, "created")
        return self.settle_existing(entry, desired, res, existing)

    def settle_existing(
        self,
        entry: PlanEntry,
        desired: dict[str, Any],
        res: ApiResource,
        existing: dict[str, Any],
        *,
        listed: bool = False,
    ) -> RestoreItemResult:
        """Restore ``desired`` over the object of its name that exists: replace it once gone when it is
        being deleted, else compare and act by ``options.existing``. ``listed``: ``existing`` is a
        listing's copy; what is left alone on its strength is checked at the end of the stage."""
        target = entry.target

        def left_alone(outcome: Outcome, reason: str, diff: list[str] | None = None) -> RestoreItemResult:
            if listed:
                self.existing.left_alone(res, target.namespace, target.name, existing)
            return self.outcome(entry, outcome, reason, diff)

        if _being_deleted(existing):
            # Typically the namespace (or object) whose loss this restore repairs, still terminating.
            self.wait_gone(res, target, existing)
            kapply.create(self.kube, res, desired)
            return self.outcome(entry, "created", REPLACED_DELETED)
        if self.restored_by_us(existing):
            return left_alone("created", "restored by an earlier run of this restore")
        diff = changes(desired, existing)
        if not diff:
            return left_alone("unchanged", "already exists")
        taken = _used_by_another(entry, desired, existing)
        if taken:
            return left_alone("skipped", taken, diff)
        policy = self.options.existing
        if policy == "skip":
            return left_alone("skipped", "already exists and differs (existing=skip)", diff)
        if policy == "update" or (res.group, res.plural) == ("", "namespaces"):
            stored = kapply.apply(self.kube, res, _keep_data_mark(desired, existing))
            if listed and _being_deleted(stored):
                # Its deletion began after it was listed: as read by name, replaced once gone.
                return self.settle_existing(entry, desired, res, stored)
            reason = "namespaces are updated, never recreated" if policy == "recreate" else None
            return self.outcome(entry, "updated", reason, diff)
        try:
            kapply.delete(self.kube, res, target.namespace, target.name, uid=_uid(existing))
        except ApiError as e:
            if listed and e.status == 409:  # the uid precondition: not the object that was listed
                raise _ReplacedSinceListed from e
            raise
        self.wait_gone(res, target, existing)
        kapply.create(self.kube, res, desired)
        return self.outcome(entry, "recreated", None, diff)

    def wait_gone(self, res: ApiResource, target: ResourceItem, existing: dict[str, Any]) -> None:
        wait_for_deletion(
            self.kube,
            res,
            target.namespace,
            target.name,
            uid=_uid(existing),
            timeout=self.options.wait_timeout,
        )

    def plan_one(
        self, entry: PlanEntry, desired: dict[str, Any], res: ApiResource | str
    ) -> RestoreItemResult:
        target = entry.target
        if isinstance(res, str):
            if (entry.item.group, entry.item.resource) in self.pending_types:
                return self.outcome(
                    entry, "would-create", "its CustomResourceDefinition is created by this restore"
                )
            return self.outcome(entry, "failed", res)
        if target.namespace in self.absent_namespaces:
            return self.outcome(entry, "would-create", f"namespace {target.namespace} would be created")
        existing = self.existing.get(res, target.namespace, target.name)
        if existing is None:
            return self.outcome(entry, "would-create")
        if _being_deleted(existing):
            return self.outcome(entry, "would-create", "once the existing object, being deleted, is gone")
        if self.restored_by_us(existing):
            return self.outcome(entry, "unchanged", "already restored by this restore")
        diff = changes(desired, existing)
        if not diff:
            return self.outcome(entry, "unchanged", "already exists")
        taken = _used_by_another(entry, desired, existing)
        if taken:
            return self.outcome(entry, "skipped", taken, diff)
        policy = self.options.existing
        if policy == "skip":
            return self.outcome(entry, "skipped", "already exists and differs (existing=skip)", diff)
        if policy == "update" or (res.group, res.plural) == ("", "namespaces"):
            return self.outcome(entry, "would-update", None, diff)
        return self.outcome(entry, "would-recreate", None, diff)

    # ------------------------------------------------------------------ CRDs and namespaces

    def after_crds(self, pool: ThreadPoolExecutor, entries: list[PlanEntry], results: ItemResults) -> None:
        """Wait until created CRDs are established and served; in a dry run, remember their types."""
        crd_res = self.disc.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        by_target = {r.item.key: r for r in results}
        waits = []
        for entry in entries:
            result = by_target.get(entry.target.key)
            spec = entry.obj.get("spec") or {}
            group, plural = str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", ""))
            if result is None or not self.restored(result):
                continue
            if self.options.dry_run:
                self.pending_types.add((group, plural))
                continue
            versions = [str(v.get("name")) for v in spec.get("versions") or [] if v.get("served", True)]
            if crd_res is not None:
                waits.append(pool.submit(self.wait_crd, crd_res, entry.target.name, group, plural, versions))
        for fut in as_completed(waits):
            warning = fut.result()
            if warning:
                self.result.warnings.append(warning)

    def wait_crd(
        self, crd_res: ApiResource, name: str, group: str, plural: str, versions: list[str]
    ) -> str | None:
        try:
            wait_for_crd_established(self.kube, crd_res, name, timeout=self.options.wait_timeout)
            for version in versions:
                served = wait_for_served(self.kube, group, version, plural, timeout=self.options.wait_timeout)
                with self.lock:
                    self.disc.add([served])
        except DrError as e:
            return f"CustomResourceDefinition {name}: {e.message}; its custom objects will fail"
        return None

    def ensure_namespaces(self, pool: ThreadPoolExecutor, plan: RestorePlan, ns_results: ItemResults) -> None:
        """Create the target namespaces that do not exist (dry run: note them as would-create)."""
        would_create = {r.item.name for r in ns_results if r.outcome == "would-create"}
        self.absent_namespaces |= would_create
        needed = sorted(plan.target_namespaces() - would_create)
        for result in pool.map(lambda name: self.ensure_namespace(name, plan), needed):
            if result is not None:
                self.total += 1
                self.report(result)

    def ensure_namespace(self, name: str, plan: RestorePlan) -> RestoreItemResult | None:
        item = ResourceItem(
            group="", version="v1", kind="Namespace", resource="namespaces", namespaced=False, name=name
        )
        # The backed-up Namespace (left out by the filters) carries what its objects rely on: Pod
        # Security labels, sidecar injection, node selectors. Created bare only if there is none.
        backed_up = plan.namespace_object(name)
        body = apply_transforms(backed_up, self.context(plan))[0] if backed_up is not None else None
        if body is not None:
            reason = "needed by restored objects; from the backup (filtered out of this restore)"
        else:
            reason = "needed by restored objects; not in the backup"
            labels = {BACKUP_LABEL: label_value(self.result.backup_id), RESTORE_LABEL: self.restore_label}
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        try:
            existing = get_object(self.kube, NAMESPACE_TYPE, None, name)
            if existing is not None and not _being_deleted(existing):
                return None
            if existing is not None and not self.options.dry_run:
                self.wait_gone(NAMESPACE_TYPE, item, existing)
                reason = f"{reason}; {REPLACED_DELETED}"
            if self.options.dry_run:
                self.absent_namespaces.add(name)
                return RestoreItemResult(item=item, outcome="would-create", reason=reason)
            try:
                kapply.create(self.kube, NAMESPACE_TYPE, body)
            except ApiError as e:
                if not e.already_exists:
                    raise
                return None
            return RestoreItemResult(item=item, outcome="created", reason=reason)
        except ApiError as e:
            if e.status == 403:
                self.result.warnings.append(f"cannot check whether namespace {name} exists: {e.short}")
                return None
            return RestoreItemResult(item=item, outcome="failed", reason=f"{reason}: {e.short}")


class _ReplacedSinceListed(Exception):
    """The object a listing's copy describes was replaced since (its delete names another uid)."""


def _used_by_another(entry: PlanEntry, desired: dict[str, Any], existing: dict[str, Any]) -> str | None:
    """Why an existing cluster-scoped object that differs is someone else's and is left alone, if it is.

    Cluster-scoped objects keep their backed-up name, so a restore into another
    namespace meets the source's own objects. Updating or recreating them would
    take them from the source: a PersistentVolume bound to another claim would
    be rebound (recreated: its disk possibly deleted), a ClusterRoleBinding
    would lose the source's service accounts. Whatever ``--existing`` says,
    they are skipped; the restored claim then gets a new volume (its
    ``volumeName`` is dropped, the data comes through the mover).
    """
    group, _, _ = str(desired.get("apiVersion", "")).rpartition("/")
    kind = desired.get("kind")
    if (group, kind) == ("", "PersistentVolume"):
        bound, wanted = claim_of_pv(existing), claim_of_pv(desired)
        if bound is not None and bound != wanted:
            return (
                f"bound to claim {bound}: a restore never takes a volume from another claim "
                "(the restored claim gets a new volume)"
            )
    if (group, kind) == ("rbac.authorization.k8s.io", "ClusterRoleBinding"):
        mapped = entry.obj.get("subjects") != desired.get("subjects")
        if mapped and existing.get("subjects") != desired.get("subjects"):
            return (
                "binds the service accounts of the backed-up namespace: a restore into another "
                "namespace never changes it (bind the copy's service accounts yourself)"
            )
    return None


def _keep_data_mark(desired: dict[str, Any], existing: dict[str, Any]) -> dict[str, Any]:
    """``desired`` without the data-pending mark unless ``existing`` has it.

    An update must not mark a claim as awaiting data: the volume step would then
    write the backup over the data the claim holds. Only a claim this restore
    creates, or one whose data never arrived (still marked), is filled.
    """
    return desired if data_pending(existing) else without_data_mark(desired)


def _being_deleted(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _uid(obj: dict[str, Any]) -> str | None:
    uid = (obj.get("metadata") or {}).get("uid")
    return str(uid) if uid else None


def _report_order(r: RestoreItemResult) -> str:
    """(stage, namespace, resource, name) as one string: sorts alike, a third of a tuple's memory."""
    stage = stage_of(r.item.group, r.item.resource)
    return f"{stage:03d}\0{r.item.namespace or ''}\0{r.item.resource}\0{r.item.name}"
