"""Benchmark of the upkeep kernel against the pandas a competent user would write.

The same work three ways, in one process, on one synthetic session: gap detection against the
calendar's minutes (grouped into runs), bar quality, and 5/15/30/60-minute bars anchored at the
open with constituent counts. Inputs are prepared before timing in each method's natural form:
barkeeper's Panel, and for pandas a long frame with a UTC datetime column.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from barkeeper.core.calendar import Calendar, SessionMinutes
from barkeeper.core.kernels import bar_quality, bucket_layout, derive, find_gaps
from barkeeper.core.panel import Panel, ts_to_utc
from barkeeper.core.synth import synthetic_panel

log = logging.getLogger(__name__)

INTERVALS = (5, 15, 30, 60)
BENCH_SESSION = date(2024, 7, 10)
"""A plain full-day XNYS session (390 minutes)."""

OHLCV = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
AGG = {name: (name, how) for name, how in OHLCV.items()} | {"count": ("close", "count")}


def _barkeeper(panel: Panel, sm: SessionMinutes) -> tuple[int, int]:
    present = panel.present
    gaps = find_gaps(present)
    bar_quality(present)
    derived = 0
    for n in INTERVALS:
        d = derive(panel, bucket_layout(sm.minutes, sm.segment, n))
        derived += int(np.count_nonzero(d.count))
    return len(gaps), derived


def _gap_runs(missing: pd.Series) -> pd.DataFrame:
    """Runs of consecutive True in `missing` (indexed by minute): first, last, length."""
    run_id = (~missing).cumsum()[missing]
    return (
        missing.index[missing].to_series().groupby(run_id.to_numpy()).agg(["first", "last", "size"])
    )


def _pandas_loop(frame: pd.DataFrame, expected: pd.DatetimeIndex) -> tuple[int, int]:
    origin = expected[0]
    n_gaps = derived = 0
    for _, bars in frame.groupby("symbol", sort=False):
        bars = bars.set_index("dt")[list(OHLCV)]
        full = bars.reindex(expected)
        missing = full["close"].isna()
        n_gaps += len(_gap_runs(missing))
        _quality = (~missing).sum() / len(expected) * 100.0
        for n in INTERVALS:
            bins = bars.resample(f"{n}min", origin=origin, label="left", closed="left")
            out = bins.agg(OHLCV)
            out["count"] = bins["close"].count()
            derived += int((out["count"] > 0).sum())
    return n_gaps, derived


def _pandas_groupby(frame: pd.DataFrame, expected: pd.DatetimeIndex) -> tuple[int, int]:
    symbols = frame["symbol"].unique()
    grid = pd.MultiIndex.from_product([symbols, expected], names=["symbol", "dt"])
    full = frame.set_index(["symbol", "dt"])["close"].reindex(grid)
    missing = full.isna()
    run_id = (~missing).groupby(level="symbol").cumsum()
    gaps = missing[missing].reset_index().groupby(["symbol", run_id[missing].to_numpy()])["dt"]
    n_gaps = len(gaps.agg(["first", "last", "size"]))
    _quality = (~missing).groupby(level="symbol").mean() * 100.0
    derived = 0
    for n in INTERVALS:
        grouper = pd.Grouper(key="dt", freq=f"{n}min", origin=expected[0])
        out = frame.groupby(["symbol", grouper]).agg(**AGG)
        derived += int((out["count"] > 0).sum())
    return n_gaps, derived


def _median_ms(fn: Callable[[], tuple[int, int]], repeats: int) -> tuple[float, tuple[int, int]]:
    times, result = [], (0, 0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), result


def time_kernel(symbols: int, repeats: int = 5, seed: int = 0) -> float:
    """Median ms of barkeeper's kernel alone on `symbols` symbols (for the scaling curve)."""
    sm = Calendar().session_minutes(BENCH_SESSION)
    panel = synthetic_panel(symbols, sm.minutes, missing_rate=0.02, seed=seed)
    return round(_median_ms(lambda: _barkeeper(panel, sm), repeats)[0], 2)


def bench_kernel(
    symbols: int = 2000, repeats: int = 5, seed: int = 0, loop_repeats: int = 3
) -> dict[str, Any]:
    """Time gap detection + quality + 5/15/30/60m derivation three ways; medians in ms.

    The per-symbol pandas loop is the slow baseline (seconds per run): it is timed
    `loop_repeats` times, the other two `repeats` times.

    Returns
    -------
    dict
        symbols, bars (1-minute bars present), barkeeper_ms, pandas_loop_ms, pandas_groupby_ms,
        loop_speedup, groupby_speedup, gap_runs and derived_bars (the same in all three, checked).
    """
    sm = Calendar().session_minutes(BENCH_SESSION)
    panel = synthetic_panel(symbols, sm.minutes, missing_rate=0.02, seed=seed)
    frame = panel.to_frame()
    frame["dt"] = ts_to_utc(frame["ts"])
    expected = ts_to_utc(sm.minutes)

    ours_ms, ours = _median_ms(lambda: _barkeeper(panel, sm), repeats)
    group_ms, grouped = _median_ms(lambda: _pandas_groupby(frame, expected), repeats)
    loop_ms, looped = _median_ms(lambda: _pandas_loop(frame, expected), loop_repeats)
    if not ours == grouped == looped:
        raise RuntimeError(f"bench methods disagree: (gaps, bars) {ours} {grouped} {looped}")
    log.info(
        "kernel bench: barkeeper %.1f ms, groupby %.1f ms, loop %.1f ms",
        ours_ms,
        group_ms,
        loop_ms,
    )
    return {
        "symbols": symbols,
        "bars": len(frame),
        "barkeeper_ms": round(ours_ms, 2),
        "pandas_loop_ms": round(loop_ms, 2),
        "pandas_groupby_ms": round(group_ms, 2),
        "loop_speedup": round(loop_ms / ours_ms, 1),
        "groupby_speedup": round(group_ms / ours_ms, 1),
        "gap_runs": ours[0],
        "derived_bars": ours[1],
        "intervals": list(INTERVALS),
        "repeats": repeats,
        "loop_repeats": loop_repeats,
    }
