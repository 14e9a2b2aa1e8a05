"""Run bars in the store: fingerprints, old full-copy runs after migration 0003, columnar reads.

Real SQLite files and the real PostgreSQL server. Oracles: hashlib over the rows as written,
the rows inserted by hand as an old release did, and the frame handed to `upsert_bars`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from alembic import command
from conftest import fresh_postgres_database
from sqlalchemy import inspect, text

from barkeeper.core.fingerprint import slice_digests
from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from barkeeper.reports.export import export_bars
from barkeeper.reports.rebuild import run_series
from models.engine import engine_for
from models.repository import read_bars, upsert_bars
from models.schema import alembic_config, init_db, schema_diff

SESSION = date(2023, 7, 10)
OPEN_TS = 1_688_995_800  # 2023-07-10 13:30 UTC


def test_slice_digests_hash_each_symbols_rows_in_time_order() -> None:
    rng = np.random.default_rng(1)
    bars = pd.DataFrame(
        {
            "symbol": ["B", "A", "B", "A", "C"],
            "ts": [120, 60, 60, 0, 5],
            **{c: rng.random(5) * 100 for c in PRICE_COLUMNS},
        }
    )
    got = slice_digests(bars, ["A", "B", "D"]).set_index("symbol")
    for symbol in ("A", "B"):
        mine = bars.loc[bars["symbol"] == symbol].sort_values("ts")
        words = b"".join(
            int(r.ts).to_bytes(8, "little", signed=True)
            + b"".join(np.float64(getattr(r, c)).tobytes() for c in PRICE_COLUMNS)
            for r in mine.itertuples()
        )
        assert got.loc[symbol, "digest"] == hashlib.blake2b(words, digest_size=16).hexdigest()
        assert got.loc[symbol, "bars"] == len(mine)
    assert got.loc["D", "bars"] == 0  # asked for, none read: the empty digest
    assert got.loc["D", "digest"] == hashlib.blake2b(b"", digest_size=16).hexdigest()
    changed = slice_digests(bars.assign(volume=bars["volume"].where(bars.index != 0, 1.0)), "AB")
    assert changed["digest"].tolist() == [got.loc["A", "digest"], changed.loc[1, "digest"]]
    assert changed.loc[1, "digest"] != got.loc["B", "digest"]  # row 0 is B's


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, not migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


def test_a_full_copy_run_of_revision_0002_still_exports_after_the_upgrade(
    unmigrated_url: str,
) -> None:
    engine = engine_for(unmigrated_url)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    full = pd.DataFrame(
        {
            "symbol": "MSFT",
            "interval": [1, 1, 1, 5],
            "ts": [OPEN_TS + 60, OPEN_TS, OPEN_TS + 120, OPEN_TS],
            "open": [1.5, 1.25, 2.0, 1.25],
            "high": [2.0, 1.5, 2.5, 2.5],
            "low": [1.0, 1.0, 1.5, 1.0],
            "close": [1.75, 1.5, 2.25, 2.25],
            "volume": [10.0, 20.0, 30.0, 60.0],
            "provenance": ["feed", "backfill", "feed", "derived"],
            "constituents": [1, 1, 1, 3],
            "expected_constituents": [1, 1, 1, 5],
        }
    )
    with engine.begin() as conn:  # as the release before 0003 wrote them
        conn.execute(
            text(
                "INSERT INTO run (id, flow, status, parameters, started_at, error, data_docs, "
                "stats, host) VALUES ('old', 'replay_sessions', 'completed', '{}', "
                "'2023-07-10 20:00:00', '', '', '{}', '')"
            )
        )
        columns = ", ".join(full.columns)
        values = ", ".join(f":{c}" for c in full.columns)
        conn.execute(
            text(f"INSERT INTO run_bar (run_id, session, {columns}) VALUES ('old', :s, {values})"),
            [{**row, "s": SESSION} for row in full.to_dict("records")],
        )
    init_db(engine)
    assert schema_diff(engine) == []
    key = inspect(engine).get_pk_constraint("run_bar")["constrained_columns"]
    assert key == ["run_id", "session", "symbol", "interval", "ts"]
    one = export_bars(engine, "old", "MSFT", SESSION, 1)
    assert one["timestamp"].tolist() == [
        "2023-07-10T13:30:00Z",
        "2023-07-10T13:31:00Z",
        "2023-07-10T13:32:00Z",
    ]
    assert one["provenance"].tolist() == ["backfill", "feed", "feed"]
    assert one["close"].tolist() == [1.5, 1.75, 2.25]
    five = export_bars(engine, "old", "MSFT", SESSION, 5)
    assert five[list(PRICE_COLUMNS)].to_numpy().tolist() == [[1.25, 2.5, 1.0, 2.25, 60.0]]
    series = run_series(engine, "old")
    assert len(series) == 4 and set(series["session"]) == {SESSION}


def test_read_bars_returns_exactly_the_rows_written_sorted_by_time_then_symbol(
    db_url: str,
) -> None:
    rng = np.random.default_rng(7)
    symbols = ["MSFT", "Ab", "ab", "ünï", "Z9"]
    bars = pd.DataFrame(
        {
            "symbol": np.repeat(symbols, 50),
            "ts": np.tile(OPEN_TS + 60 * np.arange(50), len(symbols)),
            "open": rng.lognormal(3, 2, 250),
            "high": rng.lognormal(3, 2, 250),
            "low": rng.lognormal(3, 2, 250) / 1e9,
            "close": np.full(250, 0.1 + 0.2),
            "volume": rng.integers(0, 2**53, 250).astype(float),
        }
    )
    engine = engine_for(db_url)
    upsert_bars(engine, bars, "test")
    got = read_bars(engine, [*symbols, "NONE"], OPEN_TS + 60, OPEN_TS + 60 * 40)
    want = bars.loc[bars["ts"].between(OPEN_TS + 60, OPEN_TS + 60 * 40 - 1)]
    want = want.sort_values(["ts", "symbol"])  # code-point order, as Python compares str
    assert list(got.columns) == list(BAR_COLUMNS)
    assert got["symbol"].tolist() == want["symbol"].tolist()
    for column in ("ts", *PRICE_COLUMNS):
        assert got[column].to_numpy().tolist() == want[column].to_numpy().tolist()
    assert read_bars(engine, ["NONE"], 0, 2**40).empty
