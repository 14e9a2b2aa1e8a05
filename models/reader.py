"""Large SQLite reads made by a helper process, so their rows never hold this process's GIL.

SQLite's DB-API hands every row over as a Python tuple (~1.3 µs a row under the GIL: 0.25 s
for a 500-symbol session against a 0.03 s scan), which a replay pays while its stream, upkeep
and validation wait. The helper (barkeeper/core/child.py, started on first use in ~0.15 s)
makes and transposes the tuples on the other core and sends Arrow columns back: the
parent's share of a 500-symbol read falls from ~0.4 s of CPU to ~0.04 s. Whenever the helper
is busy, cannot start or fails, the caller reads in its own process: slower, never lost, and
its errors are the ones users know.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from barkeeper.core.child import Helper, HelperUnavailable

CHILD_ROWS = 100_000
"""Expected rows from which a read goes to the helper (below, the hand-over buys nothing)."""

ROWS_PER_BLOCK = 100_000
_helper = Helper()


def read_in_child(
    path: str, timeout_s: float, sql: str, params: Sequence[object], schema: pa.Schema
) -> pa.Table | None:
    """The rows of `sql` on the SQLite file `path` as a table of `schema`, read by the helper;
    None when it is busy with another read or failed (then read here)."""
    try:
        return _helper.call(
            "models.reader:rows_table", path, timeout_s, sql, list(params), schema, wait=False
        )
    except (HelperUnavailable, sqlite3.Error):
        return None


def rows_table(
    path: str, timeout_s: float, sql: str, params: list[Any], schema: pa.Schema
) -> pa.Table:
    """One read (in the helper): a read-only connection, the rows transposed into Arrow a
    block at a time (the tuples of a whole 5,000-symbol day would take ~0.9 GB)."""
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=timeout_s)
    try:
        cursor = conn.execute(sql, params)
        blocks = iter(lambda: cursor.fetchmany(ROWS_PER_BLOCK), [])
        tables = [columns_table(rows, schema) for rows in blocks]
    finally:
        conn.close()
    return pa.concat_tables(tables) if tables else schema.empty_table()


def columns_table(rows: Sequence[Sequence[object]], schema: pa.Schema) -> pa.Table:
    """DB-API rows transposed into an Arrow table of `schema` (empty rows: an empty table)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    return pa.table(
        [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )
