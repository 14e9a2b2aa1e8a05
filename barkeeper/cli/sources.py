"""`barkeeper sources`: the named sources of the bar repository and what each holds."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from barkeeper.cli.app import DbOption, JsonOption, app, console, database_url, user_errors


@app.command()
@user_errors
def sources(json_output: JsonOption = False, db: DbOption = None) -> None:
    """List each source of 1-minute bars: its symbols, bar count and first/last minute."""
    from barkeeper.core.panel import ts_to_utc
    from models.engine import engine_for
    from models.schema import init_db
    from models.sources import list_sources

    engine = engine_for(database_url(db))
    init_db(engine)
    rows = list_sources(engine)
    listed = []
    for name, frame in rows.groupby("source", sort=True):
        first, last = ts_to_utc([frame["first_ts"].min(), frame["last_ts"].max()])
        listed.append(
            {
                "source": str(name),
                "symbols": frame["symbol"].tolist(),
                "bars": int(frame["bars"].sum()),
                "first_minute": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "last_minute": last.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    if json_output:
        print(json.dumps({"sources": listed}))
        return
    if not listed:
        console.print("no sources yet: import bars with `barkeeper import PATH --source NAME`")
        return
    table = Table(title="sources")
    for name in ("source", "symbols", "bars", "first minute (UTC)", "last minute (UTC)"):
        table.add_column(name, justify="right" if name == "bars" else "left")
    for item in listed:
        table.add_row(
            item["source"],
            ", ".join(item["symbols"]),
            f"{item['bars']:,}",
            item["first_minute"],
            item["last_minute"],
        )
    Console().print(table)
