"""The bar repository: reads and writes of vendor 1-minute bars, quarantine and import records.

Writes take an engine (their own transaction) or a connection (the caller's, so an import
commits bars, quarantine rows and its record together); `read_bars` takes an engine. Every
value is a bound parameter; table and column names come from the SQLModel tables.
"""

from __future__ import annotations

import gc
import io
import json
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import Connection, Engine, delete, select, text

from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from barkeeper.settings import load_settings
from models.bulk import insert_rows, transaction
from models.reader import CHILD_ROWS, columns_table, read_in_child
from models.tables import DEFAULT_SOURCE, Bar, IngestedFile, Quarantine, nanos, utcnow

BAR_INTERVAL = 1
QUARANTINE_COLUMNS = ("file", "line", "raw", "reason", "symbol", "source")
SQLITE_KEYS_PER_QUERY = 10_000  # (symbol, ts) pairs per lookup, at most
BAR_SELECT = ", ".join(BAR_COLUMNS)
_BAR_SCHEMA = pa.schema(
    [("symbol", pa.string()), ("ts", pa.int64())] + [(c, pa.float64()) for c in PRICE_COLUMNS]
)
_EMPTY_BARS = _BAR_SCHEMA.empty_table()

Bind = Engine | Connection


@dataclass(frozen=True)
class UpsertCounts:
    """What `upsert_bars` did: `stored` rows new or changed, `skipped` rows already identical."""

    stored: int
    skipped: int


def upsert_bars(
    bind: Bind,
    bars: pd.DataFrame,
    origin: str,
    source: str = DEFAULT_SOURCE,
    stored_at: int | None = None,
) -> UpsertCounts:
    """Insert or correct 1-minute bars of `source`, keyed on symbol + interval 1 + ts + source.

    A row identical (OHLCV) to the stored bar is skipped, so re-importing a file changes
    nothing; a row that differs replaces the stored bar (a vendor correction) and counts as
    stored. Within `bars` a key must appear once (the later row wins otherwise). `origin`
    says what delivered the bars (a file name); `stored_at` (epoch ns, default now) is when,
    written on every new or changed bar.
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
        "stored_at": [nanos(utcnow()) if stored_at is None else stored_at] * len(frame),
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
    engine: Engine, symbols: Sequence[str], start_ts: int, end_ts: int, source: str = DEFAULT_SOURCE
) -> pd.DataFrame:
    """1-minute bars of `source` for `symbols` with start_ts <= ts < end_ts, sorted by ts, symbol.

    PostgreSQL: `COPY (SELECT ...) TO STDOUT` parsed by Arrow's CSV reader in C++ (floats
    print in their shortest exact form). SQLite: one query (symbols as one JSON parameter),
    its tuples made into Arrow columns by the reading helper when large (models/reader.py;
    ADBC would link a second SQLite, which breaks the first one's file locks). The sort is
    on integer keys (symbols ranked once per name), never a string comparison per row.
    """
    symbols = list(dict.fromkeys(symbols))
    if not symbols or end_ts <= start_ts:
        return _bar_frame(_EMPTY_BARS)
    window = (BAR_INTERVAL, int(start_ts), int(end_ts), source)
    where = "interval = {p} AND ts >= {p} AND ts < {p} AND source = {p}"
    if engine.dialect.name == "postgresql":
        sql = f"COPY (SELECT {BAR_SELECT} FROM bar WHERE {where} AND symbol = ANY({{p}})) TO STDOUT"
        return _bar_frame(
            _copy_out(engine, sql.format(p="%s") + " (FORMAT csv)", (*window, symbols))
        )
    sql = (
        f"SELECT {BAR_SELECT} FROM bar WHERE {where} AND symbol IN (SELECT value FROM json_each(?))"
    ).format(p="?")
    params = (*window, json.dumps(symbols))
    expected_rows = len(symbols) * (int(end_ts) - int(start_ts)) // 60
    if expected_rows >= CHILD_ROWS and _plain_file(engine):
        timeout_s = load_settings().store_busy_timeout_seconds
        table = read_in_child(engine.url.database, timeout_s, sql, params, _BAR_SCHEMA)
        if table is not None:
            return _bar_frame(table)
    with engine.connect() as conn:
        return _bar_frame(_rows_table(_fetch(conn, sql, params)))


def _plain_file(engine: Engine) -> bool:
    """A SQLite file another process can open by its path (not in memory, not a URI)."""
    database = engine.url.database or ""
    return database not in ("", ":memory:") and "uri" not in engine.url.query


def read_bars_at(bind: Bind, keys: pd.DataFrame, source: str = DEFAULT_SOURCE) -> pd.DataFrame:
    """`source`'s 1-minute bars at exactly the (symbol, ts) pairs of `keys`, sorted by ts, symbol.

    Pairs with no stored bar are simply absent. One query on PostgreSQL (arrays unnested);
    on SQLite one query per 10,000 pairs (fewer on builds with a low parameter limit).
    """
    if keys.empty:
        return _bar_frame(_EMPTY_BARS)
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
    return _bar_frame(_rows_table(rows))


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


def symbols_with_bars(bind: Bind, symbols: Sequence[str], source: str = DEFAULT_SOURCE) -> set[str]:
    """Those of `symbols` with a 1-minute bar of `source`.

    An index seek per symbol (EXISTS on the key's symbol and interval), never a scan of the
    repository: a replay's checks cost the same over a 40 GB store as over a sample.
    """
    names = list(dict.fromkeys(symbols))
    if not names:
        return set()
    has_bar = (
        "EXISTS (SELECT 1 FROM bar WHERE bar.symbol = {name} "
        "AND bar.interval = 1 AND bar.source = :source)"
    )
    with transaction(bind) as conn:
        if conn.dialect.name == "postgresql":
            wanted, name, values = "unnest(CAST(:names AS text[])) AS s", "s", names
        else:
            wanted, name, values = "json_each(:names)", "value", json.dumps(names)
        sql = f"SELECT {name} FROM {wanted} WHERE {has_bar.format(name=name)}"
        return set(conn.execute(text(sql), {"names": values, "source": source}).scalars())


def last_bar_ts(bind: Bind, symbol: str, source: str = DEFAULT_SOURCE) -> int | None:
    """The ts of `symbol`'s last 1-minute bar of `source` (None when it has none): the key's
    index read backwards from the symbol's end, not a scan of its bars."""
    stmt = (
        select(Bar.ts)
        .where(Bar.symbol == symbol, Bar.interval == BAR_INTERVAL, Bar.source == source)
        .order_by(Bar.ts.desc())
        .limit(1)
    )
    with transaction(bind) as conn:
        last = conn.execute(stmt).scalar()
    return None if last is None else int(last)


def write_quarantine(
    bind: Bind, rows: pd.DataFrame | Iterable[dict], *, file: str = "", content_hash: str = ""
) -> int:
    """Store rejected rows (columns file, line, raw, reason, symbol; optional ts); how many.

    With `file`, the earlier records of the same delivery (that file with the same content
    hash) are replaced, so re-importing a file leaves one record per bad row, not one per
    import; a new delivery under the same name keeps the earlier delivery's records.
    """
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    with transaction(bind) as conn:
        if file:
            conn.execute(
                delete(Quarantine).where(
                    Quarantine.file == file, Quarantine.content_hash == content_hash
                )
            )
        if frame.empty:
            return 0
        if "source" not in frame.columns:
            frame = frame.assign(source=DEFAULT_SOURCE)
        keep = [*QUARANTINE_COLUMNS, *(["ts"] if "ts" in frame.columns else [])]
        frame = frame[keep].assign(created_at=datetime.now(UTC), content_hash=content_hash)
        if "ts" in frame.columns:
            stamps = frame["ts"].astype("Int64")
            frame["ts"] = stamps.where(stamps != np.iinfo(np.int64).min)
        insert_rows(conn, Quarantine, frame)
    return len(frame)


def quarantined_minutes(
    bind: Bind, symbols: Sequence[str], start_ts: int, end_ts: int, source: str = DEFAULT_SOURCE
) -> dict[str, np.ndarray]:
    """Per symbol, the minutes in [start_ts, end_ts) with quarantined rows of `source` and no
    stored bar of it.

    Such a minute was delivered but none of its rows could be kept: a gap there is
    `quarantined`, not `no_trade`.
    """
    stored = select(Bar.ts).where(
        Bar.symbol == Quarantine.symbol,
        Bar.interval == BAR_INTERVAL,
        Bar.ts == Quarantine.ts,
        Bar.source == Quarantine.source,
    )
    query = (
        select(Quarantine.symbol, Quarantine.ts)
        .where(
            Quarantine.symbol.in_(list(symbols)),
            Quarantine.source == source,
            Quarantine.ts >= start_ts,
            Quarantine.ts < end_ts,
            ~stored.exists(),
        )
        .distinct()
    )
    with transaction(bind) as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["symbol", "ts"])
    return {
        str(symbol): np.sort(group["ts"].to_numpy(np.int64))
        for symbol, group in frame.groupby("symbol")
    }


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
    revised: int = 0,
    status: str = "done",
    reason: str = "",
    content_hash: str = "",
    format: str = "",
) -> None:
    """Record one import of one file, a delivery (status `done`, or `rejected` with the
    reason): every import is a record of its own, with the hash of the bytes it read."""
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
        revised=revised,
        content_hash=content_hash,
        format=format[:255],
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


def _copy_out(engine: Engine, sql: str, params: Sequence[object]) -> pa.Table:
    """`COPY ... TO STDOUT (FORMAT csv)` into Arrow, parsed in C++ with the bar schema."""
    sink = io.BytesIO()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(sql, params) as copy:
            for block in copy:
                sink.write(block)
        conn.rollback()
    if not sink.tell():
        return _EMPTY_BARS
    sink.seek(0)
    return pa_csv.read_csv(
        sink,
        read_options=pa_csv.ReadOptions(column_names=list(BAR_COLUMNS)),
        convert_options=pa_csv.ConvertOptions(column_types=_BAR_SCHEMA),
    )


def _rows_table(rows: Sequence[Sequence[object]]) -> pa.Table:
    """DB-API result rows as an Arrow table of the bar schema (transposed with the GC paused)."""
    with _gc_paused():
        return columns_table(rows, _BAR_SCHEMA)


def _bar_frame(table: pa.Table) -> pd.DataFrame:
    """A BAR_COLUMNS frame sorted by ts then symbol, sorted on integer keys.

    Symbols are ranked once per distinct name (code-point order), so the sort never compares
    strings row by row (that alone cost more than the read).
    """
    symbols = table.column("symbol").combine_chunks().dictionary_encode()
    names = symbols.dictionary.to_numpy(zero_copy_only=False)
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(names, kind="stable")] = np.arange(len(names))
    codes = rank[symbols.indices.to_numpy(zero_copy_only=False)]
    order = np.lexsort((codes, table.column("ts").to_numpy()))
    return table.take(order).to_pandas()
