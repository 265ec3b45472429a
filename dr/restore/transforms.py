"""Restore transforms: small pure functions ``(obj, ctx) -> obj | None``, applied in ``TRANSFORMS`` order.

Each turns a backed-up object into what should be sent to the target cluster
for one reason, and returns a new dict (copying only what it changes; the
input is never modified) or ``None`` to drop the object. In order:

1. ``strip_server_metadata`` — uid, resourceVersion, generation, timestamps,
   managedFields, selfLink, deletion fields: the server assigns these;
2. ``drop_status`` — status is observed state, written by controllers;
3. ``drop_backed_up_owner_references`` — owners that are in the backup get a
   new uid when restored (or are not restored), so references to their old uid
   would make the garbage collector delete the object;
4. ``service_drop_allocated`` — clusterIP(s) (except headless ``None``),
   nodePorts and healthCheckNodePort are allocations of the source cluster
   (kept with ``preserve_nodeports``);
5. ``pvc_drop_binding`` — the binding annotations, and ``volumeName`` unless
   the PersistentVolume is restored by this restore;
6. ``pvc_mark_data_pending`` — the ``dr.dev/data-pending`` annotation on a
   PVC whose data this restore brings back through a mover (removed when the
   mover succeeded, replaced by ``dr.dev/data-restored``: the snapshot it holds),
   dropped from any other PVC, as is a data-restored mark copied from the backup; such a PVC also loses the
   ``dataSource``/``dataSourceRef`` it was made from (of the backed-up cluster);
7. ``pv_reset_claim_ref`` — the claim's uid and resourceVersion (the claim is
   recreated), so the restored claim can bind;
8. ``pod_drop_node_name`` — the scheduler places the pod again;
9. ``pod_drop_token_volumes`` — the service-account token volume admission
   injects (``kube-api-access-*``); a pod created with it is rejected;
10. ``job_drop_generated_selector`` — the selector and controller-uid labels
    generated for the old Job's uid (unless ``manualSelector``);
11. ``map_namespaces`` — metadata.namespace, Namespace names, ServiceAccount
    subjects of (Cluster)RoleBindings, PersistentVolume claimRefs;
12. ``map_storage_classes`` — PVCs, PVs, StatefulSet volumeClaimTemplates;
13. ``add_restore_labels`` — ``dr.dev/backup`` and ``dr.dev/restore`` on every object.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from dr.kube.objects import label_value, metadata

Obj = dict[str, Any]

BACKUP_LABEL = "dr.dev/backup"
RESTORE_LABEL = "dr.dev/restore"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
# On a PVC dr restored whose data has not arrived yet: the volume snapshot to restore into it.
DATA_PENDING_ANNOTATION = "dr.dev/data-pending"
# On a PVC whose data a restore brought back: the volume snapshot it holds (set as the mark goes).
DATA_RESTORED_ANNOTATION = "dr.dev/data-restored"

SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
PVC_BINDING_ANNOTATIONS = (
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
)
JOB_GENERATED_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
TOKEN_VOLUME_PREFIX = "kube-api-access-"


@dataclass(frozen=True)
class TransformContext:
    """What transforms may know besides the object itself."""

    backup_id: str
    restore_id: str
    namespace_mapping: Mapping[str, str] = field(default_factory=dict)
    storage_class_mapping: Mapping[str, str] = field(default_factory=dict)
    preserve_nodeports: bool = False
    # uids of every object in the backup: owners that will not keep their uid.
    backup_uids: Container[str] = frozenset()
    # Names (as in the backup) of the PersistentVolumes this restore creates or updates.
    restored_pvs: frozenset[str] = frozenset()
    # "namespace/name" (as in the backup) of each PVC whose data this restore brings back through a
    # mover -> the volume snapshot it comes from.
    data_volumes: Mapping[str, str] = field(default_factory=dict)

    def map_namespace(self, namespace: str) -> str:
        return self.namespace_mapping.get(namespace, namespace)


Transform = Callable[[Obj, TransformContext], Obj | None]


# --------------------------------------------------------------------------- helpers


def _kind(obj: Obj) -> tuple[str, str]:
    """(group, kind) of an object from its apiVersion."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    return group, str(obj.get("kind", ""))


def _with_metadata(obj: Obj, meta: dict[str, Any]) -> Obj:
    return {**obj, "metadata": meta}


def _with_spec(obj: Obj, spec: dict[str, Any]) -> Obj:
    return {**obj, "spec": spec}


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _without_keys(d: Mapping[str, Any], keys: tuple[str, ...] | set[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


# --------------------------------------------------------------------------- the transforms


def strip_server_metadata(obj: Obj, ctx: TransformContext) -> Obj | None:
    meta = metadata(obj)
    if not any(k in meta for k in SERVER_METADATA):
        return obj
    return _with_metadata(obj, _without_keys(meta, SERVER_METADATA))


def drop_status(obj: Obj, ctx: TransformContext) -> Obj | None:
    return _without_keys(obj, ("status",)) if "status" in obj else obj


def keep_owner_references(obj: Obj, keep: Callable[[Any], bool]) -> Obj:
    """``obj`` with only the owner references ``keep`` accepts: ``obj`` itself when it
    accepts them all, without ``ownerReferences`` when it accepts none."""
    meta = metadata(obj)
    refs = meta.get("ownerReferences")
    if not isinstance(refs, list) or not refs:
        return obj
    kept = [r for r in refs if keep(r)]
    if len(kept) == len(refs):
        return obj
    new_meta = _without_keys(meta, ("ownerReferences",))
    if kept:
        new_meta["ownerReferences"] = kept
    return _with_metadata(obj, new_meta)


def drop_backed_up_owner_references(obj: Obj, ctx: TransformContext) -> Obj | None:
    return keep_owner_references(obj, lambda r: not (isinstance(r, dict) and r.get("uid") in ctx.backup_uids))


def service_drop_allocated(obj: Obj, ctx: TransformContext) -> Obj | None:
    if _kind(obj) != ("", "Service"):
        return obj
    spec = dict(_spec(obj))
    if spec.get("clusterIP") != "None":
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    if not ctx.preserve_nodeports:
        spec.pop("healthCheckNodePort", None)
        if isinstance(spec.get("ports"), list):
            spec["ports"] = [
                _without_keys(p, ("nodePort",)) if isinstance(p, dict) else p for p in spec["ports"]
            ]
    return _with_spec(obj, spec)


def pvc_drop_binding(obj: Obj, ctx: TransformContext) -> Obj | None:
    if _kind(obj) != ("", "PersistentVolumeClaim"):
        return obj
    out = obj
    meta = metadata(obj)
    annotations = meta.get("annotations") or {}
    if any(a in annotations for a in PVC_BINDING_ANNOTATIONS):
        new_meta = dict(meta)
        new_meta["annotations"] = _without_keys(annotations, PVC_BINDING_ANNOTATIONS)
        out = _with_metadata(out, new_meta)
    spec = _spec(obj)
    if spec.get("volumeName") and spec["volumeName"] not in ctx.restored_pvs:
        out = _with_spec(out, _without_keys(spec, ("volumeName",)))
    return out


def pvc_mark_data_pending(obj: Obj, ctx: TransformContext) -> Obj | None:
    # The mark is created with the claim, in the same request: whenever a restore stops
    # (a failed mover, a crash, Ctrl-C) before the data arrived, the claim says so, and
    # the next run of a restore fills every claim still marked (``dr.restore.volumes``).
    # Without it a re-run found the claim "unchanged" and left it empty. A mark copied
    # from the backup (a claim backed up while a restore filled it) says nothing about
    # this restore: dropped.
    if _kind(obj) != ("", "PersistentVolumeClaim"):
        return obj
    meta = metadata(obj)
    annotations = meta.get("annotations") or {}
    snapshot = ctx.data_volumes.get(f"{meta.get('namespace')}/{meta.get('name')}")
    if snapshot is None:
        return without_data_mark(obj)
    kept = _without_keys(annotations, (DATA_RESTORED_ANNOTATION,))
    out = _with_metadata(obj, {**meta, "annotations": {**kept, DATA_PENDING_ANNOTATION: snapshot}})
    # Its data comes through the mover. The snapshot or claim it was made from (dataSource)
    # is of the backed-up cluster: elsewhere the provisioner refuses the claim (Pending for
    # ever), and where it exists it would fill the volume with data the mover replaces.
    if "dataSource" in _spec(obj) or "dataSourceRef" in _spec(obj):
        out = _with_spec(out, _without_keys(_spec(obj), ("dataSource", "dataSourceRef")))
    return out


def data_pending(obj: Obj) -> bool:
    """Whether ``obj`` (a claim) carries the ``dr.dev/data-pending`` mark."""
    return DATA_PENDING_ANNOTATION in (metadata(obj).get("annotations") or {})


def without_data_mark(obj: Obj) -> Obj:
    """``obj`` without the data-pending and data-restored marks; ``obj`` itself when it has none."""
    marks = (DATA_PENDING_ANNOTATION, DATA_RESTORED_ANNOTATION)
    meta = metadata(obj)
    if not any(k in (meta.get("annotations") or {}) for k in marks):
        return obj
    return _with_metadata(obj, {**meta, "annotations": _without_keys(meta["annotations"], marks)})


def data_restored(obj: Obj) -> str | None:
    """The volume snapshot a restore brought back into ``obj`` (a claim), if one did."""
    value = (metadata(obj).get("annotations") or {}).get(DATA_RESTORED_ANNOTATION)
    return str(value) if value else None


def pv_reset_claim_ref(obj: Obj, ctx: TransformContext) -> Obj | None:
    if _kind(obj) != ("", "PersistentVolume"):
        return obj
    spec = _spec(obj)
    ref = spec.get("claimRef")
    if not isinstance(ref, dict) or not ("uid" in ref or "resourceVersion" in ref):
        return obj
    return _with_spec(obj, {**spec, "claimRef": _without_keys(ref, ("uid", "resourceVersion"))})


def pod_drop_node_name(obj: Obj, ctx: TransformContext) -> Obj | None:
    if _kind(obj) != ("", "Pod") or "nodeName" not in _spec(obj):
        return obj
    return _with_spec(obj, _without_keys(_spec(obj), ("nodeName",)))


def pod_drop_token_volumes(obj: Obj, ctx: TransformContext) -> Obj | None:
    if _kind(obj) != ("", "Pod"):
        return obj
    spec = _spec(obj)
    volumes = spec.get("volumes") or []
    injected = {
        v.get("name")
        for v in volumes
        if isinstance(v, dict) and str(v.get("name", "")).startswith(TOKEN_VOLUME_PREFIX) and "projected" in v
    }
    if not injected:
        return obj
    new_spec = dict(spec)
    new_spec["volumes"] = [v for v in volumes if v.get("name") not in injected]
    for key in ("containers", "initContainers", "ephemeralContainers"):
        if isinstance(spec.get(key), list):
            new_spec[key] = [
                {
                    **c,
                    "volumeMounts": [m for m in c.get("volumeMounts") or [] if m.get("name") not in injected],
                }
                if isinstance(c, dict) and c.get("volumeMounts")
                else c
                for c in spec[key]
            ]
    return _with_spec(obj, new_spec)


def job_drop_generated_selector(obj: Obj, ctx: TransformContext) -> Obj | None:
    if _kind(obj) != ("batch", "Job"):
        return obj
    spec = _spec(obj)
    if spec.get("manualSelector"):
        return obj
    out = obj
    new_spec = _without_keys(spec, ("selector",))
    template = new_spec.get("template")
    if isinstance(template, dict):
        tmeta = template.get("metadata") or {}
        tlabels = tmeta.get("labels") or {}
        if any(k in tlabels for k in JOB_GENERATED_LABELS):
            new_spec["template"] = {
                **template,
                "metadata": {**tmeta, "labels": _without_keys(tlabels, JOB_GENERATED_LABELS)},
            }
    out = _with_spec(out, new_spec)
    meta = metadata(obj)
    labels = meta.get("labels") or {}
    if any(k in labels for k in JOB_GENERATED_LABELS):
        out = _with_metadata(out, {**meta, "labels": _without_keys(labels, JOB_GENERATED_LABELS)})
    return out


def map_namespaces(obj: Obj, ctx: TransformContext) -> Obj | None:
    if not ctx.namespace_mapping:
        return obj
    out = obj
    meta = metadata(obj)
    group, kind = _kind(obj)
    if meta.get("namespace") in ctx.namespace_mapping:
        out = _with_metadata(out, {**meta, "namespace": ctx.map_namespace(meta["namespace"])})
    if (group, kind) == ("", "Namespace") and meta.get("name") in ctx.namespace_mapping:
        new_name = ctx.map_namespace(meta["name"])
        new_meta = {**metadata(out), "name": new_name}
        labels = new_meta.get("labels") or {}
        if NAMESPACE_NAME_LABEL in labels:
            new_meta["labels"] = {**labels, NAMESPACE_NAME_LABEL: new_name}
        out = _with_metadata(out, new_meta)
    if group == "rbac.authorization.k8s.io" and kind in ("RoleBinding", "ClusterRoleBinding"):
        subjects = out.get("subjects")
        if isinstance(subjects, list) and any(_maps_subject(s, ctx) for s in subjects):
            out = {
                **out,
                "subjects": [
                    {**s, "namespace": ctx.map_namespace(s["namespace"])} if _maps_subject(s, ctx) else s
                    for s in subjects
                ],
            }
    if (group, kind) == ("", "PersistentVolume"):
        spec = _spec(out)
        ref = spec.get("claimRef")
        if isinstance(ref, dict) and ref.get("namespace") in ctx.namespace_mapping:
            out = _with_spec(
                out, {**spec, "claimRef": {**ref, "namespace": ctx.map_namespace(ref["namespace"])}}
            )
    return out


def _maps_subject(subject: Any, ctx: TransformContext) -> bool:
    return (
        isinstance(subject, dict)
        and subject.get("kind") == "ServiceAccount"
        and subject.get("namespace") in ctx.namespace_mapping
    )


def _map_claim_spec_class(claim: dict[str, Any], ctx: TransformContext) -> dict[str, Any]:
    """A PVC (or a volumeClaimTemplate) with its storage class, by field or legacy annotation, mapped."""
    out = claim
    spec = claim.get("spec")
    if isinstance(spec, dict) and spec.get("storageClassName") in ctx.storage_class_mapping:
        out = {
            **out,
            "spec": {**spec, "storageClassName": ctx.storage_class_mapping[spec["storageClassName"]]},
        }
    meta = claim.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if (
        isinstance(meta, dict)
        and annotations
        and annotations.get(STORAGE_CLASS_ANNOTATION) in ctx.storage_class_mapping
    ):
        new_class = ctx.storage_class_mapping[annotations[STORAGE_CLASS_ANNOTATION]]
        out = {
            **out,
            "metadata": {**meta, "annotations": {**annotations, STORAGE_CLASS_ANNOTATION: new_class}},
        }
    return out


def _claim_classes(claim: Any) -> set[str]:
    if not isinstance(claim, dict):
        return set()
    spec, meta = claim.get("spec"), claim.get("metadata")
    found = {spec.get("storageClassName")} if isinstance(spec, dict) else set()
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        found.add(meta["annotations"].get(STORAGE_CLASS_ANNOTATION))
    return {c for c in found if isinstance(c, str) and c}


def storage_classes(obj: Obj) -> set[str]:
    """The storage classes ``map_storage_classes`` would map in ``obj`` (a claim, volume or StatefulSet)."""
    group, kind = _kind(obj)
    if (group, kind) == ("", "PersistentVolumeClaim"):
        return _claim_classes(obj)
    if (group, kind) == ("", "PersistentVolume"):
        return _claim_classes({"spec": _spec(obj)})
    if (group, kind) == ("apps", "StatefulSet"):
        templates = _spec(obj).get("volumeClaimTemplates")
        return {c for t in templates for c in _claim_classes(t)} if isinstance(templates, list) else set()
    return set()


def map_storage_classes(obj: Obj, ctx: TransformContext) -> Obj | None:
    if not ctx.storage_class_mapping:
        return obj
    group, kind = _kind(obj)
    if (group, kind) == ("", "PersistentVolumeClaim"):
        return _map_claim_spec_class(obj, ctx)
    if (group, kind) == ("", "PersistentVolume"):
        spec = _spec(obj)
        if spec.get("storageClassName") in ctx.storage_class_mapping:
            return _with_spec(
                obj, {**spec, "storageClassName": ctx.storage_class_mapping[spec["storageClassName"]]}
            )
        return obj
    if (group, kind) == ("apps", "StatefulSet"):
        spec = _spec(obj)
        templates = spec.get("volumeClaimTemplates")
        if isinstance(templates, list) and templates:
            mapped = [_map_claim_spec_class(t, ctx) if isinstance(t, dict) else t for t in templates]
            if any(m is not t for m, t in zip(mapped, templates, strict=True)):
                return _with_spec(obj, {**spec, "volumeClaimTemplates": mapped})
    return obj


def add_restore_labels(obj: Obj, ctx: TransformContext) -> Obj | None:
    meta = metadata(obj)
    labels = {
        **(meta.get("labels") or {}),
        BACKUP_LABEL: label_value(ctx.backup_id),
        RESTORE_LABEL: label_value(ctx.restore_id),
    }
    return _with_metadata(obj, {**meta, "labels": labels})


TRANSFORMS: tuple[Transform, ...] = (
    strip_server_metadata,
    drop_status,
    drop_backed_up_owner_references,
    service_drop_allocated,
    pvc_drop_binding,
    pvc_mark_data_pending,
    pv_reset_claim_ref,
    pod_drop_node_name,
    pod_drop_token_volumes,
    job_drop_generated_selector,
    map_namespaces,
    map_storage_classes,
    add_restore_labels,
)


def apply_transforms(
    obj: Obj, ctx: TransformContext, transforms: tuple[Transform, ...] = TRANSFORMS
) -> tuple[Obj | None, str | None]:
    """Run the transforms in order: ``(result, None)``, or ``(None, name)`` of the one that dropped it."""
    current = obj
    for transform in transforms:
        result = transform(current, ctx)
        if result is None:
            return None, transform.__name__
        current = result
    return current, None
