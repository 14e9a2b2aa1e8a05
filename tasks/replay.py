"""Tasks of the replay flow: each wraps one I/O step or one stretch of the live replay.

Tasks receive the run id and find the live replay with `live(run_id)`: arrays never travel
through Prefect. Their number per session is fixed, whatever the symbol or bar count.
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
from barkeeper.errors import ParameterError
from barkeeper.live.coordinator import BacktestStreamCoordinator, parse_speed
from barkeeper.live.faults import FaultConfig, parse_outage
from barkeeper.live.replay import (
    LoadedSession,
    Replay,
    ReplayPlan,
    SessionOutcome,
    attach_handlers,
    handler_factory,
    live,
    register,
)
from barkeeper.live.session_checks import final_frames, symbol_success
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_results import (
    SessionState,
    coverage_codes,
    session_bars,
    session_gaps,
    session_metrics,
)
from barkeeper.live.upkeep import Upkeep, UpkeepConfig
from barkeeper.params import ReplayParameters
from barkeeper.quality.data_docs import run_final_checkpoint
from barkeeper.settings import Settings, load_settings
from models.engine import engine_for
from models.repository import known_symbols, read_bars, read_bars_at
from models.results import (
    create_run,
    mark_interrupted,
    write_session_results,
    write_validation_results,
)
from models.schema import init_db


class RepositorySource:
    """The bar repository as the upkeep's source of backfills and repairs."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def fetch(self, keys: pd.DataFrame) -> pd.DataFrame:
        return read_bars_at(engine_for(self.database_url), keys)


def make_plan(replay: ReplayParameters, settings: Settings, run_id: str) -> ReplayPlan:
    """Resolve parameters against settings and the calendar; raise on anything unusable."""
    calendar = Calendar(replay.calendar or settings.calendar)
    parse_speed(replay.speed)  # e.g. 0x: a one-line error here, not a failed task later
    sessions = calendar.sessions(replay.start, replay.last)
    if not sessions:
        raise ParameterError(
            f"start/end: no {calendar.name} session between {replay.start} and {replay.last}"
        )
    faults = replay.faults
    return ReplayPlan(
        run_id=run_id,
        database_url=settings.database_url,
        symbols=tuple(replay.symbols),
        sessions=tuple(sessions),
        calendar=calendar.name,
        speed=replay.speed,
        extended_hours=replay.extended_hours,
        trailing_days=replay.trailing_days,
        derived=tuple(sorted(set(replay.derived or settings.data_upkeep_derived_intervals))),
        check_interval_s=replay.interval_seconds or settings.data_upkeep_check_interval_seconds,
        validation_interval_s=(
            replay.validation_interval_seconds or settings.data_upkeep_validation_interval_seconds
        ),
        upkeep_enabled=(
            settings.data_upkeep_enabled if replay.upkeep_enabled is None else replay.upkeep_enabled
        ),
        upkeep=UpkeepConfig(
            retry_missing_bars=settings.data_upkeep_retry_missing_bars,
            max_retries=settings.data_upkeep_max_retries,
            auto_compute_derived=settings.data_upkeep_auto_compute_derived,
            fill_policy=replay.fill_policy,
            ffill_limit=replay.ffill_limit,
        ),
        faults=FaultConfig(
            drop_rate=faults.drop_rate,
            outages=tuple(parse_outage(w) for w in faults.outages),
            duplicate_rate=faults.duplicate_rate,
            out_of_order_rate=faults.out_of_order_rate,
            corrupt_rate=faults.corrupt_rate,
            seed=faults.seed,
            tz=str(calendar.tz),
        ),
        quality_threshold=(
            settings.quality_threshold
            if replay.quality_threshold is None
            else replay.quality_threshold
        ),
        reports_dir=str(settings.reports_dir),
        prefetch=replay.prefetch,
        handlers=tuple(replay.handlers),
    )


def preflight(replay: ReplayParameters, settings: Settings, run_id: str = "") -> ReplayPlan:
    """The run's plan, after checking the store knows every symbol (raises ParameterError)."""
    plan = make_plan(replay, settings, run_id)
    engine = engine_for(plan.database_url)
    init_db(engine)
    unknown = sorted(set(plan.symbols) - set(known_symbols(engine)))
    if unknown:
        raise ParameterError(
            f"symbols: {', '.join(unknown)} not in the repository; import them first "
            "(barkeeper import PATH)"
        )
    for path in plan.handlers:
        handler_factory(path)
    return plan


@task(cache_policy=NONE)
def open_run(replay: ReplayParameters, run_id: str) -> ReplayPlan:
    """Validate the request against the store, record the run and set up its live state."""
    plan = preflight(replay, load_settings(), run_id)
    engine = engine_for(plan.database_url)
    mark_interrupted(engine)  # earlier runs whose process was killed
    create_run(engine, run_id, "replay_sessions", replay.model_dump(mode="json"))
    data = SessionData(history_sessions=plan.trailing_days)
    replay_state = Replay(
        plan=plan,
        data=data,
        calendar=Calendar(plan.calendar),
        read_bars=partial(read_bars, engine),
    )
    replay_state.coordinator = BacktestStreamCoordinator(data, plan.speed)
    attach_handlers(replay_state.coordinator, data, plan.handlers)
    replay_state.upkeep = Upkeep(
        data,
        RepositorySource(plan.database_url),
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


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[1, 5])
def load_history(run_id: str, first: date) -> None:
    """Read the trailing sessions before `first` into session_data."""
    live(run_id).load_history(first)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=[1, 5])
def load_session(run_id: str, session: date) -> LoadedSession:
    """Read one session's bars from the repository through the fault injector."""
    return live(run_id).load(session)


@task(cache_policy=NONE)
def stream_session(run_id: str, loaded: LoadedSession) -> dict[str, float]:
    """Replay one session through the coordinator, in timestamp order across symbols."""
    replay = live(run_id)
    replay.stream(loaded)
    stats = replay.coordinator.stats
    return {"bars": stats.bars_delivered, "seconds": stats.wall_seconds}


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
        available=replay.current.available,
    )
    replay.outcomes[session] = SessionOutcome(
        state=state,
        metrics=session_metrics(state),
        gaps=session_gaps(state, replay.plan.upkeep.max_retries),
        bars=session_bars(state),
        rejected=replay.checks.rejected_frame(state.minutes.minutes),
    )
    replay.coverage[session] = (state.minutes.minutes, coverage_codes(state))


@task(cache_policy=NONE)
def validate_session(run_id: str, session: date) -> None:
    """Validate the session's final bars, derived bars and metrics in one GX checkpoint.

    The checkpoint also writes the session's Data Docs pages, so nothing of the session has
    to stay in memory until the end of the run.
    """
    replay = live(run_id)
    outcome = replay.outcomes[session]
    bars_1m, derived = final_frames(outcome.state, outcome.bars)
    metrics = outcome.metrics
    frames = {"bars_1m": bars_1m, "session_quality": metrics.loc[metrics["segment"] == "regular"]}
    if len(derived):
        frames["bars_derived"] = derived
    docs = Path(replay.plan.reports_dir) / "data_docs"
    parameters = {"quality_threshold": replay.plan.quality_threshold}
    checkpoint = run_final_checkpoint(run_id, str(session), frames, docs, parameters=parameters)
    results = checkpoint.results
    replay.symbol_success[session] = symbol_success(results, outcome.state.panel.symbols)
    replay.data_docs[session] = str(checkpoint.page)
    if len(outcome.rejected):  # the bars the upkeep repaired, as the feed delivered them
        run_final_checkpoint(
            run_id,
            f"{session}_rejected",
            {"bars_1m": outcome.rejected},
            docs,
            parameters=parameters,
        )
    records = [r.to_record(run_id, session, stage="final") for r in results]
    write_validation_results(engine_for(replay.plan.database_url), records)
    replay.release(session)
    failed = [f"{r.suite}/{r.severity}" for r in results if not r.success]
    get_run_logger().info("session %s validated; failing: %s", session, failed or "none")


@task(cache_policy=NONE, retries=3, retry_delay_seconds=[1, 2, 5])
def persist_session(run_id: str, session: date) -> dict[str, int]:
    """Write the session's metrics, gaps and bars to the store (replacing a previous write)."""
    replay = live(run_id)
    outcome = replay.outcomes[session]
    write_session_results(
        engine_for(replay.plan.database_url),
        run_id,
        session,
        metrics=outcome.metrics,
        gaps=outcome.gaps,
        bars=outcome.bars,
    )
    replay.release(session)
    return {"metrics": len(outcome.metrics), "gaps": len(outcome.gaps), "bars": len(outcome.bars)}


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
        results = replay.validator().validate_bars_1m(frame)
    except Exception:
        logging.getLogger(__name__).exception("cycle validation failed; the upkeep goes on")
        return
    records = [r.to_record(replay.plan.run_id, session, stage="cycle") for r in results]
    write_validation_results(engine_for(replay.plan.database_url), records)
