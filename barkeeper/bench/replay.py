"""Replay benchmark: a synthetic session through the real flow, with and without the upkeep.

Runs against whatever Prefect API the process has (an ephemeral server if none is configured)
and a throw-away SQLite store seeded with synthetic bars. The Prefect bookkeeping is counted
through the API: every task run and subflow run under the replay's flow run, recursively.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from statistics import median
from time import monotonic, perf_counter, sleep
from typing import Any

from barkeeper.core.calendar import Calendar
from barkeeper.core.synth import symbol_names, synthetic_bars
from barkeeper.settings import temporary_environment

BENCH_SESSION = date(2024, 3, 5)


def seed_repository(url: str, symbols: int, sessions: int = 1) -> list[str]:
    """Write `symbols` synthetic symbols' bars of `sessions` sessions from BENCH_SESSION on
    into the repository at `url`."""
    from models.engine import engine_for
    from models.repository import upsert_bars
    from models.schema import init_db

    engine = engine_for(url)
    init_db(engine)
    names = symbol_names(symbols)
    minutes = [Calendar().session_minutes(s) for s in bench_sessions(sessions)]
    upsert_bars(engine, synthetic_bars(names, minutes, illiquid_share=0.1, seed=1), origin="synth")
    return names


def bench_sessions(count: int) -> list[date]:
    """The first `count` sessions from BENCH_SESSION on."""
    calendar = Calendar()
    return calendar.sessions(BENCH_SESSION, BENCH_SESSION + timedelta(days=2 * count + 7))[:count]


def prefect_runs(flow_run_id: str, settle_s: float = 60.0) -> Counter[str]:
    """Task runs and subflow runs under a flow run, recursively, counted by name (via the API).

    A subflow counts once, as `flow:<name>`; the placeholder task run Prefect records for it in
    the parent is not counted again. Prefect 3 records task runs from events, shortly after
    they ran (later still on a loaded machine): the count is read until task runs have landed
    and it holds, every run final, for four reads 1 s apart (or `settle_s`).
    """
    deadline = monotonic() + settle_s
    previous, _ = _read_runs(flow_run_id)
    agreed = 0
    while monotonic() < deadline and agreed < 3:
        sleep(1.0)
        counts, final = _read_runs(flow_run_id)
        recorded = any(not name.startswith("flow:") for name in counts)  # events have landed
        agreed = agreed + 1 if counts == previous and final and recorded else 0
        previous = counts
    return previous


def _read_runs(flow_run_id: str) -> tuple[Counter[str], bool]:
    """Runs under `flow_run_id` by name, and whether all of them are in a final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )

    counts: Counter[str] = Counter()
    final = True
    with get_client(sync_client=True) as client:
        pending = [flow_run_id]
        while pending:
            parent = pending.pop()
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[parent]))
            )
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])
                )
            )
            placeholders = {str(c.parent_task_run_id) for c in children}
            for run in tasks:
                final = final and run.state is not None and run.state.is_final()
                if str(run.id) not in placeholders:
                    counts[run.task_key.rsplit("-", 1)[0]] += 1
            for child in children:
                counts[f"flow:{_flow_name(client, child.flow_id)}"] += 1
                pending.append(str(child.id))
    return counts, final


def _flow_name(client: Any, flow_id: Any) -> str:
    return client.read_flow(flow_id).name


def timed_replay(symbols: list[str], *, upkeep: bool, sessions: int = 1) -> tuple[float, str]:
    """Wall seconds of one `replay_sessions` call over `sessions` bench sessions, and its run id."""
    from barkeeper.params import ReplayParameters
    from flows.replay import replay_sessions

    last = bench_sessions(sessions)[-1]
    params = ReplayParameters(symbols=symbols, start=BENCH_SESSION, end=last, upkeep_enabled=upkeep)
    began = perf_counter()
    report = replay_sessions(params)
    return perf_counter() - began, report["run_id"]


def _stream_seconds(url: str, run_id: str) -> float:
    """Seconds the coordinator spent streaming, from the run's recorded timings."""
    from models.engine import engine_for
    from models.results import resolve_run

    timings = json.loads(resolve_run(engine_for(url), run_id).stats or "{}").get("timings", [])
    return round(sum(t.get("stream_s", 0.0) for t in timings), 3)


def bench_replay(symbols: int = 2000, *, repeats: int = 3, count: bool = True) -> dict[str, Any]:
    """One synthetic session of `symbols` symbols at `--speed max`, upkeep on and off.

    Runs with and without the upkeep alternate (so load drifts hit both alike), `repeats` of
    each after a 3-symbol warm-up; figures are medians.

    Returns
    -------
    dict
        symbols, seconds (upkeep and validation at their defaults), seconds_without_upkeep
        (DATA_UPKEEP_ENABLED=false), upkeep_overhead (seconds / without - 1), stream_seconds
        (the coordinator's share of each), prefect_runs_per_run and prefect_runs (by name).
    """
    with tempfile.TemporaryDirectory(prefix="barkeeper-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        with temporary_environment(
            {"BARKEEPER_DATABASE_URL": url, "BARKEEPER_REPORTS_DIR": str(Path(tmp) / "reports")}
        ):
            names = seed_repository(url, symbols)
            timed_replay(names[:3], upkeep=True)  # warm-up: imports, GX context, API
            runs: dict[bool, list[tuple[float, str]]] = {True: [], False: []}
            for _ in range(repeats):
                for upkeep in (True, False):
                    runs[upkeep].append(timed_replay(names, upkeep=upkeep))
            seconds = median(s for s, _ in runs[True])
            without = median(s for s, _ in runs[False])
            result: dict[str, Any] = {
                "symbols": symbols,
                "seconds": round(seconds, 3),
                "seconds_without_upkeep": round(without, 3),
                "upkeep_overhead": round(seconds / without - 1.0, 3),
                "stream_seconds": median(_stream_seconds(url, r) for _, r in runs[True]),
                "stream_seconds_without_upkeep": median(
                    _stream_seconds(url, r) for _, r in runs[False]
                ),
                "repeats": repeats,
            }
            if count:
                counted = prefect_runs(runs[True][0][1])
                result["prefect_runs_per_run"] = sum(counted.values())
                result["prefect_runs"] = dict(sorted(counted.items()))
    return result
