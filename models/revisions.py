"""Storing a file's bars without losing the ones they replace: new bars, identical bars,
and bars with other values (kept as revisions, kept as stored, or sent to quarantine).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from barkeeper.core.panel import PRICE_COLUMNS
from models.bulk import insert_rows, transaction
from models.repository import BAR_INTERVAL, Bind, read_bars_at, upsert_bars
from models.tables import DEFAULT_SOURCE, Bar, BarRevision, nanos, utcnow

OnConflict = Literal["replace", "keep", "quarantine"]
ON_CONFLICT: tuple[OnConflict, ...] = ("replace", "keep", "quarantine")
ROWS_PER_STEP = 100_000  # bars compared and written at a time (memory of a large import)
TS_PER_QUERY = 900  # stored sources looked up per query (SQLite's oldest parameter limit)
REVISION_COLUMNS = ("ts", *PRICE_COLUMNS, "source", "file", "replaced_at", "replaced_by")


@dataclass(frozen=True)
class StoreCounts:
    """What `store_bars` did with a file's bars (every bar in exactly one count)."""

    stored: int  # new minutes
    revised: int  # other values than the stored bar, replacing it (the old kept as a revision)
    kept: int  # other values than the stored bar, left out (--on-conflict keep)
    skipped: int  # identical to the stored bar
    conflicts: pd.DataFrame  # line, ts of bars sent to quarantine (--on-conflict quarantine)


def store_bars(
    conn: Connection,
    bars: pd.DataFrame,
    *,
    file: str,
    on_conflict: OnConflict = "replace",
    source: str = DEFAULT_SOURCE,
) -> StoreCounts:
    """Store one file's bars (symbol, ts, OHLCV, line) in `source`, comparing each with the
    stored bar of that source.

    A bar with other values than the stored one is a vendor revision: ``replace`` stores it and
    keeps the stored values in `bar_revision` (with the file they came from, when and by
    which file they were replaced); ``keep`` leaves the stored bar; ``quarantine`` leaves it
    and returns the new row for quarantine. The bars written are stored at the instant the
    replaced ones were replaced, so the repository as of any earlier time can be put back
    (`models.as_of`).
    """
    now = utcnow()
    stored = revised = kept = skipped = 0
    conflicts = []
    for start in range(0, len(bars), ROWS_PER_STEP):
        part = bars.iloc[start : start + ROWS_PER_STEP]
        before = read_bars_at(conn, part, source)
        merged = part.merge(before, on=["symbol", "ts"], how="left", suffixes=("", "_stored"))
        present = merged["open_stored"].notna().to_numpy()
        same = present & np.logical_and.reduce(
            [merged[c].to_numpy() == merged[f"{c}_stored"].to_numpy() for c in PRICE_COLUMNS]
        )
        changed = present & ~same
        write = ~present | (changed if on_conflict == "replace" else False)
        if on_conflict == "replace" and changed.any():
            _keep_revisions(conn, merged[changed], file, source, now)
        if write.any():
            upsert_bars(conn, part[write], origin=file, source=source, stored_at=nanos(now))
        stored += int((~present).sum())
        skipped += int(same.sum())
        n_changed = int(changed.sum())
        if on_conflict == "replace":
            revised += n_changed
        elif on_conflict == "keep":
            kept += n_changed
        else:
            conflicts.append(merged.loc[changed, ["line", "ts"]])
    lines = pd.concat(conflicts) if conflicts else pd.DataFrame({"line": [], "ts": []})
    return StoreCounts(stored, revised, kept, skipped, lines.astype(np.int64))


def _keep_revisions(
    conn: Connection, changed: pd.DataFrame, replaced_by: str, source: str, now: datetime
) -> None:
    """Copy `source`'s stored values of `changed` bars (a symbol at a time) into `bar_revision`,
    with the file they came from and when they had been stored."""
    for symbol, group in changed.groupby("symbol", sort=False):
        stamps = group["ts"].to_numpy(np.int64).tolist()
        stored: dict[int, tuple[str, int | None]] = {}
        for i in range(0, len(stamps), TS_PER_QUERY):
            query = select(Bar.ts, Bar.origin, Bar.stored_at).where(
                Bar.symbol == symbol,
                Bar.interval == BAR_INTERVAL,
                Bar.source == source,
                Bar.ts.in_(stamps[i : i + TS_PER_QUERY]),
            )
            stored.update((int(ts), (str(o), at)) for ts, o, at in conn.execute(query))
        rows = {
            "symbol": [str(symbol)] * len(group),
            "interval": [BAR_INTERVAL] * len(group),
            "ts": stamps,
            "source": [source] * len(group),
            **{c: group[f"{c}_stored"].to_numpy(np.float64).tolist() for c in PRICE_COLUMNS},
            "file": [stored.get(ts, ("", None))[0] for ts in stamps],
            "replaced_at": [now] * len(group),
            "replaced_by": [replaced_by[:1024]] * len(group),
            "stored_at": [stored.get(ts, ("", None))[1] for ts in stamps],
        }
        insert_rows(conn, BarRevision, rows)


def read_revisions(
    bind: Bind, symbol: str, start_ts: int, end_ts: int, source: str | None = None
) -> pd.DataFrame:
    """Earlier values of `symbol`'s bars (of `source`, or every source) with start_ts <= ts <
    end_ts, by ts, oldest first."""
    columns = [getattr(BarRevision, c) for c in REVISION_COLUMNS]
    query = (
        select(*columns)
        .where(
            BarRevision.symbol == symbol,
            BarRevision.interval == BAR_INTERVAL,
            BarRevision.ts >= start_ts,
            BarRevision.ts < end_ts,
            *([] if source is None else [BarRevision.source == source]),
        )
        .order_by(BarRevision.ts, BarRevision.replaced_at, BarRevision.id)
    )
    with transaction(bind) as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=list(REVISION_COLUMNS))
