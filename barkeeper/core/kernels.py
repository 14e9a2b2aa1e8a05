"""The upkeep kernels: gap detection, bar quality and N-minute bar derivation.

Pure numpy over the (symbols x minutes) arrays of a Panel, one call for all symbols: the
upkeep runs them every cycle, so their cost must not grow with a per-symbol Python loop.
Derivation groups a session's contiguous minute columns into buckets and reduces each bucket
with `ufunc.reduceat`, which walks the arrays once per statistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from barkeeper.core.calendar import REGULAR
from barkeeper.core.panel import Panel
from barkeeper.errors import ParameterError

DAILY = 1440
"""Interval code of the daily bar: one bucket over the session's regular minutes."""

Anchor = Literal["session", "clock"]


@dataclass(eq=False)
class GapRuns:
    """Runs of consecutive missing expected minutes, sorted by symbol then start.

    Indices point into the panel's symbols and minutes; `stop_idx` is exclusive.
    """

    symbol_idx: np.ndarray
    start_idx: np.ndarray
    stop_idx: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return len(self.symbol_idx)

    def per_symbol(self, n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
        """(number of runs, number of missing minutes) per symbol, each shape (S,)."""
        runs = np.bincount(self.symbol_idx, minlength=n_symbols)
        missing = np.bincount(self.symbol_idx, weights=self.length, minlength=n_symbols)
        return runs, missing.astype(np.int64)


def _expected_mask(n_minutes: int, expected: np.ndarray | None, upto: int | None) -> np.ndarray:
    mask = np.ones(n_minutes, dtype=bool) if expected is None else np.asarray(expected, bool)
    if mask.shape != (n_minutes,):
        raise ParameterError(f"expected: shape {mask.shape} does not match {n_minutes} minutes")
    if upto is not None:
        mask = mask.copy()
        mask[max(upto, 0) :] = False
    return mask


def find_gaps(
    present: np.ndarray, expected: np.ndarray | None = None, upto: int | None = None
) -> GapRuns:
    """Group the expected minutes that have no bar into runs of consecutive minutes.

    Parameters
    ----------
    present
        Boolean (S, M): True where a bar exists.
    expected
        Boolean (M,): the minutes a bar is due at (default: every column). A column that is not
        expected breaks a run, so runs never span one.
    upto
        Only columns before this index are examined (the session clock during a replay).
    """
    present = np.asarray(present, dtype=bool)
    n_symbols, n_minutes = present.shape
    missing = ~present & _expected_mask(n_minutes, expected, upto)
    edges = np.zeros((n_symbols, n_minutes + 1), dtype=np.int8)
    edges[:, 1:] = missing
    edges[:, :-1] -= missing
    # -1 where a run starts (0→1), +1 one past where it ends (1→0); row-major order keeps the
    # k-th start and the k-th stop of a row paired.
    starts_r, starts_c = np.nonzero(edges == -1)
    _, stops_c = np.nonzero(edges == 1)
    return GapRuns(
        symbol_idx=starts_r.astype(np.int64),
        start_idx=starts_c.astype(np.int64),
        stop_idx=stops_c.astype(np.int64),
        length=(stops_c - starts_c).astype(np.int64),
    )


def bar_quality(
    present: np.ndarray, expected: np.ndarray | None = None, upto: int | None = None
) -> np.ndarray:
    """Per-symbol actual / expected x 100 over the expected minutes (the seed's `bar_quality`).

    Notes
    -----
    With no expected minute (before the open, or `upto=0`) nothing is missing, so the quality
    is 100.0: a number, never NaN, so it serialises and compares plainly.
    """
    present = np.asarray(present, dtype=bool)
    mask = _expected_mask(present.shape[1], expected, upto)
    n_expected = int(mask.sum())
    if n_expected == 0:
        return np.full(present.shape[0], 100.0)
    actual = np.count_nonzero(present[:, mask], axis=1)
    return actual * 100.0 / n_expected


@dataclass(frozen=True, eq=False)
class BucketLayout:
    """How a session's minute columns group into the buckets of one interval.

    Bucket `b` covers columns `start_idx[b]:stop_idx[b]` (contiguous); `bucket_of` maps each
    column to its bucket (-1: in no bucket, e.g. extended-hours minutes of the daily bar);
    `starts` are the bucket labels (Unix seconds, bar start); `expected` counts the columns.
    """

    interval: int
    anchor: Anchor
    start_idx: np.ndarray
    stop_idx: np.ndarray
    starts: np.ndarray
    expected: np.ndarray
    bucket_of: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def dirty(self, columns: np.ndarray) -> np.ndarray:
        """Sorted bucket indices that contain any of the minute `columns` (to re-derive)."""
        b = self.bucket_of[np.asarray(columns, dtype=np.int64)]
        return np.unique(b[b >= 0])


def bucket_layout(
    minutes: np.ndarray,
    segment: np.ndarray | None,
    n: int,
    anchor: Anchor = "session",
) -> BucketLayout:
    """Bucket the sorted minutes of a session into `n`-minute bars.

    Parameters
    ----------
    minutes
        int64 Unix seconds (UTC, bar start), sorted: the session's expected minutes.
    segment
        uint8 segment code per minute (calendar.REGULAR/PRE/POST); None means all regular.
    n
        Bucket width in minutes, a whole number ≥ 2, or DAILY.
    anchor
        "session": buckets start at each segment's first minute (60m bars at 09:30, 10:30, …;
        the last may be short) and never straddle segments. "clock": a bucket starts at
        floor(ts / (n·60))·n·60 on the UTC epoch clock, whatever the segment.

    Notes
    -----
    DAILY is one bucket over the regular minutes labelled with the open; pre- and post-market
    minutes belong to no daily bucket, and `anchor` does not apply.
    """
    minutes = np.asarray(minutes, dtype=np.int64)
    seg = np.zeros(len(minutes), np.uint8) if segment is None else np.asarray(segment, np.uint8)
    if seg.shape != minutes.shape:
        raise ParameterError(f"segment: shape {seg.shape} does not match minutes {minutes.shape}")
    if not isinstance(n, int | np.integer) or n < 2:
        raise ParameterError(f"interval: {n!r} must be a whole number of minutes, 2 or more")
    if anchor not in ("session", "clock"):
        raise ParameterError(f"anchor: {anchor!r} must be 'session' or 'clock'")
    if n == DAILY:
        return _daily_layout(minutes, seg)

    width = int(n) * 60
    if anchor == "clock":
        key = minutes // width
        labels_of = key * width
    else:
        new_run = np.ones(len(minutes), dtype=bool)
        new_run[1:] = seg[1:] != seg[:-1]
        run_id = np.cumsum(new_run) - 1
        run_origin = minutes[new_run][run_id]
        key = (minutes - run_origin) // width
        labels_of = run_origin + key * width
    boundary = np.ones(len(minutes), dtype=bool)
    boundary[1:] = key[1:] != key[:-1]
    if anchor == "session":
        boundary |= new_run
    start_idx = np.flatnonzero(boundary)
    stop_idx = np.append(start_idx[1:], len(minutes))
    return _layout(int(n), anchor, start_idx, stop_idx, labels_of[start_idx], len(minutes))


def _daily_layout(minutes: np.ndarray, seg: np.ndarray) -> BucketLayout:
    regular = np.flatnonzero(seg == REGULAR)
    if len(regular) == 0:
        empty = np.empty(0, np.int64)
        return _layout(DAILY, "session", empty, empty, empty, len(minutes))
    lo, hi = int(regular[0]), int(regular[-1]) + 1
    if hi - lo != len(regular):
        raise ParameterError("segment: the regular minutes are not contiguous")
    return _layout(DAILY, "session", np.array([lo]), np.array([hi]), minutes[[lo]], len(minutes))


def _layout(
    n: int,
    anchor: Anchor,
    start_idx: np.ndarray,
    stop_idx: np.ndarray,
    starts: np.ndarray,
    n_minutes: int,
) -> BucketLayout:
    start_idx = np.asarray(start_idx, dtype=np.int64)
    stop_idx = np.asarray(stop_idx, dtype=np.int64)
    counts = stop_idx - start_idx
    bucket_of = np.full(n_minutes, -1, dtype=np.int64)
    if len(start_idx):
        bucket_of[start_idx[0] : stop_idx[-1]] = np.repeat(np.arange(len(start_idx)), counts)
    return BucketLayout(
        interval=n,
        anchor=anchor,
        start_idx=start_idx,
        stop_idx=stop_idx,
        starts=np.asarray(starts, dtype=np.int64),
        expected=counts.astype(np.int16),
        bucket_of=bucket_of,
    )


@dataclass(eq=False)
class DerivedBars:
    """N-minute bars of every symbol over a set of buckets; NaN prices where a bucket is empty.

    `buckets` are the layout's bucket indices these columns stand for.
    """

    interval: int
    starts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    count: np.ndarray
    expected: np.ndarray
    buckets: np.ndarray


def derive(
    panel: Panel,
    layout: BucketLayout,
    buckets: np.ndarray | None = None,
    real: np.ndarray | None = None,
) -> DerivedBars:
    """Aggregate 1-minute bars into the layout's buckets for all symbols at once.

    open = first present bar, high = max, low = min, close = last present bar, volume = sum;
    `count` is the number of real bars in the bucket. A bucket with no bar has NaN prices.

    Parameters
    ----------
    panel
        The session's bars; its minutes must be the ones the layout was built from.
    layout
        From `bucket_layout`.
    buckets
        Sorted bucket indices to compute (default: all). The cost grows with the columns of
        these buckets only, so the upkeep re-derives just the buckets new bars touched.
    real
        Boolean (S, M): the bars that count as constituents (default: every present bar).
        Synthetic fill-forward bars still shape the prices (a carried price moves the open,
        high and low of a mixed bucket) but never the count: a bucket of synthetic bars only
        has prices and count 0.
    """
    if buckets is None:
        idx = np.arange(len(layout), dtype=np.int64)
    else:
        idx = np.asarray(buckets, dtype=np.int64)
        if idx.size and (np.any(np.diff(idx) <= 0) or idx[0] < 0 or idx[-1] >= len(layout)):
            raise ParameterError("buckets: must be sorted, unique indices into the layout")
    n_symbols = panel.shape[0]
    shape = (n_symbols, len(idx))
    if len(idx) == 0 or n_symbols == 0:
        return _derived(layout, idx, *(np.full(shape, np.nan) for _ in range(5)), shape)

    first, last = int(layout.start_idx[idx[0]]), int(layout.stop_idx[idx[-1]])
    lengths = layout.stop_idx[idx] - layout.start_idx[idx]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if last - first == int(lengths.sum()):
        cols: slice | np.ndarray = slice(first, last)
        colmap = np.arange(first, last)
    else:
        # Gather only the chosen buckets' columns, bucket after bucket.
        colmap = np.repeat(layout.start_idx[idx] - offsets, lengths)
        colmap += np.arange(int(lengths.sum()))
        cols = colmap

    close = panel.close[:, cols]
    present = ~np.isnan(close)
    counted = present if real is None else present & real[:, cols]
    count = np.add.reduceat(counted, offsets, axis=1, dtype=np.int16)
    empty = np.add.reduceat(present, offsets, axis=1, dtype=np.int16) == 0
    high = np.maximum.reduceat(np.where(present, panel.high[:, cols], -np.inf), offsets, axis=1)
    low = np.minimum.reduceat(np.where(present, panel.low[:, cols], np.inf), offsets, axis=1)
    volume = np.add.reduceat(np.where(present, panel.volume[:, cols], 0.0), offsets, axis=1)

    n_cols = len(colmap)
    pos = np.arange(n_cols, dtype=np.int32)
    first_pos = np.minimum.reduceat(np.where(present, pos, n_cols - 1), offsets, axis=1)
    last_pos = np.maximum.reduceat(np.where(present, pos, 0), offsets, axis=1)
    rows = np.arange(n_symbols)[:, None]
    opens = panel.open[rows, colmap[first_pos]]
    closes = close[rows, last_pos]
    for arr in (opens, high, low, closes, volume):
        arr[empty] = np.nan
    return _derived(layout, idx, opens, high, low, closes, volume, count)


def _derived(
    layout: BucketLayout,
    idx: np.ndarray,
    opens: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    count: np.ndarray | tuple[int, int],
) -> DerivedBars:
    if isinstance(count, tuple):
        count = np.zeros(count, dtype=np.int16)
    return DerivedBars(
        interval=layout.interval,
        starts=layout.starts[idx],
        open=opens,
        high=high,
        low=low,
        close=close,
        volume=volume,
        count=count,
        expected=layout.expected[idx],
        buckets=idx,
    )


def derived_frame(d: DerivedBars, symbols: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """The bars that exist as a long frame (symbol, ts, OHLCV, count, expected), by symbol, ts."""
    r, c = np.nonzero(d.count > 0)
    return pd.DataFrame(
        {
            "symbol": np.asarray(symbols, dtype=object)[r],
            "ts": d.starts[c],
            "open": d.open[r, c],
            "high": d.high[r, c],
            "low": d.low[r, c],
            "close": d.close[r, c],
            "volume": d.volume[r, c],
            "count": d.count[r, c],
            "expected": d.expected[c],
        }
    )
