"""From global options and dr.yaml to a Kubernetes client (one per invocation)."""

from __future__ import annotations

from dr.cli.context import AppContext
from dr.kube.client import KubeClient, connect


def connect_kube(app: AppContext) -> KubeClient:
    context = app.kube_context or app.loaded.config.kube_context
    client: KubeClient = app.cached("kube", lambda: connect(app.kubeconfig, context))
    return client
