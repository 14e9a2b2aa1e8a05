"""Three `barkeeper replay` commands started at once on one store all complete, each with a run
of its own and the results of the same replay run alone, with no Prefect server running (each
command starts a temporary one, all on a fresh Prefect home) and with `barkeeper server start`.

Oracle: the same command run alone before them; compared through the store (report metrics
and exported bars). Real parts: the installed `barkeeper` command in subprocesses, a real
SQLite store (and PostgreSQL when configured), real Prefect servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from barkeeper.reports.export import export_bars
from barkeeper.reports.report import run_report
from models.engine import engine_for

BARKEEPER = Path(sys.executable).with_name("barkeeper")
SESSION = date(2023, 7, 10)
SYMBOLS = ("MSFT", "DBB")
REPLAY = [
    *("replay", "--symbols", ",".join(SYMBOLS), "--start", SESSION.isoformat()),
    *("--drop-rate", "0.05", "--outage", "10:00-10:10", "--seed", "3", "--json"),
]
COMMAND_TIMEOUT_S = 900
# four replays and maybe a server start: minutes on a 2-core machine shared with other work
pytestmark = pytest.mark.timeout(2 * COMMAND_TIMEOUT_S)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, sample_store: Callable[[str], str]) -> str:
    return sample_store(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def environment(tmp_path: Path, store: str) -> dict[str, str]:
    """The commands' environment: this store, a fresh Prefect home, no API configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        BARKEEPER_DATABASE_URL=store,
        BARKEEPER_REPORTS_DIR=str(tmp_path / "reports"),
        BARKEEPER_SERVER_HOME=str(tmp_path / "server"),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


@pytest.fixture(params=["temporary", "server"])
def api(request: pytest.FixtureRequest, environment: dict[str, str]) -> Iterator[str]:
    """No server (each command starts a temporary API), or `barkeeper server start` running."""
    if request.param == "temporary":
        yield request.param
        return
    from served import free_port

    start = [BARKEEPER, "server", "start", "--port", str(free_port()), "--json"]
    started = subprocess.run(start, env=environment, capture_output=True, timeout=300)
    assert started.returncode == 0, started.stderr.decode()
    try:
        yield json.loads(started.stdout)["api_url"]
    finally:
        stopped = subprocess.run([BARKEEPER, "server", "stop"], env=environment, timeout=120)
        assert stopped.returncode == 0


def replay_together(env: dict[str, str], count: int) -> list[tuple[str, str]]:
    """Start `count` replays at once; (run id, stderr) of each once all have ended with 0."""
    processes = [
        subprocess.Popen(
            [BARKEEPER, *REPLAY], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(count)
    ]
    outputs = [p.communicate(timeout=COMMAND_TIMEOUT_S) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-3000:]
    return [(json.loads(out)["run_id"], err.decode()) for out, err in outputs]


def processes_with(marker: str) -> list[int]:
    """Processes whose environment mentions `marker` (our Prefect home): what the commands left."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def results(url: str, run_id: str) -> tuple[dict, dict]:
    """A run's per-symbol metrics and its exported 1- and 5-minute bars."""
    engine = engine_for(url)
    sessions = run_report(engine, run_id)["sessions"]
    assert [s["date"] for s in sessions] == [SESSION.isoformat()]
    bars = {(s, n): export_bars(engine, run_id, s, SESSION, n) for s in SYMBOLS for n in (1, 5)}
    return sessions[0]["symbols"], bars


def test_three_replays_at_once_complete_with_the_results_of_one_alone(
    api: str, environment: dict[str, str], store: str
) -> None:
    [(alone, _)] = replay_together(environment, 1)
    together = replay_together(environment, 3)

    run_ids = [run_id for run_id, _ in together]
    assert len({alone, *run_ids}) == 4
    metrics, bars = results(store, alone)
    assert sum(m["backfilled_bars"] for m in metrics.values()) > 0  # the feed lost bars
    for run_id in run_ids:
        run_metrics, run_bars = results(store, run_id)
        assert run_metrics == metrics
        for key, frame in bars.items():
            assert len(frame) > 0, key
            pd.testing.assert_frame_equal(run_bars[key], frame, obj=str(key))

    if api == "temporary":  # the commands stop the API they started when they end
        assert processes_with(environment["PREFECT_HOME"]) == []
