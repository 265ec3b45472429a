"""Which namespaces no backup protects: the check behind ``dr status``'s "namespaces without a policy".

The same rule as the admission policies in ``deploy/policies/``: every
application namespace is either in some backup policy's scope, or carries
the label ``dr.dev/backup-policy`` (naming the policy that covers it, or
``none`` as a deliberate opt-out). Exempt: ``kube-*``, dr's own namespace
and drill scratch namespaces (``dr.dev/drill=true``).

A policy whose scope lists no namespaces covers every namespace (as
``dr backup`` without ``--namespace`` does). A scope's label selector narrows
*objects*, not namespaces, so it does not change which namespaces are covered.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from dr.config import Config
from dr.deploy.rbac import BACKUP_POLICY_LABEL, DRILL_LABEL
from dr.errors import DrError

SYSTEM_PREFIXES = ("kube-",)


def is_exempt(name: str, labels: Mapping[str, str], dr_namespace: str) -> bool:
    return name.startswith(SYSTEM_PREFIXES) or name == dr_namespace or labels.get(DRILL_LABEL) == "true"


def covered_by_policy(name: str, config: Config) -> str | None:
    """The first backup policy whose scope includes namespace ``name``, if any."""
    for policy in config.backup_policies:
        patterns = policy.scope.namespaces
        if not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return policy.name
    return None


def namespaces_without_backup_policy(api_client: Any, config: Config) -> list[str]:
    """Namespaces (sorted) outside every backup policy's scope and without the backup-policy label."""
    from kubernetes import client

    from dr.kube.client import REQUEST_TIMEOUT  # kubernetes, like the import above: only when asked

    core = client.CoreV1Api(api_client)
    names: list[str] = []
    token: str | None = None
    while True:
        try:
            more = {"_continue": token} if token else {}
            page = core.list_namespace(limit=500, _request_timeout=REQUEST_TIMEOUT, **more)
        except client.ApiException as e:
            raise DrError(f"cannot list namespaces: {e.status} {e.reason}") from None
        for ns in page.items:
            name: str = ns.metadata.name
            labels: dict[str, str] = ns.metadata.labels or {}
            if is_exempt(name, labels, config.mover.namespace):
                continue
            if labels.get(BACKUP_POLICY_LABEL):
                continue
            if covered_by_policy(name, config) is None:
                names.append(name)
        token = page.metadata._continue
        if not token:
            return sorted(names)
