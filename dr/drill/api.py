"""Plain-JSON access to the Kubernetes API for the verification steps.

Steps read objects as dicts, not as the client's generated models: objects
restored from a backup may lack fields the models insist on (client-side
validation rejects a Deployment without ``selector``), and a step only needs
a few status fields. Requests go through the given ``ApiClient`` (its
configuration, auth and TLS), so this is the kubernetes client, used raw.
Also: the small discovery that maps ``Deployment`` / ``deployments`` /
``deployments.apps`` to a resource URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client as kclient

from dr.errors import DrError

# Groups preferred when a kind exists in several (``Event`` is in core and events.k8s.io).
_PREFERRED_GROUPS = ("", "apps", "batch")


class StepApiError(DrError):
    """An API request of a step failed; the message says which request and why.

    ``step_details``: what the step had recorded when it failed (a job step's Job and
    whether it was deleted again), kept in the step's result."""

    step_details: dict[str, Any] | None = None

    @property
    def status(self) -> int | None:
        """The HTTP status of the failed request (0: no answer at all); None when it has none."""
        status = getattr(self.__cause__, "status", None)
        return status if isinstance(status, int) else None


def api_error_message(e: kclient.ApiException) -> str:
    """The ``Status`` message of an API error, else its HTTP status and reason."""
    body = e.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        status = json.loads(body) if body else None
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("message"):
        return f"{status['message']} ({e.status})"
    return f"HTTP {e.status} {e.reason or ''}".strip()


def unreachable(e: urllib3.exceptions.HTTPError) -> str:
    """Why no HTTP answer came (connection refused, timeout) in one line."""
    reason = getattr(e, "reason", None) or e
    return f"cannot reach the API server: {reason}"


def request(
    api: kclient.ApiClient,
    method: str,
    path: str,
    *,
    query: dict[str, Any] | None = None,
    body: Any = None,
    timeout: float = 30.0,
    content_type: str = "application/json",
) -> Any:
    """One API request; the decoded JSON response, or ``StepApiError`` naming the request."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    try:
        resp = api.call_api(
            path,
            method,
            query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
    except kclient.ApiException as e:
        raise StepApiError(f"{method} {path}: {api_error_message(e)}") from e
    except urllib3.exceptions.HTTPError as e:
        raise StepApiError(f"{method} {path}: {unreachable(e)}") from e
    data = resp.data
    return json.loads(data) if data else None


def list_items(
    api: kclient.ApiClient, path: str, *, selector: str | None = None, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """All items of a collection, following ``continue`` tokens."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = request(
            api,
            "GET",
            path,
            query={"labelSelector": selector, "limit": 500, "continue": token},
            timeout=timeout,
        )
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    def collection(self, namespace: str) -> str:
        base = "/api/v1" if not self.group else f"/apis/{self.group}/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if self.namespaced else f"{base}/{self.plural}"

    @property
    def display(self) -> str:
        return self.plural if not self.group else f"{self.plural}.{self.group}"


@dataclass
class Discovery:
    """Resource types the API server serves (preferred versions), read once per drill."""

    api: kclient.ApiClient
    _types: list[ResourceType] | None = field(default=None, repr=False)

    def types(self) -> list[ResourceType]:
        if self._types is None:
            found: list[ResourceType] = []
            found += self._group_types("", "v1", "/api/v1")
            groups = request(self.api, "GET", "/apis").get("groups") or []
            for g in groups:
                pv = (g.get("preferredVersion") or {}).get("version")
                if pv:
                    found += self._group_types(g["name"], pv, f"/apis/{g['name']}/{pv}")
            self._types = found
        return self._types

    def _group_types(self, group: str, version: str, path: str) -> list[ResourceType]:
        out = []
        for r in request(self.api, "GET", path).get("resources") or []:
            if "/" in r["name"]:  # subresources (deployments/status)
                continue
            out.append(ResourceType(group, version, r["kind"], r["name"], bool(r.get("namespaced"))))
        return out

    def resolve(self, ref: str) -> ResourceType:
        """``Deployment``, ``deployments``, ``deployment``, ``deployments.apps`` or ``Deployment.apps``."""
        name, _, group = ref.partition(".")
        low = name.lower()
        matches = [
            t
            for t in self.types()
            if (not group or t.group == group)
            and (t.kind == name or t.plural == low or t.kind.lower() == low or t.plural == low + "s")
        ]
        if not matches:
            raise StepApiError(f"the API server serves no resource {ref!r}")

        def rank(t: ResourceType) -> tuple[int, str]:
            pref = (
                _PREFERRED_GROUPS.index(t.group) if t.group in _PREFERRED_GROUPS else len(_PREFERRED_GROUPS)
            )
            return (pref, t.group)

        return sorted(matches, key=rank)[0]
