"""A deployment run with two sources, created as the UI's Custom run creates it, on a real server.

The recorded feed (tests/recorded.py) is imported as source `recorded` and the vendor file as
`vendor` into the served store; the run's summary artifact must list every disagreeing minute,
which a pandas comparison of the two files finds here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from recorded import write_recorded
from served import SAMPLE, Served

from barkeeper.ingest.files import ingest_file
from models.engine import engine_for
from models.sources import read_discrepancies

pytestmark = pytest.mark.server


def test_two_source_deployment_run_lists_its_discrepancies(served: Served, tmp_path: Path) -> None:
    with served.client() as client:
        schema = client.read_deployment_by_name("replay_sessions/replay").parameter_openapi_schema
    fields = schema["definitions"]["ReplayParameters"]["properties"]
    assert {"feed", "feed_file", "backfill", "prefer", "tolerance_bps"} <= set(fields)

    engine = engine_for(served.database_url)
    vendor = next(SAMPLE.glob("MSFT_1min_*.csv"))
    ingest_file(engine, vendor, source="vendor")
    ingest_file(engine, write_recorded(vendor, tmp_path), source="recorded")
    parameters = {
        "replay": {
            "symbols": ["MSFT"],
            "start": "2023-07-10",
            "feed": "recorded",
            "backfill": ["vendor"],
            "tolerance_bps": 5,
        }
    }
    run = served.wait(served.start("replay_sessions/replay", parameters))
    assert run.state.type == StateType.COMPLETED, served.logs()

    with served.client() as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    (summary,) = [a.data for a in artifacts if a.key == "barkeeper-replay-summary"]
    stored = read_discrepancies(engine, str(run.id))
    assert len(stored) > 0
    assert "## Discrepancies" in summary and "Feed `recorded`, backfill `vendor`" in summary
    for row in stored.itertuples(index=False):
        minute = pd.Timestamp(int(row.ts), unit="s").strftime("%Y-%m-%d %H:%M")
        assert f"| {row.session} | MSFT | {minute} | {row.kind} |" in summary
