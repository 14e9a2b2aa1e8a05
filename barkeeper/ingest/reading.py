"""Reading vendor files into raw text columns, in chunks: CSV (plain, .gz, a .zip of one CSV)
or Parquet; header names and their aliases; each row's line of origin.

Nothing is checked here beyond the file's shape (encoding, header, field count, line length);
the row checks live in `barkeeper.ingest.checks`.
"""

from __future__ import annotations

import codecs
import gzip
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from barkeeper.core.panel import PRICE_COLUMNS
from barkeeper.errors import InputFileError

MAX_LINE_CHARS = 4096
CHUNK_ROWS = 100_000  # rows parsed and checked at a time: memory stays a few times a chunk
#: Header names (lower case, spaces and underscores removed) each field may go by.
ALIASES = {
    "timestamp": ("timestamp", "datetime", "time", "ts", "date"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
}
STAMP_NAMES = " | ".join(ALIASES["timestamp"]) + " | date + time"
MAGIC = {"bzip2": b"BZh", "xz": b"\xfd7zXZ\x00", "zstd": b"\x28\xb5\x2f\xfd"}
GZIP_MAGIC, ZIP_MAGIC = b"\x1f\x8b", b"PK\x03\x04"
PARQUET_MAGIC = b"PAR1"
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Layout:
    """Where a file's fields are: column positions, and the header names the stamp came from."""

    index: dict[str, int]  # timestamp (or date + time), open, high, low, close, [volume]
    stamp_names: tuple[str, ...]  # one name, or (date, time) for separate columns

    @property
    def has_volume(self) -> bool:
        return "volume" in self.index


@dataclass
class RawTable:
    """Raw text columns of one chunk, with each row's origin."""

    columns: dict[str, pd.Series]  # timestamp, open, high, low, close, [volume] → str Series
    line: np.ndarray  # int64, 1-based
    raw: np.ndarray  # object: the row as written
    rejected: list[tuple[int, str, str]]  # (line, raw, reason) found while splitting
    read: int


def open_head(path: Path) -> bytes:
    """The first bytes of `path`; an InputFileError for a missing, empty or unreadable file."""
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
    for kind, magic in MAGIC.items():
        if head.startswith(magic):
            raise InputFileError(
                f"{path}: {kind}-compressed file; barkeeper reads .csv, .csv.gz, .zip and "
                ".parquet: decompress it first"
            )
    return head


def read_chunks(path: Path, rows: int = CHUNK_ROWS) -> tuple[Layout, Iterator[RawTable]]:
    """The file's layout and an iterator over its rows, `rows` at a time (CSV or Parquet)."""
    head = open_head(path)
    if head.startswith(PARQUET_MAGIC):
        return _parquet_chunks(path, rows)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        raise InputFileError(f"{path}: not a Parquet file (no PAR1 header)")
    return _csv_chunks(path, head, rows)


@contextmanager
def _binary(path: Path, head: bytes) -> Iterator[IO[bytes]]:
    """The CSV's bytes: the file itself, gunzipped, or the one CSV inside a zip archive."""
    if head.startswith(GZIP_MAGIC):
        with gzip.open(path, "rb") as handle:
            yield handle
    elif head.startswith(ZIP_MAGIC):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise InputFileError(f"{path}: not a readable zip archive") from None
        with archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir()
                and not m.filename.startswith("__MACOSX/")
                and not Path(m.filename).name.startswith(".")
            ]
            if len(members) != 1:
                names = ", ".join(m.filename for m in members) or "nothing"
                raise InputFileError(
                    f"{path}: a zip archive must hold exactly one CSV file; it holds {names}"
                )
            with archive.open(members[0]) as handle:
                yield handle
    else:
        with path.open("rb") as handle:
            yield handle


def _text_lines(path: Path, handle: IO[bytes]) -> Iterator[str]:
    """Decoded lines without their line ends (UTF-8, UTF-8 with BOM or UTF-16 with BOM)."""
    try:
        first = handle.read(65536)
    except (OSError, EOFError, zipfile.BadZipFile, gzip.BadGzipFile) as error:
        raise InputFileError(f"{path}: cannot be decompressed ({error})") from None
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif b"\x00" in first:
        raise InputFileError(f"{path}: binary content, not a CSV text file")
    else:
        encoding = "utf-8-sig"
    whole = io.BufferedReader(_Prepend(first, handle))  # type: ignore[arg-type]
    text = io.TextIOWrapper(whole, encoding=encoding, newline=None)
    try:
        for line in text:
            yield line.rstrip("\n")
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not UTF-8 text (binary or another encoding)") from None
    except (OSError, EOFError, zipfile.BadZipFile, gzip.BadGzipFile) as error:
        raise InputFileError(f"{path}: cannot be decompressed ({error})") from None


class _Prepend(io.RawIOBase):
    """A raw stream of `first` followed by the rest of `handle` (the sniffed bytes put back)."""

    def __init__(self, first: bytes, handle: IO[bytes]) -> None:
        self._first, self._handle = memoryview(first), handle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._first.nbytes:
            n = min(len(buffer), self._first.nbytes)
            buffer[:n] = self._first[:n]
            self._first = self._first[n:]
            return n
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _csv_chunks(path: Path, head: bytes, rows: int) -> tuple[Layout, Iterator[RawTable]]:
    with _binary(path, head) as handle:
        lines = _text_lines(path, handle)
        header_line = next(lines, "")
    header = _split(header_line)
    if not any(h.strip() for h in header):
        raise InputFileError(f"{path}: the first line is empty, expected a header")
    layout = _layout(path, header, header_line)
    return layout, _csv_rows(path, head, layout, len(header), rows)


def _csv_rows(path: Path, head: bytes, layout: Layout, width: int, rows: int) -> Iterator[RawTable]:
    seen = 0
    with _binary(path, head) as handle:
        numbered = enumerate(_text_lines(path, handle), start=1)
        next(numbered, None)  # the header
        while batch := list(islice(numbered, rows)):
            table = _split_rows(batch, layout, width)
            seen += table.read
            yield table
    if not seen:
        raise InputFileError(f"{path}: header only, no data rows")


def _split_rows(batch: list[tuple[int, str]], layout: Layout, width: int) -> RawTable:
    """Split one batch of numbered lines into fields; wrong shapes are rejected rows."""
    rejected: list[tuple[int, str, str]] = []
    kept_line, kept_raw, fields_of = [], [], []
    read = 0
    for n, line in batch:
        if not line.strip():
            continue
        read += 1
        if len(line) > MAX_LINE_CHARS:
            rejected.append((n, line[:MAX_LINE_CHARS] + "…", "line_too_long"))
            continue
        fields = _split(line)
        if len(fields) != width:
            rejected.append((n, line, "wrong_field_count"))
            continue
        kept_line.append(n)
        kept_raw.append(line)
        fields_of.append(fields)
    columns = {
        name: pd.Series([r[i] for r in fields_of], dtype="str") for name, i in layout.index.items()
    }
    return RawTable(
        columns=_joined_stamp(columns),
        line=np.asarray(kept_line, dtype=np.int64),
        raw=np.asarray(kept_raw, dtype=object),
        rejected=rejected,
        read=read,
    )


def _joined_stamp(columns: dict[str, pd.Series]) -> dict[str, pd.Series]:
    """Separate date and time columns as one `timestamp` column ("date time")."""
    if "date" not in columns:
        return columns
    out = dict(columns)
    date, clock = out.pop("date").str.strip(), out.pop("time").str.strip()
    out["timestamp"] = (date + " " + clock).where(date.str.len().gt(0) & clock.str.len().gt(0), "")
    return out


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


def _normal(name: str) -> str:
    return name.strip().strip("<>").lower().replace(" ", "").replace("_", "")


def _layout(path: Path, header: list[str], header_line: str) -> Layout:
    """Positions of the fields by their names or aliases (case-insensitive, any order)."""
    names = [_normal(h) for h in header]
    index: dict[str, int] = {}
    for field, aliases in ALIASES.items():
        found = [n for n in aliases if n in names]
        for name in found:
            if names.count(name) > 1:
                raise InputFileError(f"{path}: column {name!r} appears more than once")
        if field != "timestamp" and len(found) > 1:
            raise InputFileError(f"{path}: columns {' and '.join(found)} both name {field}")
        if found:
            index[field] = names.index(found[0])
    stamp_names: tuple[str, ...] = ()
    if "date" in names and "time" in names:  # separate date and time columns
        index["date"], index["time"] = names.index("date"), names.index("time")
        index.pop("timestamp", None)
        stamp_names = (header[index["date"]].strip(), header[index["time"]].strip())
    elif "timestamp" in index:
        stamp_names = (header[index["timestamp"]].strip(),)
    required = ("timestamp", *PRICE_COLUMNS[:4])
    missing = [c for c in required if c not in index and not (c == "timestamp" and stamp_names)]
    if missing:
        for delimiter, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if delimiter in header_line:
                raise InputFileError(
                    f"{path}: fields are separated by {label}; barkeeper reads comma-separated"
                    " files"
                )
        named = ", ".join(STAMP_NAMES if c == "timestamp" else c for c in missing)
        raise InputFileError(f"{path}: missing column(s) {named}; found {', '.join(header)}")
    return Layout(index=index, stamp_names=stamp_names)


def _parquet_chunks(path: Path, rows: int) -> tuple[Layout, Iterator[RawTable]]:
    try:
        source = pq.ParquetFile(path)
        names = [name.lower() for name in source.schema_arrow.names]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise InputFileError(f"{path}: column {', '.join(twice)} appears more than once")
    except (pa.ArrowException, OSError) as error:
        raise InputFileError(f"{path}: not a readable Parquet file ({error})") from None
    header = [str(c) for c in source.schema_arrow.names]
    layout = _layout(path, header, ",".join(header))
    if source.metadata.num_rows == 0:
        raise InputFileError(f"{path}: no data rows")
    return layout, _parquet_rows(path, source, layout, rows)


def _parquet_rows(
    path: Path, source: pq.ParquetFile, layout: Layout, rows: int
) -> Iterator[RawTable]:
    first = 1
    try:
        for batch in source.iter_batches(batch_size=rows):
            text = batch.to_pandas(ignore_metadata=True).astype("str")
            columns = {name: text.iloc[:, i] for name, i in layout.index.items()}
            yield RawTable(
                columns=_joined_stamp(columns),
                line=np.arange(first, first + len(text), dtype=np.int64),
                raw=text.fillna("").agg(",".join, axis=1).to_numpy(dtype=object),
                rejected=[],
                read=len(text),
            )
            first += len(text)
    except (pa.ArrowException, OSError) as error:
        raise InputFileError(f"{path}: not a readable Parquet file ({error})") from None


def raw_lines(path: Path, lines: np.ndarray) -> dict[int, str]:
    """The rows written at `lines` (a second pass, for evidence found only after the first)."""
    wanted = set(int(n) for n in lines)
    found: dict[int, str] = {}
    if not wanted:
        return found
    for table in read_chunks(path)[1]:
        keep = np.isin(table.line, list(wanted))
        found.update(zip(table.line[keep].tolist(), table.raw[keep].tolist(), strict=True))
    return found
