"""Kernels against pandas `resample` on the real vendor files, and properties on random input."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barkeeper.bench.kernel import bench_kernel
from barkeeper.core.calendar import POST, PRE, REGULAR, Calendar, SessionMinutes
from barkeeper.core.kernels import (
    DAILY,
    BucketLayout,
    bar_quality,
    bucket_layout,
    derive,
    derived_frame,
    find_gaps,
)
from barkeeper.core.panel import PRICE_COLUMNS, Panel, ts_to_utc, utc_to_ts
from barkeeper.errors import ParameterError

FILES = {
    "DBB": "DBB_1min_2023-07-10_to_2025-07-08.csv",  # illiquid: ~20% of minutes
    "FXY": "FXY_1min_2023-07-10_to_2025-07-08.csv",  # illiquid: ~38% of minutes
    "MSFT": "MSFT_1min_2023-07-10_to_2023-07-13.csv",  # liquid: every minute
}
SESSIONS = [
    date(2023, 7, 10),  # all three files, MSFT complete
    date(2023, 7, 13),  # MSFT's last session
    date(2023, 11, 24),  # early close 13:00 ET
    date(2024, 3, 8),  # last EST day before the DST change
    date(2024, 3, 11),  # first EDT day
    date(2024, 7, 3),  # early close in summer
]
INTERVALS = [5, 15, 30, 60, 7, 45, 90]


@pytest.fixture(scope="module")
def cal() -> Calendar:
    return Calendar()


@pytest.fixture(scope="module")
def real_bars(real_dir: Path) -> pd.DataFrame:
    frames = []
    for symbol, name in FILES.items():
        raw = pd.read_csv(real_dir / name)
        raw["ts"] = utc_to_ts(pd.to_datetime(raw.pop("timestamp")))
        raw["symbol"] = symbol
        frames.append(raw)
    return pd.concat(frames, ignore_index=True)


def session_panel(bars: pd.DataFrame, sm: SessionMinutes) -> Panel:
    symbols = tuple(sorted(bars["symbol"].unique()))
    panel = Panel.empty(symbols, sm.minutes)
    panel.fill(bars)
    return panel


def resample_oracle(rows: pd.DataFrame, n: int, origin: object) -> pd.DataFrame:
    """Independent answer: pandas resample, label and closed left; empty buckets dropped."""
    by_time = rows.set_index(ts_to_utc(rows["ts"]))[list(PRICE_COLUMNS)]
    bins = by_time.resample(f"{n}min", origin=origin, label="left", closed="left")
    out = bins.agg({"open": "first", "high": "max", "low": "min", "close": "last"})
    out["volume"] = bins["volume"].sum()
    out["count"] = bins["close"].count()
    out = out[out["count"] > 0]
    return out.assign(ts=utc_to_ts(out.index)).reset_index(drop=True)


def expected_oracle(minutes: np.ndarray, n: int, origin: object) -> pd.Series:
    """Calendar minutes per bucket, by the same resample: bucket label ts → expected."""
    s = pd.Series(1, index=ts_to_utc(minutes)).resample(f"{n}min", origin=origin).sum()
    s = s[s > 0]
    return pd.Series(s.to_numpy(), index=utc_to_ts(s.index))


def check_against_oracle(
    got: pd.DataFrame, rows: pd.DataFrame, minutes: np.ndarray, n: int, origin: object
) -> None:
    want = resample_oracle(rows, n, origin)
    assert len(want) > 0
    got = got.reset_index(drop=True)
    np.testing.assert_array_equal(got["ts"].to_numpy(), want["ts"].to_numpy())
    for col in [*PRICE_COLUMNS, "count"]:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), err_msg=col)
    exp = expected_oracle(minutes, n, origin)
    np.testing.assert_array_equal(got["expected"].to_numpy(), exp.loc[got["ts"]].to_numpy())


def session_rows(bars: pd.DataFrame, symbol: str, lo: int, hi: int) -> pd.DataFrame:
    rows = bars[(bars["symbol"] == symbol) & (bars["ts"] >= lo) & (bars["ts"] < hi)]
    return rows.sort_values("ts")


@pytest.mark.parametrize("session", SESSIONS)
def test_session_anchored_bars_equal_resample(
    cal: Calendar, real_bars: pd.DataFrame, session: date
) -> None:
    sm = cal.session_minutes(session)
    panel = session_panel(real_bars, sm)
    origin = ts_to_utc([sm.open_ts])[0]
    for n in INTERVALS:
        frame = derived_frame(
            derive(panel, bucket_layout(sm.minutes, sm.segment, n)), panel.symbols
        )
        for symbol in panel.symbols:
            rows = session_rows(real_bars, symbol, sm.open_ts, sm.close_ts)
            got = frame[frame["symbol"] == symbol]
            if rows.empty:
                assert got.empty
                continue
            check_against_oracle(got, rows, sm.minutes, n, origin)


@pytest.mark.parametrize("session", [date(2023, 7, 10), date(2023, 11, 24), date(2024, 3, 8)])
def test_extended_hours_buckets_restart_at_each_segment(
    cal: Calendar, real_bars: pd.DataFrame, session: date
) -> None:
    sm = cal.session_minutes(session, extended_hours=True)
    panel = session_panel(real_bars, sm)
    for n in (30, 60, 45):
        layout = bucket_layout(sm.minutes, sm.segment, n)
        frame = derived_frame(derive(panel, layout), panel.symbols)
        frame["segment"] = sm.segment[layout.start_idx[np.searchsorted(layout.starts, frame.ts)]]
        for code in (PRE, REGULAR, POST):
            seg_minutes = sm.minutes[sm.segment == code]
            origin = ts_to_utc(seg_minutes[:1])[0]
            for symbol in panel.symbols:
                rows = session_rows(real_bars, symbol, seg_minutes[0], seg_minutes[-1] + 60)
                got = frame[(frame["symbol"] == symbol) & (frame["segment"] == code)]
                if rows.empty:
                    assert got.empty
                    continue
                check_against_oracle(got, rows, seg_minutes, n, origin)


@pytest.mark.parametrize("session", [date(2023, 7, 10), date(2024, 3, 8), date(2023, 11, 24)])
def test_clock_anchored_bars_equal_resample(
    cal: Calendar, real_bars: pd.DataFrame, session: date
) -> None:
    sm = cal.session_minutes(session)
    panel = session_panel(real_bars, sm)
    for n in INTERVALS:
        frame = derived_frame(
            derive(panel, bucket_layout(sm.minutes, None, n, anchor="clock")), panel.symbols
        )
        # The UTC epoch clock; for widths dividing a day pandas' default origin is the same.
        origins = ["epoch", "start_day"] if 1440 % n == 0 else ["epoch"]
        for symbol in panel.symbols:
            rows = session_rows(real_bars, symbol, sm.open_ts, sm.close_ts)
            got = frame[frame["symbol"] == symbol]
            if rows.empty:
                assert got.empty
                continue
            for origin in origins:
                check_against_oracle(got, rows, sm.minutes, n, origin)


def test_clock_and_session_anchoring_differ_for_hourly_bars(cal: Calendar) -> None:
    sm = cal.session_minutes(date(2023, 7, 10))
    by_session = bucket_layout(sm.minutes, sm.segment, 60)
    by_clock = bucket_layout(sm.minutes, sm.segment, 60, anchor="clock")
    assert [pd.Timestamp(t, unit="s").strftime("%H:%M") for t in by_session.starts[:2]] == [
        "13:30",
        "14:30",
    ]
    assert [pd.Timestamp(t, unit="s").strftime("%H:%M") for t in by_clock.starts[:2]] == [
        "13:00",
        "14:00",
    ]
    np.testing.assert_array_equal(by_session.expected, [60] * 6 + [30])
    np.testing.assert_array_equal(by_clock.expected, [30] + [60] * 6)


@pytest.mark.parametrize("session", SESSIONS)
def test_daily_bar_is_the_regular_sessions_ohlcv(
    cal: Calendar, real_bars: pd.DataFrame, session: date
) -> None:
    sm = cal.session_minutes(session, extended_hours=True)
    panel = session_panel(real_bars, sm)
    layout = bucket_layout(sm.minutes, sm.segment, DAILY)
    frame = derived_frame(derive(panel, layout), panel.symbols).set_index("symbol")
    assert list(layout.expected) == [len(cal.session_minutes(session).minutes)]
    for symbol in panel.symbols:
        rows = session_rows(real_bars, symbol, sm.open_ts, sm.close_ts)
        if rows.empty:
            assert symbol not in frame.index
            continue
        got = frame.loc[symbol]
        assert got["ts"] == sm.open_ts
        assert got["open"] == rows["open"].iloc[0]
        assert got["close"] == rows["close"].iloc[-1]
        assert got["high"] == rows["high"].max()
        assert got["low"] == rows["low"].min()
        assert got["volume"] == pytest.approx(rows["volume"].sum())
        assert got["count"] == len(rows)


@pytest.mark.parametrize("session", [date(2023, 7, 10), date(2023, 11, 24)])
def test_gaps_and_quality_on_real_files(
    cal: Calendar, real_bars: pd.DataFrame, session: date
) -> None:
    sm = cal.session_minutes(session)
    panel = session_panel(real_bars, sm)
    present = panel.present
    gaps = find_gaps(present)
    quality = bar_quality(present)
    for i, symbol in enumerate(panel.symbols):
        rows = session_rows(real_bars, symbol, sm.open_ts, sm.close_ts)
        missing = pd.Series(True, index=sm.minutes)
        missing[rows["ts"].to_numpy()] = False
        # Runs by pandas: a new run starts at every missing minute after a present one.
        run_id = (~missing).cumsum()[missing]
        want = missing.index[missing].to_series().groupby(run_id.to_numpy()).agg(["first", "size"])
        mine = gaps.symbol_idx == i
        np.testing.assert_array_equal(sm.minutes[gaps.start_idx[mine]], want["first"].to_numpy())
        np.testing.assert_array_equal(gaps.length[mine], want["size"].to_numpy())
        assert quality[i] == pytest.approx(len(rows) / len(sm.minutes) * 100)
    assert quality[panel.symbols.index("DBB")] < 100  # illiquid: no-trade minutes
    if session == date(2023, 7, 10):
        assert quality[panel.symbols.index("MSFT")] == 100.0  # the README: 390 of 390


# --- properties on random input -------------------------------------------------------------


@st.composite
def random_sessions(draw: st.DrawFn) -> tuple[Panel, np.ndarray, np.ndarray, np.random.Generator]:
    """A panel over 1-240 sorted minutes with holes and up to three segments, random bars."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_minutes = draw(st.integers(1, 240))
    n_symbols = draw(st.integers(1, 5))
    steps = rng.choice([1, 1, 1, 1, 2, 7], size=n_minutes)  # holes, like a lunch break
    minutes = 1_700_000_040 + 60 * np.cumsum(steps).astype(np.int64)
    cuts = np.sort(rng.choice(n_minutes + 1, size=2))
    segment = np.repeat(np.array([PRE, REGULAR, POST], np.uint8), np.diff([0, *cuts, n_minutes]))
    panel = Panel.empty(tuple(f"S{i}" for i in range(n_symbols)), minutes)
    p_present = draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
    present = rng.random(panel.shape) < p_present
    base = rng.uniform(1, 100, panel.shape)
    panel.open[present] = base[present]
    panel.close[present] = (base * rng.uniform(0.98, 1.02, panel.shape))[present]
    panel.high[present] = (np.maximum(panel.open, panel.close) + rng.random(panel.shape))[present]
    panel.low[present] = (np.minimum(panel.open, panel.close) - rng.random(panel.shape))[present]
    panel.volume[present] = rng.integers(0, 1000, panel.shape)[present]
    return panel, segment, rng.random(n_minutes) < 0.8, rng


def check_layout(layout: BucketLayout, minutes: np.ndarray, segment: np.ndarray, n: int) -> None:
    assert layout.start_idx[0] == 0 and layout.stop_idx[-1] == len(minutes)
    np.testing.assert_array_equal(layout.start_idx[1:], layout.stop_idx[:-1])
    assert layout.expected.sum() == len(minutes)
    for b in range(len(layout)):
        cols = slice(layout.start_idx[b], layout.stop_idx[b])
        assert np.all(minutes[cols] >= layout.starts[b])
        assert np.all(minutes[cols] < layout.starts[b] + n * 60)
        assert np.all(layout.bucket_of[cols] == b)
        if layout.anchor == "session":
            assert len(set(segment[cols])) == 1


@settings(max_examples=150, deadline=None)
@given(data=random_sessions(), n=st.integers(2, 100), anchor=st.sampled_from(["session", "clock"]))
def test_derived_bars_aggregate_their_constituents(
    data: tuple[Panel, np.ndarray, np.ndarray, np.random.Generator], n: int, anchor: str
) -> None:
    panel, segment, _, rng = data
    layout = bucket_layout(panel.minutes, segment, n, anchor=anchor)
    check_layout(layout, panel.minutes, segment, n)
    d = derive(panel, layout)
    present = panel.present
    for b in range(len(layout)):
        cols = slice(layout.start_idx[b], layout.stop_idx[b])
        for s in range(panel.shape[0]):
            here = np.flatnonzero(present[s, cols]) + layout.start_idx[b]
            assert d.count[s, b] == len(here)
            if len(here) == 0:
                assert np.isnan([d.open[s, b], d.high[s, b], d.volume[s, b]]).all()
                continue
            assert d.open[s, b] == panel.open[s, here[0]]
            assert d.close[s, b] == panel.close[s, here[-1]]
            assert d.high[s, b] == panel.high[s, here].max()
            assert d.low[s, b] == panel.low[s, here].min()
            assert d.volume[s, b] == pytest.approx(panel.volume[s, here].sum())
    # Volume is conserved: the derived bars hold every 1-minute bar's volume exactly once.
    assert np.nansum(d.volume) == pytest.approx(np.nansum(panel.volume))
    assert d.count.sum() == present.sum()

    subset = np.flatnonzero(rng.random(len(layout)) < 0.4)
    part = derive(panel, layout, buckets=subset)
    np.testing.assert_array_equal(part.starts, d.starts[subset])
    np.testing.assert_array_equal(part.expected, d.expected[subset])
    np.testing.assert_array_equal(part.count, d.count[:, subset])
    for col in PRICE_COLUMNS:
        np.testing.assert_array_equal(getattr(part, col), getattr(d, col)[:, subset])


@settings(max_examples=150, deadline=None)
@given(data=random_sessions(), upto_share=st.floats(0, 1.2))
def test_gap_runs_partition_the_missing_expected_minutes(
    data: tuple[Panel, np.ndarray, np.ndarray, np.random.Generator], upto_share: float
) -> None:
    panel, _, expected, _ = data
    present = panel.present
    upto = int(upto_share * panel.shape[1])
    gaps = find_gaps(present, expected, upto=upto)
    due = expected & (np.arange(panel.shape[1]) < upto)
    want = ~present & due
    covered = np.zeros_like(present, dtype=int)
    for s, a, b, n in zip(gaps.symbol_idx, gaps.start_idx, gaps.stop_idx, gaps.length, strict=True):
        assert n == b - a > 0
        covered[s, a:b] += 1
        # maximal: the minutes either side are not missing-and-due
        assert a == 0 or not want[s, a - 1]
        assert b == panel.shape[1] or not want[s, b]
    np.testing.assert_array_equal(covered, want.astype(int))  # each exactly once, nothing else
    order = np.lexsort((gaps.start_idx, gaps.symbol_idx))
    np.testing.assert_array_equal(order, np.arange(len(gaps)))

    runs, missing = gaps.per_symbol(panel.shape[0])
    np.testing.assert_array_equal(missing, want.sum(axis=1))
    np.testing.assert_array_equal(runs, np.bincount(gaps.symbol_idx, minlength=panel.shape[0]))
    quality = bar_quality(present, expected, upto=upto)
    assert np.all((quality >= 0) & (quality <= 100))
    if due.any():
        np.testing.assert_allclose(quality, (present & due).sum(axis=1) / due.sum() * 100)
    else:
        np.testing.assert_array_equal(quality, 100.0)


def test_quality_with_nothing_expected_is_100() -> None:
    present = np.zeros((3, 10), dtype=bool)
    np.testing.assert_array_equal(bar_quality(present, upto=0), [100.0] * 3)
    np.testing.assert_array_equal(bar_quality(present), [0.0] * 3)
    assert len(find_gaps(present, upto=0)) == 0


def test_dirty_buckets_cover_new_minutes(cal: Calendar) -> None:
    sm = cal.session_minutes(date(2023, 7, 10))
    layout = bucket_layout(sm.minutes, sm.segment, 15)
    np.testing.assert_array_equal(layout.dirty(np.array([0, 14, 15, 389])), [0, 1, 25])
    daily = bucket_layout(*_extended(cal), DAILY)
    assert list(daily.dirty(np.array([0, 1]))) == []  # pre-market: in no daily bucket


def _extended(cal: Calendar) -> tuple[np.ndarray, np.ndarray]:
    sm = cal.session_minutes(date(2023, 7, 10), extended_hours=True)
    return sm.minutes, sm.segment


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [({"n": 1}, "interval"), ({"n": 0}, "interval"), ({"anchor": "noon"}, "anchor")],
)
def test_bad_layout_parameters(kwargs: dict[str, object], parameter: str) -> None:
    minutes = np.arange(10, dtype=np.int64) * 60
    args = {"minutes": minutes, "segment": None, "n": 5} | kwargs
    with pytest.raises(ParameterError, match=parameter):
        bucket_layout(**args)  # type: ignore[arg-type]


def test_kernel_bench_methods_agree() -> None:
    """The benchmark's three methods find the same gaps and bars (it raises otherwise)."""
    result = bench_kernel(symbols=12, repeats=1)
    assert result["symbols"] == 12
    assert result["bars"] == pytest.approx(12 * 390 * 0.98, rel=0.02)
    assert result["derived_bars"] == 12 * (78 + 26 + 13 + 7)  # 2% missing leaves none empty
    assert result["gap_runs"] > 0
    for key in ("barkeeper_ms", "pandas_loop_ms", "pandas_groupby_ms"):
        assert result[key] > 0
