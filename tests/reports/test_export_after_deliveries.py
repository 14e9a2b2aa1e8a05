"""A run's export after a later delivery of the same file: the run's bars as it read them.

Real imports (`barkeeper import`), a real replay (Prefect test harness), real SQLite and
PostgreSQL stores. Oracles: the run's own export taken before the delivery, and the two
delivered files.
"""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAMPLE_DIR
from sqlalchemy import text
from typer.testing import CliRunner

from barkeeper.cli.main import app
from barkeeper.params import ReplayParameters
from models.engine import engine_for

SESSION = date(2023, 7, 10)
MSFT = SAMPLE_DIR / "MSFT_1min_2023-07-10_to_2023-07-13.csv"
INTERVALS = (1, 5, 1440)


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def deliver(path: Path, frame: pd.DataFrame, url: str) -> dict:
    """Write a delivery under `path` and import it; the counts must add up."""
    frame.to_csv(path, index=False)
    code, out, err = cli("import", str(path), "--symbol", "MSFT", "--json", "--db", url)
    assert code == 0, err
    (report,) = json.loads(out)["files"]
    assert report["read"] == (
        report["stored"] + report["revised"] + report["quarantined"] + report["skipped"]
    )
    return report


def replay(url: str) -> str:
    from flows.replay import replay_sessions

    return replay_sessions(ReplayParameters(symbols=["MSFT"], start=SESSION))["run_id"]


def export(url: str, run_id: str, interval: int) -> tuple[int, str, str]:
    return cli("export", "--run", run_id, "--symbol", "MSFT", "--date", str(SESSION),
               "--interval", str(interval), "--db", url)  # fmt: skip


def exports(url: str, run_id: str) -> dict[int, str]:
    out = {}
    for interval in INTERVALS:
        code, text_out, err = export(url, run_id, interval)
        assert code == 0, err
        out[interval] = text_out
    return out


def minute_row(csv: str, stamp: str) -> pd.Series | None:
    """The exported 1m bar at the UTC minute `stamp`, or None when the series has none."""
    frame = pd.read_csv(io.StringIO(csv))
    at = pd.to_datetime(frame["timestamp"], utc=True) == pd.Timestamp(stamp, tz="UTC")
    return frame.loc[at].iloc[0] if at.any() else None


@pytest.fixture
def store(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BARKEEPER_DATABASE_URL", db_url)
    monkeypatch.setenv("BARKEEPER_REPORTS_DIR", str(tmp_path / "reports"))
    return db_url


def test_an_earlier_runs_export_is_unchanged_by_a_later_delivery(
    harness, store: str, tmp_path: Path
) -> None:
    original = pd.read_csv(MSFT)
    regular = original.index[original["timestamp"].between("2023-07-10 13:30", "2023-07-10 19:59")]
    changed, missing = regular[40], regular[60]
    path = tmp_path / "MSFT_1min.csv"  # the vendor's file name, the same every delivery
    first = original.drop(index=missing)
    assert deliver(path, first, store)["stored"] == len(first)
    run_id = replay(store)
    before = exports(store, run_id)
    changed_at, missing_at = original.loc[[changed, missing], "timestamp"]
    assert minute_row(before[1], changed_at)["close"] == original.loc[changed, "close"]
    assert minute_row(before[1], missing_at) is None  # the run saw no bar there

    # The next delivery under the same name revises one minute and brings the missing one.
    second = original.copy()
    second.loc[changed, "close"] += 0.5
    second.loc[changed, "high"] = second.loc[changed, ["high", "close"]].max()
    report = deliver(path, second, store)
    assert (report["stored"], report["revised"], report["quarantined"], report["skipped"]) == (
        1, 1, 0, len(original) - 2,
    )  # fmt: skip
    code, out, err = cli("revisions", "MSFT", "--date", str(SESSION), "--json", "--db", store)
    assert code == 0, err
    (revision,) = json.loads(out)["revisions"]  # the earlier version, beside the stored one
    assert revision["close"] == original.loc[changed, "close"]
    assert revision["file"] == revision["replaced_by"] == path.name

    assert exports(store, run_id) == before  # byte for byte: what the run read, as it read it

    # A run replayed after the delivery exports the delivered values.
    later = exports(store, replay(store))
    for index in (changed, missing):
        row = minute_row(later[1], second.loc[index, "timestamp"])
        assert row["provenance"] == "feed"
        assert row[["open", "high", "low", "close", "volume"]].tolist() == (
            second.loc[index, ["open", "high", "low", "close", "volume"]].tolist()
        )

    # A bar the run read changed with no delivery or revision behind it: the export refuses.
    stamp = int(pd.Timestamp(original.loc[regular[100], "timestamp"], tz="UTC").timestamp())
    with engine_for(store).begin() as conn:
        conn.execute(
            text("UPDATE bar SET volume = volume + 1 WHERE symbol = 'MSFT' AND ts = :ts"),
            {"ts": stamp},
        )
    code, out, err = export(store, run_id, 1)
    assert code == 2 and out == ""
    assert err.startswith(f"barkeeper: error: the repository changed since run {run_id}")
    assert err.count("\n") == 1
