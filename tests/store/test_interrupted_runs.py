"""`interrupt_own_runs`, what the signal handler calls: only this process's running runs,
on SQLite and PostgreSQL, within its wait for the store."""

from __future__ import annotations

from sqlalchemy import text

from models.engine import engine_for, make_engine
from models.results import create_run, finish_run, interrupt_own_runs, resolve_run


def test_only_this_process_running_runs_are_marked(db_url: str) -> None:
    engine = engine_for(db_url)
    for run_id in ("mine", "done", "other"):
        create_run(engine, run_id, "replay_sessions", {})
    finish_run(engine, "done", "completed")
    with engine.begin() as conn:
        conn.execute(text("UPDATE run SET pid = 1 WHERE id = 'other'"))
    fresh = make_engine(db_url)  # as in the handler: not the pool the work was using
    try:
        assert interrupt_own_runs(fresh, wait_ms=800) == ["mine"]
        assert interrupt_own_runs(fresh, wait_ms=800) == []
    finally:
        fresh.dispose()
    status = {r: resolve_run(engine, r).status for r in ("mine", "done", "other")}
    assert status == {"mine": "interrupted", "done": "completed", "other": "running"}
    assert resolve_run(engine, "mine").error.startswith("interrupted: stopped by a signal")
