"""The pods of each namespace, listed once per run: which of them mount a claim decides where a
mover runs (``dr.kube.placement``) and, for a backup, which hooks run.

Shared by the volume backup (``dr.backup.volumes``) and the volume restore
(``dr.restore.volumes``): both ask for the same namespace once per claim, and a
namespace of many claims must not cost a LIST per claim. Pods that cannot be
listed (RBAC forbids it, the API server is away) are no reason to fail a volume:
the namespace counts as having none — its movers are not placed next to the
app's pods — and that is a warning once per namespace, saying what is lost: given
to ``on_warning`` (the run's result, where ``-o json`` and a drill's report read
it), or logged by a caller that keeps no warnings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from dr.kube.client import ApiError, KubeClient
from dr.kube.collect import list_objects
from dr.kube.jobs import PODS

log = logging.getLogger(__name__)


class NamespacePods:
    """``pods(namespace)``: the pods of ``namespace``, listed on the first call only (thread-safe).

    ``without`` says what is done without them, for the warning where they cannot be
    listed ("no hooks, no node placement"); ``on_warning`` gets that warning (default: logged).
    """

    def __init__(
        self, kube: KubeClient, without: str, on_warning: Callable[[str], None] | None = None
    ) -> None:
        self.kube = kube
        self.without = without
        self.on_warning = on_warning or _log_warning
        self._pods: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def __call__(self, namespace: str) -> list[dict[str, Any]]:
        with self._lock:
            if namespace not in self._pods:
                try:
                    self._pods[namespace] = list(list_objects(self.kube, PODS, namespace=namespace))
                except ApiError as e:
                    self.on_warning(f"cannot list pods in {namespace} ({self.without}): {e.short}")
                    self._pods[namespace] = []
            return self._pods[namespace]


def _log_warning(text: str) -> None:
    log.warning("%s", text)
