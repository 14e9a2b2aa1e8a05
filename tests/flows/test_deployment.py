"""prefect.yaml deployed by `make serve` to a real server, run by a real process worker.

The server, the worker and one finished `replay` run are shared with the browser tests (see
tests/served.py). Runs are created through the API exactly as the UI's Custom run creates them.
"""

from __future__ import annotations

import json
from datetime import date
from uuid import UUID

import pytest
from conftest import REPO_ROOT
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import PrefectHTTPStatusError
from served import AUDIT_BAD_FILE, AUDIT_GOOD_FILE, REPLAY_PARAMETERS, Served
from sqlmodel import Session

from barkeeper.reports.rebuild import run_series
from models.engine import engine_for
from models.results import read_table
from models.tables import Run, SessionMetric

pytestmark = pytest.mark.server
REPO = REPO_ROOT


def artifacts_of(served: Served, run: FlowRun) -> dict:
    with served.client() as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    return {a.key: a for a in found if a.key}


def test_make_serve_deploys_both_deployments(served: Served) -> None:
    with served.client() as client:
        replay = client.read_deployment_by_name("replay_sessions/replay")
        audit = client.read_deployment_by_name("nightly_audit/nightly-audit")
        pool = client.read_work_pool("barkeeper-pool")
    assert pool.type == "process"
    assert replay.work_pool_name == audit.work_pool_name == "barkeeper-pool"
    assert replay.schedules == []
    (schedule,) = audit.schedules
    assert schedule.schedule.cron == "30 17 * * 1-5"
    assert schedule.schedule.timezone == "America/New_York"
    for deployment in (replay, audit):
        (step,) = deployment.pull_steps
        assert step["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO)
    schema = replay.parameter_openapi_schema
    fields = schema["definitions"]["ReplayParameters"]["properties"]
    assert {"symbols", "start", "end", "speed", "faults", "fill_policy"} <= set(fields)
    assert fields["fill_policy"]["enum"] == ["none", "ffill"]  # a drop-down in the form


def test_custom_replay_run_completes_with_artifacts_and_store(
    served: Served, replay_run: FlowRun
) -> None:
    assert replay_run.state.type == StateType.COMPLETED, served.logs()
    run_id = str(replay_run.id)

    artifacts = artifacts_of(served, replay_run)
    assert "barkeeper-quality" in artifacts, sorted(artifacts)  # one table per run
    rows = json.loads(artifacts["barkeeper-quality"].data)
    assert {(r["session"], r["symbol"]) for r in rows} == {
        (day, symbol) for day in ("2023-07-10", "2023-07-11") for symbol in ("MSFT", "DBB")
    }
    markdown = [a.data for a in artifacts.values() if a.type == "markdown"]
    assert any("Data Docs" in text for text in markdown)

    engine = engine_for(served.database_url)
    with Session(engine) as session:
        run = session.get(Run, run_id)
    assert run is not None and run.flow == "replay_sessions"
    assert run.status in ("completed", "degraded")
    parameters = json.loads(run.parameters)
    assert parameters["symbols"] == REPLAY_PARAMETERS["replay"]["symbols"]
    metrics = read_table(engine, SessionMetric, run_id)
    assert set(metrics["session"]) == {date(2023, 7, 10), date(2023, 7, 11)}
    assert set(metrics["symbol"]) == {"MSFT", "DBB"}
    msft = metrics[(metrics["symbol"] == "MSFT") & (metrics["segment"] == "regular")]
    assert (msft["bar_quality"] == 100.0).all()  # the repository is whole; upkeep backfilled
    bars = run_series(engine, run_id)
    assert {1, 5, 15} <= set(bars["interval"])
    assert (bars.loc[bars["interval"] == 1, "provenance"] == "backfill").any()


def test_unknown_speed_is_refused_when_the_run_is_created(served: Served) -> None:
    deployment_id = served.deployment_id("replay_sessions/replay")
    bad = {"replay": {**REPLAY_PARAMETERS["replay"], "speed": "warp"}}
    with served.client() as client, pytest.raises(PrefectHTTPStatusError) as raised:
        client.create_flow_run_from_deployment(deployment_id, parameters=bad)
    assert raised.value.response.status_code == 409
    assert "replay.speed" in raised.value.response.text
    assert "'warp' does not match" in raised.value.response.text


def test_end_before_start_fails_before_any_work_with_a_readable_reason(
    served: Served, started_runs: dict[str, UUID]
) -> None:
    run = served.wait(started_runs["invalid"])
    assert run.state.type == StateType.FAILED
    assert "end 2023-07-10 is before start 2023-07-12" in (run.state.message or ""), run.state
    with Session(engine_for(served.database_url)) as session:
        assert session.get(Run, str(run.id)) is None  # rejected before any work was recorded


def test_nightly_audit_deployment_ingests_the_landing_folder(
    served: Served, started_runs: dict[str, UUID]
) -> None:
    run = served.wait(started_runs["audit"])
    assert run.state.type == StateType.COMPLETED, served.logs()
    assert (served.landing_dir / "done" / AUDIT_GOOD_FILE).exists()
    assert (served.landing_dir / "rejected" / AUDIT_BAD_FILE).exists()
    assert not (served.landing_dir / AUDIT_GOOD_FILE).exists()
    artifacts = artifacts_of(served, run)
    assert {"barkeeper-audit-quality", "barkeeper-audit-summary"} <= set(artifacts)
    assert f"{AUDIT_BAD_FILE} | rejected" in artifacts["barkeeper-audit-summary"].data
    metrics = read_table(engine_for(served.database_url), SessionMetric, str(run.id))
    assert metrics["symbol"].tolist() == ["FXY"]
    assert metrics["session"].tolist() == [date(2023, 7, 12)]
