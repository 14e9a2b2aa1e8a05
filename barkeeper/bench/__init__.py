"""`barkeeper bench`: side-by-side measurements of barkeeper against its baselines.

Every section but `cli` runs in this one process, median of several runs, so ratios compare
like with like on the same machine and load; `cli` times fresh `barkeeper` processes, as users
run them.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

SECTIONS = (
    "cli",
    "kernel",
    "coordinator",
    "memory",
    "store",
    "gx",
    "replay",
    "scaling",
    "backtest",
)
FLOW_SECTIONS = ("replay",)
"""Sections that run flows in this process (they need a Prefect API)."""


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def run_benchmarks(
    sections: tuple[str, ...] = SECTIONS,
    *,
    symbols: int = 2000,
    postgres_url: str | None = None,
    scaling_sizes: tuple[int, ...] | None = None,
    on_section: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the named sections; returns `{section: figures, "machine": {...}}`.

    Parameters
    ----------
    sections
        Any of `SECTIONS`, run in the order given.
    symbols
        Symbols of the synthetic session of every section but `store` (rows fixed at a
        2,000-symbol session's ~780k) and `scaling`.
    postgres_url
        Also measure the store's PostgreSQL path on this server (rows are removed after).
    scaling_sizes
        Symbol counts of the scaling curve (default 100, 500, 2,000, 5,000).
    on_section
        Called with each section's name before it runs (progress display).
    """
    from barkeeper.bench.backtest import bench_backtest
    from barkeeper.bench.command_line import bench_cli
    from barkeeper.bench.coordinator import bench_coordinator, bench_memory
    from barkeeper.bench.gx import bench_gx
    from barkeeper.bench.kernel import bench_kernel
    from barkeeper.bench.replay import bench_replay
    from barkeeper.bench.scaling import SIZES, bench_scaling
    from barkeeper.bench.store import bench_store

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "cli": lambda: bench_cli(symbols),
        "kernel": lambda: bench_kernel(symbols),
        "coordinator": lambda: bench_coordinator(symbols),
        "memory": lambda: bench_memory(symbols),
        "store": lambda: bench_store(postgres_url=postgres_url),
        "gx": lambda: bench_gx(symbols),
        "replay": lambda: bench_replay(symbols),
        "scaling": lambda: bench_scaling(scaling_sizes or SIZES),
        "backtest": bench_backtest,
    }
    results: dict[str, Any] = {"machine": machine(), "date": datetime.now(UTC).isoformat()}
    for name in sections:
        if on_section is not None:
            on_section(name)
        results[name] = runners[name]()
    return results
