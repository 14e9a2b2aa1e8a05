"""Flow `replay_fanout`: a date range's sessions replayed in parallel on a Dask cluster.

The range is cut into one contiguous block of sessions per worker, and each block is one
`replay_sessions` run inside one Dask worker process: the worker pays the fixed costs (imports,
GX context, run bookkeeping) once, its trailing history and prefetch carry over from session to
session, and the first session of a block reads its history from the repository. Results go to
the shared store, so the workers need the same store URL (PostgreSQL beyond one machine),
repository and reports folder; they report to the flow's own Prefect API.

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
from prefect.settings import PREFECT_API_URL, temporary_settings
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


def session_blocks(sessions: list[date], workers: int) -> list[list[date]]:
    """`sessions` cut into at most `workers` contiguous blocks of near-equal length, in order."""
    count = min(workers, len(sessions))
    size, longer = divmod(len(sessions), count)
    blocks, first = [], 0
    for k in range(count):
        last = first + size + (k < longer)
        blocks.append(sessions[first:last])
        first = last
    return blocks


@task(cache_policy=NONE, task_run_name="replay-{first}-to-{last}")
def replay_block(replay: ReplayParameters, first: date, last: date) -> dict[str, Any]:
    """Replay the sessions `first`..`last` as one `replay_sessions` run; returns its summary."""
    from flows.replay import replay_sessions

    return replay_sessions(replay.model_copy(update={"start": first, "end": last}))


def flow_api_url() -> str:
    """The Prefect API this flow run reports to (a temporary server Prefect started included)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.client is None:
        raise RuntimeError("flow_api_url is only meaningful inside a flow run")
    return str(context.client.api_url).rstrip("/")


@flow(name="replay_fanout", validate_parameters=True)
def replay_fanout(
    replay: ReplayParameters, workers: int = 2, address: str | None = None
) -> dict[str, Any]:
    """Replay the range in parallel: one `replay_sessions` run per worker's block of sessions.

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
        `{"run_ids": [...], "sessions": [...]}`: every session in date order, with the
        `run_id` and `data_docs` of the run that replayed it (figures: `fanout_report`).
    """
    if workers < 1:
        raise ParameterError(f"workers: {workers} must be 1 or more")
    blocks = session_blocks(range_sessions(replay), workers)
    logger = get_run_logger()
    logger.info("fanning %d block(s) of sessions out over Dask", len(blocks))
    # the workers inherit this setting (serialized with each task), so they report to this
    # flow's API instead of each starting a temporary one
    with (
        temporary_settings({PREFECT_API_URL: flow_api_url()}),
        dask_runner(workers, address) as runner,
    ):
        futures = [
            runner.submit(replay_block, {"replay": replay, "first": b[0], "last": b[-1]})
            for b in blocks
        ]
        reports = [future.result() for future in futures]
    merged = [
        {"date": timing["session"], "run_id": report["run_id"], "data_docs": report["data_docs"]}
        for report in reports
        for timing in report["timings"]["sessions"]
    ]
    return {"run_ids": [r["run_id"] for r in reports], "sessions": merged}


if __name__ == "__main__":
    import json
    import sys

    params = ReplayParameters.model_validate_json(sys.argv[1])
    print(json.dumps(replay_fanout(params), indent=2))
