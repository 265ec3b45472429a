"""Writing objects: create, server-side apply, merge patch, delete.

Updates use server-side apply with field manager ``dr`` and ``force``: the
object's fields as given win over other managers' values, fields we do not
send (a Service's allocated ``clusterIP``, a bound PVC's ``volumeName``) are
left alone, and no ``resourceVersion`` read-modify-write loop is needed. Every
call can be a server-side dry run (``dryRun=All``): admission and validation
run, nothing is stored. Where several dr runs share one object (the copies
of dr-config in an application's namespace), ``patch`` and ``delete`` take
the ``resourceVersion`` read, and the server refuses the write (409) when
another run changed the object in between.
"""

from __future__ import annotations

import json
from typing import Any

from dr.kube.client import KubeClient, error_from_response
from dr.kube.discovery import ApiResource

FIELD_MANAGER = "dr"


def _query(dry_run: bool, **extra: str) -> dict[str, str]:
    q = {"fieldManager": FIELD_MANAGER, **extra}
    if dry_run:
        q["dryRun"] = "All"
    return q


def _namespace_of(res: ApiResource, obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("namespace") if res.namespaced else None


def create(
    kube: KubeClient, res: ApiResource, obj: dict[str, Any], *, dry_run: bool = False
) -> dict[str, Any]:
    """POST the object; returns what the server stored. ``ApiError`` (409 AlreadyExists, 422, 403…)."""
    return kube.call("POST", res.collection_path(_namespace_of(res, obj)), query=_query(dry_run), body=obj)


def apply(
    kube: KubeClient, res: ApiResource, obj: dict[str, Any], *, force: bool = True, dry_run: bool = False
) -> dict[str, Any]:
    """Server-side apply of ``obj`` (must carry apiVersion, kind, metadata.name) as field manager ``dr``."""
    name = str((obj.get("metadata") or {}).get("name"))
    query = _query(dry_run, force="true") if force else _query(dry_run)
    return kube.call(
        "PATCH",
        res.object_path(_namespace_of(res, obj), name),
        query=query,
        body=json.dumps(obj).encode(),
        content_type="application/apply-patch+yaml",  # JSON is YAML; this is the apply content type
    )


def patch(
    kube: KubeClient, res: ApiResource, namespace: str | None, name: str, change: dict[str, Any]
) -> dict[str, Any]:
    """JSON merge patch (``None`` removes a key). With ``metadata.resourceVersion`` in ``change``: only
    if the object is still that version, else ``ApiError`` 409 Conflict (404 if it is gone)."""
    return kube.call(
        "PATCH",
        res.object_path(namespace, name),
        query={"fieldManager": FIELD_MANAGER},
        body=json.dumps(change).encode(),
        content_type="application/merge-patch+json",
    )


def delete(
    kube: KubeClient,
    res: ApiResource,
    namespace: str | None,
    name: str,
    *,
    uid: str | None = None,
    resource_version: str | None = None,
    propagation: str = "Background",
    dry_run: bool = False,
) -> bool:
    """Delete one object (only if it still has ``uid`` and ``resource_version``, when given: else
    ``ApiError`` 409 Conflict). False if it was already gone."""
    path = res.object_path(namespace, name)
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
    preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
    if preconditions:
        body["preconditions"] = preconditions
    query = {"dryRun": "All"} if dry_run else None
    status, data = kube.request("DELETE", path, query=query, body=body)
    if status == 404:
        return False
    if not 200 <= status < 300:
        raise error_from_response("DELETE", path, status, data)
    return True
