"""Engine factory: one place that knows how to connect to SQLite or PostgreSQL."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from barkeeper.errors import ParameterError
from barkeeper.settings import load_settings


def make_engine(url: str) -> Engine:
    """A new engine for `url`; SQLite gets WAL, a busy timeout and relaxed fsync."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise ParameterError(
            f"--db: {_masked(url)!r} is not a database URL (e.g. sqlite:///bars.db)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        read_only = _read_only_file(parsed.database)
        if read_only:  # e.g. a read-only mount: open it immutable, so reads need no lock files
            parsed = parsed.set(
                database=f"file:{Path(read_only).resolve()}?mode=ro&immutable=1",
                query={"uri": "true"},
            )
        timeout_s = load_settings().store_busy_timeout_seconds
        engine = create_engine(
            parsed, connect_args={"timeout": timeout_s, "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_read_only if read_only else _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError):  # unknown dialect, or its driver is missing
        raise ParameterError(
            f"--db: unsupported database in {_masked(url)!r}; use sqlite:/// or postgresql://"
        ) from None


@cache
def engine_for(url: str) -> Engine:
    """The process-wide engine of `url` (tasks pass URLs, never engines or sessions)."""
    return make_engine(url)


def _masked(url: str) -> str:
    """`url` with anything between `://user:` and `@` hidden (it may be a password)."""
    head, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{head}://{credentials.split(':', 1)[0]}:***@{host}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _read_only_file(database: str | None) -> str | None:
    """The path of an existing SQLite file this process cannot write (file or folder)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    if not path.is_file():
        return None
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    return None if writable else database


def _sqlite_read_only(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.close()


def check_writable(engine: Engine) -> None:
    """Raise the database's own error if `engine`'s SQLite store cannot take a write now.

    Takes and releases the write lock (`BEGIN IMMEDIATE`), waiting the busy timeout like a
    write would: a store locked by another process fails here, before any work.
    """
    if not is_sqlite(engine):
        return
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("BEGIN IMMEDIATE")
        raw.driver_connection.execute("ROLLBACK")
    finally:
        raw.close()


def is_read_only(engine: Engine) -> bool:
    """True for a store opened read-only (its file or folder is not writable)."""
    return engine.url.query.get("uri") == "true" and "mode=ro" in (engine.url.database or "")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
