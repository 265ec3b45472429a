"""Waiting for the API server to reach a state: an object gone, a CRD established and served.

Each wait polls with a short, growing interval (50 ms up to 1 s) until its
condition holds or its timeout passes, then raises ``DrError`` saying what was
awaited and what was last seen (finalizers still set, the CRD's condition
message), which is what an operator needs to unblock it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from dr.errors import DrError
from dr.interrupt import sleep as interruptible_sleep
from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import get_object
from dr.kube.discovery import ApiResource, discover_group_version

T = TypeVar("T")


def poll(
    check: Callable[[], T | None],
    *,
    timeout: float,
    describe: Callable[[], str],
    first_delay: float = 0.05,
    max_delay: float = 1.0,
) -> T:
    """Call ``check`` until it returns something other than None; ``DrError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = first_delay
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise DrError(f"timed out after {timeout:.0f} s waiting for {describe()}")
        # Interruptible: worker threads stop waiting when dr is stopping (dr.interrupt).
        interruptible_sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, max_delay)


def wait_for_deletion(
    kube: KubeClient,
    res: ApiResource,
    namespace: str | None,
    name: str,
    *,
    uid: str | None = None,
    timeout: float = 120.0,
) -> None:
    """Until the object is gone (or has been replaced by one with another uid)."""
    last: dict[str, Any] = {}

    def gone() -> bool | None:
        obj = get_object(kube, res, namespace, name)
        if obj is None or (uid is not None and (obj.get("metadata") or {}).get("uid") != uid):
            return True
        last["obj"] = obj
        return None

    def describe() -> str:
        meta = (last.get("obj") or {}).get("metadata") or {}
        where = f"{namespace}/{name}" if namespace else name
        fins = meta.get("finalizers")
        return f"{res.group_resource} {where} to be deleted" + (
            f" (finalizers: {', '.join(fins)})" if fins else ""
        )

    poll(gone, timeout=timeout, describe=describe)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return None


def wait_for_crd_established(
    kube: KubeClient, crd_resource: ApiResource, name: str, *, timeout: float = 60.0
) -> None:
    """Until the CustomResourceDefinition ``name`` has condition Established=True.

    Fails at once when the API server refuses the CRD's names (NamesAccepted=False),
    since that will not resolve by waiting.
    """
    last: dict[str, Any] = {}

    def established() -> bool | None:
        crd = get_object(kube, crd_resource, None, name)
        if crd is None:
            return None
        last["crd"] = crd
        names = _condition(crd, "NamesAccepted")
        if names and names.get("status") == "False":
            raise DrError(f"CustomResourceDefinition {name}: names not accepted: {names.get('message', '')}")
        est = _condition(crd, "Established")
        return True if est and est.get("status") == "True" else None

    def describe() -> str:
        est = _condition(last.get("crd") or {}, "Established") or {}
        return f"CustomResourceDefinition {name} to be established" + (
            f" (last: {est.get('reason', '')} {est.get('message', '')})".rstrip() if est else ""
        )

    poll(established, timeout=timeout, describe=describe)


def wait_for_served(
    kube: KubeClient, group: str, version: str, plural: str, *, timeout: float = 60.0
) -> ApiResource:
    """Until discovery lists ``plural`` in ``group/version`` (a new CRD's type becomes usable)."""

    def served() -> ApiResource | None:
        try:
            resources = discover_group_version(kube, group, version)
        except ApiError as e:
            if e.status in (404, 503):
                return None
            raise
        return next((r for r in resources if r.plural == plural), None)

    return poll(served, timeout=timeout, describe=lambda: f"{plural}.{group}/{version} to be served")
