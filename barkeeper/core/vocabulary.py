"""What each per-symbol count means: one definition, used by replay, audit, report and docs.

Every table, artifact and Data Docs page that shows these figures takes its names and its
legend from here, so a number called `gaps` means the same thing wherever it is printed.
"""

from __future__ import annotations

import numpy as np

COUNTS: dict[str, str] = {
    "expected_bars": "calendar minutes of the session (or segment)",
    "actual_bars": "minutes the run ended with a real bar: feed, backfill or repaired "
    "(synthetic fills never count)",
    "source_bars": "minutes for which a source (the feed or the repository) has a bar",
    "bar_quality": "actual_bars / expected_bars x 100: how much of the calendar has bars; "
    "an illiquid symbol scores low without losing anything",
    "completeness": "actual_bars / source_bars x 100: how much of what the sources have the run "
    "ended with; 100 when nothing was lost",
    "feed_missing_bars": "minutes the feed lacked (dropped, cut by an outage, or never traded)",
    "feed_gap_runs": "runs of consecutive minutes the feed lacked",
    "backfilled_bars": "minutes the feed lacked that were filled from the repository",
    "repaired_bars": "bars the feed delivered broken, replaced by the repository's bar",
    "missing_bars": "minutes the run ended without a real bar: expected_bars - actual_bars",
    "gaps": "runs of consecutive minutes the run ended without a real bar (in an audit: "
    "missing in the repository)",
    "no_trade_bars": "missing minutes no source has a bar for (nothing traded)",
    "unfillable_bars": "missing minutes a source has but the upkeep could not fill in its retries",
    "synthetic_bars": "flat fill-forward bars on missing minutes (never counted as actual)",
    "outside_bars": "repository bars of the session's day off its calendar minutes",
    "no_data": "no source has a single bar of the symbol for the whole session",
}
"""Each count's definition, in the order tables show them."""

LEGEND = (
    "quality = actual/expected bars x 100 (low for illiquid symbols, no loss implied); "
    "completeness = actual/source bars x 100 (100 = nothing lost)"
)
"""The one-line legend under every table of the two figures."""

THRESHOLD_FIGURE = "completeness"
"""The figure the quality threshold judges: a symbol is flagged when it lost bars, not when it
simply trades rarely."""


def threshold_legend(threshold: float | None = None) -> str:
    """The phrase saying which figure the quality threshold judges (its value when known)."""
    value = "" if threshold is None else f" {threshold:g} %"
    return f"the quality threshold{value} judges {THRESHOLD_FIGURE} (bars lost), not bar_quality"


def completeness(actual: np.ndarray, source: np.ndarray) -> np.ndarray:
    """actual / source x 100 per symbol; 100 where the sources have nothing (nothing was lost)."""
    actual, source = np.asarray(actual, dtype=np.float64), np.asarray(source, dtype=np.float64)
    return np.where(source > 0, 100.0 * actual / np.maximum(source, 1.0), 100.0)
