"""Task `emit_run_events`: a run's outcome as Prefect events, for automations to react to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from barkeeper.reports.audit import LandedFile
from barkeeper.reports.events import landing_events, run_events
from barkeeper.reports.links import ReportsSite
from barkeeper.reports.report import failed_expectations, run_report
from models.engine import engine_for
from tasks.secrets import run_settings


@task(cache_policy=NO_CACHE)
def emit_run_events(
    run_id: str,
    flow: str,
    status: str,
    threshold: float,
    pages: Mapping[str, str],
    landed: Sequence[LandedFile] = (),
    tz: str = "UTC",
) -> list[str]:
    """Emit the landing, session and run events of a finished run; return their names.

    `pages` maps each session (YYYY-MM-DD) to its Data Docs page. Events are best effort: a
    failure to build or send them is logged and never changes the run's outcome.
    """
    logger = get_run_logger()
    settings = run_settings()
    site = ReportsSite(Path(settings.reports_dir), settings.reports_url)
    links = {day: site.link(page) or page for day, page in pages.items()}
    try:
        engine = engine_for(settings.database_url)
        report = run_report(engine, run_id)
        failed = failed_expectations(engine, run_id)
        events = landing_events(run_id, landed, tz)
        events += run_events(run_id, flow, status, report, failed, threshold, links)
        for event in events:
            emit_event(**event)
    except Exception as error:  # the run's results stand without their events
        logger.warning("events not emitted: %s: %s", type(error).__name__, error)
        return []
    logger.info("emitted %d events", len(events))
    return [e["event"] for e in events]
