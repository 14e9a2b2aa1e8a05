"""Scaling curve: how the kernel's and the replay's time grow with the number of symbols."""

from __future__ import annotations

from typing import Any

from barkeeper.bench.kernel import time_kernel
from barkeeper.bench.replay import bench_replay

SIZES = (100, 500, 2000, 5000)


def growth(points: list[dict[str, Any]], key: str, low: int, high: int) -> float | None:
    """Time growth from `low` to `high` symbols over the symbol growth (≤ 1: at most linear)."""
    by_size = {p["symbols"]: p[key] for p in points}
    if low not in by_size or high not in by_size or not by_size[low]:
        return None
    return round((by_size[high] / by_size[low]) / (high / low), 3)


def bench_scaling(sizes: tuple[int, ...] = SIZES, repeats: int = 3) -> dict[str, Any]:
    """Kernel ms and replay seconds (upkeep on and off) per size, and the growth 500 → 5,000.

    One replay per size and mode (the `replay` section gives medians at one size).

    Returns
    -------
    dict
        `points`: [{symbols, kernel_ms, replay_seconds, replay_seconds_without_upkeep}];
        `*_growth`: time ratio over symbol ratio between the smallest size ≥ 500 and the
        largest (≤ 1 means no worse than linear); `linear_or_better`: all growths ≤ 1.
    """
    points = []
    for n in sizes:
        replay = bench_replay(n, repeats=1, count=False)
        points.append(
            {
                "symbols": n,
                "kernel_ms": time_kernel(n, repeats),
                "replay_seconds": replay["seconds"],
                "replay_seconds_without_upkeep": replay["seconds_without_upkeep"],
            }
        )
    low = min((n for n in sizes if n >= 500), default=min(sizes))
    high = max(sizes)
    keys = ("kernel_ms", "replay_seconds", "replay_seconds_without_upkeep")
    growths = {f"{key}_growth": growth(points, key, low, high) for key in keys}
    known = [g for g in growths.values() if g is not None]
    return {
        "points": points,
        "from_symbols": low,
        "to_symbols": high,
        **growths,
        "linear_or_better": bool(known) and all(g <= 1.0 for g in known),
    }
