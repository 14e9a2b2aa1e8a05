"""Store benchmark: how fast a replay's bars (1m + derived) reach the store per backend."""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, delete

from models.bulk import insert_rows
from models.engine import make_engine
from models.schema import init_db
from models.tables import Run, RunBar

SESSION = date(2023, 7, 10)
SESSION_OPEN_TS = int(datetime(2023, 7, 10, 13, 30, tzinfo=UTC).timestamp())
INTERVALS = (1, 5, 15, 30, 60)
SESSION_MINUTES = 390


def run_bar_rows(rows: int, run_id: str, seed: int = 0) -> pd.DataFrame:
    """`rows` realistic run_bar rows: per symbol one session of 1m bars and its 5/15/30/60m bars."""
    rng = np.random.default_rng(seed)
    per_symbol = [(n, -(-SESSION_MINUTES // n)) for n in INTERVALS]
    bars_per_symbol = sum(count for _, count in per_symbol)
    n_symbols = -(-rows // bars_per_symbol)
    symbols = np.array([f"S{i:05d}" for i in range(n_symbols)], dtype=object)
    interval = np.concatenate([np.full(count, n) for n, count in per_symbol])
    offset = np.concatenate([np.arange(count) * n * 60 for n, count in per_symbol])
    constituents = np.minimum(interval, SESSION_MINUTES - offset // 60)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, (n_symbols, bars_per_symbol)), axis=1))
    spread = np.abs(rng.normal(0, 2e-3, close.shape)) * close
    frame = pd.DataFrame(
        {
            "run_id": run_id,
            "symbol": np.repeat(symbols, bars_per_symbol),
            "interval": np.tile(interval, n_symbols),
            "ts": np.tile(SESSION_OPEN_TS + offset, n_symbols),
            "session": SESSION,
            "open": (close * (1 + rng.normal(0, 5e-4, close.shape))).ravel().round(4),
            "high": (close + spread).ravel().round(4),
            "low": (close - spread).ravel().round(4),
            "close": close.ravel().round(4),
            "volume": rng.integers(100, 50_000, close.size).astype(float),
            "provenance": np.where(np.tile(interval, n_symbols) == 1, "feed", "derived"),
            "constituents": np.tile(constituents, n_symbols),
            "expected_constituents": np.tile(constituents, n_symbols),
        }
    )
    return frame.iloc[:rows]


def _rows_per_s(engine: Engine, rows: int, repeats: int) -> float:
    """Median rows/s of writing `rows` run_bar rows under fresh run ids (rows removed after)."""
    init_db(engine)
    rates = []
    for _ in range(repeats):
        run_id = f"bench-{uuid.uuid4().hex[:12]}"
        frame = run_bar_rows(rows, run_id)
        insert_rows(
            engine,
            Run,
            {
                "id": [run_id],
                "flow": ["bench"],
                "status": ["completed"],
                "parameters": ["{}"],
                "started_at": [datetime.now(UTC)],
                "error": [""],
                "data_docs": [""],
                "stats": ["{}"],
            },
        )
        start = time.perf_counter()
        insert_rows(engine, RunBar, frame)
        rates.append(rows / (time.perf_counter() - start))
        with engine.begin() as conn:
            conn.execute(delete(RunBar).where(RunBar.run_id == run_id))
            conn.execute(delete(Run).where(Run.id == run_id))
    return statistics.median(rates)


def bench_store(
    sqlite_url: str | None = None,
    postgres_url: str | None = None,
    rows: int = 780_000,
    repeats: int = 3,
) -> dict[str, float]:
    """Rows per second of bulk-writing a replay's run bars, median of `repeats` runs.

    SQLite writes to `sqlite_url` or to a throw-away file; PostgreSQL is measured only when
    `postgres_url` is given (its schema is migrated, the benchmark's rows are deleted after).
    """
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="barkeeper-bench-") as scratch:
        url = sqlite_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        engine = make_engine(url)
        try:
            result["sqlite_rows_per_s"] = round(_rows_per_s(engine, rows, repeats))
        finally:
            engine.dispose()
    if postgres_url:
        engine = make_engine(postgres_url)
        try:
            result["postgres_rows_per_s"] = round(_rows_per_s(engine, rows, repeats))
        finally:
            engine.dispose()
    return result
