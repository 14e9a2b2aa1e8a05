"""Ingest: parsing, row checks and counts, against pandas as the oracle and the real store."""

from __future__ import annotations

import bz2
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_DIR, TEST_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from barkeeper.errors import InputFileError, ParameterError
from barkeeper.ingest.files import REASONS, ingest_file, parse_file, symbol_from_path
from models.engine import engine_for
from models.repository import read_bars, read_quarantine
from models.revisions import read_revisions
from models.tables import Bar, IngestedFile

DATA = TEST_DATA
SAMPLES = sorted(SAMPLE_DIR.glob("*_1min_*.csv"))
ALL_TIME = (0, 2**40)


def oracle(path: Path, symbol: str) -> pd.DataFrame:
    """What a clean vendor file holds, computed with pandas alone."""
    frame = pd.read_csv(path)
    stamps = pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC")
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1),
            **{c: frame[c].astype(float) for c in PRICE_COLUMNS},
        }
    )


def assert_bars_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    actual = actual.drop(columns="line", errors="ignore")  # parse_file's bars name their line
    actual = actual.sort_values(["symbol", "ts"], ignore_index=True)
    expected = expected.sort_values(["symbol", "ts"], ignore_index=True)
    assert list(actual.columns) == list(BAR_COLUMNS)
    assert actual["symbol"].tolist() == expected["symbol"].tolist()
    np.testing.assert_array_equal(actual["ts"].to_numpy(np.int64), expected["ts"].to_numpy())
    for c in PRICE_COLUMNS:
        np.testing.assert_array_equal(actual[c].to_numpy(), expected[c].to_numpy(float))


def test_sample_is_the_documented_slice() -> None:
    """Three symbols, the same four UTC dates, sizes as the sample README states."""
    assert [p.name.split("_")[0] for p in SAMPLES] == ["DBB", "FXY", "MSFT"]
    rows = {p.name.split("_")[0]: len(pd.read_csv(p)) for p in SAMPLES}
    assert rows == {"DBB": 377, "FXY": 411, "MSFT": 2644}
    for path in SAMPLES:
        dates = pd.to_datetime(pd.read_csv(path)["timestamp"]).dt.date.astype(str)
        assert sorted(dates.unique()) == ["2023-07-10", "2023-07-11", "2023-07-12", "2023-07-13"]
    assert sum(p.stat().st_size for p in SAMPLE_DIR.iterdir()) < 400_000


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name.split("_")[0])
def test_sample_parses_exactly(path: Path) -> None:
    parsed = parse_file(path)
    symbol = path.name.split("_")[0]
    assert (parsed.symbol, parsed.read, parsed.skipped, len(parsed.quarantine)) == (
        symbol,
        len(pd.read_csv(path)),
        0,
        0,
    )
    assert_bars_equal(parsed.bars, oracle(path, symbol))
    assert parsed.bars["ts"].is_monotonic_increasing


def test_real_files_import_then_reimport_changes_nothing(db_url: str, real_dir: Path) -> None:
    engine = engine_for(db_url)
    files = sorted(real_dir.glob("*.csv"))
    first = [ingest_file(engine, f) for f in files]
    assert [(r.symbol, r.stored, r.quarantined, r.skipped) for r in first] == [
        (f.name.split("_")[0], len(pd.read_csv(f)), 0, 0) for f in files
    ]
    before = read_bars(engine, ["DBB", "FXY", "MSFT"], *ALL_TIME)
    second = [ingest_file(engine, f) for f in files]
    assert [(r.stored, r.quarantined, r.skipped) for r in second] == [(0, 0, r.read) for r in first]
    after = read_bars(engine, ["DBB", "FXY", "MSFT"], *ALL_TIME)
    pd.testing.assert_frame_equal(before, after)
    assert len(after) == sum(r.read for r in first)
    oracle_bars = pd.concat([oracle(f, f.name.split("_")[0]) for f in files])
    assert_bars_equal(after, oracle_bars)


def test_every_bad_row_class_lands_in_quarantine(db_url: str) -> None:
    engine = engine_for(db_url)
    msft = next(p for p in SAMPLES if p.name.startswith("MSFT"))
    ingest_file(engine, msft)
    msft_before = read_bars(engine, ["MSFT"], *ALL_TIME)
    path = DATA / "every_bad_row.csv"
    lines = path.read_text().splitlines()
    report = ingest_file(engine, path, symbol="BAD")
    expected = {
        3: "wrong_field_count",
        4: "missing_value",
        5: "unparseable_timestamp",
        6: "non_numeric",
        7: "not_whole_minute",
        8: "timestamp_in_future",
        9: "price_not_positive",
        10: "negative_volume",
        11: "high_below_low",
        12: "high_below_open_close",
        13: "low_above_open_close",
        14: "conflicting_duplicate",  # both versions of 13:42 (see barkeeper.ingest.files)
        15: "conflicting_duplicate",
    }
    assert (report.read, report.stored, report.quarantined, report.skipped) == (15, 1, 13, 1)
    assert report.read == report.stored + report.quarantined + report.skipped
    assert report.reasons == {
        r: list(expected.values()).count(r) for r in REASONS if r in expected.values()
    }
    quarantine = read_quarantine(engine, str(path.resolve()))
    assert dict(zip(quarantine["line"], quarantine["reason"], strict=True)) == expected
    assert quarantine["raw"].tolist() == [lines[n - 1] for n in expected]
    assert set(quarantine["symbol"]) == {"BAD"}
    stored = read_bars(engine, ["BAD"], *ALL_TIME)
    assert stored[list(PRICE_COLUMNS)].values.tolist() == [[10.0, 11.0, 9.0, 10.5, 100.0]]
    pd.testing.assert_frame_equal(read_bars(engine, ["MSFT"], *ALL_TIME), msft_before)
    again = ingest_file(engine, path, symbol="BAD")
    assert (again.stored, again.quarantined, again.skipped) == (0, 13, 2)
    assert len(read_quarantine(engine)) == 13  # replaced, not doubled
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Bar)).scalar() == 2644 + 1
        assert conn.execute(select(func.count()).select_from(IngestedFile)).scalar() == 3


def test_vendor_revision_replaces_the_bar_and_keeps_the_old(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = engine_for(sqlite_url)
    path = tmp_path / "ABC_1min.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2023-07-10 13:30:00,1,2,1,2,5\n"
                    "2023-07-10 13:31:00,2,2,2,2,5\n")  # fmt: skip
    ingest_file(engine, path)
    path.write_text("timestamp,open,high,low,close,volume\n2023-07-10 13:30:00,1,2,1,1.5,5\n"
                    "2023-07-10 13:31:00,2,2,2,2,5\n")  # fmt: skip
    report = ingest_file(engine, path)
    assert (report.read, report.stored, report.revised, report.skipped) == (2, 0, 1, 1)
    assert read_bars(engine, ["ABC"], *ALL_TIME)["close"].tolist() == [1.5, 2.0]
    assert read_revisions(engine, "ABC", *ALL_TIME)["close"].tolist() == [2.0]


def test_columns_in_any_order_and_case_with_bom_and_crlf() -> None:
    parsed = parse_file(DATA / "bom_crlf_shuffled.csv", symbol="DBB")
    dbb = next(p for p in SAMPLES if p.name.startswith("DBB"))
    assert_bars_equal(parsed.bars, oracle(dbb, "DBB").iloc[:3])
    assert (parsed.read, len(parsed.quarantine), parsed.skipped) == (3, 0, 0)


def test_naive_timestamps_take_the_time_zone() -> None:
    parsed = parse_file(DATA / "new_york_naive.csv", symbol="NY", tz="America/New_York")
    local = pd.to_datetime(["2023-07-10 09:30", "2023-12-11 09:30", "2023-11-05 00:30"])
    expected = local.tz_localize("America/New_York").tz_convert("UTC").as_unit("s").asi8
    assert sorted(parsed.bars["ts"].tolist()) == sorted(expected.tolist())
    assert parsed.bars["ts"].tolist()[0] == pd.Timestamp("2023-07-10 13:30", tz="UTC").timestamp()
    assert dict(zip(parsed.quarantine["line"], parsed.quarantine["reason"], strict=True)) == {
        4: "nonexistent_local_time",  # 02:30 on the day DST starts
        5: "ambiguous_local_time",  # 01:30 on the day DST ends
    }


def test_aware_timestamps_are_converted_whatever_the_tz_flag() -> None:
    utc = parse_file(DATA / "aware_offsets.csv", symbol="OFF")
    start = pd.Timestamp("2023-07-10 13:30", tz="UTC").timestamp()
    assert utc.bars["ts"].tolist() == [start + 60 * i for i in range(5)]
    local = parse_file(DATA / "aware_offsets.csv", symbol="OFF", tz="America/New_York")
    naive_row = start + 4 * 60 + 4 * 3600  # 13:34 New York time is 17:34 UTC
    assert local.bars["ts"].tolist() == [start + 60 * i for i in range(4)] + [naive_row]


def test_unknown_time_zone_is_a_parameter_error() -> None:
    with pytest.raises(ParameterError, match="--tz: unknown time zone 'Mars/Olympus'"):
        parse_file(SAMPLES[0], tz="Mars/Olympus")


@pytest.mark.parametrize("aware", [False, True], ids=["naive", "aware"])
def test_parquet_matches_csv(tmp_path: Path, aware: bool) -> None:
    msft = next(p for p in SAMPLES if p.name.startswith("MSFT"))
    frame = pd.read_csv(msft)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    if aware:
        frame["timestamp"] = frame["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
    frame.loc[5, "close"] = np.nan
    path = tmp_path / "MSFT_1min.parquet"
    frame[["close", "volume", "timestamp", "open", "high", "low"]].to_parquet(path)
    parsed = parse_file(path)
    assert_bars_equal(parsed.bars, oracle(msft, "MSFT").drop(index=5))
    assert parsed.quarantine[["line", "reason"]].values.tolist() == [[6, "missing_value"]]


def test_parquet_sniffed_whatever_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "XYZ_bars.dat"
    pd.DataFrame({"Timestamp": ["2023-07-10 13:30:00"], "Open": [1.0], "High": [1.0],
                  "Low": [1.0], "Close": [1.0], "Volume": [3.0]}).to_parquet(path)  # fmt: skip
    assert parse_file(path).bars["ts"].tolist() == [1688995800]


def test_parquet_with_the_timestamps_as_index(tmp_path: Path) -> None:
    msft = next(p for p in SAMPLES if p.name.startswith("MSFT"))
    frame = pd.read_csv(msft, index_col="timestamp", parse_dates=True)
    path = tmp_path / "MSFT.parquet"
    frame.to_parquet(path)
    assert_bars_equal(parse_file(path).bars, oracle(msft, "MSFT"))


UNREADABLE = {
    "missing": (None, "no such file"),
    "empty": (b"", "empty file"),
    "header_only": ((DATA / "header_only.csv").read_bytes(), "header only"),
    "missing_columns": ((DATA / "missing_columns.csv").read_bytes(), "missing column(s) high"),
    "semicolons": ((DATA / "semicolon.csv").read_bytes(), "separated by semicolons"),
    "binary": (bytes(range(256)) * 4, "binary content"),
    "bzip2": (bz2.compress((DATA / "aware_offsets.csv").read_bytes()), "bzip2-compressed"),
    "latin1": ("timestamp,open,high,low,close,volume\n\u00e9t\u00e9".encode("latin-1"), "UTF-8"),
    "fake_parquet": (b"timestamp,open\n", "not a Parquet file"),
    "duplicate_column": (b"timestamp,open,OPEN,high,low,close,volume\n", "more than once"),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_unreadable_files_raise_one_line(tmp_path: Path, case: str) -> None:
    content, message = UNREADABLE[case]
    path = tmp_path / ("X_1min.parquet" if case == "fake_parquet" else "X_1min.csv")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputFileError) as error:
        parse_file(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_unreadable_file_is_recorded_as_rejected(sqlite_url: str, tmp_path: Path) -> None:
    engine = engine_for(sqlite_url)
    path = tmp_path / "E_1min.csv"
    path.write_bytes(b"")
    with pytest.raises(InputFileError):
        ingest_file(engine, path)
    with engine.connect() as conn:
        status, reason = conn.execute(select(IngestedFile.status, IngestedFile.reason)).one()
    assert status == "rejected" and "empty file" in reason


def test_huge_line_is_quarantined_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "H_1min.csv"
    path.write_text("timestamp,open,high,low,close,volume\n" + "9" * 100_000 + "\n"
                    "2023-07-10 13:30:00,1,1,1,1,1\n")  # fmt: skip
    parsed = parse_file(path)
    assert parsed.quarantine[["line", "reason"]].values.tolist() == [[2, "line_too_long"]]
    assert len(parsed.quarantine["raw"][0]) < 5_000
    assert len(parsed.bars) == 1


def test_symbol_from_file_name_and_validation() -> None:
    assert symbol_from_path(Path("DBB_1min_2023-07-10_to_2025-07-08.csv")) == "DBB"
    # only the part before the first _ or . (issue 16): BRK.B needs --symbol BRK.B
    assert symbol_from_path(Path("/x/BRK.B.csv")) == "BRK"
    with pytest.raises(ParameterError, match="is not a ticker symbol"):
        parse_file(SAMPLES[0], symbol="A,B")
    with pytest.raises(ParameterError, match="pass --symbol"):
        symbol_from_path(Path("my bars.csv"))


CELL = st.one_of(
    st.sampled_from(["", "nan", "abc", "-1", "0", "1", "2", "2.5", "100", "1e3", "inf"]),
    st.integers(-5, 1000).map(str),
)
STAMP = st.one_of(
    st.sampled_from(["2023-07-10 13:30:00", "2023-07-10 13:30:30", "bad", "", "2999-01-01"]),
    st.integers(0, 30).map(lambda m: f"2023-07-10 13:{m:02d}:00"),
)
ROW = st.tuples(STAMP, CELL, CELL, CELL, CELL, CELL).map(",".join)
NOISE = st.text(string.printable.replace("\r", "").replace("\n", ""), max_size=12)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.one_of(ROW, ROW, NOISE), min_size=1, max_size=40))
def test_counts_always_add_up_and_stored_bars_pass_every_check(
    tmp_path: Path, rows: list[str]
) -> None:
    path = tmp_path / "P_1min.csv"
    path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    try:
        parsed = parse_file(path)
    except InputFileError:
        assert not any(r.strip() for r in rows)  # only a file without data rows is refused
        return
    assert parsed.read == sum(1 for r in rows if r.strip())
    assert parsed.read == len(parsed.bars) + len(parsed.quarantine) + parsed.skipped
    assert set(parsed.quarantine["reason"]) <= set(REASONS)
    bars = parsed.bars
    assert bars["ts"].is_unique and (bars["ts"] % 60 == 0).all()
    assert (bars[["open", "high", "low", "close"]] > 0).all().all() and (bars["volume"] >= 0).all()
    assert (bars["high"] >= bars[["open", "close", "low"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
