"""Implausible values: prices and volumes beyond the settings' bounds are quarantined
`implausible_value`, so no derived sum can overflow; hypothesis drives extreme inputs through
the real import and the derivation kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barkeeper.core.calendar import Calendar
from barkeeper.core.kernels import bucket_layout, derive
from barkeeper.core.panel import Panel
from barkeeper.ingest.files import parse_file

MAX_PRICE, MAX_VOLUME = 1e7, 1e12  # the defaults of BARKEEPER_MAX_PRICE / BARKEEPER_MAX_VOLUME
EXTREMES = [0.0, 5e-324, 1e-8, 1.0, 9_999_999.0, 1e7, 1e7 * (1 + 1e-15), 1e12, 1e15, 1e308,
            1.7976931348623157e308, float("inf"), -1e308]  # fmt: skip
values = st.one_of(st.sampled_from(EXTREMES), st.floats(min_value=-1e308, max_value=1e308))


def expected_reason(o: float, h: float, lo: float, c: float, v: float) -> str | None:
    """The first reason in REASONS order that applies, computed from the values as written."""
    prices = [o, h, lo, c]
    if not all(np.isfinite([*prices, v])):
        return "non_numeric"
    if min(prices) <= 0:
        return "price_not_positive"
    if v < 0:
        return "negative_volume"
    if max(prices) >= MAX_PRICE or v >= MAX_VOLUME:
        return "implausible_value"
    if h < lo:
        return "high_below_low"
    if h < max(o, c):
        return "high_below_open_close"
    if lo > min(o, c):
        return "low_above_open_close"
    return None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(values, values, values, values, values), min_size=1, max_size=8))
def test_extreme_values_are_quarantined_by_their_reason(tmp_path: Path, rows: list) -> None:
    path = tmp_path / "XTRM_1min.csv"
    stamps = pd.date_range("2023-07-10 14:30", periods=len(rows), freq="min", tz="UTC")
    frame = pd.DataFrame([[repr(x) for x in row] for row in rows],
                         columns=["open", "high", "low", "close", "volume"])  # fmt: skip
    frame.insert(0, "timestamp", stamps.strftime("%Y-%m-%dT%H:%MZ"))
    frame.to_csv(path, index=False)
    parsed = parse_file(path)
    want = {i + 2: expected_reason(*map(float, r)) for i, r in enumerate(rows)}
    got = dict(zip(parsed.quarantine["line"], parsed.quarantine["reason"], strict=True))
    assert got == {line: reason for line, reason in want.items() if reason is not None}
    assert len(parsed.bars) == sum(reason is None for reason in want.values())
    stored = parsed.bars[["open", "high", "low", "close", "volume"]].to_numpy()
    assert np.isfinite(stored).all() and (stored[:, :4] < MAX_PRICE).all()
    assert (stored[:, 4] < MAX_VOLUME).all()


@settings(max_examples=40, deadline=None)
@given(
    prices=st.floats(min_value=1e-8, max_value=MAX_PRICE, exclude_max=True),
    volume=st.floats(min_value=0, max_value=MAX_VOLUME, exclude_max=True),
    n=st.sampled_from([5, 60, 390]),
)
def test_derived_sums_of_plausible_bars_stay_finite(prices: float, volume: float, n: int) -> None:
    minutes = Calendar().session_minutes(pd.Timestamp("2023-07-10").date())
    shape = (2_000, len(minutes.minutes))  # a full universe of the largest allowed bars
    full = np.full(shape, prices)
    panel = Panel(tuple(f"S{i}" for i in range(shape[0])), minutes.minutes, full, full.copy(),
                  full.copy(), full.copy(), np.full(shape, volume))  # fmt: skip
    derived = derive(panel, bucket_layout(minutes.minutes, minutes.segment, n))
    assert np.isfinite(derived.volume).all() and np.isfinite(derived.high).all()
    np.testing.assert_allclose(derived.volume.sum(axis=1), volume * shape[1], rtol=1e-9)
