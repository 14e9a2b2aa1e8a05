"""`barkeeper bench`: run the benchmark suite and print or save the figures."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from barkeeper.cli import JsonOption, app, console, user_errors
from barkeeper.errors import ParameterError


@app.command()
@user_errors
def bench(
    sections: Annotated[
        str, typer.Option(help="Comma-separated: kernel,coordinator,memory,store,gx,replay.")
    ] = "kernel,coordinator,memory,store,gx,replay",
    symbols: Annotated[int, typer.Option(min=10, max=20_000, help="Symbols per session.")] = 2000,
    postgres: Annotated[
        str | None, typer.Option(help="PostgreSQL URL for the store section (optional).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Measure barkeeper against its baselines (median of several runs, one process)."""
    from barkeeper.bench import SECTIONS, run_benchmarks

    chosen = tuple(s.strip() for s in sections.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise ParameterError(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    results = run_benchmarks(
        chosen,
        symbols=symbols,
        postgres_url=postgres,
        on_section=lambda name: console.print(f"[dim]bench: {name}…[/]"),
    )
    if json_output:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for name, figures in results.items():
        table = Table(title=name, title_justify="left", show_header=False)
        for key, value in figures.items():
            table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else str(value))
        console.print(table)
