"""The data upkeep: keeps the running session's bars complete and correct.

One `cycle` repairs bars that fail the hard OHLC checks, backfills missing minutes from the
backfill sources in order (one batched read per source per cycle, per-minute retry tracking with
backoff), compares feed bars with the backfill sources when the feed is not one of them,
classifies what stays missing, extends derived bars over the buckets that changed and
recomputes quality.
`final_pass` at the close does the same over the whole session until nothing is left to do, so
the end state does not depend on pacing or on the check interval.

Pure Python/numpy: the Prefect subflow in `flows/` only schedules these calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from barkeeper.core.calendar import SessionMinutes
from barkeeper.core.kernels import BucketLayout, bar_quality, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_records import Provenance
from barkeeper.live.sources import AGREE, NO_SOURCE, Reconciliation, disagreement
from barkeeper.live.upkeep_config import (
    BarSource,
    Fetched,
    SlotState,
    UpkeepConfig,
    UpkeepStats,
    real_bars,
)
from barkeeper.quality.frames import hard_check_failures

log = logging.getLogger(__name__)


class Upkeep:
    """Upkeep of one `SessionData` against its backfill sources (a `BarSource` or a list, in
    the order they are asked)."""

    def __init__(
        self,
        data: SessionData,
        sources: BarSource | Sequence[BarSource],
        config: UpkeepConfig,
        *,
        on_changed: Callable[[np.ndarray], None] | None = None,
        on_rejected: Callable[[pd.DataFrame], None] | None = None,
    ) -> None:
        self.data = data
        self.sources = list(sources) if isinstance(sources, list | tuple) else [sources]
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
        self.origin = np.full(shape, NO_SOURCE, dtype=np.int8)  # source of each bar written
        self.reconciled = np.zeros(shape, dtype=bool)  # feed bars compared with the sources
        self.reconciliation = Reconciliation(shape)
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
            unsettled = (
                self._open_missing(upto).any()
                or self.unrepaired.any()
                or len(self._due_comparisons(upto)[0]) > 0
            )
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
        self.reconciled &= ~changed  # a feed bar delivered again is compared again
        bad = self._bad_bars(changed)
        due = self._due_missing(upto, final=final)
        compare = self._due_comparisons(upto, bad)
        rows, cols = (np.concatenate(parts) for parts in zip(bad, due, compare, strict=True))
        fetched = self._fetch(rows, cols)
        n_bad, n_due = len(bad[0]), len(due[0])
        wrote = self._repair(*bad, fetched.part(slice(0, n_bad)))
        wrote |= self._backfill(*due, fetched.part(slice(n_bad, n_bad + n_due)))
        wrote |= self._reconcile(*compare, fetched.part(slice(n_bad + n_due, None)))
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

    def _bad_bars(self, changed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of changed bars (or bars still unrepaired) failing the hard checks."""
        rows, cols = np.nonzero((changed | self.unrepaired) & self.snapshot.panel.present)
        if not len(rows):
            return rows, cols
        frame = self._frame(rows, cols)
        bad = hard_check_failures(frame)
        retried = self.unrepaired[rows, cols]
        self.unrepaired[rows, cols] = False
        if self.on_rejected is not None and (bad & ~retried).any():
            self.on_rejected(frame.loc[bad & ~retried])
        return rows[bad], cols[bad]

    def _repair(self, rows: np.ndarray, cols: np.ndarray, fetched: Fetched) -> np.ndarray:
        """Replace bad bars with the first backfill source's bar that has one.

        Bad bars whose source reads failed stay in `unrepaired` and are tried again.
        """
        if not fetched.answered:
            self.unrepaired[rows[~fetched.ok], cols[~fetched.ok]] = True
        written = self._write(rows, cols, fetched, Provenance.REPAIRED)
        self.stats.repaired += int(written.sum())
        return written

    def _write(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        fetched: Fetched,
        provenance: Provenance,
        *,
        replace: bool = False,
    ) -> np.ndarray:
        """Write the found bars at (rows, cols); the (S, M) mask of slots written."""
        written = np.zeros(self.state.shape, dtype=bool)
        ok = fetched.ok
        if not ok.any():
            return written
        r, c = rows[ok], cols[ok]
        kept = self.data.write_bars(
            r, c, *fetched.bars[ok].T, provenance=provenance, replace=replace
        )
        r, c = r[kept], c[kept]
        self.origin[r, c] = fetched.source[ok][kept]
        written[r, c] = True
        return written

    # -- backfill ----------------------------------------------------------------------------

    def _open_missing(self, upto: int) -> np.ndarray:
        missing = ~self.snapshot.panel.present[:, :upto] & (self.state[:, :upto] == SlotState.OPEN)
        out = np.zeros_like(self.state, dtype=bool)
        out[:, :upto] = missing
        return out

    def _due_missing(self, upto: int, *, final: bool) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of open missing minutes up to `upto` whose next attempt is due."""
        due = self._open_missing(upto)
        if not final:
            due &= self.next_cycle <= self.stats.cycles
        if not self.config.retry_missing_bars:
            due &= self.retries == 0
        return np.nonzero(due)

    def _backfill(self, rows: np.ndarray, cols: np.ndarray, fetched: Fetched) -> np.ndarray:
        """Fill missing minutes from the first source that has them; a minute no source has
        is a no-trade minute only when every source answered (else it is tried again)."""
        missing = ~fetched.ok
        if fetched.answered:
            self.state[rows[missing], cols[missing]] = SlotState.NO_TRADE
        elif missing.any():  # a source failed: back off, count the attempt
            r, c = rows[missing], cols[missing]
            self.retries[r, c] += 1
            wait = 2 ** np.minimum(self.retries[r, c], 10).astype(np.int32)
            self.next_cycle[r, c] = self.stats.cycles + wait
        written = self._write(rows, cols, fetched, Provenance.BACKFILL)
        self.stats.backfilled += int(written.sum())
        return written

    # -- reconciliation ----------------------------------------------------------------------

    def _due_comparisons(
        self, upto: int, bad: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of feed bars up to `upto` not yet compared with the backfill sources."""
        if not self.config.reconcile:
            return np.zeros(0, np.intp), np.zeros(0, np.intp)
        due = (self.snapshot.provenance == Provenance.FEED) & ~self.reconciled
        due[:, upto:] = False
        if bad is not None:
            due[bad] = False  # a bar failing the hard checks is repaired, not compared
        return np.nonzero(due)

    def _reconcile(self, rows: np.ndarray, cols: np.ndarray, fetched: Fetched) -> np.ndarray:
        """Compare feed bars with the first source holding the same minute; record each
        disagreement and, with `prefer="backfill"`, keep the source's bar wherever it differs."""
        done = fetched.ok | fetched.answered
        self.reconciled[rows[done], cols[done]] = True
        ok = fetched.ok
        if not ok.any():
            return np.zeros(self.state.shape, dtype=bool)
        r, c = rows[ok], cols[ok]
        panel = self.snapshot.panel
        feed = np.column_stack([getattr(panel, name)[r, c] for name in PRICE_COLUMNS])
        found = fetched.bars[ok]
        config = self.config
        kinds = disagreement(feed, found, config.tolerance_bps, config.volume_tolerance)
        keep_source = config.prefer == "backfill"
        self.reconciliation.record(r, c, kinds, fetched.source[ok], feed, found, keep_source)
        differs = keep_source & ((feed != found).any(axis=1) | (kinds != AGREE))
        sub = Fetched(differs, fetched.source[ok], found, fetched.answered)
        return self._write(r, c, sub, Provenance.REPAIRED, replace=True)

    def _give_up(self, upto: int) -> None:
        """After the final retries, minutes the sources never answered for are unfillable."""
        open_ = self._open_missing(upto)
        limit = self.config.max_retries if self.config.retry_missing_bars else 0
        self.state[open_ & (self.retries > limit)] = SlotState.UNFILLABLE

    def _fetch(self, rows: np.ndarray, cols: np.ndarray) -> Fetched:
        """The sources' bars at (rows, cols): one read per source, for keys no earlier had."""
        n = len(rows)
        shape = (n, len(PRICE_COLUMNS))
        fetched = Fetched(
            np.zeros(n, bool), np.full(n, NO_SOURCE, np.int8), np.full(shape, np.nan), True
        )
        symbols = np.asarray(self.data.symbols, dtype=object)
        answered = True
        for i, source in enumerate(self.sources):
            todo = np.flatnonzero(~fetched.ok)
            if not len(todo):
                break
            keys = pd.DataFrame(
                {"symbol": symbols[rows[todo]], "ts": self.minutes.minutes[cols[todo]]}
            )
            try:
                bars = source.fetch(keys)
            except Exception as error:  # the source is down or timed out: retried later
                self.stats.fetch_errors += 1
                answered = False
                log.warning("read of %d bars from source %d failed: %s", len(keys), i, error)
                continue
            index = pd.MultiIndex.from_arrays([bars["symbol"], bars["ts"]])
            pos = index.get_indexer(pd.MultiIndex.from_arrays([keys["symbol"], keys["ts"]]))
            hit = pos >= 0
            at = todo[hit]
            fetched.ok[at] = True
            fetched.source[at] = i
            fetched.bars[at] = bars[list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)[pos[hit]]
        return Fetched(fetched.ok, fetched.source, fetched.bars, answered)

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
