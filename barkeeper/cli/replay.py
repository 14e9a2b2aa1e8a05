"""Commands that replay and read back runs: `replay`, `report`, `export`, `demo`."""

from __future__ import annotations

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
    shown_url,
    user_errors,
)
from barkeeper.errors import ParameterError

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"
DateOption = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], show_default=False)]


PATTERN_HINTS = {
    "speed": "max, realtime or a multiplier like 1000x",
    "outages": "HH:MM-HH:MM in exchange time, e.g. 10:00-10:30",
    "symbols": "1-64 characters without commas",
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
    """Point this process at the store, quieten Prefect, and check the request before a flow."""
    os.environ["BARKEEPER_DATABASE_URL"] = url
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from barkeeper.settings import load_settings
    from tasks.replay import preflight

    preflight(parameters, load_settings())


def run_replay(parameters: Any, url: str, *, quiet: bool) -> dict[str, Any]:
    """Run the replay flow in this process, with a progress bar on stderr unless `quiet`."""
    prepare_run(parameters, url)
    from flows.replay import replay_sessions

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["report"] = replay_sessions(parameters)
        except BaseException as error:  # handed back to the main thread
            outcome["error"] = error

    worker = threading.Thread(target=target, name="barkeeper-replay")
    worker.start()
    _follow(worker, quiet=quiet)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["report"]


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
    _print_report(report, json_output)
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
    """Each session as a run of its own on a local Dask cluster; one report of them all."""
    prepare_run(parameters, url)
    from flows.fanout import replay_fanout

    console.print(f"replaying the sessions on {workers} Dask workers…")  # progress: stderr
    result = replay_fanout(parameters, workers=workers)
    return {
        "run_id": ",".join(result["run_ids"]),
        "run_ids": result["run_ids"],
        "status": "completed",
        "data_docs": "",
        "sessions": result["sessions"],
    }


def _print_report(report: dict[str, Any], json_output: bool) -> None:
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
    from models.engine import engine_for
    from models.results import mark_interrupted
    from models.schema import init_db

    if run and latest:
        raise ParameterError("--run and --latest exclude each other; give one")
    engine = engine_for(existing_store(db))
    init_db(engine)
    mark_interrupted(engine)  # a run whose process was killed shows as interrupted
    result = run_report(engine, run)
    _print_report(result, json_output)
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
    """Print a run's bars of one symbol and session: timestamp, OHLCV, provenance."""
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


@app.command()
@user_errors
def demo(db: DbOption = None) -> None:
    """Import the bundled real sample and replay it through a lossy feed."""
    from barkeeper.ingest.files import ingest_file
    from barkeeper.settings import load_settings
    from models.engine import engine_for
    from models.schema import init_db

    url = database_url(db)
    engine = engine_for(url)
    init_db(engine)
    files = sorted(SAMPLE_DIR.glob("*.csv"))
    for path in files:
        result = ingest_file(engine, path)
        print(
            f"imported {path.name}: read {result.read}, stored {result.stored}, "
            f"quarantined {result.quarantined}, skipped {result.skipped}"
        )
    symbols = [p.name.split("_", 1)[0] for p in files]
    print(
        "replaying the sample with a lossy feed: 5% dropped, an outage 10:00-10:20, "
        "1% corrupted, 1% late, 1% duplicated"
    )
    parameters = build_parameters(
        symbols=symbols,
        start="2023-07-10",
        end="2023-07-13",
        faults={
            "drop_rate": 0.05,
            "outages": ["10:00-10:20"],
            "corrupt_rate": 0.01,
            "out_of_order_rate": 0.01,
            "duplicate_rate": 0.01,
            "seed": 7,
        },
    )
    report = run_replay(parameters, url, quiet=False)
    _print_report(report, json_output=False)
    index = (Path(load_settings().reports_dir) / "data_docs" / "index.html").resolve()
    print(f"\nstore:          {shown_url(url)}")
    print(f"Data Docs:      {index}")
    print("next, try:")
    for line in DEMO_NEXT:
        print(f"  {line}")


DEMO_NEXT = (
    "barkeeper report --latest            # the run again, with failed expectations",
    "barkeeper export --latest --symbol DBB --date 2023-07-10 --interval 5",
    "barkeeper replay --symbols all --start 2023-07-10 --fill-policy ffill --ffill-limit 5",
)
"""The three commands the demo suggests (run as written by tests/system/test_first_hour.py)."""
