"""The small failure cases of issue 16, each through the real console script: a one-line error
(exit 2) or a one-line warning, and the store checked afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE_DIR

from barkeeper.cli.prefect_api import EPHEMERAL_NOTE
from barkeeper.core.calendar import Calendar
from barkeeper.ingest.files import ingest_file
from models.engine import engine_for
from models.schema import init_db

BARKEEPER = str(Path(sys.executable).with_name("barkeeper"))
MSFT = next(SAMPLE_DIR.glob("MSFT_1min_*.csv"))


def run(args: list[str], tmp_path: Path, url: str, shell: bool = False):
    env = {**os.environ, "BARKEEPER_DATABASE_URL": url, "PREFECT_HOME": str(tmp_path / "p"),
           "BARKEEPER_REPORTS_DIR": str(tmp_path / "reports"),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    command = ["bash", "-c", " ".join(args)] if shell else args
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def rows(url: str, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    init_db(engine_for(url))
    return url


def test_synth_negative_seed_is_one_line(tmp_path: Path, url: str) -> None:
    done = run([BARKEEPER, "synth", "--symbols", "2", "--start", "2023-07-10", "--end",
                "2023-07-10", "--seed", "-1"], tmp_path, url)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("barkeeper: error: ") and "--seed" in done.stderr
    assert rows(url, "SELECT count(*) FROM bar") == [(0,)]


def test_a_glob_that_matches_nothing_says_so(tmp_path: Path, url: str) -> None:
    done = run([BARKEEPER, "import", str(tmp_path / "*.parquet")], tmp_path, url)
    assert done.returncode == 2
    assert (
        done.stderr == f"barkeeper: error: {tmp_path / '*.parquet'}: no file matches this pattern\n"
    )
    assert rows(url, "SELECT count(*) FROM bar") == [(0,)]


def test_process_substitution_is_refused_in_one_line(tmp_path: Path, url: str) -> None:
    done = run([BARKEEPER, "import", "--symbol", "MSFT", f"<(cat {MSFT})"], tmp_path, url, True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("barkeeper: error: /dev/fd/")
    assert done.stderr.endswith(": a pipe or device, not a file; save it to a file first "
                                "(e.g. `cmd > bars.csv`), then import that\n")  # fmt: skip
    assert rows(url, "SELECT count(*) FROM bar") == [(0,)]  # nothing half-read was stored


def test_symbol_from_file_name_is_the_part_before_the_first_dot_or_underscore(
    tmp_path: Path, url: str
) -> None:
    backup = tmp_path / "MSFT.csv.bak"
    shutil.copy(MSFT, backup)
    plain = tmp_path / "bars.csv"
    shutil.copy(MSFT, plain)
    done = run([BARKEEPER, "import", str(backup), str(plain)], tmp_path, url)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("barkeeper:")]
    assert warnings == [f"barkeeper: warning: {backup}: symbol MSFT taken from the file name; "
                        "pass --symbol if that is not the ticker",
                        f"barkeeper: warning: {plain}: symbol BARS taken from the file name; "
                        "pass --symbol if that is not the ticker"]  # fmt: skip
    counts = dict(rows(url, "SELECT symbol, count(*) FROM bar GROUP BY symbol"))
    lines = sum(1 for _ in MSFT.open()) - 1
    assert counts == {"MSFT": lines, "BARS": lines}


def test_symbol_length_is_checked_after_upper_casing(tmp_path: Path, url: str) -> None:
    done = run([BARKEEPER, "import", "--symbol", "ß" * 40, str(MSFT)], tmp_path, url)  # 80 chars
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "1-64 characters once upper-cased" in done.stderr
    assert rows(url, "SELECT count(*) FROM bar") == [(0,)]


def test_parquet_with_a_duplicate_column_is_one_line(tmp_path: Path, url: str) -> None:
    path = tmp_path / "DUP_1min.parquet"
    columns = ["timestamp", "open", "open", "high", "low", "close", "volume"]
    arrays = [pa.array(["2023-07-10T14:30Z"])] + [pa.array([1.0])] * 6
    pq.write_table(pa.Table.from_arrays(arrays, names=columns), path)
    done = run([BARKEEPER, "import", str(path)], tmp_path, url)
    assert done.returncode == 2
    assert done.stderr == f"barkeeper: error: {path}: column open appears more than once\n"
    assert rows(url, "SELECT count(*) FROM bar") == [(0,)]


def test_start_before_the_calendar_gives_its_range(tmp_path: Path, url: str) -> None:
    ingest_file(engine_for(url), MSFT)
    done = run([BARKEEPER, "replay", "--symbols", "MSFT", "--start", "1990-01-02"], tmp_path, url)
    calendar = Calendar("XNYS")
    assert done.returncode == 2
    assert done.stderr == (
        "barkeeper: error: start: 1990-01-02 is before its first session; calendar XNYS covers "
        f"{calendar.first_session} to {calendar.last_session}\n"
    )
    assert rows(url, "SELECT count(*) FROM run") == [(0,)]


def test_end_past_the_repository_is_cut_there_with_a_warning(tmp_path: Path, url: str) -> None:
    ingest_file(engine_for(url), MSFT)  # 2023-07-10 to 2023-07-13
    done = run([BARKEEPER, "replay", "--symbols", "MSFT", "--start", "2023-07-12", "--end",
                "2099-12-31", "--json"], tmp_path, url)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    notes = [line for line in done.stderr.splitlines() if line != EPHEMERAL_NOTE]
    assert notes == [
        "barkeeper: warning: the repository's bars end in session 2023-07-13; replaying to "
        f"there, not to {Calendar('XNYS').last_session}"  # the calendar ends before 2099
    ]
    sessions = rows(url, "SELECT DISTINCT session FROM session_metric ORDER BY session")
    assert sessions == [("2023-07-12",), ("2023-07-13",)]
