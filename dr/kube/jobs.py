"""Data-mover Jobs: the Job spec, create, follow to the end, explain a failure, clean up leftovers.

A mover Job runs one ``dr mover …`` command in dr's image, next to one
volume mounted at ``/data``. Its pod is the hardened template of
``dr.deploy.workloads`` (uid 65532, read-only root file system, no
capabilities, RuntimeDefault seccomp, ``/tmp`` an emptyDir, config from the
ConfigMap ``dr-config`` at ``/etc/dr/dr.yaml``), with:

* credentials only by reference: ``envFrom`` the credentials Secret and
  Secret/ConfigMap files projected into ``/etc/dr`` — never a literal value;
* ``backoffLimit: 0`` (a failed copy is reported, not retried blindly; the
  next backup is the retry) — except a pod ended by a disruption (eviction,
  drain, preemption: condition ``DisruptionTarget``), which ``podFailurePolicy``
  ignores, so the Job controller replaces it; ``activeDeadlineSeconds`` from
  ``mover.deadline``, ``ttlSecondsAfterFinished`` as a safety net;
* ``terminationMessagePolicy: FallbackToLogsOnError``, so a failed mover's
  last log lines are in the pod status even where logs are not served;
* labels ``app.kubernetes.io/name: dr`` (NetworkPolicy), ``dr.dev/mover``,
  ``dr.dev/run`` and ``dr.dev/expires`` (unix time): every temporary object
  of a run carries the same labels, so ``cleanup_leftovers`` finds what a
  crashed run left behind.

``follow_job`` polls with backoff (0.1 s growing to 1 s, 5 s after two
minutes; a watch would save a few requests but needs reconnect handling
for hours-long Jobs) until the Job has
a ``Complete`` or ``Failed`` condition, its deadline plus a grace period
passes (no Job controller?), the Job disappears, or its pod is stuck in a
state that does not heal (``CreateContainerConfigError`` for a missing
Secret, an invalid image; a pod pinned to one node that does not fit there)
for longer than ``stuck_grace``, a pod no node takes for longer than
``unschedulable_grace`` (30 minutes, as Velero's data mover waits for its
pod: time for the cluster autoscaler to add a node), the claim of its pod that has not
started is gone, Lost, being deleted or Pending with nothing to wait for
but its provisioner for as long, or it has had no pod
at all for as long (admission refuses it). A failure is
explained with the Job condition's reason and message, the pod's
termination state and message, and the log tail when the API serves it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeGuard

from pydantic import BaseModel, ConfigDict, Field

from dr.config import TMP_SIZE_LIMIT, MoverOptions, Resources
from dr.interrupt import sleep as interruptible_sleep
from dr.kube.apply import create, delete
from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import get_object, list_objects
from dr.kube.discovery import ApiResource
from dr.kube.objects import label_value
from dr.kube.pod_template import JobSpec, PodSettings, pod_template
from dr.kube.provisioning import missing_storage_class
from dr.kube.snapshots import (
    PVCS,
    STORAGE_CLASSES,
    VOLUME_SNAPSHOT_CONTENTS,
    VOLUME_SNAPSHOTS,
    delete_snapshot,
    snapshots_served,
)
from dr.printable import printable

log = logging.getLogger(__name__)

JOBS = ApiResource("batch", "v1", "jobs", "Job", True)
PODS = ApiResource("", "v1", "pods", "Pod", True)
CONFIG_MAPS = ApiResource("", "v1", "configmaps", "ConfigMap", True)
SECRETS = ApiResource("", "v1", "secrets", "Secret", True)

MOVER_LABEL = "dr.dev/mover"
RUN_LABEL = "dr.dev/run"
EXPIRES_LABEL = "dr.dev/expires"
RUN_ANNOTATION = "dr.dev/run-id"
SOURCE_ANNOTATION = "dr.dev/volume"
CONTAINER = "dr"
DATA_PATH = "/data"
DATA_VOLUME = "data"
# How long after its deadline a temporary object counts as abandoned.
EXPIRY_MARGIN = timedelta(hours=1)
# A Job that is still not finished this long after its deadline has no working controller.
FOLLOW_GRACE = 120.0
# Pod states that do not resolve by waiting (or only by an operator's action).
STUCK_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "InvalidImageName", "ErrImageNeverPull"}
)
PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull"})
LOG_TAIL_LINES = 40
# A Job has had no pod this long at least before dr says admission refuses it: a Job
# controller makes a pod within a second or two (also where a short stuck grace is set).
NO_POD_FLOOR = 10.0
# How long a mover pod may find no node before dr gives up on it (a pod pinned to the node of its
# volume gets only the stuck grace: no new node helps it). The cluster autoscaler adds a node in a
# few minutes; Velero's data mover waits 30 minutes for its pod ("prepare timeout").
UNSCHEDULABLE_GRACE = 1800.0
# The scheduler's reason for a pod whose claim of an Immediate class has no volume yet.
UNBOUND_CLAIM = "pod has unbound immediate PersistentVolumeClaims"
# The kubelet's message when the /tmp emptyDir (pod_template's volume "tmp") grows past its sizeLimit.
TMP_EVICTED = 'EmptyDir volume "tmp" exceeds'


# --------------------------------------------------------------------------- the Job spec


@dataclass(frozen=True)
class MoverPodConfig:
    """What every mover pod of a run shares: image, resources, deadline, where config and credentials are."""

    image: str
    resources: Resources
    deadline: timedelta
    credentials_secret: str | None = None
    config_map: str = "dr-config"
    config_key: str = "dr.yaml"
    # Optional Secret projected into /etc/dr (CA certificates, AppRole files, key files), as in
    # dr's CronJobs; plus further projected sources (e.g. a key file Secret with mode 0400).
    files_secret: str | None = "dr-files"
    extra_files: tuple[dict[str, Any], ...] = ()
    ttl_after_finished: int = 3600
    tmp_size_limit: str = TMP_SIZE_LIMIT  # the /tmp emptyDir: room for the repository index


class MoverContext(BaseModel):
    """What every mover of one backup or restore run shares; ``pod_config`` for the Job specs."""

    model_config = ConfigDict(extra="forbid")

    repo_url: str
    mover: MoverOptions = Field(default_factory=MoverOptions)
    config_map: str = "dr-config"  # holds dr.yaml, in the mover's namespace
    config_key: str = "dr.yaml"
    files_secret: str | None = "dr-files"  # optional Secret projected into /etc/dr
    extra_files: list[dict[str, Any]] = Field(default_factory=list)  # more projected sources (key files)
    ttl_after_finished: int = 3600
    follow_grace: float = FOLLOW_GRACE
    stuck_grace: float = 300.0

    def pod_config(self) -> MoverPodConfig:
        return MoverPodConfig(
            image=self.mover.image,
            resources=self.mover.resources,
            deadline=self.mover.deadline,
            credentials_secret=self.mover.credentials_secret,
            config_map=self.config_map,
            config_key=self.config_key,
            files_secret=self.files_secret,
            extra_files=tuple(self.extra_files),
            ttl_after_finished=self.ttl_after_finished,
            tmp_size_limit=self.mover.tmp_size_limit,
        )


@dataclass(frozen=True)
class MoverJob:
    """One mover Job: where it runs, what it runs, which claim it mounts."""

    name: str
    namespace: str
    args: list[str]
    claim: str
    read_only: bool
    run_id: str
    expires: int  # unix time after which the Job and its companions are leftovers
    service_account: str | None = None  # None: the namespace's default account, no token mounted
    node_name: str | None = None  # file-system copies of RWO volumes run where the volume is mounted
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    supplemental_groups: list[int] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    # Restores that must give files back to their owners: uid 0 with only the
    # capabilities needed for that (not allowed under Pod Security "restricted").
    run_as_root: bool = False


def temporary_labels(run_id: str, expires: int) -> dict[str, str]:
    """Labels of every temporary object of a run (Jobs, PVCs, VolumeSnapshots, contents)."""
    return {
        "app.kubernetes.io/name": "dr",
        "app.kubernetes.io/component": "mover",
        MOVER_LABEL: "true",
        RUN_LABEL: label_value(run_id) or "run",
        EXPIRES_LABEL: str(int(expires)),
    }


def expiry(now: float, deadline: timedelta) -> int:
    return int(now + deadline.total_seconds() + EXPIRY_MARGIN.total_seconds())


_DNS_BAD = re.compile(r"[^a-z0-9-]+")


def object_name(prefix: str, hint: str, *, max_length: int = 63) -> str:
    """``prefix-hint-<random>``: a DNS label, unique per call (a retried run never collides with leftovers)."""
    suffix = secrets.token_hex(4)
    room = max_length - len(prefix) - len(suffix) - 2
    middle = _DNS_BAD.sub("-", hint.lower()).strip("-")[: max(room, 0)].strip("-")
    return "-".join(p for p in (prefix, middle, suffix) if p)


def config_sources(pod: MoverPodConfig) -> list[dict[str, Any]]:
    """The projected sources of ``/etc/dr``: dr.yaml, the optional files Secret, extra sources."""
    sources: list[dict[str, Any]] = [
        {"configMap": {"name": pod.config_map, "items": [{"key": pod.config_key, "path": "dr.yaml"}]}}
    ]
    if pod.files_secret:
        sources.append({"secret": {"name": pod.files_secret, "optional": True}})
    sources += [dict(s) for s in pod.extra_files]
    return sources


def key_file_source(secret: str, key: str, path: str) -> dict[str, Any]:
    """A projected source putting ``secret[key]`` at ``/etc/dr/<path>``, mode 0400 (key files refuse 0440)."""
    return {"secret": {"name": secret, "items": [{"key": key, "path": path, "mode": 0o400}]}}


def mover_job(job: MoverJob, pod: MoverPodConfig) -> dict[str, Any]:
    """The Job manifest for ``job`` (pure: no API calls)."""
    labels = temporary_labels(job.run_id, job.expires)
    template = pod_template(
        JobSpec(name=job.name, component="mover", args=job.args, schedule="", service_account="unused"),
        PodSettings(job.namespace, pod.image, pod.resources, pod.credentials_secret, pod.tmp_size_limit),
    )
    template["metadata"] = {"labels": labels}
    spec = template["spec"]
    if job.service_account:
        spec["serviceAccountName"] = job.service_account
        # The token is there for Vault's Kubernetes auth / workload identity.
        spec["automountServiceAccountToken"] = True
    else:
        del spec["serviceAccountName"]
        spec["automountServiceAccountToken"] = False
    for volume in spec["volumes"]:
        if volume["name"] == "config":
            volume["projected"]["sources"] = config_sources(pod)
    spec["volumes"].append(
        {"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": job.claim, "readOnly": job.read_only}}
    )
    container = spec["containers"][0]
    container["volumeMounts"].append({"name": DATA_VOLUME, "mountPath": DATA_PATH, "readOnly": job.read_only})
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    if job.supplemental_groups:
        spec["securityContext"]["supplementalGroups"] = sorted(set(job.supplemental_groups))
    if job.run_as_root:
        for sc in (spec["securityContext"], container["securityContext"]):
            sc.update({"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0})
        container["securityContext"]["capabilities"] = {
            "drop": ["ALL"],
            "add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"],
        }
    if job.node_name:
        # Like DaemonSet pods: pinned by node name through the scheduler (which
        # still checks resources and taints), not by bypassing it with nodeName.
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [job.node_name]}
                            ]
                        }
                    ]
                }
            }
        }
    if job.tolerations:
        spec["tolerations"] = [dict(t) for t in job.tolerations]
    annotations = {RUN_ANNOTATION: job.run_id, **job.annotations}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job.name,
            "namespace": job.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "backoffLimit": 0,
            # A pod ended by a disruption (eviction, node drain, preemption, a reclaimed spot
            # node) says nothing about the copy: not counted, the Job controller replaces it.
            "podFailurePolicy": {
                "rules": [
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
                ]
            },
            "activeDeadlineSeconds": max(1, int(pod.deadline.total_seconds())),
            "ttlSecondsAfterFinished": pod.ttl_after_finished,
            "template": template,
        },
    }


def create_job(kube: KubeClient, manifest: dict[str, Any]) -> dict[str, Any]:
    return create(kube, JOBS, manifest)


def delete_job(kube: KubeClient, namespace: str, name: str) -> bool:
    """Delete a Job and (Background propagation) its pods. False if it was already gone."""
    return delete(kube, JOBS, namespace, name, propagation="Background")


# --------------------------------------------------------------------------- following a Job


@dataclass
class PodState:
    """What a mover pod says about how it ended (or why it does not start)."""

    name: str
    phase: str | None = None
    exit_code: int | None = None
    reason: str | None = None  # terminated or waiting reason
    message: str | None = None  # termination message (FallbackToLogsOnError: the log tail)
    waiting: bool = False
    # The pod's own reason and message (Evicted, Preempting, …), or why it is not
    # scheduled (PodScheduled: Unschedulable): what the container state cannot say.
    pod_reason: str | None = None
    pod_message: str | None = None

    def describe(self) -> str:
        parts = [f"pod {self.name}"]
        if self.exit_code is not None:
            reason = self.reason
            if reason == "OOMKilled":
                # The kubelet names the kill, not what sets the limit: dr's config does.
                reason += (
                    ": the mover outgrew its memory limit: raise mover.resources.limits.memory in dr.yaml"
                )
            parts.append(f"exit code {self.exit_code}" + (f" ({reason})" if reason else ""))
        elif self.reason:
            parts.append(("waiting: " if self.waiting else "") + self.reason)
        elif self.phase and not self.pod_reason:
            parts.append(self.phase)
        if self.message:
            parts[-1] += f": {_tail(self.message)}"
        if self.pod_reason:
            parts.append(self.pod_reason + (f": {_tail(self.pod_message)}" if self.pod_message else ""))
            if self.pod_reason == "Evicted" and TMP_EVICTED in (self.pod_message or ""):
                # The kubelet names the volume and its limit; what sets that limit is dr's config.
                parts[-1] += " (/tmp holds the repository index: raise mover.tmpSizeLimit in dr.yaml)"
        return ", ".join(parts)


@dataclass
class JobOutcome:
    """How a mover Job ended. ``reason``/``message`` come from its condition (or from dr when it gave up)."""

    name: str
    succeeded: bool
    reason: str = ""
    message: str = ""
    pod: PodState | None = None
    log_tail: str | None = None

    def describe(self) -> str:
        """One line for a failed volume: ``Job X failed: Reason: message; pod …: exit code 1: <tail>``."""
        if self.succeeded:
            return f"Job {self.name} succeeded"
        text = f"Job {self.name} failed"
        if self.reason or self.message:
            text += ": " + ": ".join(p for p in (self.reason, self.message) if p)
        if self.pod is not None:
            text += f"; {self.pod.describe()}"
        if self.log_tail and (self.pod is None or not self.pod.message):
            text += f"; log: {_tail(self.log_tail)}"
        return text


def _tail(text: str, lines: int = 5, chars: int = 600) -> str:
    """The end of a log or message in one printable line (errors are at the end).

    Escaped (``dr.printable``): a mover's message names files of the volume, anyone's
    text, and the line is printed to terminals (``dr backup``, ``dr backup show``).
    """
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    one = printable(" | ".join(kept))
    return one if len(one) <= chars else "…" + one[-chars:]


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def job_finished(job: dict[str, Any]) -> bool | None:
    """True when complete, False when failed, None while running."""
    if _condition(job, "Complete"):
        return True
    if _condition(job, "Failed"):
        return False
    return None


def pod_states(kube: KubeClient, namespace: str, job_name: str) -> list[PodState]:
    """The Job's pods, newest first, with the mover container's state."""
    pods = list(list_objects(kube, PODS, namespace=namespace, label_selector=f"job-name={job_name}"))
    pods.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True)
    out = []
    for p in pods:
        status = p.get("status") or {}
        state = PodState(str((p.get("metadata") or {}).get("name")), phase=status.get("phase"))
        state.pod_reason, state.pod_message = status.get("reason"), status.get("message")
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and not state.pod_reason:
                state.pod_reason, state.pod_message = (
                    cond.get("reason") or "not scheduled",
                    cond.get("message"),
                )
        for cs in status.get("containerStatuses") or []:
            if cs.get("name") != CONTAINER:
                continue
            st = cs.get("state") or {}
            if "terminated" in st:
                term = st["terminated"] or {}
                state.exit_code = term.get("exitCode")
                state.reason = term.get("reason")
                state.message = term.get("message")
            elif "waiting" in st:
                wait = st["waiting"] or {}
                state.waiting = True
                state.reason = wait.get("reason")
                state.message = wait.get("message")
        out.append(state)
    return out


def log_tail(kube: KubeClient, namespace: str, pod: str, lines: int = LOG_TAIL_LINES) -> str | None:
    """The last lines of the mover container's log, or None where the API does not serve logs."""
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    status, data = kube.request("GET", path, query={"container": CONTAINER, "tailLines": lines})
    if not 200 <= status < 300:
        return None
    return data.decode("utf-8", "replace")


def explain(kube: KubeClient, outcome: JobOutcome, namespace: str) -> JobOutcome:
    """Add the pod's state and, when served, its log tail to a failed outcome (best effort)."""
    try:
        pods = pod_states(kube, namespace, outcome.name)
    except ApiError as e:
        log.debug("pods of Job %s/%s: %s", namespace, outcome.name, e)
        return outcome
    if pods:
        outcome.pod = pods[0]
        try:
            outcome.log_tail = log_tail(kube, namespace, pods[0].name)
        except ApiError as e:
            log.debug("log of pod %s/%s: %s", namespace, pods[0].name, e)
    return outcome


def follow_job(
    kube: KubeClient,
    namespace: str,
    name: str,
    *,
    timeout: float,
    stuck_grace: float = 300.0,
    unschedulable_grace: float = UNSCHEDULABLE_GRACE,
    pod_check_every: float = 15.0,
    sleep: Callable[[float], None] = interruptible_sleep,
    clock: Callable[[], float] = time.monotonic,
) -> JobOutcome:
    """Wait for Job ``namespace/name`` to end; see the module docstring for when dr gives up."""
    start = clock()
    delay = 0.1
    # A short grace needs frequent looks (but never more than twice a second).
    pod_check_every = min(pod_check_every, max(stuck_grace / 2, 0.5))
    next_pod_check = start + pod_check_every
    stuck_since: dict[str, float] = {}
    while True:
        job = get_object(kube, JOBS, namespace, name)
        if job is None:
            return explain(
                kube, JobOutcome(name, False, "JobGone", "the Job was deleted before it finished"), namespace
            )
        done = job_finished(job)
        if done is True:
            return JobOutcome(name, True)
        if done is False:
            cond = _condition(job, "Failed") or {}
            outcome = JobOutcome(name, False, str(cond.get("reason") or ""), str(cond.get("message") or ""))
            return explain(kube, outcome, namespace)
        now = clock()
        if now - start >= timeout:
            msg = f"not finished {timeout:g}s after it was created (is the Job controller running?)"
            return explain(kube, JobOutcome(name, False, "Timeout", msg), namespace)
        if now >= next_pod_check:
            next_pod_check = now + pod_check_every
            # Listed once for the three checks; one that cannot be listed judges nothing this time.
            try:
                pods: list[PodState] | None = pod_states(kube, namespace, name)
            except ApiError:
                pods = None
            pinned = _pinned(job)
            stuck = _stuck_pod(
                pods, now, stuck_since, stuck_grace, pinned=pinned, unschedulable=unschedulable_grace
            )
            if stuck is not None:
                why = "its pod cannot start"
                if stuck.pod_reason == "Unschedulable":
                    why = (
                        "its pod does not fit on the node where the volume is mounted"
                        if pinned
                        else f"no node took its pod in {_minutes(unschedulable_grace)} (none fits it, and none "
                        "was added: see the scheduler's message; mover.resources, tolerations)"
                    )
                return JobOutcome(name, False, "PodStuck", why, pod=stuck)
            no_pod_grace = max(stuck_grace, NO_POD_FLOOR)
            if _no_pod(pods, now, stuck_since, no_pod_grace):
                why = (
                    f"no pod was made for it in {no_pod_grace:g}s: admission refuses it (a ResourceQuota, "
                    f"LimitRange or the Pod Security level of namespace {namespace}: "
                    f"kubectl describe job -n {namespace} {name})"
                )
                return JobOutcome(name, False, "NoPod", why)
            waiting = _claim_gone(kube, namespace, job, pods, now, stuck_since, stuck_grace)
            if waiting is not None:
                problem, pod = waiting
                return JobOutcome(name, False, "PodStuck", f"its pod cannot start: {problem}", pod=pod)
        sleep(min(delay, max(0.0, timeout - (now - start))))
        # Short Jobs are noticed quickly; hours-long ones cost one request every few seconds.
        delay = min(delay * 1.5, 1.0 if now - start < 120 else 5.0)


def _no_pod(pods: list[PodState] | None, now: float, since: dict[str, float], grace: float) -> bool:
    """Whether the Job has had no pod at all for ``grace`` seconds (``pods``: its pods, None
    when they could not be listed).

    A Job controller whose pod creation admission refuses (a ResourceQuota exceeded or
    asking for a limit the pod lacks, a LimitRange, the namespace's Pod Security level)
    records an Event, which dr's accounts may not read, and retries until the deadline.
    """
    if pods is None:
        return False
    if pods:
        since.pop("no-pod", None)
        return False
    return now - since.setdefault("no-pod", now) >= grace


def _claim_gone(
    kube: KubeClient,
    namespace: str,
    job: dict[str, Any],
    pods: list[PodState] | None,
    now: float,
    since: dict[str, float],
    grace: float,
) -> tuple[str, PodState | None] | None:
    """Why the Job's pod, not started yet, never will: its claim is gone, Lost, being deleted or
    not provisioned (``_not_provisioned``) for ``grace`` seconds already, with the pod; None
    while the claim may still serve.

    No scheduler places a pod whose claim is in such a state (and no new node helps), so
    it would wait for the Job's deadline (hours). A pod that started keeps its volume.
    """
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    claim = next(
        (
            (v.get("persistentVolumeClaim") or {}).get("claimName")
            for v in spec.get("volumes") or []
            if v.get("name") == DATA_VOLUME
        ),
        None,
    )
    if not claim or pods is None:
        return None
    if any(p.phase not in (None, "Pending") or (p.reason and not p.waiting) for p in pods):
        return None
    try:
        pvc = get_object(kube, PVCS, namespace, str(claim))
    except ApiError:
        return None
    problem = None
    if pvc is None:
        problem = f"PVC {namespace}/{claim} does not exist"
    elif (pvc.get("metadata") or {}).get("deletionTimestamp"):
        problem = f"PVC {namespace}/{claim} is being deleted"
    elif (pvc.get("status") or {}).get("phase") == "Lost":
        problem = f"PVC {namespace}/{claim} is Lost (its PersistentVolume is gone)"
    elif (pvc.get("status") or {}).get("phase") == "Pending":
        problem = _not_provisioned(kube, namespace, pvc)
    if problem is None:
        return None
    first = since.setdefault(f"claim/{problem}", now)
    return (problem, pods[0] if pods else None) if now - first >= grace else None


SELECTED_NODE = "volume.kubernetes.io/selected-node"
# The provisioner of classes whose volumes an administrator makes (local volumes, static PVs).
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def _not_provisioned(kube: KubeClient, namespace: str, pvc: dict[str, Any]) -> str | None:
    """Why a Pending claim waits for a provisioner (None: it waits for its pod to be scheduled).

    A claim of an ``Immediate`` class, or of a ``WaitForFirstConsumer`` one once the
    scheduler chose its node (``selected-node``), waits only for its provisioner: one this
    cluster lacks (a StorageClass restored from another cloud) or one that fails (quota)
    leaves it Pending for ever. Provisioning takes seconds to a minute or two, far less
    than the stuck grace; not so a volume made from a snapshot or a clone (``dataSource``),
    which some drivers fill by copying: not judged, nor where the class cannot be read.
    A class of ``kubernetes.io/no-provisioner`` (local volumes) waits for a PersistentVolume
    an administrator makes: said so, not blamed on a provisioner to install.
    """
    name = str((pvc.get("metadata") or {}).get("name"))
    spec = pvc.get("spec") or {}
    if spec.get("dataSource") or spec.get("dataSourceRef"):
        return None  # a volume made from a snapshot or a clone may take hours to fill
    class_name = spec.get("storageClassName")
    if class_name is None:
        return None  # the default class is being assigned
    if class_name == "":
        return f"PVC {namespace}/{name} is still Pending: no PersistentVolume matches it (no class: static binding)"
    try:
        cls = get_object(kube, STORAGE_CLASSES, None, str(class_name))
    except ApiError:
        return None
    if cls is None:
        # The volume restore's rule, before it starts a mover: a class name that only static
        # volumes carry is no missing class.
        try:
            return missing_storage_class(kube, pvc)
        except ApiError:
            return None
    annotations = (pvc.get("metadata") or {}).get("annotations") or {}
    if cls.get("volumeBindingMode") == "WaitForFirstConsumer" and SELECTED_NODE not in annotations:
        return None
    if cls.get("provisioner") == NO_PROVISIONER:
        # Local or hand-made volumes: nothing to install, an administrator makes the PVs.
        return (
            f"PVC {namespace}/{name} is still Pending: no PersistentVolume of StorageClass {class_name!r} "
            "matches it (its volumes are made by hand: kubernetes.io/no-provisioner)"
        )
    return (
        f"PVC {namespace}/{name} is still Pending: no volume was provisioned for it (StorageClass "
        f"{class_name!r}: is its provisioner {str(cls.get('provisioner') or '?')!r} installed and able "
        "to make one?)"
    )


def _pinned(job: dict[str, Any]) -> bool:
    """Whether the Job's pod may run on one node only (``mover_job``'s node affinity by node name)."""
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    return len(terms) == 1 and any(
        f.get("key") == "metadata.name" and len(f.get("values") or []) == 1
        for f in terms[0].get("matchFields") or []
    )


def _stuck_pod(
    pods: list[PodState] | None,
    now: float,
    since: dict[str, float],
    grace: float,
    *,
    pinned: bool = False,
    unschedulable: float = UNSCHEDULABLE_GRACE,
) -> PodState | None:
    """A pod of the Job (``pods``; None when they could not be listed) in a state that does not
    heal by waiting, for ``grace`` seconds already.

    Besides container states: a pod the scheduler finds no node for. Pinned to one node (a
    file-system copy next to the pod using a ReadWriteOnce volume), no new node can help it:
    ``grace``. Otherwise a node may be added (the cluster autoscaler): ``unschedulable``
    seconds. Either would hold a mover slot until the Job's deadline (hours).
    """
    for p in pods or []:
        if p.phase == "Pending" and p.pod_reason == "Unschedulable":
            limit: float | None = grace if pinned else unschedulable
            if not pinned and UNBOUND_CLAIM in (p.pod_message or ""):
                # It waits for its claim's volume, not for a node: a copy of a snapshot may take
                # hours to fill; the claim's own rules (``_claim_gone``) judge that wait.
                limit = None
        elif p.waiting and p.reason in STUCK_REASONS | PULL_REASONS:
            limit = grace
        else:
            limit = None
        if limit is not None:
            first = since.setdefault(f"{p.name}/{p.reason or p.pod_reason}", now)
            if now - first >= limit:
                return p
    return None


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g}s"


# --------------------------------------------------------------------------- leftovers


@dataclass
class LeftoverReport:
    deleted: list[str] = field(default_factory=list)
    kept: int = 0  # labelled objects not yet expired (a run may still be using them)
    errors: list[str] = field(default_factory=list)


def cleanup_leftovers(
    kube: KubeClient, now: float, *, namespaces: list[str] | None = None, dry_run: bool = False
) -> LeftoverReport:
    """Delete temporary objects of dr runs (label ``dr.dev/mover=true``) whose ``dr.dev/expires`` has passed.

    ``dry_run``: delete nothing; ``deleted`` lists what would be (a VolumeSnapshot whose
    Retain content this account may not switch would then be left, as below).

    Looks cluster-wide, or only in ``namespaces``. Jobs first (their pods go
    with them), then PVCs, VolumeSnapshots and VolumeSnapshotContents. An
    object whose expiry label is missing or not a number is left alone (it
    was not made by dr). A type that cannot be listed or deleted (403, …)
    becomes an error line; the rest goes on. So does a VolumeSnapshot whose
    Retain content this account may not switch to Delete: it is left, for the
    backup account's sweep (``delete_snapshot``).
    """
    report = LeftoverReport()
    kinds = [JOBS, PVCS]
    try:
        if snapshots_served(kube):
            kinds += [VOLUME_SNAPSHOTS, VOLUME_SNAPSHOT_CONTENTS]
    except ApiError as e:
        report.errors.append(f"snapshot API: {e.short}")
    for res in kinds:
        scopes: list[str | None] = [None] if namespaces is None or not res.namespaced else list(namespaces)
        for ns in scopes:
            try:
                objs = list(list_objects(kube, res, namespace=ns, label_selector=f"{MOVER_LABEL}=true"))
            except ApiError as e:
                where = f" in {ns}" if ns else ""
                report.errors.append(f"cannot list {res.group_resource}{where}: {e.short}")
                continue
            for obj in objs:
                meta = obj.get("metadata") or {}
                try:
                    expires = int((meta.get("labels") or {}).get(EXPIRES_LABEL, ""))
                except ValueError:
                    continue
                if expires > now:
                    report.kept += 1
                    continue
                obj_ns = meta.get("namespace") if res.namespaced else None
                where = f"{obj_ns}/{meta.get('name')}" if obj_ns else str(meta.get("name"))
                if dry_run:
                    report.deleted.append(f"{res.kind} {where}")
                    continue
                try:
                    deleted, warning = _delete_temporary(kube, res, obj_ns, str(meta.get("name")), sweep=True)
                    if deleted:
                        report.deleted.append(f"{res.kind} {where}")
                    if warning:
                        report.errors.append(warning)
                except ApiError as e:
                    report.errors.append(f"cannot delete {res.kind} {where}: {e.short}")
    return report


def _delete_temporary(
    kube: KubeClient, res: ApiResource, namespace: str | None, name: str, *, sweep: bool = False
) -> tuple[bool, str | None]:
    """Delete one of dr's temporary objects (Background propagation): whether it was deleted, and a warning.

    A VolumeSnapshot goes with its storage snapshot, also where its class says
    Retain (``delete_snapshot``); in a ``sweep`` of leftovers one whose content
    this account cannot switch to Delete is left for the backup account's.
    ``ApiError`` when the delete is refused.
    """
    if res == VOLUME_SNAPSHOTS and namespace is not None:
        return delete_snapshot(kube, namespace, name, leave_if_retained=sweep)
    return delete(kube, res, namespace, name, propagation="Background"), None


# --------------------------------------------------------------------------- temporary objects of one volume


class TemporaryObjects:
    """What one volume's copy created, deleted in reverse order of creation by ``delete_all``.

    Objects are registered *before* they are created (their names are ours),
    so a create that fails half-way or a crash between create and register
    leaves nothing behind; deleting something that does not exist is fine.
    Thread-safe enough for its use: one volume's objects belong to one thread.
    """

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self._items: list[tuple[ApiResource, str | None, str]] = []
        self.problems: list[str] = []

    def add(self, res: ApiResource, namespace: str | None, name: str) -> None:
        self._items.append((res, namespace if res.namespaced else None, name))

    def __len__(self) -> int:
        return len(self._items)

    def delete_all(self) -> list[str]:
        """Delete everything registered (Background propagation); returns the problems, if any."""
        problems: list[str] = []
        while self._items:
            res, ns, name = self._items.pop()
            try:
                _, warning = _delete_temporary(self._kube, res, ns, name)
                if warning:
                    problems.append(warning)
            except ApiError as e:
                where = f"{ns}/{name}" if ns else name
                problems.append(f"cannot delete {res.kind} {where}: {e.short}")
        self.problems += problems
        return problems


# The counts of a mover's summary that its readers take as numbers.
SUMMARY_NUMBERS = ("files", "dirs", "bytes", "newBytes", "newBlobs", "durationSeconds")


def summary_from_log(text: str | None) -> dict[str, Any] | None:
    """The JSON summary ``dr mover … -o json`` printed (a pretty-printed object), found in a log tail.

    The last block shaped like one: a string ``id``, numbers for the counts, a list of
    ``errors``. The tail holds whatever the mover printed, file names of the volume
    among it (a name may hold newlines and braces): a block of another shape is not it.
    """
    if not text:
        return None
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].rstrip() != "{":
            continue
        for j in range(i + 1, len(lines)):
            if lines[j].rstrip() == "}":
                try:
                    doc = json.loads("\n".join(lines[i : j + 1]))
                except ValueError:
                    break
                if _summary_shaped(doc):
                    return doc
                break
    return None


def _summary_shaped(doc: Any) -> TypeGuard[dict[str, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        return False
    numbers = all(
        isinstance(doc.get(k, 0), int | float) and not isinstance(doc.get(k), bool) for k in SUMMARY_NUMBERS
    )
    return numbers and isinstance(doc.get("errors", []), list)


# --------------------------------------------------------------------------- running one mover Job


def check_mover_namespace(kube: KubeClient, namespace: str, pod: MoverPodConfig) -> str | None:
    """Why a mover pod could not start in ``namespace`` (its ConfigMap or credentials Secret missing), or None.

    A pod can only use ConfigMaps and Secrets of its own namespace, so movers
    in application namespaces need copies there. A 403 on the Secret (the
    restore account may not read Secrets) skips that check: a missing Secret
    then shows as a stuck pod (``CreateContainerConfigError``).
    """
    if get_object(kube, CONFIG_MAPS, namespace, pod.config_map) is None:
        return (
            f"mover Jobs in namespace {namespace} need the ConfigMap {pod.config_map} (dr.yaml) there "
            "(a pod can only mount ConfigMaps of its own namespace)"
        )
    if pod.credentials_secret:
        try:
            found = get_object(kube, SECRETS, namespace, pod.credentials_secret) is not None
        except ApiError as e:
            if e.status == 403:
                return None
            raise
        if not found:
            return (
                f"mover Jobs in namespace {namespace} need the Secret {pod.credentials_secret} "
                "(repository credentials) there (a pod can only use Secrets of its own namespace)"
            )
    return None


def run_mover_job(
    kube: KubeClient,
    temp: TemporaryObjects,
    job: MoverJob,
    pod: MoverPodConfig,
    slots: threading.Semaphore,
    *,
    follow_grace: float = FOLLOW_GRACE,
    stuck_grace: float = 300.0,
) -> JobOutcome:
    """Create the Job holding one of the run's ``parallelism`` slots and follow it to its end.

    The Job is registered in ``temp`` before it is created (the caller deletes
    it). A succeeded outcome also carries the pod's log tail when the API
    serves logs (the mover's JSON summary is in it).
    """
    with slots:
        temp.add(JOBS, job.namespace, job.name)
        create_job(kube, mover_job(job, pod))
        timeout = pod.deadline.total_seconds() + follow_grace
        outcome = follow_job(kube, job.namespace, job.name, timeout=timeout, stuck_grace=stuck_grace)
    if outcome.succeeded:
        try:
            outcome = explain(kube, outcome, job.namespace)
        except ApiError as e:
            log.debug("pods of Job %s/%s: %s", job.namespace, job.name, e)
    return outcome
