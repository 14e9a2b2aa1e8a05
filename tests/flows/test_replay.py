"""The replay flow end to end: real Prefect (test harness), real SQLite store, real sample bars.

Oracles: the repository's own bars (what a clean feed would have sent), exchange_calendars'
minutes, and pandas `resample` over the repository's bars for derived bars.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import exchange_calendars as xc
import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_DIR
from helpers import lossy_faults

from barkeeper.core.panel import utc_to_ts
from barkeeper.params import ReplayParameters
from barkeeper.reports.export import export_bars
from barkeeper.reports.report import run_report
from models.engine import engine_for
from models.repository import read_bars
from models.results import read_table
from models.tables import ValidationResult

SAMPLE = SAMPLE_DIR
SESSION = date(2023, 7, 10)
SYMBOLS = ["MSFT", "DBB", "FXY"]
LOSSY = lossy_faults(seed=11)


@pytest.fixture
def sample_url(sqlite_url: str, sample_store: Callable[[str], str]) -> str:
    return sample_store(sqlite_url)


def replay(**overrides) -> dict:
    from helpers import replayed

    values = {"symbols": SYMBOLS, "start": SESSION, "faults": LOSSY, **overrides}
    return replayed(ReplayParameters(**values))


def regular_minutes(session: date) -> np.ndarray:
    cal = xc.get_calendar("XNYS")
    minutes = cal.session_minutes(pd.Timestamp(session))
    return minutes.as_unit("s").asi8


def repository_session(url: str, session: date) -> pd.DataFrame:
    minutes = regular_minutes(session)
    bars = read_bars(engine_for(url), SYMBOLS, int(minutes[0]), int(minutes[-1]) + 60)
    return bars.loc[bars["ts"].isin(minutes)]


def test_lossy_replay_ends_with_the_repository_bars(harness, sample_url: str) -> None:
    report = replay()
    engine = engine_for(sample_url)
    truth = repository_session(sample_url, SESSION)
    minutes = regular_minutes(SESSION)
    session = report["sessions"][0]
    assert session["date"] == str(SESSION)
    for symbol in SYMBOLS:
        exported = export_bars(engine, report["run_id"], symbol, SESSION, 1)
        expected = truth.loc[truth["symbol"] == symbol].sort_values("ts")
        got = exported.assign(ts=utc_to_ts(pd.to_datetime(exported["timestamp"], utc=True)))
        got = got.loc[got["ts"].isin(minutes)]
        assert got["ts"].tolist() == expected["ts"].tolist()
        for column in ("open", "high", "low", "close", "volume"):
            np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy())
        figures = session["symbols"][symbol]
        coverage = 100.0 * len(expected) / len(minutes)
        assert figures["bar_quality"] == pytest.approx(coverage)
        assert figures["expected_bars"] == 390
        assert figures["actual_bars"] == len(expected)
        # what the repository lacks is a no-trade minute, never a backfill
        assert figures["no_trade_bars"] == 390 - len(expected)
        assert figures["unfillable_bars"] == 0
        assert figures["backfilled_bars"] > 0
    repaired = sum(s["repaired_bars"] for s in session["symbols"].values())
    assert repaired > 0
    assert all(s["validation_success"] for s in session["symbols"].values())
    # the corrupted bars show as critical failures of the cycle validation, then pass at the end
    results = read_table(engine, ValidationResult, report["run_id"])
    critical = results.loc[(results["suite"] == "bars_1m") & (results["severity"] == "critical")]
    cycle = critical.loc[critical["stage"] == "cycle"]
    assert not cycle["success"].all()
    final = critical.loc[critical["stage"] == "final"]
    assert len(final) == 1 and final["success"].all()
    # Data Docs hold both: the session's final validation and the rejected bars as delivered
    docs = Path(report["data_docs"]).parents[4]  # <docs>/validations/<suite>/<run>/<time>
    for run_name in (f"{report['run_id']}__{SESSION}", f"{report['run_id']}__{SESSION}_rejected"):
        assert list(docs.glob(f"validations/bars_1m/{run_name}/*/*.html")), run_name


def test_derived_bars_equal_pandas_resample_of_the_repository(harness, sample_url: str) -> None:
    report = replay()
    engine = engine_for(sample_url)
    truth = repository_session(sample_url, SESSION)
    open_ts = pd.Timestamp(int(regular_minutes(SESSION)[0]), unit="s", tz="UTC")
    for interval in (5, 15, 30, 60):
        for symbol in SYMBOLS:
            bars = truth.loc[truth["symbol"] == symbol].copy()
            bars.index = pd.to_datetime(bars["ts"], unit="s", utc=True)
            oracle = bars.resample(f"{interval}min", origin=open_ts, label="left", closed="left")
            oracle = oracle.agg(
                {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
            ).dropna(subset=["open"])
            got = export_bars(engine, report["run_id"], symbol, SESSION, interval)
            assert len(got) == len(oracle), (symbol, interval)
            for column in ("open", "high", "low", "close", "volume"):
                np.testing.assert_allclose(got[column].to_numpy(), oracle[column].to_numpy())


def _exports(url: str, run_id: str) -> str:
    engine = engine_for(url)
    return "".join(
        export_bars(engine, run_id, symbol, SESSION, interval).to_csv(index=False)
        for symbol in SYMBOLS
        for interval in (1, 5, 15)
    )


def test_end_state_does_not_depend_on_pacing_or_interval(harness, sample_url: str) -> None:
    runs = [
        replay(speed="max", interval_seconds=60),
        replay(speed="max", interval_seconds=900),
        replay(speed="1000x", interval_seconds=60),
    ]
    exports = {_exports(sample_url, r["run_id"]) for r in runs}
    assert len(exports) == 1
    metrics = {str(r["sessions"][0]["symbols"]) for r in runs}
    assert len(metrics) == 1


def test_the_flow_returns_a_summary_and_the_report_reads_the_figures_back(
    harness, sample_url: str
) -> None:
    """Prefect walks a flow's return value object by object: the figures stay in the store."""
    from flows.replay import replay_sessions

    summary = replay_sessions(ReplayParameters(symbols=SYMBOLS, start=SESSION, faults=LOSSY))
    assert set(summary) == {"run_id", "status", "data_docs", "timings"}
    stored = run_report(engine_for(sample_url), summary["run_id"])
    assert stored["status"] == summary["status"] == "completed"
    assert stored["data_docs"] == summary["data_docs"] != ""
    replayed = [t["session"] for t in summary["timings"]["sessions"]]
    assert [s["date"] for s in stored["sessions"]] == replayed == [str(SESSION)]
    assert sorted(stored["sessions"][0]["symbols"]) == sorted(SYMBOLS)


@pytest.mark.timeout(120)
def test_an_upkeep_that_never_starts_fails_the_run_instead_of_hanging_it(
    harness, sample_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen on a busy machine: the API refused the upkeep subflow before its body ran, and the
    stream thread waited an hour for sessions nobody would settle."""
    import flows.replay

    def refused(run_id: str) -> None:
        raise RuntimeError("the API refused the subflow")

    monkeypatch.setattr(flows.replay, "data_upkeep", refused)
    with pytest.raises(RuntimeError, match="refused the subflow"):
        flows.replay.replay_sessions(ReplayParameters(symbols=SYMBOLS, start=SESSION))
    from models.results import resolve_run

    assert resolve_run(engine_for(sample_url), None).status == "failed"
