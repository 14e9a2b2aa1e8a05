"""Coverage charts: one picture of which minutes of a session have bars and where they came from.

People read a strip of colours faster than a table of gap runs, so run reports carry this chart
(as a PNG, embedded in a markdown artifact or written next to the Data Docs).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from barkeeper.live.session_results import (
    COVERAGE_NO_TRADE,
    COVERAGE_QUARANTINED,
    COVERAGE_UNFILLABLE,
)

NONE, FEED, BACKFILL, REPAIRED, SYNTHETIC = 0, 1, 2, 3, 4
"""Provenance codes of a minute in a coverage matrix; 5-7 say why a minute has no bar."""
NO_TRADE, UNFILLABLE, QUARANTINED = COVERAGE_NO_TRADE, COVERAGE_UNFILLABLE, COVERAGE_QUARANTINED

LABELS = (
    "missing (unsettled)",
    "feed",
    "backfilled",
    "repaired",
    "synthetic",
    "no trade",
    "unfillable",
    "quarantined",
)
COLOURS = (
    "#f4a6a6",  # missing, not yet classified: light red
    "#c7e9c0",  # feed: pale green
    "#1f77b4",  # backfill: blue
    "#ff7f0e",  # repaired: orange
    "#9467bd",  # synthetic: purple
    "#d9d9d9",  # no trade: neutral grey (nothing was lost)
    "#d62728",  # unfillable: red (lost)
    "#a50f15",  # quarantined: dark red (lost)
)
"""One colour per code: neutral for no-trade minutes, red for lost ones."""
CHART_LEGEND = (
    "Coverage: green feed, blue backfilled, orange repaired, purple synthetic; grey no trade "
    "(no source has a bar: nothing lost); red unfillable or quarantined (lost)."
)

MAX_STRIPS = 40
"""Up to this many symbols get one strip each; more are drawn as shares per minute."""


def coverage_chart(
    minutes: np.ndarray,
    provenance: np.ndarray,
    symbols: Sequence[str],
    title: str,
    *,
    tz: str = "America/New_York",
) -> bytes:
    """Draw a session's per-minute coverage as a PNG.

    Parameters
    ----------
    minutes
        int64 Unix seconds (UTC, bar start) of the session's expected minutes, sorted, shape (M,).
    provenance
        uint8 codes, shape (S, M): 0 no bar (unsettled), 1 feed, 2 backfill, 3 repaired,
        4 synthetic, 5 no trade, 6 unfillable, 7 quarantined (see `coverage_codes`).
    symbols
        The S row labels.
    title
        Figure title (e.g. "2023-07-10 · run 1a2b").
    tz
        Time zone of the axis labels (the exchange's).

    Returns
    -------
    bytes
        The PNG file.

    Notes
    -----
    Up to MAX_STRIPS symbols get one strip each, so every gap is visible where it happened; with
    more symbols strips would be thinner than a pixel, so the chart shows instead the share of
    symbols in each state per minute (stacked), which keeps market-wide outages obvious.
    """
    minutes = np.asarray(minutes, dtype=np.int64)
    codes = np.asarray(provenance, dtype=np.uint8)
    if codes.ndim != 2 or codes.shape != (len(symbols), len(minutes)):
        raise ValueError(
            f"provenance: shape {codes.shape} does not match {len(symbols)} symbols "
            f"x {len(minutes)} minutes"
        )
    if codes.size and codes.max() >= len(LABELS):
        raise ValueError(
            f"provenance: codes must be 0..{len(LABELS) - 1}, found {int(codes.max())}"
        )

    strips = len(symbols) <= MAX_STRIPS
    height = 1.6 + 0.32 * max(len(symbols), 1) if strips else 4.0
    fig = Figure(figsize=(11, min(height, 16)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if strips:
        _draw_strips(ax, codes, symbols)
    else:
        _draw_shares(ax, codes)
    _time_axis(ax, minutes, tz)
    counts = np.bincount(codes.ravel(), minlength=len(LABELS)) if codes.size else np.zeros(8)
    shown = [k for k in range(len(LABELS)) if counts[k] or k in (FEED, NO_TRADE, UNFILLABLE)]
    ax.set_title(title, loc="left", fontsize=11)
    fig.legend(
        handles=[Patch(color=COLOURS[k], label=f"{LABELS[k]} ({int(counts[k]):,})") for k in shown],
        loc="outside lower center",
        ncols=min(len(shown), 5),
        frameon=False,
        fontsize=9,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_strips(ax: Axes, codes: np.ndarray, symbols: Sequence[str]) -> None:
    cmap = ListedColormap(COLOURS)
    norm = BoundaryNorm(np.arange(len(COLOURS) + 1) - 0.5, cmap.N)
    ax.imshow(codes, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
    ax.set_yticks(np.arange(len(symbols)), labels=list(symbols), fontsize=9)
    ax.set_ylim(len(symbols) - 0.5, -0.5)


def _draw_shares(ax: Axes, codes: np.ndarray) -> None:
    n_symbols, n_minutes = codes.shape
    shares = np.stack([(codes == k).sum(axis=0) for k in range(len(LABELS))]) / n_symbols * 100
    x = np.arange(n_minutes)
    # Present states at the bottom, lost on top, so a drop in coverage reads as red from above.
    order = [FEED, BACKFILL, REPAIRED, SYNTHETIC, NO_TRADE, NONE, QUARANTINED, UNFILLABLE]
    ax.stackplot(x, shares[order], colors=[COLOURS[k] for k in order], step="post", linewidth=0)
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.5, n_minutes - 0.5)
    ax.set_ylabel(f"% of {n_symbols:,} symbols")


def _time_axis(ax: Axes, minutes: np.ndarray, tz: str) -> None:
    if len(minutes) == 0:
        return
    local = pd.to_datetime(minutes, unit="s", utc=True).tz_convert(tz)
    on_hour = np.flatnonzero((local.minute == 0) | (np.arange(len(minutes)) == 0))
    step = max(1, int(np.ceil(len(on_hour) / 14)))
    ticks = on_hour[::step]
    ax.set_xticks(ticks, labels=[local[i].strftime("%H:%M") for i in ticks], fontsize=9)
    ax.set_xlabel(f"bar start ({tz})", fontsize=9)


def png_data_uri(png: bytes) -> str:
    """A `data:` URI of a PNG, for embedding in markdown that must not depend on a file server."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
