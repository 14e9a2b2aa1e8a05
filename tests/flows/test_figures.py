"""The figures a replay reports mean what `barkeeper.core.vocabulary` says, on one real run.

Oracles: the sample's vendor files read by pandas and exchange_calendars' minutes (which
minutes the sources have, and the runs of minutes they lack), and the audit of the same
session (a replay that lost nothing must report what the audit reports).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

import exchange_calendars as xc
import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_DIR
from sqlalchemy import delete

from barkeeper.core.calendar import Calendar
from barkeeper.core.vocabulary import COUNTS
from barkeeper.params import ReplayParameters
from barkeeper.reports.audit import audit_session, day_window
from barkeeper.reports.rebuild import session_series
from barkeeper.reports.report import failed_expectations, failure_lines, run_report
from models.engine import engine_for
from models.repository import read_bars
from models.results import read_table
from models.tables import Bar, Gap, ValidationResult

SESSION = date(2023, 7, 10)
SYMBOLS = ["MSFT", "DBB", "FXY"]
LOSSY = {"drop_rate": 0.05, "outages": ["10:00-10:20"], "corrupt_rate": 0.01, "seed": 7}


@pytest.fixture
def sample_url(sqlite_url: str, sample_store: Callable[[str], str]) -> str:
    return sample_store(sqlite_url)


def replay(**values) -> dict:
    from helpers import replayed

    return replayed(ReplayParameters(**values))


def vendor_minutes(symbol: str, session: date) -> tuple[np.ndarray, np.ndarray]:
    """The session's regular minutes and, per minute, whether the vendor file has a bar."""
    minutes = xc.get_calendar("XNYS").session_minutes(pd.Timestamp(session)).as_unit("s").asi8
    (path,) = SAMPLE_DIR.glob(f"{symbol}_1min_*.csv")
    stamps = pd.to_datetime(pd.read_csv(path)["timestamp"], utc=True)
    ts = ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy()
    return minutes, np.isin(minutes, ts)


def runs_without(present: np.ndarray) -> int:
    """Runs of consecutive False, counted with pandas."""
    missing = pd.Series(~present)
    return int((missing & ~missing.shift(fill_value=False)).sum())


def test_one_lossy_run_holds_every_count_to_its_definition(harness, sample_url: str) -> None:
    report = replay(symbols=SYMBOLS, start=SESSION, faults=LOSSY)
    engine = engine_for(sample_url)
    assert report["sessions"] == run_report(engine, report["run_id"])["sessions"]
    calendar = Calendar("XNYS")
    minutes = calendar.session_minutes(SESSION)
    bars = read_bars(engine, SYMBOLS, *day_window(calendar, SESSION))
    audit = audit_session(minutes, SYMBOLS, bars, [5]).metrics.set_index("symbol")
    gap_rows = read_table(engine, Gap, report["run_id"])
    for symbol in SYMBOLS:
        m = report["sessions"][0]["symbols"][symbol]
        assert set(COUNTS) <= set(m)
        expected, present = vendor_minutes(symbol, SESSION)
        # what the sources have (the vendor file), and the calendar
        assert m["expected_bars"] == len(expected) == 390
        assert m["source_bars"] == int(present.sum())
        assert m["no_trade_bars"] == int((~present).sum())
        assert m["no_data"] is False
        # the identities of the vocabulary
        assert m["actual_bars"] + m["missing_bars"] == m["expected_bars"]
        assert m["feed_missing_bars"] == m["backfilled_bars"] + m["missing_bars"]
        assert m["missing_bars"] == m["no_trade_bars"] + m["unfillable_bars"]
        assert m["source_bars"] == m["actual_bars"] + m["unfillable_bars"]
        # the two figures
        assert m["bar_quality"] == pytest.approx(100 * m["actual_bars"] / m["expected_bars"])
        assert m["completeness"] == pytest.approx(100 * m["actual_bars"] / m["source_bars"])
        assert m["completeness"] == 100.0  # nothing was lost: every source bar came back
        # runs: in the repository (= what the run ended without) vs in the feed
        assert m["gaps"] == runs_without(present)
        assert m["feed_gap_runs"] == int((gap_rows["symbol"] == symbol).sum())
        assert m["feed_gap_runs"] >= 1  # the outage alone is a run the feed lacked
        # the audit of the same session reports the same figures
        for name in ("expected_bars", "actual_bars", "source_bars", "missing_bars", "gaps"):
            assert m[name] == audit.loc[symbol, name], name
        assert m["bar_quality"] == pytest.approx(audit.loc[symbol, "bar_quality"])
    dbb = report["sessions"][0]["symbols"]["DBB"]
    assert dbb["bar_quality"] < 50 and dbb["completeness"] == 100.0  # illiquid, nothing lost
    # `report` names the symbols of a failed expectation (corrupted bars fail bars_1m checks)
    lines = failure_lines(failed_expectations(engine, report["run_id"]))
    assert lines and any(re.search(r"symbols (DBB|FXY|MSFT)", line) for line in lines)


def test_a_session_without_data_is_no_data_not_no_trade(harness, sample_url: str) -> None:
    """A trading day inside the repository's span with no bar of the symbols at all."""
    empty = date(2023, 7, 12)
    engine = engine_for(sample_url)
    with engine.begin() as connection:  # the test's own store: make 07-12 a day without data
        connection.execute(delete(Bar).where(Bar.ts.between(*day_window(Calendar("XNYS"), empty))))
    report = replay(symbols=["MSFT", "DBB"], start=empty, end=date(2023, 7, 13))
    session = report["sessions"][0]
    assert session["date"] == empty.isoformat()
    for m in session["symbols"].values():
        assert m["no_data"] is True and m["source_bars"] == 0 and m["bar_quality"] == 0.0
        assert m["completeness"] == 100.0  # nothing could be lost
    assert not any(m["no_data"] for m in report["sessions"][1]["symbols"].values())
    results = read_table(engine, ValidationResult, report["run_id"])
    quality = results.loc[
        (results["suite"] == "session_quality")
        & (results["stage"] == "final")
        & (results["session"] == empty)
    ]
    (row,) = quality.itertuples(index=False)
    assert row.severity == "warning" and not row.success and "has_data" in row.failing


def test_honest_fill_forward(harness, sample_url: str) -> None:
    """Synthetic minutes never count as constituents; a bucket of them only is `synthetic`."""
    report = replay(
        symbols=["DBB"], start=SESSION, fill_policy="ffill", faults={"outages": ["10:00-10:20"]}
    )
    bars = session_series(engine_for(sample_url), report["run_id"], SESSION, ["DBB"])
    one, five = bars.loc[bars["interval"] == 1], bars.loc[bars["interval"] == 5]
    real = one.loc[one["provenance"] != "synthetic", "ts"].to_numpy()
    assert one["ts"].max() == real.max()  # never carried past the session's last real bar
    real_per_bucket = pd.Series(real - (real - real.min()) % 300).value_counts()
    for row in five.itertuples(index=False):
        assert row.constituents == real_per_bucket.get(row.ts, 0)
        assert row.provenance == ("derived" if row.constituents else "synthetic")
    assert (five["provenance"] == "synthetic").any()  # DBB has 5-minute buckets without a trade
    m = report["sessions"][0]["symbols"]["DBB"]
    assert m["synthetic_bars"] == int((one["provenance"] == "synthetic").sum()) > 0
    assert m["actual_bars"] == len(real)


def test_ffill_limit_stops_carrying_a_price(harness, sample_url: str) -> None:
    report = replay(symbols=["DBB"], start=SESSION, fill_policy="ffill", ffill_limit=3)
    bars = session_series(engine_for(sample_url), report["run_id"], SESSION, ["DBB"])
    bars = bars.loc[bars["interval"] == 1]
    bars = bars.sort_values("ts")
    real_ts = bars.loc[bars["provenance"] != "synthetic", "ts"]
    last_real = real_ts.reindex(bars.index).ffill()
    carried = (bars["ts"] - last_real) // 60
    synthetic = bars["provenance"] == "synthetic"
    assert synthetic.any() and carried[synthetic].max() == 3
