"""Flow `replay_sessions`: sessions replayed through the coordinator, kept clean by the upkeep.

A run has four Prefect runs, whatever its sessions and symbols: `open_run`, the long-lived
`stream_sessions` task (in a worker thread: load, stream, persist per session, as plain calls
retried where they do I/O), the one `data_upkeep` subflow in the flow's own thread (cycles,
final pass, batched validation), and `publish_report`. Progress is an artifact per session.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from time import perf_counter
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from barkeeper.live.replay import LoadedSession, SessionTiming, live, timing_report, unregister
from barkeeper.live.retry import retrying
from barkeeper.params import ReplayParameters
from models.engine import engine_for
from models.results import finish_run
from tasks.events import emit_run_events
from tasks.replay import (
    LOAD_RETRY_DELAYS_S,
    PERSIST_RETRY_DELAYS_S,
    capture_outcome,
    cycle_validation,
    finish_validation,
    load_history,
    load_session,
    open_run,
    persist_session,
    stream_session,
    validate_session,
    write_records,
)
from tasks.report import publish_report


@task(cache_policy=NONE)
def stream_sessions(run_id: str) -> list[dict[str, Any]]:
    """Stream every session in order, prefetching the next one while the current one replays."""
    replay = live(run_id)
    sessions = replay.plan.sessions
    ahead = replay.plan.prefetch
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="barkeeper-prefetch")

    def load(session: date) -> LoadedSession:
        return retrying(lambda: load_session(run_id, session), LOAD_RETRY_DELAYS_S, "load")

    def take(session: date, pending: Future[LoadedSession] | None) -> LoadedSession:
        """The prefetched session, or a direct read without prefetch or when it failed."""
        if pending is not None:
            try:
                return pending.result()
            except Exception:
                get_run_logger().warning("prefetch of %s failed; reading it now", session)
        return load(session)

    try:
        pending = prefetch.submit(load, sessions[0]) if ahead else None
        if replay.plan.trailing_days:
            retrying(lambda: load_history(run_id, sessions[0]), LOAD_RETRY_DELAYS_S, "history")
        closed_at = None
        for i, session in enumerate(sessions):
            timing = SessionTiming(session)
            waited = perf_counter()
            loaded = take(session, pending)
            timing.load_wait_s = perf_counter() - waited
            if ahead and i + 1 < len(sessions):
                pending = prefetch.submit(load, sessions[i + 1])
            if closed_at is not None:
                timing.roll_pause_s = perf_counter() - closed_at
            began = perf_counter()
            stream_session(run_id, loaded)
            timing.stream_s = perf_counter() - began
            settle = perf_counter()
            if replay.plan.upkeep_enabled:
                replay.wait_settled(session)
            else:
                capture_outcome(replay, session)
            timing.settle_wait_s = perf_counter() - settle
            # while the upkeep validates the same outcome
            retrying(
                lambda s=session: persist_session(run_id, s), PERSIST_RETRY_DELAYS_S, "persist"
            )
            write_records(run_id)
            closed_at = perf_counter()
            replay.timings.append(timing)
            replay.progress(i + 1)
    finally:
        replay.finished.set()
        prefetch.shutdown(wait=False, cancel_futures=True)
    return [vars(t) for t in replay.timings]


@flow(name="data_upkeep")
def data_upkeep(run_id: str) -> dict[str, Any]:
    """Keep every session of the replay clean: cycles on the session clock, then a final pass."""
    replay = live(run_id)
    try:
        for session in replay.plan.sessions:
            settled = replay.upkeep_session(
                session, lambda closing, s=session: cycle_validation(replay, s, closing)
            )
            if not settled:
                break
            capture_outcome(replay, session)
            replay.settled[session].set()
            validate_session(run_id, session)
        finish_validation(run_id)
    except BaseException as error:
        replay.failure = f"upkeep failed: {error}"
        raise
    stats = replay.upkeep.stats
    return {"cycles": stats.cycles, "cycle_errors": stats.cycle_errors}


@flow(name="replay_sessions", validate_parameters=True)
def replay_sessions(replay: ReplayParameters) -> dict[str, Any]:
    """Replay sessions of 1-minute bars with the upkeep running beside the coordinator.

    Returns the run's summary (run_id, status, data_docs, timings); the per-symbol figures
    are in the store (`barkeeper.reports.report.replay_report`).
    """
    run_id = flow_run.get_id() or _local_run_id()
    plan = open_run(replay, run_id)
    engine = engine_for(plan.database_url)
    try:
        streaming = stream_sessions.submit(run_id)
        if plan.upkeep_enabled:
            # One subflow for the whole replay; the parent's heartbeat covers it, and its own
            # heartbeat thread would add a ~1 s join on exit.
            with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                data_upkeep(run_id)
        timings = streaming.result()
        write_records(run_id)  # the last batch's, validated after the stream's last write
        summary = publish_report(run_id)
        pages = {str(day): page for day, page in live(run_id).data_docs.items()}
    except BaseException as error:
        # The stream thread waits for sessions the upkeep settles; a failure that never
        # reached the upkeep's body (e.g. the API refused its subflow) must release it too,
        # or the flow's exit waits an hour on that thread.
        state = live(run_id)
        state.failure = state.failure or f"{type(error).__name__}: {error}"
        finish_run(engine, run_id, "failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        unregister(run_id)
    status = "degraded" if summary["degraded"] else "completed"
    finish_run(engine, run_id, status, data_docs=summary["data_docs"], stats={"timings": timings})
    get_run_logger().info("run %s %s; Data Docs: %s", run_id, status, summary["data_docs"])
    emit_run_events(run_id, "replay_sessions", status, plan.quality_threshold, pages)
    # A summary, not the report: Prefect walks a flow's return value object by object
    # (seconds at 500 symbols x 20 sessions); `replay_report` reads the figures back.
    return {
        "run_id": run_id,
        "status": status,
        "data_docs": summary["data_docs"],
        **({"feed_file": summary["feed_file"]} if "feed_file" in summary else {}),
        "timings": timing_report(timings, plan.prefetch),
    }


def _local_run_id() -> str:
    import uuid

    return uuid.uuid4().hex
