"""Ingest vendor files: read CSV/Parquet bars in chunks, check every row, store the good,
quarantine the bad, keep the bars a file replaces as revisions.

Parsing (`parse_file`) is pure and vectorised per chunk; `ingest_file` writes its outcome to
the store in one transaction. For every file: read = stored + revised + quarantined + skipped.

Counting rules
--------------
- read: data rows of the file (CSV: non-blank lines after the header; Parquet: rows).
- skipped: exact duplicates within the file (same minute, same OHLCV; the first is kept),
  rows identical to the bar already in the repository (so a re-import skips everything), and
  rows left out by ``--on-conflict keep``.
- quarantined: rows that fail a check, one reason each (the first in `REASONS` that applies).
  A minute that appears with *different* values is ambiguous: every row of that minute is
  quarantined as ``conflicting_duplicate`` and none is stored (we cannot tell which is right);
  with ``--on-conflict quarantine`` a row whose stored bar differs is quarantined too.
- stored: new bars. revised: bars whose values differ from the stored ones (a vendor
  revision); the stored values are kept in `bar_revision`.

Every import is a delivery of its own (path, content hash, time). Re-importing the same bytes
replaces that delivery's quarantine records; a new delivery under the same name keeps them.
Symbols: a symbol taken from a file name must look like a ticker; a symbol given with
``--symbol`` may be any 1-64 characters without commas or control characters, the same rule as
the replay's parameters, so whatever can be replayed can be imported. Every value reaches the
store as a bound parameter: ``X'); DROP TABLE bar;--`` is stored as a plain name.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from sqlalchemy import Engine

from barkeeper.errors import InputFileError, ParameterError
from barkeeper.ingest.advice import convention_warning, fix_for
from barkeeper.ingest.checks import GOOD_FIELDS, REASONS, check_rows, settle_duplicates
from barkeeper.ingest.reading import raw_lines, read_chunks
from barkeeper.ingest.stamps import StampFormat, format_from_option, infer_format
from barkeeper.params import DEFAULT_SOURCE, SOURCE_PATTERN
from models.repository import record_ingested_file, write_quarantine
from models.revisions import ON_CONFLICT, OnConflict, store_bars

log = logging.getLogger(__name__)

SOURCE_NAME = re.compile(SOURCE_PATTERN)
SYMBOL_PATTERN = re.compile(r"[A-Z0-9^][A-Z0-9^=-]{0,31}")  # from a file name, upper-cased
GIVEN_SYMBOL_PATTERN = re.compile(r"[^,\x00-\x1f\x7f]{1,64}")  # --symbol (as ReplayParameters)
STAMPS = ("open", "close")
HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class ImportOptions:
    """How to read a vendor's files: stamp label, forced stamp format, stored-bar conflicts."""

    stamp: str = "open"  # open: the stamp is the bar's start; close: its end
    timestamp_format: str | None = None  # None: inferred per file from its rows
    on_conflict: OnConflict = "replace"

    def __post_init__(self) -> None:
        if self.stamp not in STAMPS:
            raise ParameterError(f"--stamp: {self.stamp!r} must be open or close")
        if self.on_conflict not in ON_CONFLICT:
            raise ParameterError(
                f"--on-conflict: {self.on_conflict!r} must be replace, keep or quarantine"
            )
        if self.timestamp_format is not None:
            format_from_option(self.timestamp_format)


@dataclass(frozen=True)
class ParsedFile:
    """A file's good bars (symbol + GOOD_FIELDS, sorted by ts) and rejected rows, before storing."""

    path: str
    symbol: str
    bars: pd.DataFrame
    quarantine: pd.DataFrame  # file, line, raw, reason, symbol, ts, stamp
    read: int
    skipped: int
    format: StampFormat
    stamps: str  # as the report prints it: "%m/%d/%Y %H:%M, America/New_York, label=open"
    volume_missing: bool
    content_hash: str


@dataclass(frozen=True)
class IngestReport:
    """Counts of one import; read == stored + revised + quarantined + skipped."""

    path: str
    symbol: str
    read: int
    stored: int
    quarantined: int
    skipped: int
    revised: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    format: str = ""
    warnings: list[str] = field(default_factory=list)
    first_ts: int | None = None  # the first and last stored bar (epoch seconds), for events
    last_ts: int | None = None

    def to_dict(self) -> dict[str, object]:
        """The `--json` shape of one file."""
        document = asdict(self)
        del document["first_ts"], document["last_ts"]
        return document


def ingest_file(
    engine: Engine,
    path: str | Path,
    symbol: str | None = None,
    tz: str = "UTC",
    options: ImportOptions | None = None,
    source: str = DEFAULT_SOURCE,
) -> IngestReport:
    """Import one vendor file into the repository (idempotent).

    Parameters
    ----------
    engine
        A migrated store.
    path
        A CSV (plain, .csv.gz, or a .zip holding one CSV) or Parquet file of 1-minute bars.
    symbol
        The symbol of every row; default: the file name up to its first ``_``.
    tz
        IANA time zone of naive timestamps; timestamps with an offset are converted to UTC.
    options
        Stamp label, stamp format and what to do with bars that differ from stored ones.
    source
        The named source the bars belong to (a vendor, a recorder).

    Raises
    ------
    InputFileError
        The file cannot be read as bars at all (recorded as a rejected import).
    ParameterError
        `symbol` or `tz` is invalid.
    """
    options = options or ImportOptions()
    source = validate_source(source)
    try:
        parsed = parse_file(path, symbol, tz, options)
    except InputFileError as error:
        resolved = str(Path(path).resolve())
        record_ingested_file(
            engine, resolved, symbol or "", source=source, status="rejected", reason=str(error)
        )
        raise
    with engine.begin() as conn:
        counts = store_bars(
            conn,
            parsed.bars,
            file=Path(path).name,
            on_conflict=options.on_conflict,
            source=source,
        )
        quarantine = parsed.quarantine
        if not counts.conflicts.empty:
            extra = _with_raw(parsed.path, parsed.symbol, counts.conflicts, "conflicts_with_stored")
            quarantine = pd.concat([quarantine, extra]).sort_values("line", ignore_index=True)
        write_quarantine(
            conn,
            quarantine.assign(source=source),
            file=parsed.path,
            content_hash=parsed.content_hash,
        )
        skipped = parsed.skipped + counts.skipped + counts.kept
        record_ingested_file(
            conn,
            parsed.path,
            parsed.symbol,
            source=source,
            read=parsed.read,
            stored=counts.stored,
            revised=counts.revised,
            quarantined=len(quarantine),
            skipped=skipped,
            content_hash=parsed.content_hash,
            format=parsed.stamps,
        )
    reasons = quarantine["reason"].value_counts()
    by_reason = {r: int(reasons[r]) for r in REASONS if r in reasons.index}
    warnings = [w for w in _warnings(parsed, by_reason, quarantine, options.stamp) if w]
    if counts.kept:
        warnings.append(f"{counts.kept:,} bars differ from the stored ones and were kept as stored")
    report = IngestReport(
        path=str(path),
        symbol=parsed.symbol,
        read=parsed.read,
        stored=counts.stored,
        revised=counts.revised,
        quarantined=len(quarantine),
        skipped=skipped,
        reasons=by_reason,
        format=parsed.stamps,
        warnings=warnings,
        first_ts=int(parsed.bars["ts"].min()) if len(parsed.bars) else None,
        last_ts=int(parsed.bars["ts"].max()) if len(parsed.bars) else None,
    )
    log.info("imported %s: %s", path, report)
    return report


def _warnings(
    parsed: ParsedFile, reasons: dict[str, int], quarantine: pd.DataFrame, stamp: str
) -> list[str]:
    """What the report says beyond counts: no volume, the stamp label, a fix for a lost file."""
    out = []
    if parsed.volume_missing:
        out.append("the file has no volume column: its bars are stored with volume 0")
    else:
        out.append(convention_warning(parsed.bars, stamp))
    if reasons:
        top = max(reasons, key=lambda r: reasons[r])
        row = quarantine[quarantine["reason"] == top].iloc[0]
        stamped = top in ("unparseable_timestamp", "date_only_timestamp", "not_whole_minute",
                          "timestamp_in_future")  # fmt: skip
        example = str(row.get("stamp", "")) if stamped else str(row["raw"])
        out.append(fix_for(reasons, parsed.read, example or str(row["raw"]), parsed.format))
    return out


def _with_raw(file: str, symbol: str, rows: pd.DataFrame, reason: str) -> pd.DataFrame:
    """Quarantine rows for `rows` (line, ts) of the file, their text read again."""
    text = raw_lines(Path(file), rows["line"].to_numpy())
    return pd.DataFrame(
        {
            "file": file,
            "line": rows["line"].to_numpy(),
            "raw": [text.get(int(n), "") for n in rows["line"]],
            "reason": reason,
            "symbol": symbol,
            "ts": rows["ts"].to_numpy(),
        }
    )


def parse_file(
    path: str | Path,
    symbol: str | None = None,
    tz: str = "UTC",
    options: ImportOptions | None = None,
) -> ParsedFile:
    """Parse and check a vendor file without touching the store (see the module's rules).

    Parameters
    ----------
    path
        A CSV (plain, gzip, a zip of one CSV) or Parquet file (by its ``PAR1`` header).
    symbol
        The symbol of every row; default: the file name up to its first ``_``.
    tz
        IANA time zone of naive timestamps.
    options
        The stamp label and an optional forced stamp format.

    Returns
    -------
    ParsedFile
        Good bars sorted by ts, quarantine rows sorted by line, rows read, exact duplicates
        skipped, and the stamp format read.
    """
    options = options or ImportOptions()
    path = Path(path)
    zone = validate_tz(tz)
    _check_regular_file(path)
    symbol = validate_symbol(symbol) if symbol is not None else symbol_from_path(path)
    forced = options.timestamp_format
    fmt = format_from_option(forced) if forced is not None else None
    layout, chunks = read_chunks(path)
    goods, rejected, read = [], [], 0
    for table in chunks:
        if fmt is None:
            fmt = infer_format(table.columns["timestamp"], str(path))
        checked = check_rows(table, fmt, zone, options.stamp)
        goods.append(checked.good)
        rejected.append(checked.rejected)
        read += table.read
    assert fmt is not None  # read_chunks raised for a file without rows
    good = pd.concat(goods, ignore_index=True) if len(goods) > 1 else goods[0]
    del goods
    settled = settle_duplicates(good)
    del good
    file = str(path.resolve())
    quarantine = pd.concat(
        [*rejected, _with_raw(file, symbol, settled.conflicting, "conflicting_duplicate")],
        ignore_index=True,
    ).assign(file=file, symbol=symbol)
    bars = settled.bars
    bars.insert(0, "symbol", symbol)
    zone_shown = "UTC" if fmt.kind == "epoch" else zone
    columns = f" (columns {' + '.join(layout.stamp_names)})" if len(layout.stamp_names) > 1 else ""
    return ParsedFile(
        path=file,
        symbol=symbol,
        bars=bars[["symbol", *GOOD_FIELDS]],
        quarantine=quarantine.sort_values("line", ignore_index=True),
        read=read,
        skipped=settled.skipped,
        format=fmt,
        stamps=f"{fmt.describe()}{columns}, {zone_shown}, label={options.stamp}",
        volume_missing=not layout.has_volume,
        content_hash=content_hash(path),
    )


def content_hash(path: Path) -> str:
    """sha256 of the file's bytes: the identity of one delivery."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _check_regular_file(path: Path) -> None:
    """A glob that matched nothing or a pipe (read twice: sniffed, then parsed) is one line."""
    if not path.exists() and any(c in path.name for c in "*?["):
        raise InputFileError(f"{path}: no file matches this pattern")
    if path.exists() and not path.is_file() and not path.is_dir():
        raise InputFileError(
            f"{path}: a pipe or device, not a file; save it to a file first "
            "(e.g. `cmd > bars.csv`), then import that"
        )


def validate_tz(tz: str) -> str:
    """`tz` if it names an IANA time zone, else a ParameterError naming the fix."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ParameterError(
            f"--tz: unknown time zone {tz!r}; use an IANA name such as UTC or America/New_York"
        ) from None
    return tz


def validate_source(source: str) -> str:
    """`source` if it names a source: 1-64 letters, digits, `.`, `_` or `-`, starting alnum."""
    if not SOURCE_NAME.fullmatch(source):
        raise ParameterError(
            f"--source: {source!r} is not a source name "
            "(1-64 letters, digits, '.', '_' or '-', starting with a letter or digit)"
        )
    return source


def validate_symbol(symbol: str) -> str:
    """`symbol` upper-cased, if that is 1-64 characters without commas or control characters.

    Checked after upper-casing, which can lengthen it (``ß`` → ``SS``).
    """
    upper = symbol.strip().upper()  # tickers are case-insensitive; the store keeps upper case
    if not GIVEN_SYMBOL_PATTERN.fullmatch(upper):
        raise ParameterError(
            f"--symbol: {symbol!r} is not a ticker symbol "
            "(1-64 characters once upper-cased, no commas or control characters)"
        )
    return upper


def symbol_from_path(path: Path) -> str:
    """The file name up to its first ``_`` or ``.``, upper-cased, then validated.

    ``DBB_1min_….csv`` → ``DBB``, ``MSFT.csv.bak`` → ``MSFT``.
    """
    name = re.split(r"[_.]", path.name, maxsplit=1)[0].upper()
    if not SYMBOL_PATTERN.fullmatch(name):
        raise ParameterError(
            f"{path}: cannot take a ticker symbol from the file name ({name!r}); pass --symbol"
        )
    return name
