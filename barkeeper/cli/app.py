"""The `barkeeper` command line: parse and validate input once, then call the library."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup
from typer.exceptions import TyperException

from barkeeper.cli.noise import quiet_prefect
from barkeeper.cli.signals import interrupts
from barkeeper.errors import BarkeeperError


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
    """Turn a user's mistake into one line on stderr and exit status 2.

    An interrupt (SIGINT/SIGTERM) ends the command with one line too (`barkeeper.cli.signals`).
    """

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with interrupts(lambda: database_url(kwargs.get("db"))):
                return func(*args, **kwargs)
        except BarkeeperError as error:
            print(f"barkeeper: error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
        except Exception as error:  # a store that cannot be used is one line too
            problem = _store_problem(error, kwargs.get("db"))
            if problem is None:
                raise
            print(f"barkeeper: error: {problem}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def _store_problem(error: Exception, db: str | None) -> str | None:
    """One line for a store that cannot be used (see `models.store_errors`), None for a bug.

    Checked without importing SQLAlchemy: commands that never load it (`--help`) stay fast,
    and an error of a module that was never loaded cannot have been raised.
    """
    if "sqlalchemy" not in sys.modules:
        return None
    from models.store_errors import store_problem

    return store_problem(error, shown_url(database_url(db)))


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show Prefect's logs (INFO and up) on stderr.")
    ] = False,
) -> None:
    """Keep intraday market bars clean while trading sessions are replayed for backtests."""
    quiet_prefect(verbose)


def shown_url(url: str) -> str:
    """`url` as it may be printed or logged: the password masked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def database_url(db: str | None) -> str:
    """The store URL: the flag, else the Secret block `BARKEEPER_DATABASE_BLOCK` names, else the
    settings (environment, `.env`, default file)."""
    from tasks.secrets import run_settings

    return db or run_settings().database_url


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
