"""`barkeeper revisions SYMBOL --date D`: the earlier values of a symbol's bars on one day."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from barkeeper.cli.app import DbOption, JsonOption, app, database_url, user_errors
from barkeeper.errors import ParameterError


@app.command()
@user_errors
def revisions(
    symbol: Annotated[str, typer.Argument(help="The symbol whose bars were revised.")],
    day: Annotated[
        str, typer.Option("--date", help="The day, YYYY-MM-DD, in the exchange's time zone.")
    ],
    source: Annotated[
        str | None, typer.Option(help="Only this named source's revisions (default: every one).")
    ] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the bar values later files replaced: what they were, where from, when replaced."""
    from barkeeper.core.calendar import Calendar
    from barkeeper.ingest.files import validate_source, validate_symbol
    from barkeeper.settings import load_settings
    from models.engine import engine_for
    from models.revisions import read_revisions
    from models.schema import init_db

    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise ParameterError(f"--date: {day!r} is not a date like 2023-07-10") from None
    name = validate_symbol(symbol)
    if source is not None:
        validate_source(source)
    zone = ZoneInfo(str(Calendar(load_settings().calendar).tz))
    start = datetime.combine(when, time(0), tzinfo=zone)
    end = datetime.combine(when + timedelta(days=1), time(0), tzinfo=zone)
    engine = engine_for(database_url(db))
    init_db(engine)
    frame = read_revisions(engine, name, int(start.timestamp()), int(end.timestamp()), source)
    rows = [
        {
            "minute": datetime.fromtimestamp(int(r.ts), zone).isoformat(),
            "ts": int(r.ts),
            **{c: float(getattr(r, c)) for c in ("open", "high", "low", "close", "volume")},
            "source": r.source,
            "file": r.file,
            "replaced_at": r.replaced_at.isoformat(),
            "replaced_by": r.replaced_by,
        }
        for r in frame.itertuples()
    ]
    if json_output:
        print(json.dumps({"symbol": name, "date": when.isoformat(), "revisions": rows}))
        return
    if not rows:
        print(f"{name} {when}: no revised bars")
        return
    table = Table(title=f"revisions of {name} on {when} (earlier values, oldest first)")
    for column in (
        "minute",
        "source",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "file",
        "replaced by",
    ):
        table.add_column(column)
    for r in rows:
        prices = (f"{r[c]:g}" for c in ("open", "high", "low", "close", "volume"))
        replaced = f"{r['replaced_by']} at {r['replaced_at'][:19]}"
        table.add_row(r["minute"][11:16], r["source"], *prices, r["file"], replaced)
    Console().print(table)
