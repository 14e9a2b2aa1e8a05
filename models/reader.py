"""Large SQLite reads made in a child process, so their rows never hold this process's GIL.

SQLite's DB-API hands every row over as a Python tuple (~1.3 µs a row under the GIL: 0.25 s
for a 500-symbol session against a 0.03 s scan), which a replay pays while its stream, upkeep
and validation wait. A child (`python -m models.reader`, started on first use in ~0.15 s)
makes and transposes the tuples on the other core and sends Arrow columns back by a pipe:
the parent's share of a 500-symbol read falls from ~0.4 s of CPU to ~0.04 s. A plain
subprocess, not multiprocessing: spawning would run the parent's `__main__` again in the
child. Whenever the child is busy, cannot start or fails, the caller reads in its own
process: slower, never lost, and its errors are the ones users know.
"""

from __future__ import annotations

import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any
from urllib.parse import quote

import pyarrow as pa

CHILD_ROWS = 100_000
"""Expected rows from which a read goes to the child (below, the hand-over buys nothing)."""

_HEADER = struct.Struct("!Q")  # the byte length of each message that follows
_lock = threading.Lock()
_child: subprocess.Popen[bytes] | None = None


def read_in_child(
    path: str, timeout_s: float, sql: str, params: Sequence[object], schema: pa.Schema
) -> pa.Table | None:
    """The rows of `sql` on the SQLite file `path` as a table of `schema`, read by the child;
    None when the child is busy with another read or failed (then read here)."""
    if not _lock.acquire(blocking=False):
        return None
    try:
        child = _started()
        if child is None:
            return None
        _send(child.stdin, pickle.dumps((path, timeout_s, sql, list(params), schema)))
        ok, payload = _receive(child.stdout)
        if not ok:
            return None
        with pa.ipc.open_stream(payload) as stream:
            return stream.read_all()
    except (OSError, EOFError, struct.error, pa.ArrowException):
        _stop()
        return None
    finally:
        _lock.release()


def _started() -> subprocess.Popen[bytes] | None:
    global _child
    if _child is not None and _child.poll() is None:
        return _child
    try:
        _child = subprocess.Popen(
            [sys.executable, "-m", "models.reader"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # its failures come back as "read here", never as noise
        )
    except OSError:
        _child = None
    return _child


def _stop() -> None:
    global _child
    child, _child = _child, None
    if child is not None:
        child.kill()
        child.wait()


def _send(pipe: IO[bytes] | None, data: bytes) -> None:
    assert pipe is not None
    pipe.write(_HEADER.pack(len(data)) + data)
    pipe.flush()


def _read_exactly(pipe: IO[bytes] | None, size: int) -> bytes:
    assert pipe is not None
    data = pipe.read(size)
    if len(data) != size:
        raise EOFError("the reading process ended")
    return data


def _receive(pipe: IO[bytes] | None) -> tuple[bool, bytes]:
    (size,) = _HEADER.unpack(_read_exactly(pipe, _HEADER.size))
    payload = _read_exactly(pipe, size)
    return payload[:1] == b"1", payload[1:]


def _table(path: str, timeout_s: float, sql: str, params: list[Any], schema: pa.Schema) -> bytes:
    """One read in the child: a read-only connection, the rows transposed into Arrow IPC."""
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=timeout_s)
    try:
        rows = conn.execute(sql, params).fetchall()
    finally:
        conn.close()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    table = pa.table(
        [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _serve() -> None:
    """The child's loop: a request in, a table (or a failure) out, until the parent goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import gc

    gc.disable()  # row tuples cannot form cycles; collections would only slow the transpose
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            (size,) = _HEADER.unpack(_read_exactly(requests, _HEADER.size))
            request = pickle.loads(_read_exactly(requests, size))
        except EOFError:
            return
        try:
            reply = b"1" + _table(*request)
        except Exception as error:  # the parent reads again itself and meets the error there
            reply = b"0" + str(error).encode()
        _send(replies, reply)


if __name__ == "__main__":
    _serve()
