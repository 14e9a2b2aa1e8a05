"""What a session ends up with: per-symbol metrics, gap records and the bars to persist.

Everything is derived from the final state (bars, provenance, the upkeep's classification of
missing minutes), never from event counters, so the figures do not depend on pacing or on
when the upkeep happened to run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from barkeeper.core.calendar import POST, PRE, REGULAR, SessionMinutes
from barkeeper.core.kernels import DerivedBars, bar_quality, find_gaps
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.core.vocabulary import completeness
from barkeeper.live.session_data import Provenance
from barkeeper.live.sources import NO_SOURCE, slot_source_codes, source_counts
from barkeeper.live.upkeep_config import SlotState, real_bars

SEGMENT_NAMES = {REGULAR: "regular", PRE: "pre", POST: "post"}
GAP_OPEN, GAP_BACKFILLED, GAP_NO_TRADE, GAP_UNFILLABLE, GAP_QUARANTINED = 0, 1, 2, 3, 4
GAP_STATUS = {
    GAP_OPEN: "open",
    GAP_BACKFILLED: "backfilled",
    GAP_NO_TRADE: "no_trade",
    GAP_UNFILLABLE: "unfillable",
    GAP_QUARANTINED: "quarantined",  # the vendor sent rows for the minute; none could be kept
}
CONTRACT_FIGURES = (
    "expected_bars",
    "actual_bars",
    "bar_quality",
    "completeness",
    "gaps",
    "missing_bars",
    "backfilled_bars",
    "repaired_bars",
    "unfillable_bars",
    "no_data",
)
"""Per-symbol figures of the JSON contract (DESIGN.md), besides `validation_success`; each is
defined in `barkeeper.core.vocabulary.COUNTS`."""
EXTRA_FIGURES = (
    "source_bars",
    "feed_missing_bars",
    "feed_gap_runs",
    "no_trade_bars",
    "synthetic_bars",
    "outside_bars",
)
SOURCE_FIGURES = ("sources", "feed_gaps", "discrepancies")
"""Per-symbol figures of several sources: {source: bars}, minutes filled, disagreements."""


def symbol_figures(row: Any) -> dict[str, Any]:
    """A metrics row (namedtuple) as plain JSON values: the contract's figures, then extras."""
    names = (*CONTRACT_FIGURES, "validation_success", *EXTRA_FIGURES, *SOURCE_FIGURES)
    figures = {name: _plain(getattr(row, name, None)) for name in names}
    if isinstance(figures["sources"], str):
        figures["sources"] = json.loads(figures["sources"])
    return figures


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class SessionState:
    """The final state of one session, as the upkeep left it."""

    minutes: SessionMinutes
    panel: Panel
    provenance: np.ndarray
    slot_state: np.ndarray | None
    derived: dict[int, DerivedBars]
    outside_bars: pd.Series
    quarantined: np.ndarray | None = None  # (S, M) bool: minutes whose rows were all quarantined
    origin: np.ndarray | None = None  # index into `backfill` of each bar a source wrote
    feed: str = "default"  # the feed's source name
    backfill: tuple[str, ...] = ("default",)  # the backfill sources, in order
    disagreements: np.ndarray | None = None  # bool (S, M): feed and a source disagree
    available: np.ndarray | None = None
    """Minutes the repository has a bar for, (S, M) bool; None: every minute not found
    no-trade by the upkeep."""

    def sourced(self) -> np.ndarray:
        """Minutes some source (the feed or the repository) has a bar for."""
        real = real_bars(self.provenance)
        if self.available is not None:
            return real | self.available
        return real | (slot_categories(self) != GAP_NO_TRADE)

    @property
    def source_names(self) -> tuple[str, ...]:
        """Names by source code: the feed's, then the backfill sources' (see source_codes)."""
        return (self.feed, *self.backfill)

    def source_codes(self) -> np.ndarray:
        """Per slot: 0 the feed's bar, 1 + i backfill source i's, -1 none or synthetic."""
        return slot_source_codes(self.provenance, self.origin)


def quarantined_mask(
    symbols: tuple[str, ...], minutes: np.ndarray, found: dict[str, np.ndarray]
) -> np.ndarray:
    """(S, M) bool: the session's minutes each symbol has only quarantined rows for."""
    mask = np.zeros((len(symbols), len(minutes)), dtype=bool)
    for i, symbol in enumerate(symbols):
        if symbol in found:
            mask[i] = np.isin(minutes, found[symbol])
    return mask


def slot_categories(state: SessionState) -> np.ndarray:
    """Per minute without a fed bar: backfilled, no-trade, unfillable, quarantined or open.

    A minute the vendor did send, but whose rows were all quarantined, is `quarantined`, never
    `no_trade`: someone traded, barkeeper could not keep the bar.
    """
    categories = np.full(state.provenance.shape, GAP_OPEN, dtype=np.uint8)
    categories[state.provenance == Provenance.BACKFILL] = GAP_BACKFILLED
    if state.slot_state is not None:
        categories[state.slot_state == SlotState.NO_TRADE] = GAP_NO_TRADE
        categories[state.slot_state == SlotState.UNFILLABLE] = GAP_UNFILLABLE
    if state.quarantined is not None:
        categories[state.quarantined & (state.provenance == Provenance.NONE)] = GAP_QUARANTINED
    return categories


COVERAGE_NO_TRADE, COVERAGE_UNFILLABLE, COVERAGE_QUARANTINED = 5, 6, 7
"""Coverage codes past the provenance codes (0 none .. 4 synthetic): why a minute has no bar."""


def coverage_codes(state: SessionState) -> np.ndarray:
    """Per minute: its provenance, or for a minute without a bar why it has none (uint8)."""
    codes = state.provenance.astype(np.uint8, copy=True)
    missing = codes == Provenance.NONE
    categories = slot_categories(state)
    codes[missing & (categories == GAP_NO_TRADE)] = COVERAGE_NO_TRADE
    codes[missing & (categories == GAP_UNFILLABLE)] = COVERAGE_UNFILLABLE
    codes[missing & (categories == GAP_QUARANTINED)] = COVERAGE_QUARANTINED
    return codes


def _fed(provenance: np.ndarray) -> np.ndarray:
    """Minutes the feed delivered a bar for (a repaired bar was delivered, broken)."""
    return (provenance == Provenance.FEED) | (provenance == Provenance.REPAIRED)


def session_metrics(state: SessionState) -> pd.DataFrame:
    """One row per symbol and segment with the figures of `barkeeper.core.vocabulary.COUNTS`."""
    symbols = list(state.panel.symbols)
    real = real_bars(state.provenance)
    fed = _fed(state.provenance)
    sourced = state.sourced()
    no_data = ~sourced.any(axis=1)
    categories = slot_categories(state)
    codes = state.source_codes()
    disagreements = state.disagreements
    frames = []
    segments = np.unique(state.minutes.segment)
    for segment in segments:
        cols = state.minutes.segment == segment
        missing = ~real[:, cols]
        prov = state.provenance[:, cols]
        cat = categories[:, cols]
        actual = real[:, cols].sum(axis=1)
        source = sourced[:, cols].sum(axis=1)
        frame = pd.DataFrame(
            {
                "symbol": symbols,
                "segment": SEGMENT_NAMES[int(segment)],
                "expected_bars": int(cols.sum()),
                "actual_bars": actual,
                "source_bars": source,
                "bar_quality": np.round(bar_quality(real[:, cols]), 6),
                "completeness": np.round(completeness(actual, source), 6),
                "feed_missing_bars": (~fed[:, cols]).sum(axis=1),
                "feed_gap_runs": _runs_per_symbol(fed[:, cols]),
                "gaps": _runs_per_symbol(real[:, cols]),
                "missing_bars": missing.sum(axis=1),
                "backfilled_bars": (prov == Provenance.BACKFILL).sum(axis=1),
                "repaired_bars": (prov == Provenance.REPAIRED).sum(axis=1),
                "unfillable_bars": (missing & (cat == GAP_UNFILLABLE)).sum(axis=1),
                "no_trade_bars": (missing & (cat == GAP_NO_TRADE)).sum(axis=1),
                "synthetic_bars": (prov == Provenance.SYNTHETIC).sum(axis=1),
                "outside_bars": 0,
                "feed_gaps": (prov == Provenance.BACKFILL).sum(axis=1),
                "discrepancies": 0 if disagreements is None else disagreements[:, cols].sum(axis=1),
                "sources": source_counts(codes[:, cols], state.source_names),
                "no_data": no_data,
            }
        )
        if segment == REGULAR:
            frame["outside_bars"] = state.outside_bars.reindex(symbols, fill_value=0).to_numpy(
                dtype=np.int64
            )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _runs_per_symbol(present: np.ndarray) -> np.ndarray:
    """Per row, the number of runs of consecutive minutes without a bar."""
    runs = find_gaps(present)
    return np.bincount(runs.symbol_idx, minlength=present.shape[0])


def session_gaps(state: SessionState, max_retries: int) -> pd.DataFrame:
    """Each run of consecutive minutes the feed missed, with what became of it."""
    fed = _fed(state.provenance)
    runs = find_gaps(fed, expected=None)
    symbols = np.asarray(state.panel.symbols, dtype=object)
    minutes = state.minutes.minutes
    categories = slot_categories(state).astype(np.int16)
    n_minutes = categories.shape[1]
    flat = np.append(categories.ravel(), 0)
    starts = runs.symbol_idx.astype(np.int64) * n_minutes + runs.start_idx
    stops = runs.symbol_idx.astype(np.int64) * n_minutes + runs.stop_idx
    bounds = np.column_stack([starts, stops]).ravel()
    low = np.minimum.reduceat(flat, bounds)[::2] if len(bounds) else np.array([], np.int16)
    high = np.maximum.reduceat(flat, bounds)[::2] if len(bounds) else np.array([], np.int16)
    status = np.where(low == high, pd.Series(low).map(GAP_STATUS).to_numpy(dtype=object), "partial")
    retries = np.where(high == GAP_UNFILLABLE, max_retries, 0)
    return pd.DataFrame(
        {
            "symbol": symbols[runs.symbol_idx],
            "start_ts": minutes[runs.start_idx],
            "end_ts": minutes[runs.stop_idx - 1],
            "length": runs.length,
            "status": status,
            "retries": retries,
        }
    )


def session_bars(state: SessionState) -> pd.DataFrame:
    """The session's 1m bars with provenance, then its derived bars: the run's full series."""
    return series_bars(
        state.panel, state.provenance, state.derived, state.source_codes(), state.source_names
    )


PROVENANCE_NAMES = {p.value: p.name.lower() for p in Provenance}
"""Provenance codes as stored and exported (`none` marks a bar the run ended without)."""


def series_bars(
    panel: Panel,
    provenance: np.ndarray,
    derived: dict[int, DerivedBars],
    codes: np.ndarray,
    names: tuple[str, ...],
) -> pd.DataFrame:
    """Bars of a panel (slots with a provenance), then `derived`'s non-empty buckets.

    Columns symbol, interval, ts, OHLCV, provenance, constituents, expected_constituents,
    source (`names[code]` of each 1m slot's `codes`, "" for NO_SOURCE and derived bars);
    1m rows by symbol then ts, then each interval's rows by symbol then ts.
    """
    rows, cols = np.nonzero(provenance != Provenance.NONE)
    symbols = np.asarray(panel.symbols, dtype=object)
    one_minute = pd.DataFrame(
        {
            "symbol": symbols[rows],
            "interval": 1,
            "ts": panel.minutes[cols],
            **{name: getattr(panel, name)[rows, cols] for name in PRICE_COLUMNS},
            "provenance": pd.Series(provenance[rows, cols]).map(PROVENANCE_NAMES),
            "constituents": 1,
            "expected_constituents": 1,
            "source": pd.Series(codes[rows, cols]).map({NO_SOURCE: "", **dict(enumerate(names))}),
        }
    )
    frames = [one_minute]
    for interval, bars in sorted(derived.items()):
        r, b = np.nonzero(~np.isnan(bars.close))
        real = bars.count[r, b] > 0  # a bucket of synthetic minutes only is synthetic itself
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbols[r],
                    "interval": interval,
                    "ts": bars.starts[b],
                    **{name: getattr(bars, name)[r, b] for name in PRICE_COLUMNS},
                    "provenance": np.where(real, "derived", "synthetic"),
                    "constituents": bars.count[r, b].astype(np.int64),
                    "expected_constituents": bars.expected[b].astype(np.int64),
                    "source": "",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
