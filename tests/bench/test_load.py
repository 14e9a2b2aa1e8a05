"""Load: a 5,000-symbol synthetic session replayed with upkeep and validation, memory measured.

The replay runs as the real `barkeeper replay` command in a child process, so its peak resident
memory (getrusage of that process) is the replay's own, not the test runner's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from barkeeper.core.synth import symbol_names
from barkeeper.reports.rebuild import run_series
from models.engine import engine_for

SYMBOLS = 5_000
SESSION = "2023-07-10"
PEAK_RSS_BUDGET_MB = 5_000  # measured 3,873 MB (RELIABILITY.md); a per-symbol leak would blow it

MEASURED = """
import json, resource, sys
from barkeeper.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as done:
    code = done.code
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "peak_rss_mb": peak / 1024}), file=sys.stderr)
"""


@pytest.mark.slow
def test_5000_symbol_session_replays_with_bounded_memory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'load.db'}"
    env = {
        **os.environ,
        "BARKEEPER_DATABASE_URL": url,
        "BARKEEPER_REPORTS_DIR": str(tmp_path / "reports"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    synth = subprocess.run(
        [str(Path(sys.executable).with_name("barkeeper")), "synth", "--symbols", str(SYMBOLS),
         "--start", SESSION, "--end", SESSION, "--missing-rate", "0.05", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert synth.returncode == 0, synth.stderr[-2000:]
    names = symbol_names(SYMBOLS)
    replay = subprocess.run(
        [sys.executable, "-c", MEASURED, "replay", "--symbols", ",".join(names),
         "--start", SESSION, "--drop-rate", "0.02", "--corrupt-rate", "0.005", "--seed", "1",
         "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    measured = json.loads(replay.stderr.strip().splitlines()[-1])
    assert measured["code"] in (0, None), replay.stderr[-3000:]
    report = json.loads(replay.stdout)
    figures = report["sessions"][0]["symbols"]
    assert len(figures) == SYMBOLS
    assert all(m["unfillable_bars"] == 0 for m in figures.values())
    assert all(m["validation_success"] is not None for m in figures.values())
    engine = engine_for(url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM bar WHERE interval = 1")).scalar_one()
    series = run_series(engine, report["run_id"])  # rebuilt from the repository + the run's changes
    replayed = int((series["interval"] == 1).sum())
    # every repository bar of the session came out of the replay, feed or backfill
    assert replayed == stored == sum(m["actual_bars"] for m in figures.values())
    print(f"\n5,000-symbol replay: peak RSS {measured['peak_rss_mb']:.0f} MB, {stored:,} bars")
    assert measured["peak_rss_mb"] < PEAK_RSS_BUDGET_MB
