"""Timestamp formats of vendor files: inferred per file from its rows (or forced), then parsed.

ISO 8601, US `M/D/YYYY H:MM[:SS]`, `YYYYMMDD HHMMSS`, `YYYY.MM.DD …`, epoch s/ms/us/ns, and
separate date and time columns (joined as "date time"). A day/month order the rows cannot
settle is refused, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from barkeeper.errors import InputFileError, ParameterError

ISO = "iso8601"
EPOCH_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
NAT = np.iinfo(np.int64).min
ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}.*)?$"
DATE_ONLY_ISO = r"^\d{4}-\d{2}-\d{2}$"
OFFSET_PATTERN = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
DATES = (
    "%m/%d/%Y", "%d/%m/%Y", "%Y%m%d", "%Y.%m.%d", "%d.%m.%Y", "%Y/%m/%d", "%m-%d-%Y", "%d-%m-%Y",
)  # fmt: skip
TIMES = (" %H:%M:%S", " %H:%M", " %H%M%S", " %H%M", "T%H:%M:%S", "T%H:%M", "")
CANDIDATES = tuple(d + t for d in DATES for t in TIMES)
EPOCH_FIRST_YEAR = 1990  # epoch numbers before this year are not taken for epoch stamps
SAMPLE_ROWS = 2_000
INT64_OVERFLOW = r"9\d{18}"  # 19 digits from 9e18: past int64 (and the year 2255)


@dataclass(frozen=True)
class StampFormat:
    """How a file writes its bar times: ISO 8601, a strftime pattern, or an epoch unit."""

    kind: str  # "iso" | "pattern" | "epoch"
    pattern: str = ""  # the strftime pattern, or the epoch unit

    def describe(self) -> str:
        """As the import report prints it: ``ISO 8601``, ``%m/%d/%Y %H:%M``, ``epoch ms``."""
        if self.kind == "iso":
            return "ISO 8601"
        return f"epoch {self.pattern}" if self.kind == "epoch" else self.pattern

    @property
    def date_only(self) -> bool:
        """True for a pattern without a time of day (a daily file's stamps)."""
        return self.kind == "pattern" and "%H" not in self.pattern


ISO_FORMAT = StampFormat("iso")


def format_from_option(text: str) -> StampFormat:
    """`--timestamp-format`: ``iso8601``, ``epoch_s|ms|us|ns`` or a strftime pattern."""
    value = text.strip()
    if value.lower() in (ISO, "iso"):
        return ISO_FORMAT
    if value.lower().startswith("epoch"):
        unit = value.lower().removeprefix("epoch").strip("_ ") or "s"
        if unit in EPOCH_UNITS:
            return StampFormat("epoch", unit)
    elif "%" in value:
        return StampFormat("pattern", value)
    raise ParameterError(
        f"--timestamp-format: {text!r} is not a format; use iso8601, epoch_s, epoch_ms, "
        "epoch_us, epoch_ns or a strftime pattern such as '%m/%d/%Y %H:%M'"
    )


def infer_format(stamps: pd.Series, file: str) -> StampFormat:
    """The format that reads the most of a sample of `stamps` (ISO 8601 when none reads any).

    Raises InputFileError when the rows read the same under day/month and month/day orders
    with different dates: the two readings are named, nothing is guessed.
    """
    sample = _sample(stamps)
    if sample.empty:
        return ISO_FORMAT
    digits = sample.str.fullmatch(r"\d{9,19}")
    if digits.mean() >= 0.5:  # a few broken rows do not hide an epoch file
        epoch = _epoch_unit(sample[digits])
        if epoch is not None:
            return epoch
    iso = sample.str.match(ISO_PATTERN) & _parses(sample, ISO_FORMAT)
    if iso.mean() >= 0.5:
        return ISO_FORMAT
    scores = {p: _parses(sample, StampFormat("pattern", p)).mean() for p in CANDIDATES}
    best = max(scores.values())
    if best == 0:
        return ISO_FORMAT
    winners = [p for p in CANDIDATES if scores[p] == best]
    chosen = StampFormat("pattern", winners[0])
    for other in winners[1:]:
        _refuse_ambiguous(sample, chosen, StampFormat("pattern", other), file)
    return chosen


def _sample(stamps: pd.Series) -> pd.Series:
    """Up to SAMPLE_ROWS distinct non-empty stamps, spread over the rows given."""
    values = stamps.dropna().str.strip()
    values = values[values.str.len() > 0].drop_duplicates()
    if len(values) > SAMPLE_ROWS:
        values = values.iloc[np.linspace(0, len(values) - 1, SAMPLE_ROWS).astype(int)]
    return values.reset_index(drop=True)


def _epoch_unit(sample: pd.Series) -> StampFormat | None:
    """The epoch unit under which the numbers fall between 1990 and now + a year, if any."""
    numbers = pd.to_numeric(sample, errors="coerce").astype("float64")
    low = pd.Timestamp(f"{EPOCH_FIRST_YEAR}-01-01").timestamp()
    high = pd.Timestamp.now().timestamp() + 366 * 86_400
    for unit, per_second in EPOCH_UNITS.items():
        seconds = numbers / per_second
        if ((seconds >= low) & (seconds <= high)).all():
            return StampFormat("epoch", unit)
    return None


def _parses(sample: pd.Series, fmt: StampFormat) -> pd.Series:
    parsed = _to_datetime(sample, fmt, utc=True)  # mixed offsets parse too
    return pd.Series(parsed.notna().to_numpy(), index=sample.index)


def _to_datetime(text: pd.Series, fmt: StampFormat, utc: bool = False) -> pd.Series:
    """Naive (or with `utc`, UTC) datetimes; NaT where the text does not fit the format."""
    pattern = "ISO8601" if fmt.kind == "iso" else fmt.pattern
    return pd.to_datetime(text, format=pattern, errors="coerce", utc=utc)


def _refuse_ambiguous(sample: pd.Series, a: StampFormat, b: StampFormat, file: str) -> None:
    """Raise if two formats read the sample into different dates (day/month vs month/day)."""
    first, second = _to_datetime(sample, a, utc=True), _to_datetime(sample, b, utc=True)
    differ = (first != second) & first.notna() & second.notna()
    if differ.any():
        i = int(np.flatnonzero(differ.to_numpy())[0])
        raise InputFileError(
            f"{file}: ambiguous day/month order: {sample.iloc[i]!r} reads as "
            f"{first.iloc[i]:%Y-%m-%d} ({a.pattern}) or {second.iloc[i]:%Y-%m-%d} ({b.pattern}); "
            "pass --timestamp-format with the vendor's order"
        )


def parse_stamps(
    text: pd.Series, fmt: StampFormat, tz: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: UTC Unix seconds (NAT where unusable), whether it is a whole minute, a
    local-time problem (``nonexistent_local_time``/``ambiguous_local_time``) or "", and
    whether the stamp is a date without a time of day."""
    n = len(text)
    seconds = np.full(n, NAT, dtype=np.int64)
    whole = np.zeros(n, dtype=bool)
    zone_reason = np.full(n, "", dtype=object)
    filled = text.fillna("").str.strip()
    if fmt.kind == "epoch":
        ok = (filled.str.fullmatch(r"\d{1,19}") & ~filled.str.fullmatch(INT64_OVERFLOW)).to_numpy()
        exact = pd.to_numeric(filled.where(ok, "0")).to_numpy(dtype=np.int64)
        per_second = EPOCH_UNITS[fmt.pattern]
        seconds[ok] = exact[ok] // per_second
        whole[ok] = exact[ok] % (60 * per_second) == 0
        return seconds, whole, zone_reason, np.zeros(n, dtype=bool)
    if fmt.kind == "iso":
        date_only = filled.str.fullmatch(DATE_ONLY_ISO).to_numpy()
        aware = filled.str.contains(OFFSET_PATTERN, regex=True).to_numpy()
    else:
        date_only = np.full(n, fmt.date_only)
        aware = np.full(n, "%z" in fmt.pattern or "%Z" in fmt.pattern)
    if aware.any():
        parsed = _to_datetime(filled[aware], fmt, utc=True)
        seconds[aware], whole[aware] = _seconds(parsed)
    naive = ~aware
    if naive.any():
        local = _to_datetime(filled[naive], fmt)
        if tz != "UTC":
            shape = len(local)
            plain = local.dt.tz_localize(tz, ambiguous=np.ones(shape, bool), nonexistent="NaT")
            strict = local.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
            where = np.flatnonzero(naive)
            zone_reason[where[(plain.isna() & local.notna()).to_numpy()]] = "nonexistent_local_time"
            zone_reason[where[(strict.isna() & local.notna()).to_numpy()]] = "ambiguous_local_time"
            local = plain
        seconds[naive], whole[naive] = _seconds(local)
    return seconds, whole, zone_reason, date_only & (seconds != NAT)


def _seconds(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds (NAT for NaT) and whole-minute flags, in the Series' own time unit."""
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    per_second = EPOCH_UNITS[stamps.dt.unit]  # a datetime unit is an epoch unit
    ticks = stamps.to_numpy().view(np.int64)
    missing = stamps.isna().to_numpy()
    seconds = np.where(missing, NAT, ticks // per_second)
    return seconds, ~missing & (ticks % (60 * per_second) == 0)


def guess_for(example: str) -> StampFormat | None:
    """A format that reads `example`, for the hint of a file whose stamps did not parse."""
    one = pd.Series([example])
    if example.strip().isdigit():
        return _epoch_unit(one)
    for fmt in (ISO_FORMAT, *(StampFormat("pattern", p) for p in CANDIDATES)):
        if (fmt.kind != "iso" or one.str.match(ISO_PATTERN).all()) and _parses(one, fmt).all():
            return fmt
    return None
