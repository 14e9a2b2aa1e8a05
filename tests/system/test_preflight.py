"""Checks before work: an unwritable reports folder or an unreachable Prefect API is one line,
exit 2, before any session is read (no run recorded), from the real console script."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import SAMPLE_DIR

from barkeeper.ingest.files import ingest_file
from models.engine import engine_for
from models.schema import init_db

BARKEEPER = str(Path(sys.executable).with_name("barkeeper"))


def test_preflight_failures_are_one_line_before_any_work(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    url = f"sqlite:///{store}"
    init_db(engine_for(url))
    for path in sorted(SAMPLE_DIR.glob("MSFT_1min_*.csv")):
        ingest_file(engine_for(url), path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    base = {**os.environ, "BARKEEPER_DATABASE_URL": url, "PREFECT_HOME": str(tmp_path / "p"),
            "BARKEEPER_REPORTS_DIR": str(tmp_path / "reports")}  # fmt: skip
    base.pop("PREFECT_API_URL", None)
    cases = {
        "reports_dir": {**base, "BARKEEPER_REPORTS_DIR": str(blocker / "reports")},
        "prefect_api": {**base, "PREFECT_API_URL": "http://127.0.0.1:9/api"},
    }
    replay = [BARKEEPER, "replay", "--symbols", "MSFT", "--start", "2023-07-10"]
    started = {
        case: subprocess.Popen(replay, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for case, env in cases.items()
    }
    outcome = {case: (p.wait(timeout=300), p.stderr.read().decode()) for case, p in started.items()}
    status, err = outcome["reports_dir"]
    assert status == 2 and err == (
        f"barkeeper: error: BARKEEPER_REPORTS_DIR: reports folder {blocker / 'reports'} is not "
        "writable (Not a directory); set BARKEEPER_REPORTS_DIR to a folder you can write\n"
    )
    status, err = outcome["prefect_api"]
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(
        "barkeeper: error: PREFECT_API_URL: the Prefect API at http://127.0.0.1:9/api does not "
        "answer ("
    ) and err.endswith("start it (`prefect server start`) or unset PREFECT_API_URL\n")
    with contextlib.closing(sqlite3.connect(store)) as conn:  # no run was started
        assert conn.execute("SELECT count(*) FROM run").fetchone()[0] == 0
    assert not (tmp_path / "reports").exists()  # nothing was written anywhere


def test_prefect_logs_only_with_verbose(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    init_db(engine_for(url))
    for path in sorted(SAMPLE_DIR.glob("MSFT_1min_*.csv")):
        ingest_file(engine_for(url), path)
    env = {**os.environ, "BARKEEPER_DATABASE_URL": url, "PREFECT_HOME": str(tmp_path / "p"),
           "BARKEEPER_REPORTS_DIR": str(tmp_path / "reports"),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}  # fmt: skip
    for name in ("PREFECT_API_URL", "PREFECT_LOGGING_LEVEL"):
        env.pop(name, None)
    replay = ["replay", "--symbols", "MSFT", "--start", "2023-07-10", "--json"]
    started = {
        verbose: subprocess.Popen([BARKEEPER, *(["--verbose"] if verbose else []), *replay],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for verbose in (False, True)
    }  # fmt: skip
    outcome = {v: (p.wait(timeout=600), p.stderr.read().decode()) for v, p in started.items()}
    assert outcome[False][0] == outcome[True][0] == 0, outcome
    quiet = [line for line in outcome[False][1].splitlines() if "temporary one" not in line]
    assert quiet == []  # --json: the document on stdout; only the temporary-API note
    assert "| INFO    | Flow run" in outcome[True][1]
    with contextlib.closing(sqlite3.connect(tmp_path / "store.db")) as conn:
        statuses = sorted(s for (s,) in conn.execute("SELECT status FROM run"))
    assert statuses == ["completed", "completed"]
