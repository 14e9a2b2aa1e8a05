"""Writes and reads of run results: runs, per-symbol metrics, gaps, validations."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, bindparam, delete, select, update
from sqlmodel import Session

from barkeeper.errors import UnknownRunError
from models.bulk import insert_rows
from models.engine import is_sqlite
from models.tables import Gap, Run, SessionMetric, ValidationResult

RUN_STATUSES = ("running", "completed", "degraded", "failed", "interrupted")


def create_run(engine: Engine, run_id: str, flow: str, parameters: Mapping[str, Any]) -> None:
    """Record a run as started (status `running` until `finish_run`)."""
    with Session(engine) as session:
        session.add(
            Run(
                id=run_id,
                flow=flow,
                parameters=json.dumps(parameters, default=str),
                host=socket.gethostname()[:255],
                pid=os.getpid(),
            )
        )
        session.commit()


def finish_run(
    engine: Engine,
    run_id: str,
    status: str,
    *,
    error: str = "",
    data_docs: str = "",
    stats: Mapping[str, Any] | None = None,
) -> None:
    """Record a run's outcome."""
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    values: dict[str, Any] = {"status": status, "finished_at": datetime.now(UTC), "error": error}
    if data_docs:
        values["data_docs"] = data_docs
    if stats is not None:
        values["stats"] = json.dumps(stats, default=str)
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(**values))


def mark_interrupted(engine: Engine) -> list[str]:
    """Mark runs whose process has died while they were `running` as `interrupted`.

    Only runs started on this host can be judged: their process id is looked up, and a run
    whose process still exists (this one, or a concurrent replay) is left alone. Runs of
    other hosts, and runs recorded without a process id, stay as they are.

    Returns
    -------
    list[str]
        The ids of the runs marked.
    """
    query = select(Run.id, Run.pid).where(
        Run.status == "running", Run.host == socket.gethostname()[:255], Run.pid.is_not(None)
    )
    with engine.begin() as conn:
        dead = [run_id for run_id, pid in conn.execute(query) if not process_alive(pid)]
        if dead:
            conn.execute(
                update(Run)
                .where(Run.id.in_(dead), Run.status == "running")
                .values(
                    status="interrupted",
                    finished_at=datetime.now(UTC),
                    error="interrupted: its process ended before the run finished",
                )
            )
    return dead


def interrupt_own_runs(engine: Engine, *, wait_ms: int) -> list[str]:
    """Mark this process's `running` runs `interrupted` (after SIGINT/SIGTERM); their ids.

    Waits at most `wait_ms` for the store's write lock, so a signal handler stays prompt.
    """
    own = (Run.status == "running", Run.host == socket.gethostname()[:255], Run.pid == os.getpid())
    with engine.begin() as conn:
        if is_sqlite(engine):
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait_ms)}")
        else:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(wait_ms)}")
        ids = list(conn.scalars(select(Run.id).where(*own)))
        if ids:
            conn.execute(
                update(Run)
                .where(Run.id.in_(ids), *own)
                .values(
                    status="interrupted",
                    finished_at=datetime.now(UTC),
                    error="interrupted: stopped by a signal before the run finished",
                )
            )
    return ids


def process_alive(pid: int) -> bool:
    """True if process `pid` exists on this host and is not a zombie (killed, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no procfs: existence is all we know
        return True


def write_session_results(
    engine: Engine,
    run_id: str,
    session_label: Any,
    *,
    metrics: pd.DataFrame,
    gaps: pd.DataFrame,
) -> None:
    """Persist one session's metrics and gaps in one transaction; rewriting replaces them.

    The session's bars are written by `models.run_bars.write_session_bars`.
    """
    with engine.begin() as conn:
        for table in (SessionMetric, Gap):
            conn.execute(
                delete(table).where(table.run_id == run_id, table.session == session_label)
            )
        for table, frame in ((SessionMetric, metrics), (Gap, gaps)):
            if len(frame):
                insert_rows(conn, table, frame.assign(run_id=run_id, session=session_label))


def write_validation_success(
    engine: Engine, run_id: str, success: Mapping[Any, Mapping[str, bool]]
) -> None:
    """Set each symbol's `validation_success` per session (known once a session is checked)."""
    rows = [
        {"run": run_id, "day": day, "sym": symbol, "ok": ok}
        for day, symbols in success.items()
        for symbol, ok in symbols.items()
    ]
    if not rows:
        return
    statement = (
        update(SessionMetric)
        .where(
            SessionMetric.run_id == bindparam("run"),
            SessionMetric.session == bindparam("day"),
            SessionMetric.symbol == bindparam("sym"),
        )
        .values(validation_success=bindparam("ok"))
    )
    with engine.begin() as conn:
        conn.execute(statement, rows)


def write_validation_results(engine: Engine, records: list[dict[str, Any]]) -> None:
    if records:
        frame = pd.DataFrame.from_records(records).assign(created_at=datetime.now(UTC))
        insert_rows(engine, ValidationResult, frame)


def resolve_run(engine: Engine, run_id: str | None, *, flow: str | None = None) -> Run:
    """The run named by `run_id`, or the latest one (of `flow`, when given)."""
    with Session(engine) as session:
        if run_id:
            run = session.get(Run, run_id)
            if run is None:
                raise UnknownRunError(f"no run with id {run_id!r} in the store")
            return run
        query = select(Run).order_by(Run.started_at.desc())
        if flow:
            query = query.where(Run.flow == flow)
        run = session.scalars(query).first()
        if run is None:
            raise UnknownRunError("the store holds no runs yet; run `barkeeper replay` first")
        return run


def read_table(engine: Engine, table: type, run_id: str, **filters: Any) -> pd.DataFrame:
    """Rows of a run-keyed table as a frame (columns in table order)."""
    query = select(table).where(table.run_id == run_id)
    for name, value in filters.items():
        query = query.where(getattr(table, name) == value)
    with engine.connect() as conn:
        return pd.read_sql(query, conn)
