"""Schema management: `init_db` brings a store to the current schema through Alembic migrations.

Alembic is configured in code (no alembic.ini at run time); the revisions live in
`models/migrations/versions`. After changing `models/tables.py`, add a revision with
`python -m models.schema revision "what changed"` and review the generated file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from models import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
INITIAL_REVISION = "0001"
MIGRATION_ATTEMPTS = 6  # waits 0.1 s, 0.2 s, … 1.6 s for a concurrent migration


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged migrations."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_path_separator", "os")
    return config


def init_db(engine: Engine) -> None:
    """Create or upgrade the schema of `engine`'s database to the newest revision (idempotent).

    A store created before migrations existed (tables present, no version recorded) is adopted
    at the initial revision and upgraded from there. A store already at the newest revision
    is recognised with one query, without loading Alembic (~0.3 s of every command).
    """
    if _stored_revision(engine) == newest_revision():
        return
    from alembic import command
    from alembic.script import ScriptDirectory

    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    for attempt in range(MIGRATION_ATTEMPTS):
        try:
            with engine.begin() as conn:
                if _revision(conn) == head:
                    return
                config.attributes["connection"] = conn
                if _is_unversioned_store(conn):
                    command.stamp(config, INITIAL_REVISION)
                command.upgrade(config, "head")
            return
        except DBAPIError:
            # Another process is migrating the same store (SQLite runs DDL outside a
            # transaction; PostgreSQL serialises with an advisory lock): wait, then re-check.
            if attempt == MIGRATION_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * 2**attempt)


def newest_revision() -> str:
    """The newest migration's id: files are named after their revision ("0007_stored_at.py")."""
    files = (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    return max(path.name[:4] for path in files)


def _stored_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no such table yet
        return None


def _revision(conn: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def schema_diff(engine: Engine) -> list:
    """Differences between the database and the SQLModel tables (empty when in sync)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)


def _is_unversioned_store(conn: Connection) -> bool:
    names = set(inspect(conn).get_table_names())
    return "alembic_version" not in names and "bar" in names


def make_revision(message: str) -> None:
    """Autogenerate a revision from the difference between head and `models/tables.py`."""
    scratch = MIGRATIONS_DIR / ".autogenerate.db"
    scratch.unlink(missing_ok=True)
    from alembic import command
    from alembic.script import ScriptDirectory

    engine = create_engine(f"sqlite:///{scratch}")
    try:
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            count = len(list(ScriptDirectory.from_config(config).walk_revisions()))
            command.revision(config, message=message, autogenerate=True, rev_id=f"{count + 1:04d}")
    finally:
        engine.dispose()
        scratch.unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        sys.exit('usage: python -m models.schema revision "message"')
    make_revision(sys.argv[2])
