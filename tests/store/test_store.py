"""The store: migrations, the bulk insert path and the bar repository, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select, text
from sqlmodel import SQLModel

from barkeeper.bench.store import bench_store, run_bar_rows
from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from models.bulk import insert_rows
from models.engine import engine_for
from models.repository import (
    UpsertCounts,
    known_symbols,
    last_bar_ts,
    read_bars,
    read_bars_at,
    record_ingested_file,
    symbols_with_bars,
    upsert_bars,
    write_quarantine,
)
from models.schema import alembic_config, init_db, newest_revision, schema_diff
from models.tables import (
    Bar,
    Gap,
    IngestedFile,
    Run,
    RunBar,
    SessionMetric,
    ValidationResult,
)

HOSTILE = "X'); DROP TABLE bar;--"
COUNT_COLUMNS = [
    c.name for c in SessionMetric.__table__.c if c.name.endswith("_bars") or c.name == "gaps"
]
HEAD_REVISION = ScriptDirectory.from_config(alembic_config()).get_current_head()


def random_bars(symbols: list[str], minutes: int, seed: int = 0, keep: float = 0.7) -> pd.DataFrame:
    """Bars on a random subset of the grid of symbols and minutes, with awkward float values."""
    rng = np.random.default_rng(seed)
    sym, ts = np.meshgrid(np.arange(len(symbols)), 1_688_995_800 + 60 * np.arange(minutes))
    chosen = rng.random(sym.size) < keep
    close = rng.lognormal(3, 1, chosen.sum())
    return pd.DataFrame(
        {
            "symbol": np.asarray(symbols, dtype=object)[sym.ravel()[chosen]],
            "ts": ts.ravel()[chosen],
            "open": close * 0.999,
            "high": close * (1 + rng.random(close.size) / 7),
            "low": close / 3,
            "close": close,
            "volume": rng.integers(0, 10**9, close.size).astype(float),
        }
    )


def test_init_db_twice_is_harmless_and_matches_the_tables(db_url: str) -> None:
    engine = engine_for(db_url)
    upsert_bars(engine, random_bars(["A"], 3), "x")
    init_db(engine)
    init_db(engine)
    assert schema_diff(engine) == []
    assert len(read_bars(engine, ["A"], 0, 2**40)) > 0
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == HEAD_REVISION
        assert set(SQLModel.metadata.tables) <= set(inspect(conn).get_table_names())


def test_the_fast_check_knows_the_newest_migration_as_alembic_does() -> None:
    """init_db skips Alembic when the store is at `newest_revision`: it must be Alembic's head."""
    assert newest_revision() == HEAD_REVISION


def test_a_store_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'old.db'}")
    SQLModel.metadata.create_all(engine)
    upsert_bars(engine, random_bars(["A"], 5), "x")
    init_db(engine)
    assert schema_diff(engine) == []
    assert len(read_bars(engine, ["A"], 0, 2**40)) > 0


TRICKY_TEXT = ["plain", "tab\there", "new\nline", "back\\slash", "quote'\"", "ünï €", "", "\\N"]


def test_bulk_insert_round_trips_exactly(db_url: str) -> None:
    engine = engine_for(db_url)
    n = len(TRICKY_TEXT)
    floats = [0.1 + 0.2, 1e-300, 1.7976931348623157e308, -1.5, 123456.789, 5e-324, 1 / 3, 2.5]
    run = {
        "id": [f"run-{i}" for i in range(n)],
        "flow": TRICKY_TEXT,
        "status": ["done"] * n,
        "parameters": TRICKY_TEXT[::-1],
        "started_at": [datetime(2023, 7, 10, 13, i, 1, 123456, tzinfo=UTC) for i in range(n)],
        "finished_at": [None] * n,
        "error": [""] * n,
        "data_docs": [""] * n,
        "stats": ["{}"] * n,
    }
    assert insert_rows(engine, Run, run) == n
    bars = {
        "run_id": run["id"],
        "symbol": TRICKY_TEXT,
        "interval": list(range(1, n + 1)),
        "ts": [2**40 + i for i in range(n)],
        "session": [date(2023, 7, 10 + i) for i in range(n)],
        **{c: floats for c in PRICE_COLUMNS},
        "provenance": ["feed"] * n,
        "constituents": [1] * n,
        "expected_constituents": [1] * n,
    }
    assert insert_rows(engine, RunBar, pd.DataFrame(bars)) == n
    with engine.connect() as conn:
        got_runs = conn.execute(select(Run).order_by(Run.id)).all()
        got_bars = conn.execute(select(RunBar).order_by(RunBar.run_id)).all()
    assert [r.flow for r in got_runs] == run["flow"]
    assert [r.parameters for r in got_runs] == run["parameters"]
    assert [r.started_at.astimezone(UTC) for r in got_runs] == run["started_at"]
    assert [r.symbol for r in got_bars] == bars["symbol"]
    assert [r.session for r in got_bars] == bars["session"]
    assert [r.ts for r in got_bars] == bars["ts"]
    for c in PRICE_COLUMNS:
        got = [getattr(r, c) for r in got_bars]
        assert [v.hex() for v in got] == [v.hex() for v in floats]  # bit-exact


def test_bulk_insert_conflict_modes(db_url: str) -> None:
    engine = engine_for(db_url)
    rows = {"symbol": ["A", "A"], "interval": [1, 1], "ts": [60, 120], "source": ["s", "s"]}
    rows |= {c: [1.0, 2.0] for c in PRICE_COLUMNS}
    assert insert_rows(engine, Bar, rows) == 2
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        insert_rows(engine, Bar, rows)
    assert insert_rows(engine, Bar, rows, on_conflict="ignore") == 0
    changed = rows | {"close": [1.0, 9.0]}
    assert insert_rows(engine, Bar, changed, on_conflict="update", changed_cols=["close"]) == 1
    assert read_bars(engine, ["A"], 0, 1000, source="s")["close"].tolist() == [1.0, 9.0]


def test_bulk_insert_many_rows_on_both_backends(db_url: str) -> None:
    engine = engine_for(db_url)
    frame = run_bar_rows(20_011, "r1")  # not a multiple of the rows per statement
    insert_rows(engine, Run, {"id": ["r1"], "flow": ["f"], "status": ["done"],
                              "parameters": ["{}"], "started_at": [datetime.now(UTC)],
                              "error": [""], "data_docs": [""], "stats": ["{}"]})  # fmt: skip
    assert insert_rows(engine, RunBar, frame) == len(frame)
    with engine.connect() as conn:
        stored = pd.DataFrame(conn.execute(select(RunBar)).all())
    stored = stored.sort_values(["symbol", "interval", "ts"], ignore_index=True)
    expected = frame.sort_values(["symbol", "interval", "ts"], ignore_index=True)
    for c in ("symbol", "interval", "ts", *PRICE_COLUMNS, "provenance", "constituents"):
        assert stored[c].tolist() == expected[c].tolist(), c


def test_upsert_counts_new_identical_and_corrected(db_url: str) -> None:
    engine = engine_for(db_url)
    bars = random_bars(["A", "B"], 50, seed=1)
    assert upsert_bars(engine, bars, "f1").stored == len(bars)
    assert upsert_bars(engine, bars, "f1") == UpsertCounts(stored=0, skipped=len(bars))
    corrected = bars.copy()
    corrected.loc[corrected.index[:7], "close"] = corrected["close"].iloc[:7] * 1.01
    counts = upsert_bars(engine, corrected, "f2")
    assert (counts.stored, counts.skipped) == (7, len(bars) - 7)
    stored = read_bars(engine, ["A", "B"], 0, 2**40)
    expected = corrected.sort_values(["ts", "symbol"], ignore_index=True)
    assert stored["close"].tolist() == expected["close"].tolist()


def test_read_bars_window_order_and_symbols(db_url: str) -> None:
    engine = engine_for(db_url)
    symbols = ["b", "A", "a", "B", "Z9", HOSTILE]
    bars = random_bars(symbols, 120, seed=2)
    upsert_bars(engine, bars, "f")
    start, end = 1_688_995_800 + 60 * 10, 1_688_995_800 + 60 * 70
    asked = ["a", "B", HOSTILE, "missing"]
    got = read_bars(engine, asked, start, end)
    expected = bars[bars["symbol"].isin(asked) & (bars["ts"] >= start) & (bars["ts"] < end)]
    expected = expected.sort_values(["ts", "symbol"], ignore_index=True)
    assert list(got.columns) == list(BAR_COLUMNS)
    assert got["ts"].dtype == np.int64
    assert got["symbol"].tolist() == expected["symbol"].tolist()
    for c in ("ts", *PRICE_COLUMNS):
        assert got[c].tolist() == expected[c].tolist()
    assert read_bars(engine, [], start, end).empty
    assert read_bars(engine, ["a"], end, start).empty


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), n_keys=st.integers(0, 300))
def test_read_bars_at_returns_exactly_the_asked_minutes(
    sqlite_url: str, seed: int, n_keys: int
) -> None:
    engine = engine_for(sqlite_url)
    bars = random_bars(["A", "B", "C"], 100, seed=0, keep=0.6)
    upsert_bars(engine, bars, "f")
    rng = np.random.default_rng(seed)
    keys = pd.DataFrame(
        {
            "symbol": rng.choice(["A", "B", "C", "D"], n_keys),
            "ts": 1_688_995_800 + 60 * rng.integers(-5, 105, n_keys),
        }
    )
    got = read_bars_at(engine, keys)
    expected = bars.merge(keys.drop_duplicates(), on=["symbol", "ts"])
    expected = expected.sort_values(["ts", "symbol"], ignore_index=True)
    assert got[["symbol", "ts"]].values.tolist() == expected[["symbol", "ts"]].values.tolist()
    assert got["close"].tolist() == expected["close"].tolist()


def test_read_bars_at_many_keys_on_both_backends(db_url: str) -> None:
    engine = engine_for(db_url)
    symbols = [f"S{i:03d}" for i in range(100)]
    bars = random_bars(symbols, 390, seed=3, keep=0.9)
    upsert_bars(engine, bars, "f")
    keys = pd.concat([bars[["symbol", "ts"]].iloc[::2], pd.DataFrame({"symbol": ["S000"] * 5,
                      "ts": np.arange(5) * 60})])  # fmt: skip
    assert len(keys) > 10_000  # more than one SQLite chunk
    got = read_bars_at(engine, keys)
    expected = bars.iloc[::2].sort_values(["ts", "symbol"], ignore_index=True)
    assert got[["symbol", "ts"]].values.tolist() == expected[["symbol", "ts"]].values.tolist()
    assert got["volume"].tolist() == expected["volume"].tolist()


def test_symbols_spans_quarantine_and_records(db_url: str) -> None:
    engine = engine_for(db_url)
    upsert_bars(engine, random_bars(["B", "A", HOSTILE], 30, seed=4, keep=1.0), "f")
    assert known_symbols(engine) == sorted(["A", "B", HOSTILE])
    assert last_bar_ts(engine, HOSTILE) == 1_688_995_800 + 29 * 60
    assert last_bar_ts(engine, "nope") is None
    assert last_bar_ts(engine, HOSTILE, source="vendor") is None
    assert symbols_with_bars(engine, ["A", "nope", HOSTILE, "A"]) == {"A", HOSTILE}
    assert symbols_with_bars(engine, ["A"], source="vendor") == set()
    rows = [{"file": "f.csv", "line": 2, "raw": HOSTILE, "reason": "non_numeric", "symbol": "A"}]
    assert write_quarantine(engine, rows, file="f.csv") == 1
    assert write_quarantine(engine, rows, file="f.csv") == 1
    record_ingested_file(engine, HOSTILE, HOSTILE, read=1, quarantined=1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM quarantine")).scalar() == 1
        assert conn.execute(select(IngestedFile.path)).scalar() == HOSTILE
        assert conn.execute(text("SELECT count(*) FROM bar")).scalar() == 90


def test_bench_store_reports_rows_per_second(tmp_path: Path, postgres_url_or_none) -> None:
    result = bench_store(
        f"sqlite:///{tmp_path / 'b.db'}", postgres_url_or_none, rows=3_000, repeats=1
    )
    assert result["sqlite_rows_per_s"] > 0
    assert ("postgres_rows_per_s" in result) == (postgres_url_or_none is not None)
    engine = engine_for(f"sqlite:///{tmp_path / 'b.db'}")
    with engine.connect() as conn:  # the benchmark cleans up after itself
        assert conn.execute(text("SELECT count(*) FROM run_bar")).scalar() == 0


@pytest.fixture
def postgres_url_or_none(request: pytest.FixtureRequest) -> str | None:
    import os

    if not os.environ.get("BARKEEPER_TEST_POSTGRES_URL"):
        return None
    return request.getfixturevalue("postgres_url")


def test_concurrent_init_db_converges(db_url: str, tmp_path: Path) -> None:
    """Workers starting together on one fresh store all end at the same migrated schema."""
    if db_url.startswith("sqlite"):
        db_url = f"sqlite:///{tmp_path / 'fresh.db'}"  # not yet migrated by the fixture
    else:
        engine_for(db_url).dispose()  # no pooled connection remembers the dropped tables
        with engine_for(db_url).begin() as conn:
            conn.execute(text("DROP TABLE " + ", ".join(SQLModel.metadata.tables) + " CASCADE"))
            conn.execute(text("DROP TABLE alembic_version"))
        engine_for(db_url).dispose()
    script = (
        "import sys; from models.engine import make_engine; from models.schema import init_db;"
        "init_db(make_engine(sys.argv[1]))"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, db_url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [w.communicate(timeout=120)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0] * 3, errors
    assert schema_diff(engine_for(db_url)) == []


def test_bulk_insert_nulls_infinities_booleans_and_big_ints(db_url: str) -> None:
    """NaN/None become NULL, ±inf is kept, 0/1 and bools are booleans, int64 extremes survive."""
    engine = engine_for(db_url)
    insert_rows(engine, Run, {"id": ["r"], "flow": ["f"], "status": ["done"],
                              "parameters": ["{}"], "started_at": [datetime.now(UTC)],
                              "error": [""], "data_docs": [""], "stats": ["{}"]})  # fmt: skip
    text_values = ["\\.", "a\\.\nb", "\r\n", "\\N", "", '"', "x,y", "\t"]
    n = len(text_values)
    metrics = pd.DataFrame(
        {
            "run_id": "r",
            "session": [date(2024, 2, 29)] * n,
            "symbol": text_values,
            "segment": "regular",
            **{c: 2**31 - 1 for c in COUNT_COLUMNS},
            "bar_quality": [np.inf, -np.inf, -1e308, 5e-324, 1e-310, 0.1, 2.0**53 + 2, 1 / 3],
            "validation_success": [True, False, None, True, None, False, True, None],
        }
    )
    assert insert_rows(engine, SessionMetric, metrics) == n
    with pytest.raises(Exception, match=r"(?i)not[- ]null"):  # NaN is a missing value: NULL
        insert_rows(engine, SessionMetric, metrics.head(1).assign(bar_quality=np.nan))
    gaps = {
        "run_id": ["r"] * 3,
        "session": [date(1970, 1, 1), date(2099, 12, 31), date(2000, 1, 1)],
        "symbol": ["a", "b", "c"],
        "start_ts": [-(2**63), 2**63 - 1, 0],
        "end_ts": [0, 0, 0],
        "length": [1, 2, 3],
        "status": ["x", "y", "z"],
        "retries": [0, 0, 0],
    }
    assert insert_rows(engine, Gap, gaps) == 3
    results = {"run_id": ["r"] * 2, "suite": ["s"] * 2, "severity": ["w"] * 2, "success": [1, 0],
               "evaluated": [1, 1], "failed": [0, 1], "failing": ["[]"] * 2, "stage": ["final"] * 2,
               "unexpected_sample": ["[]"] * 2, "created_at": [datetime.now(UTC)] * 2,
               "session": [None, date(2024, 1, 2)]}  # fmt: skip
    assert insert_rows(engine, ValidationResult, results) == 2
    with engine.connect() as conn:
        got = {r.symbol: r for r in conn.execute(select(SessionMetric)).all()}
        got_gaps = conn.execute(select(Gap).order_by(Gap.length)).all()
        got_ok = conn.execute(
            select(ValidationResult.success, ValidationResult.session).order_by(ValidationResult.id)
        ).all()
    assert sorted(got) == sorted(text_values)
    for row in metrics.itertuples():
        stored = got[row.symbol]
        assert stored.session == date(2024, 2, 29)
        assert stored.validation_success is row.validation_success
        assert stored.bar_quality.hex() == row.bar_quality.hex()
        assert stored.unfillable_bars == 2**31 - 1
    assert [(g.session, g.start_ts) for g in got_gaps] == list(
        zip(gaps["session"], gaps["start_ts"], strict=True)
    )
    assert [tuple(r) for r in got_ok] == [(True, None), (False, date(2024, 1, 2))]
