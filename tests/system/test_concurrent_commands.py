"""A busy machine: three replays and an import at once on one SQLite store (2 cores here).

Every command completes or fails with one line; none loses or duplicates a bar: each
completed run holds exactly the repository's bars of its session, and the repository holds
exactly what was imported.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAMPLE_DIR

from barkeeper.core.calendar import Calendar
from barkeeper.ingest.files import ingest_file
from barkeeper.reports.rebuild import run_series
from models.engine import engine_for
from models.schema import init_db

BARKEEPER = str(Path(sys.executable).with_name("barkeeper"))
SESSION = "2023-07-10"

pytestmark = pytest.mark.slow


def rows(path: Path, sql: str, *args: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, args).fetchall()


def test_three_replays_and_an_import_at_once(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    url = f"sqlite:///{store}"
    init_db(engine_for(url))
    for path in sorted(SAMPLE_DIR.glob("*_1min_*.csv")):
        ingest_file(engine_for(url), path)
    minutes = pd.date_range("2021-01-04 14:30", periods=200_000, freq="min", tz="UTC")
    extra = tmp_path / "NEW_1min.csv"
    pd.DataFrame({"timestamp": minutes, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5,
                  "volume": 7}).to_csv(extra, index=False)  # fmt: skip
    env = {
        **os.environ,
        "BARKEEPER_DATABASE_URL": url,
        "PREFECT_HOME": str(tmp_path / "p"),
        "BARKEEPER_REPORTS_DIR": str(tmp_path / "reports"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }  # (a longer ephemeral start-up: a busy machine)
    env.pop("PREFECT_API_URL", None)
    replay = [BARKEEPER, "replay", "--symbols", "MSFT,DBB,FXY", "--start", SESSION, "--json"]
    commands = [replay, replay, replay, [BARKEEPER, "import", str(extra)]]
    started = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for c in commands]  # fmt: skip
    outcomes = [(p.wait(timeout=900), p.stderr.read().decode()) for p in started]
    for status, err in outcomes:
        lines = [line for line in err.splitlines() if "temporary one" not in line]
        errors = [line for line in lines if line.startswith("barkeeper:")]
        assert status == 0 or (status == 2 and errors == lines[-1:]), err[-3000:]
        assert "Traceback" not in err, err[-3000:]

    # the repository: every imported row exactly once
    assert rows(store, "SELECT count(*), count(DISTINCT ts) FROM bar WHERE symbol = 'NEW'") == (
        [(len(minutes), len(minutes))] if outcomes[3][0] == 0 else [(0, 0)]
    )
    # every completed run: exactly the repository's bars of the session, once each
    minutes_of_session = Calendar("XNYS").session_minutes(pd.Timestamp(SESSION).date()).minutes
    first, last = int(minutes_of_session[0]), int(minutes_of_session[-1])
    repository = set(rows(store, "SELECT symbol, ts FROM bar WHERE symbol != 'NEW' AND ts "
                                 "BETWEEN ? AND ?", first, last))  # fmt: skip
    completed = rows(store, "SELECT id FROM run WHERE status IN ('completed', 'degraded')")
    assert len(completed) == sum(status == 0 for status, _ in outcomes[:3])
    for (run_id,) in completed:
        series = run_series(engine_for(url), run_id)  # rebuilt: repository + the run's changes
        series = series.loc[(series["interval"] == 1) & (series["provenance"] != "synthetic")]
        bars = list(zip(series["symbol"], series["ts"].astype(int), strict=True))
        assert len(bars) == len(set(bars)) and set(bars) == repository
