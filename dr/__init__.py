"""dr — Kubernetes backup, restore and disaster-recovery orchestrator."""

__version__ = "0.1.0"
