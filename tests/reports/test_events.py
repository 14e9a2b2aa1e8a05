"""The events a run emits, built from a run report as plain dicts (no Prefect involved)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect.events import Event

from barkeeper.reports.audit import LandedFile
from barkeeper.reports.events import landing_events, run_events
from barkeeper.reports.links import ReportsSite

FIGURES = {"expected_bars": 390, "gaps": 1, "missing_bars": 0, "backfilled_bars": 3,
           "repaired_bars": 0, "unfillable_bars": 0}  # fmt: skip
REPORT = {
    "sessions": [
        {"date": "2023-07-10", "symbols": {
            "MSFT": {**FIGURES, "actual_bars": 390, "bar_quality": 100.0},
            "DBB": {**FIGURES, "actual_bars": 351, "bar_quality": 90.0, "unfillable_bars": 39},
        }},
        {"date": "2023-07-11", "symbols": {
            "MSFT": {**FIGURES, "actual_bars": 390, "bar_quality": 100.0},
        }},
    ]
}  # fmt: skip
FAILED = pd.DataFrame(
    [
        {"stage": "final", "session": "2023-07-11", "suite": "bars_1m", "severity": "warning",
         "failed": 2, "evaluated": 390},
        {"stage": "cycle", "session": "2023-07-11", "suite": "bars_1m", "severity": "critical",
         "failed": 1, "evaluated": 20},
    ]
)  # fmt: skip


def test_sessions_validate_and_only_real_trouble_degrades() -> None:
    events = run_events("r1", "replay_sessions", "degraded", REPORT, FAILED, 95.0, {})
    names = [e["event"] for e in events]
    assert names == [
        "barkeeper.session.validated",
        "barkeeper.session.degraded",  # DBB under 95 % with unfillable bars
        "barkeeper.session.validated",  # a failed warning never degrades; cycle results ignored
        "barkeeper.run.finished",
    ]
    first = events[0]
    assert first["resource"]["prefect.resource.id"] == "barkeeper.session.2023-07-10"
    assert first["resource"]["barkeeper.run"] == "r1"
    assert first["payload"]["actual_bars"] == 390 + 351
    assert first["payload"]["below_threshold"] == ["DBB"]
    assert {"prefect.resource.id": "barkeeper.symbol.DBB",
            "prefect.resource.role": "below-threshold"} in first["related"]  # fmt: skip
    second_day = events[2]
    assert second_day["payload"]["severities"] == ["warning"]
    assert second_day["payload"]["failed_expectations"] == [
        {"suite": "bars_1m", "severity": "warning", "failed": 2, "evaluated": 390}
    ]
    finished = events[-1]
    assert finished["payload"]["degraded_sessions"] == ["2023-07-10"]
    assert finished["resource"]["barkeeper.status"] == "degraded"
    for event in events:  # each is a valid Prefect event as it stands
        Event(**event)


def test_landing_events_carry_counts_and_the_sessions_covered() -> None:
    landed = [
        LandedFile("FXY_1.csv", "done", "/l/done/FXY_1.csv", "FXY", 10, 8, 1, 1,
                   first_ts=1688996400, last_ts=1689278340),  # 2023-07-10 13:40Z .. 07-13 19:59Z
        LandedFile("bad.csv", "rejected", "/l/rejected/bad.csv", reason="empty file"),
    ]  # fmt: skip
    ingested, rejected = landing_events("r2", landed, "America/New_York")
    assert ingested["resource"]["barkeeper.status"] == "ingested"
    assert ingested["payload"].items() >= {"stored": 8, "quarantined": 1, "skipped": 1}.items()
    assert (ingested["payload"]["start"], ingested["payload"]["end"]) == (
        "2023-07-10",
        "2023-07-13",
    )
    assert rejected["payload"]["status"] == "rejected"
    assert rejected["payload"]["reason"] == "empty file"


def test_reports_link_over_http_only_when_a_url_is_configured(tmp_path: Path) -> None:
    page = tmp_path / "data_docs" / "validations" / "a b.html"
    served = ReportsSite(tmp_path, "http://127.0.0.1:4201/")
    assert served.link(page) == "http://127.0.0.1:4201/data_docs/validations/a%20b.html"
    assert served.markdown("2023-07-10", page).startswith("[2023-07-10](http://")
    local = ReportsSite(tmp_path)
    assert local.link(page) is None
    assert local.markdown("2023-07-10", page) == f"2023-07-10: `{page}`"
