"""The `barkeeper` command: the one app with every command module registered on it."""

from barkeeper.cli import audit, bench, ingest, replay, sources  # noqa: F401  (each registers its commands)
from barkeeper.cli.app import app

__all__ = ["app"]
