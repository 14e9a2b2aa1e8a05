"""`barkeeper bench`: run the benchmark suite and print or save the figures."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from barkeeper.cli.app import JsonOption, app, console, user_errors
from barkeeper.errors import ParameterError


@app.command()
@user_errors
def bench(
    sections: Annotated[
        str,
        typer.Option(
            help="Comma-separated: cli,kernel,coordinator,memory,store,gx,replay,scaling,backtest."
        ),
    ] = "cli,kernel,coordinator,memory,store,gx,replay,scaling,backtest",
    symbols: Annotated[int, typer.Option(min=10, max=20_000, help="Symbols per session.")] = 2000,
    postgres: Annotated[
        str | None, typer.Option(help="PostgreSQL URL for the store section (optional).")
    ] = None,
    sizes: Annotated[
        str, typer.Option(help="Symbol counts of the scaling curve, comma-separated.")
    ] = "100,500,2000,5000",
    json_output: JsonOption = False,
) -> None:
    """Measure barkeeper against its baselines (median of several runs, one process)."""
    from barkeeper.bench import FLOW_SECTIONS, SECTIONS, run_benchmarks
    from barkeeper.cli.prefect_api import prefect_api

    chosen = tuple(s.strip() for s in sections.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise ParameterError(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    try:
        scaling_sizes = tuple(int(n) for n in sizes.split(",") if n.strip())
    except ValueError:
        raise ParameterError(f"--sizes: {sizes!r} is not a list of whole numbers") from None
    if not scaling_sizes or min(scaling_sizes) < 1:
        raise ParameterError(f"--sizes: {sizes!r} needs symbol counts of 1 or more")
    with prefect_api() if set(chosen) & set(FLOW_SECTIONS) else contextlib.nullcontext():
        results = run_benchmarks(
            chosen,
            symbols=symbols,
            postgres_url=postgres,
            scaling_sizes=scaling_sizes,
            on_section=lambda name: console.print(f"[dim]bench: {name}…[/]"),
        )
    if json_output:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for name, figures in results.items():
        if not isinstance(figures, dict):
            console.print(f"{name}: {figures}")
            continue
        table = Table(title=name, title_justify="left", show_header=False)
        for key, value in figures.items():
            table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else str(value))
        console.print(table)
