"""Backup orchestration: what ``dr backup`` does with the cluster (resources here; volumes elsewhere)."""
