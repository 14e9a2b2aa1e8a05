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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine

from barkeeper.errors import InputFileError, ParameterError
from barkeeper.ingest.checks import REASONS, ParsedFile, check_rows
from barkeeper.ingest.reading import (
    PARQUET_MAGIC,
    PARQUET_SUFFIXES,
    open_head,
    read_csv,
    read_parquet,
)
from barkeeper.params import DEFAULT_SOURCE, SOURCE_PATTERN
from models.repository import record_ingested_file, upsert_bars, write_quarantine

log = logging.getLogger(__name__)

SOURCE_NAME = re.compile(SOURCE_PATTERN)
SYMBOL_PATTERN = re.compile(r"[A-Za-z0-9^][A-Za-z0-9._^=-]{0,31}")  # from a file name
GIVEN_SYMBOL_PATTERN = re.compile(r"[^,\x00-\x1f\x7f]{1,64}")  # --symbol (as ReplayParameters)


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
    engine: Engine,
    path: str | Path,
    symbol: str | None = None,
    tz: str = "UTC",
    source: str = DEFAULT_SOURCE,
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
    source
        The named source the bars belong to (a vendor, a recorder).

    Raises
    ------
    InputFileError
        The file cannot be read as bars at all (recorded as a rejected import).
    ParameterError
        `symbol` or `tz` is invalid.
    """
    source = validate_source(source)
    try:
        parsed = parse_file(path, symbol, tz)
    except InputFileError as error:
        resolved = str(Path(path).resolve())
        record_ingested_file(
            engine, resolved, symbol or "", source=source, status="rejected", reason=str(error)
        )
        raise
    with engine.begin() as conn:
        counts = upsert_bars(conn, parsed.bars, origin=Path(path).name, source=source)
        write_quarantine(conn, parsed.quarantine.assign(source=source), file=parsed.path)
        skipped = parsed.skipped + counts.skipped
        record_ingested_file(
            conn,
            parsed.path,
            parsed.symbol,
            source=source,
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
    head = open_head(path)
    if head.startswith(PARQUET_MAGIC):
        table = read_parquet(path)
    elif path.suffix.lower() in PARQUET_SUFFIXES:
        raise InputFileError(f"{path}: not a Parquet file (no PAR1 header)")
    else:
        table = read_csv(path)
    return check_rows(table, str(path.resolve()), symbol, zone)


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
