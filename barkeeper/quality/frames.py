"""Frame preparation for the suites (pure pandas/numpy) and the rules read without GX.

`prepare_*` add the columns the suites read; `row_failures` and `hard_check_failures` apply them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from barkeeper.core.panel import BAR_COLUMNS
from barkeeper.quality.suites import load_suite_spec, resolve


def add_ohlc_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `null_fields`, `oc_max`, `oc_min`, `min_price`, `second_of_minute`.

    These are the columns the OHLC rules read. `null_fields` counts a row's nulls among
    BAR_COLUMNS (and `interval`): one rule instead of one per column halves GX's cost per
    cycle, which grows with the number of expectations, not rows.
    """
    out = frame.copy()
    checked = [c for c in (*BAR_COLUMNS, "interval") if c in out.columns]
    out["null_fields"] = out[checked].isna().sum(axis=1).to_numpy(np.int64)
    o = out["open"].to_numpy(dtype=np.float64)
    c = out["close"].to_numpy(dtype=np.float64)
    out["oc_max"] = np.maximum(o, c)
    out["oc_min"] = np.minimum(o, c)
    h, lo = out["high"].to_numpy(np.float64), out["low"].to_numpy(np.float64)
    # NaN-propagating like a row-wise min over (open, high, low, close)
    out["min_price"] = np.minimum(np.minimum(o, h), np.minimum(lo, c))
    ts = pd.to_numeric(out["ts"], errors="coerce").to_numpy(dtype=np.float64)
    out["second_of_minute"] = np.mod(ts, 60)
    return out


def prepare_bars_1m(
    frame: pd.DataFrame,
    expected_minutes_or_mask: np.ndarray | Sequence[int] | None,
    *,
    context: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Add the columns the `bars_1m` suite reads, for all symbols at once.

    Parameters
    ----------
    frame
        Bars to validate (columns BAR_COLUMNS, any order of rows; row order is kept).
    expected_minutes_or_mask
        The session's calendar minutes (int64 Unix seconds) or a boolean mask aligned with
        `frame`'s rows; `None` treats every bar as inside the session.
    context
        Earlier bars of the same symbols (BAR_COLUMNS), not validated: they give the first
        rows of `frame` their previous close and running count of unchanged bars. Pass the last
        `max_unchanged_run` minutes for exact run lengths across cycles.

    Returns
    -------
    pandas.DataFrame
        `frame` plus `null_fields`, `oc_max`, `oc_min`, `min_price`, `second_of_minute`,
        `in_session` (bool),
        `move_vs_prev_close` (NaN without a previous close) and `unchanged_run` (int).
    """
    out = add_ohlc_columns(frame.reset_index(drop=True))
    ts = pd.to_numeric(out["ts"], errors="coerce").to_numpy(dtype=np.float64)
    if expected_minutes_or_mask is None:
        out["in_session"] = True
    else:
        arr = np.asarray(expected_minutes_or_mask)
        if arr.dtype == bool:
            if len(arr) != len(out):
                raise ValueError(f"in-session mask has {len(arr)} rows, frame has {len(out)}")
            out["in_session"] = arr
        else:
            out["in_session"] = _member(ts, np.sort(arr.astype(np.float64)))
    move, run = _moves_and_runs(out, context)
    out["move_vs_prev_close"] = move
    out["unchanged_run"] = run
    return out


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """`np.isin(values, sorted_set)` by binary search (a session's minutes are few and sorted)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


def _moves_and_runs(
    frame: pd.DataFrame, context: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: excursion of high/low against the previous close, and the unchanged-bar run."""
    cols = list(BAR_COLUMNS)
    n_ctx = 0 if context is None else len(context)
    both = frame[cols] if not n_ctx else pd.concat([context[cols], frame[cols]], ignore_index=True)
    # Context rows first so that, on equal keys, the validated row comes after its context.
    codes, _ = pd.factorize(both["symbol"])
    ts = pd.to_numeric(both["ts"], errors="coerce").to_numpy(np.float64)
    order = np.lexsort((np.arange(len(both)), ts, codes))
    sym = codes[order]
    o, h, lo, c = (both[k].to_numpy(np.float64)[order] for k in ("open", "high", "low", "close"))
    prev_close = np.empty_like(c)
    prev_close[:1] = np.nan
    prev_close[1:] = c[:-1]
    new_symbol = np.ones(len(sym), dtype=bool)
    new_symbol[1:] = sym[1:] != sym[:-1]
    prev_close[new_symbol] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        move = np.fmax(h / prev_close - 1.0, 1.0 - lo / prev_close)
    move[~(prev_close > 0)] = np.nan
    flat = (o == prev_close) & (h == prev_close) & (lo == prev_close) & (c == prev_close)
    idx = np.arange(len(flat))
    last_reset = np.maximum.accumulate(np.where(flat, 0, idx))
    run = np.where(flat, idx - last_reset, 0)
    inverse = np.empty_like(order)
    inverse[order] = idx
    keep = inverse[n_ctx:]
    return move[keep], run[keep].astype(np.int64)


def prepare_derived(derived: pd.DataFrame, bars_1m: pd.DataFrame) -> pd.DataFrame:
    """Add the OHLC columns and `volume_mismatch` (against the 1m bars) to derived bars.

    `derived` has BAR_COLUMNS plus `interval` (minutes), `constituents` and
    `expected_constituents`; a derived bar covers [ts, end_ts) when an `end_ts` column is given
    (short buckets at a segment's end, the daily bar), else [ts, ts + interval * 60). The 1m
    volume sum is found with one `searchsorted` over (symbol, ts) keys, not a loop.
    """
    out = add_ohlc_columns(derived.reset_index(drop=True))
    codes = pd.Categorical(
        pd.concat([bars_1m["symbol"], out["symbol"]], ignore_index=True).astype(str)
    )
    one_code = codes.codes[: len(bars_1m)].astype(np.int64)
    der_code = codes.codes[len(bars_1m) :].astype(np.int64)
    # float keys: exact below 2**53, and a null ts or interval (a rule failure) stays NaN.
    one_key = one_code * 2.0**34 + bars_1m["ts"].to_numpy(np.float64)
    order = np.argsort(one_key, kind="stable")
    one_key = one_key[order]
    cum = np.concatenate([[0.0], np.cumsum(bars_1m["volume"].to_numpy(np.float64)[order])])
    start = der_code * 2.0**34 + pd.to_numeric(out["ts"], errors="coerce").to_numpy(np.float64)
    if "end_ts" in out.columns:
        end = der_code * 2.0**34 + pd.to_numeric(out["end_ts"], errors="coerce").to_numpy(
            np.float64
        )
    else:
        end = start + pd.to_numeric(out["interval"], errors="coerce").to_numpy(np.float64) * 60
    lo = np.searchsorted(one_key, start)
    hi = np.searchsorted(one_key, np.nan_to_num(end, nan=-np.inf))
    hi = np.maximum(hi, lo)
    constituent_volume = cum[hi] - cum[lo]
    out["constituent_volume"] = constituent_volume
    out["volume_mismatch"] = np.abs(
        out["volume"].to_numpy(np.float64) - constituent_volume
    ) / np.maximum(1.0, np.abs(constituent_volume))
    return out


def prepare_session_quality(metrics: pd.DataFrame) -> pd.DataFrame:
    """Add `unfillable_share` = unfillable_bars / expected_bars (0 for an empty session).

    Idempotent: a frame that already has the column is returned as it is.
    """
    if "unfillable_share" in metrics.columns:
        return metrics
    out = metrics.reset_index(drop=True).copy()
    expected = out["expected_bars"].to_numpy(np.float64)
    unfillable = out["unfillable_bars"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["unfillable_share"] = np.where(expected > 0, unfillable / expected, 0.0)
    return out


# ---------------------------------------------------------------- the rules without GX


def row_failures(
    expectation: Mapping[str, Any], frame: pd.DataFrame, params: Mapping[str, float]
) -> np.ndarray | None:
    """Rows of `frame` that break one suite expectation, read as GX reads it; None if not row-wise.

    Null handling follows GX: a column-map rule skips null values, a pair rule skips rows where
    both values are null, a compound-unique rule skips rows where all values are null.
    """
    kind, kw = expectation["type"], expectation["kwargs"]
    if kind == "expect_column_values_to_not_be_null":
        return frame[kw["column"]].isna().to_numpy()
    if kind == "expect_column_values_to_be_between":
        values = pd.to_numeric(frame[kw["column"]], errors="coerce").to_numpy(np.float64)
        ok = np.ones(len(values), dtype=bool)
        low, high = resolve(kw.get("min_value"), params), resolve(kw.get("max_value"), params)
        with np.errstate(invalid="ignore"):
            if low is not None:
                ok &= values > low if kw.get("strict_min") else values >= low
            if high is not None:
                ok &= values < high if kw.get("strict_max") else values <= high
        return ~ok & ~np.isnan(values)
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a = frame[kw["column_A"]].to_numpy(np.float64)
        b = frame[kw["column_B"]].to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            ok = a >= b if kw.get("or_equal") else a > b
        return ~ok & ~(np.isnan(a) & np.isnan(b))
    if kind == "expect_column_values_to_be_in_set":
        col = frame[kw["column"]]
        return (~col.isin(kw["value_set"]) & col.notna()).to_numpy()
    if kind == "expect_compound_columns_to_be_unique":
        sub = frame[list(kw["column_list"])]
        return (sub.duplicated(keep=False) & sub.notna().any(axis=1)).to_numpy()
    return None


@functools.cache
def _hard_check_rules() -> tuple[dict[str, Any], ...]:
    spec = load_suite_spec("bars_1m")
    return tuple(e for e in spec["expectations"] if e["meta"].get("hard_check"))


def hard_check_failures(frame: pd.DataFrame) -> np.ndarray:
    """Rows that break a critical OHLC rule of the `bars_1m` suite, without GX.

    Parameters
    ----------
    frame
        Bars with BAR_COLUMNS.

    Returns
    -------
    numpy.ndarray
        Boolean, one per row: True where the bar must be repaired.

    Notes
    -----
    The rules are the suite's expectations marked `meta.hard_check` (nulls, high/low against
    open/close, positive prices, non-negative volume, whole minutes), read from the same JSON
    file GX validates, so the two cannot drift apart.
    """
    prepared = add_ohlc_columns(frame)
    failed = np.zeros(len(frame), dtype=bool)
    for exp in _hard_check_rules():
        failed |= row_failures(exp, prepared, {})
    return failed
