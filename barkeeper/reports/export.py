"""`barkeeper export`: a run's bars of one symbol and session, as a user reads them."""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import Engine, select

from barkeeper.core.panel import PRICE_COLUMNS, ts_to_utc
from barkeeper.errors import ParameterError
from models.results import resolve_run
from models.tables import RunBar

EXPORT_COLUMNS = ("timestamp", *PRICE_COLUMNS, "provenance", "source")


def export_bars(
    engine: Engine, run_id: str | None, symbol: str, session: date, interval: int
) -> pd.DataFrame:
    """Bars of `symbol` in `session` at `interval` minutes, ascending, with ISO UTC timestamps."""
    run = resolve_run(engine, run_id)
    query = (
        select(
            RunBar.ts,
            RunBar.open,
            RunBar.high,
            RunBar.low,
            RunBar.close,
            RunBar.volume,
            RunBar.provenance,
            RunBar.source,
        )
        .where(
            RunBar.run_id == run.id,
            RunBar.symbol == symbol,
            RunBar.session == session,
            RunBar.interval == interval,
        )
        .order_by(RunBar.ts)
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(
            conn.execute(query).all(), columns=["ts", *PRICE_COLUMNS, "provenance", "source"]
        )
    if frame.empty:
        raise ParameterError(
            f"run {run.id} has no {interval}-minute bars of {symbol} on {session}; "
            "check --symbol, --date and --interval against `barkeeper report`"
        )
    stamps = ts_to_utc(frame.pop("ts")).strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.insert(0, "timestamp", stamps)
    return frame.loc[:, list(EXPORT_COLUMNS)]
