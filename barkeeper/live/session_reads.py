"""Bar reads of `session_data` (last n bars, bars between two times), lock-free by the seqlock,
and the frames they hand to readers; `SessionData` takes them from the `SessionReads` mixin."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

import numpy as np
import pandas as pd

from barkeeper.core.kernels import BucketLayout, DerivedBars, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.errors import ParameterError
from barkeeper.live.session_records import Provenance, SessionRecord, UnknownSymbolError

T = TypeVar("T")

OlderBars = Callable[[str, int, int, date], dict[str, np.ndarray]]
"""(symbol, interval, n, before) -> up to the last `n` bars of sessions before `before`, as
column arrays oldest first: where a read continues past what `session_data` holds."""

OPTIMISTIC_TRIES = 3
"""Lock-free attempts of a read before it takes the lock (see `SessionReads._consistent`)."""


class SessionReads:
    """The bar reads of `SessionData`, over the state its `__init__` sets up."""

    _lock: threading.RLock
    _history: deque[SessionRecord]
    _current: SessionRecord | None
    _clock: int
    _closed: bool
    _version: int
    _older: OlderBars | None = None

    def read_older_with(self, reader: OlderBars | None) -> None:
        """Let `last_n_bars` continue into sessions older than the history (the repository)."""
        self._older = reader

    def _consistent(self, read: Callable[..., T], *args: object) -> T:
        """`read(*args)` as of one moment: lock-free while no mutation overlaps it.

        A seqlock: a read that saw the same even version before and after saw no mutation
        (under the GIL the counter is read and written atomically, in program order). After
        OPTIMISTIC_TRIES overlapping mutations the read takes the lock instead.
        """
        for _ in range(OPTIMISTIC_TRIES):
            before = self._version
            if before % 2 == 0:
                result = read(*args)
                if self._version == before:
                    return result
        with self._lock:
            return read(*args)

    def last_n_bars(self, symbol: str, n: int, interval: int = 1) -> pd.DataFrame:
        """The last `n` existing bars of `symbol` up to the clock, ascending, across sessions.

        Counts back over bars that exist (not clock time), through the history ring and then,
        with a reader set by `read_older_with`, into older sessions of the repository, so it
        returns exactly `n` bars whenever the repository holds them before the clock (empty
        sessions, holidays and early closes are simply passed over).
        Columns: ts, open, high, low, close, volume, then provenance (1m) or count and
        expected (derived).

        Notes
        -----
        The cost grows with `n` only: the read looks at a window of the symbol's row just
        wide enough to hold `n` bars (widened while gaps or empty buckets leave it short).
        """
        if n < 0:
            raise ParameterError(f"n: {n} must be zero or more")
        parts: list[dict[str, np.ndarray]] = []
        have = 0
        sources = self._sources(symbol, interval)
        for source in sources:
            if have >= n:
                break
            part = self._tail(source, interval, n - have)
            parts.append(part)
            have += len(part["ts"])
        if have < n and self._older is not None:
            parts.append(self._older(symbol, interval, n - have, sources[-1].record.session))
        return _frame(parts[::-1], interval)

    async def get_last_n_bars(self, symbol: str, n: int, interval: int = 1) -> pd.DataFrame:
        """Async form of `last_n_bars` (the seed's API)."""
        return self.last_n_bars(symbol, n, interval)

    def bars_between(
        self, symbol: str, start_ts: int, end_ts: int, interval: int = 1
    ) -> pd.DataFrame:
        """Existing bars of `symbol` with start_ts ≤ ts ≤ end_ts (and ts ≤ clock), ascending."""
        parts = []
        for source in self._sources(symbol, interval):
            minutes = source.record.minutes
            if len(minutes) and minutes[-1] < start_ts:
                break  # older sessions end earlier still
            parts.append(self._between(source, interval, start_ts, end_ts))
        return _frame(parts[::-1], interval)

    def _sources(self, symbol: str, interval: int) -> list[_Source]:
        """The sessions holding `symbol`, newest first, as of one moment."""
        if interval < 1:
            raise ParameterError(f"interval: {interval} must be 1 or more minutes")
        history, current, clock, closed = self._consistent(
            lambda: (tuple(self._history), self._current, self._clock, self._closed)
        )
        sources = []
        if current is not None and symbol in current.index:
            n_visible = len(current.minutes) if closed else _visible(current.minutes, clock)
            sources.append(_Source(current, current.index[symbol], n_visible, live=True))
        for r in reversed(history):
            if symbol in r.index:
                sources.append(_Source(r, r.index[symbol], len(r.minutes), live=False))
        if not sources:
            raise UnknownSymbolError(
                f"symbol: {symbol!r} is in neither session {self.session} nor its history"
            )
        return sources

    def _read(self, source: _Source, read: Callable[..., T], *args: object) -> T:
        """Run a read of the session's arrays: consistently if writes may still land there."""
        return self._consistent(read, *args) if source.live else read(*args)

    def _tail(self, source: _Source, interval: int, n: int) -> dict[str, np.ndarray]:
        """The last `n` existing bars (or fewer) of one session's visible bars."""
        record, row, n_visible = source.record, source.row, source.n_visible
        width = max(n, 1)
        if interval == 1:
            while True:
                lo = max(n_visible - width, 0)
                part = self._read(source, _minute_bars, record, row, lo, n_visible)
                if len(part["ts"]) >= n or lo == 0:
                    return {c: v[max(len(v) - n, 0) :] for c, v in part.items()}
                width *= 2
        if not source.live and interval in record.derived:
            d = record.derived[interval]
            keep = np.flatnonzero(d.count[row] > 0)
            return _derived_bars(d, row, keep[max(len(keep) - n, 0) :])
        layout = record.layout(interval)
        # Buckets complete by the clock: the last minute of the bucket is visible.
        n_buckets = int(np.searchsorted(layout.stop_idx, n_visible, side="right"))
        while True:
            first = max(n_buckets - width, 0)
            d = self._read(source, _derive_row, record, row, layout, first, n_buckets)
            keep = np.flatnonzero(d.count[0] > 0)
            if len(keep) >= n or first == 0:
                return _derived_bars(d, 0, keep[max(len(keep) - n, 0) :])
            width *= 2

    def _between(
        self, source: _Source, interval: int, start_ts: int, end_ts: int
    ) -> dict[str, np.ndarray]:
        """One session's visible bars with start_ts ≤ ts ≤ end_ts."""
        record, row, n_visible = source.record, source.row, source.n_visible
        if interval == 1:
            lo = int(np.searchsorted(record.minutes, start_ts, side="left"))
            hi = min(int(np.searchsorted(record.minutes, end_ts, side="right")), n_visible)
            return self._read(source, _minute_bars, record, row, lo, max(hi, lo))
        if not source.live and interval in record.derived:
            d = record.derived[interval]
            keep = np.flatnonzero(
                (d.count[row] > 0) & (d.starts >= start_ts) & (d.starts <= end_ts)
            )
            return _derived_bars(d, row, keep)
        layout = record.layout(interval)
        n_buckets = int(np.searchsorted(layout.stop_idx, n_visible, side="right"))
        first = int(np.searchsorted(layout.starts, start_ts, side="left"))
        stop = min(int(np.searchsorted(layout.starts, end_ts, side="right")), n_buckets)
        d = self._read(source, _derive_row, record, row, layout, first, max(stop, first))
        return _derived_bars(d, 0, np.flatnonzero(d.count[0] > 0))


@dataclass(frozen=True, eq=False)
class _Source:
    """One session a read draws on: the symbol's row and how many leading minutes are visible.

    `live`: the current session, where writes may still land, so reads must be consistent.
    """

    record: SessionRecord
    row: int
    n_visible: int
    live: bool


def _minute_bars(record: SessionRecord, row: int, lo: int, hi: int) -> dict[str, np.ndarray]:
    """The existing 1m bars of one row in minute columns lo:hi (fresh arrays)."""
    p = record.panel
    keep = np.flatnonzero(~np.isnan(p.close[row, lo:hi])) + lo
    data = {"ts": record.minutes[keep]}
    data.update({c: getattr(p, c)[row, keep] for c in PRICE_COLUMNS})
    data["provenance"] = record.provenance[row, keep]
    return data


def _derive_row(
    record: SessionRecord, row: int, layout: BucketLayout, first: int, stop: int
) -> DerivedBars:
    """Buckets first:stop of one symbol, derived from a one-row view of the 1m arrays; only
    real minutes count, so a bucket of fill-forward bars only is not read as a bar (as in the
    derived bars the upkeep stores)."""
    p = record.panel
    one = Panel(
        (p.symbols[row],), p.minutes, *(getattr(p, c)[row : row + 1] for c in PRICE_COLUMNS)
    )
    provenance = record.provenance[row : row + 1]
    real = (provenance != Provenance.NONE) & (provenance != Provenance.SYNTHETIC)
    return derive(one, layout, np.arange(first, stop), real)


def _derived_bars(d: DerivedBars, row: int, keep: np.ndarray) -> dict[str, np.ndarray]:
    data = {"ts": d.starts[keep]}
    data.update({c: getattr(d, c)[row, keep] for c in (*PRICE_COLUMNS, "count")})
    data["expected"] = d.expected[keep]
    return data


def _visible(minutes: np.ndarray, clock: int) -> int:
    """Number of leading minutes with ts ≤ clock."""
    return int(np.searchsorted(minutes, clock, side="right"))


_FRAME_COLUMNS = {
    1: ("ts", *PRICE_COLUMNS, "provenance"),
    0: ("ts", *PRICE_COLUMNS, "count", "expected"),
}


def _frame(parts: list[dict[str, np.ndarray]], interval: int) -> pd.DataFrame:
    """One frame of bars from per-session column arrays, oldest session first."""
    columns = _FRAME_COLUMNS[1 if interval == 1 else 0]
    parts = [p for p in parts if len(p["ts"])]
    if not parts:
        data = {c: np.empty(0, dtype=_DTYPES[c]) for c in columns}
    elif len(parts) == 1:
        data = parts[0]
    else:
        data = {c: np.concatenate([p[c] for p in parts]) for c in columns}
    return pd.DataFrame(data, copy=False)


_DTYPES = {
    "ts": np.int64,
    **dict.fromkeys(PRICE_COLUMNS, np.float64),
    "provenance": np.uint8,
    "count": np.int16,
    "expected": np.int16,
}
