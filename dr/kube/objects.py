"""The identity of one Kubernetes object (``ResourceItem``) and small helpers over object dicts.

A ``ResourceItem`` is what backup hands to the repository sink next to each
object and what restore reports on: group, version, kind, plural, scope,
namespace and name, plus the object's uid and whether a controller owns it
(``owned``/``controller_uid``), so restore can leave owned objects to their
restored controllers without decoding the objects again.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dr.kube.discovery import ApiResource


class ResourceItem(BaseModel):
    """One object: ``(group, version, kind, resource, namespaced, namespace, name)`` and ownership."""

    model_config = ConfigDict(frozen=True)

    group: str
    version: str
    kind: str
    resource: str  # plural, e.g. "deployments"
    namespaced: bool
    namespace: str | None = None
    name: str
    uid: str | None = None
    # A controller owner reference (ownerReferences[].controller: true) exists:
    # the object is recreated by its controller (Pods of a ReplicaSet, …).
    owned: bool = False
    # camelCase only in dr's JSON output (by_alias); the backup's stream keeps the field's name.
    controller_uid: str | None = Field(default=None, serialization_alias="controllerUid")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def key(self) -> tuple[str, str, str | None, str]:
        """Version-independent identity: the same object under another API version has the same key."""
        return (self.group, self.resource, self.namespace, self.name)

    def describe(self) -> str:
        """``deployments.apps ns/web`` or ``storageclasses.storage.k8s.io fast``."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.group_resource} {where}"

    @classmethod
    def of(cls, res: ApiResource, obj: dict[str, Any]) -> ResourceItem:
        meta = obj.get("metadata") or {}
        ctrl = controller_of(obj)
        return cls(
            group=res.group,
            version=res.version,
            kind=res.kind,
            resource=res.plural,
            namespaced=res.namespaced,
            namespace=meta.get("namespace") if res.namespaced else None,
            name=str(meta.get("name", "")),
            uid=meta.get("uid"),
            owned=ctrl is not None,
            controller_uid=(ctrl or {}).get("uid"),
        )


def metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    labels = metadata(obj).get("labels")
    return labels if isinstance(labels, dict) else {}


# What marks a StorageClass as its cluster's default: the GA annotation, or the beta one that
# Kubernetes still honours (clusters set up long ago carry only that).
DEFAULT_STORAGE_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


def is_default_storage_class(obj: dict[str, Any]) -> bool:
    """Whether a StorageClass is marked as its cluster's default class."""
    annotations = metadata(obj).get("annotations")
    if not isinstance(annotations, dict):
        return False
    return any(annotations.get(a) == "true" for a in DEFAULT_STORAGE_CLASS_ANNOTATIONS)


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The owner reference with ``controller: true``, if any."""
    for ref in metadata(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def label_value(text: str) -> str:
    """``text`` as a valid label value: invalid characters become ``-``, at most 63, alphanumeric ends."""
    value = _LABEL_VALUE_BAD.sub("-", text)[:63]
    return value.strip("-_.")
