"""Events and the shipped automations on the real server of tests/served.py (`make serve`).

A local webhook receiver stands for the team's chat: the notification block is created and the
automations applied with the documented commands, then real runs emit the events, the
automations fire, the runs they trigger complete and the receiver gets the notifications.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from conftest import REPO_ROOT
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import FlowRun, StateType
from served import AUDIT_GOOD_FILE, Served

from models.engine import engine_for
from models.results import read_table
from models.tables import SessionMetric

pytestmark = pytest.mark.server
NOTIFY_TIMEOUT_S = 120
DEGRADED_PARAMETERS = {
    "replay": {
        "symbols": ["DBB"],
        "start": "2023-07-12",
        "upkeep_enabled": False,  # nothing backfills the dropped bars: quality falls under 95 %
        "faults": {"drop_rate": 0.3, "seed": 3},
    }
}


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint on 127.0.0.1 that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def wait_for(self, subject_part: str, body_part: str = "") -> dict:
        """The first notification whose subject and body hold these texts (fails after a while)."""
        deadline = time.monotonic() + NOTIFY_TIMEOUT_S
        while time.monotonic() < deadline:
            for body in self.received:
                if subject_part in body.get("subject", "") and body_part in body.get("body", ""):
                    return body
            time.sleep(0.5)
        pytest.fail(f"no notification with {subject_part!r}; got {self.received}")


@pytest.fixture(scope="module")
def alerts(served: Served) -> Iterator[Receiver]:
    """The receiver, its webhook block and the automations, made with the README's commands."""
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    served.barkeeper("blocks", "webhook", receiver.url, "--allow-private-urls")
    served.barkeeper("automations", "apply")
    yield receiver
    receiver.shutdown()
    receiver.server_close()


def test_apply_creates_every_shipped_automation_once(served: Served, alerts: Receiver) -> None:
    files = (REPO_ROOT / "automations").glob("*.yaml")
    shipped = sorted(yaml.safe_load(path.read_text())["name"] for path in files)
    document = json.loads(served.barkeeper("automations", "apply", "--json"))  # idempotent
    assert sorted(a["name"] for a in document["automations"]) == shipped
    assert {a["status"] for a in document["automations"]} == {"updated"}
    with served.client() as client:
        for name in shipped:
            (automation,) = client.read_automations_by_name(name)
            assert automation.enabled


def test_replay_emits_validated_and_finished_events(served: Served, replay_run: FlowRun) -> None:
    run_id = str(replay_run.id)
    mine = served.events(
        "barkeeper.session.validated", lambda e: e.resource["barkeeper.run"] == run_id, count=2
    )
    assert sorted(e.resource["barkeeper.session"] for e in mine) == ["2023-07-10", "2023-07-11"]
    metrics = read_table(engine_for(served.database_url), SessionMetric, run_id)
    regular = metrics[metrics["segment"] == "regular"]
    for event in mine:
        day = regular[regular["session"] == date.fromisoformat(event.payload["session"])]
        assert event.payload["expected_bars"] == int(day["expected_bars"].sum())
        assert event.payload["actual_bars"] == int(day["actual_bars"].sum())
        assert event.payload["data_docs"].startswith(f"{served.reports_url}/data_docs/")
        related = {r.id for r in event.related}
        assert f"prefect.flow-run.{run_id}" in related  # Prefect adds the run's context
    (finished,) = served.events(
        "barkeeper.run.finished", lambda e: e.resource.id == f"barkeeper.run.{run_id}"
    )
    assert finished.payload["sessions"] == ["2023-07-10", "2023-07-11"]


def test_degraded_session_notifies_through_the_webhook(served: Served, alerts: Receiver) -> None:
    run = served.wait(served.start("replay_sessions/replay", DEGRADED_PARAMETERS))
    assert run.state.type == StateType.COMPLETED, served.logs()
    body = alerts.wait_for("session 2023-07-12 degraded", str(run.id))
    assert "Below threshold: DBB" in body["body"]
    (event,) = served.events(
        "barkeeper.session.degraded", lambda e: e.resource["barkeeper.run"] == str(run.id)
    )
    assert event.payload["below_threshold"] == ["DBB"]
    assert event.payload["bar_quality_min"] < 95


def test_landed_file_triggers_an_audit_of_the_sessions_it_covers(
    served: Served, started_runs: dict[str, UUID]
) -> None:
    served.wait(started_runs["audit"])
    audit_id = str(started_runs["audit"])
    landed = served.events(
        "barkeeper.landing.file", lambda e: e.payload["run_id"] == audit_id, count=2
    )
    by_file = {e.payload["file"]: e for e in landed}
    ingested = by_file[AUDIT_GOOD_FILE]
    assert ingested.resource["barkeeper.status"] == "ingested"
    assert (ingested.payload["start"], ingested.payload["end"]) == ("2023-07-10", "2023-07-13")
    counts = ingested.payload  # the served store holds the sample already: skipped, not stored
    assert counts["read"] == counts["stored"] + counts["quarantined"] + counts["skipped"] > 0
    assert by_file["FXY_1min_empty.csv"].payload["status"] == "rejected"

    triggered = wait_triggered_audit(served)
    assert triggered.parameters["audit"]["start"] == "2023-07-10"
    assert triggered.parameters["audit"]["symbols"] == ["FXY"]
    final = served.wait(triggered.id)
    assert final.state.type == StateType.COMPLETED, served.logs()
    sessions = read_table(engine_for(served.database_url), SessionMetric, str(final.id))["session"]
    assert sorted(str(s) for s in set(sessions)) == [
        "2023-07-10",
        "2023-07-11",
        "2023-07-12",
        "2023-07-13",
    ]


def wait_triggered_audit(served: Served) -> FlowRun:
    """The nightly-audit run an automation created (not the test's own)."""
    deadline = time.monotonic() + NOTIFY_TIMEOUT_S
    while time.monotonic() < deadline:
        with served.client() as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=["nightly-audit"])
                )
            )
        for run in runs:
            if run.created_by is not None and run.created_by.type == "AUTOMATION":
                return run
        time.sleep(1.0)
    pytest.fail(f"no nightly-audit run created by an automation:\n{served.logs()}")


def test_no_landed_file_after_the_scheduled_audit_alerts(
    served: Served, alerts: Receiver, tmp_path: Path
) -> None:
    # The shipped automation, with its 15-minute window cut to Prefect's minimum of 10 s.
    spec = yaml.safe_load((REPO_ROOT / "automations" / "no-landed-file.yaml").read_text())
    spec["trigger"]["within"] = 10
    (tmp_path / "no-landed-file.yaml").write_text(yaml.safe_dump(spec))
    served.barkeeper("automations", "apply", "--dir", str(tmp_path))
    # A scheduled run (the scheduler tags its runs auto-scheduled) with nothing in the landing.
    deployment_id = served.deployment_id("nightly_audit/nightly-audit")
    with served.client() as client:
        run = client.create_flow_run_from_deployment(
            deployment_id,
            parameters={"audit": {"start": "2023-07-12", "symbols": ["MSFT"], "derived": [30]}},
            tags=["auto-scheduled"],
        )
    assert served.wait(run.id).state.type == StateType.COMPLETED, served.logs()
    body = alerts.wait_for("no vendor file landed")
    assert "15 minutes" in body["body"]
