"""What the upkeep works with: its settings, slot states, statistics and the source protocol.

Kept apart from `barkeeper.live.upkeep` so results, audits and plans can name them cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from barkeeper.live.session_records import Provenance


def real_bars(provenance: np.ndarray) -> np.ndarray:
    """Where a genuine bar sits (synthetic fills never count)."""
    return (provenance != Provenance.NONE) & (provenance != Provenance.SYNTHETIC)


class BarSource(Protocol):
    """Where backfills and repairs come from: a named source of the bar repository."""

    def fetch(self, keys: pd.DataFrame) -> pd.DataFrame:
        """Bars (BAR_COLUMNS) at the (symbol, ts) `keys` that exist; raises if unavailable."""
        ...


class SlotState(IntEnum):
    """What the upkeep concluded about a minute that has no bar."""

    OPEN = 0  # not settled: will be tried (again)
    NO_TRADE = 1  # every backfill source answered and none has a bar: nobody traded
    UNFILLABLE = 2  # the sources failed on every one of the allowed attempts


@dataclass(frozen=True)
class UpkeepConfig:
    """The seed's settings, per run."""

    retry_missing_bars: bool = True
    max_retries: int = 5
    auto_compute_derived: bool = True
    fill_policy: Literal["none", "ffill"] = "none"
    ffill_limit: int | None = None  # minutes a price is carried; None: to the last real bar
    final_backoff_s: float = 0.05
    reconcile: bool = False  # compare feed bars with the backfill sources (feed not among them)
    prefer: Literal["feed", "backfill"] = "feed"  # which bar is kept where they differ
    tolerance_bps: float = 5.0  # prices agree within this many basis points
    volume_tolerance: float = 0.10  # volumes agree within this share of the larger one


@dataclass(frozen=True)
class Fetched:
    """What the backfill sources hold at a batch of keys, aligned with the keys."""

    ok: np.ndarray  # bool (n,): some source has the bar
    source: np.ndarray  # int (n,): index of the first source that has it, else NO_SOURCE
    bars: np.ndarray  # float (n, 5) OHLCV, NaN where no source has it
    answered: bool  # every source asked answered (a key not found is in none of them)

    def part(self, part: slice) -> Fetched:
        return Fetched(self.ok[part], self.source[part], self.bars[part], self.answered)


@dataclass
class UpkeepStats:
    """Counters over a session: what the upkeep did, for the run's record."""

    cycles: int = 0
    cycle_errors: int = 0
    fetch_errors: int = 0
    repaired: int = 0
    backfilled: int = 0
    cycle_seconds: list[float] = field(default_factory=list)
