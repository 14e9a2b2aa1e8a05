"""The repository as it was at an earlier time: today's bars, less those stored since, plus
the values that revisions say those bars had then.

A run's export needs the slice the run read; later deliveries add and revise bars, and every
write keeps its time (`Bar.stored_at`) and every replaced value its interval of validity
(`BarRevision.stored_at` to `replaced_at`), so that slice can be put back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from models.repository import BAR_INTERVAL, read_bars
from models.tables import DEFAULT_SOURCE, Bar, BarRevision, nanos

KEY = ["symbol", "ts"]


def read_bars_as_of(
    engine: Engine,
    symbols: Sequence[str],
    start_ts: int,
    end_ts: int,
    at: int,
    source: str = DEFAULT_SOURCE,
) -> pd.DataFrame:
    """`read_bars` of the repository as it was at `at` (epoch ns, UTC).

    A bar stored at or before `at` (or before storage times were kept: NULL) is as it was. A
    bar stored after `at` had, at `at`, the values of its earliest revision replaced after
    `at`, provided those values had been stored by then; otherwise it did not exist yet.

    Notes
    -----
    Reads current bars once, then only the keys stored after `at` and their revisions (a
    session's window: few rows). Nothing here proves the result is what a run read; the
    caller compares its fingerprint with the one the run recorded.
    """
    current = read_bars(engine, symbols, start_ts, end_ts, source=source)
    names = list(dict.fromkeys(symbols))
    window = (
        Bar.interval == BAR_INTERVAL,
        Bar.source == source,
        Bar.symbol.in_(names),
        Bar.ts >= start_ts,
        Bar.ts < end_ts,
    )
    with engine.connect() as conn:
        later = pd.DataFrame(
            conn.execute(select(Bar.symbol, Bar.ts).where(*window, Bar.stored_at > at)).all(),
            columns=KEY,
        )
        if later.empty:
            return current
        revised = conn.execute(
            select(
                *(getattr(BarRevision, c) for c in BAR_COLUMNS),
                BarRevision.stored_at,
                BarRevision.replaced_at,
            )
            .where(
                BarRevision.interval == BAR_INTERVAL,
                BarRevision.source == source,
                BarRevision.symbol.in_(later["symbol"].unique().tolist()),
                BarRevision.ts >= start_ts,
                BarRevision.ts < end_ts,
            )
            .order_by(BarRevision.replaced_at, BarRevision.id)
        ).all()
    then = _values_at(pd.DataFrame(revised, columns=[*BAR_COLUMNS, "stored_at", "replaced"]), at)
    then = then.merge(later, on=KEY)  # only bars stored since: the others are as they were
    gone = pd.MultiIndex.from_frame(current[KEY]).isin(pd.MultiIndex.from_frame(later))
    out = pd.concat([current.loc[~gone], then[list(BAR_COLUMNS)]], ignore_index=True)
    return out.sort_values(["ts", "symbol"], ignore_index=True)


def _values_at(revisions: pd.DataFrame, at: int) -> pd.DataFrame:
    """Per key, the revision (oldest replacement first) whose values were current at `at`."""
    replaced = np.array([nanos(moment) for moment in revisions["replaced"]], dtype=np.int64)
    stored = revisions["stored_at"].astype("Int64").fillna(np.iinfo(np.int64).min)
    valid = (stored.to_numpy(np.int64) <= at) & (replaced > at)
    frame = revisions.loc[valid].drop_duplicates(KEY, keep="first")
    return frame.astype({"ts": np.int64, **{c: np.float64 for c in PRICE_COLUMNS}})
