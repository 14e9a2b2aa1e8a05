"""The bar repository: reads and writes of vendor 1-minute bars, quarantine and import records.

Every function takes an engine (its own transaction) or a connection (the caller's, so an
import commits bars, quarantine rows and its record together). Every value is a bound
parameter; table and column names come from the SQLModel tables.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, delete, func, select

from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from models.bulk import insert_rows, transaction
from models.tables import DEFAULT_SOURCE, Bar, IngestedFile, Quarantine

BAR_INTERVAL = 1
QUARANTINE_COLUMNS = ("file", "line", "raw", "reason", "symbol", "source")
SQLITE_KEYS_PER_QUERY = 10_000  # (symbol, ts) pairs per lookup, at most
SQLITE_SYMBOLS_PER_QUERY = 20_000  # symbols per range query, at most
BAR_SELECT = ", ".join(BAR_COLUMNS)

Bind = Engine | Connection


@dataclass(frozen=True)
class UpsertCounts:
    """What `upsert_bars` did: `stored` rows new or changed, `skipped` rows already identical."""

    stored: int
    skipped: int


def upsert_bars(
    bind: Bind, bars: pd.DataFrame, origin: str, source: str = DEFAULT_SOURCE
) -> UpsertCounts:
    """Insert or correct 1-minute bars of `source`, keyed on symbol + interval 1 + ts + source.

    A row identical (OHLCV) to the stored bar is skipped, so re-importing a file changes
    nothing; a row that differs replaces the stored bar (a vendor correction) and counts as
    stored. Within `bars` a key must appear once (the later row wins otherwise). `origin`
    says what delivered the bars (a file name).
    """
    if bars.empty:
        return UpsertCounts(0, 0)
    frame = bars.drop_duplicates(["symbol", "ts"], keep="last")
    rows = {
        "symbol": frame["symbol"].astype(str).tolist(),
        "interval": [BAR_INTERVAL] * len(frame),
        "ts": frame["ts"].to_numpy(dtype=np.int64).tolist(),
        **{c: frame[c].to_numpy(dtype=np.float64).tolist() for c in PRICE_COLUMNS},
        "source": [source] * len(frame),
        "origin": [origin[:255]] * len(frame),
    }
    stored = insert_rows(
        bind,
        Bar,
        rows,
        on_conflict="update",
        conflict_cols=("symbol", "interval", "ts", "source"),
        changed_cols=PRICE_COLUMNS,
    )
    return UpsertCounts(stored=stored, skipped=len(bars) - stored)


def read_bars(
    bind: Bind, symbols: Sequence[str], start_ts: int, end_ts: int, source: str = DEFAULT_SOURCE
) -> pd.DataFrame:
    """1-minute bars of `source` for `symbols` with start_ts <= ts < end_ts, sorted by ts, symbol.

    One query (SQLite: one per 20,000 symbols); rows come back as plain tuples and the frame
    is built column-wise, then sorted in pandas (cheaper than ORDER BY for a session of
    2,000 symbols, and the same code-point order on both backends).
    """
    symbols = list(dict.fromkeys(symbols))
    if not symbols or end_ts <= start_ts:
        return _bar_frame([])
    head = (
        f"SELECT {BAR_SELECT} FROM bar WHERE interval = {{p}} AND ts >= {{p}} AND ts < {{p}} "
        "AND source = {p}"
    )
    window = (BAR_INTERVAL, int(start_ts), int(end_ts), source)
    rows: list[tuple] = []
    with transaction(bind) as conn:
        if conn.dialect.name == "postgresql":
            sql = head.format(p="%s") + " AND symbol = ANY(%s)"
            rows = _fetch(conn, sql, (*window, symbols))
        else:
            chunk = min(SQLITE_SYMBOLS_PER_QUERY, _sqlite_max_parameters(conn) - len(window))
            for i in range(0, len(symbols), chunk):
                part = symbols[i : i + chunk]
                sql = head.format(p="?") + f" AND symbol IN ({', '.join('?' * len(part))})"
                rows += _fetch(conn, sql, (*window, *part))
    return _bar_frame(rows)


def read_bars_at(bind: Bind, keys: pd.DataFrame, source: str = DEFAULT_SOURCE) -> pd.DataFrame:
    """`source`'s 1-minute bars at exactly the (symbol, ts) pairs of `keys`, sorted by ts, symbol.

    Pairs with no stored bar are simply absent. One query on PostgreSQL (arrays unnested);
    on SQLite one query per 10,000 pairs (fewer on builds with a low parameter limit).
    """
    if keys.empty:
        return _bar_frame([])
    pairs = keys[["symbol", "ts"]].drop_duplicates()
    symbols = pairs["symbol"].astype(str).tolist()
    stamps = pairs["ts"].to_numpy(dtype=np.int64).tolist()
    select_b = ", ".join(f"b.{c}" for c in BAR_COLUMNS)
    rows: list[tuple] = []
    with transaction(bind) as conn:
        if conn.dialect.name == "postgresql":
            sql = (
                f"SELECT {select_b} FROM bar AS b "
                "JOIN unnest(%s::text[], %s::bigint[]) AS k(symbol, ts) "
                "ON b.symbol = k.symbol AND b.ts = k.ts WHERE b.interval = %s AND b.source = %s"
            )
            rows = _fetch(conn, sql, (symbols, stamps, BAR_INTERVAL, source))
        else:
            chunk = min(SQLITE_KEYS_PER_QUERY, (_sqlite_max_parameters(conn) - 2) // 2)
            for i in range(0, len(symbols), chunk):
                part = symbols[i : i + chunk]
                flat: list[object] = [None] * (2 * len(part))
                flat[0::2] = part
                flat[1::2] = stamps[i : i + chunk]
                sql = (
                    f"SELECT {select_b} FROM (VALUES {', '.join(['(?, ?)'] * len(part))}) AS k "
                    "JOIN bar AS b ON b.symbol = k.column1 AND b.ts = k.column2 "
                    "AND b.interval = ? AND b.source = ?"
                )
                rows += _fetch(conn, sql, (*flat, BAR_INTERVAL, source))
    return _bar_frame(rows)


def known_symbols(bind: Bind, source: str = DEFAULT_SOURCE) -> list[str]:
    """Every symbol with 1-minute bars of `source` in the repository, sorted."""
    stmt = (
        select(Bar.symbol)
        .where(Bar.interval == BAR_INTERVAL, Bar.source == source)
        .distinct()
        .order_by(Bar.symbol)
    )
    with transaction(bind) as conn:
        return list(conn.execute(stmt).scalars())


def symbol_span(bind: Bind, symbol: str, source: str = DEFAULT_SOURCE) -> tuple[int, int] | None:
    """(first ts, last ts) of `symbol`'s 1-minute bars of `source`, or None when it has none."""
    stmt = select(func.min(Bar.ts), func.max(Bar.ts)).where(
        Bar.symbol == symbol, Bar.interval == BAR_INTERVAL, Bar.source == source
    )
    with transaction(bind) as conn:
        first, last = conn.execute(stmt).one()
    return None if first is None else (int(first), int(last))


def write_quarantine(bind: Bind, rows: pd.DataFrame | Iterable[dict], *, file: str = "") -> int:
    """Store rejected rows (columns file, line, raw, reason, symbol); returns how many.

    With `file`, that file's earlier quarantine records are replaced, so re-importing a file
    leaves one record per bad row, not one per import.
    """
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    with transaction(bind) as conn:
        if file:
            conn.execute(delete(Quarantine).where(Quarantine.file == file))
        if frame.empty:
            return 0
        if "source" not in frame.columns:
            frame = frame.assign(source=DEFAULT_SOURCE)
        frame = frame[list(QUARANTINE_COLUMNS)].assign(created_at=datetime.now(UTC))
        insert_rows(conn, Quarantine, frame)
    return len(frame)


def read_quarantine(bind: Bind, file: str | None = None) -> pd.DataFrame:
    """Quarantine records (all, or of one file), ordered by file and line, with their source."""
    stmt = select(*(getattr(Quarantine, c) for c in QUARANTINE_COLUMNS)).order_by(
        Quarantine.file, Quarantine.line, Quarantine.id
    )
    if file is not None:
        stmt = stmt.where(Quarantine.file == file)
    with transaction(bind) as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame(rows, columns=list(QUARANTINE_COLUMNS))


def record_ingested_file(
    bind: Bind,
    path: str,
    symbol: str,
    *,
    source: str = DEFAULT_SOURCE,
    read: int = 0,
    stored: int = 0,
    quarantined: int = 0,
    skipped: int = 0,
    status: str = "done",
    reason: str = "",
) -> None:
    """Record one import of one file (status `done`, or `rejected` with the reason)."""
    record = IngestedFile(
        path=path[:1024],
        symbol=symbol[:64],
        source=source,
        status=status,
        reason=reason,
        read=read,
        stored=stored,
        quarantined=quarantined,
        skipped=skipped,
    )
    insert_rows(bind, IngestedFile, {k: [v] for k, v in record.model_dump(exclude={"id"}).items()})


def _sqlite_max_parameters(conn: Connection) -> int:
    """Bound parameters one statement may hold (999 on old builds, 32,766+ on new ones)."""
    return conn.connection.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


@contextmanager
def _gc_paused():
    """Pause the cyclic GC while hundreds of thousands of row tuples are made.

    Tuples cannot form cycles, yet each generation-0 threshold crossed triggers a collection;
    pausing halves the time to fetch and transpose a 2,000-symbol session.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fetch(conn: Connection, sql: str, params: Sequence[object]) -> list[tuple]:
    """Rows as plain tuples from the DB-API cursor (no Row objects), in the caller's transaction."""
    cursor = conn.connection.cursor()
    try:
        with _gc_paused():
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        cursor.close()


def _bar_frame(rows: Sequence[Sequence[object]]) -> pd.DataFrame:
    """A BAR_COLUMNS frame sorted by ts then symbol, built column-wise from result rows."""
    with _gc_paused():
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(BAR_COLUMNS)
    data = {
        "symbol": np.asarray(columns[0], dtype=object),
        "ts": np.asarray(columns[1], dtype=np.int64),
    }
    for i, name in enumerate(PRICE_COLUMNS, start=2):
        data[name] = np.asarray(columns[i], dtype=np.float64)
    frame = pd.DataFrame(data, columns=list(BAR_COLUMNS))
    return frame.sort_values(["ts", "symbol"], ignore_index=True, kind="stable")
