"""The nightly audit: landing folder in, store and artifacts out, under a real Prefect API.

Oracles: exchange_calendars' minutes held against the CSV rows we landed (read with pandas, not
with barkeeper's importer), pandas `resample` for derived bars, the filesystem for file moves.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import exchange_calendars as xc
import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import select
from typer.testing import CliRunner

from barkeeper.cli.main import app
from barkeeper.core.calendar import Calendar
from barkeeper.errors import ParameterError
from barkeeper.ingest.paths import confine, landed_files, move_into
from barkeeper.params import AuditParameters
from barkeeper.reports.audit import completed_sessions
from barkeeper.reports.charts import MAX_STRIPS, coverage_chart
from barkeeper.settings import DEFAULT_LANDING_PATTERNS
from models.engine import engine_for
from models.results import read_table
from models.tables import Bar, Gap, IngestedFile, Run, SessionMetric, ValidationResult

REPO = REPO_ROOT
SESSIONS = [date(2023, 7, 10), date(2023, 7, 11)]
# Minutes we cut out of the real file (UTC): a 5-minute hole and a single minute on 07-10, so
# the audit has gaps to find; 07-11 stays whole.
CUT = pd.to_datetime(
    ["2023-07-10 14:00", "2023-07-10 14:01", "2023-07-10 14:02", "2023-07-10 14:03",
     "2023-07-10 14:04", "2023-07-10 15:30"]
)  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def msft_source() -> Path:
    """The bundled MSFT sample (or, before it is bundled, the shared real file)."""
    found = sorted((REPO / "data" / "sample").glob("MSFT*.csv"))
    found += sorted((REPO.parent / "shared" / "data" / "real").glob("MSFT*.csv"))
    if not found:
        pytest.fail("no MSFT sample CSV in data/sample")
    return found[0]


@pytest.fixture
def landing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> Path:
    """A landing folder with one good file, one unreadable file and a symlink leading out."""
    folder = tmp_path / "landing"
    folder.mkdir()
    rows = pd.read_csv(msft_source())
    rows = rows[~pd.to_datetime(rows["timestamp"]).isin(CUT)]
    rows.to_csv(folder / "MSFT_1min_vendor.csv", index=False)
    (folder / "DBB_1min_broken.csv").write_bytes(b"\x00\x01\x02 not a csv \xff\xfe")
    secret = tmp_path / "outside.csv"
    secret.write_text("timestamp,open,high,low,close,volume\n")
    (folder / "FXY_1min_link.csv").symlink_to(secret)
    monkeypatch.setenv("BARKEEPER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BARKEEPER_LANDING_DIR", str(folder))
    monkeypatch.setenv("BARKEEPER_LANDING_SETTLE_SECONDS", "0")  # the files are complete
    monkeypatch.setenv("BARKEEPER_REPORTS_DIR", str(tmp_path / "reports"))
    return folder


def oracle(csv: Path, session: date) -> dict:
    """Expected figures of `session` from exchange_calendars and the CSV rows, independently."""
    minutes = xc.get_calendar("XNYS").session_minutes(pd.Timestamp(session))
    stamps = pd.to_datetime(pd.read_csv(csv)["timestamp"]).dt.tz_localize("UTC")
    present = minutes.isin(stamps)
    missing = ~present
    runs = int((missing & ~np.r_[False, missing[:-1]]).sum())
    return {
        "expected_bars": len(minutes),
        "actual_bars": int(present.sum()),
        "bar_quality": round(present.sum() / len(minutes) * 100, 6),
        "gaps": runs,
        "missing_bars": int(missing.sum()),
    }


def resample_oracle(csv: Path, session: date, minutes: int) -> pd.DataFrame:
    frame = pd.read_csv(csv)
    frame.index = pd.to_datetime(frame.pop("timestamp")).dt.tz_localize("UTC")
    cal = xc.get_calendar("XNYS")
    open_, close = cal.session_open(session), cal.session_close(session)
    frame = frame[(frame.index >= open_) & (frame.index < close)]
    agg = frame.resample(f"{minutes}min", origin=open_).agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    agg = agg.dropna(subset=["close"])
    return agg.set_axis((agg.index.as_unit("s").asi8).astype(np.int64), axis=0)


def read_artifacts(flow_run_id: str) -> dict:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["barkeeper-audit-quality", "barkeeper-audit-summary"])
            )
        )
    return {a.key: a for a in found if str(a.flow_run_id) == flow_run_id}


def test_nightly_audit_ingests_moves_audits_and_reports(
    harness: None, landing: Path, sqlite_url: str
) -> None:
    from flows.audit import nightly_audit

    good = landing / "MSFT_1min_vendor.csv"
    kept = good.read_bytes()
    document = nightly_audit(AuditParameters(start=SESSIONS[0], end=SESSIONS[1], derived=[5, 15]))
    engine = engine_for(sqlite_url)

    # Files: the good one in done/, the unreadable one and the escaping link in rejected/.
    assert landed_files(landing, DEFAULT_LANDING_PATTERNS) == []
    assert (landing / "done" / good.name).read_bytes() == kept
    assert (landing / "rejected" / "DBB_1min_broken.csv").exists()
    assert (landing / "rejected" / "FXY_1min_link.csv").is_symlink()
    assert (landing.parent / "outside.csv").exists()
    with engine.connect() as conn:
        records = {Path(r.path).name: r for r in conn.execute(select(IngestedFile)).all()}
    assert records["MSFT_1min_vendor.csv"].status == "done"
    assert records["MSFT_1min_vendor.csv"].stored == len(
        pd.read_csv(good.parent / "done" / good.name)
    )
    assert records["DBB_1min_broken.csv"].status == "rejected"
    assert records["DBB_1min_broken.csv"].reason
    assert "outside the landing folder" in records["FXY_1min_link.csv"].reason
    files = {f["name"]: f for f in document["files"]}
    assert files["DBB_1min_broken.csv"]["reason"] == records["DBB_1min_broken.csv"].reason

    # Figures: the document and the store agree with the calendar/CSV oracle.
    run_id = document["run_id"]
    metrics = read_table(engine, SessionMetric, run_id).set_index(["session", "symbol"])
    done_csv = landing / "done" / good.name
    for day, session in zip(SESSIONS, document["sessions"], strict=True):
        assert session["date"] == day.isoformat()
        want = oracle(done_csv, day)
        got = session["symbols"]["MSFT"]
        assert {k: got[k] for k in want} == pytest.approx(want)
        assert got["backfilled_bars"] == got["repaired_bars"] == got["unfillable_bars"] == 0
        assert got["validation_success"] is True
        stored = metrics.loc[(day, "MSFT")]
        assert stored["actual_bars"] == want["actual_bars"]
        assert stored["gaps"] == want["gaps"]
    assert document["sessions"][0]["symbols"]["MSFT"]["gaps"] == 2
    gaps = read_table(engine, Gap, run_id)
    assert sorted(gaps["length"].tolist()) == [1, 5]
    assert set(gaps["status"]) == {"no_trade"}

    # Derived bars: materialised in the repository, equal to pandas resample of the CSV.
    for n in (5, 15):
        want = resample_oracle(done_csv, SESSIONS[0], n)
        with engine.connect() as conn:
            got = pd.read_sql(
                select(Bar).where(
                    Bar.symbol == "MSFT", Bar.interval == n, Bar.ts.in_(want.index.tolist())
                ),
                conn,
            ).set_index("ts")
        assert set(got["origin"]) == {"derived"} and set(got["source"]) == {"default"}
        assert len(got) == len(want)
        cols = ["open", "high", "low", "close", "volume"]
        pd.testing.assert_frame_equal(got.loc[want.index, cols], want[cols], check_names=False)

    # Run record, validation results, Data Docs on disk.
    with engine.connect() as conn:
        run = conn.execute(select(Run).where(Run.id == run_id)).one()
        validations = conn.execute(
            select(ValidationResult).where(ValidationResult.run_id == run_id)
        ).all()
    assert run.flow == "nightly_audit" and run.status == "degraded"  # a file was rejected
    assert {v.suite for v in validations} >= {"bars_1m", "bars_derived", "session_quality"}
    assert Path(document["data_docs"]).is_file()

    # Artifacts, read back through the Prefect API.
    artifacts = read_artifacts(run_id)
    table = json.loads(artifacts["barkeeper-audit-quality"].data)
    row = next(r for r in table if r["session"] == "2023-07-10" and r["symbol"] == "MSFT")
    assert row["missing_bars"] == 6 and row["expected_bars"] == 390
    summary = artifacts["barkeeper-audit-summary"].data
    assert "DBB_1min_broken.csv | rejected" in summary
    assert "Data Docs" in summary and Path(document["data_docs"]).name in summary
    assert "](data:image/png;base64," in summary


def test_audit_again_changes_nothing(harness: None, landing: Path, sqlite_url: str) -> None:
    """Idempotent: a second audit (here from the CLI) leaves the derived bars as they were
    (re-materialised, so only their time of storage moves)."""
    from flows.audit import nightly_audit

    nightly_audit(AuditParameters(start=SESSIONS[0], derived=[5]))
    engine = engine_for(sqlite_url)
    with engine.connect() as conn:
        before = pd.read_sql(select(Bar).where(Bar.interval == 5), conn)
    result = CliRunner().invoke(
        app, ["audit", "--start", "2023-07-10", "--end", "2023-07-10", "--json", "--db", sqlite_url]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(document["sessions"][0]["symbols"]) == ["MSFT"]
    with engine.connect() as conn:
        after = pd.read_sql(select(Bar).where(Bar.interval == 5), conn)
    assert (after["stored_at"] >= before["stored_at"]).all()
    values = [c for c in before.columns if c != "stored_at"]
    pd.testing.assert_frame_equal(before[values], after[values])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2023-07-09"], "no XNYS session"),  # a Sunday
        (["--start", "2023-07-12", "--end", "2023-07-10"], "before start"),
        (["--start", "July 10"], "start"),
        (["--landing", "/nonexistent/landing"], "--landing"),
    ],
)
def test_audit_command_rejects_bad_input_in_one_line(
    args: list[str], message: str, sqlite_url: str
) -> None:
    result = CliRunner().invoke(app, ["audit", *args, "--db", sqlite_url])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_completed_sessions_follow_the_close() -> None:
    cal = Calendar("XNYS")
    after_close = datetime(2023, 7, 10, 21, 30, tzinfo=UTC)  # 17:30 New York
    before_open = datetime(2023, 7, 10, 12, 0, tzinfo=UTC)
    sunday = datetime(2023, 7, 9, 12, 0, tzinfo=UTC)
    assert completed_sessions(cal, after_close, 1) == [date(2023, 7, 10)]
    assert completed_sessions(cal, before_open, 1) == [date(2023, 7, 7)]
    assert completed_sessions(cal, sunday, 2) == [date(2023, 7, 6), date(2023, 7, 7)]
    after_july_4 = datetime(2023, 7, 5, 12, 0, tzinfo=UTC)  # holiday on the 4th
    assert completed_sessions(cal, after_july_4, 1) == [date(2023, 7, 3)]


def test_paths_stay_inside_the_landing_folder(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    (root / "vendor").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "escape").symlink_to(tmp_path / "elsewhere")
    assert confine(root, "vendor") == (root / "vendor").resolve()
    for bad in ("..", "../elsewhere", "/etc", "vendor/../../elsewhere", "escape"):
        with pytest.raises(ParameterError, match="outside"):
            confine(root, bad, parameter="landing")


def test_moving_never_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "done"
    for content in ("first", "second", "third"):
        path = tmp_path / "bars.csv"
        path.write_text(content)
        move_into(path, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["bars.1.csv", "bars.2.csv", "bars.csv"]
    assert (folder / "bars.csv").read_text() == "first"


@pytest.mark.parametrize("n_symbols", [3, MAX_STRIPS + 1, 2000])
def test_coverage_chart_is_a_png_for_few_and_many_symbols(n_symbols: int) -> None:
    minutes = Calendar("XNYS").session_minutes(date(2023, 7, 10)).minutes
    codes = np.ones((n_symbols, len(minutes)), dtype=np.uint8)
    codes[:, 30:45] = 2
    codes[0, 100:110] = 0
    codes[-1, 200] = 3
    png = coverage_chart(minutes, codes, [f"S{i}" for i in range(n_symbols)], "t")
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000


def test_coverage_chart_refuses_mismatched_shapes() -> None:
    minutes = np.arange(10, dtype=np.int64) * 60
    with pytest.raises(ValueError, match="shape"):
        coverage_chart(minutes, np.zeros((2, 9), np.uint8), ["A", "B"], "t")
    with pytest.raises(ValueError, match="codes"):
        coverage_chart(minutes, np.full((2, 10), 8, np.uint8), ["A", "B"], "t")


def test_an_audit_of_a_session_without_data_says_so(
    harness: None, landing: Path, sqlite_url: str
) -> None:
    """2023-07-14 is a trading day the repository has no bar for: `no data`, never `passed`."""
    from flows.audit import nightly_audit

    document = nightly_audit(AuditParameters(start=date(2023, 7, 14), derived=[5]))
    symbols = document["sessions"][0]["symbols"]
    assert symbols and all(m["no_data"] and m["source_bars"] == 0 for m in symbols.values())
    summary = read_artifacts(document["run_id"])["barkeeper-audit-summary"].data
    assert "2023-07-14: **no data**" in summary and "2023-07-14: passed" not in summary
    assert "| no data |" in summary
