"""Row checks of an import: every row passes them all or is quarantined with the first reason.

Vectorised over the file's rows; the timestamps are parsed here (ISO 8601, offsets or `--tz`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from barkeeper.ingest.reading import MAX_LINE_CHARS, RawTable
from barkeeper.settings import load_settings

#: Quarantine reasons, in the order they are checked (a row gets the first that applies).
REASONS: Mapping[str, str] = {
    "line_too_long": f"the line is longer than {MAX_LINE_CHARS:,} characters",
    "wrong_field_count": "the line has more or fewer fields than the header",
    "missing_value": "timestamp, open, high, low, close or volume is empty (or NA/NaN/null)",
    "unparseable_timestamp": "the timestamp is not an ISO 8601 date-time",
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
}
NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
OFFSET_PATTERN = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
QUARANTINE_FIELDS = ("file", "line", "raw", "reason", "symbol")


@dataclass(frozen=True)
class ParsedFile:
    """A file's good bars (BAR_COLUMNS, sorted by ts) and its rejected rows, before storing."""

    path: str
    symbol: str
    bars: pd.DataFrame
    quarantine: pd.DataFrame
    read: int
    skipped: int


def check_rows(table: RawTable, file: str, symbol: str, tz: str) -> ParsedFile:
    """Apply the row checks in `REASONS` order; split good bars, quarantine and duplicates."""
    cols = {name: s.str.strip() for name, s in table.columns.items()}
    limits = load_settings()
    n = len(table.line)
    reason = np.full(n, None, dtype=object)

    def flag(name: str, mask: np.ndarray) -> None:
        reason[pd.isna(reason) & mask] = name

    missing = np.zeros(n, dtype=bool)
    for s in cols.values():
        missing |= (s.isna() | s.str.lower().isin(NA_TOKENS)).to_numpy()
    flag("missing_value", missing)

    stamps, whole_minute, zone_reason = _parse_timestamps(cols["timestamp"], tz)
    flag("unparseable_timestamp", (stamps == NAT) & (zone_reason == ""))
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

    frame = pd.DataFrame({"ts": stamps, **values, "line": table.line, "raw": table.raw})
    good = frame[pd.isna(reason)]
    distinct = good.drop_duplicates(["ts", *PRICE_COLUMNS])
    conflicted = distinct["ts"][distinct["ts"].duplicated()].unique()
    conflict = good["ts"].isin(conflicted)
    reason[good.index[conflict.to_numpy()]] = "conflicting_duplicate"
    good = good[~conflict.to_numpy()]
    exact = good.duplicated(["ts", *PRICE_COLUMNS])
    bars = good[~exact.to_numpy()].sort_values("ts", kind="stable")

    bad = frame[pd.notna(reason)]
    quarantine = pd.DataFrame(
        {
            "file": file,
            "line": np.concatenate([[r[0] for r in table.rejected], bad["line"]]).astype(np.int64),
            "raw": [r[1] for r in table.rejected] + bad["raw"].tolist(),
            "reason": [r[2] for r in table.rejected] + reason[bad.index].tolist(),
            "symbol": symbol,
        },
        columns=list(QUARANTINE_FIELDS),
    ).sort_values("line", ignore_index=True)
    out = pd.DataFrame({"symbol": symbol, **{k: bars[k].to_numpy() for k in BAR_COLUMNS[1:]}})
    return ParsedFile(
        path=file,
        symbol=symbol,
        bars=out[list(BAR_COLUMNS)].reset_index(drop=True),
        quarantine=quarantine,
        read=table.read,
        skipped=int(exact.sum()),
    )


NAT = np.iinfo(np.int64).min
UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _parse_timestamps(text: pd.Series, tz: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: UTC Unix seconds (NAT where unusable), whether it is a whole minute, and a
    local-time problem (``nonexistent_local_time``/``ambiguous_local_time``) or ""."""
    seconds = np.full(len(text), NAT, dtype=np.int64)
    whole = np.zeros(len(text), dtype=bool)
    zone_reason = np.full(len(text), "", dtype=object)
    filled = text.fillna("")
    aware = filled.str.contains(OFFSET_PATTERN, regex=True).to_numpy()
    if aware.any():
        parsed = pd.to_datetime(filled[aware], format="ISO8601", errors="coerce", utc=True)
        seconds[aware], whole[aware] = _seconds(parsed)
    naive = ~aware
    if naive.any():
        local = pd.to_datetime(filled[naive], format="ISO8601", errors="coerce")
        if tz != "UTC":
            shape = len(local)
            plain = local.dt.tz_localize(tz, ambiguous=np.ones(shape, bool), nonexistent="NaT")
            strict = local.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
            where = np.flatnonzero(naive)
            zone_reason[where[(plain.isna() & local.notna()).to_numpy()]] = "nonexistent_local_time"
            zone_reason[where[(strict.isna() & local.notna()).to_numpy()]] = "ambiguous_local_time"
            local = plain
        seconds[naive], whole[naive] = _seconds(local)
    return seconds, whole, zone_reason


def _seconds(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds (NAT for NaT) and whole-minute flags, in the Series' own time unit."""
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    per_second = UNIT_PER_SECOND[stamps.dt.unit]
    ticks = stamps.to_numpy().view(np.int64)
    missing = stamps.isna().to_numpy()
    seconds = np.where(missing, NAT, ticks // per_second)
    return seconds, ~missing & (ticks % (60 * per_second) == 0)
