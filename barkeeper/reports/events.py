"""barkeeper's Prefect events as plain dicts: what a run tells automations about its outcome.

Names and payloads are a contract (README "Events"). Each dict has the arguments of
`prefect.events.emit_event`: `event`, `resource`, `related`, `payload`. Resource ids are stable
(`barkeeper.session.<date>`, `barkeeper.run.<id>`, `barkeeper.landing.<file>`) so automations
can match on them; labels carry what triggers filter on (`barkeeper.status`, `barkeeper.flow`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from barkeeper.reports.audit import LandedFile

VALIDATED = "barkeeper.session.validated"
DEGRADED = "barkeeper.session.degraded"
LANDING_FILE = "barkeeper.landing.file"
RUN_FINISHED = "barkeeper.run.finished"
MAX_RELATED = 50  # symbols named as related resources; the payload counts them all
SUMS = ("expected_bars", "actual_bars", "gaps", "missing_bars", "backfilled_bars",
        "repaired_bars", "unfillable_bars")  # fmt: skip

Event = dict[str, Any]


def session_events(
    run_id: str,
    flow: str,
    session: Mapping[str, Any],
    failed: pd.DataFrame,
    threshold: float,
    link: str | None = None,
) -> list[Event]:
    """`barkeeper.session.validated` for one session, and `.degraded` when it is degraded.

    `session` is one entry of the run report (`{"date", "symbols": {SYM: figures}}`); `failed`
    holds the session's failed final validation results (suite, severity, failed, evaluated).
    A session is degraded when a symbol is under `threshold`, a bar stayed unfillable or an
    expectation of severity `critical` failed (warnings never degrade).
    """
    day = str(session["date"])
    symbols = session["symbols"]
    below = sorted(s for s, m in symbols.items() if (m.get("bar_quality") or 0.0) < threshold)
    unfillable = sorted(s for s, m in symbols.items() if m.get("unfillable_bars"))
    failures = [
        {
            "suite": str(row.suite),
            "severity": str(row.severity),
            "failed": int(row.failed),
            "evaluated": int(row.evaluated),
        }
        for row in failed.itertuples(index=False)
    ]
    severities = sorted({f["severity"] for f in failures})
    qualities = [m["bar_quality"] for m in symbols.values() if m.get("bar_quality") is not None]
    payload = {
        "run_id": run_id,
        "flow": flow,
        "session": day,
        "symbols": len(symbols),
        "quality_threshold": threshold,
        "bar_quality_min": min(qualities, default=None),
        "bar_quality_mean": round(sum(qualities) / len(qualities), 4) if qualities else None,
        **{name: int(sum(m.get(name) or 0 for m in symbols.values())) for name in SUMS},
        "below_threshold": below,
        "unfillable_symbols": unfillable,
        "failed_expectations": failures,
        "severities": severities,
        "data_docs": link,
    }
    resource = {
        "prefect.resource.id": f"barkeeper.session.{day}",
        "prefect.resource.name": f"session {day}",
        "barkeeper.session": day,
        "barkeeper.run": run_id,
        "barkeeper.flow": flow,
    }
    related = [_run_resource(run_id, flow)]
    related += [
        {"prefect.resource.id": f"barkeeper.symbol.{s}", "prefect.resource.role": "below-threshold"}
        for s in below[:MAX_RELATED]
    ]
    related += [
        {
            "prefect.resource.id": f"barkeeper.suite.{suite}",
            "prefect.resource.role": "suite-failed",
            "barkeeper.severity": severity,
        }
        for suite, severity in sorted({(f["suite"], f["severity"]) for f in failures})
    ]
    related += [
        {"prefect.resource.id": f"barkeeper.severity.{s}", "prefect.resource.role": "severity"}
        for s in severities
    ]
    events = [{"event": VALIDATED, "resource": resource, "related": related, "payload": payload}]
    reasons = []
    if below:
        reasons.append(f"{len(below)} symbol(s) under {threshold:g} % bar quality")
    if unfillable:
        reasons.append(f"{len(unfillable)} symbol(s) with unfillable bars")
    if "critical" in severities:
        reasons.append("critical expectations failed")
    if reasons:
        degraded = {**payload, "reasons": reasons}
        events.append(
            {"event": DEGRADED, "resource": resource, "related": related, "payload": degraded}
        )
    return events


def landing_events(run_id: str, landed: Sequence[LandedFile], tz: str) -> list[Event]:
    """One `barkeeper.landing.file` per landed file: ingested or rejected, with its counts.

    The payload's `start` / `end` are the exchange-local dates of the file's first and last
    stored bar: the sessions an audit of that file should cover.
    """
    events = []
    for item in landed:
        status = "ingested" if item.status == "done" else "rejected"
        payload = {
            "run_id": run_id,
            "file": item.name,
            "status": status,
            "symbol": item.symbol,
            "read": item.read,
            "stored": item.stored,
            "quarantined": item.quarantined,
            "skipped": item.skipped,
            "reason": item.reason,
            "start": _local_date(item.first_ts, tz),
            "end": _local_date(item.last_ts, tz),
        }
        resource = {
            "prefect.resource.id": f"barkeeper.landing.{item.name}",
            "prefect.resource.name": item.name,
            "barkeeper.status": status,
        }
        if item.symbol:
            resource["barkeeper.symbol"] = item.symbol
        events.append(
            {
                "event": LANDING_FILE,
                "resource": resource,
                "related": [_run_resource(run_id, "nightly_audit")],
                "payload": payload,
            }
        )
    return events


def run_finished_event(
    run_id: str, flow: str, status: str, sessions: Sequence[str], degraded: Sequence[str]
) -> Event:
    """`barkeeper.run.finished`: the run's status, its sessions and the degraded ones."""
    resource = {**_run_resource(run_id, flow), "barkeeper.status": status}
    del resource["prefect.resource.role"]
    payload = {
        "run_id": run_id,
        "flow": flow,
        "status": status,
        "sessions": list(sessions),
        "degraded_sessions": list(degraded),
    }
    return {"event": RUN_FINISHED, "resource": resource, "related": [], "payload": payload}


def run_events(
    run_id: str,
    flow: str,
    status: str,
    report: Mapping[str, Any],
    failed: pd.DataFrame,
    threshold: float,
    links: Mapping[str, str | None] | None = None,
) -> list[Event]:
    """Every session's events, then `barkeeper.run.finished` (landing events come apart).

    `report` is the run report (`run_report` / `audit_document` shape); `failed` the run's
    failed validation results (only the final ones count); `links` each session's Data Docs.
    """
    final = failed[failed["stage"] == "final"] if "stage" in failed else failed
    events: list[Event] = []
    for session in report["sessions"]:
        day = str(session["date"])
        mine = final[final["session"].astype(str) == day] if len(final) else final
        events += session_events(run_id, flow, session, mine, threshold, (links or {}).get(day))
    degraded = [e["payload"]["session"] for e in events if e["event"] == DEGRADED]
    days = [str(s["date"]) for s in report["sessions"]]
    return [*events, run_finished_event(run_id, flow, status, days, degraded)]


def _run_resource(run_id: str, flow: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"barkeeper.run.{run_id}",
        "prefect.resource.role": "barkeeper-run",
        "barkeeper.flow": flow,
    }


def _local_date(ts: int | None, tz: str) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(tz)).date().isoformat()
