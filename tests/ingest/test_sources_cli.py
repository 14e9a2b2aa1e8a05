"""`import --source`, `barkeeper sources` and the replay's source options as a user meets them."""

from __future__ import annotations

import json

import pandas as pd
from conftest import SAMPLE_DIR
from typer.testing import CliRunner

from barkeeper.cli.main import app
from models.engine import engine_for
from models.repository import read_bars, read_quarantine

MSFT = next(SAMPLE_DIR.glob("MSFT_1min_*.csv"))
DBB = next(SAMPLE_DIR.glob("DBB_1min_*.csv"))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_sources_lists_what_each_source_holds(db_url: str) -> None:
    assert run("import", str(MSFT), str(DBB), "--db", db_url)[0] == 0
    assert run("import", str(MSFT), "--source", "vendor", "--db", db_url)[0] == 0
    code, out, _ = run("sources", "--json", "--db", db_url)
    assert code == 0
    listed = {s["source"]: s for s in json.loads(out)["sources"]}
    assert list(listed) == ["default", "vendor"]
    frames = {p: pd.read_csv(p) for p in (MSFT, DBB)}
    assert listed["default"]["symbols"] == ["DBB", "MSFT"]
    assert listed["default"]["bars"] == sum(len(f) for f in frames.values())
    assert listed["vendor"] == {
        "source": "vendor",
        "symbols": ["MSFT"],
        "bars": len(frames[MSFT]),
        "first_minute": pd.Timestamp(frames[MSFT]["timestamp"].min()).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "last_minute": pd.Timestamp(frames[MSFT]["timestamp"].max()).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    # one source's bars never leak into another's reads
    engine = engine_for(db_url)
    assert read_bars(engine, ["DBB"], 0, 2**40, source="vendor").empty
    assert len(read_bars(engine, ["MSFT"], 0, 2**40, source="vendor")) == len(frames[MSFT])


def test_quarantine_records_name_their_source(sqlite_url: str, tmp_path) -> None:
    path = tmp_path / "MSFT_bad.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2023-07-10 13:30:00,abc,1,1,1,1\n")
    assert run("import", str(path), "--source", "vendor", "--db", sqlite_url)[0] == 0
    assert read_quarantine(engine_for(sqlite_url))["source"].tolist() == ["vendor"]


def test_source_mistakes_are_one_line(sqlite_url: str, tmp_path) -> None:
    code, _, err = run("import", str(MSFT), "--source", "a b", "--db", sqlite_url)
    assert code == 2 and err.count("\n") == 1 and "--source" in err
    assert run("import", str(MSFT), "--db", sqlite_url)[0] == 0
    cases = [
        ["--backfill", "nosuch"],
        ["--feed", "nosuch"],
        ["--feed", "default", "--feed-file", str(MSFT)],
        ["--feed-file", str(tmp_path / "missing.csv")],
        ["--prefer", "vendor"],
        ["--backfill", "bad name"],
    ]
    for extra in cases:
        args = ["replay", "--symbols", "MSFT", "--start", "2023-07-10", *extra]
        code, _, err = run(*args, "--db", sqlite_url)
        assert code == 2, (extra, err)
        assert err.startswith("barkeeper: error: ") and err.count("\n") == 1, (extra, err)
