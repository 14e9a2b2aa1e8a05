"""Tasks of the nightly audit: I/O around `barkeeper.reports.audit` (files, store, GX)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from sqlalchemy import delete

from barkeeper.core.calendar import Calendar
from barkeeper.errors import InputFileError, ParameterError
from barkeeper.ingest.files import ingest_file
from barkeeper.ingest.paths import (
    confine,
    inside,
    landed_files,
    move_into,
    refuse_landing,
    unsettled_for,
)
from barkeeper.quality.data_docs import run_final_checkpoint
from barkeeper.quality.frames import prepare_bars_1m, prepare_derived, prepare_session_quality
from barkeeper.reports.audit import (
    DERIVED_ORIGIN,
    LandedFile,
    SessionAudit,
    SessionCheck,
    audit_session,
    day_window,
)
from barkeeper.reports.audit_report import quality_rows, summary_markdown
from barkeeper.reports.charts import coverage_chart
from barkeeper.reports.links import ReportsSite
from models.bulk import insert_rows
from models.engine import engine_for
from models.repository import (
    known_symbols,
    quarantined_minutes,
    read_bars,
    record_ingested_file,
)
from models.results import write_session_results, write_validation_results
from models.tables import DEFAULT_SOURCE, Bar, nanos, utcnow

QUALITY_KEY = "barkeeper-audit-quality"
SUMMARY_KEY = "barkeeper-audit-summary"
DONE, REJECTED, WAITING = "done", "rejected", "waiting"


@task(cache_policy=NO_CACHE)
def ingest_landing(
    database_url: str,
    landing_root: str,
    landing: str,
    patterns: list[str],
    settle_seconds: float,
) -> list[LandedFile]:
    """Ingest the settled vendor files of the landing folder; move each to done/ or rejected/.

    The folder is refused before anything moves if it is a system or home folder or holds the
    store. Only files matching `patterns` are taken, and only once unchanged `settle_seconds`;
    newer ones wait for the next run (listed as ``waiting``). A file that changed while it was
    read is left in place for the next run too.
    """
    logger = get_run_logger()
    root = Path(landing_root)
    if landing == "." and not root.exists():
        logger.warning("landing folder %s does not exist: nothing to ingest", root)
        return []
    folder = confine(root, landing, parameter="landing")
    if not folder.is_dir():
        raise ParameterError(f"landing: {folder} is not a folder")
    refuse_landing(folder, database_url)
    engine = engine_for(database_url)
    landed: list[LandedFile] = []
    for path in landed_files(folder, patterns):
        if not inside(folder, path):
            reason = "symlink leads outside the landing folder"
            record_ingested_file(engine, str(path), "", status=REJECTED, reason=reason)
            landed.append(_reject(path, folder, reason))
            continue
        wait = unsettled_for(path, settle_seconds)
        if wait > 0:
            landed.append(_waiting(path, f"changed {settle_seconds - wait:.0f} s ago; taken "
                                         f"once unchanged for {settle_seconds:g} s"))  # fmt: skip
            continue
        before = path.stat()
        try:
            report = ingest_file(engine, path.resolve())
        except InputFileError as error:  # ingest_file recorded the rejection
            landed.append(_reject(path, folder, str(error)))
            continue
        except ParameterError as error:  # e.g. a file name that names no valid symbol
            record_ingested_file(engine, str(path), "", status=REJECTED, reason=str(error))
            landed.append(_reject(path, folder, str(error)))
            continue
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            landed.append(_waiting(path, "changed while it was read; read again next run"))
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
                revised=report.revised,
                reason="; ".join(report.warnings),
                first_ts=report.first_ts,
                last_ts=report.last_ts,
            )
        )
    for item in landed:
        log = logger.info if item.status == DONE else logger.warning
        log("%s → %s %s", item.name, item.status, item.reason or f"({item.stored} bars stored)")
    return landed


def _waiting(path: Path, reason: str) -> LandedFile:
    """A file left where it is for the next run."""
    return LandedFile(name=path.name, status=WAITING, moved_to="", reason=reason)


def _reject(path: Path, folder: Path, reason: str) -> LandedFile:
    """Move a file that cannot be ingested to rejected/ (never deleted)."""
    moved = move_into(path, folder / REJECTED)
    return LandedFile(name=path.name, status=REJECTED, moved_to=str(moved), reason=reason)


@task(cache_policy=NO_CACHE)
def resolve_symbols(
    database_url: str, symbols: list[str], source: str = DEFAULT_SOURCE
) -> list[str]:
    """The symbols to audit: those asked for, else every symbol the source holds."""
    if symbols:
        return list(symbols)
    return sorted(known_symbols(engine_for(database_url), source))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def audit_repository_session(
    database_url: str,
    calendar: str,
    session: date,
    symbols: list[str],
    intervals: list[int],
    source: str = DEFAULT_SOURCE,
) -> SessionAudit:
    """Read one session's bars of a source and audit them against the calendar."""
    cal = Calendar(calendar)
    minutes = cal.session_minutes(session)
    engine = engine_for(database_url)
    window = day_window(cal, session)
    bars = read_bars(engine, symbols, *window, source=source)
    quarantined = quarantined_minutes(engine, symbols, *window, source=source)
    return audit_session(minutes, symbols, bars, intervals, quarantined, source)


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
def store_session(
    database_url: str,
    run_id: str,
    audit: SessionAudit,
    check: SessionCheck,
    source: str = DEFAULT_SOURCE,
) -> int:
    """Write the session's figures and validation results; materialise its derived bars.

    Returns the number of derived bars now in the repository for the session.
    """
    engine = engine_for(database_url)
    metrics = check.with_validation(audit.metrics)
    write_session_results(engine, run_id, audit.session, metrics=metrics, gaps=audit.gaps)
    write_validation_results(engine, check.records(run_id))
    derived = audit.derived_bars().assign(source=source, stored_at=nanos(utcnow()))
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
                Bar.origin == DERIVED_ORIGIN,
                Bar.source == source,
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
    reports_dir: str,
    quality_threshold: float,
    tz: str,
    reports_url: str | None = None,
) -> str:
    """Publish the quality table and the markdown summary (with coverage charts) of the run."""
    charts: dict[date, bytes] = {}
    folder = Path(reports_dir) / "charts" / run_id
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
    site = ReportsSite(Path(reports_dir), reports_url)
    markdown = summary_markdown(run_id, audits, checks, landed, charts, quality_threshold, site)
    create_markdown_artifact(
        markdown=markdown, key=SUMMARY_KEY, description="Nightly audit summary"
    )
    return markdown
