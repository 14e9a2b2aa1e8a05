"""`barkeeper init`, `import` and `synth` as a user runs them: output shape, exit codes, effects."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import SAMPLE_DIR, TEST_DATA
from sqlalchemy import text
from typer.testing import CliRunner

from barkeeper.cli.main import app
from barkeeper.core.calendar import Calendar
from models.engine import engine_for
from models.repository import known_symbols, read_bars

SAMPLES = sorted(SAMPLE_DIR.glob("*_1min_*.csv"))
REPORT_KEYS = [
    "path", "symbol", "read", "stored", "quarantined", "skipped", "revised", "reasons", "format",
    "warnings",
]  # fmt: skip


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_import_json_shape_and_idempotence(db_url: str) -> None:
    code, out, _ = run("import", *map(str, SAMPLES), "--json", "--db", db_url)
    assert code == 0
    document = json.loads(out)
    assert list(document) == ["files"]
    assert [list(f) for f in document["files"]] == [REPORT_KEYS] * 3
    rows = [len(pd.read_csv(p)) for p in SAMPLES]
    assert [(f["symbol"], f["read"], f["stored"], f["skipped"]) for f in document["files"]] == [
        (p.name.split("_")[0], n, n, 0) for p, n in zip(SAMPLES, rows, strict=True)
    ]
    code, out, _ = run("import", *map(str, SAMPLES), "--json", "--db", db_url)
    again = json.loads(out)["files"]
    assert code == 0 and [(f["stored"], f["skipped"]) for f in again] == [(0, n) for n in rows]


def test_import_reports_quarantine_reasons(sqlite_url: str) -> None:
    bad = TEST_DATA / "every_bad_row.csv"
    code, out, _ = run("import", str(bad), "--symbol", "BAD", "--json", "--db", sqlite_url)
    (report,) = json.loads(out)["files"]
    assert code == 0
    assert report["read"] == report["stored"] + report["quarantined"] + report["skipped"] == 15
    assert report["reasons"]["conflicting_duplicate"] == 2
    assert sum(report["reasons"].values()) == report["quarantined"] == 13


def test_unreadable_file_exits_2_with_one_line_and_the_rest_imports(
    sqlite_url: str, tmp_path: Path
) -> None:
    empty = tmp_path / "EMPTY_1min.csv"
    empty.write_bytes(b"")
    msft = next(p for p in SAMPLES if p.name.startswith("MSFT"))
    code, out, err = run("import", str(empty), str(msft), "--json", "--db", sqlite_url)
    assert code == 2
    assert err.strip().splitlines() == [f"barkeeper: error: {empty}: empty file"]
    assert [f["symbol"] for f in json.loads(out)["files"]] == ["MSFT"]
    assert known_symbols(engine_for(sqlite_url)) == ["MSFT"]


def test_bad_parameters_exit_2_before_anything_is_imported(sqlite_url: str) -> None:
    code, _, err = run("import", str(SAMPLES[0]), "--tz", "Mars/Olympus", "--db", sqlite_url)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--tz" in err
    code, _, err = run("import", str(SAMPLES[0]), "--symbol", "A,B", "--db", sqlite_url)
    assert code == 2 and "is not a ticker symbol" in err and "Traceback" not in err
    engine = engine_for(sqlite_url)
    assert known_symbols(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bar")).scalar() == 0


def test_import_as_a_subprocess_prints_no_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    missing = tmp_path / "NOPE_1min.csv"
    command = ["import", str(missing), "--db", url]
    done = subprocess.run(
        [sys.executable, "-c", "from barkeeper.cli.main import app; app()", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"barkeeper: error: {missing}: no such file"


def test_init_creates_the_schema_twice_harmlessly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert run("init", "--db", url)[0] == 0
    assert run("init", "--db", url)[0] == 0
    with engine_for(url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_synth_writes_calendar_minutes_reproducibly(sqlite_url: str) -> None:
    args = ["synth", "--symbols", "4", "--start", "2023-07-07", "--end", "2023-07-10"]
    code, out, _ = run(*args, "--illiquid-share", "0.5", "--json", "--db", sqlite_url)
    assert code == 0
    summary = json.loads(out)
    assert (summary["symbols"], summary["sessions"]) == (4, 2)  # Friday and Monday
    engine = engine_for(sqlite_url)
    assert known_symbols(engine) == ["SYM0001", "SYM0002", "SYM0003", "SYM0004"]
    bars = read_bars(engine, known_symbols(engine), 0, 2**40)
    assert len(bars) == summary["stored"]
    calendar = Calendar("XNYS")
    sessions = calendar.sessions(date(2023, 7, 7), date(2023, 7, 10))
    expected = set(np.concatenate([calendar.session_minutes(s).minutes for s in sessions]).tolist())
    assert set(bars["ts"]) <= expected
    per_symbol = bars.groupby("symbol").size()
    assert per_symbol.min() < 0.5 * len(expected) < per_symbol.max()  # some symbols illiquid
    code, out, _ = run(*args, "--illiquid-share", "0.5", "--json", "--db", sqlite_url)
    assert json.loads(out)["stored"] == 0  # same seed, same bars


def test_synth_rejects_a_range_without_sessions(sqlite_url: str) -> None:
    code, _, err = run(
        "synth",
        "--symbols",
        "2",
        "--start",
        "2023-07-08",
        "--end",
        "2023-07-09",
        "--db",
        sqlite_url,
    )
    assert code == 2 and "no XNYS sessions" in err and len(err.strip().splitlines()) == 1
