"""Runbooks: the per-application YAML (model, schema) and the human runbook rendered from it."""
