"""The Kubernetes layer: connect, discover API resources, list, apply and wait.

Everything here talks to the API server through ``dr.kube.client.KubeClient``
(raw JSON over the kubernetes client's authenticated connection pool) and
knows nothing about backups or restores: orchestration lives in ``dr.backup``
and ``dr.restore``, which import this package, never the other way round.
"""
