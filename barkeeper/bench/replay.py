"""Replay benchmark: a synthetic session through the real flow, with and without the upkeep."""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path
from time import perf_counter
from typing import Any

from barkeeper.calendar import Calendar
from barkeeper.synth import symbol_names, synthetic_bars

BENCH_SESSION = date(2024, 3, 5)


def seed_repository(url: str, symbols: int, session: date = BENCH_SESSION) -> list[str]:
    """Write `symbols` synthetic symbols' bars of `session` into the repository at `url`."""
    from models.engine import engine_for
    from models.repository import upsert_bars
    from models.schema import init_db

    engine = engine_for(url)
    init_db(engine)
    names = symbol_names(symbols)
    minutes = Calendar().session_minutes(session)
    upsert_bars(engine, synthetic_bars(names, [minutes], illiquid_share=0.1, seed=1), "synth")
    return names


def count_runs(flow_run_id: str) -> int:
    """Task runs plus subflow runs under a flow run, through the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        subflows = [r for r in runs if r.state and r.state_details.child_flow_run_id]
        nested = sum(count_runs(str(r.state_details.child_flow_run_id)) for r in subflows)
        return len(runs) + nested


def timed_replay(symbols: list[str], *, upkeep: bool) -> tuple[float, str]:
    from flows.params import ReplayParameters
    from flows.replay import replay_sessions

    params = ReplayParameters(symbols=symbols, start=BENCH_SESSION, upkeep_enabled=upkeep)
    began = perf_counter()
    report = replay_sessions(params)
    return perf_counter() - began, report["run_id"]


def bench_replay(symbols: int = 2000) -> dict[str, Any]:
    """`{"symbols", "seconds", "seconds_without_upkeep", "prefect_runs_per_session"}`."""
    with tempfile.TemporaryDirectory(prefix="barkeeper-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        os.environ["BARKEEPER_DATABASE_URL"] = url
        os.environ["BARKEEPER_REPORTS_DIR"] = str(Path(tmp) / "reports")
        names = seed_repository(url, symbols)
        timed_replay(names[:3], upkeep=True)  # warm-up: imports, GX context, API
        seconds, run_id = timed_replay(names, upkeep=True)
        without, _ = timed_replay(names, upkeep=False)
        runs = count_runs(run_id)
    return {
        "symbols": symbols,
        "seconds": round(seconds, 3),
        "seconds_without_upkeep": round(without, 3),
        "upkeep_overhead": round(seconds / without - 1.0, 3),
        "prefect_runs_per_session": runs,
    }
