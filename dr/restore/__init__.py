"""Restore orchestration: plan, transform, order and apply backed-up objects (``dr restore``)."""
