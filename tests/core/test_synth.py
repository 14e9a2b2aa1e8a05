"""Synthetic bars look like vendor data: consistent OHLC, seeded, the asked share illiquid."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from barkeeper.core.calendar import Calendar, SessionMinutes
from barkeeper.core.panel import BAR_COLUMNS
from barkeeper.core.synth import symbol_names, synthetic_bars, synthetic_panel
from barkeeper.errors import ParameterError


@pytest.fixture(scope="module")
def week() -> list[SessionMinutes]:
    cal = Calendar()
    # 2023-11-20..24: Thanksgiving (no session) and an early close in one week.
    return [cal.session_minutes(s) for s in cal.sessions(date(2023, 11, 20), date(2023, 11, 24))]


@pytest.fixture(scope="module")
def bars(week: list[SessionMinutes]) -> pd.DataFrame:
    return synthetic_bars(symbol_names(40), week, illiquid_share=0.25, seed=7)


def test_columns_and_order(bars: pd.DataFrame, week: list[SessionMinutes]) -> None:
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert bars["symbol"].iloc[0] == "SYM0001"
    assert not bars.duplicated(["symbol", "ts"]).any()
    assert bars.equals(bars.sort_values(["symbol", "ts"]))
    allowed = np.concatenate([sm.minutes for sm in week])
    assert np.isin(bars["ts"], allowed).all()  # only calendar minutes: no Thanksgiving bars


def test_ohlc_is_consistent(bars: pd.DataFrame) -> None:
    prices = bars[["open", "high", "low", "close"]]
    assert (prices > 0).all().all()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["volume"] > 0).all()
    assert (bars["volume"] == bars["volume"].round()).all()
    assert (prices == prices.round(2)).all().all()


def test_prices_walk(bars: pd.DataFrame) -> None:
    """Consecutive closes move by small relative steps, and they do move."""
    one = bars[bars["symbol"] == "SYM0001"]
    steps = np.diff(np.log(one["close"].to_numpy()))
    assert np.abs(steps).max() < 0.05
    assert np.count_nonzero(steps) > len(steps) / 2


def test_reproducible_by_seed(week: list[SessionMinutes], bars: pd.DataFrame) -> None:
    again = synthetic_bars(symbol_names(40), week, illiquid_share=0.25, seed=7)
    pd.testing.assert_frame_equal(bars, again)
    other = synthetic_bars(symbol_names(40), week, illiquid_share=0.25, seed=8)
    assert not bars[["open", "close"]].equals(other[["open", "close"]])


def test_illiquid_share_and_coverage(bars: pd.DataFrame, week: list[SessionMinutes]) -> None:
    n_minutes = sum(len(sm.minutes) for sm in week)
    coverage = bars.groupby("symbol").size().reindex(symbol_names(40), fill_value=0) / n_minutes
    illiquid = coverage[coverage < 0.5]
    assert len(illiquid) == 10  # 25% of 40
    assert illiquid.between(0.15, 0.45).all()  # like DBB (20%) and FXY (38%)
    liquid = coverage[coverage >= 0.5]
    assert liquid.between(0.95, 0.995).all()  # missing_rate 2%


def test_missing_rate(week: list[SessionMinutes]) -> None:
    frame = synthetic_bars(symbol_names(20), week, illiquid_share=0.0, missing_rate=0.1, seed=1)
    n_minutes = sum(len(sm.minutes) for sm in week)
    assert len(frame) / (20 * n_minutes) == pytest.approx(0.9, abs=0.01)
    full = synthetic_bars(["A"], week, illiquid_share=0.0, missing_rate=0.0)
    assert len(full) == n_minutes


def test_panel_is_the_same_generator(week: list[SessionMinutes]) -> None:
    minutes = week[0].minutes
    panel = synthetic_panel(30, minutes, missing_rate=0.02, seed=3)
    assert panel.shape == (30, len(minutes))
    assert panel.symbols[:2] == ("SYM0001", "SYM0002")
    frame = synthetic_bars(list(panel.symbols), minutes, illiquid_share=0.0, seed=3)
    pd.testing.assert_frame_equal(panel.to_frame(), frame)
    assert panel.present.mean() == pytest.approx(0.98, abs=0.01)


def test_bad_shares() -> None:
    with pytest.raises(ParameterError, match="illiquid_share"):
        synthetic_bars(["A"], np.arange(3, dtype=np.int64) * 60, illiquid_share=1.5)
    with pytest.raises(ParameterError, match="missing_rate"):
        synthetic_panel(2, np.arange(3, dtype=np.int64) * 60, missing_rate=-0.1)
