"""`barkeeper audit`: check the input once, run the `nightly_audit` flow in-process, print it.

Input is validated here, before the flow starts, so a user's mistake is one line on stderr and
never a failed flow run with a traceback in its log.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from barkeeper.cli.app import DbOption, JsonOption, app, database_url, user_errors
from barkeeper.core.vocabulary import LEGEND, threshold_legend
from barkeeper.errors import ParameterError
from barkeeper.settings import load_settings, temporary_environment

if TYPE_CHECKING:
    from barkeeper.params import AuditParameters


def audit_parameters(
    start: str | None, end: str | None, symbols: str | None, source: str = "default"
) -> AuditParameters:
    """Parse the command line's text into the flow's parameters; one readable error if invalid."""
    from pydantic import ValidationError

    from barkeeper.core.calendar import Calendar
    from barkeeper.params import AuditParameters, split_symbols

    try:
        params = AuditParameters(
            start=start,
            end=end,
            symbols=split_symbols(symbols) if symbols is not None else [],
            source=source,
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "parameters"
        raise ParameterError(f"{where}: {first['msg']}") from None
    if params.start is not None:
        calendar = Calendar(load_settings().calendar)
        last = params.end or params.start
        if not calendar.sessions(params.start, last):
            raise ParameterError(
                f"--start/--end: no {calendar.name} session from {params.start} to {last}"
            )
    return params


def run_audit(
    database_url: str,
    start: str | None,
    end: str | None,
    symbols: str | None,
    landing: str | None,
    source: str = "default",
) -> dict[str, Any]:
    """Run `nightly_audit` in this process against `database_url`; return its JSON document."""
    from barkeeper.cli.prefect_api import prefect_api
    from barkeeper.ingest.paths import refuse_landing
    from flows.audit import nightly_audit
    from models.engine import engine_for
    from models.schema import init_db

    params = audit_parameters(start, end, symbols, source)
    env = {"BARKEEPER_DATABASE_URL": database_url, "BARKEEPER_DATABASE_BLOCK": ""}
    if landing is not None:
        folder = Path(landing)
        if not folder.is_dir():
            raise ParameterError(f"--landing: {landing!r} is not a folder")
        refuse_landing(folder, database_url)  # before anything moves
        env["BARKEEPER_LANDING_DIR"] = str(folder.resolve())
    init_db(engine_for(database_url))
    with temporary_environment(env), prefect_api():
        return nightly_audit(audit=params)


def render_audit(document: Mapping[str, Any], as_json: bool) -> None:
    """Print the audit as one JSON document, or as a table people read."""
    from rich.console import Console
    from rich.table import Table

    out = Console()
    if as_json:
        sys.stdout.write(json.dumps(document) + "\n")
        return
    table = Table(title=f"audit {document['run_id']}")
    headers = ("session", "symbol", "expected", "actual", "quality %", "complete %", "gaps")
    for name in (*headers, "missing"):
        table.add_column(name, justify="left" if name in ("session", "symbol") else "right")
    table.add_column("valid")
    for session in document["sessions"]:
        for symbol, m in session["symbols"].items():
            table.add_row(
                session["date"],
                symbol,
                str(m["expected_bars"]),
                str(m["actual_bars"]),
                f"{m['bar_quality']:.2f}",
                f"{m['completeness']:.2f}",
                str(m["gaps"]),
                str(m["missing_bars"]),
                "no data" if m["no_data"] else "yes" if m["validation_success"] else "[red]no[/]",
            )
    out.print(table)
    out.print(f"{LEGEND}; {threshold_legend(load_settings().quality_threshold)}", soft_wrap=True)
    for session in document["sessions"]:
        empty = [s for s, m in session["symbols"].items() if m["no_data"]]
        if empty and len(empty) == len(session["symbols"]):
            print(f"barkeeper: warning: {session['date']}: no data for any symbol", file=sys.stderr)
        elif empty:
            print(
                f"barkeeper: warning: {session['date']}: no data for {', '.join(empty)}",
                file=sys.stderr,
            )
    for item in document.get("files", []):
        detail = item["reason"] if item["status"] != "done" else f"{item['stored']} stored"
        out.print(f"{item['name']}: {item['status']} ({detail})", highlight=False)
    if document.get("data_docs"):
        out.print(f"Data Docs: {document['data_docs']}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def audit(
    start: Annotated[str | None, typer.Option(help="First session, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last session (default: the start).")] = None,
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: all in the store).")
    ] = None,
    landing: Annotated[
        str | None,
        typer.Option(help="Landing folder to ingest first (default: $BARKEEPER_LANDING_DIR)."),
    ] = None,
    source: Annotated[str, typer.Option(help="Named source to audit.")] = "default",
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Ingest the landing folder and audit sessions of the store against the calendar."""
    document = run_audit(database_url(db), start, end, symbols, landing, source)
    render_audit(document, json_output)
