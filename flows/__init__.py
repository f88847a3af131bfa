"""Prefect flows: the retraining pipeline and its parts."""
