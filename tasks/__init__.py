"""Prefect tasks: thin wrappers over nofrog_core that return small values (paths, metric dicts)."""
