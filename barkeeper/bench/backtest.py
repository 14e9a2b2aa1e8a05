"""Backtest-scale replays from the command line, each beside its store limit.

Two cases, as a user runs them (`barkeeper replay ... --json` in a fresh process, fresh store):
2 real symbols over all their sessions, and 500 synthetic symbols over 20 sessions (plus the
same symbols over 1 session, for the marginal cost and the memory growth of a session). The
store limit is what raw sqlite3 needs to read the same bars and write the same result rows;
the ratio of the replay's wall to it says how far the replay is from what its store allows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from barkeeper.bench.replay import BENCH_SESSION, bench_sessions, seed_repository
from barkeeper.core.calendar import Calendar

REAL_DIRS = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "real",
    Path(__file__).resolve().parents[2] / "data" / "sample",
)
REAL_SYMBOLS = ("DBB", "FXY")
REAL_SESSIONS = 93


def bench_backtest(
    symbols: int = 500, sessions: int = 20, real_sessions: int = REAL_SESSIONS
) -> dict[str, Any]:
    """Wall per session and store-limit ratio of both cases; marginal session and RSS growth.

    Returns
    -------
    dict
        `real` and `synthetic`: symbols, sessions, wall_s, wall_per_session_s, peak_rss_mb,
        rss_growth_per_session_mb (slope of RSS over 50-90 % of the run), store_limit_s,
        store_limit_ratio; `synthetic` also marginal_session_s and
        peak_rss_growth_per_session_mb (both against a 1-session run of the same symbols,
        the latter including the batch of sessions awaiting validation); `load` is the
        1-minute load average before each case (the machine may be shared).
    """
    with tempfile.TemporaryDirectory(prefix="barkeeper-backtest-") as tmp:
        real = _real_case(Path(tmp) / "real", real_sessions)
        synthetic = _synthetic_case(Path(tmp) / "synth", symbols, sessions)
    return {"real": real, "synthetic": synthetic}


def _real_case(folder: Path, sessions: int) -> dict[str, Any]:
    from barkeeper.ingest.files import ingest_file
    from models.engine import engine_for
    from models.schema import init_db

    source = next(d for d in REAL_DIRS if all(any(d.glob(f"{s}_1min_*")) for s in REAL_SYMBOLS))
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'store.db'}"
    engine = engine_for(url)
    init_db(engine)
    for symbol in REAL_SYMBOLS:
        for path in sorted(source.glob(f"{symbol}_1min_*")):
            ingest_file(engine, path, symbol)
    engine.dispose()
    with sqlite3.connect(folder / "store.db") as conn:
        (first, last) = conn.execute("SELECT min(ts), max(ts) FROM bar").fetchone()
    held = Calendar().sessions(_day(first), _day(last))[:sessions]
    figures = _replay_case(folder, url, list(REAL_SYMBOLS), held[0], held[-1], len(held))
    return {"source": str(source), **figures}


def _synthetic_case(folder: Path, symbols: int, sessions: int) -> dict[str, Any]:
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'store.db'}"
    names = seed_repository(url, symbols, sessions)
    days = bench_sessions(sessions)
    one = _replay_case(folder / "one", url, names, BENCH_SESSION, BENCH_SESSION, 1)
    figures = _replay_case(folder, url, names, days[0], days[-1], sessions)
    figures["marginal_session_s"] = round((figures["wall_s"] - one["wall_s"]) / (sessions - 1), 3)
    growth = (figures["peak_rss_mb"] - one["peak_rss_mb"]) / (sessions - 1)
    figures["peak_rss_growth_per_session_mb"] = round(growth, 2)
    figures["one_session"] = one
    return figures


def _day(ts: int) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _replay_case(
    folder: Path, url: str, symbols: list[str], start: date, end: date, sessions: int
) -> dict[str, Any]:
    """One cold `barkeeper replay --json` run: wall, peak RSS and the store-limit ratio."""
    folder.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    command = [
        str(Path(sys.executable).with_name("barkeeper")),
        "replay",
        "--symbols",
        ",".join(symbols),
        "--start",
        str(start),
        "--end",
        str(end),
        "--db",
        url,
        "--json",
    ]
    env = {**os.environ, "BARKEEPER_REPORTS_DIR": str(folder / "reports")}
    began = perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = _PeakRss(process.pid)
    stdout, stderr = process.communicate()
    wall = perf_counter() - began
    peak.stop()
    if process.returncode != 0:
        raise RuntimeError(f"replay failed ({process.returncode}): {stderr.strip()[-500:]}")
    report = json.loads(stdout)
    limit = store_limit(url.removeprefix("sqlite:///"), report["run_id"], symbols, start, end)
    slope = peak.growth_mb_per_s()
    return {
        "symbols": len(symbols),
        "sessions": sessions,
        "rss_growth_per_session_mb": None if slope is None else round(slope * wall / sessions, 2),
        "wall_s": round(wall, 3),
        "wall_per_session_s": round(wall / sessions, 3),
        "peak_rss_mb": round(peak.mb, 1),
        "store_limit_s": round(limit, 3),
        "store_limit_ratio": round(wall / limit, 1),
        "load": round(load, 2),
    }


class _PeakRss:
    """A process's resident set, read every 0.2 s until it ends: its peak and its trend."""

    def __init__(self, pid: int) -> None:
        self.pid, self.mb = pid, 0.0
        self.samples: list[tuple[float, float]] = []  # (seconds since start, VmRSS MB)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        began = perf_counter()
        while not self._done.wait(0.2):
            try:
                fields = dict(
                    line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
                )
                self.mb = max(self.mb, int(fields["VmHWM"].split()[0]) / 1024)
                self.samples.append(
                    (perf_counter() - began, int(fields["VmRSS"].split()[0]) / 1024)
                )
            except (OSError, ValueError, KeyError):
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def growth_mb_per_s(self) -> float | None:
        """Least-squares slope of RSS over 50-90 % of the run's samples.

        Past the start-up (imports, first session) and before the report; meaningful only
        for runs of many sessions, where the replay is most of the process's life.
        """
        middle = self.samples[len(self.samples) // 2 : len(self.samples) * 9 // 10]
        if len(middle) < 3:
            return None
        t = np.array([m[0] for m in middle])
        rss = np.array([m[1] for m in middle])
        return float(np.polyfit(t, rss, 1)[0])


def store_limit(db: str, run_id: str, symbols: list[str], start: date, end: date) -> float:
    """Seconds raw sqlite3 takes to read the replay's bars and write its result rows afresh.

    The read is one query over the sessions' days; the write copies every row the run left in
    tables with a `run_id` column into an empty copy of those tables in another file (one
    transaction of `INSERT ... SELECT`, all in SQLite's C code: a floor for any writer).
    """
    first = int(Calendar().session_minutes(start).minutes[0]) - 86_400
    last = int(Calendar().session_minutes(end).minutes[-1]) + 86_400
    marks = ",".join("?" * len(symbols))
    with tempfile.TemporaryDirectory(prefix="barkeeper-limit-") as tmp:
        conn = sqlite3.connect(db)
        try:
            tables = [
                (name, sql)
                for name, sql in conn.execute(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
                ).fetchall()
                if any(c[1] == "run_id" for c in conn.execute(f'PRAGMA table_info("{name}")'))
            ]
            conn.execute("ATTACH DATABASE ? AS target", (str(Path(tmp) / "limit.db"),))
            for name, sql in tables:
                conn.execute(
                    sql.replace(f'CREATE TABLE "{name}"', f'CREATE TABLE target."{name}"').replace(
                        f"CREATE TABLE {name}", f'CREATE TABLE target."{name}"'
                    )
                )
            conn.commit()
            began = perf_counter()
            rows = conn.execute(
                f"SELECT symbol, ts, open, high, low, close, volume FROM bar "
                f"WHERE interval = 1 AND ts >= ? AND ts < ? AND symbol IN ({marks})",
                (first, last, *symbols),
            )
            for _ in rows:
                pass
            with conn:
                for name, _ in tables:
                    conn.execute(
                        f'INSERT INTO target."{name}" SELECT * FROM main."{name}" WHERE run_id = ?',
                        (run_id,),
                    )
            return perf_counter() - began
        finally:
            conn.close()
