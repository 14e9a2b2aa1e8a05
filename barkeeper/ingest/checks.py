"""Row checks of an import: every row passes them all or is quarantined with the first reason.

Vectorised over one chunk of rows (`check_rows`); duplicates are settled over the whole file
(`settle_duplicates`). Timestamps are parsed by `barkeeper.ingest.stamps`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from barkeeper.core.panel import PRICE_COLUMNS
from barkeeper.ingest.reading import MAX_LINE_CHARS, RawTable
from barkeeper.ingest.stamps import NAT, StampFormat, parse_stamps
from barkeeper.settings import load_settings

#: Quarantine reasons, in the order they are checked (a row gets the first that applies).
REASONS: Mapping[str, str] = {
    "line_too_long": f"the line is longer than {MAX_LINE_CHARS:,} characters",
    "wrong_field_count": "the line has more or fewer fields than the header",
    "missing_value": "timestamp, open, high, low, close or volume is empty (or NA/NaN/null)",
    "unparseable_timestamp": "the timestamp does not fit the file's stamp format",
    "date_only_timestamp": "the timestamp is a date without a time of day (no minute bar)",
    "non_numeric": "a price or the volume is not a finite number",
    "nonexistent_local_time": "a naive time that does not exist in --tz (DST starts)",
    "ambiguous_local_time": "a naive time that occurs twice in --tz (DST ends)",
    "not_whole_minute": "the bar does not start on a whole minute",
    "timestamp_in_future": "the bar starts after the time of the import",
    "price_not_positive": "open, high, low or close is zero or negative",
    "negative_volume": "the volume is negative",
    "implausible_value": "a price at or above BARKEEPER_MAX_PRICE (1e7) or a volume at or above "
    "BARKEEPER_MAX_VOLUME (1e12): a unit or parsing error, and sums of such bars overflow",
    "high_below_low": "high < low",
    "high_below_open_close": "high < open or high < close",
    "low_above_open_close": "low > open or low > close",
    "conflicting_duplicate": "another row of the file has the same minute with other values",
    "conflicts_with_stored": "the stored bar has other values (--on-conflict quarantine)",
}
NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
QUARANTINE_FIELDS = ("file", "line", "raw", "reason", "symbol")
GOOD_FIELDS = ("ts", *PRICE_COLUMNS, "line")
CLOSE_LABEL_SHIFT = 60  # --stamp close: the stamp is the bar's end, one minute after its start


@dataclass(frozen=True)
class CheckedRows:
    """One chunk after the row checks: good rows (GOOD_FIELDS) and rejected rows
    (line, raw, reason, ts: the parsed minute or NAT, stamp: the stamp as written)."""

    good: pd.DataFrame
    rejected: pd.DataFrame


def check_rows(table: RawTable, fmt: StampFormat, tz: str, stamp: str = "open") -> CheckedRows:
    """Apply the row checks in `REASONS` order to one chunk (duplicates are settled later)."""
    cols = {name: s.str.strip() for name, s in table.columns.items()}
    limits = load_settings()
    n = len(table.line)
    if "volume" not in cols:  # index files: no volume, stored as 0 and flagged in the report
        cols["volume"] = pd.Series(np.full(n, "0", dtype=object), dtype="str")
    reason = np.full(n, None, dtype=object)

    def flag(name: str, mask: np.ndarray) -> None:
        reason[pd.isna(reason) & mask] = name

    missing = np.zeros(n, dtype=bool)
    for s in cols.values():
        missing |= (s.isna() | s.str.lower().isin(NA_TOKENS)).to_numpy()
    flag("missing_value", missing)

    stamps, whole_minute, zone_reason, date_only = parse_stamps(cols["timestamp"], fmt, tz)
    if stamp == "close":
        stamps = np.where(stamps == NAT, NAT, stamps - CLOSE_LABEL_SHIFT)
    flag("unparseable_timestamp", (stamps == NAT) & (zone_reason == ""))
    flag("date_only_timestamp", date_only)
    values = {
        c: pd.to_numeric(cols[c], errors="coerce").to_numpy(np.float64) for c in PRICE_COLUMNS
    }
    finite = np.logical_and.reduce([np.isfinite(v) for v in values.values()])
    flag("non_numeric", ~finite)
    flag("nonexistent_local_time", zone_reason == "nonexistent_local_time")
    flag("ambiguous_local_time", zone_reason == "ambiguous_local_time")
    flag("not_whole_minute", ~whole_minute)
    flag("timestamp_in_future", stamps > time.time())
    o, h, lo, c, v = (values[k] for k in PRICE_COLUMNS)
    with np.errstate(invalid="ignore"):
        flag("price_not_positive", np.minimum.reduce([o, h, lo, c]) <= 0)
        flag("negative_volume", v < 0)
        flag("implausible_value", (np.maximum.reduce([o, h, lo, c]) >= limits.max_price)
             | (v >= limits.max_volume))  # fmt: skip
        flag("high_below_low", h < lo)
        flag("high_below_open_close", h < np.maximum(o, c))
        flag("low_above_open_close", lo > np.minimum(o, c))

    ok = pd.isna(reason).astype(bool)
    good = pd.DataFrame({"ts": stamps[ok], **{k: a[ok] for k, a in values.items()},
                         "line": table.line[ok]})  # fmt: skip
    bad = ~ok
    rejected = pd.DataFrame(
        {
            "line": np.concatenate([[r[0] for r in table.rejected], table.line[bad]]),
            "raw": [r[1] for r in table.rejected] + table.raw[bad].tolist(),
            "reason": [r[2] for r in table.rejected] + reason[bad].tolist(),
            "ts": np.concatenate([np.full(len(table.rejected), NAT), stamps[bad]]),
            "stamp": [""] * len(table.rejected) + cols["timestamp"][bad].fillna("").tolist(),
        }
    ).astype({"line": np.int64, "ts": np.int64})
    return CheckedRows(good=good, rejected=rejected)


@dataclass(frozen=True)
class SettledRows:
    """The file's bars (GOOD_FIELDS, one row per minute, sorted by ts), the lines of minutes
    that came with other values (every row of such a minute), and exact repeats skipped."""

    bars: pd.DataFrame
    conflicting: pd.DataFrame  # line, ts
    skipped: int


def settle_duplicates(good: pd.DataFrame) -> SettledRows:
    """Keep one row per minute; a minute written with different values keeps none.

    Only the rows of repeated minutes are compared, and a file already in time order is not
    sorted again: both matter for the memory of a large import.
    """
    repeated = good["ts"].duplicated(keep=False).to_numpy()
    conflict = np.zeros(len(good), dtype=bool)
    exact = np.zeros(len(good), dtype=bool)
    if repeated.any():
        twice = good[repeated]
        distinct = twice.drop_duplicates(["ts", *PRICE_COLUMNS])
        conflicted = distinct["ts"][distinct["ts"].duplicated()].unique()
        conflict[repeated] = twice["ts"].isin(conflicted).to_numpy()
        exact[repeated] = twice["ts"].duplicated().to_numpy() & ~conflict[repeated]
    conflicting = good.loc[conflict, ["line", "ts"]].reset_index(drop=True)
    bars = good[~(conflict | exact)] if repeated.any() else good
    if not bars["ts"].is_monotonic_increasing:
        bars = bars.sort_values("ts", kind="stable")
    bars = bars.reset_index(drop=True)
    return SettledRows(bars=bars, conflicting=conflicting, skipped=int(exact.sum()))
