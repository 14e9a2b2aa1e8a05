"""Prefect flows: short compositions of tasks (`replay_sessions`, `nightly_audit`)."""
