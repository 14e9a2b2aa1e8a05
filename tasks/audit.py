"""Tasks of the nightly audit: I/O around `barkeeper.reports.audit` (files, store, GX)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from sqlalchemy import delete

from barkeeper.core.calendar import Calendar
from barkeeper.errors import InputFileError, ParameterError
from barkeeper.ingest.files import ingest_file
from barkeeper.ingest.paths import confine, inside, landed_files, move_into
from barkeeper.quality.data_docs import run_final_checkpoint
from barkeeper.quality.frames import prepare_bars_1m, prepare_derived, prepare_session_quality
from barkeeper.reports.audit import (
    DERIVED_SOURCE,
    LandedFile,
    SessionAudit,
    SessionCheck,
    audit_session,
    day_window,
)
from barkeeper.reports.audit_report import quality_rows, summary_markdown
from barkeeper.reports.charts import coverage_chart
from models.bulk import insert_rows
from models.engine import engine_for
from models.repository import known_symbols, read_bars, record_ingested_file
from models.results import write_session_results, write_validation_results
from models.tables import Bar

QUALITY_KEY = "barkeeper-audit-quality"
SUMMARY_KEY = "barkeeper-audit-summary"
DONE, REJECTED = "done", "rejected"


@task(cache_policy=NO_CACHE)
def ingest_landing(database_url: str, landing_root: str, landing: str) -> list[LandedFile]:
    """Ingest every file waiting in the landing folder; move each to done/ or rejected/."""
    logger = get_run_logger()
    root = Path(landing_root)
    if landing == "." and not root.exists():
        logger.warning("landing folder %s does not exist: nothing to ingest", root)
        return []
    folder = confine(root, landing, parameter="landing")
    if not folder.is_dir():
        raise ParameterError(f"landing: {folder} is not a folder")
    engine = engine_for(database_url)
    landed: list[LandedFile] = []
    for path in landed_files(folder):
        if not inside(folder, path):
            reason = "symlink leads outside the landing folder"
            record_ingested_file(engine, str(path), "", status=REJECTED, reason=reason)
            landed.append(_reject(path, folder, reason))
            continue
        try:
            report = ingest_file(engine, path.resolve())
        except InputFileError as error:  # ingest_file recorded the rejection
            landed.append(_reject(path, folder, str(error)))
            continue
        except ParameterError as error:  # e.g. a file name that names no valid symbol
            record_ingested_file(engine, str(path), "", status=REJECTED, reason=str(error))
            landed.append(_reject(path, folder, str(error)))
            continue
        moved = move_into(path, folder / DONE)
        landed.append(
            LandedFile(
                name=path.name,
                status=DONE,
                moved_to=str(moved),
                symbol=report.symbol,
                read=report.read,
                stored=report.stored,
                quarantined=report.quarantined,
                skipped=report.skipped,
            )
        )
    for item in landed:
        log = logger.info if item.status == DONE else logger.warning
        log("%s → %s %s", item.name, item.status, item.reason or f"({item.stored} bars stored)")
    return landed


def _reject(path: Path, folder: Path, reason: str) -> LandedFile:
    """Move a file that cannot be ingested to rejected/ (never deleted)."""
    moved = move_into(path, folder / REJECTED)
    return LandedFile(name=path.name, status=REJECTED, moved_to=str(moved), reason=reason)


@task(cache_policy=NO_CACHE)
def resolve_symbols(database_url: str, symbols: list[str]) -> list[str]:
    """The symbols to audit: those asked for, else every symbol the repository holds."""
    if symbols:
        return list(symbols)
    return sorted(known_symbols(engine_for(database_url)))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def audit_repository_session(
    database_url: str, calendar: str, session: date, symbols: list[str], intervals: list[int]
) -> SessionAudit:
    """Read one session's repository bars and audit them against the calendar."""
    cal = Calendar(calendar)
    minutes = cal.session_minutes(session)
    bars = read_bars(engine_for(database_url), symbols, *day_window(cal, session))
    return audit_session(minutes, symbols, bars, intervals)


@task(cache_policy=NO_CACHE)
def check_session(
    run_id: str, audit: SessionAudit, data_docs_dir: str, quality_threshold: float
) -> SessionCheck:
    """Validate the session with the GX suites in one checkpoint that builds its Data Docs."""
    bars = audit.panel.to_frame()
    frames = {
        "bars_1m": prepare_bars_1m(bars, audit.minutes.minutes),
        "bars_derived": prepare_derived(audit.derived_for_validation(), bars),
        "session_quality": prepare_session_quality(audit.metrics),
    }
    report = run_final_checkpoint(
        run_id,
        audit.session.isoformat(),
        frames,
        Path(data_docs_dir),
        parameters={"quality_threshold": quality_threshold},
    )
    return SessionCheck.from_results(audit.session, report.results, report.page, report.index)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def store_session(database_url: str, run_id: str, audit: SessionAudit, check: SessionCheck) -> int:
    """Write the session's figures and validation results; materialise its derived bars.

    Returns the number of derived bars now in the repository for the session.
    """
    engine = engine_for(database_url)
    metrics = check.with_validation(audit.metrics)
    write_session_results(
        engine, run_id, audit.session, metrics=metrics, gaps=audit.gaps, bars=pd.DataFrame()
    )
    write_validation_results(engine, check.records(run_id))
    derived = audit.derived_bars()
    start, end = int(audit.minutes.minutes[0]), audit.minutes.close_ts
    symbols = list(audit.panel.symbols)
    # Replace the session's derived bars in one transaction: re-running gives the same rows,
    # and a bucket that lost its last 1m bar loses its derived bar too.
    with engine.begin() as conn:
        conn.execute(
            delete(Bar).where(
                Bar.symbol.in_(symbols),
                Bar.interval.in_(sorted(audit.derived)),
                Bar.ts >= start,
                Bar.ts < end,
                Bar.source == DERIVED_SOURCE,
            )
        )
        insert_rows(conn, Bar, derived, on_conflict="update")
    return len(derived)


@task(cache_policy=NO_CACHE)
def publish_audit_artifacts(
    run_id: str,
    audits: list[SessionAudit],
    checks: list[SessionCheck],
    landed: list[LandedFile],
    charts_dir: str,
    quality_threshold: float,
    tz: str,
) -> str:
    """Publish the quality table and the markdown summary (with coverage charts) of the run."""
    charts: dict[date, bytes] = {}
    folder = Path(charts_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for audit in audits:
        png = coverage_chart(
            audit.minutes.minutes,
            audit.coverage,
            audit.panel.symbols,
            f"Repository coverage {audit.session.isoformat()} · {len(audit.panel.symbols)} symbols",
            tz=tz,
        )
        (folder / f"coverage-{audit.session.isoformat()}.png").write_bytes(png)
        charts[audit.session] = png
    rows = quality_rows(audits, checks, quality_threshold)
    create_table_artifact(
        table=rows,
        key=QUALITY_KEY,
        description=f"Per-symbol bar quality of the audited sessions (run {run_id}).",
    )
    markdown = summary_markdown(run_id, audits, checks, landed, charts, quality_threshold)
    create_markdown_artifact(
        markdown=markdown, key=SUMMARY_KEY, description="Nightly audit summary"
    )
    return markdown
