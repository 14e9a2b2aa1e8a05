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
from collections.abc import Mapping, Sequence
from datetime import date

import numpy as np

from barkeeper.core.kernels import BucketLayout, DerivedBars, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.errors import ParameterError
from barkeeper.live.session_reads import SessionReads
from barkeeper.live.session_records import (
    Provenance,
    SessionMinutesLike,
    SessionRecord,
    SessionSnapshot,
    SymbolMetrics,
    UnknownSymbolError,
)
from barkeeper.live.session_writes import SessionWrites


class SessionData(SessionReads, SessionWrites):
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
