"""The `barkeeper` command line: parse and validate input once, then call the library."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from barkeeper.errors import BarkeeperError
from barkeeper.settings import load_settings

app = typer.Typer(
    help="Keep intraday market bars clean while trading sessions are replayed for backtests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Store URL (default: $BARKEEPER_DATABASE_URL, else ./barkeeper.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a user's mistake into one line on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except BarkeeperError as error:
            print(f"barkeeper: error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


@app.callback()
def main() -> None:
    """Keep intraday market bars clean while trading sessions are replayed for backtests."""


def database_url(db: str | None) -> str:
    """The store URL: the flag, else the settings (environment, `.env`, default file)."""
    return db or load_settings().database_url


@app.command()
@user_errors
def init(db: DbOption = None) -> None:
    """Create or upgrade the store's schema."""
    from models.engine import engine_for
    from models.schema import init_db

    url = database_url(db)
    init_db(engine_for(url))
    console.print(f"store ready: {url}")


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
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Ingest the landing folder and audit sessions of the store against the calendar."""
    from barkeeper.audit_cli import render_audit, run_audit

    document = run_audit(database_url(db), start, end, symbols, landing)
    render_audit(document, json_output)


from barkeeper import cli_bench, cli_ingest, cli_replay  # noqa: E402, F401  (commands)
