"""Extended hours on the real MSFT file, which holds pre-market and after-hours bars.

Oracle: the vendor CSV read with pandas, segment bounds from exchange_calendars' open and close
plus the exchange-local clock (pre-market 04:00 to the open, post-market the close plus four
hours), and pandas `resample` anchored at each segment's open. barkeeper's own calendar module
is not used here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import exchange_calendars as xc
import numpy as np
import pandas as pd
import pytest
from helpers import session_ohlcv

from barkeeper.core.panel import PRICE_COLUMNS, utc_to_ts
from barkeeper.ingest.files import ingest_file
from barkeeper.params import ReplayParameters
from barkeeper.reports.rebuild import run_series
from models.engine import engine_for
from models.repository import upsert_bars
from models.results import read_table
from models.schema import init_db
from models.tables import SessionMetric

MSFT_FILE = "MSFT_1min_2023-07-10_to_2023-07-13.csv"
START, END = date(2023, 7, 10), date(2023, 7, 13)
DERIVED = [5, 15, 30, 60, 90]  # 60 and 90 leave a short last bucket in the 330-minute pre-market
XNYS = xc.get_calendar("XNYS")
NEW_YORK = "America/New_York"
OHLCV = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
# Two stray vendor rows outside every segment of 2023-07-11 (03:30 and 20:30 New York time):
# the replay must count them as outside bars, not drop them unseen.
STRAY = [datetime(2023, 7, 11, 3, 30), datetime(2023, 7, 11, 20, 30)]


def stray_rows() -> pd.DataFrame:
    stamps = pd.Series(pd.DatetimeIndex(STRAY).tz_localize(NEW_YORK))
    return pd.DataFrame(
        {
            "symbol": "MSFT",
            "ts": utc_to_ts(stamps),
            **{c: [330.0, 330.0] for c in ("open", "high", "low", "close")},
            "volume": [100.0, 100.0],
        }
    )


def csv_bars(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    stamps = pd.to_datetime(raw["timestamp"]).dt.tz_localize("UTC")
    return raw.assign(ts=utc_to_ts(stamps)).loc[:, ["ts", *PRICE_COLUMNS]]


def segments(session: date) -> dict[str, tuple[int, int]]:
    """[start, end) in Unix seconds of each segment of `session`."""
    opens = int(XNYS.session_open(pd.Timestamp(session)).timestamp())
    closes = int(XNYS.session_close(pd.Timestamp(session)).timestamp())
    pre = int(pd.Timestamp(datetime.combine(session, time(4, 0)), tz=NEW_YORK).timestamp())
    return {
        "pre": (pre, opens),
        "regular": (opens, closes),
        "post": (closes, closes + int(timedelta(hours=4).total_seconds())),
    }


def resample(bars: pd.DataFrame, interval: int, start: int, end: int) -> pd.DataFrame:
    frame = bars.set_index(pd.to_datetime(bars["ts"], unit="s", utc=True))
    origin = pd.Timestamp(start, unit="s", tz="UTC")
    out = frame.resample(f"{interval}min", origin=origin, label="left", closed="left")
    out = out.agg({**OHLCV, "ts": "count"}).rename(columns={"ts": "constituents"})
    out = out.loc[out["constituents"] > 0]
    out = out.assign(ts=utc_to_ts(out.index.to_series())).reset_index(drop=True)
    return out.assign(expected=(np.minimum(out["ts"] + interval * 60, end) - out["ts"]) // 60)


@pytest.fixture(scope="module")
def store(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("extended")
    url = f"sqlite:///{tmp / 'barkeeper.db'}"
    engine = engine_for(url)
    init_db(engine)
    ingest_file(engine, real_dir / MSFT_FILE)
    upsert_bars(engine, stray_rows(), origin="stray")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BARKEEPER_DATABASE_URL", url)
        patch.setenv("BARKEEPER_REPORTS_DIR", str(tmp / "reports"))
        yield url


@pytest.fixture(scope="module")
def report(harness: None, store: str) -> dict[str, Any]:
    from helpers import replayed

    params = ReplayParameters(
        symbols=["MSFT"],
        start=START,
        end=END,
        extended_hours=True,
        derived=DERIVED,
        validation_interval_seconds=86_400,
    )
    return replayed(params)


@pytest.fixture(scope="module")
def vendor(real_dir: Path) -> pd.DataFrame:
    bars = csv_bars(real_dir / MSFT_FILE)
    assert len(bars) == 2644
    return bars


def test_each_segment_has_its_own_expected_minutes_and_quality(
    report: dict[str, Any], store: str, vendor: pd.DataFrame
) -> None:
    metrics = read_table(engine_for(store), SessionMetric, report["run_id"])
    sessions = [s.date() for s in XNYS.sessions_in_range(pd.Timestamp(START), pd.Timestamp(END))]
    assert [s["date"] for s in report["sessions"]] == [str(s) for s in sessions]
    for entry, session in zip(report["sessions"], sessions, strict=True):
        msft = entry["symbols"]["MSFT"]
        figures = {"regular": msft, **msft["segments"]}
        assert set(figures) == {"pre", "regular", "post"}
        assert set(metrics.loc[metrics["session"] == session, "segment"]) == set(figures)
        bounds = segments(session)
        for name, (start, end) in bounds.items():
            inside = vendor["ts"].between(start, end - 1)
            expected = (end - start) // 60
            assert figures[name]["expected_bars"] == expected, (session, name)
            assert figures[name]["actual_bars"] == int(inside.sum()), (session, name)
            quality = 100.0 * inside.sum() / expected
            assert figures[name]["bar_quality"] == pytest.approx(quality), (session, name)
        # Every vendor row of the local day inside no segment is an outside bar.
        day = pd.Timestamp(session).tz_localize(NEW_YORK)
        lo, hi = int(day.timestamp()), int((day + timedelta(days=1)).timestamp())
        rows = pd.concat([vendor["ts"], stray_rows()["ts"]])
        rows = rows.loc[rows.between(lo, hi - 1)]
        covered = np.zeros(len(rows), dtype=bool)
        for start, end in bounds.values():
            covered |= rows.between(start, end - 1).to_numpy()
        assert msft["outside_bars"] == int((~covered).sum())
        assert msft["outside_bars"] == (2 if session == date(2023, 7, 11) else 0)
        # short pre-market buckets and the daily bar validate against their own constituents
        assert msft["validation_success"] is True
    assert {s["date"] for s in report["sessions"]} == {str(s) for s in sessions}
    # Pre-market bars are real trading, at a lower coverage than the regular session.
    assert report["sessions"][0]["symbols"]["MSFT"]["segments"]["pre"]["bar_quality"] < 100


def test_derived_bars_are_anchored_at_each_segment_open(
    report: dict[str, Any], store: str, vendor: pd.DataFrame
) -> None:
    bars = run_series(engine_for(store), report["run_id"])
    for entry in report["sessions"]:
        session = date.fromisoformat(entry["date"])
        mine = bars.loc[bars["session"] == session]
        one = mine.loc[mine["interval"] == 1].sort_values("ts")
        bounds = segments(session)
        inside = vendor.loc[
            np.logical_or.reduce([vendor["ts"].between(s, e - 1) for s, e in bounds.values()])
        ]
        assert one["ts"].tolist() == inside["ts"].tolist()
        for column in PRICE_COLUMNS:
            np.testing.assert_allclose(one[column].to_numpy(), inside[column].to_numpy())
        for interval in DERIVED:
            oracle = pd.concat(
                [
                    resample(vendor.loc[vendor["ts"].between(s, e - 1)], interval, s, e)
                    for s, e in bounds.values()
                ],
                ignore_index=True,
            )
            got = mine.loc[mine["interval"] == interval].sort_values("ts")
            assert got["ts"].tolist() == oracle["ts"].tolist(), (session, interval)
            for column in PRICE_COLUMNS:
                np.testing.assert_allclose(got[column].to_numpy(), oracle[column].to_numpy())
            assert got["constituents"].tolist() == oracle["constituents"].tolist()
            assert got["expected_constituents"].tolist() == oracle["expected"].tolist()
        # The daily bar is the regular session's OHLCV: extended hours do not enter it.
        start, end = bounds["regular"]
        regular = vendor.loc[vendor["ts"].between(start, end - 1)]
        daily = mine.loc[mine["interval"] == 1440]
        assert daily["ts"].tolist() == [start]
        np.testing.assert_allclose(daily[list(OHLCV)].to_numpy(float)[0], session_ohlcv(regular))
