"""Records of `session_data`: bar provenance, per-symbol metrics, a session's arrays and their
snapshot, and the hard OHLC check that decides which bars a repair may replace."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from enum import IntEnum
from typing import Protocol

import numpy as np

from barkeeper.core.kernels import BucketLayout, DerivedBars, bucket_layout
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.errors import BarkeeperError


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
