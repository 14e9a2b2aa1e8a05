"""The `barkeeper` command: the one app with every command module registered on it."""

# each module registers its commands
from barkeeper.cli import audit, bench, ingest, replay, revisions, server  # noqa: F401
from barkeeper.cli.app import app

__all__ = ["app"]
