"""The nightly audit's computation: a repository session held against the exchange calendar.

An audit is a replay without a feed: the repository's own bars are the session's bars. Its
figures come from the same functions as a replay's end state (`barkeeper.live.session_results`), so
an audit and a clean replay of the same session report the same numbers. Pure: no Prefect, no
database; the tasks in `tasks/audit.py` read and write around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time

import numpy as np
import pandas as pd

from barkeeper.core.calendar import Calendar, SessionMinutes
from barkeeper.core.kernels import DerivedBars, bucket_layout, derive, derived_frame
from barkeeper.core.panel import BAR_COLUMNS, Panel
from barkeeper.live.session_records import Provenance
from barkeeper.live.session_results import (
    SessionState,
    coverage_codes,
    quarantined_mask,
    session_gaps,
    session_metrics,
)
from barkeeper.live.upkeep_config import SlotState
from barkeeper.quality.validation import SuiteResult
from models.tables import DEFAULT_SOURCE

DAY_OPEN, DAY_CLOSE = time(4, 0), time(20, 0)
"""The window of exchange-local time whose bars a session may own (as in a replay)."""

DERIVED_ORIGIN = "derived"
"""`bar.origin` of the bars an audit materialises (their `bar.source` is the audited source)."""


@dataclass(frozen=True)
class LandedFile:
    """What became of one file of the landing folder."""

    name: str
    status: str  # done | rejected | waiting (not settled yet: taken by a later run)
    moved_to: str
    symbol: str = ""
    read: int = 0
    stored: int = 0
    quarantined: int = 0
    skipped: int = 0
    reason: str = ""
    revised: int = 0
    first_ts: int | None = None  # the file's first and last bar (epoch seconds)
    last_ts: int | None = None


@dataclass(frozen=True)
class SessionCheck:
    """The GX verdict on one audited session, and where its Data Docs page is."""

    session: date
    results: list[SuiteResult]
    page: str
    index: str
    failing_symbols: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_results(
        cls, session: date, results: list[SuiteResult], page: object, index: object
    ) -> SessionCheck:
        """Collect the symbols with a critical failure (a bar breaking a hard rule)."""
        failing: set[str] = set()
        for result in results:
            if result.severity == "critical" and result.failed_keys is not None:
                failing.update(result.failed_keys["symbol"].astype(str))
        return cls(session, list(results), str(page), str(index), frozenset(failing))

    @property
    def success(self) -> bool:
        """True when no critical expectation failed (warnings never fail an audit)."""
        return all(r.success for r in self.results if r.severity == "critical")

    def with_validation(self, metrics: pd.DataFrame) -> pd.DataFrame:
        """`metrics` with `validation_success` per symbol."""
        ok = ~metrics["symbol"].isin(self.failing_symbols)
        if not self.success and not self.failing_symbols:
            ok[:] = False  # a failure GX could not pin on rows (e.g. a table-level rule)
        return metrics.assign(validation_success=ok.to_numpy(dtype=bool))

    def records(self, run_id: str) -> list[dict[str, object]]:
        """`validation_result` rows of this session."""
        return [r.to_record(run_id, self.session, stage="final") for r in self.results]


@dataclass(frozen=True, eq=False)
class SessionAudit:
    """One session of the repository, audited: its panel, figures and derived bars."""

    minutes: SessionMinutes
    panel: Panel
    provenance: np.ndarray
    metrics: pd.DataFrame
    gaps: pd.DataFrame
    derived: dict[int, DerivedBars]
    coverage: np.ndarray  # coverage codes for the chart: a minute without a bar is no-trade

    @property
    def session(self) -> date:
        return self.minutes.session

    def derived_bars(self) -> pd.DataFrame:
        """The derived bars as rows of the repository's `bar` table (interval = minutes)."""
        frames = [
            derived_frame(bars, self.panel.symbols).assign(interval=n)
            for n, bars in sorted(self.derived.items())
        ]
        if not frames:
            return pd.DataFrame(columns=[*BAR_COLUMNS, "interval", "origin", "source"])
        out = pd.concat(frames, ignore_index=True)
        return out[[*BAR_COLUMNS, "interval"]].assign(origin=DERIVED_ORIGIN, source=DEFAULT_SOURCE)

    def derived_for_validation(self) -> pd.DataFrame:
        """The derived bars with constituent counts, as the `bars_derived` suite reads them."""
        frames = [
            derived_frame(bars, self.panel.symbols)
            .assign(interval=n)
            .rename(columns={"count": "constituents", "expected": "expected_constituents"})
            for n, bars in sorted(self.derived.items())
        ]
        if not frames:
            return pd.DataFrame(
                columns=[*BAR_COLUMNS, "interval", "constituents", "expected_constituents"]
            )
        return pd.concat(frames, ignore_index=True)


def day_window(calendar: Calendar, session: date) -> tuple[int, int]:
    """[04:00, 20:00) exchange time of `session` as Unix seconds: the bars the session may own."""
    start, end = (
        pd.Timestamp(datetime.combine(session, t)).tz_localize(calendar.tz)
        for t in (DAY_OPEN, DAY_CLOSE)
    )
    return int(start.timestamp()), int(end.timestamp())


def audit_session(
    minutes: SessionMinutes,
    symbols: Sequence[str],
    bars: pd.DataFrame,
    intervals: Sequence[int],
    quarantined: dict[str, np.ndarray] | None = None,
    source: str = DEFAULT_SOURCE,
) -> SessionAudit:
    """Audit one session's repository bars (of one source) against its calendar minutes.

    Parameters
    ----------
    minutes
        The session's expected minutes (from `Calendar.session_minutes`).
    symbols
        The symbols to audit; a symbol with no bar at all is audited too (quality 0).
    bars
        The repository's 1m bars of the session's day window (BAR_COLUMNS); bars off the
        expected minutes count as `outside_bars`.
    intervals
        Derived bar sizes in minutes.
    source
        The source the bars belong to (named in the figures' `sources`).

    Notes
    -----
    Every expected minute without a bar is a no-trade minute (the repository is the source a
    replay would backfill from, so nothing could fill it), unless the vendor's rows for it were
    all quarantined (`quarantined`: minute stamps per symbol). Backfilled and repaired are 0.
    """
    panel = Panel.empty(tuple(symbols), minutes.minutes)
    outside = panel.fill(bars[list(BAR_COLUMNS)])
    present = panel.present
    provenance = np.where(present, Provenance.FEED, Provenance.NONE).astype(np.uint8)
    slot_state = np.where(present, SlotState.OPEN, SlotState.NO_TRADE).astype(np.uint8)
    derived = {
        n: derive(panel, bucket_layout(minutes.minutes, minutes.segment, n)) for n in intervals
    }
    state = SessionState(
        minutes=minutes,
        panel=panel,
        provenance=provenance,
        slot_state=slot_state,
        derived=derived,
        outside_bars=outside.groupby("symbol").size(),
        quarantined=quarantined_mask(panel.symbols, minutes.minutes, quarantined or {}),
        feed=source,
        available=present,
    )
    return SessionAudit(
        minutes=minutes,
        panel=panel,
        provenance=provenance,
        metrics=session_metrics(state),
        gaps=session_gaps(state, max_retries=0),
        derived=derived,
        coverage=coverage_codes(state),
    )


def completed_sessions(calendar: Calendar, now: datetime, n: int) -> list[date]:
    """The last `n` sessions whose regular close is at or before `now`, oldest first.

    A nightly run after the close audits that day's session; a run before the open audits the
    previous one; weekends and holidays fall back to the last trading day by themselves.
    """
    today = pd.Timestamp(now).tz_convert(calendar.tz).date()
    candidates = calendar.previous_sessions(today, n + 1)
    if calendar.is_session(today):
        candidates.append(today)
    now_ts = int(pd.Timestamp(now).timestamp())
    done = [s for s in candidates if calendar.session_minutes(s).close_ts <= now_ts]
    return done[-n:]
