"""The `barkeeper` command: the one app with every command module registered on it."""

from barkeeper.cli import (  # noqa: F401  (each registers its commands)
    audit,
    automations,
    bench,
    blocks,
    demo,
    ingest,
    replay,
    revisions,
    server,
    sources,
)
from barkeeper.cli.app import app

__all__ = ["app"]
