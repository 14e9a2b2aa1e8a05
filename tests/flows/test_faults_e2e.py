"""Faults: the repository failing, the store locked, upkeep and coordinator errors, a SIGKILL.

The repository failure is the one fault we cannot cause for real here, so a `BarSource` that
raises `TimeoutError` for chosen calls stands in for it, injected at the upkeep's seam (pure
tests) or in place of `RepositorySource` (flow tests). Everything else is real: a SQLite store
locked by another connection, a handler that raises inside the real flow, and a `barkeeper
replay` process killed with SIGKILL. Oracles: the repository's bars and the store's own rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_DIR
from sqlalchemy import text

from barkeeper.core.calendar import Calendar
from barkeeper.core.kernels import bucket_layout, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.core.synth import synthetic_bars
from barkeeper.ingest.files import ingest_file
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_records import Provenance
from barkeeper.live.upkeep import Upkeep
from barkeeper.live.upkeep_config import SlotState, UpkeepConfig
from barkeeper.params import ReplayParameters
from barkeeper.reports.rebuild import run_series
from models.engine import engine_for
from models.repository import read_bars, upsert_bars
from models.results import create_run, mark_interrupted, resolve_run

SESSION = date(2023, 7, 10)
SYMBOLS = ["MSFT", "DBB", "FXY"]
BARKEEPER = Path(sys.executable).with_name("barkeeper")
FAST = UpkeepConfig(max_retries=3, final_backoff_s=0.001)


# ---------------------------------------------------------------------------- a failing repository
class FlakyRepository:
    """The repository as a frame; calls number `failing` raise TimeoutError (a mock fault)."""

    def __init__(self, truth: pd.DataFrame, failing: range | None = None) -> None:
        self.truth = truth.set_index(["symbol", "ts"]).sort_index()
        self.failing = failing if failing is not None else range(0)
        self.calls: list[tuple[int, set[tuple[str, int]]]] = []  # (upkeep cycle, keys asked)
        self.upkeep: Upkeep | None = None

    def fetch(self, keys: pd.DataFrame) -> pd.DataFrame:
        cycle = self.upkeep.stats.cycles if self.upkeep else -1
        self.calls.append((cycle, set(zip(keys["symbol"], keys["ts"].astype(int), strict=True))))
        if len(self.calls) - 1 in self.failing:
            raise TimeoutError("repository read timed out")
        wanted = pd.MultiIndex.from_arrays([keys["symbol"], keys["ts"]])
        return self.truth.loc[self.truth.index.intersection(wanted)].reset_index()


def session_truth(seed: int = 3, n_symbols: int = 4) -> tuple[object, pd.DataFrame]:
    minutes = Calendar("XNYS").session_minutes(SESSION)
    names = [f"S{i}" for i in range(n_symbols)]
    truth = synthetic_bars(names, [minutes], illiquid_share=0.25, seed=seed)
    return minutes, truth


def replay_with_upkeep(
    source: FlakyRepository,
    minutes,
    truth: pd.DataFrame,
    config: UpkeepConfig = FAST,
    *,
    drop: float = 0.1,
    every: int = 15,
    corrupt: float = 0.0,
    on_changed=None,
    on_rejected=None,
) -> tuple[SessionData, Upkeep]:
    """Feed `truth` minus a seeded `drop` share minute by minute; a cycle every `every` minutes.

    A seeded `corrupt` share of the fed bars arrives with high below low.
    """
    symbols = sorted(truth["symbol"].unique())
    rng = np.random.default_rng(0)
    feed = truth.loc[rng.random(len(truth)) >= drop].copy()
    broken = rng.random(len(feed)) < corrupt
    feed.loc[broken, "low"] = feed.loc[broken, "high"] * 2
    panel = Panel.empty(tuple(symbols), minutes.minutes)
    panel.fill(feed)
    layouts = {5: bucket_layout(minutes.minutes, minutes.segment, 5)}
    data = SessionData()
    data.start_session(minutes, symbols, layouts)
    upkeep = Upkeep(data, source, config, on_changed=on_changed, on_rejected=on_rejected)
    source.upkeep = upkeep
    upkeep.begin_session(minutes, layouts)
    for m, ts in enumerate(minutes.minutes):
        rows = np.flatnonzero(panel.present[:, m])
        data.write_minute(m, rows, *(getattr(panel, c)[rows, m] for c in PRICE_COLUMNS))
        data.advance_clock(int(ts))
        if (m + 1) % every == 0:
            upkeep.cycle(int(ts))
    data.close_session()
    upkeep.final_pass()
    return data, upkeep


def truth_panel(minutes, truth: pd.DataFrame) -> Panel:
    panel = Panel.empty(tuple(sorted(truth["symbol"].unique())), minutes.minutes)
    panel.fill(truth)
    return panel


def test_repository_timeouts_are_retried_with_backoff_then_backfilled() -> None:
    minutes, truth = session_truth()
    source = FlakyRepository(truth, failing=range(0, 3))  # the first three reads time out
    data, upkeep = replay_with_upkeep(source, minutes, truth)
    assert upkeep.stats.fetch_errors == 3
    # Backoff: a minute whose read failed r times is asked again 2**r cycles later, not every
    # cycle: the first missing minutes are asked at cycles c, c+2, c+2+4, ... until a read works.
    first_key = next(iter(source.calls[0][1]))
    asked = [cycle for cycle, keys in source.calls if first_key in keys]
    assert len(asked) >= 2
    assert np.diff(asked).tolist() == [2**r for r in range(1, len(asked))]
    snapshot = data.panel_snapshot()
    expected = truth_panel(minutes, truth)
    np.testing.assert_array_equal(snapshot.panel.close, expected.close)  # nothing lost
    assert not (upkeep.state == SlotState.UNFILLABLE).any()
    assert (snapshot.provenance == Provenance.BACKFILL).sum() == upkeep.stats.backfilled > 0


def test_repository_down_for_good_leaves_tracked_unfillable_minutes() -> None:
    minutes, truth = session_truth()
    source = FlakyRepository(truth, failing=range(10**6))
    data, upkeep = replay_with_upkeep(source, minutes, truth)
    snapshot = data.panel_snapshot()
    expected = truth_panel(minutes, truth)
    missing = ~snapshot.panel.present
    # every minute without a bar is tracked: the repository never answered, so none of them
    # can be called a no-trade minute; each one is unfillable after max_retries attempts
    np.testing.assert_array_equal(upkeep.state == SlotState.UNFILLABLE, missing)
    assert (upkeep.retries[missing] > FAST.max_retries).all()
    metrics = data.metrics()
    np.testing.assert_array_equal(metrics.unfillable_bars, missing.sum(axis=1))
    np.testing.assert_array_equal(metrics.actual_bars + metrics.unfillable_bars, 390)
    assert (expected.present & missing).any()  # bars the repository holds are among them
    assert upkeep.stats.backfilled == 0 and upkeep.stats.cycle_errors == 0


def test_an_exception_inside_a_cycle_is_counted_and_the_next_cycle_runs() -> None:
    minutes, truth = session_truth()
    failures = iter([True, True])

    def fragile(changed: np.ndarray) -> None:  # e.g. the cycle's validation hook
        if next(failures, False):
            raise RuntimeError("validation backend unavailable")

    data, upkeep = replay_with_upkeep(FlakyRepository(truth), minutes, truth, on_changed=fragile)
    assert upkeep.stats.cycle_errors == 2
    assert upkeep.stats.cycles == 390 // 15
    np.testing.assert_array_equal(
        data.panel_snapshot().panel.close, truth_panel(minutes, truth).close
    )


def test_a_cycle_that_fails_before_its_repairs_loses_no_change() -> None:
    """The failed cycle had taken the change marks; the next one rechecks every bar."""
    minutes, truth = session_truth()
    failures = iter([True])

    def fragile(rejected: pd.DataFrame) -> None:  # e.g. the cycle checks' bookkeeping
        if next(failures, False):
            raise RuntimeError("bookkeeping failed")

    data, upkeep = replay_with_upkeep(
        FlakyRepository(truth), minutes, truth, corrupt=0.05, on_rejected=fragile
    )
    assert upkeep.stats.cycle_errors == 1 and upkeep.stats.repaired > 0
    snapshot = data.panel_snapshot()
    expected = truth_panel(minutes, truth)
    for column in PRICE_COLUMNS:  # every corrupted bar repaired, every dropped one backfilled
        np.testing.assert_array_equal(getattr(snapshot.panel, column), getattr(expected, column))
    layout = bucket_layout(minutes.minutes, minutes.segment, 5)
    np.testing.assert_array_equal(snapshot.derived[5].close, derive(snapshot.panel, layout).close)


def test_a_repair_whose_read_failed_is_tried_again() -> None:
    minutes, truth = session_truth()
    source = FlakyRepository(truth, failing=range(0, 6))
    data, upkeep = replay_with_upkeep(source, minutes, truth, corrupt=0.05)
    assert upkeep.stats.fetch_errors == 6 and not upkeep.unrepaired.any()
    np.testing.assert_array_equal(data.panel_snapshot().panel.low, truth_panel(minutes, truth).low)


# ---------------------------------------------------------------------------- a locked store
def test_a_write_waits_for_a_locked_store_and_succeeds(sqlite_url: str) -> None:
    _, truth = session_truth(n_symbols=2)
    path = sqlite_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO run (id, flow, status, parameters, started_at, error, data_docs,"
                   " stats, host) VALUES ('lock', 'x', 'running', '{}', '2026-01-01', '', '',"
                   " '{}', '')")  # fmt: skip
    released = threading.Event()

    def release() -> None:
        time.sleep(2.0)
        holder.execute("COMMIT")
        released.set()

    threading.Thread(target=release).start()
    began = time.perf_counter()
    counts = upsert_bars(engine_for(sqlite_url), truth, origin="locked")
    waited = time.perf_counter() - began
    holder.close()
    assert released.is_set() and waited >= 1.5  # it waited on busy_timeout, then wrote
    assert counts.stored == len(truth)
    assert len(read_bars(engine_for(sqlite_url), ["S0", "S1"], 0, 2**40)) == len(truth)
    with engine_for(sqlite_url).connect() as conn:  # the other writer's work is there too
        assert conn.execute(text("SELECT count(*) FROM run")).scalar_one() == 1


# ---------------------------------------------------------------------------- interrupted runs
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_mark_interrupted_never_marks_a_live_run(sqlite_url: str) -> None:
    engine = engine_for(sqlite_url)
    create_run(engine, "live", "replay_sessions", {})  # this process: alive
    create_run(engine, "dead", "replay_sessions", {})
    create_run(engine, "elsewhere", "replay_sessions", {})
    create_run(engine, "done", "replay_sessions", {})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    create_run(engine, "concurrent", "replay_sessions", {})
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE run SET pid = :p WHERE id = 'dead'"), {"p": dead_pid()})
            conn.execute(text("UPDATE run SET pid = :p, host = 'other' WHERE id = 'elsewhere'"),
                         {"p": dead_pid()})  # fmt: skip
            conn.execute(text("UPDATE run SET pid = :p, status = 'completed' WHERE id = 'done'"),
                         {"p": dead_pid()})  # fmt: skip
            conn.execute(text("UPDATE run SET pid = :p WHERE id = 'concurrent'"),
                         {"p": sleeper.pid})  # fmt: skip
        assert mark_interrupted(engine) == ["dead"]
        assert mark_interrupted(engine) == []  # idempotent
    finally:
        sleeper.kill()
        sleeper.wait()
    status = {r: resolve_run(engine, r).status for r in ("live", "dead", "elsewhere", "done")}
    assert status == {"live": "running", "dead": "interrupted", "elsewhere": "running",
                      "done": "completed"}  # fmt: skip
    assert resolve_run(engine, "dead").host == socket.gethostname()
    # the sleeper is gone now: its run is interrupted on the next look
    assert mark_interrupted(engine) == ["concurrent"]


def _rows(url: str, sql: str) -> list[tuple]:
    with engine_for(url).connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_sigkill_mid_replay_then_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = engine_for(url)
    from models.schema import init_db

    init_db(engine)
    for path in sorted(SAMPLE_DIR.glob("*_1min_*.csv")):
        ingest_file(engine, path)
    repository = _rows(url, "SELECT symbol, ts, open, high, low, close, volume FROM bar")
    env = {
        **os.environ,
        "BARKEEPER_DATABASE_URL": url,
        "BARKEEPER_REPORTS_DIR": str(tmp_path / "reports"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    command = [str(BARKEEPER), "replay", "--symbols", ",".join(SYMBOLS), "--start", "2023-07-10",
               "--drop-rate", "0.05", "--seed", "4", "--json"]  # fmt: skip
    victim = subprocess.Popen(
        [*command, "--end", "2023-07-13", "--speed", "200x"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so helpers it started go with it
    )
    try:
        deadline = time.monotonic() + 240
        while not _rows(url, "SELECT id FROM run"):
            assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the replay never recorded its run"
            time.sleep(0.2)
        time.sleep(2.0)  # mid-session: 200x replays a session in about two minutes
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(victim.pid, signal.SIGKILL)  # anything it left behind in its group
        victim.stderr.close()
    assert victim.returncode == -signal.SIGKILL
    (killed,) = _rows(url, "SELECT id, status, pid FROM run")
    assert killed[1] == "running" and killed[2] == victim.pid

    shown = subprocess.run([str(BARKEEPER), "report", "--run", killed[0], "--json"], env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "interrupted"

    rerun = subprocess.run([*command, "--speed", "max"], env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    report = json.loads(rerun.stdout)
    statuses = dict(_rows(url, "SELECT id, status FROM run"))
    assert statuses == {killed[0]: "interrupted", report["run_id"]: "degraded"} or statuses == {
        killed[0]: "interrupted",
        report["run_id"]: "completed",
    }
    error = _rows(url, f"SELECT error FROM run WHERE id = '{killed[0]}'")[0][0]
    assert error.startswith("interrupted")
    # the repository is untouched and no bar of any run appears twice (primary keys)
    assert _rows(url, "SELECT symbol, ts, open, high, low, close, volume FROM bar") == repository
    twice = ("SELECT run_id, symbol, interval, ts, count(*) FROM run_bar "
             "GROUP BY run_id, symbol, interval, ts HAVING count(*) > 1")  # fmt: skip
    assert _rows(url, twice) == []
    minutes = set(Calendar("XNYS").session_minutes(SESSION).minutes.tolist())
    bars = run_series(engine_for(url), report["run_id"])
    bars = bars.loc[bars["interval"] == 1]
    bars = bars.loc[bars["ts"].isin(minutes) & (bars["provenance"] != "synthetic")]
    for symbol in SYMBOLS:
        expected = sum(1 for s, ts, *_ in repository if s == symbol and ts in minutes)
        stored = int((bars["symbol"] == symbol).sum())
        assert stored == expected == report["sessions"][0]["symbols"][symbol]["actual_bars"]


# ---------------------------------------------------------------------------- through the flow
@pytest.fixture
def sample_url(
    sqlite_url: str, sample_store: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setenv("DATA_UPKEEP_MAX_RETRIES", "2")
    return sample_store(sqlite_url)


class DownRepository:
    """Stands in for tasks.replay.RepositorySource: every read times out."""

    calls = 0

    def __init__(self, database_url: str, name: str = "default") -> None:
        self.database_url = database_url

    def fetch(self, keys: pd.DataFrame) -> pd.DataFrame:
        DownRepository.calls += 1
        raise TimeoutError("repository read timed out")


def test_flow_with_the_repository_down_completes_degraded(
    harness, sample_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import replayed

    import tasks.replay

    monkeypatch.setattr(tasks.replay, "RepositorySource", DownRepository)
    DownRepository.calls = 0
    params = ReplayParameters(symbols=SYMBOLS, start=SESSION, faults={"drop_rate": 0.05, "seed": 2})
    report = replayed(params)
    engine = engine_for(sample_url)
    run = resolve_run(engine, report["run_id"])
    assert run.status == "degraded" and run.error == ""
    assert DownRepository.calls > 3
    figures = report["sessions"][0]["symbols"]
    for symbol in SYMBOLS:
        m = figures[symbol]
        assert m["backfilled_bars"] == 0 and m["unfillable_bars"] > 0
        assert m["actual_bars"] + m["unfillable_bars"] == m["expected_bars"] == 390
    gaps = pd.DataFrame(
        _rows(sample_url, f"SELECT symbol, length, status FROM gap WHERE run_id = '{run.id}'"),
        columns=["symbol", "length", "status"],
    )
    assert set(gaps["status"]) == {"unfillable"}  # every gap tracked, none silently dropped
    unfillable = gaps.groupby("symbol")["length"].sum().to_dict()
    assert unfillable == {s: figures[s]["unfillable_bars"] for s in SYMBOLS}


def failing_handler(data: SessionData):
    """A strategy that breaks at 10:00 New York time (a handler factory for the flow)."""
    cutoff = 1688997600  # 2023-07-10 14:00 UTC

    def handler(symbol: str, ts: int, *bar: float) -> None:
        if ts >= cutoff:
            raise RuntimeError(f"strategy crashed on {symbol}")

    return handler


def test_flow_with_a_failing_coordinator_stops_the_upkeep_and_fails(
    harness, sample_url: str
) -> None:
    from helpers import replayed

    from barkeeper.live.replay import newest

    params = ReplayParameters(
        symbols=SYMBOLS,
        start=SESSION,
        end=date(2023, 7, 12),
        handlers=[f"{__name__}:failing_handler"],
    )
    began = time.monotonic()
    with pytest.raises(Exception, match="strategy crashed"):
        replayed(params)
    assert time.monotonic() - began < 120  # the upkeep did not wait for sessions never streamed
    (run_id, status, error) = _rows(sample_url, "SELECT id, status, error FROM run")[0]
    assert status == "failed"
    assert "strategy crashed on" in error
    assert newest() is None or newest().plan.run_id != run_id  # its live state is released
    lingering = [t.name for t in threading.enumerate() if t.name.startswith("barkeeper-")]
    assert lingering == []
