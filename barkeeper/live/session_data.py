"""`session_data`: the running session's bars in memory, shared by the coordinator and the upkeep.

One session is a dense symbol x minute Panel (float64 OHLCV, NaN = no bar) plus a uint8
provenance array, so a whole minute of bars is one slice write and the upkeep's kernels see
numpy arrays without conversion. A bounded ring of previous sessions (trailing history) lets
reads count back across sessions.

Threads: the coordinator writes while the upkeep backfills, repairs and reads. One RLock guards
every array; it is held only while arrays are written or copied, never during computation.
A Condition on that lock carries the session clock to waiting threads. Reads of one symbol do
not take the lock: a version counter, odd while a mutation runs and bumped by each one, tells a
read that a mutation overlapped it (a seqlock), and the read retries, under the lock if it
keeps losing. So a strategy's read never waits behind a copy of every symbol's arrays.

Provenance rule (makes the end state independent of timing): a write may land on a slot only if

- FEED: always. The feed is the primary source; a late or duplicated feed bar replaces what is
  there, and the upkeep repairs it again if it is bad.
- BACKFILL: the slot is empty or SYNTHETIC (a backfill racing a late feed bar loses).
- REPAIRED: the slot is empty, SYNTHETIC, or holds a bar that fails `invalid_bars` (a repair
  racing a clean late feed bar loses, so the feed bar keeps provenance FEED).
- SYNTHETIC: the slot is empty (anything real replaces a synthetic bar).

So whatever the interleaving, a slot ends as the last feed bar delivered for it, repaired if
that bar is invalid; else the repository's bar; else synthetic or empty.

Visibility: in the current session, reads return only bars with ts ≤ clock; a derived bar is
returned once the last minute of its bucket is ≤ clock (complete by time; `count < expected`
still flags a bucket with missing minutes), never a bucket still forming. Derived bars of the
current session are computed on read from the 1m bars, so they never lag behind a backfill.
A read derives only the symbol's row and only the buckets it returns (the last n, or those
between two times), so its cost grows with n, not with the number of symbols or minutes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import date
from enum import IntEnum
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd

from barkeeper.core.kernels import BucketLayout, DerivedBars, bucket_layout, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.errors import BarkeeperError, ParameterError

T = TypeVar("T")

OPTIMISTIC_TRIES = 3
"""Lock-free attempts of a read before it takes the lock (see `SessionData._consistent`)."""


class Provenance(IntEnum):
    """Where a stored bar came from (the uint8 code in the provenance array)."""

    NONE = 0
    FEED = 1
    BACKFILL = 2
    REPAIRED = 3
    SYNTHETIC = 4


class UnknownSymbolError(BarkeeperError, KeyError):
    """A symbol that neither the current session nor the history holds."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SessionMinutesLike(Protocol):
    session: date
    minutes: np.ndarray
    segment: np.ndarray


def invalid_bars(
    open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> np.ndarray:
    """Bars that fail the hard OHLC checks; NaN (no bar) counts as not invalid.

    A bar is invalid when a price is not finite or ≤ 0, high < max(open, close, low),
    low > min(open, close), or volume is negative or not finite.
    """
    with np.errstate(invalid="ignore"):
        o, h, lo, c, v = (np.asarray(a, dtype=np.float64) for a in (open, high, low, close, volume))
        ok = (
            np.isfinite(o)
            & np.isfinite(h)
            & np.isfinite(lo)
            & np.isfinite(v)
            & (lo > 0)
            & (o > 0)
            & (c > 0)
            & (h >= np.maximum(np.maximum(o, c), lo))
            & (lo <= np.minimum(o, c))
            & (v >= 0)
        )
        return ~ok & ~np.isnan(c)


@dataclass(eq=False)
class SymbolMetrics:
    """Per-symbol counters of the current session, one array (S,) per field, set by the upkeep."""

    expected_bars: np.ndarray
    actual_bars: np.ndarray
    bar_quality: np.ndarray
    gaps: np.ndarray
    missing_bars: np.ndarray
    backfilled_bars: np.ndarray
    repaired_bars: np.ndarray
    unfillable_bars: np.ndarray
    no_trade_bars: np.ndarray
    synthetic_bars: np.ndarray
    outside_bars: np.ndarray

    @classmethod
    def zeros(cls, n_symbols: int) -> SymbolMetrics:
        arrays = {f.name: np.zeros(n_symbols, dtype=np.int64) for f in fields(cls)}
        # Nothing is expected before the first upkeep cycle, so nothing is missing yet.
        arrays["bar_quality"] = np.full(n_symbols, 100.0)
        return cls(**arrays)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def row(self, i: int) -> dict[str, int | float]:
        return {name: getattr(self, name)[i].item() for name in self.names()}

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.names())


@dataclass(eq=False)
class SessionRecord:
    """One session's bars: the current one while it runs, or an entry of the history ring."""

    session: date
    minutes: np.ndarray
    segment: np.ndarray
    panel: Panel
    provenance: np.ndarray
    derived: dict[int, DerivedBars] = field(default_factory=dict)
    layouts: dict[int, BucketLayout] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {s: i for i, s in enumerate(self.panel.symbols)}

    def layout(self, interval: int) -> BucketLayout:
        if interval not in self.layouts:
            self.layouts[interval] = bucket_layout(self.minutes, self.segment, interval)
        return self.layouts[interval]

    @property
    def nbytes(self) -> int:
        arrays = [getattr(self.panel, c) for c in PRICE_COLUMNS] + [self.provenance]
        for d in self.derived.values():
            arrays += [d.open, d.high, d.low, d.close, d.volume, d.count]
        return sum(a.nbytes for a in arrays)


@dataclass(eq=False)
class SessionSnapshot:
    """Copies of the current session's arrays for the upkeep or persistence.

    `dirty` is the change mask taken atomically with the copy (None unless asked for).
    """

    session: date
    minutes: np.ndarray
    segment: np.ndarray
    panel: Panel
    provenance: np.ndarray
    clock: int
    closed: bool
    derived: dict[int, DerivedBars]
    dirty: np.ndarray | None


_WRITE_ALLOWED = {
    Provenance.BACKFILL: (Provenance.NONE, Provenance.SYNTHETIC),
    Provenance.REPAIRED: (Provenance.NONE, Provenance.SYNTHETIC),
    Provenance.SYNTHETIC: (Provenance.NONE,),
}


class SessionData:
    """The running session's bars, the trailing history, the session clock and the metrics.

    Parameters
    ----------
    history_sessions
        How many previous sessions the history ring keeps (0: none).
    """

    def __init__(self, history_sessions: int = 0) -> None:
        if history_sessions < 0:
            raise ParameterError(f"history_sessions: {history_sessions} must be zero or more")
        self._lock = threading.RLock()
        self._clock_changed = threading.Condition(self._lock)
        self._history: deque[SessionRecord] = deque(maxlen=history_sessions or None)
        self._history_sessions = history_sessions
        self._current: SessionRecord | None = None
        self._dirty = np.zeros((0, 0), dtype=bool)
        self._metrics = SymbolMetrics.zeros(0)
        self._clock = -1
        self._closed = False
        self._version = 0  # even when no mutation runs; see _mutating and _consistent

    @contextmanager
    def _mutating(self) -> Iterator[None]:
        """Hold the lock and mark a mutation in progress for the lock-free readers."""
        with self._clock_changed:
            self._version += 1
            try:
                yield
            finally:
                self._version += 1

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

    # ------------------------------------------------------------------ session lifecycle
    def start_session(
        self,
        minutes: SessionMinutesLike,
        symbols: Sequence[str],
        derived: Mapping[int, BucketLayout] | None = None,
    ) -> None:
        """Begin a session: the current one (if any) rolls into the history ring.

        Parameters
        ----------
        minutes
            The session's expected minutes (calendar.SessionMinutes or anything with
            `session`, `minutes`, `segment`).
        symbols
            The symbols replayed, in the row order of every array.
        derived
            Layouts of the derived intervals the upkeep keeps (interval → BucketLayout).

        Notes
        -----
        The rolled session's derived bars are recomputed from its final 1m bars (about 10 ms
        for 2,000 symbols, 4 intervals), so history never holds derived bars that lag behind
        a late write.
        """
        symbols = tuple(symbols)
        if len(set(symbols)) != len(symbols):
            raise ParameterError("symbols: each symbol may appear only once")
        mins = np.asarray(minutes.minutes, dtype=np.int64)
        seg = np.asarray(minutes.segment, dtype=np.uint8)
        if seg.shape != mins.shape or np.any(np.diff(mins) <= 0):
            raise ParameterError("minutes: must be sorted, unique, with one segment per minute")
        record = SessionRecord(
            session=minutes.session,
            minutes=mins,
            segment=seg,
            panel=Panel.empty(symbols, mins),
            provenance=np.zeros((len(symbols), len(mins)), dtype=np.uint8),
            layouts=dict(derived or {}),
        )
        with self._mutating():
            previous = self._current
            self._current = record
            self._dirty = np.zeros(record.provenance.shape, dtype=bool)
            self._metrics = SymbolMetrics.zeros(len(symbols))
            self._clock = -1
            self._closed = False
            self._clock_changed.notify_all()
        if previous is not None:
            self._roll(previous)

    def _roll(self, record: SessionRecord) -> None:
        if self._history_sessions == 0:
            return
        record.derived = {
            interval: derive(record.panel, layout) for interval, layout in record.layouts.items()
        }
        with self._mutating():
            self._history.append(record)

    def add_history(
        self,
        session: date,
        minutes: np.ndarray,
        segment: np.ndarray,
        panel: Panel,
        derived: Mapping[int, DerivedBars] | None = None,
        provenance: np.ndarray | None = None,
    ) -> None:
        """Append a trailing-history session loaded before the first open (oldest first).

        `provenance` defaults to BACKFILL where the panel has a bar (history comes from the
        repository). Beyond `history_sessions` the oldest session is dropped.
        """
        if self._history_sessions == 0:
            return
        mins = np.asarray(minutes, dtype=np.int64)
        if panel.shape[1] != len(mins):
            raise ParameterError(f"panel: {panel.shape[1]} minutes, expected {len(mins)}")
        if provenance is None:
            provenance = np.where(panel.present, Provenance.BACKFILL, Provenance.NONE)
        record = SessionRecord(
            session=session,
            minutes=mins,
            segment=np.asarray(segment, dtype=np.uint8),
            panel=panel,
            provenance=np.asarray(provenance, dtype=np.uint8),
            derived=dict(derived or {}),
        )
        with self._mutating():
            newest = self._history[-1].session if self._history else None
            if newest is not None and session <= newest:
                raise ParameterError(
                    f"session: history {session} must come after {newest} (add oldest first)"
                )
            if self._current is not None and session >= self._current.session:
                raise ParameterError(
                    f"session: history {session} must come before {self._current.session}"
                )
            self._history.append(record)

    def close_session(self) -> None:
        """Mark the current session finished: every bar is visible, waiters wake up."""
        with self._mutating():
            self._closed = True
            self._clock_changed.notify_all()

    # ------------------------------------------------------------------ properties
    def _require_current(self) -> SessionRecord:
        if self._current is None:
            raise ParameterError("session_data: no session started (call start_session first)")
        return self._current

    @property
    def session(self) -> date | None:
        return None if self._current is None else self._current.session

    @property
    def symbols(self) -> tuple[str, ...]:
        return () if self._current is None else self._current.panel.symbols

    @property
    def minutes(self) -> np.ndarray:
        return self._require_current().minutes

    @property
    def segment(self) -> np.ndarray:
        return self._require_current().segment

    @property
    def layouts(self) -> dict[int, BucketLayout]:
        return dict(self._require_current().layouts)

    @property
    def history(self) -> tuple[date, ...]:
        """Sessions in the history ring, oldest first."""
        with self._lock:
            return tuple(r.session for r in self._history)

    @property
    def clock(self) -> int:
        """Start ts of the last fully delivered minute; -1 before the open."""
        return self._clock

    @property
    def closed(self) -> bool:
        return self._closed

    def symbol_index(self, symbols: str | Sequence[str]) -> np.ndarray | int:
        """Row index of one symbol (int) or of many (int64 array) in the current session."""
        index = self._require_current().index
        try:
            if isinstance(symbols, str):
                return index[symbols]
            return np.fromiter((index[s] for s in symbols), dtype=np.int64, count=len(symbols))
        except KeyError as exc:
            raise UnknownSymbolError(
                f"symbol: {exc.args[0]!r} is not replayed in session {self.session}"
            ) from None

    # ------------------------------------------------------------------ clock
    def advance_clock(self, ts: int) -> None:
        """Set the clock to `ts` (the minute just delivered) and wake threads waiting on it."""
        with self._mutating():
            self._clock = int(ts)
            self._clock_changed.notify_all()

    def wait_for_clock(self, ts: int, timeout: float | None = None) -> bool:
        """Block until the clock reaches `ts` or the session closes; False on timeout."""
        with self._clock_changed:
            return self._clock_changed.wait_for(
                lambda: self._clock >= ts or self._closed, timeout=timeout
            )

    # ------------------------------------------------------------------ writes
    def write_minute(
        self,
        minute_idx: int,
        sym_idx: np.ndarray,
        open: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        provenance: Provenance = Provenance.FEED,
    ) -> int:
        """Write one minute's bars of many symbols as one slice (the coordinator's fast path).

        `sym_idx` must be unique row indices. Returns the number of slots written (fewer than
        given where the provenance rule refuses a slot).
        """
        m = int(minute_idx)
        rows = np.asarray(sym_idx, dtype=np.intp)
        with self._mutating():
            cur = self._require_current()
            if provenance != Provenance.FEED:
                keep = self._allowed(cur, rows, np.full(len(rows), m), Provenance(provenance))
                rows = rows[keep]
                open, high, low, close, volume = (
                    np.asarray(a)[keep] for a in (open, high, low, close, volume)
                )
            # Through the minute's column view: a 1-d scatter is ~1.4x the 2-d mixed index.
            p = cur.panel
            p.open[:, m][rows] = open
            p.high[:, m][rows] = high
            p.low[:, m][rows] = low
            p.close[:, m][rows] = close
            p.volume[:, m][rows] = volume
            cur.provenance[:, m][rows] = provenance
            self._dirty[:, m][rows] = True
        return len(rows)

    def write_bars(
        self,
        sym_idx: np.ndarray,
        minute_idx: np.ndarray,
        open: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        provenance: Provenance,
    ) -> np.ndarray:
        """Scatter-write bars into (symbol, minute) slots: backfill, repair, late bars.

        Returns a boolean mask of the rows written; a slot given twice keeps the last row.
        """
        prov = Provenance(provenance)
        if prov == Provenance.NONE:
            raise ParameterError("provenance: NONE cannot be written; write a real provenance")
        rows = np.atleast_1d(np.asarray(sym_idx, dtype=np.intp))
        cols = np.atleast_1d(np.asarray(minute_idx, dtype=np.intp))
        n_minutes = len(self.minutes)
        values = [
            np.atleast_1d(np.asarray(a, np.float64)) for a in (open, high, low, close, volume)
        ]
        if any(len(a) != len(rows) for a in (cols, *values)):
            raise ParameterError("write_bars: every array must have one value per bar")
        # Keep the last row of each slot so repeated slots resolve in row order.
        flat = rows * n_minutes + cols
        _, last_rev = np.unique(flat[::-1], return_index=True)
        last = np.zeros(len(rows), dtype=bool)
        last[len(rows) - 1 - last_rev] = True
        with self._mutating():
            cur = self._require_current()
            if prov != Provenance.FEED:
                last &= self._allowed(cur, rows, cols, prov)
            r, c = rows[last], cols[last]
            for name, v in zip(PRICE_COLUMNS, values, strict=True):
                getattr(cur.panel, name)[r, c] = v[last]
            cur.provenance[r, c] = prov
            self._dirty[r, c] = True
        return last

    def _allowed(
        self, cur: SessionRecord, rows: np.ndarray, cols: np.ndarray, prov: Provenance
    ) -> np.ndarray:
        now = cur.provenance[rows, cols]
        ok = np.isin(now, _WRITE_ALLOWED[prov])
        if prov == Provenance.REPAIRED:
            p = cur.panel
            ok |= invalid_bars(*(getattr(p, c)[rows, cols] for c in PRICE_COLUMNS))
        return ok

    def take_dirty(self) -> np.ndarray:
        """Boolean (S, M) of slots written since the last call; the record restarts empty."""
        with self._lock:
            dirty = self._dirty
            self._dirty = np.zeros_like(dirty)
        return dirty

    def set_derived(
        self, interval: int, derived: DerivedBars, buckets: np.ndarray | None = None
    ) -> None:
        """Store (buckets None) or patch (the given bucket columns) the derived bars of an interval.

        These arrays are what `panel_snapshot` hands to persistence; reads derive the current
        session's bars from the 1m bars themselves.
        """
        cur = self._require_current()
        with self._mutating():
            if buckets is None or interval not in cur.derived:
                if buckets is not None:
                    raise ParameterError(f"buckets: interval {interval} has no stored bars yet")
                cur.derived[interval] = derived
                return
            stored = cur.derived[interval]
            b = np.asarray(buckets, dtype=np.intp)
            for name in ("open", "high", "low", "close", "volume", "count"):
                getattr(stored, name)[:, b] = getattr(derived, name)

    def set_metrics(
        self, symbols: np.ndarray | Sequence[str] | None = None, **values: np.ndarray | float
    ) -> None:
        """Set per-symbol metrics (fields of SymbolMetrics) for `symbols` (None: all)."""
        self._require_current()
        unknown = set(values) - set(SymbolMetrics.names())
        if unknown:
            raise ParameterError(
                f"metrics: unknown field(s) {sorted(unknown)}; known: {SymbolMetrics.names()}"
            )
        if symbols is None:
            rows: np.ndarray | slice = slice(None)
        elif len(symbols) and isinstance(symbols[0], str):
            rows = self.symbol_index(list(symbols))
        else:
            rows = np.asarray(symbols, dtype=np.intp)
        with self._lock:
            for name, value in values.items():
                getattr(self._metrics, name)[rows] = value

    # ------------------------------------------------------------------ reads
    def metrics(self) -> SymbolMetrics:
        """A copy of every symbol's metrics."""
        with self._lock:
            m = self._metrics
            return SymbolMetrics(**{n: getattr(m, n).copy() for n in SymbolMetrics.names()})

    def session_metrics(self, symbol: str) -> dict[str, int | float]:
        """The seed's metrics dict of one symbol (bar_quality, expected_bars, actual_bars, …)."""
        i = self.symbol_index(symbol)
        with self._lock:
            return self._metrics.row(i)

    async def get_session_metrics(self, symbol: str) -> dict[str, int | float]:
        """Async form of `session_metrics` (the seed's API)."""
        return self.session_metrics(symbol)

    def panel_snapshot(self, take_dirty: bool = False) -> SessionSnapshot:
        """Copies of the current session's arrays; with `take_dirty`, the change mask too."""
        cur = self._require_current()
        with self._lock:
            p = cur.panel
            panel = Panel(p.symbols, p.minutes, *(getattr(p, c).copy() for c in PRICE_COLUMNS))
            derived = {k: _copy_derived(v) for k, v in cur.derived.items()}
            dirty = self.take_dirty() if take_dirty else None
            return SessionSnapshot(
                session=cur.session,
                minutes=cur.minutes,
                segment=cur.segment,
                panel=panel,
                provenance=cur.provenance.copy(),
                clock=self._clock,
                closed=self._closed,
                derived=derived,
                dirty=dirty,
            )

    def last_n_bars(self, symbol: str, n: int, interval: int = 1) -> pd.DataFrame:
        """The last `n` existing bars of `symbol` up to the clock, ascending, across sessions.

        Counts back over bars that exist (not clock time), through the history ring, so it
        returns exactly `n` bars whenever the current session and the history hold them.
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
        for source in self._sources(symbol, interval):
            if have >= n:
                break
            part = self._tail(source, interval, n - have)
            parts.append(part)
            have += len(part["ts"])
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

    # ------------------------------------------------------------------ memory
    def memory_bytes(self) -> int:
        """Bytes held by every array: current session, change mask, metrics and history."""
        with self._lock:
            total = self._dirty.nbytes + self._metrics.nbytes
            if self._current is not None:
                total += self._current.nbytes
            return total + sum(r.nbytes for r in self._history)

    def stored_bars(self) -> int:
        """Bars held: 1m bars present plus derived bars with at least one constituent."""
        with self._lock:
            records = [*self._history, *([self._current] if self._current else [])]
            total = 0
            for r in records:
                total += int(np.count_nonzero(r.panel.present))
                total += sum(int(np.count_nonzero(d.count)) for d in r.derived.values())
            return total


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
    """Buckets first:stop of one symbol, derived from a one-row view of the 1m arrays."""
    p = record.panel
    one = Panel(
        (p.symbols[row],), p.minutes, *(getattr(p, c)[row : row + 1] for c in PRICE_COLUMNS)
    )
    return derive(one, layout, np.arange(first, stop))


def _derived_bars(d: DerivedBars, row: int, keep: np.ndarray) -> dict[str, np.ndarray]:
    data = {"ts": d.starts[keep]}
    data.update({c: getattr(d, c)[row, keep] for c in (*PRICE_COLUMNS, "count")})
    data["expected"] = d.expected[keep]
    return data


def _visible(minutes: np.ndarray, clock: int) -> int:
    """Number of leading minutes with ts ≤ clock."""
    return int(np.searchsorted(minutes, clock, side="right"))


def _copy_derived(d: DerivedBars) -> DerivedBars:
    return DerivedBars(
        interval=d.interval,
        starts=d.starts,
        open=d.open.copy(),
        high=d.high.copy(),
        low=d.low.copy(),
        close=d.close.copy(),
        volume=d.volume.copy(),
        count=d.count.copy(),
        expected=d.expected,
        buckets=d.buckets,
    )


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
