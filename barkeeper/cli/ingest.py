"""`barkeeper import` and `barkeeper synth`: fill the bar repository from files or a generator."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from barkeeper.cli.app import (
    DbOption,
    JsonOption,
    app,
    console,
    database_url,
    shown_url,
    user_errors,
)
from barkeeper.errors import InputFileError, ParameterError
from models.store_errors import store_problem

if TYPE_CHECKING:
    from barkeeper.ingest.files import IngestReport

SYNTH_CELLS_PER_BATCH = 2_000_000  # symbol-minutes generated and written at a time, at most
SYNTH_PROGRESS_STEPS = 20  # batches per run, so the progress bar moves ...
SYNTH_MIN_BATCH = 100  # ... but never fewer symbols per batch than this


@app.command("import")
@user_errors
def import_files(
    paths: Annotated[
        list[Path],
        typer.Argument(help="CSV (.csv, .csv.gz, .zip of one CSV) or Parquet 1-minute bar files."),
    ],
    symbol: Annotated[
        str | None,
        typer.Option(help="Symbol of every file (default: file name up to its first '_')."),
    ] = None,
    tz: Annotated[str, typer.Option(help="Time zone of naive timestamps (IANA name).")] = "UTC",
    stamp: Annotated[
        str, typer.Option(help="open: a stamp is the bar's start; close: its end (minus 1 min).")
    ] = "open",
    timestamp_format: Annotated[
        str | None,
        typer.Option(
            help="Stamp format instead of inferring it: iso8601, epoch_s|ms|us|ns or a "
            "strftime pattern like '%m/%d/%Y %H:%M'."
        ),
    ] = None,
    on_conflict: Annotated[
        str,
        typer.Option(
            help="A bar with other values than the stored one: replace (the old kept as a "
            "revision), keep the stored one, or quarantine the new row."
        ),
    ] = "replace",
    strict: Annotated[bool, typer.Option(help="Exit 2 if any row is quarantined.")] = False,
    source: Annotated[
        str, typer.Option(help="Named source the bars belong to (a vendor, a recorder).")
    ] = "default",
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Import vendor bar files; bad rows go to quarantine, re-imports change nothing.

    Every readable file is imported even if another cannot be read; each unreadable file
    gets one line on stderr and the exit status is then 2 (with --strict also when a row
    was quarantined).
    """
    from barkeeper.ingest.files import (
        ImportOptions,
        ingest_file,
        validate_source,
        validate_symbol,
        validate_tz,
    )
    from models.engine import engine_for
    from models.schema import init_db

    validate_tz(tz)
    validate_source(source)
    if symbol is not None:
        validate_symbol(symbol)
    options = ImportOptions(stamp, timestamp_format, on_conflict)  # type: ignore[arg-type]
    engine = engine_for(database_url(db))
    init_db(engine)
    reports, errors = [], []
    for path in paths:
        try:
            reports.append(
                ingest_file(engine, path, symbol=symbol, tz=tz, options=options, source=source)
            )
            if symbol is None and "_" not in path.name:  # e.g. bars.csv: BARS, is it a ticker?
                taken = reports[-1].symbol
                print(f"barkeeper: warning: {path}: symbol {taken} taken from the file name; "
                      "pass --symbol if that is not the ticker", file=sys.stderr)  # fmt: skip
        except (InputFileError, ParameterError) as error:  # e.g. no symbol in the file name
            errors.append(str(error))
        except Exception as error:  # the store failed: stop here, say what is committed
            problem = store_problem(error, shown_url(database_url(db)))
            if problem is None:
                raise
            errors.append(
                f"{problem}; import stopped at {path}: nothing of it was stored, "
                f"the {len(reports)} file(s) listed before it were committed"
            )
            break
    if json_output:
        print(json.dumps({"files": [r.to_dict() for r in reports]}))
    elif reports:
        _print_reports(reports)
    for error in errors:
        print(f"barkeeper: error: {error}", file=sys.stderr)
    if strict:
        for r in reports:
            if r.quarantined:
                print(f"barkeeper: error: {Path(r.path).name}: {r.quarantined:,} rows "
                      "quarantined (--strict)", file=sys.stderr)  # fmt: skip
                errors.append(r.path)
    if errors:
        raise typer.Exit(2)


def _print_reports(reports: list[IngestReport]) -> None:
    """One table row of counts per file, then each file's stamps, quarantine and warnings."""
    table = Table(title="import")
    table.add_column("file", overflow="fold")
    table.add_column("symbol")
    for name in ("read", "stored", "revised", "quarantined", "skipped"):
        table.add_column(name, justify="right")
    for r in reports:
        counts = (r.read, r.stored, r.revised, r.quarantined, r.skipped)
        table.add_row(Path(r.path).name, r.symbol, *(f"{n:,}" for n in counts))
    console.print(table)
    for r in reports:
        name = Path(r.path).name
        print(f"{name}: stamps: {r.format}")
        if r.reasons:
            reasons = ", ".join(f"{reason} {n:,}" for reason, n in r.reasons.items())
            print(f"{name}: quarantined: {reasons}")
        for warning in r.warnings:
            print(f"{name}: warning: {warning}")


@app.command()
@user_errors
def synth(
    symbols: Annotated[int, typer.Option(help="Number of symbols (SYM0001, …).")],
    start: Annotated[str, typer.Option(help="First session, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last session, YYYY-MM-DD.")],
    illiquid_share: Annotated[
        float, typer.Option(help="Share of symbols trading in only 20-40% of minutes.")
    ] = 0.2,
    missing_rate: Annotated[
        float, typer.Option(help="Share of minutes a liquid symbol misses.")
    ] = 0.02,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Same seed, same bars.")] = 0,
    extended_hours: Annotated[
        bool, typer.Option(help="Also generate pre- and post-market minutes.")
    ] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write realistic random-walk 1-minute bars (some symbols illiquid) to the repository."""
    import numpy as np

    from barkeeper.core.calendar import Calendar
    from barkeeper.core.synth import symbol_names, synthetic_bars
    from barkeeper.settings import load_settings
    from models.engine import engine_for
    from models.repository import upsert_bars
    from models.schema import init_db

    if symbols < 1:
        raise ParameterError(f"--symbols: {symbols} must be 1 or more")
    first, last = _session_date("--start", start), _session_date("--end", end)
    settings = load_settings()
    calendar = Calendar(settings.calendar)
    sessions = calendar.sessions(first, last)
    if not sessions:
        raise ParameterError(f"--start/--end: no {calendar.name} sessions from {start} to {end}")
    minutes = [calendar.session_minutes(s, extended_hours=extended_hours) for s in sessions]
    n_minutes = sum(len(m) for m in minutes)
    names = symbol_names(symbols)
    batch = max(
        min(symbols, SYNTH_MIN_BATCH),  # the illiquid share is exact within each batch
        min(SYNTH_CELLS_PER_BATCH // n_minutes, -(-symbols // SYNTH_PROGRESS_STEPS)),
    )
    engine = engine_for(database_url(db))
    init_db(engine)
    stored = skipped = 0
    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=json_output) as progress:
        task = progress.add_task("symbols", total=len(names))
        for i in range(0, len(names), batch):
            group_seed = int(np.random.SeedSequence([seed, i // batch]).generate_state(1)[0])
            bars = synthetic_bars(
                names[i : i + batch],
                minutes,
                illiquid_share=illiquid_share,
                missing_rate=missing_rate,
                seed=group_seed,
            )
            counts = upsert_bars(engine, bars, origin=f"synth seed={seed}")
            stored, skipped = stored + counts.stored, skipped + counts.skipped
            progress.advance(task, len(names[i : i + batch]))
    summary = {"symbols": len(names), "sessions": len(sessions), "stored": stored,
               "skipped": skipped}  # fmt: skip
    if json_output:
        print(json.dumps(summary))
    else:
        console.print(
            f"synth: {stored:,} bars stored ({skipped:,} already there) for {len(names):,} "
            f"symbols over {len(sessions)} session(s) {sessions[0]} to {sessions[-1]}"
        )


def _session_date(option: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ParameterError(f"{option}: {value!r} is not a date like 2023-07-10") from None


@app.command()
@user_errors
def init(db: DbOption = None) -> None:
    """Create or upgrade the store's schema."""
    from models.engine import engine_for
    from models.schema import init_db

    url = database_url(db)
    init_db(engine_for(url))
    console.print(f"store ready: {shown_url(url)}")
