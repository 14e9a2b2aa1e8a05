"""The Dask fan-out of a date range gives the sequential replay's exports and metrics.

Oracle: `replay_sessions` over the same range and lossy feed, run sequentially in this process;
the fan-out runs a block of contiguous sessions per worker, as a run of its own, in a local Dask
cluster of two worker processes, writing to the same store (PostgreSQL when a server is
configured, else SQLite).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date

import pandas as pd
import pytest
from conftest import SAMPLE_DIR
from helpers import lossy_faults

from barkeeper.params import ReplayParameters
from barkeeper.reports.export import export_bars
from barkeeper.reports.report import run_report
from models.engine import engine_for

SAMPLE = SAMPLE_DIR
SYMBOLS = ["MSFT", "DBB", "FXY"]
START, END = date(2023, 7, 10), date(2023, 7, 12)
INTERVALS = (1, 5, 15, 30, 60)
LOSSY = lossy_faults(seed=5)


@pytest.fixture
def store_url(request: pytest.FixtureRequest) -> str:
    """PostgreSQL when a server is configured (the shared store of real use), else SQLite."""
    name = "postgres_url" if os.environ.get("BARKEEPER_TEST_POSTGRES_URL") else "sqlite_url"
    return request.getfixturevalue(name)


@pytest.fixture
def sample_url(
    store_url: str, sample_store: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> str:
    # set before the cluster starts: its worker processes inherit the environment
    monkeypatch.delenv("BARKEEPER_DASK_ADDRESS", raising=False)
    return sample_store(store_url)


def exports(engine, run_of: dict[str, str]) -> dict[tuple, pd.DataFrame]:
    """Every symbol's exported bars per session and interval, from the run that replayed it."""
    return {
        (session, symbol, n): export_bars(engine, run_id, symbol, date.fromisoformat(session), n)
        for session, run_id in run_of.items()
        for symbol in SYMBOLS
        for n in INTERVALS
    }


def test_fanout_matches_the_sequential_replay(harness: None, sample_url: str) -> None:
    from flows.fanout import replay_fanout
    from flows.replay import replay_sessions

    params = ReplayParameters(symbols=SYMBOLS, start=START, end=END, faults=LOSSY)
    engine = engine_for(sample_url)
    sequential = replay_sessions(params)
    fanned = replay_fanout(params, workers=2)

    dates = ["2023-07-10", "2023-07-11", "2023-07-12"]
    assert [s["date"] for s in fanned["sessions"]] == dates
    # two blocks, [07-10, 07-11] and [07-12]: the second day's history carried over in-process
    assert len(set(fanned["run_ids"])) == 2 and sequential["run_id"] not in fanned["run_ids"]
    fan_run = {s["date"]: s["run_id"] for s in fanned["sessions"]}
    assert fan_run["2023-07-10"] == fan_run["2023-07-11"] != fan_run["2023-07-12"]

    seq_exports = exports(engine, dict.fromkeys(dates, sequential["run_id"]))
    fan_exports = exports(engine, fan_run)
    assert seq_exports.keys() == fan_exports.keys()
    for key, frame in seq_exports.items():
        assert len(frame) > 0, key
        pd.testing.assert_frame_equal(fan_exports[key], frame, obj=str(key))

    seq_report = run_report(engine, sequential["run_id"])
    assert [s["date"] for s in seq_report["sessions"]] == dates
    for session in seq_report["sessions"]:
        fan_report = run_report(engine, fan_run[session["date"]])
        fan_session = {s["date"]: s for s in fan_report["sessions"]}[session["date"]]
        assert fan_session["symbols"] == session["symbols"]
        # the lossy feed really was repaired, so equality is not between two empty results
        figures = session["symbols"].values()
        assert sum(f["backfilled_bars"] for f in figures) > 0
        assert sum(f["repaired_bars"] for f in figures) > 0


def test_blocks_are_contiguous_near_equal_and_cover_every_session() -> None:
    from flows.fanout import session_blocks

    sessions = [date(2024, 3, d) for d in (4, 5, 6, 7, 8, 11, 12)]
    assert session_blocks(sessions, 3) == [sessions[:3], sessions[3:5], sessions[5:]]
    assert session_blocks(sessions[:2], 4) == [[sessions[0]], [sessions[1]]]
