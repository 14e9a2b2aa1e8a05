"""The bad-input catalogue: each wrong file, row or parameter ends in one line or in quarantine.

Files and rows go through `barkeeper import` (typer's runner, in process); parameters go through
the real `barkeeper` console script in subprocesses (started together, so the file stays fast),
because only a real process shows what Prefect or a library would print on its own stderr.
Oracles: the store itself (bars and quarantine records counted there, not from the command's
output) and the import contract's reasons (`barkeeper.ingest.files.REASONS`).
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_DIR
from sqlalchemy import text
from typer.testing import CliRunner

from barkeeper.cli.main import app
from barkeeper.ingest.files import REASONS, ingest_file
from models.engine import engine_for
from models.repository import read_bars, read_quarantine
from models.schema import init_db

BARKEEPER = Path(sys.executable).with_name("barkeeper")
HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = "2023-07-10 13:30:00,10,11,9,10.5,100\n"


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one stderr line `barkeeper: error: ...` naming `needles`, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("barkeeper: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def bar_count(url: str) -> int:
    with engine_for(url).connect() as conn:
        return conn.execute(text("SELECT count(*) FROM bar")).scalar_one()


# ---------------------------------------------------------------------------- whole files
def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


FILE_CASES = {
    # case: (file name, bytes, words the one-line reason must hold)
    "empty": ("E_1min.csv", b"", ("empty file",)),
    "header_only": ("H_1min.csv", HEADER.encode(), ("header only",)),
    "missing_columns": ("M_1min.csv", b"timestamp,open,close\n2023-07-10 13:30:00,1,1\n",
                        ("missing column(s) high, low;",)),
    "wrong_delimiter": ("D_1min.csv", HEADER.replace(",", ";").encode() + b"x;1;1;1;1;1\n",
                        ("separated by semicolons",)),
    "tab_delimiter": ("T_1min.csv", HEADER.replace(",", "\t").encode() + b"x\t1\t1\t1\t1\t1\n",
                      ("separated by tabs",)),
    "binary_junk": ("B_1min.csv", bytes(range(256)) * 8, ("binary content",)),
    "bzip2": ("G_1min.csv", bz2.compress((HEADER + GOOD).encode()), ("bzip2-compressed",)),
    "broken_zip": ("Z_1min.csv", b"PK\x03\x04" + b"\x00" * 64, ("not a readable zip",)),
    "broken_gzip": ("Z_1min.csv.gz", gzip.compress((HEADER + GOOD).encode())[:30],
                    ("cannot be decompressed",)),
    "latin1_text": ("L_1min.csv", (HEADER + "2023-07-10 13:30:00,1,1,1,1,1 \xe9").encode("cp1252"),
                    ("not UTF-8",)),
    "fake_parquet": ("P_1min.parquet", (HEADER + GOOD).encode(), ("not a Parquet file",)),
    "duplicate_column": ("C_1min.csv", b"timestamp,open,open,high,low,close,volume\n",
                         ("appears more than once",)),
}  # fmt: skip


@pytest.mark.parametrize("case", FILE_CASES)
def test_unreadable_file_is_one_line_and_stores_nothing(
    case: str, tmp_path: Path, sqlite_url: str
) -> None:
    name, data, needles = FILE_CASES[case]
    path = _write(tmp_path, name, data)
    code, out, err = cli("import", str(path), "--json", "--db", sqlite_url)
    assert_one_line_error(code, err, str(path), *needles)
    assert json.loads(out) == {"files": []}
    assert bar_count(sqlite_url) == 0
    with engine_for(sqlite_url).connect() as conn:  # recorded as a rejected import
        status = conn.execute(text("SELECT status FROM ingested_file")).scalars().all()
    assert status == ["rejected"]


def test_missing_file_and_directory_are_one_line_each(tmp_path: Path, sqlite_url: str) -> None:
    missing = tmp_path / "NOPE_1min.csv"
    assert_one_line_error(*cli("import", str(missing), "--db", sqlite_url)[::2], "no such file")
    folder = tmp_path / "DIR_1min.csv"
    folder.mkdir()
    assert_one_line_error(*cli("import", str(folder), "--db", sqlite_url)[::2], "is a directory")


def test_unknown_time_zone_is_rejected_before_any_read(tmp_path: Path, sqlite_url: str) -> None:
    path = _write(tmp_path, "OK_1min.csv", (HEADER + GOOD).encode())
    code, _, err = cli("import", str(path), "--tz", "Mars/Olympus", "--db", sqlite_url)
    assert_one_line_error(code, err, "--tz", "Mars/Olympus")
    assert bar_count(sqlite_url) == 0


def test_byte_order_marks_are_read_like_plain_utf8(tmp_path: Path, sqlite_url: str) -> None:
    body = HEADER + GOOD + "2023-07-10 13:31:00,10.5,11,10,10.8,50\n"
    plain = _write(tmp_path, "A_1min.csv", body.encode())
    utf8_bom = _write(tmp_path, "B_1min.csv", b"\xef\xbb\xbf" + body.encode())
    utf16 = _write(tmp_path, "C_1min.csv", body.encode("utf-16"))  # BOM first
    engine = engine_for(sqlite_url)
    reports = [ingest_file(engine, p) for p in (plain, utf8_bom, utf16)]
    assert [(r.read, r.stored, r.quarantined) for r in reports] == [(2, 2, 0)] * 3
    bars = read_bars(engine, ["A", "B", "C"], 0, 2**40)
    values = [bars.loc[bars["symbol"] == s].drop(columns="symbol").values.tolist() for s in "ABC"]
    assert values[0] == values[1] == values[2]


# ---------------------------------------------------------------------------- rows
#: One row per quarantine reason of the import contract (read with --tz America/New_York).
REASON_ROWS = {
    "line_too_long": "2023-07-10 09:30:00,1,1,1,1," + "9" * 5_000,
    "wrong_field_count": "2023-07-10 09:31:00,1,1,1",
    "missing_value": "2023-07-10 09:32:00,,1,1,1,1",
    "unparseable_timestamp": "yesterday at ten,1,1,1,1,1",
    "date_only_timestamp": "2023-07-11,1,1,1,1,1",  # a daily bar: never a midnight minute
    "non_numeric": "2023-07-10 09:33:00,abc,1,1,1,1",
    "nonexistent_local_time": "2023-03-12 02:30:00,1,1,1,1,1",  # clocks jump 02:00 -> 03:00
    "ambiguous_local_time": "2023-11-05 01:30:00,1,1,1,1,1",  # 01:00-02:00 happens twice
    "not_whole_minute": "2023-07-10 09:34:30,1,1,1,1,1",
    "timestamp_in_future": "2999-01-04 10:00:00,1,1,1,1,1",
    "price_not_positive": "2023-07-10 09:35:00,0,1,1,1,1",
    "negative_volume": "2023-07-10 09:36:00,1,1,1,1,-5",
    "implausible_value": "2023-07-10 09:43:00,1,1,1,1,1e308",  # overflowed every sum (issue 16)
    "high_below_low": "2023-07-10 09:37:00,1,1,2,1,1",
    "high_below_open_close": "2023-07-10 09:38:00,2,1.5,1,1,1",
    "low_above_open_close": "2023-07-10 09:39:00,1,2,1.5,2,1",
    "conflicting_duplicate": "2023-07-10 09:40:00,1,1,1,1,1\n2023-07-10 09:40:00,2,2,2,2,2",
}
GOOD_ROWS = [
    "2023-07-10 09:41:00,10,11,9,10.5,100",
    "2023-07-10 09:41:00,10,11,9,10.5,100",  # exact duplicate of the line above: skipped
    "2023-07-10 09:42:00,10.5,11,10,10.8,50",
]


def test_every_quarantine_reason_is_recorded_with_its_line(tmp_path: Path, sqlite_url: str) -> None:
    file_reasons = set(REASONS) - {"conflicts_with_stored"}  # a store-time reason, tested apart
    assert set(REASON_ROWS) == file_reasons, "the catalogue covers the import contract"
    rows = [(row, reason) for reason, text in REASON_ROWS.items() for row in text.split("\n")]
    rows += [(row, None) for row in GOOD_ROWS]
    body = HEADER + "".join(f"{row}\n" for row, _ in rows)
    path = _write(tmp_path, "ROWS_1min.csv", body.encode())
    code, out, err = cli("import", str(path), "--tz", "America/New_York", "--json",
                         "--db", sqlite_url)  # fmt: skip
    assert code == 0, err
    report = json.loads(out)["files"][0]
    expected = {line: reason for line, (_, reason) in enumerate(rows, start=2) if reason}
    stored = read_quarantine(engine_for(sqlite_url), str(path.resolve()))
    assert dict(zip(stored["line"], stored["reason"], strict=True)) == expected
    assert bar_count(sqlite_url) == report["stored"] == 2
    assert report["read"] == len(rows)
    assert report["read"] == report["stored"] + report["quarantined"] + report["skipped"]
    assert report["quarantined"] == len(stored) == len(file_reasons) + 1
    assert report["skipped"] == 1


def test_mixed_offsets_land_on_the_same_utc_minutes(tmp_path: Path, sqlite_url: str) -> None:
    rows = [
        "2023-07-10T09:30:00-04:00,10,11,9,10.5,100",  # New York summer time
        "2023-07-10 13:31:00Z,10.5,11,10,10.8,50",
        "2023-07-10 15:32:00+02:00,10.8,11,10,10.9,70",  # Paris
        "2023-07-10 13:33:00,10.9,11,10,11,80",  # naive: --tz UTC
        "2023-07-10 13:30:00+00:00,10,11,9,10.5,100",  # the first row again: skipped
    ]
    path = _write(tmp_path, "MIX_1min.csv", (HEADER + "\n".join(rows) + "\n").encode())
    report = ingest_file(engine_for(sqlite_url), path)
    assert (report.read, report.stored, report.quarantined, report.skipped) == (5, 4, 0, 1)
    bars = read_bars(engine_for(sqlite_url), ["MIX"], 0, 2**40)
    assert bars["ts"].tolist() == [1688995800 + 60 * i for i in range(4)]  # 13:30-13:33 UTC


def test_timestamps_far_in_the_future_are_quarantined(tmp_path: Path, sqlite_url: str) -> None:
    rows = [GOOD.strip(), "2999-12-31 23:59:00,1,1,1,1,1", "9999-01-01 00:00:00,1,1,1,1,1"]
    path = _write(tmp_path, "FUT_1min.csv", (HEADER + "\n".join(rows) + "\n").encode())
    report = ingest_file(engine_for(sqlite_url), path)
    assert report.reasons == {"timestamp_in_future": 2}
    assert (report.read, report.stored) == (3, 1)


# ---------------------------------------------------------------------------- parameters
@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("bad_input_store")
    url = f"sqlite:///{folder / 'store.db'}"
    engine = engine_for(url)
    init_db(engine)
    for path in sorted(SAMPLE_DIR.glob("*_1min_*.csv")):
        ingest_file(engine, path)
    return url


REPLAY = ("replay", "--symbols", "MSFT", "--start", "2023-07-10", "--json")
PARAMETER_CASES = {
    # case: (arguments, extra environment, words the one-line reason must hold)
    "unknown_symbol": (("replay", "--symbols", "NOPE", "--start", "2023-07-10"), {},
                       ("NOPE not in the repository",)),
    "end_before_start": (("replay", "--symbols", "MSFT", "--start", "2023-07-12",
                          "--end", "2023-07-10"), {}, ("before start",)),
    "no_sessions_in_range": (("replay", "--symbols", "MSFT", "--start", "2023-07-08",
                              "--end", "2023-07-09"), {}, ("no XNYS session",)),
    "negative_rate": ((*REPLAY, "--drop-rate", "-0.5"), {}, ("drop_rate", "-0.5")),
    "rate_above_one": ((*REPLAY, "--corrupt-rate", "1.5"), {}, ("corrupt_rate",)),
    "unknown_calendar": (REPLAY, {"BARKEEPER_CALENDAR": "NOPE"}, ("calendar", "NOPE")),
    "bad_speed_word": ((*REPLAY, "--speed", "fast"), {}, ("speed", "fast")),
    "zero_speed": ((*REPLAY, "--speed", "0x"), {}, ("speed", "0x")),
    "impossible_outage": ((*REPLAY, "--outage", "25:00-26:00"), {}, ("outages",)),
    "outage_ends_before_start": ((*REPLAY, "--outage", "11:00-10:00"), {},
                                 ("must start before it ends",)),
    "bad_date": (("replay", "--symbols", "MSFT", "--start", "2023-13-01"), {}, ("--start",)),
    "bad_derived": ((*REPLAY, "--derived", "5,abc"), {}, ("--derived",)),
    "zero_interval": ((*REPLAY, "--interval", "0"), {}, ("interval_seconds",)),
    "bad_fill_policy": ((*REPLAY, "--fill-policy", "zero"), {}, ("fill_policy",)),
    "missing_option": (("replay", "--start", "2023-07-10"), {}, ("--symbols",)),
    "unknown_option": ((*REPLAY, "--turbo"), {}, ("--turbo",)),
    "unknown_run": (("report", "--run", "no-such-run"), {}, ("no-such-run",)),
    "bad_store_url": ((*REPLAY, "--db", "not a url"), {}, ("--db",)),
    "malformed_store_url": ((*REPLAY, "--db", "postgresql://bk:s3cr3t-pw@host:1:2/bk"), {},
                            ("--db", "bk:***@host")),
    "unsupported_store": ((*REPLAY, "--db", "oracle://bk:s3cr3t-pw@host/bk"), {},
                          ("unsupported database", "bk:***@host")),
    "unreachable_store": ((*REPLAY, "--db", "postgresql://bk:s3cr3t-pw@127.0.0.1:1/bk"), {},
                          ("cannot be reached (connection failed",)),
}  # fmt: skip


#: Cases that get as far as the store or Prefect's import: run by the real console script.
IN_A_PROCESS = ("unknown_symbol", "zero_speed")  # got as far as a Prefect task before


@pytest.fixture(scope="module")
def process_outcomes(
    sample_store: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str, str]]:
    """The deep cases run by the real `barkeeper` script, all processes started at once."""
    home = tmp_path_factory.mktemp("prefect_home")
    base = {
        **os.environ,
        "BARKEEPER_DATABASE_URL": sample_store,
        "BARKEEPER_REPORTS_DIR": str(home / "reports"),
        "PREFECT_HOME": str(home),
        "COLUMNS": "200",
    }
    running = {
        case: subprocess.Popen(
            [str(BARKEEPER), *PARAMETER_CASES[case][0]],
            env={**base, **PARAMETER_CASES[case][1]},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case in IN_A_PROCESS
    }
    return {
        case: (process.returncode, *process.communicate(timeout=180))
        if process.wait(timeout=180) is not None
        else (-1, "", "")
        for case, process in running.items()
    }


@pytest.mark.parametrize("case", PARAMETER_CASES)
def test_bad_parameter_is_one_line_exit_2(
    case: str, sample_store: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, env, needles = PARAMETER_CASES[case]
    if case in IN_A_PROCESS:
        code, out, err = request.getfixturevalue("process_outcomes")[case]
    else:
        monkeypatch.setenv("BARKEEPER_DATABASE_URL", sample_store)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code, out, err = cli(*args)
    line = assert_one_line_error(code, err, *needles)
    assert out == ""
    assert "s3cr3t-pw" not in line  # a store URL's password never appears in a message
    with engine_for(sample_store).connect() as conn:  # nothing was started
        assert conn.execute(text("SELECT count(*) FROM run")).scalar_one() == 0
