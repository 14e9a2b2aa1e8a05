"""Steps of the replay flow: `open_run` is a task; the per-session steps are plain calls.

The flow's few long-lived tasks (and its one upkeep subflow) call these steps once per session,
so Prefect's bookkeeping per run does not grow with sessions, symbols or bars. Steps receive
the run id and find the live replay with `live(run_id)`: arrays never travel through Prefect.
"""

from __future__ import annotations

import logging
from datetime import date
from functools import partial
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE

from barkeeper.core.calendar import Calendar
from barkeeper.ingest.feed import FileFeed
from barkeeper.live.coordinator import BacktestStreamCoordinator
from barkeeper.live.handlers import attach_handlers
from barkeeper.live.replay import (
    LoadedSession,
    Replay,
    ReplayPlan,
    SessionOutcome,
    live,
    register,
)
from barkeeper.live.run_changes import assert_rebuilt, persist_session_bars
from barkeeper.live.session_checks import final_frames, symbol_success
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_results import (
    SessionState,
    coverage_codes,
    session_bars,
    session_gaps,
    session_metrics,
)
from barkeeper.live.upkeep import Upkeep
from barkeeper.params import ReplayParameters
from barkeeper.quality.frames import prepare_session_quality
from barkeeper.quality.gx_helper import call_gx, final_checks
from barkeeper.quality.validation import SuiteResult, validate_changed_bars
from barkeeper.reports.rebuild import session_series
from barkeeper.settings import load_settings
from models.engine import engine_for
from models.repository import (
    quarantined_minutes,
    read_bars,
    read_bars_at,
    write_quarantine,
)
from models.results import (
    create_run,
    mark_interrupted,
    write_session_results,
    write_validation_results,
)
from models.sources import write_discrepancies
from tasks.replay_plan import preflight
from tasks.report import CHARTED_SESSIONS
from tasks.secrets import run_settings


class RepositorySource:
    """A named source of the bar repository as one of the upkeep's backfill sources."""

    def __init__(self, database_url: str, name: str = "default") -> None:
        self.database_url = database_url
        self.name = name

    def fetch(self, keys: pd.DataFrame) -> pd.DataFrame:
        return read_bars_at(engine_for(self.database_url), keys, source=self.name)


@task(cache_policy=NONE)
def open_run(replay: ReplayParameters, run_id: str) -> ReplayPlan:
    """Validate the request against the store, record the run and set up its live state."""
    plan = preflight(replay, run_settings(), run_id)
    engine = engine_for(plan.database_url)
    mark_interrupted(engine)  # earlier runs whose process was killed
    create_run(engine, run_id, "replay_sessions", replay.model_dump(mode="json"))
    data = SessionData(history_sessions=plan.trailing_days)
    feed_file = FileFeed.open(plan.feed_file) if plan.feed_file else None
    replay_state = Replay(
        plan=plan,
        data=data,
        calendar=Calendar(plan.calendar),
        read_bars=feed_file.read_bars
        if feed_file
        else partial(read_bars, engine, source=plan.feed),
        read_quarantined=partial(quarantined_minutes, engine, source=plan.feed),
    )
    replay_state.final = final_checks(
        run_id,
        Path(plan.reports_dir) / "data_docs",
        {"quality_threshold": plan.quality_threshold},
    )
    if feed_file is not None:  # its bad rows are quarantined and counted, as an import's are
        quarantine = feed_file.parsed.quarantine.assign(source=plan.feed)
        write_quarantine(
            engine,
            quarantine,
            file=feed_file.parsed.path,
            content_hash=feed_file.parsed.content_hash,
        )
        replay_state.feed_file = feed_file.report()
    replay_state.coordinator = BacktestStreamCoordinator(data, plan.speed)
    attach_handlers(replay_state.coordinator, data, plan.handlers)
    replay_state.upkeep = Upkeep(
        data,
        [RepositorySource(plan.database_url, name) for name in plan.backfill],
        plan.upkeep,
        on_changed=replay_state.checks.changed,
        on_rejected=replay_state.checks.reject,
    )
    progress_id = create_progress_artifact(
        progress=0.0, description=f"Sessions replayed of {len(plan.sessions)}"
    )
    replay_state.on_progress = partial(update_progress_artifact, progress_id)
    register(replay_state)
    get_run_logger().info(
        "replaying %d symbols over %d session(s) %s..%s",
        len(plan.symbols),
        len(plan.sessions),
        plan.sessions[0],
        plan.sessions[-1],
    )
    return plan


LOAD_RETRY_DELAYS_S = (1.0, 5.0)
PERSIST_RETRY_DELAYS_S = (1.0, 2.0, 5.0)


def load_history(run_id: str, first: date) -> None:
    """Read the trailing sessions before `first` into session_data."""
    live(run_id).load_history(first)


def load_session(run_id: str, session: date) -> LoadedSession:
    """Read one session's bars from the repository through the fault injector."""
    return live(run_id).load(session)


def stream_session(run_id: str, loaded: LoadedSession) -> None:
    """Replay one session through the coordinator, in timestamp order across symbols."""
    live(run_id).stream(loaded)


def capture_outcome(replay: Replay, session: date) -> None:
    """Freeze the session's final state and figures before session_data rolls on.

    Persistence and validation both work from this one capture, so they can run at the same
    time (and the next session can start) without reading live arrays.
    """
    snapshot = replay.data.panel_snapshot()
    assert replay.current is not None and replay.current.minutes.session == session
    upkeep = replay.upkeep if replay.plan.upkeep_enabled else None
    derived = snapshot.derived if replay.plan.upkeep.auto_compute_derived else {}
    state = SessionState(
        minutes=replay.current.minutes,
        panel=snapshot.panel,
        provenance=snapshot.provenance,
        slot_state=None if upkeep is None else upkeep.state.copy(),
        derived=derived,
        outside_bars=replay.current.outside_bars,
        quarantined=replay.quarantined(replay.current.minutes, tuple(snapshot.panel.symbols)),
        origin=None if upkeep is None else upkeep.origin.copy(),
        feed=replay.plan.feed,
        backfill=replay.plan.backfill,
        disagreements=None if upkeep is None else upkeep.reconciliation.mask(),
        available=replay.current.available,
    )
    replay.outcomes[session] = SessionOutcome(
        state=state,
        metrics=session_metrics(state),
        gaps=session_gaps(state, replay.plan.upkeep.max_retries),
        bars=session_bars(state),
        rejected=replay.checks.rejected_frame(state.minutes.minutes),
    )
    if upkeep is not None and replay.plan.upkeep.reconcile:
        symbols, minutes, plan = state.panel.symbols, state.minutes.minutes, replay.plan
        outcome = replay.outcomes[session]
        outcome.discrepancies = upkeep.reconciliation.frame(
            symbols, minutes, plan.feed, plan.backfill
        )
        outcome.comparisons = upkeep.reconciliation.comparisons(symbols, minutes, plan.backfill)
    if len(replay.coverage) < CHARTED_SESSIONS:
        replay.coverage[session] = (state.minutes.minutes, coverage_codes(state))


def validate_session(run_id: str, session: date) -> None:
    """Queue the session's final bars, derived bars and metrics for the run's GX batches.

    Only the prepared frames wait for their batch (bounded in rows), not the session's state.
    """
    replay = live(run_id)
    outcome = replay.outcomes[session]
    bars_1m, derived = final_frames(outcome.state, outcome.bars)
    metrics = outcome.metrics
    quality = prepare_session_quality(metrics.loc[metrics["segment"] == "regular"])
    frames = {
        "bars_1m": bars_1m,
        "bars_derived": derived,
        "session_quality": quality,
        "cross_source": outcome.comparisons,
    }
    rejected = outcome.rejected
    replay.release(session)
    assert replay.final is not None
    record_final(replay, replay.final.add(str(session), frames, rejected))


def finish_validation(run_id: str) -> None:
    """Validate the last batch and build the run's Data Docs, once."""
    replay = live(run_id)
    assert replay.final is not None
    record_final(replay, replay.final.flush())
    pages = replay.final.publish()
    replay.data_docs = {date.fromisoformat(label): str(page) for label, page in pages.items()}


def record_final(replay: Replay, results: dict[str, list[SuiteResult]]) -> None:
    """Per-symbol verdicts and validation records of a batch's sessions (written by the stream)."""
    for label, session_results in results.items():
        session = date.fromisoformat(label)
        replay.symbol_success[session] = symbol_success(session_results, replay.plan.symbols)
        replay.add_records(
            r.to_record(replay.plan.run_id, session, stage="final") for r in session_results
        )
        failed = [f"{r.suite}/{r.severity}" for r in session_results if not r.success]
        get_run_logger().info("session %s validated; failing: %s", session, failed or "none")


def write_records(run_id: str) -> None:
    """Write the validation records gathered so far; one writer thread keeps SQLite uncontended."""
    replay = live(run_id)
    write_validation_results(engine_for(replay.plan.database_url), replay.take_records())


def persist_session(run_id: str, session: date) -> dict[str, int]:
    """Write the session's metrics, gaps and bar changes to the store (replacing a previous write).

    With BARKEEPER_VERIFY_EXPORTS set, the series is rebuilt from the store right after and
    must equal the in-memory full copy exactly (AssertionError otherwise).
    """
    replay = live(run_id)
    outcome = replay.outcomes[session]
    engine = engine_for(replay.plan.database_url)
    write_session_results(engine, run_id, session, metrics=outcome.metrics, gaps=outcome.gaps)
    bars = persist_session_bars(
        engine,
        run_id,
        outcome.state,
        replay.sources[session],
        calendar=replay.plan.calendar,
        anchor=replay.plan.anchor,
    )
    write_discrepancies(engine, run_id, session, outcome.discrepancies)
    if load_settings().verify_exports:
        assert_rebuilt(session_series(engine, run_id, session), outcome.bars, run_id, session)
    del replay.sources[session]
    replay.release(session)
    return {"metrics": len(outcome.metrics), "gaps": len(outcome.gaps), "bars": bars}


def cycle_validation(replay: Replay, session: date, closing: bool = False) -> None:
    """One GX batch over what changed since the last validation (called between cycles).

    At the close (`closing`) only the bars rejected as delivered are left to report: the
    session's checkpoint validates every final bar right after.
    """
    snapshot = replay.data.panel_snapshot()
    frame = replay.checks.take_frame(
        snapshot.panel.symbols, snapshot.minutes, snapshot.panel, pending=not closing
    )
    if frame.empty:
        return
    try:
        results = call_gx(validate_changed_bars, replay.plan.quality_threshold, frame)
    except Exception:
        logging.getLogger(__name__).exception("cycle validation failed; the upkeep goes on")
        return
    replay.add_records(r.to_record(replay.plan.run_id, session, stage="cycle") for r in results)
