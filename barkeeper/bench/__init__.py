"""`barkeeper bench`: side-by-side measurements of barkeeper against its baselines.

Every section runs in this one process, median of several runs, so ratios compare like with
like on the same machine and load.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from typing import Any

SECTIONS = ("kernel", "coordinator", "memory", "store", "gx", "replay")


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def run_benchmarks(
    sections: tuple[str, ...] = SECTIONS,
    *,
    symbols: int = 2000,
    postgres_url: str | None = None,
    on_section: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the named sections; returns `{section: figures, "machine": {...}}`."""
    from barkeeper.bench.coordinator import bench_coordinator, bench_memory
    from barkeeper.bench.gx import bench_gx
    from barkeeper.bench.kernel import bench_kernel
    from barkeeper.bench.replay import bench_replay
    from barkeeper.bench.store import bench_store

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "kernel": lambda: bench_kernel(symbols),
        "coordinator": lambda: bench_coordinator(symbols),
        "memory": lambda: bench_memory(symbols),
        "store": lambda: bench_store(postgres_url=postgres_url),
        "gx": lambda: bench_gx(symbols),
        "replay": lambda: bench_replay(symbols),
    }
    results: dict[str, Any] = {"machine": machine()}
    for name in sections:
        if on_section is not None:
            on_section(name)
        results[name] = runners[name]()
    return results
