"""`barkeeper bench`: run the benchmark suite and print or save the figures."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from barkeeper.cli.app import JsonOption, app, console, user_errors
from barkeeper.errors import ParameterError

ESTIMATE_SECONDS = {
    "kernel": 60,
    "coordinator": 30,
    "memory": 20,
    "store": 60,
    "gx": 60,
    "replay": 90,
    "scaling": 180,
    "cli": 200,
    "backtest": 100,
}
"""Rough seconds per section at 2,000 symbols on a 2-core machine (all sections: ~13 min)."""
FIXED_SECTIONS = ("store", "scaling", "backtest")
"""Sections whose size does not follow --symbols."""


def estimate(sections: tuple[str, ...], symbols: int) -> dict[str, float]:
    """Seconds each section will roughly take (scaled by --symbols where it applies)."""
    return {
        name: ESTIMATE_SECONDS.get(name, 60)
        * (1.0 if name in FIXED_SECTIONS else max(symbols / 2000, 0.1))
        for name in sections
    }


class SectionProgress:
    """Progress on stderr: the whole run's estimate first, then each section as it starts and
    how long the previous one took."""

    def __init__(self, sections: tuple[str, ...], symbols: int) -> None:
        self.guess = estimate(sections, symbols)
        self.total = len(sections)
        self.done = 0
        self.started = time.perf_counter()
        self.current = ""
        minutes = sum(self.guess.values()) / 60
        console.print(
            f"bench: {self.total} section(s), about {minutes:.0f} min on 2 cores "
            "(--sections kernel,gx for a quick look)",
            highlight=False,
        )

    def __call__(self, name: str) -> None:
        self.finish()
        self.done += 1
        self.current = name
        console.print(
            f"bench: [{self.done}/{self.total}] {name} (about {self.guess[name]:.0f} s)…",
            highlight=False,
        )

    def finish(self) -> None:
        if self.current:
            elapsed = time.perf_counter() - self.started
            console.print(f"bench: {self.current} done in {elapsed:.0f} s", highlight=False)
        self.started = time.perf_counter()
        self.current = ""


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
    progress = SectionProgress(chosen, symbols)
    with prefect_api() if set(chosen) & set(FLOW_SECTIONS) else contextlib.nullcontext():
        results = run_benchmarks(
            chosen,
            symbols=symbols,
            postgres_url=postgres,
            scaling_sizes=scaling_sizes,
            on_section=progress,
        )
    progress.finish()
    if json_output:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    out = Console()
    for name, figures in results.items():
        if not isinstance(figures, dict):
            out.print(f"{name}: {figures}")
            continue
        table = Table(title=name, title_justify="left", show_header=False)
        for key, value in figures.items():
            table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else str(value))
        out.print(table)
