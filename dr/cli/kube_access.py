"""From global options and dr.yaml to a Kubernetes client (one per invocation)."""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any
from urllib.parse import urlsplit

from dr.cli.context import AppContext
from dr.kube.client import KubeClient, connect

log = logging.getLogger(__name__)


def connect_kube(app: AppContext) -> KubeClient:
    """The invocation's client, once the API server answered (``KubeClient.probe``): a server
    that never answers is one error line within a bounded time, before any work or lock."""
    context = app.kube_context or app.loaded.config.kube_context

    def answering() -> KubeClient:
        kube = connect(app.kubeconfig, context)
        warn_once_if_unverified(kube)
        try:
            kube.probe()
        except Exception:
            kube.close()
            raise
        return kube

    client: KubeClient = app.cached("kube", answering)
    return client


def warn_once_if_unverified(kube: KubeClient) -> None:
    """One logged warning for an API server whose certificate is not verified (a kubeconfig's
    insecure-skip-tls-verify), instead of urllib3's InsecureRequestWarning at every request to it
    (two lines each, 47 for a small backup, --quiet or not): a log line, which --quiet leaves out
    and which is JSON off a terminal. Other hosts' warnings (an object store, Vault) stay."""
    cfg = kube.api_client.configuration
    host = urlsplit(cfg.host).hostname
    if cfg.verify_ssl or not cfg.host.lower().startswith("https://") or not host:
        return
    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings(
        "ignore",
        message=f"Unverified HTTPS request is being made to host '{re.escape(host)}'",
        category=InsecureRequestWarning,
    )
    log.warning(
        "the certificate of the Kubernetes API at %s is not verified (insecure-skip-tls-verify)", cfg.host
    )


def steps_api_client(kube: KubeClient) -> Any:
    """A kubernetes.client.ApiClient for the verification steps (service proxy, exec), on
    the configuration ``connect_kube`` loaded: the kubeconfig is read (and an exec plugin
    run) once, by the same rules (``--kubeconfig`` one path, ``$KUBECONFIG`` a list)."""
    from kubernetes import client as kclient

    return kclient.ApiClient(kube.api_client.configuration)
