"""NetworkPolicies for dr's namespace: deny everything, then allow exactly what dr talks to.

dr pods need the API server, DNS, the object store, and the key service
(Vault or a cloud KMS), and optionally a Pushgateway. Drill pods need nothing
more: their checks of the restored application (``http`` steps go through
the API server's service proxy, ``exec`` through pods/exec) all pass through
the API server, so no pod in dr's namespace may open connections into the
scratch namespaces. Nothing ever connects *to* dr, so all ingress is denied.

NetworkPolicy cannot name hosts, only pods/namespaces and IP blocks. So:
in-cluster services named ``svc.ns.svc[.cluster.local]`` get a namespace
rule (``svc.ns`` gets one too, and is also treated as outside: it may be a
private domain); every other endpoint's *port* (from the config's URLs; HTTPS 443 by
default, Vault's 8200 when no address is given) is allowed to ``0.0.0.0/0``.
That IP block is a placeholder to narrow to the object store's, KMS's and
the API server's ranges — NetworkPolicy cannot do better from a config
alone. The API server is reached on 443 and 6443 (the usual
kube-apiserver ports; managed clusters use 443).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dr.config import Config
from dr.kube.pod_template import Manifest, labels

ANY_IPV4 = "0.0.0.0/0"
APISERVER_PORTS = (443, 6443)
HTTPS = 443
VAULT_DEFAULT_PORT = 8200
DNS_PORT = 53


@dataclass(frozen=True, order=True)
class Endpoint:
    """Where dr connects: an in-cluster namespace (or None for outside) and a TCP port."""

    namespace: str | None
    port: int


def endpoints_of(url: str, default_port: int = HTTPS) -> list[Endpoint]:
    """The endpoint(s) a URL may reach: ``svc.ns`` may be a Service or a private domain, so both."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    host = (parts.hostname or "").lower()
    port = parts.port or (80 if parts.scheme == "http" else default_port)
    names = host.split(".")
    if len(names) >= 3 and names[2] == "svc":  # svc.ns.svc[.cluster.local]: certainly in-cluster
        return [Endpoint(names[1], port)]
    if len(names) == 2:
        return [Endpoint(names[1], port), Endpoint(None, port)]
    return [Endpoint(None, port)]


def config_endpoints(cfg: Config) -> list[Endpoint]:
    """Every endpoint the config names, plus HTTPS (cloud APIs' default)."""
    found = {Endpoint(None, HTTPS)}
    for repo in cfg.repositories:
        if repo.s3 and repo.s3.endpoint:
            found.update(endpoints_of(repo.s3.endpoint))
        if repo.gcs and repo.gcs.endpoint:
            found.update(endpoints_of(repo.gcs.endpoint))
    for kp in cfg.key_providers:
        scheme = urlsplit(kp.uri).scheme
        if scheme == "vault":
            address = kp.vault.address if kp.vault else None
            found.update(
                endpoints_of(address, VAULT_DEFAULT_PORT) if address else [Endpoint(None, VAULT_DEFAULT_PORT)]
            )
        elif scheme == "awskms" and kp.awskms and kp.awskms.endpoint:
            found.update(endpoints_of(kp.awskms.endpoint))
        elif scheme == "gcpkms" and kp.gcpkms and kp.gcpkms.endpoint:
            found.update(endpoints_of(kp.gcpkms.endpoint))
    if cfg.metrics.pushgateway:
        found.update(endpoints_of(cfg.metrics.pushgateway, 9091))
    return sorted(found, key=lambda e: (e.namespace or "", e.port))


def _tcp(ports: list[int]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in sorted(set(ports))]


def endpoint_egress(
    endpoints: list[Endpoint], extra_outside_ports: tuple[int, ...] = ()
) -> list[dict[str, Any]]:
    """Egress rules to ``endpoints``: their ports outside the cluster, and in-cluster namespaces' ports.

    Also used for the mover and probe pods of drill scratch namespaces (``dr.drill.run``).
    """
    outside = [e.port for e in endpoints if e.namespace is None]
    rules: list[dict[str, Any]] = []
    if outside or extra_outside_ports:
        rules.append(
            {"to": [{"ipBlock": {"cidr": ANY_IPV4}}], "ports": _tcp([*extra_outside_ports, *outside])}
        )
    by_namespace: dict[str, list[int]] = {}
    for e in endpoints:
        if e.namespace is not None:
            by_namespace.setdefault(e.namespace, []).append(e.port)
    for ns, ports in sorted(by_namespace.items()):
        rules.append(
            {
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}],
                "ports": _tcp(ports),
            }
        )
    return rules


def network_policies(namespace: str, endpoints: list[Endpoint]) -> list[Manifest]:
    default_deny: Manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "dr-default-deny", "namespace": namespace, "labels": labels("network")},
        # Every pod in the namespace (dr, its mover Jobs, anything else): no traffic at all...
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    egress: list[dict[str, Any]] = [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
        },
        *endpoint_egress(endpoints, APISERVER_PORTS),
    ]
    allow: Manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "dr-egress", "namespace": namespace, "labels": labels("network")},
        # ...except dr's own pods (CronJob pods and mover Jobs carry this label) going out.
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "dr"}},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }
    return [default_deny, allow]
