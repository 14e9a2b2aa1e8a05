"""A minute the vendor sent but whose rows were all quarantined is `quarantined` in a replay's
gaps, not `no_trade` (real Prefect harness, real SQLite store, the real MSFT sample)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
from conftest import SAMPLE_DIR
from sqlalchemy import select

from barkeeper.ingest.files import ingest_file
from barkeeper.params import ReplayParameters
from models.engine import engine_for
from models.tables import Gap

MSFT = SAMPLE_DIR / "MSFT_1min_2023-07-10_to_2023-07-13.csv"
SESSION = date(2023, 7, 10)
CONFLICTED = "2023-07-10 14:00:00"  # sent twice with other values: both rows quarantined


def test_replay_reports_a_quarantined_minute_as_quarantined(
    harness: None, sqlite_url: str, tmp_path: Path, monkeypatch
) -> None:
    from helpers import replayed

    frame = pd.read_csv(MSFT)
    row = frame.index[frame["timestamp"] == CONFLICTED][0]
    twin = frame.loc[[row]].assign(close=frame.loc[row, "low"])
    path = tmp_path / "MSFT_1min.csv"
    pd.concat([frame, twin]).to_csv(path, index=False)
    engine = engine_for(sqlite_url)
    assert ingest_file(engine, path).reasons == {"conflicting_duplicate": 2}
    monkeypatch.setenv("BARKEEPER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BARKEEPER_REPORTS_DIR", str(tmp_path / "reports"))
    report = replayed(ReplayParameters(symbols=["MSFT"], start=SESSION))
    minute = int(pd.Timestamp(CONFLICTED, tz="UTC").timestamp())
    with engine.connect() as conn:
        gaps = conn.execute(
            select(Gap.start_ts, Gap.end_ts, Gap.status).where(Gap.run_id == report["run_id"])
        ).all()
    assert [(g.start_ts, g.end_ts, g.status) for g in gaps] == [(minute, minute, "quarantined")]
    figures = report["sessions"][0]["symbols"]["MSFT"]
    assert figures["no_trade_bars"] == 0 and figures["missing_bars"] == 1
