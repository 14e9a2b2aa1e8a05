"""A replay run's live state, shared in-process by its coordinator task and its upkeep subflow.

The flow resolves its parameters into a `ReplayPlan`, registers a `Replay` under the run id and
hands the id (never the object) to its tasks, which look it up with `live(run_id)`.

Per session the stream side loads the bars (prefetched while the previous session replays),
streams them through the coordinator, waits for the upkeep's final pass, persists the results
and rolls `session_data`; the upkeep side runs cycles on the session clock and the final pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from time import monotonic, perf_counter, time_ns
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from barkeeper.core.calendar import Calendar, SessionMinutes
from barkeeper.core.kernels import DAILY, BucketLayout, bucket_layout, derive
from barkeeper.core.panel import Panel
from barkeeper.live.coordinator import BacktestStreamCoordinator
from barkeeper.live.faults import FaultConfig, inject
from barkeeper.live.memory import return_freed_memory
from barkeeper.live.older_bars import RepositoryHistory
from barkeeper.live.run_changes import SourceSlice, source_slice
from barkeeper.live.session_checks import CycleChecks
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_results import SessionState, quarantined_mask
from barkeeper.live.upkeep import Upkeep
from barkeeper.live.upkeep_config import UpkeepConfig

if TYPE_CHECKING:
    from barkeeper.quality.final_checks import FinalChecks
    from barkeeper.quality.gx_helper import RemoteChecks

log = logging.getLogger(__name__)

VALIDATION_GAP_S = 1.0
"""Least wall time between two cycle validations: a GX call costs ~50 ms whatever its rows, so
at `--speed max` what changed is validated in fewer, larger batches (none is skipped)."""


@dataclass(frozen=True)
class ReplayPlan:
    """Everything a replay needs, resolved and validated once at the start."""

    run_id: str
    database_url: str
    symbols: tuple[str, ...]
    sessions: tuple[date, ...]
    calendar: str = "XNYS"
    speed: str = "max"
    extended_hours: bool = False
    trailing_days: int = 0
    derived: tuple[int, ...] = (5, 15, 30, 60)
    anchor: Literal["session", "clock"] = "session"
    check_interval_s: int = 60
    validation_interval_s: int = 900
    upkeep_enabled: bool = True
    upkeep: UpkeepConfig = field(default_factory=UpkeepConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    quality_threshold: float = 95.0
    reports_dir: str = "barkeeper_reports"
    reports_url: str | None = None
    prefetch: bool = True
    handlers: tuple[str, ...] = ()
    feed: str = "default"  # the feed's source name (a feed file's name)
    feed_file: str = ""  # a file streamed as the feed instead of a source
    backfill: tuple[str, ...] = ("default",)  # sources the upkeep fills from, in order


@dataclass
class LoadedSession:
    """A session's inputs, read ahead of its turn."""

    minutes: SessionMinutes
    layouts: dict[int, BucketLayout]
    feed: pd.DataFrame
    outside_bars: pd.Series
    fault_counts: dict[str, int]
    seconds: float
    available: np.ndarray | None = None  # (S, M): the repository has a bar (before faults)


@dataclass
class SessionOutcome:
    """A session's final state and figures, frozen at its close for persistence and checks."""

    state: SessionState
    metrics: pd.DataFrame
    gaps: pd.DataFrame
    bars: pd.DataFrame
    rejected: pd.DataFrame
    users: int = 0
    discrepancies: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)  # the cross_source frame


@dataclass
class SessionTiming:
    session: date
    load_wait_s: float = 0.0
    stream_s: float = 0.0
    settle_wait_s: float = 0.0
    roll_pause_s: float = 0.0


def timing_report(timings: list[dict[str, Any]], prefetch: bool) -> dict[str, Any]:
    """Per-session stream timings and the roll pause over the run's rolls (seconds).

    The roll pause runs from the previous session's results being persisted to the next
    session's first minute; the first session has none, so a one-session run has no rolls.
    """
    pauses = [t["roll_pause_s"] for t in timings[1:]]
    return {
        "prefetch": prefetch,
        "sessions": [
            {k: (str(v) if k == "session" else round(v, 6)) for k, v in t.items()} for t in timings
        ],
        "rolls": len(pauses),
        "roll_pause_mean_s": round(sum(pauses) / len(pauses), 6) if pauses else None,
        "roll_pause_max_s": round(max(pauses), 6) if pauses else None,
    }


@dataclass
class Replay:
    """Live state of one replay run."""

    plan: ReplayPlan
    data: SessionData
    calendar: Calendar
    read_bars: Callable[[tuple[str, ...], int, int], pd.DataFrame]
    # minutes per symbol whose rows were all quarantined (gap status `quarantined`)
    read_quarantined: Callable[[tuple[str, ...], int, int], dict[str, np.ndarray]] | None = None
    current: LoadedSession | None = None
    coordinator: BacktestStreamCoordinator | None = None
    upkeep: Upkeep | None = None
    started: dict[date, threading.Event] = field(default_factory=dict)
    settled: dict[date, threading.Event] = field(default_factory=dict)
    finished: threading.Event = field(default_factory=threading.Event)
    failure: str = ""
    timings: list[SessionTiming] = field(default_factory=list)
    checks: CycleChecks = field(default_factory=CycleChecks)
    symbol_success: dict[date, dict[str, bool]] = field(default_factory=dict)
    data_docs: dict[date, str] = field(default_factory=dict)
    outcomes: dict[date, SessionOutcome] = field(default_factory=dict)
    _outcomes_lock: threading.Lock = field(default_factory=threading.Lock)
    coverage: dict[date, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    sources: dict[date, SourceSlice] = field(default_factory=dict)  # read, not yet persisted
    on_progress: Callable[[float], None] | None = None
    final: FinalChecks | RemoteChecks | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    feed_file: dict[str, Any] = field(default_factory=dict)  # what a feed file held

    def __post_init__(self) -> None:
        for session in self.plan.sessions:
            self.started[session] = threading.Event()
            self.settled[session] = threading.Event()
        self.data.read_older_with(
            RepositoryHistory(
                self.calendar, self.read_bars, self.plan.extended_hours, self.plan.anchor
            )
        )

    def progress(self, sessions_done: int) -> None:
        """Report the share of sessions replayed so far (a Prefect progress artifact)."""
        if self.on_progress is not None:
            try:
                self.on_progress(100.0 * sessions_done / len(self.plan.sessions))
            except Exception:  # progress is informative; a failure must not stop the replay
                log.warning("progress update failed", exc_info=True)

    def release(self, session: date) -> None:
        """One user of the session's outcome is done; the last one (of two with the upkeep's
        checkpoint, else one) frees it, so a long replay holds at most a session or two."""
        with self._outcomes_lock:
            outcome = self.outcomes[session]
            outcome.users += 1
            freed = outcome.users >= (2 if self.plan.upkeep_enabled else 1)
            if freed:
                del self.outcomes[session]
        del outcome
        if freed:
            return_freed_memory()

    def add_records(self, records: Iterable[dict[str, Any]]) -> None:
        """Queue validation records for the stream side, the run's one writer of results."""
        with self._outcomes_lock:
            self.records.extend(records)

    def take_records(self) -> list[dict[str, Any]]:
        with self._outcomes_lock:
            records, self.records = self.records, []
        return records

    def session_share(self) -> float:
        """How far the current session's clock has come, 0..1 (for progress bars)."""
        if self.data.session is None or self.data.clock < 0:
            return 0.0
        minutes = self.data.minutes
        return float(np.searchsorted(minutes, self.data.clock, side="right")) / len(minutes)

    # -- loading -----------------------------------------------------------------------------

    def load(self, session: date) -> LoadedSession:
        """Read a session's bars from the feed and pass them through the fault injector."""
        began = perf_counter()
        minutes = self.calendar.session_minutes(session, self.plan.extended_hours)
        layouts = self.layouts(minutes)
        window = self.day_window(session)
        bars = self.read_bars(self.plan.symbols, *window)
        read_at = time_ns()  # after the read: every bar it saw was stored before this
        base = "" if self.plan.feed_file else self.plan.feed  # a feed file: no repository base
        self.sources[session] = source_slice(
            bars, minutes, self.plan.symbols, window, base, read_at
        )
        inside = np.isin(bars["ts"].to_numpy(), minutes.minutes)
        outside = bars.loc[~inside].groupby("symbol").size()
        faulted = inject(bars.loc[inside].reset_index(drop=True), self.plan.faults, session)
        return LoadedSession(
            minutes=minutes,
            layouts=layouts,
            feed=faulted.frame,
            outside_bars=outside,
            fault_counts=faulted.log.counts(),
            seconds=perf_counter() - began,
            available=_available(bars.loc[inside], self.plan.symbols, minutes.minutes),
        )

    def quarantined(self, minutes: SessionMinutes, symbols: tuple[str, ...]) -> np.ndarray | None:
        """(S, M) bool: the session's minutes whose vendor rows were all quarantined."""
        if self.read_quarantined is None:
            return None
        found = self.read_quarantined(symbols, *self.day_window(minutes.session))
        return quarantined_mask(symbols, minutes.minutes, found)

    def day_window(self, session: date) -> tuple[int, int]:
        """The session's whole local day: every bar it may own, in or out of its minutes.

        Wider than the extended-hours segments (04:00-20:00), so a bar outside every segment
        (03:30 or 21:00 exchange time) is read and counted as an outside bar, not ignored.
        """
        local = [
            pd.Timestamp(datetime.combine(d, time(0, 0))).tz_localize(self.calendar.tz)
            for d in (session, session + timedelta(days=1))
        ]
        return int(local[0].timestamp()), int(local[1].timestamp())

    def layouts(self, minutes: SessionMinutes) -> dict[int, BucketLayout]:
        """The derived intervals' layouts, plus the daily bar (DAILY) of every session.

        The daily bar costs one bucket per symbol and session and is what a multi-session
        strategy reads as "yesterday's bar", so it is kept whatever `derived` lists.
        """
        return {
            n: bucket_layout(minutes.minutes, minutes.segment, n, self.plan.anchor)
            for n in sorted({*self.plan.derived, DAILY})
        }

    def load_history(self, first: date) -> None:
        """Put the trailing sessions before `first` into `session_data` (oldest first)."""
        for session in self.calendar.previous_sessions(first, self.plan.trailing_days):
            minutes = self.calendar.session_minutes(session, self.plan.extended_hours)
            bars = self.read_bars(self.plan.symbols, int(minutes.minutes[0]), _end(minutes))
            panel = Panel.empty(self.plan.symbols, minutes.minutes)
            panel.fill(bars)
            layouts = self.layouts(minutes)
            derived = {n: derive(panel, layout) for n, layout in layouts.items()}
            self.data.add_history(session, minutes.minutes, minutes.segment, panel, derived)

    # -- streaming ---------------------------------------------------------------------------

    def stream(self, loaded: LoadedSession) -> None:
        """Replay one loaded session through the coordinator (blocks until its close)."""
        session = loaded.minutes.session
        self.current = loaded
        self.data.start_session(loaded.minutes, self.plan.symbols, loaded.layouts)
        self.started[session].set()
        assert self.coordinator is not None
        self.coordinator.feed_frame(loaded.feed)
        self.coordinator.run()

    def wait_settled(self, session: date, timeout_s: float = 3600.0) -> None:
        """Wait until the upkeep's final pass of `session` is done (or the upkeep gave up)."""
        deadline = monotonic() + timeout_s
        while not self.settled[session].wait(0.5):
            if self.failure or monotonic() > deadline:
                raise RuntimeError(f"upkeep did not settle session {session}: {self.failure}")

    # -- upkeep ------------------------------------------------------------------------------

    def upkeep_session(self, session: date, on_validate: Callable[[bool], None]) -> bool:
        """Run upkeep cycles for `session` on its clock, then the final pass.

        Returns False when the stream ended before the session started (nothing to settle).
        """
        while not self.started[session].wait(0.5):
            if self.finished.is_set() or self.failure:
                return False
        assert self.upkeep is not None and self.current is not None
        minutes = self.current.minutes
        self.upkeep.begin_session(minutes, self.current.layouts)
        self.checks.begin_session(self.upkeep.state.shape)
        first = int(minutes.minutes[0])
        next_check = first + self.plan.check_interval_s
        next_validation = first + self.plan.validation_interval_s
        validated_at = -VALIDATION_GAP_S
        while not self.data.closed:
            if not self.data.wait_for_clock(next_check, timeout=0.5) or self.data.closed:
                continue
            if self.coordinator is not None and self.coordinator.is_paused:
                continue
            clock = self.data.clock
            self.upkeep.cycle(clock)
            next_check = _next_after(clock, next_check, self.plan.check_interval_s)
            if clock >= next_validation and monotonic() - validated_at >= VALIDATION_GAP_S:
                on_validate(False)
                validated_at = monotonic()
                next_validation = _next_after(
                    clock, next_validation, self.plan.validation_interval_s
                )
        self.upkeep.final_pass()
        on_validate(True)  # the rejected bars still unreported; the checkpoint checks the rest
        return True


def _next_after(clock: int, due: int, step: int) -> int:
    """The first multiple of `step` past `due` that lies after `clock` (skipping missed checks)."""
    missed = max(0, (clock - due) // step + 1)
    return due + missed * step


def _available(bars: pd.DataFrame, symbols: tuple[str, ...], minutes: np.ndarray) -> np.ndarray:
    """(S, M) True where `bars` (symbol, ts inside `minutes`) holds a bar."""
    mask = np.zeros((len(symbols), len(minutes)), dtype=bool)
    rows = pd.Index(symbols).get_indexer(bars["symbol"])
    cols = np.searchsorted(minutes, bars["ts"].to_numpy(dtype=np.int64))
    keep = rows >= 0
    mask[rows[keep], cols[keep]] = True
    return mask


def _end(minutes: SessionMinutes) -> int:
    return int(minutes.minutes[-1]) + 60


_LIVE: dict[str, Replay] = {}
_LIVE_LOCK = threading.Lock()


def register(replay: Replay) -> None:
    with _LIVE_LOCK:
        _LIVE[replay.plan.run_id] = replay


def live(run_id: str) -> Replay:
    """The live replay of `run_id` in this process."""
    with _LIVE_LOCK:
        return _LIVE[run_id]


def newest() -> Replay | None:
    """The most recently registered live replay (for progress displays), if any."""
    with _LIVE_LOCK:
        return next(reversed(_LIVE.values()), None)


def unregister(run_id: str) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(run_id, None)
