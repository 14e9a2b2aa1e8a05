"""Runs store what they changed, and export rebuilds exactly what a full copy exported.

Real Prefect (test harness), real SQLite and PostgreSQL stores, the real sample bars. The oracle
is the run's own full copy: the in-memory series (`session_bars`) persistence checks itself
against under BARKEEPER_VERIFY_EXPORTS, captured here and exported through the same formatting
as a full-copy run_bar export; and the repository's own rows.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from helpers import lossy_faults
from sqlalchemy import text

from barkeeper.errors import RepositoryChangedError
from barkeeper.params import ReplayParameters
from barkeeper.reports.export import export_bars, export_frame
from barkeeper.reports.rebuild import run_series
from models.engine import engine_for
from models.repository import read_bars, upsert_bars

SYMBOLS = ["MSFT", "DBB", "FXY"]
SESSION = date(2023, 7, 10)
INTERVALS = (1, 5, 15, 30, 60, 1440)
LOSSY = lossy_faults(seed=5)
BARKEEPER = Path(sys.executable).with_name("barkeeper")


@pytest.fixture
def full_copies(monkeypatch: pytest.MonkeyPatch) -> dict[date, pd.DataFrame]:
    """The in-memory full copy of every session persisted, as persistence checks it."""
    import tasks.replay

    copies: dict[date, pd.DataFrame] = {}
    check = tasks.replay.assert_rebuilt

    def capture(rebuilt, full, run_id, session) -> None:
        copies[session] = full.copy()
        check(rebuilt, full, run_id, session)

    monkeypatch.setattr(tasks.replay, "assert_rebuilt", capture)
    return copies


@pytest.fixture
def store(db_url: str, sample_store: Callable[[str], str]) -> str:
    return sample_store(db_url)


def replay(**values) -> dict:
    from helpers import replayed

    return replayed(ReplayParameters(**{"symbols": SYMBOLS, "start": SESSION, **values}))


def assert_exports_equal_full_copies(url: str, run_id: str, copies: dict) -> None:
    """Every symbol x interval export of every session is byte-identical to the full copy's."""
    engine = engine_for(url)
    assert copies
    for session, full in copies.items():
        for (symbol, interval), bars in full.groupby(["symbol", "interval"]):
            got = export_bars(engine, run_id, symbol, session, int(interval)).to_csv(index=False)
            assert got == export_frame(bars).to_csv(index=False), (session, symbol, interval)
        assert set(full["interval"]) - {1} == set(INTERVALS) - {1}


def stored(url: str, run_id: str) -> dict[str, pd.DataFrame]:
    with engine_for(url).connect() as conn:
        return {
            table: pd.read_sql(
                text(f"SELECT * FROM {table} WHERE run_id = :r"), conn, params={"r": run_id}
            )
            for table in ("run_bar", "run_source", "run_session")
        }


def test_clean_replay_stores_only_fingerprints_and_refuses_a_changed_repository(
    harness, store: str, full_copies: dict
) -> None:
    report = replay()
    run_id = report["run_id"]
    assert_exports_equal_full_copies(store, run_id, full_copies)
    rows = stored(store, run_id)
    assert rows["run_bar"].empty  # the feed delivered every repository bar unchanged
    assert rows["run_session"]["bars"].tolist() == [0]
    window = rows["run_session"][["window_start", "window_end"]].iloc[0].tolist()
    read = read_bars(engine_for(store), SYMBOLS, *window).groupby("symbol").size()
    assert rows["run_source"].set_index("symbol")["bars"].to_dict() == read.to_dict()
    exported = export_bars(engine_for(store), run_id, "MSFT", SESSION, 1)
    assert set(exported["provenance"]) == {"feed"}

    # A vendor correction lands on one MSFT bar of the session after the run.
    bar = read_bars(engine_for(store), ["MSFT"], *window).iloc[[100]]
    upsert_bars(engine_for(store), bar.assign(volume=bar["volume"] + 1), "correction")
    with pytest.raises(
        RepositoryChangedError, match=f"since run {run_id} read it \\(MSFT, {SESSION}\\)"
    ):
        export_bars(engine_for(store), run_id, "MSFT", SESSION, 5)
    export_bars(engine_for(store), run_id, "DBB", SESSION, 5)  # other slices still rebuild
    command = [str(BARKEEPER), "export", "--run", run_id, "--symbol", "MSFT",
               "--date", str(SESSION), "--db", store]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"barkeeper: error: the repository changed since run {run_id}")
    assert done.stderr.count("\n") == 1


def test_lossy_replay_stores_the_changed_bars_with_their_provenance(
    harness, store: str, full_copies: dict
) -> None:
    report = replay(faults=LOSSY, fill_policy="ffill")
    run_id = report["run_id"]
    assert_exports_equal_full_copies(store, run_id, full_copies)
    changes = stored(store, run_id)["run_bar"]
    figures = report["sessions"][0]["symbols"]
    for symbol in SYMBOLS:
        mine = changes.loc[changes["symbol"] == symbol, "provenance"].value_counts().to_dict()
        assert mine.get("backfill", 0) == figures[symbol]["backfilled_bars"] > 0
        assert mine.get("repaired", 0) == figures[symbol]["repaired_bars"]
        assert mine.get("synthetic", 0) == figures[symbol]["synthetic_bars"]
        assert set(mine) <= {"backfill", "repaired", "synthetic"}  # corrupt bars were repaired
    assert sum(f["repaired_bars"] for f in figures.values()) > 0
    assert sum(f["synthetic_bars"] for f in figures.values()) > 0


def test_multi_session_replay_with_history_exports_every_session(
    harness, sqlite_url: str, sample_store: Callable[[str], str], full_copies: dict
) -> None:
    store = sample_store(sqlite_url)
    report = replay(end=date(2023, 7, 12), trailing_days=1, faults=LOSSY)
    assert len(full_copies) == 3
    assert_exports_equal_full_copies(store, report["run_id"], full_copies)
    series = run_series(engine_for(store), report["run_id"])
    assert sorted(set(series["session"])) == sorted(full_copies)


def test_extended_hours_replay_exports_every_segment(
    harness, sqlite_url: str, sample_store: Callable[[str], str], full_copies: dict
) -> None:
    store = sample_store(sqlite_url)
    report = replay(extended_hours=True, faults=LOSSY)
    assert_exports_equal_full_copies(store, report["run_id"], full_copies)
    spec = stored(store, report["run_id"])["run_session"]
    assert bool(spec["extended_hours"].iloc[0]) is True
