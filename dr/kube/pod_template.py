"""The hardened pod template every dr pod uses: CronJob pods and data-mover Jobs alike.

Every pod runs the dr image as uid 65532 with a read-only root file system,
no privilege escalation, no capabilities and the RuntimeDefault seccomp
profile — what Pod Security ``restricted`` demands. ``/tmp`` is an emptyDir
and HOME/TMPDIR/XDG dirs point there. Configuration comes from the ConfigMap
``dr-config`` (``/etc/dr/dr.yaml``, ``DR_CONFIG``); credentials come only from
Secrets (``envFrom`` the credentials Secret, and files such as CA
certificates or key files from the optional Secret ``dr-files`` projected
into ``/etc/dr``) — never inline. Pure functions: no API calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dr.config import TMP_SIZE_LIMIT, Resources

Manifest = dict[str, Any]

RUN_AS = 65532
CONFIG_DIR = "/etc/dr"
CONFIG_PATH = f"{CONFIG_DIR}/dr.yaml"
RUNBOOK_DIR = f"{CONFIG_DIR}/runbooks"
CONFIG_MAP = "dr-config"
FILES_SECRET = "dr-files"


def labels(component: str) -> dict[str, str]:
    """The labels of every object dr makes (NetworkPolicies select dr's pods by them)."""
    return {
        "app.kubernetes.io/name": "dr",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "dr",
    }


@dataclass(frozen=True)
class JobSpec:
    """One scheduled dr command."""

    name: str
    component: str  # backup | drill | gc
    args: list[str]
    schedule: str
    service_account: str
    time_zone: str | None = None
    deadline: timedelta = timedelta(hours=6)
    starting_deadline: timedelta = timedelta(minutes=30)
    backoff_limit: int = 1
    policy: str | None = None
    extra_files: list[dict[str, Any]] = field(default_factory=list)  # projected volume sources
    # How long the run's post hooks may take in all (a backup policy's thaws): they still
    # run after SIGTERM, so the pod's grace period must cover them (dr.deploy.workloads).
    post_hooks: timedelta = timedelta(0)


@dataclass(frozen=True)
class PodSettings:
    namespace: str
    image: str
    resources: Resources
    credentials_secret: str | None
    # The /tmp emptyDir's limit: room for the repository index (``mover.tmpSizeLimit``).
    tmp_size_limit: str = TMP_SIZE_LIMIT


def container_security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _env() -> list[dict[str, str]]:
    # A read-only root file system: everything that writes goes to /tmp (an emptyDir).
    values = {
        "DR_CONFIG": CONFIG_PATH,
        "DR_LOG_FORMAT": "json",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "XDG_CONFIG_HOME": "/tmp/.config",
        "XDG_DATA_HOME": "/tmp/.local/share",
        "XDG_STATE_HOME": "/tmp/.local/state",
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def pod_template(job: JobSpec, pod: PodSettings) -> Manifest:
    pod_labels = {**labels(job.component), **({"dr.dev/policy": job.policy} if job.policy else {})}
    container: Manifest = {
        "name": "dr",
        "image": pod.image,
        "imagePullPolicy": "IfNotPresent",
        "args": job.args,
        "env": _env(),
        "securityContext": container_security_context(),
        "resources": {
            "requests": dict(pod.resources.requests),
            "limits": dict(pod.resources.limits),
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if pod.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": pod.credentials_secret}}]
    sources: list[dict[str, Any]] = [
        {"configMap": {"name": CONFIG_MAP, "items": [{"key": "dr.yaml", "path": "dr.yaml"}]}},
        # CA certificates, AppRole files, key files: whatever the config refers to under /etc/dr.
        {"secret": {"name": FILES_SECRET, "optional": True}},
        *job.extra_files,
    ]
    return {
        "metadata": {"labels": pod_labels},
        "spec": {
            "serviceAccountName": job.service_account,
            "automountServiceAccountToken": True,
            "restartPolicy": "Never",
            "securityContext": pod_security_context(),
            "containers": [container],
            "volumes": [
                {"name": "config", "projected": {"defaultMode": 0o440, "sources": sources}},
                {"name": "tmp", "emptyDir": {"sizeLimit": pod.tmp_size_limit}},
            ],
        },
    }
