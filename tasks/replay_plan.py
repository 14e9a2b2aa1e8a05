"""The replay's plan: its parameters resolved against settings, then checked against the store
(sources, symbols, writable store and reports folder) before anything runs.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from barkeeper.core.calendar import Calendar
from barkeeper.errors import ParameterError, StoreError
from barkeeper.ingest.feed import FileFeed
from barkeeper.live.coordinator import parse_speed
from barkeeper.live.faults import FaultConfig, parse_outage
from barkeeper.live.handlers import handler_factory
from barkeeper.live.replay import ReplayPlan
from barkeeper.live.upkeep_config import UpkeepConfig
from barkeeper.params import ReplayParameters
from barkeeper.reports.folders import writable_folder
from barkeeper.settings import Settings
from models.engine import check_writable, engine_for, is_read_only
from models.repository import last_bar_ts, symbols_with_bars
from models.schema import init_db
from models.sources import source_names
from models.tables import DEFAULT_SOURCE


def make_plan(replay: ReplayParameters, settings: Settings, run_id: str) -> ReplayPlan:
    """Resolve parameters against settings and the calendar; raise on anything unusable."""
    calendar = Calendar(replay.calendar or settings.calendar)
    parse_speed(replay.speed)  # e.g. 0x: a one-line error here, not a failed task later
    span = f"calendar {calendar.name} covers {calendar.first_session} to {calendar.last_session}"
    if replay.start < calendar.first_session:
        raise ParameterError(f"start: {replay.start} is before its first session; {span}")
    sessions = calendar.sessions(replay.start, replay.last)
    if not sessions:
        raise ParameterError(
            f"start/end: no {calendar.name} session between {replay.start} and {replay.last}"
            f" ({span})"
        )
    faults = replay.faults
    return ReplayPlan(
        run_id=run_id,
        database_url=settings.database_url,
        symbols=tuple(replay.symbols),
        sessions=tuple(sessions),
        calendar=calendar.name,
        speed=replay.speed,
        extended_hours=replay.extended_hours,
        trailing_days=replay.trailing_days,
        derived=tuple(sorted(set(replay.derived or settings.data_upkeep_derived_intervals))),
        check_interval_s=replay.interval_seconds or settings.data_upkeep_check_interval_seconds,
        validation_interval_s=(
            replay.validation_interval_seconds or settings.data_upkeep_validation_interval_seconds
        ),
        upkeep_enabled=(
            settings.data_upkeep_enabled if replay.upkeep_enabled is None else replay.upkeep_enabled
        ),
        upkeep=UpkeepConfig(
            retry_missing_bars=settings.data_upkeep_retry_missing_bars,
            max_retries=settings.data_upkeep_max_retries,
            auto_compute_derived=settings.data_upkeep_auto_compute_derived,
            fill_policy=replay.fill_policy,
            ffill_limit=replay.ffill_limit,
            reconcile=bool(replay.feed_file) or replay.feed_source not in replay.backfill,
            prefer=replay.prefer,
            tolerance_bps=(
                settings.tolerance_bps if replay.tolerance_bps is None else replay.tolerance_bps
            ),
            volume_tolerance=settings.volume_tolerance,
        ),
        faults=FaultConfig(
            drop_rate=faults.drop_rate,
            outages=tuple(parse_outage(w) for w in faults.outages),
            duplicate_rate=faults.duplicate_rate,
            out_of_order_rate=faults.out_of_order_rate,
            corrupt_rate=faults.corrupt_rate,
            seed=faults.seed,
            tz=str(calendar.tz),
        ),
        quality_threshold=(
            settings.quality_threshold
            if replay.quality_threshold is None
            else replay.quality_threshold
        ),
        reports_dir=str(settings.reports_dir),
        reports_url=settings.reports_url,
        prefetch=replay.prefetch,
        handlers=tuple(replay.handlers),
        feed=replay.feed_source,
        feed_file=replay.feed_file or "",
        backfill=tuple(dict.fromkeys(replay.backfill)),
    )


def preflight(replay: ReplayParameters, settings: Settings, run_id: str = "") -> ReplayPlan:
    """The run's plan, after checking the store knows its sources and every symbol (raises
    ParameterError; InputFileError for a feed file that cannot be read)."""
    plan = make_plan(replay, settings, run_id)
    writable_folder(plan.reports_dir, "BARKEEPER_REPORTS_DIR")
    engine = engine_for(plan.database_url)
    init_db(engine)
    if is_read_only(engine):
        raise StoreError(
            f"the store {make_url(plan.database_url).render_as_string(hide_password=True)} "
            "is read-only; "
            "replay needs a writable store (`report` and `export` work on this one)"
        )
    check_writable(engine)
    feed_file = FileFeed.open(plan.feed_file) if plan.feed_file else None
    known = set(feed_file.symbols if feed_file else ())
    held = {name: symbols_with_bars(engine, plan.symbols, name) for name in read_sources(plan)}
    named = [("backfill", name) for name in plan.backfill]
    for option, name in named if plan.feed_file else [("feed", plan.feed), *named]:
        if held[name] or name == DEFAULT_SOURCE:  # an empty store: see the symbols
            continue
        stored = source_names(engine)  # the error's list: a scan, on this path only
        if name not in stored:
            raise ParameterError(
                f"{option}: no source {name!r} in the repository (sources: "
                f"{', '.join(stored) or 'none'}); import with `barkeeper import PATH --source NAME`"
            )
    known.update(*held.values())
    unknown = sorted(set(plan.symbols) - known)
    if unknown:
        raise ParameterError(
            f"symbols: {', '.join(unknown)} not in the repository; import them first "
            "(barkeeper import PATH)"
        )
    for path in plan.handlers:
        handler_factory(path)
    file_last = int(feed_file.parsed.bars["ts"].max()) if feed_file and feed_file.symbols else 0
    return within_repository(plan, engine, file_last)


def read_sources(plan: ReplayPlan) -> tuple[str, ...]:
    """The repository sources the run reads: the feed's (unless a file is the feed), then the
    backfill sources."""
    return tuple(dict.fromkeys((*(() if plan.feed_file else (plan.feed,)), *plan.backfill)))


def within_repository(plan: ReplayPlan, engine: Engine, file_last: int = 0) -> ReplayPlan:
    """The plan cut at the session of the last bar of its symbols the run can read (in the
    sources it reads, or `file_last`, a feed file's last stamp).

    Sessions after it could only be empty (a range past the data, e.g. `--end 2099-12-31`).
    """
    lasts = (last_bar_ts(engine, s, name) for name in read_sources(plan) for s in plan.symbols)
    last_ts = max((file_last, *(ts for ts in lasts if ts is not None)))
    calendar = Calendar(plan.calendar)
    last = pd.Timestamp(last_ts, unit="s", tz="UTC").tz_convert(calendar.tz).date()
    kept = tuple(s for s in plan.sessions if s <= last)
    if not kept:
        raise ParameterError(
            f"start: the repository's bars of {', '.join(plan.symbols)} end on {last}, "
            f"before {plan.sessions[0]}; import newer bars or start earlier"
        )
    return replace(plan, sessions=kept)
