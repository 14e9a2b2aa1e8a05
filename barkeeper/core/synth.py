"""Synthetic 1-minute bars that look like vendor data: random walks, some symbols illiquid.

Pure and seeded: the same arguments give the same bars. One vectorised generator serves both
`barkeeper synth` (a long frame for the repository) and the benchmarks (a Panel).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from barkeeper.core.calendar import SessionMinutes
from barkeeper.core.panel import Panel
from barkeeper.errors import ParameterError

MINUTES_PER_YEAR = 252 * 390
ILLIQUID_COVERAGE = (0.20, 0.40)
"""Share of minutes with a trade for an illiquid symbol (the real DBB/FXY files: 20-38%)."""

OVERNIGHT_SCALE_CAP = 8.0
"""A pause between minutes scales the next return by sqrt(minutes elapsed), capped here."""


def symbol_names(n: int) -> list[str]:
    """`SYM0001`, `SYM0002`, … (wider numbers once n passes 9,999)."""
    width = max(4, len(str(n)))
    return [f"SYM{i:0{width}d}" for i in range(1, n + 1)]


def _minutes_of(sessions_minutes: Sequence[SessionMinutes] | np.ndarray) -> np.ndarray:
    if isinstance(sessions_minutes, np.ndarray):
        minutes = sessions_minutes.astype(np.int64)
    else:
        parts = [sm.minutes for sm in sessions_minutes]
        minutes = np.concatenate(parts) if parts else np.empty(0, np.int64)
    if np.any(np.diff(minutes) <= 0):
        raise ParameterError("minutes: must be sorted and unique")
    return minutes


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ParameterError(f"{name}: {value} must be between 0 and 1")


def _position_in_run(elapsed: np.ndarray) -> np.ndarray:
    """Each minute's place (0 to 1) within its run of back-to-back minutes (its session)."""
    if len(elapsed) == 0:
        return elapsed
    run_id = np.cumsum(elapsed > 1.5)
    run_start = np.flatnonzero(np.diff(run_id, prepend=-1))
    run_len = np.bincount(run_id)
    offset = np.arange(len(elapsed)) - run_start[run_id]
    return offset / np.maximum(run_len[run_id] - 1, 1)


def _generate(
    n_symbols: int,
    minutes: np.ndarray,
    illiquid_share: float,
    missing_rate: float,
    seed: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(S, M) OHLCV arrays with NaN where no bar was traded, and the illiquid mask (S,)."""
    _check_share("illiquid_share", illiquid_share)
    _check_share("missing_rate", missing_rate)
    rng = np.random.default_rng(seed)
    shape = (n_symbols, len(minutes))

    start_price = np.exp(rng.uniform(np.log(5.0), np.log(500.0), n_symbols))
    annual_vol = rng.uniform(0.12, 0.60, n_symbols)
    sigma = annual_vol / np.sqrt(MINUTES_PER_YEAR)
    elapsed = np.diff(minutes, prepend=minutes[:1] - 60) / 60.0 if len(minutes) else minutes
    step_scale = np.sqrt(np.clip(elapsed, 1.0, OVERNIGHT_SCALE_CAP**2))

    returns = rng.standard_normal(shape) * (sigma[:, None] * step_scale[None, :])
    log_close = np.log(start_price)[:, None] + np.cumsum(returns, axis=1)
    close = np.exp(log_close)
    opens = np.empty_like(close)
    opens[:, 1:] = close[:, :-1]
    opens[:, :1] = start_price[:, None]
    wick = np.abs(rng.standard_normal((2, *shape))) * (0.5 * sigma[:, None])
    high = np.maximum(opens, close) * np.exp(wick[0])
    low = np.minimum(opens, close) * np.exp(-wick[1])
    opens, high, low, close = (np.maximum(np.round(a, 2), 0.01) for a in (opens, high, low, close))
    high = np.maximum.reduce([high, opens, close])
    low = np.minimum.reduce([low, opens, close])

    n_illiquid = round(illiquid_share * n_symbols)
    illiquid = np.zeros(n_symbols, dtype=bool)
    illiquid[rng.choice(n_symbols, n_illiquid, replace=False)] = True
    coverage = np.where(illiquid, rng.uniform(*ILLIQUID_COVERAGE, n_symbols), 1.0 - missing_rate)
    traded = rng.random(shape) < coverage[:, None]

    # Busier open and close (a U-shaped day), thinner trade for illiquid names.
    u_shape = 1.0 + 3.0 * (2.0 * _position_in_run(elapsed) - 1.0) ** 4
    base = np.where(illiquid, rng.uniform(100, 1_000, n_symbols), rng.uniform(2e3, 5e4, n_symbols))
    volume = np.floor(base[:, None] * u_shape[None, :] * rng.lognormal(0.0, 0.7, shape)) + 1
    volume = np.where(illiquid[:, None], np.ceil(volume / 100.0) * 100.0, volume)

    arrays = {"open": opens, "high": high, "low": low, "close": close, "volume": volume}
    for a in arrays.values():
        a[~traded] = np.nan
    return arrays, illiquid


def synthetic_panel(
    n_symbols: int,
    minutes: np.ndarray,
    missing_rate: float = 0.02,
    seed: int = 0,
    *,
    illiquid_share: float = 0.0,
) -> Panel:
    """A Panel of `n_symbols` random-walk symbols over `minutes` (for benchmarks and tests).

    Each liquid symbol misses about `missing_rate` of the minutes at random.
    """
    minutes = _minutes_of(np.asarray(minutes))
    arrays, _ = _generate(n_symbols, minutes, illiquid_share, missing_rate, seed)
    return Panel(tuple(symbol_names(n_symbols)), minutes, **arrays)


def synthetic_bars(
    symbols: list[str],
    sessions_minutes: Sequence[SessionMinutes] | np.ndarray,
    *,
    illiquid_share: float = 0.2,
    missing_rate: float = 0.02,
    seed: int = 0,
) -> pd.DataFrame:
    """Random-walk 1-minute bars (BAR_COLUMNS) of `symbols` over the given sessions' minutes.

    Parameters
    ----------
    symbols
        Names of the symbols to generate.
    sessions_minutes
        SessionMinutes of consecutive sessions (the walk carries on from one to the next, with
        a larger move overnight), or a sorted array of minutes.
    illiquid_share
        Share of symbols that trade in only 20-40% of minutes (no row otherwise), like the
        real DBB and FXY files; they are picked at random.
    missing_rate
        Share of minutes a liquid symbol misses.
    seed
        Same seed, same bars.

    Returns
    -------
    pandas.DataFrame
        Sorted by symbol then ts; prices rounded to cents, OHLC consistent, volumes whole.
    """
    minutes = _minutes_of(sessions_minutes)
    arrays, _ = _generate(len(symbols), minutes, illiquid_share, missing_rate, seed)
    return Panel(tuple(symbols), minutes, **arrays).to_frame()
