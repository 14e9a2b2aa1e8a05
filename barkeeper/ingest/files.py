"""Ingest vendor files: parse CSV/Parquet bars, check every row, store the good, quarantine the bad.

Parsing (`parse_file`) is pure and vectorised; `ingest_file` writes its outcome to the store in
one transaction. For every file: read = stored + quarantined + skipped.

Counting rules
--------------
- read: data rows of the file (CSV: non-blank lines after the header; Parquet: rows).
- skipped: exact duplicates within the file (same minute, same OHLCV; the first is kept) plus
  rows identical to the bar already in the repository (so a re-import skips everything).
- quarantined: rows that fail a check, one reason each (the first in `REASONS` that applies).
  A minute that appears with *different* values is ambiguous: every row of that minute is
  quarantined as ``conflicting_duplicate`` and none is stored (we cannot tell which is right).
- stored: new bars, and bars whose values differ from the stored ones (vendor corrections).

Re-importing a file replaces that file's quarantine records instead of adding new ones.
Symbols: a symbol taken from a file name must look like a ticker; a symbol given with
``--symbol`` may be any 1-64 characters without commas or control characters, the same rule as
the replay's parameters, so whatever can be replayed can be imported. Every value reaches the
store as a bound parameter: ``X'); DROP TABLE bar;--`` is stored as a plain name.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from barkeeper.errors import InputFileError, ParameterError
from models.repository import record_ingested_file, upsert_bars, write_quarantine

log = logging.getLogger(__name__)

MAX_LINE_CHARS = 4096

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
    "high_below_low": "high < low",
    "high_below_open_close": "high < open or high < close",
    "low_above_open_close": "low > open or low > close",
    "conflicting_duplicate": "another row of the file has the same minute with other values",
}
TIMESTAMP_NAMES = ("timestamp", "datetime", "date")
NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
SYMBOL_PATTERN = re.compile(r"[A-Za-z0-9^][A-Za-z0-9._^=-]{0,31}")  # from a file name
GIVEN_SYMBOL_PATTERN = re.compile(r"[^,\x00-\x1f\x7f]{1,64}")  # --symbol (as ReplayParameters)
OFFSET_PATTERN = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
PARQUET_MAGIC = b"PAR1"
PARQUET_SUFFIXES = (".parquet", ".pq")
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


@dataclass(frozen=True)
class IngestReport:
    """Counts of one import; read == stored + quarantined + skipped."""

    path: str
    symbol: str
    read: int
    stored: int
    quarantined: int
    skipped: int
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape of one file."""
        return asdict(self)


def ingest_file(
    engine: Engine, path: str | Path, symbol: str | None = None, tz: str = "UTC"
) -> IngestReport:
    """Import one vendor file into the repository (idempotent).

    Parameters
    ----------
    engine
        A migrated store.
    path
        A CSV or Parquet file of 1-minute bars.
    symbol
        The symbol of every row; default: the file name up to its first ``_``.
    tz
        IANA time zone of naive timestamps; timestamps with an offset are converted to UTC.

    Raises
    ------
    InputFileError
        The file cannot be read as bars at all (recorded as a rejected import).
    ParameterError
        `symbol` or `tz` is invalid.
    """
    try:
        parsed = parse_file(path, symbol, tz)
    except InputFileError as error:
        resolved = str(Path(path).resolve())
        record_ingested_file(engine, resolved, symbol or "", status="rejected", reason=str(error))
        raise
    with engine.begin() as conn:
        counts = upsert_bars(conn, parsed.bars, source=Path(path).name)
        write_quarantine(conn, parsed.quarantine, file=parsed.path)
        skipped = parsed.skipped + counts.skipped
        record_ingested_file(
            conn,
            parsed.path,
            parsed.symbol,
            read=parsed.read,
            stored=counts.stored,
            quarantined=len(parsed.quarantine),
            skipped=skipped,
        )
    reasons = parsed.quarantine["reason"].value_counts()
    report = IngestReport(
        path=str(path),
        symbol=parsed.symbol,
        read=parsed.read,
        stored=counts.stored,
        quarantined=len(parsed.quarantine),
        skipped=skipped,
        reasons={r: int(reasons[r]) for r in REASONS if r in reasons.index},
    )
    log.info("imported %s: %s", path, report)
    return report


def parse_file(path: str | Path, symbol: str | None = None, tz: str = "UTC") -> ParsedFile:
    """Parse and check a vendor file without touching the store (see the module's rules).

    Parameters
    ----------
    path
        A CSV (by default) or Parquet file (by its ``PAR1`` header, whatever the suffix).
    symbol
        The symbol of every row; default: the file name up to its first ``_``.
    tz
        IANA time zone of naive timestamps.

    Returns
    -------
    ParsedFile
        Good bars sorted by ts, quarantine rows (file, line, raw, reason, symbol) sorted by
        line, rows read and exact duplicates skipped.
    """
    path = Path(path)
    zone = validate_tz(tz)
    symbol = validate_symbol(symbol) if symbol is not None else symbol_from_path(path)
    head = _open_head(path)
    if head.startswith(PARQUET_MAGIC):
        table = _read_parquet(path)
    elif path.suffix.lower() in PARQUET_SUFFIXES:
        raise InputFileError(f"{path}: not a Parquet file (no PAR1 header)")
    else:
        table = _read_csv(path)
    return _check(table, str(path.resolve()), symbol, zone)


def validate_tz(tz: str) -> str:
    """`tz` if it names an IANA time zone, else a ParameterError naming the fix."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ParameterError(
            f"--tz: unknown time zone {tz!r}; use an IANA name such as UTC or America/New_York"
        ) from None
    return tz


def validate_symbol(symbol: str) -> str:
    """`symbol` if it is 1-64 characters without commas or control characters and not blank."""
    if not GIVEN_SYMBOL_PATTERN.fullmatch(symbol) or not symbol.strip():
        raise ParameterError(
            f"--symbol: {symbol!r} is not a ticker symbol "
            "(1-64 characters, no commas or control characters)"
        )
    return symbol.strip().upper()  # tickers are case-insensitive; the store keeps upper case


def symbol_from_path(path: Path) -> str:
    """The file name up to its first ``_`` (``DBB_1min_….csv`` → ``DBB``), or its stem."""
    name = path.name.split("_", 1)[0] if "_" in path.name else path.stem
    if not SYMBOL_PATTERN.fullmatch(name):
        raise ParameterError(
            f"{path}: cannot take a ticker symbol from the file name ({name!r}); pass --symbol"
        )
    return name.upper()


@dataclass
class _Table:
    """Raw text columns of the required fields, with each row's origin."""

    columns: dict[str, pd.Series]  # timestamp, open, high, low, close, volume → str Series
    line: np.ndarray  # int64, 1-based
    raw: np.ndarray  # object: the row as written
    rejected: list[tuple[int, str, str]]  # (line, raw, reason) found while splitting
    read: int


def _open_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a file") from None
    except OSError as error:
        raise InputFileError(f"{path}: cannot be read ({error.strerror})") from None
    if not head:
        raise InputFileError(f"{path}: empty file")
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            raise InputFileError(f"{path}: {kind}-compressed file; decompress it before importing")
    return head


def _read_csv(path: Path) -> _Table:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    else:
        if b"\x00" in data[:65536]:
            raise InputFileError(f"{path}: binary content, not a CSV text file")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputFileError(f"{path}: not UTF-8 text (binary or another encoding)") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    header = _split(lines[0])
    if not any(h.strip() for h in header):
        raise InputFileError(f"{path}: the first line is empty, expected a header")
    index = _column_index(path, header, lines[0])
    numbered = [(n, line) for n, line in enumerate(lines[1:], start=2) if line.strip()]
    if not numbered:
        raise InputFileError(f"{path}: header only, no data rows")
    width = len(header)
    rejected: list[tuple[int, str, str]] = []
    kept_line, kept_raw, rows = [], [], []
    for n, line in numbered:
        if len(line) > MAX_LINE_CHARS:
            rejected.append((n, line[:MAX_LINE_CHARS] + "…", "line_too_long"))
            continue
        fields = _split(line)
        if len(fields) != width:
            rejected.append((n, line, "wrong_field_count"))
            continue
        kept_line.append(n)
        kept_raw.append(line)
        rows.append(fields)
    columns = {name: pd.Series([r[i] for r in rows], dtype="str") for name, i in index.items()}
    return _Table(
        columns=columns,
        line=np.asarray(kept_line, dtype=np.int64),
        raw=np.asarray(kept_raw, dtype=object),
        rejected=rejected,
        read=len(numbered),
    )


def _split(line: str) -> list[str]:
    """Fields of a comma-separated line (double quotes around a field are removed)."""
    if '"' not in line:
        return line.split(",")
    fields, current, quoted = [], [], False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def _column_index(path: Path, header: list[str], header_line: str) -> dict[str, int]:
    """Positions of timestamp, open, high, low, close, volume (names case-insensitive)."""
    names = [h.strip().lower() for h in header]
    index: dict[str, int] = {}
    for name in PRICE_COLUMNS:
        if names.count(name) > 1:
            raise InputFileError(f"{path}: column {name!r} appears more than once")
        if name in names:
            index[name] = names.index(name)
    stamp = next((n for n in TIMESTAMP_NAMES if n in names), None)
    if stamp is not None:
        index["timestamp"] = names.index(stamp)
    missing = [c for c in ("timestamp", *PRICE_COLUMNS) if c not in index]
    if missing:
        for delimiter, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if delimiter in header_line:
                raise InputFileError(
                    f"{path}: fields are separated by {label}; barkeeper reads comma-separated"
                    " files"
                )
        wanted = " | ".join(TIMESTAMP_NAMES) if "timestamp" in missing else ""
        named = ", ".join(wanted if c == "timestamp" else c for c in missing)
        raise InputFileError(f"{path}: missing column(s) {named}; found {', '.join(header)}")
    return {"timestamp": index["timestamp"], **{c: index[c] for c in PRICE_COLUMNS}}


def _read_parquet(path: Path) -> _Table:
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as error:
        raise InputFileError(f"{path}: not a readable Parquet file ({error})") from None
    if not isinstance(frame.index, pd.RangeIndex):  # e.g. the timestamps saved as the index
        frame = frame.reset_index()
    header = [str(c) for c in frame.columns]
    index = _column_index(path, header, ",".join(header))
    if frame.empty:
        raise InputFileError(f"{path}: no data rows")
    text = frame.astype("str")
    columns = {name: text.iloc[:, i].reset_index(drop=True) for name, i in index.items()}
    raw = text.fillna("").agg(",".join, axis=1).to_numpy(dtype=object)
    return _Table(
        columns=columns,
        line=np.arange(1, len(frame) + 1, dtype=np.int64),
        raw=raw,
        rejected=[],
        read=len(frame),
    )


def _check(table: _Table, file: str, symbol: str, tz: str) -> ParsedFile:
    """Apply the row checks in `REASONS` order; split good bars, quarantine and duplicates."""
    cols = {name: s.str.strip() for name, s in table.columns.items()}
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
