"""What a database error means for the user: the store's condition and what to do about it.

Errors that are not bugs (the file is not a database, corrupted pages, a lock held past the
timeout, a full disk, a read-only store, no permission, no server) become a `StoreError` of one
line; anything else (an integrity or programming error) stays what it is: a bug to report.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError

from barkeeper.errors import StoreError

# SQLite result names (sqlite3.Error.sqlite_errorname, extended codes matched by prefix)
SQLITE_PROBLEMS = {
    "SQLITE_NOTADB": "is not an SQLite database; point --db at a barkeeper store",
    "SQLITE_CORRUPT": "is corrupted ({detail}); restore it from a backup "
    "(or salvage it with `sqlite3 FILE .recover`)",
    "SQLITE_BUSY": "stayed locked by another process past the busy timeout; "
    "wait for that command to finish, or stop it, then rerun",
    "SQLITE_LOCKED": "stayed locked by another process past the busy timeout; "
    "wait for that command to finish, or stop it, then rerun",
    "SQLITE_FULL": "cannot grow: the disk is full; free space, then rerun",
    "SQLITE_READONLY": "is read-only; `report` and `export` work, but to replay or import "
    "make the file and its folder writable",
    "SQLITE_CANTOPEN": "cannot be opened; check that its folder exists and that this user "
    "may read and write the file and the folder",
    "SQLITE_PERM": "cannot be opened: permission denied; check the file's and folder's owner "
    "and mode",
    "SQLITE_AUTH": "cannot be opened: permission denied; check the file's and folder's owner "
    "and mode",
    "SQLITE_IOERR": "cannot be read or written ({detail}); check the disk and the mount",
}
# PostgreSQL SQLSTATE classes and codes (most specific first)
POSTGRES_PROBLEMS = {
    "53100": "cannot grow: the server's disk is full; free space, then rerun",
    "25006": "is read-only; `report` and `export` work, but to replay or import connect "
    "to a writable server",
    "42501": "refused access: permission denied; grant this user access to the database",
    "55P03": "stayed locked by another session past the lock timeout; rerun when it is done",
    "XX001": "is corrupted ({detail}); restore it from a backup",
    "XX002": "is corrupted ({detail}); restore it from a backup",
    "08": "cannot be reached ({detail}); check the server is running and the URL",
    "53": "is out of resources ({detail}); free them on the server, then rerun",
    "57": "was stopped by its operator ({detail}); rerun when the server is back",
    "28": "refused the login ({detail}); check the user and password in the URL",
    "3D": "does not exist ({detail}); create the database or fix the URL",
}


def store_problem(error: BaseException, store: str) -> StoreError | None:
    """`error` as a one-line StoreError naming `store`, or None when it is not a store problem."""
    original = error.orig if isinstance(error, DBAPIError) else error
    detail = " ".join(str(original).split()) or type(original).__name__
    what = None
    if isinstance(original, sqlite3.Error) and not isinstance(
        original, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
    ):
        name = getattr(original, "sqlite_errorname", "") or ""
        what = next((v for k, v in SQLITE_PROBLEMS.items() if name.startswith(k)), None)
    elif type(original).__module__.startswith("psycopg"):
        state = getattr(original, "sqlstate", None)
        if state is None and type(original).__name__ == "OperationalError":
            state = "08"  # no SQLSTATE: the connection itself failed
        state = state or ""
        what = next((v for k, v in POSTGRES_PROBLEMS.items() if state.startswith(k)), None)
    if what is None:
        return None
    return StoreError(f"the store {store} {what.format(detail=detail)}")
