"""Restore planning: options, which backed-up objects are restored (in which stage), and diffs.

Pure logic, no cluster access: ``build_plan`` takes the backup's items and the
options and decides, per object, whether it is restored and in which stage of
``dr.restore.order``, or skipped and why:

* the user's filters — source namespaces (names, globs), resource types,
  label selector — leave objects out silently (counted in ``filtered``);
  cluster-scoped objects tied to a namespace follow it (a Namespace object, a
  PersistentVolume through its claimRef);
* objects whose controller owner is in the backup are skipped with the owner
  named: the restored controller recreates them (PersistentVolumeClaims are the
  exception — they hold data and are restored whoever owns them);
* with ``cluster_resources=False`` (drills) cluster-scoped objects other than
  Namespaces are skipped with ``CLUSTER_SCOPED_SKIP``;
* what is never restored (``dr.kube.managed``: events, service-account token
  Secrets, … — a backup made by another tool may hold them) and, unless
  ``restore_pvs``, PersistentVolumes are skipped with the reason; so are
  PersistentVolumes with reclaim policy Delete and those whose claim's data
  the movers restore (``_pv_skip_reason``): their claims get new volumes.

``changes`` compares what restore would send with what exists, the way
server-side apply sees it: only fields present in the desired object count
(a server-allocated clusterIP is not a difference), server metadata and dr's
own labels are ignored, and Secret values are never shown (of a Secret only the
values of ``SECRET_SHOWN_PATHS`` are: annotations such as kubectl's
last-applied-configuration hold the data too).
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
from array import array
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dr.config import is_dns_label, is_dns_subdomain
from dr.errors import InvalidInput
from dr.kube.discovery import ApiResource, check_not_all_excluded, match_specs, split_specs
from dr.kube.managed import never_backed_up, object_skip_reason
from dr.kube.objects import ResourceItem, controller_of, labels_of
from dr.kube.selectors import parse_selector
from dr.restore.order import STAGES, stage_of
from dr.restore.results import ItemResults, RestoreItemResult
from dr.restore.transforms import (
    BACKUP_LABEL,
    DATA_PENDING_ANNOTATION,
    RESTORE_LABEL,
    SERVER_METADATA,
    storage_classes,
)


class UnusedClassMapping(InvalidInput):
    """A storage class mapping of the command that no claim, volume or StatefulSet of the restore uses."""


CLUSTER_SCOPED_SKIP = "cluster-scoped: not restored by this restore (namespaced objects only)"
PVC = ("", "persistentvolumeclaims")


class RestoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace_mapping: dict[str, str] = Field(default_factory=dict)  # source namespace -> target
    include_resources: list[str] = Field(default_factory=list)
    exclude_resources: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)  # source namespaces (names or globs); empty: all
    selector: str | None = None
    existing: Literal["skip", "update", "recreate"] = "skip"
    storage_class_mapping: dict[str, str] = Field(default_factory=dict)
    # Classes of storage_class_mapping that may go unused (a runbook's standing mapping, meant for
    # backups of another cluster): a warning then, not the error a typed mapping gets.
    standing_class_mappings: set[str] = Field(default_factory=set)
    preserve_nodeports: bool = False
    dry_run: bool = False
    restore_pvs: bool = True
    # False: cluster-scoped objects (CRDs, ClusterRoles, StorageClasses, webhooks, …) are skipped with
    # CLUSTER_SCOPED_SKIP; Namespace objects follow the mapping as usual. Drills: a drill must not
    # change the cluster outside its scratch namespaces (it would leave them behind).
    cluster_resources: bool = True
    workers: int = Field(default=16, ge=1, le=64)  # concurrent requests within a stage
    wait_timeout: float = Field(default=120.0, gt=0)  # per deletion (recreate) / CRD establishment

    @field_validator("include_resources", "exclude_resources", "namespaces", mode="after")
    @classmethod
    def _split_commas(cls, v: list[str]) -> list[str]:
        return split_specs(v)

    @field_validator("selector", mode="after")
    @classmethod
    def _valid_selector(cls, v: str | None) -> str | None:
        parse_selector(v)
        return v or None

    @field_validator("namespace_mapping", mode="after")
    @classmethod
    def _valid_targets(cls, v: dict[str, str]) -> dict[str, str]:
        for old, new in v.items():
            if not is_dns_label(new):
                raise InvalidInput(f"namespace mapping {old}={new}: {new!r} is not a valid namespace name")
        return v

    @field_validator("storage_class_mapping", mode="after")
    @classmethod
    def _valid_classes(cls, v: dict[str, str]) -> dict[str, str]:
        check_storage_class_mapping(v)
        return v


def check_storage_class_mapping(mapping: dict[str, str]) -> None:
    """``InvalidInput`` when a class mapped to cannot name a StorageClass. The claims would be
    created with it: an API server refuses each (422) after their namespace was made, and the
    restore ends partially failed instead of not starting."""
    for old, new in mapping.items():
        if not is_dns_subdomain(new):
            raise InvalidInput(f"--storage-class-mapping {old}={new}: {new!r} is not a storage class name "
                               "(lower-case letters, digits, '-' and '.', at most 253)")  # fmt: skip


@dataclass
class PlanEntry:
    item: ResourceItem  # as backed up
    # The object as compact JSON: a tenth of the memory of the parsed dict. An
    # object that is not JSON (never from a backup; a caller's bug) is kept as is.
    raw: bytes | dict[str, Any]
    stage: int
    target: ResourceItem  # namespace (and Namespace name) mapped

    @property
    def obj(self) -> dict[str, Any]:
        """A fresh copy of the backed-up object (parsed on use; callers may change it)."""
        if isinstance(self.raw, dict):
            return copy.deepcopy(self.raw)
        obj: dict[str, Any] = json.loads(self.raw)
        return obj


ItemSource = Callable[[], Iterable[tuple[ResourceItem, dict[str, Any]]]]


class DigestSet:
    """A set of strings held as 16-byte BLAKE2b digests (collisions: never, at 2^-128).

    The plan keeps two sets with one member per backed-up object (uids, target
    names); as digests they cost ~80 bytes per member instead of ~250 for the
    strings (and tuples) themselves.
    """

    __slots__ = ("_digests",)

    def __init__(self, members: Iterable[str] = ()) -> None:
        self._digests = {self._digest(m) for m in members}

    @staticmethod
    def _digest(member: str) -> bytes:
        return hashlib.blake2b(member.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def add(self, member: str) -> None:
        self._digests.add(self._digest(member))

    def __contains__(self, member: object) -> bool:
        return isinstance(member, str) and self._digest(member) in self._digests

    def __len__(self) -> int:
        return len(self._digests)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DigestSet) and self._digests == other._digests

    __hash__ = None  # type: ignore[assignment]


def _key_text(key: tuple[str, str, str | None, str]) -> str:
    group, resource, namespace, name = key
    return f"{group}\0{resource}\0{namespace or ''}\0{name}"


@dataclass
class RestorePlan:
    """What is restored in which stage.

    Materialised (``stages`` holds the entries) or, with a ``reread`` source,
    deferred: only each object's position in the backup is kept, and a stage's
    entries are read again from the source when the stage runs — memory then
    does not grow with the number of objects.
    """

    stages: list[list[PlanEntry]]  # by index in dr.restore.order.STAGES (materialised plans)
    skipped: ItemResults = field(default_factory=ItemResults)
    filtered: int = 0
    backup_uids: DigestSet = field(default_factory=DigestSet)
    warnings: list[str] = field(default_factory=list)
    reread: ItemSource | None = None
    # deferred: per stage, positions in the source (4 bytes each)
    positions: list[array[int]] = field(default_factory=list)
    targets: set[str] = field(default_factory=set)  # deferred: target namespaces of the entries
    mapping: dict[str, str] = field(default_factory=dict)
    # The backed-up Namespace objects by target name (one per namespace: few), also those the
    # filters leave out: a missing namespace is created from its own object, labels and all.
    namespace_objects: dict[str, bytes | dict[str, Any]] = field(default_factory=dict)
    # The entries' targets (group, plural, namespace, name), and how many per namespaced type and
    # target namespace: what ``dr.restore.existing`` lists, and which of the listed objects it keeps.
    target_keys: DigestSet = field(default_factory=DigestSet)
    lookups: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def restores(self, group: str, resource: str, namespace: str | None, name: str) -> bool:
        """Whether an entry of the plan is restored as this object."""
        return _key_text((group, resource, namespace, name)) in self.target_keys

    @property
    def entries(self) -> list[PlanEntry]:
        return [e for i in range(len(STAGES)) for e in self.stage_entries(i)]

    @property
    def entry_count(self) -> int:
        return sum(self.stage_size(i) for i in range(len(STAGES)))

    def stage_size(self, index: int) -> int:
        return len(self.positions[index]) if self.reread is not None else len(self.stages[index])

    def stage_entries(self, index: int) -> Iterator[PlanEntry]:
        """The entries of one stage, in backup order (read again from the source when deferred)."""
        if self.reread is None:
            yield from self.stages[index]
            return
        wanted = iter(self.positions[index])  # increasing: walked alongside the source
        want = next(wanted, None)
        if want is None:
            return
        for pos, (item, obj) in enumerate(self.reread()):
            if pos == want:
                yield PlanEntry(
                    item=item, raw=_compact(obj), stage=index, target=target_of(item, self.mapping)
                )
                want = next(wanted, None)
                if want is None:
                    break

    def namespace_object(self, name: str) -> dict[str, Any] | None:
        """A fresh copy of the backed-up Namespace object restored as ``name``, if the backup has one."""
        raw = self.namespace_objects.get(name)
        if raw is None:
            return None
        return copy.deepcopy(raw) if isinstance(raw, dict) else dict(json.loads(raw))

    def target_namespaces(self) -> set[str]:
        if self.reread is not None:
            return set(self.targets)
        return {e.target.namespace for e in self.entries if e.target.namespaced and e.target.namespace}


def _matches_namespace(ns: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(ns, p) for p in patterns)


def _type_set(
    specs: list[str], items: list[ResourceItem], known: Iterable[ApiResource], what: str, warnings: list[str]
) -> set[tuple[str, str]]:
    """(group, plural) the type names refer to, in the target cluster or in the backup itself."""
    from_backup = {
        ApiResource(i.group, i.version, i.resource, i.kind, i.namespaced, singular=i.kind.lower())
        for i in items
    }
    matched, unknown = match_specs(specs, [*known, *from_backup])
    for spec in unknown:
        warnings.append(f"{what} resource {spec!r} matches no resource type in the backup or the cluster")
    return matched


def target_of(item: ResourceItem, mapping: dict[str, str]) -> ResourceItem:
    """The object as restored: namespace (or Namespace name) mapped; no uid (the server assigns a new one)."""
    namespace, name = item.namespace, item.name
    if item.namespaced and namespace:
        namespace = mapping.get(namespace, namespace)
    elif (item.group, item.resource) == ("", "namespaces"):
        name = mapping.get(name, name)
    return item.model_copy(update={"namespace": namespace, "name": name, "uid": None})


def build_plan(
    items: Iterable[tuple[ResourceItem, dict[str, Any]]],
    options: RestoreOptions,
    *,
    known_types: Iterable[ApiResource] = (),
    reread: ItemSource | None = None,
    data_claims: Container[str] = frozenset(),
) -> RestorePlan:
    """Decide what is restored, in which stage, and what is skipped and why (no cluster access).

    Without ``reread``, ``items`` is read once and the objects are kept (as
    compact JSON) in the plan. With ``reread`` (a function giving the same
    objects again, e.g. from the repository) the plan is deferred: ``items``
    and ``reread()`` are each read once here, and each stage reads them again
    when it runs; per object only its position is kept. ``data_claims`` are the
    claims ("namespace/name" as backed up) whose data movers restore.
    """
    if reread is None:
        all_items: list[tuple[ResourceItem, bytes | dict[str, Any]]] = [
            (i, _compact(obj)) for i, obj in items
        ]
        backup_uids = DigestSet(i.uid for i, _ in all_items if i.uid)
        just_items = [i for i, _ in all_items]
        decisions: Iterable[tuple[ResourceItem, bytes | dict[str, Any]]] = all_items
    else:
        backup_uids = DigestSet()
        kinds: dict[tuple[str, str, str, str, bool], ResourceItem] = {}
        for i, _ in items:
            if i.uid:
                backup_uids.add(i.uid)
            kinds.setdefault((i.group, i.version, i.resource, i.kind, i.namespaced), i)
        just_items = list(kinds.values())
        decisions = reread()  # objects as dicts: decided on, not kept
    warnings: list[str] = []
    selector = parse_selector(options.selector)
    known = list(known_types)
    included = (
        _type_set(options.include_resources, just_items, known, "include", warnings)
        if options.include_resources
        else None
    )
    excluded = (
        _type_set(options.exclude_resources, just_items, known, "exclude", warnings)
        if options.exclude_resources
        else set()
    )
    check_not_all_excluded(options.include_resources, included, excluded)
    if options.include_resources and not included:
        raise InvalidInput(
            f"--include-resources {','.join(options.include_resources)}: no such resource type in the backup"
        )

    plan = RestorePlan(stages=[[] for _ in STAGES], backup_uids=backup_uids, warnings=warnings)
    if reread is not None:
        plan.reread, plan.positions, plan.mapping = (
            reread,
            [array("I") for _ in STAGES],
            dict(options.namespace_mapping),
        )
    seen = DigestSet()  # target keys: one object per name
    classes: set[str] = set()  # storage classes of the restored claims, volumes, StatefulSets
    selected = 0  # objects through the user's filters
    for pos, (item, raw) in enumerate(decisions):
        obj = json.loads(raw) if isinstance(raw, bytes) else raw
        gr = (item.group, item.resource)
        if gr == ("", "namespaces") and _in_namespaces(item, obj, options.namespaces):
            name = target_of(item, options.namespace_mapping).name
            plan.namespace_objects.setdefault(name, raw if isinstance(raw, bytes) else _compact(raw))
        # The user's filters: silently out.
        if (included is not None and gr not in included) or gr in excluded:
            plan.filtered += 1
            continue
        if not _in_namespaces(item, obj, options.namespaces):
            plan.filtered += 1
            continue
        if selector and not selector.matches(labels_of(obj)):
            plan.filtered += 1
            continue
        selected += 1
        if options.storage_class_mapping:
            classes |= storage_classes(obj)
        target = target_of(item, options.namespace_mapping)
        if _key_text(target.key) in seen:
            warnings.append(
                f"{target.describe()}: more than one object restores to this name; the first wins"
            )
            plan.filtered += 1
            continue
        seen.add(_key_text(target.key))
        why = _skip_reason(item, obj, options, backup_uids, data_claims)
        if why:
            plan.skipped.append(
                RestoreItemResult(item=target, source_namespace=item.namespace, outcome="skipped", reason=why)
            )
            continue
        stage = stage_of(item.group, item.resource)
        plan.target_keys.add(_key_text(target.key))
        if target.namespaced and target.namespace:
            lookup = (target.group, target.resource, target.namespace)
            plan.lookups[lookup] = plan.lookups.get(lookup, 0) + 1
        if reread is None:
            plan.stages[stage].append(PlanEntry(item=item, raw=raw, stage=stage, target=target))
        else:
            plan.positions[stage].append(pos)
            if target.namespaced and target.namespace:
                plan.targets.add(target.namespace)
    if options.selector and not selected:
        # A typo in the selector would be a restore of nothing that says Completed (as a -n typo,
        # which the CLI refuses). Found before anything is changed.
        raise InvalidInput(f"--selector {options.selector!r}: no object of the restore matches it")
    for old, new in options.storage_class_mapping.items():
        if old not in classes:
            # A typo would leave the claims with a class the target cluster may not have (Pending
            # for ever) in a restore that says Completed. Found before anything is changed.
            they = f" (they use: {', '.join(sorted(classes))})" if classes else ""
            if old in options.standing_class_mappings:
                warnings.append(f"storage class mapping {old}={new}: no claim, volume or StatefulSet of "
                                f"the backup uses storage class {old!r}{they}; not needed")  # fmt: skip
                continue
            raise UnusedClassMapping(f"--storage-class-mapping {old}={new}: no claim, volume or StatefulSet of "
                               f"the restore uses storage class {old!r}{they}")  # fmt: skip
    return plan


def _compact(obj: dict[str, Any]) -> bytes | dict[str, Any]:
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError):
        return obj


def _in_namespaces(item: ResourceItem, obj: dict[str, Any], patterns: list[str]) -> bool:
    if not patterns:
        return True
    if item.namespaced:
        return _matches_namespace(item.namespace or "", patterns)
    if (item.group, item.resource) == ("", "namespaces"):
        return _matches_namespace(item.name, patterns)
    if (item.group, item.resource) == ("", "persistentvolumes"):
        claim_ns = ((obj.get("spec") or {}).get("claimRef") or {}).get("namespace")
        return claim_ns is None or _matches_namespace(claim_ns, patterns)
    return True


def _skip_reason(
    item: ResourceItem,
    obj: dict[str, Any],
    options: RestoreOptions,
    backup_uids: Container[str],
    data_claims: Container[str] = frozenset(),
) -> str | None:
    never = never_backed_up(item.group, item.resource) or object_skip_reason(item.group, item.resource, obj)
    if never:
        return f"never restored: {never}"
    if (item.group, item.resource) == ("", "persistentvolumes") and not options.restore_pvs:
        return "persistent volumes are not restored (their data is restored into new volumes)"
    if (item.group, item.resource) == ("storage.k8s.io", "storageclasses"):
        new = options.storage_class_mapping.get(item.name)
        if new is not None:
            # Every claim, volume and StatefulSet of the restore goes to the new class: the old
            # one would be unused in the target cluster (another cluster, most often) and, as
            # the source's default class, would make it the target's second default.
            # Before the cluster-scoped skip: a drill does not look for a class it mapped away.
            return f"mapped to {new} by --storage-class-mapping: nothing restored uses it"
    if (
        not options.cluster_resources
        and not item.namespaced
        and (item.group, item.resource) != ("", "namespaces")
    ):
        return CLUSTER_SCOPED_SKIP
    if (item.group, item.resource) == ("", "persistentvolumes"):
        why = _pv_skip_reason(obj, data_claims)
        if why:
            return why
    # Claims hold data: restored even when a controller (a StatefulSet's retention policy) owns them.
    if item.owned and item.controller_uid in backup_uids and (item.group, item.resource) != PVC:
        ref = controller_of(obj) or {}
        owner = f"{ref['kind']} {ref['name']}" if ref.get("kind") and ref.get("name") else "a controller"
        return f"owned by {owner} in the backup, which recreates it"
    return None


def claim_of_pv(pv: dict[str, Any]) -> str | None:
    """The claim ("namespace/name") a PersistentVolume's ``claimRef`` names, if any."""
    ref = (pv.get("spec") or {}).get("claimRef")
    if not isinstance(ref, dict) or not ref.get("name"):
        return None
    return f"{ref.get('namespace') or ''}/{ref['name']}"


def _pv_skip_reason(pv: dict[str, Any], data_claims: Container[str]) -> str | None:
    """Why a PersistentVolume is not restored, as Velero decides: only a volume whose storage outlives it.

    Restoring a PV recreates a pointer to a disk, and the claim is bound to it
    (``volumeName`` kept). With reclaim policy Delete (dynamic provisioning's
    default) the disk went with the claim — after ``kubectl delete namespace``
    the restored PV would point at nothing. A claim whose data the movers bring
    back needs an empty new volume, not the old disk (in another cluster it may
    be the source's, still in use). Both claims get a new volume instead: their
    ``volumeName`` is dropped and the storage class provisions one.
    """
    spec = pv.get("spec") or {}
    claim = claim_of_pv(pv)
    if claim is not None and claim in data_claims:
        return f"the data of its claim {claim} is restored by a mover into a new volume"
    if spec.get("persistentVolumeReclaimPolicy") == "Delete":
        return "reclaim policy Delete: its disk is deleted with its claim; the claim gets a new volume"
    return None


# --------------------------------------------------------------------------- diffs

MAX_DIFF_LINES = 12
MAX_VALUE_CHARS = 60
_IGNORED_LABELS = (BACKUP_LABEL, RESTORE_LABEL)
# dr's own bookkeeping on restored objects: a filled claim that lost its data-pending mark is unchanged.
_IGNORED_ANNOTATIONS = (DATA_PENDING_ANNOTATION,)


def _empty(v: Any) -> bool:
    return v is None or v == {} or v == [] or v == ""


def _fmt(v: Any) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_METADATA}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _IGNORED_LABELS}
    meta["labels"] = labels
    if isinstance(meta.get("annotations"), dict):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k not in _IGNORED_ANNOTATIONS}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def changes(desired: dict[str, Any], existing: dict[str, Any], *, secret: bool | None = None) -> list[str]:
    """What applying ``desired`` would change in ``existing``: ``path: old → new`` lines (in a Secret
    only type, name, namespace and labels with their values, everything else as ``changed``/``added``);
    empty when ``existing`` already has every desired field."""
    if secret is None:
        secret = desired.get("kind") == "Secret"
    lines: list[str] = []
    _walk(_comparable(desired), _comparable(existing), "", lines, secret)
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"… and {len(lines) - MAX_DIFF_LINES} more"]
    return lines


def _walk(want: Any, have: Any, path: str, out: list[str], secret: bool) -> None:
    if isinstance(want, dict) and isinstance(have, dict):
        for key in sorted(want):
            sub = f"{path}.{key}" if path else str(key)
            if key not in have or have[key] is None:
                if not _empty(want[key]):
                    out.append(f"{sub}: added" if _redact(sub, secret) else f"{sub}: added {_fmt(want[key])}")
                continue
            _walk(want[key], have[key], sub, out, secret)
        return
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            _walk(w, h, f"{path}[{i}]", out, secret)
        return
    if want == have or (_empty(want) and _empty(have)):
        return
    out.append(f"{path}: changed" if _redact(path, secret) else f"{path}: {_fmt(have)} → {_fmt(want)}")


# What a Secret's diff shows values of; everything else is only "changed"/"added". Values can
# hide outside data/stringData too: kubectl's last-applied-configuration annotation holds the
# whole Secret, other tools copy values into annotations, and a Secret may carry any field.
SECRET_SHOWN_PATHS = ("type", "immutable", "metadata.name", "metadata.namespace", "metadata.labels")


def _redact(path: str, secret: bool) -> bool:
    if not secret:
        return False
    return not any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in SECRET_SHOWN_PATHS)
