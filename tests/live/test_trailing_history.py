"""`get_last_n_bars(symbol, n, interval)` returns n bars whenever the repository holds n before
the clock, checked against pandas over the real vendor file and exchange_calendars' schedule.

DBB is illiquid (about 20 % of minutes), so short windows of history hold fewer bars than asked
for; the dates are chosen for the cases a trailing read must cross.
"""

from __future__ import annotations

import asyncio
from datetime import date
from functools import partial
from pathlib import Path

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from barkeeper.core.calendar import Calendar
from barkeeper.core.panel import PRICE_COLUMNS
from barkeeper.ingest.files import ingest_file
from barkeeper.live.replay import Replay, ReplayPlan
from barkeeper.live.session_data import SessionData
from models.engine import engine_for
from models.repository import read_bars
from models.schema import init_db

DBB = "DBB_1min_2023-07-10_to_2025-07-08.csv"


@pytest.fixture(scope="module")
def store(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'store.db'}"
    engine = engine_for(url)
    init_db(engine)
    assert ingest_file(engine, real_dir / DBB).stored > 38_000
    return url


@pytest.fixture(scope="module")
def vendor(real_dir: Path) -> pd.DataFrame:
    """The vendor file as pandas reads it: UTC bar starts in seconds."""
    frame = pd.read_csv(real_dir / DBB)
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    frame["ts"] = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return frame


def oracle(vendor: pd.DataFrame, before: date, n: int, interval: int, drop: date | None = None):
    """The last n bars of regular sessions before `before`, from the schedule and pandas."""
    schedule = xcals.get_calendar("XNYS").schedule.loc["2023-07-10" : str(before)]
    rows = []
    for session, day in schedule.iterrows():
        if session.date() >= before or session.date() == drop:
            continue
        open_ts, close_ts = int(day["open"].timestamp()), int(day["close"].timestamp())
        bars = vendor[(vendor["ts"] >= open_ts) & (vendor["ts"] < close_ts)].copy()
        if interval > 1:
            bars["bucket"] = open_ts + (bars["ts"] - open_ts) // (60 * interval) * 60 * interval
            bars = bars.groupby("bucket").agg(
                open=("open", "first"),
                high=("high", "max"),
                low=("low", "min"),
                close=("close", "last"),
                volume=("volume", "sum"),
            )
            bars = bars.reset_index().rename(columns={"bucket": "ts"})
        rows.append(bars[["ts", *PRICE_COLUMNS]])
    return pd.concat(rows, ignore_index=True).tail(n).reset_index(drop=True)


def at_open(url: str, session: date, trailing_days: int) -> SessionData:
    """session_data as a replay has it at the open of `session`: history loaded, no bar yet."""
    plan = ReplayPlan(
        run_id="history",
        database_url=url,
        symbols=("DBB",),
        sessions=(session,),
        trailing_days=trailing_days,
    )
    data = SessionData(history_sessions=trailing_days)
    replay = Replay(plan, data, Calendar("XNYS"), partial(read_bars, engine_for(url)))
    replay.load_history(session)
    loaded = replay.load(session)
    data.start_session(loaded.minutes, plan.symbols, loaded.layouts)
    return data


@pytest.mark.parametrize(
    ("session", "trailing_days", "n", "interval"),
    [
        # After Thanksgiving (holiday 11-23) and the 11-24 early close (13:00), with one day of
        # history: ten hourly bars reach back over both, and over the DST change of 11-05.
        (date(2023, 11, 27), 1, 10, 60),
        (date(2023, 11, 27), 0, 40, 5),
        # The first session after the spring DST change (2024-03-10): 1m bars across it.
        (date(2024, 3, 11), 2, 500, 1),
        # After the 2024-07-03 early close and the 07-04 holiday.
        (date(2024, 7, 5), 3, 25, 30),
    ],
)
def test_last_n_bars_reads_past_the_history_to_match_pandas(
    store: str, vendor: pd.DataFrame, session: date, trailing_days: int, n: int, interval: int
) -> None:
    data = at_open(store, session, trailing_days)
    got = asyncio.run(data.get_last_n_bars("DBB", n, interval=interval))
    want = oracle(vendor, session, n, interval)
    assert len(got) == n == len(want)
    np.testing.assert_array_equal(got["ts"].to_numpy(), want["ts"].to_numpy())
    for column in PRICE_COLUMNS:
        np.testing.assert_allclose(got[column].to_numpy(), want[column].to_numpy(), rtol=1e-12)


def test_an_empty_prior_session_does_not_shorten_the_read(
    store: str, vendor: pd.DataFrame, tmp_path: Path
) -> None:
    """LEAN #5032's case ("INDA", 10, 60 at the open): the session before holds no bar."""
    copy = tmp_path / "empty.db"
    copy.write_bytes(Path(store.removeprefix("sqlite:///")).read_bytes())
    url = f"sqlite:///{copy}"
    session, empty = date(2024, 6, 4), date(2024, 6, 3)
    day = xcals.get_calendar("XNYS").schedule.loc[str(empty)]
    with engine_for(url).begin() as conn:
        deleted = conn.execute(
            text("DELETE FROM bar WHERE symbol = 'DBB' AND ts >= :a AND ts < :b"),
            {"a": int(day["open"].timestamp()), "b": int(day["close"].timestamp())},
        ).rowcount
    assert deleted > 0  # the session had bars; now the repository has none for it
    data = at_open(url, session, trailing_days=1)
    assert data.history == (empty,)
    got = data.last_n_bars("DBB", 10, interval=60)
    want = oracle(vendor, session, 10, 60, drop=empty)
    assert len(got) == 10
    np.testing.assert_array_equal(got["ts"].to_numpy(), want["ts"].to_numpy())
    np.testing.assert_allclose(got["close"].to_numpy(), want["close"].to_numpy())


def test_a_symbol_without_bars_returns_what_exists_after_a_bounded_read(store: str) -> None:
    """n larger than everything before the clock: every bar there is, not an endless read."""
    data = at_open(store, date(2023, 7, 12), trailing_days=0)
    got = data.last_n_bars("DBB", 10_000, interval=1)
    assert 0 < len(got) < 10_000
    assert got["ts"].is_monotonic_increasing
