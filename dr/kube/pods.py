"""The pods of each namespace, listed once per run: which of them mount a claim decides where a
mover runs (``dr.kube.placement``) and, for a backup, which hooks run.

Shared by the volume backup (``dr.backup.volumes``) and the volume restore
(``dr.restore.volumes``): both ask for the same namespace once per claim, and a
namespace of many claims must not cost a LIST per claim. Pods that cannot be
listed (RBAC forbids it, the API server is away) are no reason to fail a volume:
the namespace counts as having none — its movers are not placed next to the
app's pods — and that is logged as a warning once, saying what is lost.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import list_objects
from dr.kube.jobs import PODS

log = logging.getLogger(__name__)


class NamespacePods:
    """``pods(namespace)``: the pods of ``namespace``, listed on the first call only (thread-safe).

    ``without`` says what is done without them, for the warning where they cannot be
    listed ("no hooks, no node placement").
    """

    def __init__(self, kube: KubeClient, without: str) -> None:
        self.kube = kube
        self.without = without
        self._pods: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def __call__(self, namespace: str) -> list[dict[str, Any]]:
        with self._lock:
            if namespace not in self._pods:
                try:
                    self._pods[namespace] = list(list_objects(self.kube, PODS, namespace=namespace))
                except ApiError as e:
                    log.warning("cannot list pods in %s (%s): %s", namespace, self.without, e.short)
                    self._pods[namespace] = []
            return self._pods[namespace]
