"""Named sources of the bar repository, and the discrepancies a replay found between them."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Engine, delete, func, select

from models.bulk import insert_rows, transaction
from models.repository import BAR_INTERVAL, Bind
from models.tables import Bar, Discrepancy


def list_sources(bind: Bind) -> pd.DataFrame:
    """One row per source and symbol: source, symbol, bars, first_ts, last_ts (1-minute bars)."""
    stmt = (
        select(Bar.source, Bar.symbol, func.count(), func.min(Bar.ts), func.max(Bar.ts))
        .where(Bar.interval == BAR_INTERVAL)
        .group_by(Bar.source, Bar.symbol)
        .order_by(Bar.source, Bar.symbol)
    )
    with transaction(bind) as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame(rows, columns=["source", "symbol", "bars", "first_ts", "last_ts"])


def source_names(bind: Bind) -> list[str]:
    """Every source with 1-minute bars, sorted."""
    stmt = select(Bar.source).where(Bar.interval == BAR_INTERVAL).distinct().order_by(Bar.source)
    with transaction(bind) as conn:
        return list(conn.execute(stmt).scalars())


def write_discrepancies(engine: Engine, run_id: str, session: Any, frame: pd.DataFrame) -> None:
    """Replace the session's discrepancy records of a run with `frame` (idempotent)."""
    with engine.begin() as conn:
        conn.execute(
            delete(Discrepancy).where(Discrepancy.run_id == run_id, Discrepancy.session == session)
        )
        if len(frame):
            insert_rows(conn, Discrepancy, frame.assign(run_id=run_id, session=session))


def read_discrepancies(engine: Engine, run_id: str) -> pd.DataFrame:
    """A run's discrepancy records, ordered by session, symbol and minute."""
    stmt = (
        select(Discrepancy)
        .where(Discrepancy.run_id == run_id)
        .order_by(Discrepancy.session, Discrepancy.symbol, Discrepancy.ts)
    )
    with engine.connect() as conn:
        return pd.read_sql(stmt, conn).drop(columns=["id"])
