"""Coordinator throughput and `session_data` memory on a synthetic 2,000-symbol session."""

from __future__ import annotations

import statistics
import time
from datetime import date

import numpy as np
import pandas as pd

from barkeeper.core.kernels import bucket_layout, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.live.coordinator import BacktestStreamCoordinator
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_records import Provenance

BENCH_SESSION = date(2024, 3, 12)
BENCH_OPEN_TS = 1710250200  # 2024-03-12 09:30 America/New_York
DERIVED_INTERVALS = (5, 15, 30, 60)
GAP_RATE = 0.02


class _Minutes:
    """A regular 390-minute session without a calendar lookup."""

    session = BENCH_SESSION
    minutes = BENCH_OPEN_TS + 60 * np.arange(390, dtype=np.int64)
    segment = np.zeros(390, dtype=np.uint8)


def synthetic_feed(
    symbols: int, seed: int = 0, order: str = "ts"
) -> tuple[list[str], pd.DataFrame]:
    """Random-walk bars for `symbols` symbols over the bench session with 2% missing minutes.

    Rows are sorted by (ts, symbol), as a session read from the repository and the fault
    injector's delivery order come, or by (symbol, ts) with `order="symbol"`.
    """
    rng = np.random.default_rng(seed)
    names = [f"SYM{i:04d}" for i in range(symbols)]
    n_minutes = len(_Minutes.minutes)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, (symbols, n_minutes)), axis=1))
    keep = rng.random((symbols, n_minutes)) >= GAP_RATE
    if order == "ts":
        c, r = np.nonzero(keep.T)
    else:
        r, c = np.nonzero(keep)
    price = close[r, c]
    spread = np.abs(rng.normal(0, 0.02, len(r)))
    frame = pd.DataFrame(
        {
            "symbol": np.asarray(names, dtype=object)[r],
            "ts": _Minutes.minutes[c],
            "open": price,
            "high": price + spread,
            "low": price - spread,
            "close": price,
            "volume": rng.integers(100, 10_000, len(r)).astype(np.float64),
        }
    )
    return names, frame


def _layouts() -> dict:
    return {n: bucket_layout(_Minutes.minutes, _Minutes.segment, n) for n in DERIVED_INTERVALS}


def _replay_seconds(names: list[str], frame: pd.DataFrame, handler: bool) -> float:
    sd = SessionData()
    sd.start_session(_Minutes, names, _layouts())
    coordinator = BacktestStreamCoordinator(sd, speed="max")
    if handler:
        coordinator.register_handler(lambda symbol, ts, o, h, lo, c, v: None)
    started = time.perf_counter()
    coordinator.feed_frame(frame)
    coordinator.run()
    return time.perf_counter() - started


def bench_coordinator(symbols: int = 2000, repeats: int = 5) -> dict[str, float]:
    """Bars per second from a bar frame into `session_data` (plan, slice, write, clock).

    Median of `repeats` runs, without and with one no-op per-bar handler, on a feed in
    (ts, symbol) order; `bars_per_s_symbol_order` is the same without handler for a feed in
    (symbol, ts) order, which costs one transposing gather more. `read_us` is what a
    strategy pays per read: see `bench_read`.
    """
    names, frame = synthetic_feed(symbols)
    _, by_symbol = synthetic_feed(symbols, order="symbol")
    bars = len(frame)
    plain = [_replay_seconds(names, frame, handler=False) for _ in range(repeats)]
    handled = [_replay_seconds(names, frame, handler=True) for _ in range(repeats)]
    symbol_major = [_replay_seconds(names, by_symbol, handler=False) for _ in range(repeats)]
    return {
        "bars": bars,
        "bars_per_s": bars / statistics.median(plain),
        "bars_per_s_with_handler": bars / statistics.median(handled),
        "bars_per_s_symbol_order": bars / statistics.median(symbol_major),
        "read_us": bench_read(names, frame),
    }


def bench_read(names: list[str], frame: pd.DataFrame, reads: int = 500) -> float:
    """Median microseconds of `last_n_bars(symbol, 50, 5)` with the clock mid-session.

    The symbols read rotate over the whole session so no cache can help; the figure must
    not grow with the number of symbols (a read derives one row over 50 buckets).
    """
    sd = SessionData()
    sd.start_session(_Minutes, names, _layouts())
    mid = len(_Minutes.minutes) // 2
    panel = Panel.empty(tuple(names), _Minutes.minutes)
    panel.fill(frame[frame["ts"] <= _Minutes.minutes[mid]])
    rows, cols = np.nonzero(panel.present)
    values = (getattr(panel, c)[rows, cols] for c in PRICE_COLUMNS)
    sd.write_bars(rows, cols, *values, provenance=Provenance.FEED)
    sd.advance_clock(int(_Minutes.minutes[mid]))  # open session: a read sees buckets ≤ clock
    step = max(len(names) // reads, 1)
    seconds = []
    for i in range(reads):
        symbol = names[(i * step) % len(names)]
        started = time.perf_counter()
        sd.last_n_bars(symbol, 50, interval=5)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1e6


def bench_memory(symbols: int = 2000) -> dict[str, float]:
    """Bytes of every `session_data` array per stored bar (1m plus 5/15/30/60m derived)."""
    names, frame = synthetic_feed(symbols)
    sd = SessionData()
    layouts = _layouts()
    sd.start_session(_Minutes, names, layouts)
    coordinator = BacktestStreamCoordinator(sd, speed="max")
    coordinator.feed_frame(frame)
    coordinator.run()
    panel = sd.panel_snapshot().panel
    for n, layout in layouts.items():
        sd.set_derived(n, derive(panel, layout))
    stored = sd.stored_bars()
    return {"stored_bars": stored, "bytes_per_bar": sd.memory_bytes() / stored}
