"""Replays of a recorded feed backfilled from the vendor's history: two real sources of one symbol.

Data: the bundled vendor files (source `vendor`) and the recorded feed `tests/recorded.py` builds
from them (source `recorded`; data/sample/README.md says how). Oracles: the two CSV files read
with pandas, compared minute by minute here, and exchange_calendars' session minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import exchange_calendars as xc
import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE_DIR
from recorded import write_recorded

from barkeeper.core.panel import PRICE_COLUMNS, utc_to_ts
from barkeeper.ingest.files import ingest_file
from barkeeper.params import AuditParameters, ReplayParameters
from barkeeper.reports.export import export_bars
from models.engine import engine_for
from models.sources import read_discrepancies

SYMBOLS = ["MSFT", "DBB"]
SESSIONS = [date(2023, 7, 10), date(2023, 7, 11), date(2023, 7, 12), date(2023, 7, 13)]
TOLERANCE_BPS = 5.0  # the default
VOLUME_TOLERANCE = 0.10  # the default


@pytest.fixture
def two_sources(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, dict[str, Path], dict[str, Path]]]:
    """A store with the vendor files as source `vendor` and their recordings as `recorded`."""
    engine = engine_for(db_url)
    vendor, recorded = {}, {}
    for symbol in SYMBOLS:
        vendor[symbol] = next(SAMPLE_DIR.glob(f"{symbol}_1min_*.csv"))
        recorded[symbol] = write_recorded(vendor[symbol], tmp_path / "recorded")
        ingest_file(engine, vendor[symbol], source="vendor")
        ingest_file(engine, recorded[symbol], source="recorded")
    monkeypatch.setenv("BARKEEPER_DATABASE_URL", db_url)
    monkeypatch.setenv("BARKEEPER_REPORTS_DIR", str(tmp_path / "reports"))
    (tmp_path / "landing").mkdir()
    monkeypatch.setenv("BARKEEPER_LANDING_DIR", str(tmp_path / "landing"))
    yield db_url, vendor, recorded


def replay(**values) -> dict:
    from helpers import replayed

    values = {"symbols": SYMBOLS, "start": SESSIONS[0], "end": SESSIONS[-1], **values}
    return replayed(ReplayParameters(**values))


def session_minutes(session: date) -> np.ndarray:
    minutes = xc.get_calendar("XNYS").session_minutes(pd.Timestamp(session))
    return minutes.as_unit("s").asi8


def read_file(path: Path, symbol: str, session: date) -> pd.DataFrame:
    """A sample-format CSV's bars in the session's regular minutes, indexed by ts."""
    frame = pd.read_csv(path)
    stamps = pd.to_datetime(frame.pop("timestamp")).dt.tz_localize("UTC")
    frame["ts"] = utc_to_ts(stamps)
    frame = frame.loc[frame["ts"].isin(session_minutes(session))]
    return frame.assign(symbol=symbol).set_index("ts").sort_index()


def exported(url: str, run_id: str, symbol: str, session: date) -> pd.DataFrame:
    frame = export_bars(engine_for(url), run_id, symbol, session, 1)
    frame["ts"] = utc_to_ts(pd.to_datetime(frame["timestamp"], utc=True))
    return frame.loc[frame["ts"].isin(session_minutes(session))].set_index("ts")


def disagreements(vendor: pd.DataFrame, recorded: pd.DataFrame) -> pd.Series:
    """Class per minute both files have and where they disagree: price first, then volume."""
    both = recorded.join(vendor, suffixes=("_rec", "_ven"), how="inner")
    price_off = pd.Series(False, index=both.index)
    for column in ("open", "high", "low", "close"):
        rec, ven = both[f"{column}_rec"], both[f"{column}_ven"]
        price_off |= (rec - ven).abs() > TOLERANCE_BPS / 1e4 * ven.abs()
    rec_v, ven_v = both["volume_rec"], both["volume_ven"]
    volume_off = (rec_v - ven_v).abs() > VOLUME_TOLERANCE * np.maximum(rec_v.abs(), ven_v.abs())
    kind = pd.Series(np.where(price_off, "price", np.where(volume_off, "volume", "")), both.index)
    return kind.loc[kind != ""]


def test_recorded_feed_backfilled_from_the_vendor(harness, two_sources) -> None:
    url, vendor_files, recorded_files = two_sources
    report = replay(feed="recorded", backfill=["vendor"])
    stored = read_discrepancies(engine_for(url), report["run_id"])
    found_any = 0
    for entry, session in zip(report["sessions"], SESSIONS, strict=True):
        assert entry["date"] == str(session)
        for symbol in SYMBOLS:
            vendor = read_file(vendor_files[symbol], symbol, session)
            recorded = read_file(recorded_files[symbol], symbol, session)
            got = exported(url, report["run_id"], symbol, session)
            # every minute the vendor has, and nothing neither source has
            assert set(vendor.index) <= set(got.index)
            assert set(got.index) == set(vendor.index) | set(recorded.index)
            only_vendor = vendor.index.difference(recorded.index)
            assert (got.loc[only_vendor, "provenance"] == "backfill").all()
            assert (got.loc[only_vendor, "source"] == "vendor").all()
            for column in PRICE_COLUMNS:
                np.testing.assert_allclose(
                    got.loc[only_vendor, column], vendor.loc[only_vendor, column]
                )
                np.testing.assert_allclose(
                    got.loc[recorded.index, column], recorded[column]
                )  # the feed's bar is kept wherever it had one
            assert (got.loc[recorded.index, "provenance"] == "feed").all()
            assert (got.loc[recorded.index, "source"] == "recorded").all()

            figures = entry["symbols"][symbol]
            neither = 390 - len(vendor.index.union(recorded.index))
            assert figures["no_trade_bars"] == neither
            assert figures["unfillable_bars"] == 0
            assert figures["feed_gaps"] == len(only_vendor)
            expected_sources = {"recorded": len(recorded), "vendor": len(only_vendor)}
            assert figures["sources"] == {k: v for k, v in expected_sources.items() if v}

            oracle = disagreements(vendor, recorded)
            mine = stored.loc[(stored["symbol"] == symbol) & (stored["session"] == session)]
            assert figures["discrepancies"] == len(oracle)
            assert dict(zip(mine["ts"], mine["kind"], strict=True)) == oracle.to_dict()
            assert (mine["kept"] == "feed").all() and (mine["backfill_source"] == "vendor").all()
            found_any += len(oracle)
    assert found_any > 0  # the recorded feed does disagree with the vendor somewhere


def test_prefer_backfill_keeps_the_vendor_bars(harness, two_sources) -> None:
    url, vendor_files, recorded_files = two_sources
    report = replay(feed="recorded", backfill=["vendor"], prefer="backfill", end=SESSIONS[1])
    for session in SESSIONS[:2]:
        for symbol in SYMBOLS:
            vendor = read_file(vendor_files[symbol], symbol, session)
            recorded = read_file(recorded_files[symbol], symbol, session)
            got = exported(url, report["run_id"], symbol, session).loc[vendor.index]
            for column in PRICE_COLUMNS:
                np.testing.assert_allclose(got[column], vendor[column])
            same = recorded.reindex(vendor.index)[list(PRICE_COLUMNS)].eq(
                vendor[list(PRICE_COLUMNS)]
            )
            expected = np.where(same.all(axis=1), "recorded", "vendor")
            assert got["source"].tolist() == expected.tolist()  # each bar says where it came from
    stored = read_discrepancies(engine_for(url), report["run_id"])
    assert len(stored) and (stored["kept"] == "backfill").all()


def test_feed_file_equals_importing_it_as_a_source(harness, two_sources, tmp_path: Path) -> None:
    url, _, recorded_files = two_sources
    path = tmp_path / "MSFT_feed.csv"
    text = recorded_files["MSFT"].read_text()
    path.write_text(text + "2023-07-10 15:00:xx,1,1,1,1,1\n")  # one bad row: counted, not lost
    from_file = replay(symbols=["MSFT"], feed_file=str(path), backfill=["vendor"], end=SESSIONS[1])
    feed_file = from_file["feed_file"]
    assert feed_file["quarantined"] == 1
    assert feed_file["read"] == feed_file["bars"] + feed_file["quarantined"] + feed_file["skipped"]

    ingest_file(engine_for(url), path, source="feedfile")
    imported = replay(symbols=["MSFT"], feed="feedfile", backfill=["vendor"], end=SESSIONS[1])
    for a, b, session in zip(from_file["sessions"], imported["sessions"], SESSIONS, strict=False):
        figures_a, figures_b = a["symbols"]["MSFT"], b["symbols"]["MSFT"]
        sources_a = {
            k.replace(path.name, "feedfile"): v for k, v in figures_a.pop("sources").items()
        }
        assert sources_a == figures_b.pop("sources")
        assert figures_a == figures_b
        got_a = exported(url, from_file["run_id"], "MSFT", session)
        got_b = exported(url, imported["run_id"], "MSFT", session)
        got_a["source"] = got_a["source"].replace(path.name, "feedfile")
        pd.testing.assert_frame_equal(got_a, got_b)


def test_audit_of_a_source_materialises_into_that_source(harness, two_sources) -> None:
    from sqlalchemy import select

    from flows.audit import nightly_audit
    from models.tables import Bar

    url, _, recorded_files = two_sources
    params = AuditParameters(start=SESSIONS[1], symbols=["MSFT"], source="recorded", derived=[15])
    document = nightly_audit(audit=params)
    figures = document["sessions"][0]["symbols"]["MSFT"]
    recorded = read_file(recorded_files["MSFT"], "MSFT", SESSIONS[1])
    assert figures["sources"] == {"recorded": len(recorded)}
    assert figures["no_trade_bars"] == 390 - len(recorded)  # the vendor's bars are not asked
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(Bar.source, Bar.origin).where(Bar.interval == 15)).all()
    assert rows and set(rows) == {("recorded", "derived")}
