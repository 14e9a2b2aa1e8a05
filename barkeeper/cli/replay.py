"""Commands that replay and read back runs: `replay`, `report`, `export`, `demo`."""

from __future__ import annotations

import contextvars
import json
import os
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from barkeeper.cli.app import (
    DbOption,
    JsonOption,
    app,
    console,
    database_url,
    existing_store,
    user_errors,
)
from barkeeper.cli.preflight import check_prefect_api
from barkeeper.errors import ParameterError

DateOption = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], show_default=False)]


PATTERN_HINTS = {
    "speed": "max, realtime or a multiplier like 1000x",
    "outages": "HH:MM-HH:MM in exchange time, e.g. 10:00-10:30",
    "symbols": "1-64 characters without commas",
    "feed": "a source name: letters, digits, '.', '_' or '-'",
    "backfill": "source names: letters, digits, '.', '_' or '-', comma-separated",
}


def parameters_error(error: ValidationError) -> ParameterError:
    """The first problem of a parameter model, as one line naming the parameter."""
    first = error.errors()[0]
    names = [str(p) for p in first["loc"] if not isinstance(p, int)]
    where = ".".join(names) or "parameters"
    if first["type"] == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(names[-1], "see --help")
        return ParameterError(f"{where}: {first['input']!r} is not valid; use {hint}")
    message = first["msg"].removeprefix("Value error, ")
    if first["loc"] and isinstance(first.get("input"), str | int | float):
        message += f" (got {first['input']!r})"
    return ParameterError(f"{where}: {message}")


def build_parameters(**values: Any) -> Any:
    from barkeeper.params import ReplayParameters

    try:
        return ReplayParameters(**values)
    except ValidationError as error:
        raise parameters_error(error) from None


def prepare_run(parameters: Any, url: str) -> None:
    """Point this process at the store and check the request before a flow."""
    os.environ["BARKEEPER_DATABASE_URL"] = url
    os.environ["BARKEEPER_DATABASE_BLOCK"] = ""  # resolved into `url` already (--db wins)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    check_prefect_api()
    from barkeeper.core.calendar import Calendar
    from barkeeper.settings import load_settings
    from tasks.replay_plan import preflight

    plan = preflight(parameters, load_settings())
    asked = Calendar(plan.calendar).sessions(parameters.start, parameters.last)
    if plan.sessions[-1] < asked[-1]:
        console.print(
            f"barkeeper: warning: the repository's bars end in session {plan.sessions[-1]}; "
            f"replaying to there, not to {asked[-1]}",
            highlight=False,
            soft_wrap=True,
        )


def run_replay(parameters: Any, url: str, *, quiet: bool) -> dict[str, Any]:
    """Run the replay flow in this process, with a progress bar on stderr unless `quiet`."""
    from barkeeper.quality.gx_helper import start_gx

    start_gx()  # GX's ~3 s import, on the other core, while this process starts the run
    prepare_run(parameters, url)
    from barkeeper.cli.prefect_api import prefect_api
    from flows.replay import replay_sessions

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["report"] = replay_sessions(parameters)
        except BaseException as error:  # handed back to the main thread
            outcome["error"] = error

    with prefect_api():  # the thread runs in this context, where the API is set
        worker = threading.Thread(
            target=contextvars.copy_context().run, args=(target,), name="barkeeper-replay"
        )
        worker.start()
        _follow(worker, quiet=quiet)
    if "error" in outcome:
        raise outcome["error"]
    from barkeeper.reports.report import replay_report
    from models.engine import engine_for

    return replay_report(engine_for(url), outcome["report"])


def _follow(worker: threading.Thread, *, quiet: bool) -> None:
    from barkeeper.live.replay import newest

    if quiet:
        worker.join()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("replay", total=100.0, info="starting")
        while worker.is_alive():
            worker.join(0.2)
            replay = newest()
            if replay is None:
                continue
            done = len(replay.timings)
            total = len(replay.plan.sessions)
            share = replay.session_share()
            progress.update(
                bar,
                completed=100.0 * (done + min(share, 1.0) * (done < total)) / total,
                info=f"session {min(done + 1, total)}/{total} {replay.data.session or ''}",
            )
        progress.update(bar, completed=100.0, info="done")


@app.command()
@user_errors
def replay(
    symbols: Annotated[str, typer.Option(help="Comma-separated, e.g. MSFT,DBB, or all.")],
    start: DateOption,
    end: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    speed: Annotated[str, typer.Option(help="max, realtime or a multiplier like 1000x.")] = "max",
    interval: Annotated[int | None, typer.Option(help="Upkeep interval, session seconds.")] = None,
    derived: Annotated[str | None, typer.Option(help="Derived minutes, e.g. 5,15,30,60.")] = None,
    trailing_days: Annotated[int, typer.Option(help="Prior sessions kept as history.")] = 0,
    extended_hours: Annotated[bool, typer.Option(help="Replay 04:00-20:00 ET.")] = False,
    drop_rate: Annotated[float, typer.Option(help="Share of bars the feed drops.")] = 0.0,
    outage: Annotated[
        list[str] | None, typer.Option(help="Feed outage HH:MM-HH:MM, exchange time (repeat).")
    ] = None,
    corrupt_rate: Annotated[float, typer.Option(help="Share of bars with broken OHLC.")] = 0.0,
    duplicate_rate: Annotated[float, typer.Option(help="Share of bars sent twice.")] = 0.0,
    out_of_order_rate: Annotated[float, typer.Option(help="Share of bars sent late.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of every injected fault.")] = 0,
    fill_policy: Annotated[str, typer.Option(help="none or ffill.")] = "none",
    ffill_limit: Annotated[
        int | None, typer.Option(help="ffill: carry a price at most this many minutes.")
    ] = None,
    quality_threshold: Annotated[
        float | None, typer.Option(help="Completeness % flagged below (default 95).")
    ] = None,
    validation_interval: Annotated[
        int | None, typer.Option(help="GX validation interval, session seconds.")
    ] = None,
    calendar: Annotated[str | None, typer.Option(help="exchange_calendars name (XNYS).")] = None,
    upkeep: Annotated[
        bool | None, typer.Option("--upkeep/--no-upkeep", help="Default DATA_UPKEEP_ENABLED.")
    ] = None,
    prefetch: Annotated[
        bool, typer.Option(help="Read the next session while the current one replays.")
    ] = True,
    handler: Annotated[
        list[str] | None,
        typer.Option(help="Bar handler factory as module:callable, given session_data (repeat)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Replay the sessions in parallel on Dask workers.")
    ] = 1,
    feed: Annotated[
        str | None, typer.Option(help="Source the coordinator streams (default: default).")
    ] = None,
    feed_file: Annotated[
        Path | None, typer.Option(help="CSV/Parquet file streamed as the feed, not imported.")
    ] = None,
    backfill: Annotated[
        str, typer.Option(help="Sources the upkeep fills from, in order, e.g. vendor,default.")
    ] = "default",
    prefer: Annotated[
        str, typer.Option(help="feed or backfill: the bar kept where the sources differ.")
    ] = "feed",
    tolerance_bps: Annotated[
        float | None, typer.Option(help="Price agreement between sources, basis points.")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Replay sessions of 1-minute bars with the upkeep keeping them clean."""
    from barkeeper.params import split_symbols
    from barkeeper.settings import parse_intervals

    try:
        derived_minutes = list(parse_intervals(derived)) if derived else None
    except ValueError as error:
        raise ParameterError(f"--derived: {error}") from None
    url = database_url(db)
    parameters = build_parameters(
        symbols=all_symbols(existing_store(db))
        if symbols.strip() == "all"
        else split_symbols(symbols),
        start=start.date(),
        end=end.date() if end else None,
        speed=speed,
        interval_seconds=interval,
        validation_interval_seconds=validation_interval,
        derived=derived_minutes,
        trailing_days=trailing_days,
        extended_hours=extended_hours,
        fill_policy=fill_policy,
        ffill_limit=ffill_limit,
        quality_threshold=quality_threshold,
        calendar=calendar,
        upkeep_enabled=upkeep,
        prefetch=prefetch,
        handlers=handler or [],
        feed=feed,
        feed_file=str(feed_file) if feed_file is not None else None,
        backfill=split_symbols(backfill),
        prefer=prefer,
        tolerance_bps=tolerance_bps,
        faults={
            "drop_rate": drop_rate,
            "outages": outage or [],
            "corrupt_rate": corrupt_rate,
            "duplicate_rate": duplicate_rate,
            "out_of_order_rate": out_of_order_rate,
            "seed": seed,
        },
    )
    if workers > 1:
        report = run_fanout(parameters, url, workers)
    else:
        report = run_replay(parameters, url, quiet=json_output)
    print_report(report, json_output)
    _warn_no_data(report)


def all_symbols(url: str) -> list[str]:
    """Every symbol of the repository (`--symbols all`)."""
    from models.engine import engine_for
    from models.repository import known_symbols

    symbols = sorted(known_symbols(engine_for(url)))
    if not symbols:
        raise ParameterError("symbols: the repository is empty; import bars first")
    return symbols


def _warn_no_data(report: dict[str, Any]) -> None:
    """A warning line per symbol without data; exit 2 when no symbol had any."""
    from barkeeper.reports.report import no_data_symbols

    empty = no_data_symbols(report)
    for session, symbol in empty:
        print(
            f"barkeeper: warning: {symbol} has no data on {session}: no source has a bar "
            "(no data, not a no-trade session)",
            file=sys.stderr,
        )
    pairs = sum(len(s["symbols"]) for s in report["sessions"])
    if pairs and len(empty) == pairs:
        raise ParameterError(
            "no data: no source has a bar of any symbol in these sessions; "
            "check the dates or import the bars first"
        )


def run_fanout(parameters: Any, url: str, workers: int) -> dict[str, Any]:
    """One run per worker's block of sessions on a local Dask cluster; one report of them all."""
    prepare_run(parameters, url)
    from barkeeper.cli.prefect_api import prefect_api
    from flows.fanout import replay_fanout

    console.print(f"replaying the sessions on {workers} Dask workers…")  # progress: stderr
    with prefect_api():  # one API for the flow and every worker
        result = replay_fanout(parameters, workers=workers)
    from barkeeper.reports.report import fanout_report
    from models.engine import engine_for

    return fanout_report(engine_for(url), result)


def print_report(report: dict[str, Any], json_output: bool) -> None:
    from barkeeper.reports.report import render

    if json_output:
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        render(report, Console(width=max(Console().width, 112)))


@app.command()
@user_errors
def report(
    run: Annotated[str | None, typer.Option("--run", help="Run id.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest run (default).")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show a run's per-symbol quality, gaps, repairs and failed expectations."""
    from barkeeper.reports.report import failed_expectations, failure_lines, run_report
    from models.engine import engine_for, is_read_only
    from models.results import mark_interrupted
    from models.schema import init_db

    if run and latest:
        raise ParameterError("--run and --latest exclude each other; give one")
    engine = engine_for(existing_store(db))
    init_db(engine)
    if not is_read_only(engine):
        mark_interrupted(engine)  # a run whose process was killed shows as interrupted
    result = run_report(engine, run)
    print_report(result, json_output)
    if not json_output:
        for line in failure_lines(failed_expectations(engine, result["run_id"])):
            print(line)


@app.command()
@user_errors
def export(
    symbol: Annotated[str, typer.Option(help="Symbol to export.")],
    date: DateOption,
    interval: Annotated[int, typer.Option(help="Bar size in minutes (1, 5, 15, ...).")] = 1,
    run: Annotated[str | None, typer.Option("--run", help="Run id.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest run.")] = False,
    output_format: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    db: DbOption = None,
) -> None:
    """Print a run's bars of one symbol and session: timestamp, OHLCV, provenance, source."""
    from barkeeper.reports.export import export_bars
    from models.engine import engine_for
    from models.schema import init_db

    if bool(run) == bool(latest):
        raise ParameterError("give exactly one of --run ID or --latest")
    if output_format not in ("csv", "json"):
        raise ParameterError(f"--format: {output_format!r} must be csv or json")
    engine = engine_for(existing_store(db))
    init_db(engine)
    frame = export_bars(engine, run, symbol.upper(), date.date(), interval)
    if output_format == "csv":
        frame.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        sys.stdout.write(frame.to_json(orient="records", indent=2) + "\n")
