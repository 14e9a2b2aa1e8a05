"""The `barkeeper` command line: parse and validate input once, then call the library."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import OperationalError
from typer.core import TyperGroup
from typer.exceptions import TyperException

from barkeeper.errors import BarkeeperError
from barkeeper.settings import load_settings


class Commands(TyperGroup):
    """The command group: a usage mistake (unknown option, bad value) is one line, exit 2.

    typer would draw a multi-line box; the contract is one line on stderr for any mistake.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except TyperException as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # bare `barkeeper`: the help
                print(error.format_message(), file=sys.stderr)
            else:
                print(f"barkeeper: error: {' '.join(error.format_message().split())}",
                      file=sys.stderr)  # fmt: skip
            sys.exit(getattr(error, "exit_code", 2))
        except typer.Abort:
            print("barkeeper: aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=Commands,
    help="Keep intraday market bars clean while trading sessions are replayed for backtests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: wraps at the terminal, never cuts a flag name
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
        except OperationalError as error:  # unreachable, refused or still locked after waiting
            detail = str(error.orig if error.orig is not None else error).strip()
            print(f"barkeeper: error: the store cannot be used: {detail.splitlines()[0]}",
                  file=sys.stderr)  # fmt: skip
            raise typer.Exit(2) from None

    return wrapper


@app.callback()
def main() -> None:
    """Keep intraday market bars clean while trading sessions are replayed for backtests."""


def shown_url(url: str) -> str:
    """`url` as it may be printed or logged: the password masked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def database_url(db: str | None) -> str:
    """The store URL: the flag, else the settings (environment, `.env`, default file)."""
    return db or load_settings().database_url


def existing_store(db: str | None) -> str:
    """The store URL, refusing a SQLite file that does not exist (reading must not create it)."""
    from sqlalchemy.engine import make_url

    url = database_url(db)
    parsed = make_url(url)
    path = parsed.database or ""
    local = parsed.get_backend_name() == "sqlite" and path not in ("", ":memory:")
    if local and not Path(path).is_file():
        raise BarkeeperError(
            f"no store at {path}; create one with `barkeeper import PATH` (or give --db URL)"
        )
    return url
