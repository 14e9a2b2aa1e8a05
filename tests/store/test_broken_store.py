"""A store that cannot be used is one line naming it and what to do, exit 2, for every command.

Every case is a real condition on a real SQLite file: a file that is not a database, pages
overwritten with junk, a lock held by another connection past the busy timeout, a full file
system (a small tmpfs), a read-only mount (a read-only bind mount) and a file another user
owns. The commands run as the real console script, several at once to keep the file fast.
The store is checked afterwards: it is exactly as it was, or holds only whole files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import SAMPLE_DIR, need

from barkeeper.ingest.files import ingest_file
from models.engine import engine_for
from models.schema import init_db

BARKEEPER = str(Path(sys.executable).with_name("barkeeper"))
SAMPLE = sorted(SAMPLE_DIR.glob("*_1min_*.csv"))
COMMANDS = {
    "init": ["init"],
    "report": ["report"],
    "export": ["export", "--latest", "--symbol", "MSFT", "--date", "2023-07-10"],
    "import": ["import", str(SAMPLE[0])],
    "synth": ["synth", "--symbols", "2", "--start", "2023-07-10", "--end", "2023-07-10"],
    "replay": ["replay", "--symbols", "MSFT", "--start", "2023-07-10"],
    "audit": ["audit", "--start", "2023-07-10", "--end", "2023-07-10"],
}


def make_store(path: Path) -> str:
    url = f"sqlite:///{path}"
    init_db(engine_for(url))
    for sample in SAMPLE:
        ingest_file(engine_for(url), sample)
    engine_for(url).dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return url


def run_all(names: list[str], url: str, tmp_path: Path, **popen) -> dict[str, tuple[int, str]]:
    """Each named command against `url` at once; exit status and stderr of each."""
    env = {
        **os.environ,
        "BARKEEPER_REPORTS_DIR": str(tmp_path / "reports"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "BARKEEPER_STORE_BUSY_TIMEOUT": "2",
    }
    env.pop("BARKEEPER_DATABASE_URL", None)
    started = {
        name: subprocess.Popen(
            [BARKEEPER, *COMMANDS[name], "--db", url],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **popen,
        )
        for name in names
    }
    return {name: (p.wait(timeout=300), p.stderr.read().decode()) for name, p in started.items()}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_line(err: str) -> str:
    """The one error line: last on stderr, the only `barkeeper:` line, no traceback above it.

    Progress bars and import tables drawn before the failure are diagnostics, not errors.
    """
    lines = err.splitlines()
    assert "Traceback" not in err and lines, err[-3000:]
    assert [line for line in lines if line.startswith("barkeeper:")] == lines[-1:], err[-3000:]
    return lines[-1]


def assert_one_line(outcomes: dict[str, tuple[int, str]], url: str, what: str) -> None:
    for name, (status, err) in outcomes.items():
        assert status == 2, (name, err[-2000:])
        assert error_line(err).startswith(f"barkeeper: error: the store {url} {what}"), name


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200)
    before = digest(path)
    url = f"sqlite:///{path}"
    assert_one_line(run_all(list(COMMANDS), url, tmp_path), url, "is not an SQLite database")
    assert digest(path) == before  # nothing barkeeper did not create is changed


def test_corrupted_pages(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    url = make_store(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = [r for (r,) in conn.execute("SELECT rootpage FROM sqlite_master WHERE rootpage")]
    junk = np.random.default_rng(0).integers(0, 256, page, dtype=np.uint8).tobytes()
    with path.open("r+b") as file:  # every table's and index's first page overwritten
        for root in roots:
            file.seek((root - 1) * page)
            file.write(junk)
    before = digest(path)
    assert_one_line(run_all(list(COMMANDS), url, tmp_path), url, "is corrupted")
    assert digest(path) == before


def test_locked_past_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    url = make_store(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than the timeout
    holder.execute("DELETE FROM quarantine")
    try:
        outcomes = run_all(["import", "synth", "replay", "report"], url, tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    status, err = outcomes.pop("report")  # readers are not blocked by a writer (WAL):
    assert status == 2 and err.startswith("barkeeper: error: the store holds no runs yet")
    assert_one_line(outcomes, url, "stayed locked by another process past the busy timeout")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM run").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM ingested_file").fetchone()[0] == len(SAMPLE)


@contextlib.contextmanager
def mounted(*args: str, source: str, target: Path) -> Iterator[None]:
    target.mkdir(exist_ok=True)
    done = subprocess.run(["mount", *args, source, str(target)], capture_output=True)
    need(done.returncode == 0, f"cannot mount here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def test_disk_full_stops_the_import_at_the_first_write_error(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with mounted("-t", "tmpfs", "-o", "size=2m", source="tmpfs", target=disk):
        url = make_store(disk / "store.db")
        minutes = pd.date_range("2021-01-04 14:30", periods=60_000, freq="min", tz="UTC")
        big = tmp_path / "BIG_1min.csv"
        pd.DataFrame({"timestamp": minutes, "open": 10.0, "high": 11.0, "low": 9.0,
                      "close": 10.5, "volume": 7}).to_csv(big, index=False)  # fmt: skip
        small = tmp_path / "SMALL_1min.csv"
        pd.read_csv(SAMPLE[0]).head(50).to_csv(small, index=False)
        COMMANDS["import_two"] = ["import", str(small), str(big)]
        try:
            outcomes = run_all(["import_two"], url, tmp_path)
        finally:
            del COMMANDS["import_two"]
        status, err = outcomes["import_two"]
        assert status == 2
        assert error_line(err) + "\n" == (
            f"barkeeper: error: the store {url} cannot grow: the disk is full; free space, then "
            f"rerun; import stopped at {big}: nothing of it was stored, the 1 file(s) listed "
            "before it were committed\n"
        )
        with contextlib.closing(sqlite3.connect(disk / "store.db")) as conn:
            symbols = dict(conn.execute("SELECT symbol, count(*) FROM bar GROUP BY symbol"))
        assert "BIG" not in symbols and symbols["SMALL"] == 50


def test_read_only_store_is_reported_and_exported_but_not_written(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    make_store(folder / "store.db")
    view = tmp_path / "read_only"
    with mounted("--bind", "-o", "ro", source=str(folder), target=view):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        url = f"sqlite:///{view / 'store.db'}"
        before = digest(view / "store.db")
        outcomes = run_all(["report", "export", "import", "synth", "replay"], url, tmp_path)
        assert digest(view / "store.db") == before
        assert sorted(os.listdir(view)) == ["store.db"]  # no -wal or -shm could appear
    # no runs yet: report and export read the store and say so (a user's case, not a crash)
    for name in ("report", "export"):
        status, err = outcomes.pop(name)
        assert status == 2 and err.startswith("barkeeper: error: the store holds no runs yet")
    assert_one_line(outcomes, url, "is read-only")


def test_a_store_that_cannot_be_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no_such_folder' / 'store.db'}"  # as with no permission
    outcomes = run_all(["report", "import", "replay"], url, tmp_path)
    status, err = outcomes.pop("report")  # a reader names the missing store and how to make one
    assert status == 2 and error_line(err).startswith("barkeeper: error: no store at "), err
    assert_one_line(outcomes, url, "cannot be opened")
    assert not (tmp_path / "no_such_folder").exists()
