"""Engine factory: one place that knows how to connect to SQLite or PostgreSQL."""

from __future__ import annotations

from functools import cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from barkeeper.errors import ParameterError

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    """A new engine for `url`; SQLite gets WAL, a busy timeout and relaxed fsync."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise ParameterError(
            f"--db: {_masked(url)!r} is not a database URL (e.g. sqlite:///bars.db)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
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
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
