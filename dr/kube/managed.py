"""What the cluster manages itself, and therefore must never be backed up or restored.

Two kinds of rules:

* whole resource types (``NEVER_BACKED_UP``): events (both APIs), nodes and
  node-bound objects, leases, component statuses, API-service registrations,
  IP address allocations, resource metrics (``metrics.k8s.io``) — all
  recreated, computed or owned by the control plane of the cluster they live
  in, meaningless (or harmful) in another one. Types without the ``list``,
  ``get`` and ``create`` verbs (bindings, token and access reviews, read-only
  aggregated APIs) cannot be backed up, or not restored, and are skipped by
  ``backupable``.
* single objects (``object_skip_reason``): service-account token Secrets (the
  token controller mints new ones), Endpoints and EndpointSlices maintained
  for a Service by the endpoint controllers, mirror Pods of static pods (the
  kubelet owns them), the ``kube-root-ca.crt`` ConfigMap the root-CA
  publisher writes into every namespace (it holds the *source* cluster's CA)
  and the API server's own Service ``default/kubernetes`` with its Endpoints
  and EndpointSlice (the *source* cluster's API server addresses).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from dr.kube.discovery import ApiResource

NEVER_BACKED_UP: dict[tuple[str, str], str] = {
    ("", "events"): "events are transient",
    ("events.k8s.io", "events"): "events are transient",
    ("", "nodes"): "nodes belong to the cluster",
    ("", "componentstatuses"): "component statuses are computed",
    ("", "bindings"): "bindings are a create-only pod subresource",
    ("coordination.k8s.io", "leases"): "leases are held by running components",
    ("apiregistration.k8s.io", "apiservices"): "API services are registered by their servers",
    # metrics-server's aggregated API: read-only usage figures of the moment, never restorable.
    # Listing them would need rights dr's backup role does not grant (a 403 in every backup),
    # and fails with 503 whenever metrics-server restarts.
    ("metrics.k8s.io", "pods"): "resource metrics are computed",
    ("metrics.k8s.io", "nodes"): "resource metrics are computed",
    ("storage.k8s.io", "csinodes"): "CSI nodes belong to the cluster's nodes",
    ("storage.k8s.io", "volumeattachments"): "volume attachments are node state",
    ("networking.k8s.io", "ipaddresses"): "IP addresses are allocations of the cluster",
    ("authentication.k8s.io", "tokenreviews"): "reviews are requests, not objects",
    ("authorization.k8s.io", "subjectaccessreviews"): "reviews are requests, not objects",
}

# Aggregated API groups that serve nothing a backup holds (resource metrics; the read-only custom
# and external metrics of autoscalers): their discovery failing while metrics-server,
# prometheus-adapter or KEDA restarts leaves nothing out of a backup, so it is no warning of one.
NOTHING_BACKED_UP_GROUPS = frozenset({"metrics.k8s.io", "custom.metrics.k8s.io", "external.metrics.k8s.io"})

SA_TOKEN_SECRET = "kubernetes.io/service-account-token"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ENDPOINTS_MANAGED_BY = "endpoints.kubernetes.io/managed-by"
ENDPOINTSLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# Service default/kubernetes, its Endpoints and EndpointSlice: the API server writes them with its
# own addresses (the Service has no selector, so the endpoint rules below would keep them).
API_SERVER_SERVICE = ("default", "kubernetes")
API_SERVER_SERVICE_TYPES = frozenset(
    {("", "services"), ("", "endpoints"), ("discovery.k8s.io", "endpointslices")}
)
CONTROLLER_ENDPOINTSLICE_MANAGERS = frozenset(
    {"endpointslice-controller.k8s.io", "endpointslicemirroring-controller.k8s.io"}
)


def never_backed_up(group: str, plural: str) -> str | None:
    """Why a resource type is never backed up or restored, or None."""
    return NEVER_BACKED_UP.get((group, plural))


def backupable(res: ApiResource) -> bool:
    """A type is backed up only if it can be listed and read, and created again (else no restore
    can bring it back: read-only views of aggregated APIs, such as OLM's packagemanifests, served
    by a server often down and named by no role of dr), and is not cluster-managed."""
    return res.supports("list", "get", "create") and never_backed_up(res.group, res.plural) is None


def object_skip_reason(
    group: str, plural: str, obj: dict[str, Any], selector_services: Container[tuple[str, str]] = ()
) -> str | None:
    """Why one object is left out of a backup (None: keep it).

    ``selector_services`` holds ``(namespace, name)`` of Services with a selector:
    their Endpoints are maintained by the endpoint controller.
    """
    meta = obj.get("metadata") or {}
    kind = (group, plural)
    if (meta.get("namespace"), meta.get("name")) == API_SERVER_SERVICE and kind in API_SERVER_SERVICE_TYPES:
        return "the API server's own service default/kubernetes"
    if kind == ("", "secrets"):
        return "service-account token secrets" if obj.get("type") == SA_TOKEN_SECRET else None
    if kind == ("", "configmaps"):
        return "kube-root-ca.crt config maps" if meta.get("name") == ROOT_CA_CONFIGMAP else None
    if kind == ("", "pods"):
        return "mirror pods" if MIRROR_POD_ANNOTATION in (meta.get("annotations") or {}) else None
    if kind == ("", "endpoints"):
        managed = ENDPOINTS_MANAGED_BY in (meta.get("labels") or {})
        if managed or (meta.get("namespace"), meta.get("name")) in selector_services:
            return "endpoints managed by services"
        return None
    managers = CONTROLLER_ENDPOINTSLICE_MANAGERS
    if (
        kind == ("discovery.k8s.io", "endpointslices")
        and (meta.get("labels") or {}).get(ENDPOINTSLICE_MANAGED_BY) in managers
    ):
        return "endpoint slices managed by services"
    return None
