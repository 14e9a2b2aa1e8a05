"""Flow `replay_fanout`: a date range's sessions replayed in parallel on a Dask cluster.

Each session is an independent `replay_sessions` run (start = end = that session) inside one
Dask worker process: its live state, coordinator and upkeep stay in that process, its trailing
history is read from the repository, and its results go to the shared store. So the workers
need the same store URL (PostgreSQL beyond one machine), repository and reports folder.

With no scheduler address a local cluster of `workers` processes is started for the run (and
torn down after; its teardown may log harmless `CommClosedError`s). Scripts that start one need
an `if __name__ == "__main__":` guard, as Dask spawns its worker processes.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from prefect_dask import DaskTaskRunner

from barkeeper.core.calendar import Calendar
from barkeeper.errors import ParameterError
from barkeeper.params import ReplayParameters
from barkeeper.settings import load_settings

ADDRESS_ENV = "BARKEEPER_DASK_ADDRESS"
"""Scheduler address of an existing Dask cluster (e.g. tcp://10.0.0.5:8786), if any."""


def range_sessions(replay: ReplayParameters) -> list[date]:
    """The calendar's sessions from `replay.start` to `replay.last` (raises if there are none)."""
    calendar = Calendar(replay.calendar or load_settings().calendar)
    sessions = calendar.sessions(replay.start, replay.last)
    if not sessions:
        raise ParameterError(
            f"start/end: no {calendar.name} session between {replay.start} and {replay.last}"
        )
    return sessions


def dask_runner(workers: int, address: str | None = None) -> DaskTaskRunner:
    """A runner on the cluster at `address` (or $BARKEEPER_DASK_ADDRESS), else a local one.

    The local cluster has one single-threaded process per worker: a session's replay already
    runs its coordinator and upkeep in threads of its own, and GX is not thread-safe.
    """
    address = address or os.environ.get(ADDRESS_ENV) or None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


@task(cache_policy=NONE, task_run_name="replay-{session}")
def replay_session(replay: ReplayParameters, session: date) -> dict[str, Any]:
    """Replay one session as a `replay_sessions` run of its own; returns that run's report."""
    from flows.replay import replay_sessions

    return replay_sessions(replay.model_copy(update={"start": session, "end": session}))


@flow(name="replay_fanout", validate_parameters=True)
def replay_fanout(
    replay: ReplayParameters, workers: int = 2, address: str | None = None
) -> dict[str, Any]:
    """Replay every session of the range in parallel, one `replay_sessions` run per session.

    Parameters
    ----------
    replay
        What to replay, as for `replay_sessions`; `start`..`end` is split into sessions.
    workers
        Worker processes of the local cluster (ignored with an address).
    address
        Scheduler of an existing Dask cluster; default $BARKEEPER_DASK_ADDRESS, else a local
        cluster is started.

    Returns
    -------
    dict
        `{"run_ids": [...], "sessions": [...]}`: the sessions of every per-session report in
        date order, each with the `run_id` and `data_docs` of the run that replayed it.
    """
    if workers < 1:
        raise ParameterError(f"workers: {workers} must be 1 or more")
    sessions = range_sessions(replay)
    logger = get_run_logger()
    logger.info("fanning %d session(s) out over Dask", len(sessions))
    with dask_runner(workers, address) as runner:
        futures = [
            runner.submit(replay_session, {"replay": replay, "session": s}) for s in sessions
        ]
        reports = [future.result() for future in futures]
    merged = []
    for report in reports:
        for session in report["sessions"]:
            merged.append({**session, "run_id": report["run_id"], "data_docs": report["data_docs"]})
    merged.sort(key=lambda s: s["date"])
    return {"run_ids": [r["run_id"] for r in reports], "sessions": merged}


if __name__ == "__main__":
    import json
    import sys

    params = ReplayParameters.model_validate_json(sys.argv[1])
    print(json.dumps(replay_fanout(params), indent=2))
