"""Kubernetes Events for run outcomes, on the namespace the run was about.

``kubectl get events -n shop`` then shows "BackupCompleted", "DrillFailed",
… next to the application's own events, and event exporters forward them
like any other. The event is a core/v1 Event in that namespace whose
involvedObject is the Namespace, source component ``dr``; Warning for
anything that did not fully succeed, and for a backup completed with
warnings (``BackupCompletedWithWarnings``: a selector that matched nothing, a
hook that failed with ``onError: continue``, a volume skipped): its phase is
Completed and its exit code 0, so the event is where a scheduled run's
warnings are seen at all.

The involvedObject names the event's own namespace as its namespace, although
a Namespace is cluster-scoped: kube-apiserver validates an Event without
``eventTime`` so that ``involvedObject.namespace`` equals the event's
namespace, or, when empty, the event lives in ``default`` (legacyValidateEvent;
the test cluster does not validate built-in types, so only a real cluster
would say 422). Events about the app belong with the app, not in ``default``.

Messages are written by dr, never copied from resources or errors that
might hold secret values.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from dr.errors import DrError
from dr.kube.client import REQUEST_TIMEOUT

COMPONENT = "dr"
# Bytes of UTF-8, like the events.k8s.io note limit (1 KiB): events are for people; the full
# report lives in the repository.
MAX_MESSAGE = 1024


class Reason(StrEnum):
    BACKUP_COMPLETED = "BackupCompleted"
    BACKUP_COMPLETED_WITH_WARNINGS = "BackupCompletedWithWarnings"
    BACKUP_PARTIALLY_FAILED = "BackupPartiallyFailed"
    BACKUP_FAILED = "BackupFailed"
    RESTORE_COMPLETED = "RestoreCompleted"
    RESTORE_PARTIALLY_FAILED = "RestorePartiallyFailed"
    RESTORE_FAILED = "RestoreFailed"
    DRILL_PASSED = "DrillPassed"
    DRILL_FAILED = "DrillFailed"


class NamespaceNotFound(DrError):
    """The event's namespace does not exist (a restore that failed before creating it): there is
    no one to tell, so callers skip it quietly rather than warn."""


NORMAL = {Reason.BACKUP_COMPLETED, Reason.RESTORE_COMPLETED, Reason.DRILL_PASSED}


def event_type(reason: Reason) -> str:
    return "Normal" if reason in NORMAL else "Warning"


def _cut(message: str, limit: int) -> str:
    """``message`` in at most ``limit`` bytes of UTF-8, ending in "…" when cut (never half a character)."""
    data = message.encode("utf-8")
    if len(data) <= limit:
        return message
    # "…" is 3 bytes; errors="ignore" drops a character the cut went through.
    return data[: limit - 3].decode("utf-8", errors="ignore") + "…"


def event_body(namespace: str, reason: Reason, message: str, now: datetime | None = None) -> dict[str, Any]:
    """The core/v1 Event for an outcome in ``namespace`` (a unique name, like kubectl's recorder)."""
    ts = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = _cut(message, MAX_MESSAGE)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{namespace}.dr.{int(ts.timestamp() * 1e9):x}{secrets.token_hex(3)}",
            "namespace": namespace,
        },
        # namespace: see the module docstring (a real API server refuses the event without it).
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "name": namespace,
            "namespace": namespace,
        },
        "reason": str(reason),
        "message": text,
        "type": event_type(reason),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        # In a pod, HOSTNAME is the pod name: which run said it.
        "reportingInstance": os.environ.get("HOSTNAME", "")[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def record_event(
    api_client: Any, namespace: str, reason: Reason, message: str, now: datetime | None = None
) -> str:
    """Create the Event; returns its name. Raises DrError (naming the namespace) when the API refuses."""
    from kubernetes import client

    body = event_body(namespace, reason, message, now)
    try:
        # The generated client waits for ever without a timeout (a server that hangs mid-run).
        client.CoreV1Api(api_client).create_namespaced_event(
            namespace, body, _request_timeout=REQUEST_TIMEOUT
        )
    except client.ApiException as e:
        text = f"cannot record event {reason} in namespace {namespace}: {e.status} {e.reason}"
        if e.status == 404 and _missing_kind(e.body) == "namespaces":
            raise NamespaceNotFound(text) from None
        raise DrError(text) from None
    name: str = body["metadata"]["name"]
    return name


def _missing_kind(body: Any) -> str | None:
    """What a 404's Status says is not there (``details.kind``: "namespaces" when the namespace is missing)."""
    try:
        doc = json.loads(body)
    except (TypeError, ValueError):
        return None
    details = doc.get("details") if isinstance(doc, dict) else None
    kind = details.get("kind") if isinstance(details, dict) else None
    return kind if isinstance(kind, str) else None
