"""A run's bars in the store: what each session changed against the repository, and fingerprints.

A session of a run is written in one transaction: its `run_session` row (how to rebuild the
series), one `run_source` fingerprint per symbol, and its `run_bar` changes, inserted chunk
by chunk as the caller produces them, so no session-wide row list is ever held. Sessions of
runs from before revision 0003 hold full copies in `run_bar` and no `run_session` row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import Engine, delete, select

from barkeeper.core.panel import PRICE_COLUMNS
from models.bulk import insert_rows
from models.tables import RunBar, RunSession, RunSource

CHANGE_COLUMNS = ("symbol", "ts", *PRICE_COLUMNS, "provenance", "source")
FULL_COLUMNS = (
    "session",
    "symbol",
    "interval",
    "ts",
    *PRICE_COLUMNS,
    "provenance",
    "constituents",
    "expected_constituents",
    "source",
)


def write_session_bars(
    engine: Engine,
    run_id: str,
    session: date,
    spec: Mapping[str, Any],
    sources: pd.DataFrame,
    changes: Iterable[pd.DataFrame],
) -> int:
    """Replace one session's run_session, run_source and run_bar rows; return run_bar rows.

    Parameters
    ----------
    spec
        The run_session fields besides the keys and `bars`: calendar, extended_hours,
        anchor, derived ("5,15,1440"), window_start, window_end, source (the source whose
        slice is the base; "" for none), read_at (when the slice was read, epoch ns).
    sources
        Columns symbol, bars, digest: the fingerprint of each symbol's slice as read.
    changes
        Frames with CHANGE_COLUMNS (1m bars with the named source of each; NaN prices for
        `none` markers and bars equal to the base's), consumed one
        at a time.
    """
    keys = {"run_id": run_id, "session": session}
    with engine.begin() as conn:
        for table in (RunBar, RunSource, RunSession):
            conn.execute(delete(table).where(table.run_id == run_id, table.session == session))
        insert_rows(conn, RunSource, sources.loc[:, ["symbol", "bars", "digest"]].assign(**keys))
        written = 0
        for frame in changes:
            if len(frame):
                insert_rows(
                    conn,
                    RunBar,
                    frame.loc[:, list(CHANGE_COLUMNS)].assign(
                        interval=1, constituents=1, expected_constituents=1, **keys
                    ),
                )
                written += len(frame)
        insert_rows(
            conn, RunSession, {**{k: [v] for k, v in {**keys, **spec}.items()}, "bars": [written]}
        )
    return written


def read_run_session(engine: Engine, run_id: str, session: date) -> dict[str, Any] | None:
    """The session's rebuild record, or None when the session holds a full copy (or nothing)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(RunSession).where(RunSession.run_id == run_id, RunSession.session == session)
        ).first()
    return None if row is None else dict(row._mapping)


def run_sessions(engine: Engine, run_id: str) -> list[date]:
    """Every session of the run that holds bars (changes or a full copy), ascending."""
    with engine.connect() as conn:
        stored = conn.execute(select(RunSession.session).where(RunSession.run_id == run_id))
        copied = conn.execute(select(RunBar.session).where(RunBar.run_id == run_id).distinct())
        return sorted({*stored.scalars(), *copied.scalars()})


def read_run_sources(
    engine: Engine, run_id: str, session: date, symbols: Sequence[str] | None = None
) -> pd.DataFrame:
    """Fingerprints (symbol, bars, digest) the run recorded for the session, by symbol."""
    query = select(RunSource.symbol, RunSource.bars, RunSource.digest).where(
        RunSource.run_id == run_id, RunSource.session == session
    )
    if symbols is not None:
        query = query.where(RunSource.symbol.in_(list(symbols)))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(RunSource.symbol)).all()
    return pd.DataFrame(rows, columns=["symbol", "bars", "digest"])


def read_run_changes(
    engine: Engine, run_id: str, session: date, symbols: Sequence[str] | None = None
) -> pd.DataFrame:
    """The session's stored 1m changes (CHANGE_COLUMNS; NaN prices on `none` markers)."""
    columns = [getattr(RunBar, c) for c in CHANGE_COLUMNS]
    query = select(*columns).where(
        RunBar.run_id == run_id, RunBar.session == session, RunBar.interval == 1
    )
    if symbols is not None:
        query = query.where(RunBar.symbol.in_(list(symbols)))
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=list(CHANGE_COLUMNS))
    return frame.astype({c: "float64" for c in PRICE_COLUMNS})


def read_full_copy(
    engine: Engine,
    run_id: str,
    session: date | None = None,
    symbol: str | None = None,
    interval: int | None = None,
) -> pd.DataFrame:
    """run_bar rows of a run stored as a full copy (FULL_COLUMNS), by interval, symbol, ts."""
    query = select(*(getattr(RunBar, c) for c in FULL_COLUMNS)).where(RunBar.run_id == run_id)
    for name, value in (("session", session), ("symbol", symbol), ("interval", interval)):
        if value is not None:
            query = query.where(getattr(RunBar, name) == value)
    query = query.order_by(RunBar.interval, RunBar.symbol, RunBar.ts)
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).all(), columns=list(FULL_COLUMNS))
