"""The real ``DataProbe``: a mover Job that mounts a restored PVC read-only and describes paths in it.

The Job runs ``dr mover probe /data --path P… -o json``; the command writes
its JSON answer to stdout and to the container's termination-message file,
which the kubelet copies into the pod's status — so the answer arrives
without the pod-log API (clusters and identities that cannot read logs).

The probe pod is placed as a file-system backup mover is (``dr.kube.placement``):
on the node of the pod that mounts the claim, with its tolerations and groups —
a ReadWriteOnce volume in use attaches to that node only, and files only the
app's group may read need its groups (a ReadWriteMany or ReadOnlyMany volume
attaches anywhere: the groups only). A ReadWriteOncePod claim in use cannot
be mounted by a probe at all: the probe fails at once saying so.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from dr.config import MoverOptions
from dr.drill.probe import PathProbe, ProbeError
from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import get_object, list_objects
from dr.kube.jobs import (
    DATA_PATH,
    PODS,
    MoverJob,
    MoverPodConfig,
    TemporaryObjects,
    expiry,
    object_name,
    run_mover_job,
)
from dr.kube.placement import RWOP_IN_USE, exclusive_users, placement, users_of
from dr.kube.snapshots import PVCS

log = logging.getLogger(__name__)


def parse_probe_output(text: str | None) -> dict[str, PathProbe] | None:
    """The probe's JSON answer from a termination message or log (the last JSON object in it)."""
    if not text:
        return None
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            paths = doc.get("paths") if isinstance(doc, dict) else None
            if isinstance(paths, dict):
                return {k: PathProbe.from_dict(v) for k, v in paths.items()}
    try:
        doc = json.loads(text)
        return {k: PathProbe.from_dict(v) for k, v in doc["paths"].items()}
    except (ValueError, KeyError, TypeError):
        return None


class JobDataProbe:
    """Runs one probe Job per call in the PVC's namespace; deletes it afterwards.

    What a probe could not check goes into the ``warnings`` it is given, which the step's result
    carries and the command prints once (``dr runbook verify``: a ``warning:`` line; ``dr drill
    run``: its summary; both: their JSON document). Not also logged as a warning: the same line
    was shown twice. Logged at debug, when it happened (-vv).
    """

    def __init__(self, kube: KubeClient, mover: MoverOptions, *, run_id: str = "probe") -> None:
        self.kube = kube
        self.mover = mover
        self.run_id = run_id
        self._slots = threading.Semaphore(max(1, mover.parallelism))
        # What could not be deleted after a probe (its Job left in the app's namespace): the
        # caller reports it (``dr runbook verify``; a drill deletes its whole namespace).
        self.problems: list[str] = []

    def pod_config(self, deadline: timedelta) -> MoverPodConfig:
        """A probe's pod: the mover's image, resources and /tmp; no repository credentials."""
        return MoverPodConfig(image=self.mover.image, resources=self.mover.resources, deadline=deadline,
                              credentials_secret=None, tmp_size_limit=self.mover.tmp_size_limit)  # fmt: skip

    def users(self, namespace: str, pvc: str, warnings: list[str]) -> list[dict[str, Any]]:
        """The pods that mount the claim; none (an unplaced probe, said in ``warnings``) where pods
        cannot be listed for a passing reason. Not allowed to list them (403), ``ProbeError`` at once:
        the probe's answer is read from its own pod's status, so it could only end in "no answer"
        after its whole run."""
        try:
            return users_of(list_objects(self.kube, PODS, namespace=namespace), pvc)
        except ApiError as e:
            if e.status == 403:
                raise ProbeError(
                    f"probe of {namespace}/{pvc}: cannot list pods in {namespace}, which the probe needs "
                    f"(its answer is read from its pod): {e.short}"
                ) from None
            warning = (
                f"cannot list pods in {namespace} (the probe of {pvc} is not placed next to them): {e.short}"
            )
            log.debug("%s", warning)  # the caller reports ``warnings`` (see the class)
            warnings.append(warning)
            return []

    def check_exclusive(
        self, namespace: str, pvc: str, users: list[dict[str, Any]], warnings: list[str]
    ) -> dict[str, Any] | None:
        """``ProbeError`` at once for a ReadWriteOncePod claim in use: the probe pod could never start.
        Returns the claim, read when pods use it (its access modes also decide the probe's node).
        A claim that cannot be read is not checked, said in ``warnings``."""
        if not users:
            return None
        try:
            claim = get_object(self.kube, PVCS, namespace, pvc)
        except ApiError as e:
            warning = f"cannot read PVC {namespace}/{pvc} (its access modes are not checked): {e.short}"
            log.debug("%s", warning)  # the caller reports ``warnings`` (see the class)
            warnings.append(warning)
            return None
        holders = exclusive_users(claim or {}, users)
        if holders:
            raise ProbeError(
                f"probe of {namespace}/{pvc}: {RWOP_IN_USE} (in use by pod {', '.join(holders)}): "
                "its data cannot be probed while that pod runs"
            )
        return claim

    def __call__(
        self, namespace: str, pvc: str, paths: Sequence[str], *, timeout: float, warnings: list[str]
    ) -> Mapping[str, PathProbe]:
        users = self.users(namespace, pvc, warnings)
        claim = self.check_exclusive(namespace, pvc, users, warnings)
        deadline = timedelta(seconds=max(30.0, timeout))
        pod = self.pod_config(deadline)
        name = object_name("dr-probe", f"{pvc}-{os.urandom(3).hex()}")
        args = ["--quiet", "mover", "probe", DATA_PATH, "-o", "json"]
        for p in paths:
            args += ["--path", p]
        # Where a file-system backup mover of this claim would run, with its groups (a
        # ReadWriteMany or ReadOnlyMany volume: anywhere).
        node, tolerations, groups = placement(users, claim)
        job = MoverJob(name=name, namespace=namespace, args=args, claim=pvc, read_only=True, run_id=self.run_id,
                       expires=expiry(time.time(), deadline), node_name=node, tolerations=tolerations,
                       supplemental_groups=groups)  # fmt: skip
        temp = TemporaryObjects(self.kube)
        try:
            outcome = run_mover_job(self.kube, temp, job, pod, self._slots)
        finally:
            self.problems.extend(temp.delete_all())
        if not outcome.succeeded:
            raise ProbeError(f"probe of {namespace}/{pvc}: {outcome.describe()}")
        answer = parse_probe_output(outcome.pod.message if outcome.pod else None) or parse_probe_output(
            outcome.log_tail
        )
        if answer is None:
            raise ProbeError(
                f"probe of {namespace}/{pvc}: the Job gave no answer (no termination message or log)"
            )
        return answer


def probe_answer(result: Mapping[str, PathProbe]) -> dict[str, Any]:
    return {"paths": {k: v.to_dict() for k, v in result.items()}}
