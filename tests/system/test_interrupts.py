"""SIGINT and SIGTERM sent to a real `barkeeper replay` (and `import`) process mid-run.

Each test starts the real console script in a process group of its own, waits until its run
is recorded, sends the signal, and checks what a user and a scheduler rely on: the exit status
(130 / 143), the one line on stderr, the run's status in the store, that no process of the
command survives (the ephemeral Prefect API server included), that a session's results are all
there or none, and that the next run completes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from conftest import SAMPLE_DIR

from barkeeper.ingest.files import ingest_file
from barkeeper.reports.rebuild import run_series
from models.engine import engine_for
from models.schema import init_db

BARKEEPER = str(Path(sys.executable).with_name("barkeeper"))
SYMBOLS = "MSFT,DBB,FXY"
STOP_WITHIN_S = 2.0  # the contract: the work stops and the process is gone within 2 s

pytestmark = pytest.mark.slow


def command_env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "BARKEEPER_DATABASE_URL": url,
        "BARKEEPER_REPORTS_DIR": str(tmp_path / "reports"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # a busy 2-core machine
    }
    env.pop("PREFECT_API_URL", None)  # the ephemeral API server, which must not survive
    return env


@pytest.fixture
def sample_file_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    init_db(engine_for(url))
    for path in sorted(SAMPLE_DIR.glob("*_1min_*.csv")):
        ingest_file(engine_for(url), path)
    return url


def rows(url: str, sql: str, *args: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        return conn.execute(sql, args).fetchall()


def interrupt(command: list[str], env: dict[str, str], url: str, signum: int, ready_sql: str):
    """Start `command`, wait for `ready_sql` to find a row of it, send `signum`.

    Returns the process, its stderr, the seconds from the signal to its end (output closed:
    a surviving child holding the pipe would keep it open), and the processes it had started.
    """
    victim = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not rows(url, ready_sql, victim.pid):
            assert victim.poll() is None, victim.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the command never got going"
            time.sleep(0.2)
        time.sleep(2.0)  # mid-run
        children = psutil.Process(victim.pid).children(recursive=True)
        started = [" ".join(child.cmdline()) for child in children]
        sent = time.monotonic()
        victim.send_signal(signum)
        _, err = victim.communicate(timeout=60)
        return victim, err.decode(), time.monotonic() - sent, children, started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(victim.pid, signal.SIGKILL)  # nothing may be left; if it is, clean up


def survivors(pgid: int, children: list[psutil.Process]) -> list[str]:
    """Processes of the command still running: its children, or anything in its group."""
    alive = set()
    for process in [*children, *psutil.process_iter()]:
        with contextlib.suppress(psutil.Error, OSError):
            mine = process in children or os.getpgid(process.pid) == pgid
            if mine and process.status() != psutil.STATUS_ZOMBIE:
                alive.add(" ".join(process.cmdline())[:120])
    return sorted(alive)


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_mid_replay_is_one_line_and_marks_the_run(
    tmp_path: Path, sample_file_store: str, signum: int, status: int
) -> None:
    url = sample_file_store
    env = command_env(tmp_path, url)
    replay = [BARKEEPER, "replay", "--symbols", SYMBOLS, "--start", "2023-07-10",
              "--end", "2023-07-13", "--drop-rate", "0.05", "--seed", "3"]  # fmt: skip
    victim, err, seconds, children, started = interrupt(
        [*replay, "--speed", "60x"], env, url, signum,
        "SELECT id FROM run WHERE status = 'running' AND pid = ?",
    )  # fmt: skip
    assert victim.returncode == status, err[-3000:]
    ((run_id, run_status, error),) = rows(url, "SELECT id, status, error FROM run")
    assert err == f"interrupted: run {run_id} marked interrupted; rerun to finish\n"
    assert run_status == "interrupted" and error.startswith("interrupted")
    assert seconds <= STOP_WITHIN_S
    assert any("prefect.server.api.server" in command for command in started)
    assert survivors(victim.pid, children) == []
    # a session's results are all there or none: metrics and bars name the same sessions
    sessions = {
        table: {s for (s,) in rows(url, f"SELECT session FROM {table} WHERE run_id = ?", run_id)}
        for table in ("session_metric", "run_session")
    }
    assert sessions["session_metric"] == sessions["run_session"]
    metrics_sql = ("SELECT symbol, actual_bars FROM session_metric WHERE run_id = ? "
                   "AND session = ? AND segment = 'regular'")  # fmt: skip
    series = run_series(engine_for(url), run_id)  # rebuilt: repository + the run's changes
    series = series.loc[(series["interval"] == 1) & (series["provenance"] != "synthetic")]
    for session in sessions["run_session"]:
        mine = series.loc[series["session"].astype(str) == str(session)]
        stored = {str(k): int(v) for k, v in mine.groupby("symbol").size().items()}
        actual = dict(rows(url, metrics_sql, run_id, session))
        assert stored == actual

    if signum == signal.SIGTERM:  # the next run is unaffected
        rerun = subprocess.run([*replay, "--speed", "max", "--json"], env=env,
                               capture_output=True, text=True, timeout=600)  # fmt: skip
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        statuses = sorted(s for (s,) in rows(url, "SELECT status FROM run"))
        assert statuses in (["completed", "interrupted"], ["degraded", "interrupted"])


def test_sigterm_mid_import_keeps_whole_files_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    init_db(engine_for(url))
    minutes = pd.date_range("2020-01-02 14:30", periods=400_000, freq="min", tz="UTC")
    prices = 100 + np.arange(len(minutes)) % 50
    paths = []
    for symbol in ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF"):
        path = tmp_path / f"{symbol}_1min.csv"
        frame = pd.DataFrame({"timestamp": minutes, "open": prices, "high": prices + 1,
                              "low": prices - 1, "close": prices, "volume": 10})  # fmt: skip
        frame.to_csv(path, index=False)
        paths.append(str(path))
    victim, err, seconds, children, _ = interrupt(
        [BARKEEPER, "import", *paths], command_env(tmp_path, url), url, signal.SIGTERM,
        "SELECT 1 FROM ingested_file WHERE ? IS NOT NULL",  # a file in
    )  # fmt: skip
    assert victim.returncode == 143, err[-3000:]
    assert err == "interrupted: no run was recorded; rerun to finish\n"
    assert seconds <= STOP_WITHIN_S
    assert survivors(victim.pid, children) == []
    # every bar in the store belongs to a file whose import was recorded, and all of it
    per_symbol = dict(rows(url, "SELECT symbol, count(*) FROM bar GROUP BY symbol"))
    recorded = dict(rows(url, "SELECT symbol, stored FROM ingested_file WHERE status = 'done'"))
    assert per_symbol == recorded
    assert len(per_symbol) < len(paths)  # it was stopped mid-way
