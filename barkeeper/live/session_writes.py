"""Writes of `session_data` under the provenance rule, the change mask, and the upkeep's derived
bars and metrics; `SessionData` takes them from the `SessionWrites` mixin."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from barkeeper.core.kernels import DerivedBars
from barkeeper.core.panel import PRICE_COLUMNS
from barkeeper.errors import ParameterError
from barkeeper.live.session_records import (
    Provenance,
    SessionRecord,
    SymbolMetrics,
    invalid_bars,
)

_WRITE_ALLOWED = {
    Provenance.BACKFILL: (Provenance.NONE, Provenance.SYNTHETIC),
    Provenance.REPAIRED: (Provenance.NONE, Provenance.SYNTHETIC),
    Provenance.SYNTHETIC: (Provenance.NONE,),
}


class SessionWrites:
    """The writes of `SessionData`, over the state its `__init__` sets up."""

    _clock_changed: threading.Condition
    _lock: threading.RLock
    _dirty: np.ndarray
    _metrics: SymbolMetrics
    _version: int

    @contextmanager
    def _mutating(self) -> Iterator[None]:
        """Hold the lock and mark a mutation in progress for the lock-free readers."""
        with self._clock_changed:
            self._version += 1
            try:
                yield
            finally:
                self._version += 1

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
        *,
        replace: bool = False,
    ) -> np.ndarray:
        """Scatter-write bars into (symbol, minute) slots: backfill, repair, late bars.

        Returns a boolean mask of the rows written; a slot given twice keeps the last row.
        `replace` lands a non-feed bar whatever the slot holds (a backfill source's bar kept
        over a disagreeing feed bar, `--prefer backfill`).
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
            if prov != Provenance.FEED and not replace:
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
