"""A landing folder that cannot lose data, with real folders and files: the store's folder and
system folders refused before anything moves, only settled vendor files taken, a growing file
left for the next run and then ingested whole, same-name deliveries keeping their evidence."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAMPLE_DIR
from prefect.logging import disable_run_logger
from typer.testing import CliRunner

from barkeeper.cli.main import app
from barkeeper.errors import ParameterError
from barkeeper.ingest.paths import landed_files, refuse_landing
from barkeeper.settings import DEFAULT_LANDING_PATTERNS
from models.engine import engine_for
from models.repository import read_bars, read_quarantine
from tasks.audit import ingest_landing

MSFT = SAMPLE_DIR / "MSFT_1min_2023-07-10_to_2023-07-13.csv"
PATTERNS = list(DEFAULT_LANDING_PATTERNS)
SETTLE = 1.0  # seconds (the default is 60; a test waits as little as it can)


def land(url: str, folder: Path, settle: float = SETTLE) -> list:
    with disable_run_logger():
        return ingest_landing.fn(url, str(folder), ".", PATTERNS, settle)


def age(path: Path, seconds: float) -> None:
    """Set the file's modification time `seconds` into the past (an upload finished then)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_folder_holding_the_store_is_refused_before_anything_moves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'barkeeper.db'}"
    shutil.copy(MSFT, tmp_path / MSFT.name)
    engine_for(url).dispose()
    (tmp_path / "barkeeper.db").touch()
    before = listing(tmp_path)
    with pytest.raises(ParameterError, match="holds the store"):
        land(url, tmp_path, settle=0)
    result = CliRunner().invoke(app, ["audit", "--landing", str(tmp_path), "--db", url])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "holds the store" in result.stderr and "Traceback" not in result.stderr
    assert listing(tmp_path) == before


@pytest.mark.parametrize("folder", ["/", "/etc", "/usr", "HOME"])
def test_system_and_home_folders_are_refused(folder: str, tmp_path: Path) -> None:
    path = Path.home() if folder == "HOME" else Path(folder)
    with pytest.raises(ParameterError, match="system or home folder"):
        refuse_landing(path, f"sqlite:///{tmp_path / 'x.db'}")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(app, ["audit", "--landing", str(path), "--db", url])
    assert result.exit_code == 2 and "system or home folder" in result.stderr


def test_only_vendor_patterns_are_taken(tmp_path: Path) -> None:
    names = ["a.csv", "b.CSV", ".hidden.csv", "c.csv.part", "d.tmp", "notes.txt", "e.csv.gz",
             "f.zip", "g.parquet", "h.csv.tmp"]  # fmt: skip
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / "done").mkdir()
    found = [p.name for p in landed_files(tmp_path, PATTERNS)]
    assert found == ["a.csv", "b.CSV", "e.csv.gz", "f.zip", "g.parquet"]


def test_a_growing_file_waits_and_is_then_ingested_whole(tmp_path: Path, sqlite_url: str) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    text = MSFT.read_text().splitlines(keepends=True)
    growing = folder / "MSFT_1min_live.csv"
    growing.write_text("".join(text[: len(text) // 2]))  # the uploader is half-way
    first = land(sqlite_url, folder)
    assert [(f.status, "taken once unchanged" in f.reason) for f in first] == [("waiting", True)]
    assert growing.exists() and not (folder / "done").exists()
    assert read_bars(engine_for(sqlite_url), ["MSFT"], 0, 2**40).empty
    with growing.open("a") as handle:  # the upload finishes
        handle.write("".join(text[len(text) // 2 :]))
    age(growing, SETTLE + 1)
    second = land(sqlite_url, folder)
    rows = len(pd.read_csv(MSFT))
    assert [(f.status, f.read, f.stored) for f in second] == [("done", rows, rows)]
    assert (folder / "done" / growing.name).read_text() == "".join(text)
    assert len(read_bars(engine_for(sqlite_url), ["MSFT"], 0, 2**40)) == rows


def test_same_name_deliveries_keep_both_quarantine_records(tmp_path: Path, sqlite_url: str) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    header = "timestamp,open,high,low,close,volume\n"
    nightly = folder / "NIGHT_1min.csv"
    nights = [
        header + "2023-07-10 13:30:00,1,2,1,2,5\n2023-07-10 13:31:00,1,0.5,1,1,5\n",
        header + "2023-07-11 13:30:00,1,2,1,2,5\n2023-07-11 13:31:00,-1,1,1,1,5\n",
    ]
    for night in nights:
        nightly.write_text(night)
        age(nightly, SETTLE + 1)
        (item,) = land(sqlite_url, folder)
        assert (item.status, item.stored, item.quarantined) == ("done", 1, 1)
    assert sorted(p.name for p in (folder / "done").iterdir()) == [
        "NIGHT_1min.1.csv",
        "NIGHT_1min.csv",
    ]  # never overwritten
    records = read_quarantine(engine_for(sqlite_url), str(nightly.resolve()))
    assert records["reason"].tolist() == ["high_below_low", "price_not_positive"]
    assert records["raw"].tolist() == [nights[0].splitlines()[2], nights[1].splitlines()[2]]
