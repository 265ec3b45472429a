"""From global options and dr.yaml to a Kubernetes client (one per invocation)."""

from __future__ import annotations

from typing import Any

from dr.cli.context import AppContext
from dr.kube.client import KubeClient, connect


def connect_kube(app: AppContext) -> KubeClient:
    """The invocation's client, once the API server answered (``KubeClient.probe``): a server
    that never answers is one error line within a bounded time, before any work or lock."""
    context = app.kube_context or app.loaded.config.kube_context

    def answering() -> KubeClient:
        kube = connect(app.kubeconfig, context)
        try:
            kube.probe()
        except Exception:
            kube.close()
            raise
        return kube

    client: KubeClient = app.cached("kube", answering)
    return client


def steps_api_client(kube: KubeClient) -> Any:
    """A kubernetes.client.ApiClient for the verification steps (service proxy, exec), on
    the configuration ``connect_kube`` loaded: the kubeconfig is read (and an exec plugin
    run) once, by the same rules (``--kubeconfig`` one path, ``$KUBECONFIG`` a list)."""
    from kubernetes import client as kclient

    return kclient.ApiClient(kube.api_client.configuration)
