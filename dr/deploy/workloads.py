"""dr's namespace and CronJobs (their pods: ``dr.kube.pod_template``).

Every pod runs the dr image as uid 65532 with a read-only root file system,
no privilege escalation, no capabilities and the RuntimeDefault seccomp
profile — what Pod Security ``restricted`` demands, which the namespace
enforces. ``/tmp`` is an emptyDir and HOME/TMPDIR/XDG dirs point there.
Configuration comes from the ConfigMap ``dr-config`` (``/etc/dr/dr.yaml``,
``DR_CONFIG``); credentials come only from Secrets (``envFrom`` the mover's
credentials Secret, and files such as CA certificates or key files from the
optional Secret ``dr-files`` projected into ``/etc/dr``) — never inline.
"""

from __future__ import annotations

import hashlib

# Re-exported: deploy's vocabulary (the pod template itself lives in the kube layer).
from dr.kube.pod_template import CONFIG_DIR as CONFIG_DIR
from dr.kube.pod_template import CONFIG_MAP as CONFIG_MAP
from dr.kube.pod_template import CONFIG_PATH as CONFIG_PATH
from dr.kube.pod_template import FILES_SECRET as FILES_SECRET
from dr.kube.pod_template import RUN_AS as RUN_AS
from dr.kube.pod_template import RUNBOOK_DIR as RUNBOOK_DIR
from dr.kube.pod_template import JobSpec as JobSpec
from dr.kube.pod_template import Manifest as Manifest
from dr.kube.pod_template import PodSettings as PodSettings
from dr.kube.pod_template import container_security_context as container_security_context
from dr.kube.pod_template import labels as labels
from dr.kube.pod_template import pod_security_context as pod_security_context
from dr.kube.pod_template import pod_template as pod_template

# Seconds between the SIGTERM that stops a run (activeDeadlineSeconds, eviction,
# drain) and the SIGKILL. dr unwinds on SIGTERM (dr.interrupt): post hooks thaw
# what pre hooks froze (30 s each by default) and temporary Jobs, snapshots and
# claims are deleted. Kubernetes' default of 30 s would cut that short.
TERMINATION_GRACE_SECONDS = 180
# Beyond the post hooks: deleting the run's temporary Jobs, snapshots and claims
# and recording the outcome. 180 s is one default (30 s) post hook plus this.
CLEANUP_GRACE_SECONDS = 150

MAX_CRONJOB_NAME = 52  # the CronJob controller appends an 11-character suffix for Job names

PSS_LABELS = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "audit", "warn")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}


def namespace_manifest(name: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**labels("namespace"), **PSS_LABELS}},
    }


def cronjob_name(prefix: str, policy: str) -> str:
    """``prefix-policy``, shortened with a hash suffix when longer than a CronJob name may be."""
    name = f"{prefix}-{policy}"
    if len(name) <= MAX_CRONJOB_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: MAX_CRONJOB_NAME - 7].rstrip('-')}-{digest}"


def cronjob(job: JobSpec, pod: PodSettings) -> Manifest:
    meta_labels = {**labels(job.component), **({"dr.dev/policy": job.policy} if job.policy else {})}
    spec: Manifest = {
        "schedule": job.schedule,
        # Always explicit: without it the controller reads the schedule on kube-controller-manager's
        # local clock, while dr status (next run) and dr forget (days) count in UTC.
        "timeZone": job.time_zone or "Etc/UTC",
        # A run that is still going when the next is due is not doubled.
        "concurrencyPolicy": "Forbid",
        # A run missed by more than this (controller down) is skipped, not run late.
        "startingDeadlineSeconds": int(job.starting_deadline.total_seconds()),
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 5,
        "jobTemplate": {
            "metadata": {"labels": meta_labels},
            "spec": {
                "backoffLimit": job.backoff_limit,
                "activeDeadlineSeconds": int(job.deadline.total_seconds()),
                "podFailurePolicy": {
                    "rules": [
                        # A pod stopped by a disruption (node drain, eviction, preemption; dr
                        # exits 143 on the SIGTERM) says nothing about the run: not counted
                        # against backoffLimit, the Job controller starts a replacement. First,
                        # so that whatever a disrupted run exited with, it is run again.
                        {
                            "action": "Ignore",
                            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                        },
                        # Invalid config (2), partial failure (3) and failed verification (4)
                        # are answers, not flukes: retrying would only repeat them.
                        {
                            "action": "FailJob",
                            "onExitCodes": {"containerName": "dr", "operator": "In", "values": [2, 3, 4]},
                        },
                    ]
                },
                "template": _with_grace(pod_template(job, pod), job),
            },
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": job.name, "namespace": pod.namespace, "labels": meta_labels},
        "spec": spec,
    }


def termination_grace_seconds(job: JobSpec) -> int:
    """The pod's grace period: enough for all the run's post hooks and the clean-up after them.

    A backup stopped while applications are frozen thaws every one of them
    (``dr.backup.hooks.run_post``: each post hook, up to its timeout) before
    deleting its temporaries; a SIGKILL in between leaves an application frozen.
    """
    needed = int(job.post_hooks.total_seconds()) + CLEANUP_GRACE_SECONDS
    return max(TERMINATION_GRACE_SECONDS, needed)


def _with_grace(template: Manifest, job: JobSpec) -> Manifest:
    template["spec"]["terminationGracePeriodSeconds"] = termination_grace_seconds(job)
    return template
