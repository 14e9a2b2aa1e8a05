"""Small helpers shared by test modules: independent oracles and thread runners."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pandas as pd


def session_ohlcv(bars: pd.DataFrame) -> np.ndarray:
    """open, high, low, close, volume of a whole session's bars (sorted by ts)."""
    return np.array(
        [
            bars["open"].iloc[0],
            bars["high"].max(),
            bars["low"].min(),
            bars["close"].iloc[-1],
            bars["volume"].sum(),
        ]
    )


def lossy_faults(seed: int) -> dict:
    """A feed that loses, breaks, repeats and reorders bars, with a 20-minute outage."""
    return {
        "drop_rate": 0.05,
        "outages": ["10:00-10:20"],
        "corrupt_rate": 0.02,
        "duplicate_rate": 0.01,
        "out_of_order_rate": 0.02,
        "seed": seed,
    }


def run_together(*actors: Callable[[], None], timeout: float) -> list[BaseException]:
    """Run each actor in a thread of its own; the exceptions they raised, for the test to show."""
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # surfaced by the caller
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(fn)) for fn in actors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return errors


def five_minute_oracle(bars: pd.DataFrame) -> pd.DataFrame:
    """5-minute bars of 1-minute `bars` by pandas groupby: the independent derivation oracle."""
    return (
        bars.assign(ts=bars["ts"] // 300 * 300)
        .groupby(["symbol", "ts"])
        .agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
            constituents=("volume", "size"),
        )
        .reset_index()
        .assign(interval=5, expected_constituents=5)
    )


def replayed(params: object) -> dict:
    """What `barkeeper replay --json` prints: the flow's summary with the figures read back."""
    from barkeeper.reports.report import replay_report
    from barkeeper.settings import load_settings
    from flows.replay import replay_sessions
    from models.engine import engine_for

    summary = replay_sessions(params)
    return replay_report(engine_for(load_settings().database_url), summary)
