"""The bar repository: reads and writes of vendor 1-minute bars, quarantine and import records.

Every function takes an engine (its own transaction) or a connection (the caller's, so an
import commits bars, quarantine rows and its record together). Every value is a bound
parameter; table and column names come from the SQLModel tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, delete, func, select, text

from barkeeper.panel import BAR_COLUMNS, PRICE_COLUMNS
from models.bulk import insert_rows, transaction
from models.tables import Bar, IngestedFile, Quarantine

BAR_INTERVAL = 1
QUARANTINE_COLUMNS = ("file", "line", "raw", "reason", "symbol")
SQLITE_KEYS_PER_QUERY = 10_000  # (symbol, ts) pairs per lookup: 20,000 bound parameters
SQLITE_SYMBOLS_PER_QUERY = 20_000

Bind = Engine | Connection


@dataclass(frozen=True)
class UpsertCounts:
    """What `upsert_bars` did: `stored` rows new or changed, `skipped` rows already identical."""

    stored: int
    skipped: int


def upsert_bars(bind: Bind, bars: pd.DataFrame, source: str) -> UpsertCounts:
    """Insert or correct 1-minute bars, keyed on symbol + interval 1 + ts.

    A row identical (OHLCV) to the stored bar is skipped, so re-importing a file changes
    nothing; a row that differs replaces the stored bar (a vendor correction) and counts as
    stored. Within `bars` a key must appear once (the later row wins otherwise).
    """
    if bars.empty:
        return UpsertCounts(0, 0)
    frame = bars.drop_duplicates(["symbol", "ts"], keep="last")
    rows = {
        "symbol": frame["symbol"].astype(str).tolist(),
        "interval": [BAR_INTERVAL] * len(frame),
        "ts": frame["ts"].to_numpy(dtype=np.int64).tolist(),
        **{c: frame[c].to_numpy(dtype=np.float64).tolist() for c in PRICE_COLUMNS},
        "source": [source[:255]] * len(frame),
    }
    stored = insert_rows(
        bind,
        Bar,
        rows,
        on_conflict="update",
        conflict_cols=("symbol", "interval", "ts"),
        changed_cols=PRICE_COLUMNS,
    )
    return UpsertCounts(stored=stored, skipped=len(bars) - stored)


def read_bars(bind: Bind, symbols: Sequence[str], start_ts: int, end_ts: int) -> pd.DataFrame:
    """1-minute bars of `symbols` with start_ts <= ts < end_ts, sorted by ts then symbol."""
    symbols = list(dict.fromkeys(symbols))
    if not symbols or end_ts <= start_ts:
        return _bar_frame([])
    params = {"start_ts": int(start_ts), "end_ts": int(end_ts)}
    with transaction(bind) as conn:
        binary = "C" if conn.dialect.name == "postgresql" else "BINARY"  # code-point order
        stmt = (
            select(Bar.symbol, Bar.ts, *(getattr(Bar, c) for c in PRICE_COLUMNS))
            .where(Bar.interval == BAR_INTERVAL)
            .where(Bar.ts >= bindparam("start_ts"), Bar.ts < bindparam("end_ts"))
            .where(Bar.symbol.in_(bindparam("symbols", expanding=True)))
            .order_by(Bar.ts, Bar.symbol.collate(binary))
        )
        chunk = len(symbols) if conn.dialect.name == "postgresql" else SQLITE_SYMBOLS_PER_QUERY
        rows = []
        for i in range(0, len(symbols), chunk):
            rows += conn.execute(stmt, {**params, "symbols": symbols[i : i + chunk]}).all()
    frame = _bar_frame(rows)
    if len(symbols) > SQLITE_SYMBOLS_PER_QUERY:
        frame = frame.sort_values(["ts", "symbol"], ignore_index=True, kind="stable")
    return frame


def read_bars_at(bind: Bind, keys: pd.DataFrame) -> pd.DataFrame:
    """The stored 1-minute bars at exactly the (symbol, ts) pairs of `keys`, sorted by ts, symbol.

    Pairs with no stored bar are simply absent. One query on PostgreSQL (arrays unnested);
    on SQLite one query per 10,000 pairs.
    """
    if keys.empty:
        return _bar_frame([])
    pairs = keys[["symbol", "ts"]].drop_duplicates()
    symbols = pairs["symbol"].astype(str).tolist()
    stamps = pairs["ts"].to_numpy(dtype=np.int64).tolist()
    price_cols = ", ".join(f"b.{c}" for c in PRICE_COLUMNS)
    rows = []
    with transaction(bind) as conn:
        if conn.dialect.name == "postgresql":
            query = text(
                f"SELECT b.symbol, b.ts, {price_cols} FROM bar AS b "
                "JOIN unnest(CAST(:symbols AS text[]), CAST(:stamps AS bigint[])) AS k(symbol, ts) "
                "ON b.symbol = k.symbol AND b.ts = k.ts WHERE b.interval = :interval"
            )
            params = {"symbols": symbols, "stamps": stamps, "interval": BAR_INTERVAL}
            rows = conn.execute(query, params).all()
        else:
            for i in range(0, len(symbols), SQLITE_KEYS_PER_QUERY):
                part_symbols = symbols[i : i + SQLITE_KEYS_PER_QUERY]
                flat: list[object] = [None] * (2 * len(part_symbols))
                flat[0::2] = part_symbols
                flat[1::2] = stamps[i : i + SQLITE_KEYS_PER_QUERY]
                values = ", ".join(["(?, ?)"] * len(part_symbols))
                sql = (
                    f"SELECT b.symbol, b.ts, {price_cols} FROM (VALUES {values}) AS k "
                    "JOIN bar AS b ON b.symbol = k.column1 AND b.ts = k.column2 "
                    "AND b.interval = ?"
                )
                rows += conn.exec_driver_sql(sql, (*flat, BAR_INTERVAL)).all()
    return _bar_frame(rows).sort_values(["ts", "symbol"], ignore_index=True, kind="stable")


def known_symbols(bind: Bind) -> list[str]:
    """Every symbol with 1-minute bars in the repository, sorted."""
    stmt = select(Bar.symbol).where(Bar.interval == BAR_INTERVAL).distinct().order_by(Bar.symbol)
    with transaction(bind) as conn:
        return list(conn.execute(stmt).scalars())


def symbol_span(bind: Bind, symbol: str) -> tuple[int, int] | None:
    """(first ts, last ts) of `symbol`'s 1-minute bars, or None when it has none."""
    stmt = select(func.min(Bar.ts), func.max(Bar.ts)).where(
        Bar.symbol == symbol, Bar.interval == BAR_INTERVAL
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
        frame = frame[list(QUARANTINE_COLUMNS)].assign(created_at=datetime.now(UTC))
        insert_rows(conn, Quarantine, frame)
    return len(frame)


def read_quarantine(bind: Bind, file: str | None = None) -> pd.DataFrame:
    """Quarantine records (all, or of one file), ordered by file and line."""
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
        status=status,
        reason=reason,
        read=read,
        stored=stored,
        quarantined=quarantined,
        skipped=skipped,
    )
    insert_rows(bind, IngestedFile, {k: [v] for k, v in record.model_dump(exclude={"id"}).items()})


def _bar_frame(rows: Sequence[Sequence[object]]) -> pd.DataFrame:
    """A BAR_COLUMNS frame built column-wise from result rows (int64 ts, float64 prices)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(BAR_COLUMNS)
    data = {
        "symbol": np.asarray(columns[0], dtype=object),
        "ts": np.asarray(columns[1], dtype=np.int64),
    }
    for i, name in enumerate(PRICE_COLUMNS, start=2):
        data[name] = np.asarray(columns[i], dtype=np.float64)
    return pd.DataFrame(data, columns=list(BAR_COLUMNS))
