"""GX cost of an upkeep cycle: one batch validation of every symbol's new minute, warm context."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from barkeeper.core.panel import BAR_COLUMNS

SESSION_OPEN = 1_688_995_800  # 2023-07-10 13:30 UTC


def minute_bars(symbols: int, minute: int, seed: int = 0) -> pd.DataFrame:
    """One minute's bars for `symbols` symbols, OHLC-consistent, a few zero-volume."""
    rng = np.random.default_rng(seed + minute)
    close = 20 + 200 * np.random.default_rng(seed).random(symbols)
    open_ = close * (1 + rng.normal(0, 0.0005, symbols))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, symbols))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, symbols))
    return pd.DataFrame(
        {
            "symbol": [f"S{i:04d}" for i in range(symbols)],
            "ts": np.full(symbols, SESSION_OPEN + 60 * minute, dtype=np.int64),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(0, 5_000, symbols).astype(np.float64),
        },
        columns=list(BAR_COLUMNS),
    )


def bench_gx(symbols: int = 2000, repeats: int = 5) -> dict[str, Any]:
    """Median cost of one upkeep validation cycle over `symbols` symbols' new minute.

    `cycle_ms` = `prepare_bars_1m` (with the previous minute as context) + `validate_bars_1m`
    through a Validator built once (its build, which imports GX, is `setup_s`).
    """
    from barkeeper.quality.frames import hard_check_failures, prepare_bars_1m
    from barkeeper.quality.validation import Validator

    started = time.perf_counter()
    validator = Validator()
    setup_s = time.perf_counter() - started
    minutes = SESSION_OPEN + 60 * np.arange(390, dtype=np.int64)
    validator.validate_bars_1m(prepare_bars_1m(minute_bars(symbols, 0), minutes))  # warm-up
    cycle, prepare, hard = [], [], []
    for i in range(1, repeats + 1):
        previous, new = minute_bars(symbols, i - 1), minute_bars(symbols, i)
        t0 = time.perf_counter()
        prepared = prepare_bars_1m(new, minutes, context=previous)
        t1 = time.perf_counter()
        validator.validate_bars_1m(prepared)
        t2 = time.perf_counter()
        hard_check_failures(new)
        t3 = time.perf_counter()
        cycle.append((t2 - t0) * 1000)
        prepare.append((t1 - t0) * 1000)
        hard.append((t3 - t2) * 1000)
    return {
        "symbols": symbols,
        "rows": symbols,
        "cycle_ms": round(statistics.median(cycle), 2),
        "prepare_ms": round(statistics.median(prepare), 2),
        "hard_check_ms": round(statistics.median(hard), 3),
        "setup_s": round(setup_s, 2),
    }


def bench_data_docs(symbols: int = 200, runs: int = 3, keep_results: int = 300) -> dict[str, Any]:
    """Seconds per end-of-run checkpoint + Data Docs build as runs accumulate in one folder."""
    from barkeeper.quality.data_docs import run_final_checkpoint
    from barkeeper.quality.frames import prepare_bars_1m, prepare_session_quality

    minutes = SESSION_OPEN + 60 * np.arange(390, dtype=np.int64)
    bars = pd.concat([minute_bars(symbols, m) for m in range(390)], ignore_index=True)
    prepared = prepare_bars_1m(bars, minutes)
    metrics = prepare_session_quality(
        pd.DataFrame(
            {
                "symbol": [f"S{i:04d}" for i in range(symbols)],
                "expected_bars": 390,
                "actual_bars": 390,
                "bar_quality": 100.0,
                "unfillable_bars": 0,
            }
        )
    )
    seconds = []
    with tempfile.TemporaryDirectory(prefix="barkeeper-docs-") as folder:
        for run in range(runs):
            report = run_final_checkpoint(
                f"bench{run}",
                "2023-07-10",
                {"bars_1m": prepared, "session_quality": metrics},
                Path(folder),
                keep_results=keep_results,
            )
            seconds.append(round(report.seconds, 2))
    return {"symbols": symbols, "rows": len(bars), "build_s": seconds}
