"""`barkeeper export`: a run's bars of one symbol and session, as a user reads them."""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import Engine

from barkeeper.core.panel import PRICE_COLUMNS, ts_to_utc
from barkeeper.errors import ParameterError
from barkeeper.reports.rebuild import session_series
from models.results import resolve_run

EXPORT_COLUMNS = ("timestamp", *PRICE_COLUMNS, "provenance", "source")


def export_bars(
    engine: Engine, run_id: str | None, symbol: str, session: date, interval: int
) -> pd.DataFrame:
    """Bars of `symbol` in `session` at `interval` minutes, ascending, with ISO UTC timestamps.

    The series is rebuilt from the repository and the run's changes (refused with
    RepositoryChangedError when the repository no longer holds what the run read).
    """
    run = resolve_run(engine, run_id)
    bars = session_series(engine, run.id, session, [symbol])
    frame = export_frame(bars.loc[bars["interval"] == interval])
    if frame.empty:
        raise ParameterError(
            f"run {run.id} has no {interval}-minute bars of {symbol} on {session}; "
            "check --symbol, --date and --interval against `barkeeper report`"
        )
    return frame


def export_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars of one symbol and interval (ts, OHLCV, provenance, source) as exported: by time,
    ISO UTC."""
    frame = bars.sort_values("ts").reset_index(drop=True)
    stamps = ts_to_utc(frame["ts"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = frame.loc[:, [*PRICE_COLUMNS, "provenance", "source"]].astype(
        {"provenance": object, "source": object}
    )
    out.insert(0, "timestamp", stamps)
    return out.loc[:, list(EXPORT_COLUMNS)]
