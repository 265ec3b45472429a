"""Telling the outside world how runs went: Prometheus metrics and Kubernetes Events."""
