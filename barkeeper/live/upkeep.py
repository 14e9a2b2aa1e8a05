"""The data upkeep: keeps the running session's bars complete and correct.

One `cycle` repairs bars that fail the hard OHLC checks, backfills missing minutes from the
repository (one batched read per cycle, per-minute retry tracking with backoff), classifies what
stays missing, extends derived bars over the buckets that changed and recomputes quality.
`final_pass` at the close does the same over the whole session until nothing is left to do, so
the end state does not depend on pacing or on the check interval.

Pure Python/numpy: the Prefect subflow in `flows/` only schedules these calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from barkeeper.core.calendar import SessionMinutes
from barkeeper.core.kernels import BucketLayout, bar_quality, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_records import Provenance
from barkeeper.quality.frames import hard_check_failures

log = logging.getLogger(__name__)


def real_bars(provenance: np.ndarray) -> np.ndarray:
    """Where a genuine bar sits (synthetic fills never count)."""
    return (provenance != Provenance.NONE) & (provenance != Provenance.SYNTHETIC)


class BarSource(Protocol):
    """Where backfills and repairs come from: the bar repository."""

    def fetch(self, keys: pd.DataFrame) -> pd.DataFrame:
        """Bars (BAR_COLUMNS) at the (symbol, ts) `keys` that exist; raises if unavailable."""
        ...


class SlotState(IntEnum):
    """What the upkeep concluded about a minute that has no bar."""

    OPEN = 0  # not settled: will be tried (again)
    NO_TRADE = 1  # the repository answered and has no bar: nobody traded
    UNFILLABLE = 2  # the repository failed on every one of the allowed attempts


@dataclass(frozen=True)
class UpkeepConfig:
    """The seed's settings, per run."""

    retry_missing_bars: bool = True
    max_retries: int = 5
    auto_compute_derived: bool = True
    fill_policy: Literal["none", "ffill"] = "none"
    ffill_limit: int | None = None  # minutes a price is carried; None: to the last real bar
    final_backoff_s: float = 0.05


@dataclass
class UpkeepStats:
    """Counters over a session: what the upkeep did, for the run's record."""

    cycles: int = 0
    cycle_errors: int = 0
    fetch_errors: int = 0
    repaired: int = 0
    backfilled: int = 0
    cycle_seconds: list[float] = field(default_factory=list)


class Upkeep:
    """Upkeep of one `SessionData` against one `BarSource`."""

    def __init__(
        self,
        data: SessionData,
        source: BarSource,
        config: UpkeepConfig,
        *,
        on_changed: Callable[[np.ndarray], None] | None = None,
        on_rejected: Callable[[pd.DataFrame], None] | None = None,
    ) -> None:
        self.data = data
        self.source = source
        self.config = config
        self.on_changed = on_changed
        self.on_rejected = on_rejected
        self.stats = UpkeepStats()

    def begin_session(self, minutes: SessionMinutes, layouts: dict[int, BucketLayout]) -> None:
        """Reset per-minute tracking for a new session."""
        shape = (len(self.data.symbols), len(minutes.minutes))
        self.minutes = minutes
        self.layouts = layouts
        self.state = np.zeros(shape, dtype=np.uint8)
        self.retries = np.zeros(shape, dtype=np.uint8)
        self.next_cycle = np.zeros(shape, dtype=np.int32)
        self.derived_ready: set[int] = set()
        self.unrepaired = np.zeros(shape, dtype=bool)  # bad bars whose repair read failed
        self.resync = False  # a failed cycle may have consumed changes: recheck everything
        self.stats = UpkeepStats()

    # -- one cycle ---------------------------------------------------------------------------

    def cycle(self, upto_ts: int) -> None:
        """Settle everything up to the session clock `upto_ts` (inclusive); never raises."""
        started = time.perf_counter()
        try:
            upto = int(np.searchsorted(self.minutes.minutes, upto_ts, side="right"))
            self._step(upto, final=False)
        except Exception:
            self.stats.cycle_errors += 1
            self.resync = True
            log.exception("upkeep cycle up to %s failed; the next cycle goes on", upto_ts)
        self.stats.cycles += 1
        self.stats.cycle_seconds.append(time.perf_counter() - started)

    def final_pass(self) -> None:
        """Settle the whole session: retry with backoff until every minute is settled.

        Minutes the repository never answered for within the retry budget become unfillable.
        """
        upto = len(self.minutes.minutes)
        for attempt in range(self.config.max_retries + 2):
            wrote = self._step(upto, final=True)
            unsettled = self._open_missing(upto).any() or self.unrepaired.any()
            if not wrote and not unsettled:
                break
            if unsettled:
                time.sleep(min(self.config.final_backoff_s * 2**attempt, 1.0))
        self._give_up(upto)
        if self.config.fill_policy == "ffill":
            self._fill_forward()
        self._step(upto, final=True)

    def _step(self, upto: int, *, final: bool) -> bool:
        """One pass of repair, backfill, derivation and metrics; True if it wrote any bar."""
        self.snapshot = self.data.panel_snapshot(take_dirty=True)
        changed = self.snapshot.dirty
        if self.resync:
            changed |= self.snapshot.panel.present
        wrote = self._repair(changed)
        wrote |= self._backfill(upto, final=final)
        changed |= wrote
        after = self.data.panel_snapshot() if wrote.any() else self.snapshot
        if self.config.auto_compute_derived:
            self._derive(changed, after.panel, real_bars(after.provenance))
        self._update_metrics(upto, after.provenance)
        self.resync = False
        if self.on_changed is not None and changed.any():
            self.on_changed(changed)
        return bool(wrote.any())

    # -- repair ------------------------------------------------------------------------------

    def _repair(self, changed: np.ndarray) -> np.ndarray:
        """Replace bars that fail the hard OHLC checks with the repository's bar.

        Bad bars whose repository read failed stay in `unrepaired` and are tried again.
        """
        rows, cols = np.nonzero((changed | self.unrepaired) & self.snapshot.panel.present)
        written = np.zeros_like(changed)
        if not len(rows):
            return written
        frame = self._frame(rows, cols)
        bad = hard_check_failures(frame)
        retried = self.unrepaired[rows, cols]
        self.unrepaired[rows, cols] = False
        if not bad.any():
            return written
        if self.on_rejected is not None and (bad & ~retried).any():
            self.on_rejected(frame.loc[bad & ~retried])
        rows, cols = rows[bad], cols[bad]
        found = self._fetch(rows, cols)
        if found is None:
            self.unrepaired[rows, cols] = True
            return written
        _, r, c, bars = found
        kept = self.data.write_bars(r, c, *bars, provenance=Provenance.REPAIRED)
        self.stats.repaired += int(kept.sum())
        written[r[kept], c[kept]] = True
        return written

    # -- backfill ----------------------------------------------------------------------------

    def _open_missing(self, upto: int) -> np.ndarray:
        missing = ~self.snapshot.panel.present[:, :upto] & (self.state[:, :upto] == SlotState.OPEN)
        out = np.zeros_like(self.state, dtype=bool)
        out[:, :upto] = missing
        return out

    def _backfill(self, upto: int, *, final: bool) -> np.ndarray:
        """Fill open missing minutes up to `upto` from the repository, in one batched read."""
        due = self._open_missing(upto)
        if not final:
            due &= self.next_cycle <= self.stats.cycles
        if not self.config.retry_missing_bars:
            due &= self.retries == 0
        rows, cols = np.nonzero(due)
        written = np.zeros_like(due)
        if not len(rows):
            return written
        found = self._fetch(rows, cols)
        if found is None:  # the repository failed: back off, count the attempt
            self.retries[rows, cols] += 1
            wait = 2 ** np.minimum(self.retries[rows, cols], 10).astype(np.int32)
            self.next_cycle[rows, cols] = self.stats.cycles + wait
            return written
        ok, r, c, bars = found
        kept = self.data.write_bars(r, c, *bars, provenance=Provenance.BACKFILL)
        self.stats.backfilled += int(kept.sum())
        written[r[kept], c[kept]] = True
        self.state[rows[~ok], cols[~ok]] = SlotState.NO_TRADE
        return written

    def _give_up(self, upto: int) -> None:
        """After the final retries, minutes the repository never answered for are unfillable."""
        open_ = self._open_missing(upto)
        limit = self.config.max_retries if self.config.retry_missing_bars else 0
        self.state[open_ & (self.retries > limit)] = SlotState.UNFILLABLE

    def _fetch(
        self, rows: np.ndarray, cols: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...]] | None:
        """Repository bars at (rows, cols): (found mask, rows, cols, OHLCV arrays) or None."""
        symbols = np.asarray(self.data.symbols, dtype=object)
        keys = pd.DataFrame({"symbol": symbols[rows], "ts": self.minutes.minutes[cols]})
        try:
            bars = self.source.fetch(keys)
        except Exception as error:  # the repository is down or timed out: retried later
            self.stats.fetch_errors += 1
            log.warning("repository read of %d bars failed: %s", len(keys), error)
            return None
        index = pd.MultiIndex.from_arrays([bars["symbol"], bars["ts"]])
        pos = index.get_indexer(pd.MultiIndex.from_arrays([keys["symbol"], keys["ts"]]))
        ok = pos >= 0
        hit = pos[ok]
        arrays = tuple(bars[name].to_numpy(dtype=np.float64)[hit] for name in PRICE_COLUMNS)
        return ok, rows[ok], cols[ok], arrays

    # -- fill policy -------------------------------------------------------------------------

    def _fill_forward(self) -> None:
        """Flat synthetic bars (O=H=L=C=last close, volume 0) on minutes that stay missing.

        A price is carried at most `ffill_limit` minutes, and never past the symbol's last real
        bar of the session: after it there is nothing to be filled *between*.
        """
        close = self.data.panel_snapshot().panel.close
        present = ~np.isnan(close)
        missing = ~present & (self.state != SlotState.OPEN)
        columns = np.arange(close.shape[1])
        last = np.maximum.accumulate(np.where(present, columns, -1), axis=1)
        following = np.minimum.accumulate(
            np.where(present, columns, close.shape[1])[:, ::-1], axis=1
        )[:, ::-1]
        fill = missing & (last >= 0) & (following < close.shape[1])
        if self.config.ffill_limit is not None:
            fill &= columns - last <= self.config.ffill_limit
        rows, cols = np.nonzero(fill)
        if not len(rows):
            return
        price = close[rows, last[rows, cols]]
        volume = np.zeros_like(price)
        self.data.write_bars(
            rows, cols, price, price, price, price, volume, provenance=Provenance.SYNTHETIC
        )

    # -- derived bars and metrics ------------------------------------------------------------

    def _derive(self, changed: np.ndarray, panel: Panel, real: np.ndarray) -> None:
        columns = np.flatnonzero(changed.any(axis=0))
        if not len(columns):
            return
        for interval, layout in self.layouts.items():
            if interval not in self.derived_ready:
                self.data.set_derived(interval, derive(panel, layout, real=real))
                self.derived_ready.add(interval)
                continue
            buckets = layout.dirty(columns)
            if len(buckets):
                self.data.set_derived(interval, derive(panel, layout, buckets, real), buckets)

    def _update_metrics(self, upto: int, provenance: np.ndarray) -> None:
        provenance = provenance[:, :upto]
        real = real_bars(provenance)
        regular = self.minutes.regular_mask[:upto]
        state = self.state[:, :upto]
        self.data.set_metrics(
            expected_bars=int(regular.sum()),
            actual_bars=real[:, regular].sum(axis=1),
            bar_quality=bar_quality(real, regular),
            backfilled_bars=(provenance == Provenance.BACKFILL).sum(axis=1),
            repaired_bars=(provenance == Provenance.REPAIRED).sum(axis=1),
            synthetic_bars=(provenance == Provenance.SYNTHETIC).sum(axis=1),
            no_trade_bars=((state == SlotState.NO_TRADE) & ~real).sum(axis=1),
            unfillable_bars=((state == SlotState.UNFILLABLE) & ~real).sum(axis=1),
        )

    def _frame(self, rows: np.ndarray, cols: np.ndarray) -> pd.DataFrame:
        panel = self.snapshot.panel
        data = {"symbol": np.asarray(self.data.symbols, dtype=object)[rows]}
        data["ts"] = self.minutes.minutes[cols]
        for name in PRICE_COLUMNS:
            data[name] = getattr(panel, name)[rows, cols]
        return pd.DataFrame(data)
