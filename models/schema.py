"""Schema management: `init_db` brings a store to the current schema."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import SQLModel

from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)


def init_db(engine: Engine) -> None:
    """Create or upgrade the schema of `engine`'s database (idempotent)."""
    SQLModel.metadata.create_all(engine)
