"""Vendor files as they really arrive: each layout, written from the real sample bars, must fill
the repository exactly as the same bars written in ISO form do, and the report names its format.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAMPLE_DIR
from typer.testing import CliRunner

from barkeeper.cli.main import app
from models.engine import engine_for
from models.repository import read_bars

ALL_TIME = (0, 2**40)
NY = "America/New_York"
SAMPLES = {p.name.split("_")[0]: p for p in sorted(SAMPLE_DIR.glob("*_1min_*.csv"))}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def sample(symbol: str) -> pd.DataFrame:
    """The sample file with its stamps as UTC datetimes (the ISO original)."""
    frame = pd.read_csv(SAMPLES[symbol])
    return frame.assign(timestamp=pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC"))


def iso_store(symbol: str, tmp_path: Path) -> pd.DataFrame:
    """The repository's bars after importing the ISO original."""
    url = f"sqlite:///{tmp_path / 'iso.db'}"
    code, _, err = run("import", str(SAMPLES[symbol]), "--db", url)
    assert code == 0, err
    return read_bars(engine_for(url), [symbol], *ALL_TIME)


def local(stamps: pd.Series) -> pd.Series:
    return stamps.dt.tz_convert(NY)


def no_pad(stamps: pd.Series, clock: str) -> pd.Series:
    """Excel's US form: month, day and hour without leading zeros."""
    return (
        stamps.dt.month.astype(str) + "/" + stamps.dt.day.astype(str) + "/"
        + stamps.dt.year.astype(str) + " " + stamps.dt.hour.astype(str) + stamps.dt.strftime(clock)
    )  # fmt: skip


def epoch(unit: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def write(f: pd.DataFrame) -> pd.DataFrame:
        ticks = (f["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1) * unit
        return f.assign(timestamp=ticks)

    return write


def date_time_columns(f: pd.DataFrame) -> pd.DataFrame:
    """Kibot / FirstRate: separate Date and Time columns, exchange time."""
    stamps = local(f["timestamp"])
    out = f.drop(columns="timestamp")
    out.insert(0, "Time", stamps.dt.strftime("%H:%M"))
    out.insert(0, "Date", stamps.dt.strftime("%m/%d/%Y"))
    return out


#: layout: (how to write the sample, file suffix, extra import flags, the format the report names)
LAYOUTS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], list[str], str]] = {
    "us_minutes": (
        lambda f: f.assign(timestamp=no_pad(local(f["timestamp"]), ":%M")).rename(
            columns={"timestamp": "Date"}
        ),
        ["--tz", NY],
        f"%m/%d/%Y %H:%M, {NY}, label=open",
    ),
    "us_seconds": (
        lambda f: f.assign(timestamp=no_pad(local(f["timestamp"]), ":%M:%S")),
        ["--tz", NY],
        f"%m/%d/%Y %H:%M:%S, {NY}, label=open",
    ),
    "compact": (
        lambda f: f.assign(timestamp=f["timestamp"].dt.strftime("%Y%m%d %H%M%S")).rename(
            columns={"timestamp": "DateTime"}
        ),
        [],
        "%Y%m%d %H%M%S, UTC, label=open",
    ),
    "dotted": (
        lambda f: f.assign(timestamp=f["timestamp"].dt.strftime("%Y.%m.%d %H:%M")).rename(
            columns={"timestamp": "time"}
        ),
        [],
        "%Y.%m.%d %H:%M, UTC, label=open",
    ),
    "epoch_s": (epoch(1), [], "epoch s, UTC, label=open"),
    "epoch_ms": (epoch(1_000), [], "epoch ms, UTC, label=open"),
    "epoch_us": (epoch(1_000_000), [], "epoch us, UTC, label=open"),
    "epoch_ns": (epoch(1_000_000_000), [], "epoch ns, UTC, label=open"),
    "date_and_time": (
        date_time_columns,
        ["--tz", NY],
        f"%m/%d/%Y %H:%M (columns Date + Time), {NY}, label=open",
    ),
    "aliases_shuffled": (
        lambda f: f.assign(timestamp=f["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))[
            ["volume", "close", "timestamp", "low", "open", "high"]
        ].rename(columns={"volume": "Vol", "close": "C", "low": "L", "open": "O", "high": "H"}),
        [],
        "ISO 8601, UTC, label=open",
    ),
}


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("symbol", ["MSFT", "DBB"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_fills_the_repository_as_the_iso_file(
    layout: str, symbol: str, tmp_path: Path
) -> None:
    expected = iso_store(symbol, tmp_path)
    make, flags, described = LAYOUTS[layout]
    path = write(make(sample(symbol)), tmp_path / f"{layout}.csv")
    url = f"sqlite:///{tmp_path / 'layout.db'}"
    code, out, err = run("import", str(path), "--symbol", symbol, *flags, "--db", url)
    assert code == 0, err
    assert f"stamps: {described}" in out
    pd.testing.assert_frame_equal(read_bars(engine_for(url), [symbol], *ALL_TIME), expected)
    code, out, _ = run("import", str(path), "--symbol", symbol, *flags, "--db", url, "--json")
    (report,) = json.loads(out)["files"]
    assert report["format"] == described
    assert (report["read"], report["stored"], report["skipped"]) == (
        len(expected),
        0,
        len(expected),
    )


def gzipped(source: Path, folder: Path) -> Path:
    path = folder / "MSFT_1min.csv.gz"
    path.write_bytes(gzip.compress(source.read_bytes()))
    return path


def zipped(source: Path, folder: Path) -> Path:
    path = folder / "MSFT_1min.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(source, arcname=source.name)
    return path


@pytest.mark.parametrize("pack", [gzipped, zipped])
def test_compressed_files_are_read_directly(pack: Callable, tmp_path: Path) -> None:
    expected = iso_store("MSFT", tmp_path)
    url = f"sqlite:///{tmp_path / 'packed.db'}"
    code, _, err = run("import", str(pack(SAMPLES["MSFT"], tmp_path)), "--db", url)
    assert code == 0, err
    pd.testing.assert_frame_equal(read_bars(engine_for(url), ["MSFT"], *ALL_TIME), expected)


def test_a_zip_of_two_files_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "TWO_1min.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(SAMPLES["MSFT"], arcname="a.csv")
        archive.write(SAMPLES["DBB"], arcname="b.csv")
    code, _, err = run("import", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2 and err.count("\n") == 1
    assert "exactly one CSV" in err and "a.csv, b.csv" in err


def test_index_file_without_volume_is_stored_with_zero_and_flagged(tmp_path: Path) -> None:
    """The issue's index file: `Date,Open,Close,High,Low` with US stamps, no volume."""
    frame = sample("DBB")
    stamps = no_pad(local(frame["timestamp"]), ":%M")
    prices = {c.title(): frame[c] for c in ("open", "close", "high", "low")}
    index = pd.DataFrame({"Date": stamps, **prices})
    path = write(index, tmp_path / "IDX_1min.csv")
    url = f"sqlite:///{tmp_path / 'idx.db'}"
    code, out, err = run("import", str(path), "--tz", NY, "--db", url, "--json")
    assert code == 0, err
    (report,) = json.loads(out)["files"]
    assert report["stored"] == len(frame) and report["quarantined"] == 0
    assert any("no volume column" in w for w in report["warnings"])
    expected = iso_store("DBB", tmp_path).assign(symbol="IDX", volume=0.0)
    pd.testing.assert_frame_equal(read_bars(engine_for(url), ["IDX"], *ALL_TIME), expected)


def test_forced_iso_on_us_stamps_names_the_fix_and_strict_exits_2(tmp_path: Path) -> None:
    frame = sample("MSFT")
    us = frame.assign(timestamp=no_pad(local(frame["timestamp"]), ":%M"))
    path = write(us, tmp_path / "US_1min.csv")
    url = f"sqlite:///{tmp_path / 'us.db'}"
    code, out, err = run("import", str(path), "--timestamp-format", "iso8601", "--db", url)
    assert code == 0, err
    first = us["timestamp"].iloc[0]
    assert (
        f"{len(us):,} of {len(us):,} rows quarantined unparseable_timestamp: timestamps like "
        f"'{first}' are not ISO 8601: pass --timestamp-format '%m/%d/%Y %H:%M'"
    ) in out
    code, _, err = run("import", str(path), "--timestamp-format", "iso8601", "--strict",
                       "--db", url)  # fmt: skip
    assert code == 2 and "quarantined (--strict)" in err and "Traceback" not in err


def test_ambiguous_day_month_is_refused_with_both_readings(tmp_path: Path) -> None:
    frame = sample("MSFT")
    first_days = frame[frame["timestamp"].dt.day <= 12]  # 10 and 11 July: either order reads
    european = first_days.assign(timestamp=first_days["timestamp"].dt.strftime("%d/%m/%Y %H:%M"))
    path = write(european, tmp_path / "EU_1min.csv")
    url = f"sqlite:///{tmp_path / 'eu.db'}"
    code, _, err = run("import", str(path), "--db", url)
    assert code == 2 and err.count("\n") == 1
    assert "ambiguous day/month" in err
    assert "2023-10-07 (%m/%d/%Y %H:%M) or 2023-07-10 (%d/%m/%Y %H:%M)" in err
    code, _, err = run("import", str(path), "--timestamp-format", "%d/%m/%Y %H:%M", "--db", url)
    assert code == 0, err
    bars = read_bars(engine_for(url), ["EU"], *ALL_TIME)
    assert (
        bars["ts"].tolist()
        == (
            (first_days["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        ).tolist()
    )


def test_date_only_stamps_are_quarantined_never_midnight_bars(tmp_path: Path) -> None:
    daily = pd.DataFrame({"Date": ["2023-07-10", "2023-07-11", "2023-07-12"], "Open": 1.0,
                          "High": 2.0, "Low": 0.5, "Close": 1.5, "Volume": 10})  # fmt: skip
    path = write(daily, tmp_path / "DAY_1d.csv")
    url = f"sqlite:///{tmp_path / 'day.db'}"
    code, out, err = run("import", str(path), "--db", url, "--json")
    assert code == 0, err
    (report,) = json.loads(out)["files"]
    assert report["reasons"] == {"date_only_timestamp": 3} and report["stored"] == 0
    assert any("daily file" in w for w in report["warnings"])
    assert read_bars(engine_for(url), ["DAY"], *ALL_TIME).empty


def close_stamped(tmp_path: Path) -> Path:
    """The MSFT sample as a vendor that labels each bar with its end writes it."""
    frame = sample("MSFT")
    shifted = frame["timestamp"] + pd.Timedelta(minutes=1)
    return write(frame.assign(timestamp=shifted.dt.strftime("%Y-%m-%d %H:%M:%S")),
                 tmp_path / "MSFT_close.csv")  # fmt: skip


def test_close_stamped_file_with_stamp_close_equals_the_open_stamped(tmp_path: Path) -> None:
    expected = iso_store("MSFT", tmp_path)
    url = f"sqlite:///{tmp_path / 'close.db'}"
    code, out, err = run("import", str(close_stamped(tmp_path)), "--stamp", "close", "--db", url)
    assert code == 0, err
    assert "stamps: ISO 8601, UTC, label=close" in out and "warning" not in out
    pd.testing.assert_frame_equal(read_bars(engine_for(url), ["MSFT"], *ALL_TIME), expected)


def test_close_stamped_file_without_the_flag_is_warned_about(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'close.db'}"
    code, out, err = run("import", str(close_stamped(tmp_path)), "--db", url)
    assert code == 0, err
    assert "may label the bar's close" in out and "--stamp close" in out
    code, out, _ = run("import", str(SAMPLES["MSFT"]), "--db", url)  # open-stamped: quiet
    assert "warning" not in out
    code, out, _ = run("import", str(SAMPLES["MSFT"]), "--stamp", "close", "--db", url)
    assert "may label the bar's open" in out


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--stamp", "middle"], "--stamp: 'middle' must be open or close"),
        (["--on-conflict", "merge"], "--on-conflict: 'merge' must be replace, keep or quarantine"),
        (["--timestamp-format", "nonsense"], "--timestamp-format: 'nonsense' is not a format"),
    ],
)
def test_bad_vendor_flags_are_one_line_before_any_read(
    flags: list[str], needle: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'flags.db'}"
    code, _, err = run("import", str(SAMPLES["DBB"]), *flags, "--db", url)
    assert code == 2 and err.startswith(f"barkeeper: error: {needle}")
    assert err.count("\n") == 1 and not (tmp_path / "flags.db").exists()


@pytest.mark.parametrize("layout", ["us_minutes", "date_and_time", "epoch_ms", "compact"])
def test_two_years_of_real_bars_across_dst_in_vendor_layouts(
    layout: str, real_dir: Path, tmp_path: Path
) -> None:
    """The 2-year DBB file (every DST change of 2023-2025 in New York time) in vendor layouts."""
    source = next(real_dir.glob("DBB_1min_*.csv"))
    url_iso = f"sqlite:///{tmp_path / 'iso.db'}"
    assert run("import", str(source), "--symbol", "DBB", "--db", url_iso)[0] == 0
    frame = pd.read_csv(source)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC")
    make, flags, described = LAYOUTS[layout]
    path = write(make(frame), tmp_path / f"{layout}.csv")
    url = f"sqlite:///{tmp_path / 'layout.db'}"
    code, out, err = run("import", str(path), "--symbol", "DBB", *flags, "--db", url)
    assert code == 0, err
    assert f"stamps: {described}" in out
    pd.testing.assert_frame_equal(
        read_bars(engine_for(url), ["DBB"], *ALL_TIME),
        read_bars(engine_for(url_iso), ["DBB"], *ALL_TIME),
    )
