"""The store URL in a Prefect Secret block: a deployment run reads it there, and the URL (with
its password) appears in none of the run's parameters, logs, artifacts or events."""

from __future__ import annotations

import json
import uuid

import pytest
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.events.filters import EventAnyResourceFilter, EventFilter
from served import SAMPLE, Served

from barkeeper.ingest.files import ingest_file
from models.engine import engine_for
from models.results import read_table
from models.tables import SessionMetric

pytestmark = [pytest.mark.server, pytest.mark.postgres]
PASSWORD = f"pw-{uuid.uuid4().hex[:12]}"  # PostgreSQL's trust auth accepts any password


def test_runs_read_the_store_from_a_secret_block_and_never_show_it(
    served: Served, postgres_url: str
) -> None:
    secret_url = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    assert PASSWORD in secret_url
    engine = engine_for(postgres_url)
    ingest_file(engine, SAMPLE / "MSFT_1min_2023-07-10_to_2023-07-13.csv")
    shown = served.barkeeper("blocks", "store", "barkeeper-store", "--db", secret_url)
    assert PASSWORD not in shown and "barkeeper-store" in shown

    deployment_id = served.deployment_id("replay_sessions/replay")
    parameters = {"replay": {"symbols": ["MSFT"], "start": "2023-07-13"}}
    with served.client() as client:
        created = client.create_flow_run_from_deployment(
            deployment_id,
            parameters=parameters,
            job_variables={"env": {"BARKEEPER_DATABASE_BLOCK": "barkeeper-store"}},
        )
    run = served.wait(created.id)
    assert run.state.type == StateType.COMPLETED, served.logs()
    run_id = str(run.id)
    # The run's results are in the block's store, not in the worker's default one.
    assert set(read_table(engine, SessionMetric, run_id)["symbol"]) == {"MSFT"}
    assert read_table(engine_for(served.database_url), SessionMetric, run_id).empty

    served.events("barkeeper.run.finished", lambda e: e.resource.id == f"barkeeper.run.{run_id}")
    with served.client() as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
        query = EventFilter(any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{run_id}"]))
        page = client.read_events(filter=query, limit=50)
        events = list(page.events)
        while page.next_page is not None:
            page = client.read_events_page(str(page.next_page))
            events += page.events
        flow_run = client.read_flow_run(run.id)
    assert logs and artifacts and len(events) > 5
    seen = {
        "parameters": json.dumps(flow_run.parameters),
        "logs": "\n".join(log.message for log in logs),
        "artifacts": "\n".join(str(a.data) + str(a.description) for a in artifacts),
        "events": "\n".join(e.model_dump_json() for e in events),
        "worker log": (served.home / "worker.log").read_text(errors="replace"),
    }
    for where, text in seen.items():
        assert PASSWORD not in text, where
    assert "barkeeper.session.validated" in seen["events"]
