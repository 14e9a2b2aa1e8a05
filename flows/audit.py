"""Flow `nightly_audit`: ingest landed files, audit sessions, derive bars, validate, report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from barkeeper.core.calendar import Calendar
from barkeeper.errors import ParameterError
from barkeeper.params import AuditParameters
from barkeeper.reports.audit import completed_sessions
from barkeeper.reports.audit_report import audit_document
from models.engine import engine_for
from models.results import create_run, finish_run
from tasks.audit import (
    audit_repository_session,
    check_session,
    ingest_landing,
    publish_audit_artifacts,
    resolve_symbols,
    store_session,
)
from tasks.events import emit_run_events
from tasks.secrets import run_settings

FLOW_NAME = "nightly_audit"
DEFAULT_AUDIT = AuditParameters()


@flow(name=FLOW_NAME, description="Ingest new vendor files and audit the last session(s).")
def nightly_audit(audit: AuditParameters = DEFAULT_AUDIT) -> dict[str, Any]:
    """Ingest the landing folder, audit sessions against the calendar and publish the report."""
    logger = get_run_logger()
    settings = run_settings(calendar=audit.calendar, quality_threshold=audit.quality_threshold)
    calendar = Calendar(settings.calendar)
    if audit.start is not None:
        sessions = calendar.sessions(audit.start, audit.end or audit.start)
        if not sessions:
            raise ParameterError(
                f"start/end: no {calendar.name} session between {audit.start} and "
                f"{audit.end or audit.start}"
            )
    else:
        sessions = completed_sessions(calendar, datetime.now(UTC), audit.last_sessions)
    intervals = sorted(set(audit.derived or settings.data_upkeep_derived_intervals))
    url = settings.database_url
    reports = settings.reports_dir.resolve()
    run_id = flow_run.get_id() or "local"
    engine = engine_for(url)
    create_run(engine, run_id, FLOW_NAME, audit.model_dump(mode="json"))
    try:
        landed = ingest_landing(
            url,
            str(settings.landing_dir),
            audit.landing,
            list(settings.landing_patterns),
            settings.landing_settle_seconds,
        )
        symbols = resolve_symbols(url, audit.symbols, audit.source)
        if not symbols:
            raise ParameterError("symbols: the store holds no bars yet; import or land some first")
        logger.info("auditing %d symbols over %s", len(symbols), [str(s) for s in sessions])
        audits, checks = [], []
        for session in sessions:
            result = audit_repository_session(
                url, calendar.name, session, symbols, intervals, audit.source
            )
            check = check_session(
                run_id, result, str(reports / "data_docs"), settings.quality_threshold
            )
            store_session(url, run_id, result, check, audit.source)
            audits.append(result)
            checks.append(check)
        publish_audit_artifacts(
            run_id,
            audits,
            checks,
            landed,
            str(reports),
            settings.quality_threshold,
            str(calendar.tz),
            settings.reports_url,
        )
    except Exception as error:
        finish_run(engine, run_id, "failed", error=str(error))
        raise
    data_docs = checks[-1].page if checks else ""
    degraded = not all(c.success for c in checks) or any(f.status == "rejected" for f in landed)
    document = audit_document(run_id, data_docs, audits, checks, landed)
    status = "degraded" if degraded else "completed"
    finish_run(
        engine,
        run_id,
        status,
        data_docs=data_docs,
        stats={"sessions": len(sessions), "symbols": len(symbols), "files": len(landed)},
    )
    pages = {c.session.isoformat(): str(c.page) for c in checks}
    threshold = settings.quality_threshold
    emit_run_events(run_id, FLOW_NAME, status, threshold, pages, landed, str(calendar.tz))
    return document
