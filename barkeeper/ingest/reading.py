"""Reading vendor files into raw text columns: CSV or Parquet, header names, line origins.

Nothing is checked here beyond the file's shape (encoding, header, field count, line length);
the row checks live in `barkeeper.ingest.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from barkeeper.core.panel import PRICE_COLUMNS
from barkeeper.errors import InputFileError

MAX_LINE_CHARS = 4096
TIMESTAMP_NAMES = ("timestamp", "datetime", "date")
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
PARQUET_MAGIC = b"PAR1"
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass
class RawTable:
    """Raw text columns of the required fields, with each row's origin."""

    columns: dict[str, pd.Series]  # timestamp, open, high, low, close, volume → str Series
    line: np.ndarray  # int64, 1-based
    raw: np.ndarray  # object: the row as written
    rejected: list[tuple[int, str, str]]  # (line, raw, reason) found while splitting
    read: int


def open_head(path: Path) -> bytes:
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


def read_csv(path: Path) -> RawTable:
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
    return RawTable(
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


def read_parquet(path: Path) -> RawTable:
    try:
        names = [name.lower() for name in pq.read_schema(path).names]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise InputFileError(f"{path}: column {', '.join(twice)} appears more than once")
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
    return RawTable(
        columns=columns,
        line=np.arange(1, len(frame) + 1, dtype=np.int64),
        raw=raw,
        rejected=[],
        read=len(frame),
    )
