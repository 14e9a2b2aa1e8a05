"""The repository as of an earlier time equals what a read at that time returned, across
deliveries that add bars, revise them, and revise bars that were themselves added later."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sqlalchemy import text

from models.as_of import read_bars_as_of
from models.engine import engine_for
from models.repository import read_bars
from models.revisions import store_bars

WINDOW = (0, 3600)
SYMBOLS = ["A", "B"]
FIRST = [(s, m) for s in SYMBOLS for m in range(10) if (s, m) != ("A", 5)]  # A misses minute 5
SECOND = [("A", 5), ("B", 3)]  # adds the missing minute, revises B at minute 3
THIRD = [("A", 5), ("B", 3), ("A", 7)]  # revises the added minute, B again, and A at minute 7


def bars(keys: list[tuple[str, int]], base: float) -> pd.DataFrame:
    """One bar per (symbol, minute) as an import hands them over, priced `base` + minute."""
    frame = pd.DataFrame(keys, columns=["symbol", "minute"])
    price = base + frame["minute"].to_numpy(np.float64)
    prices = {c: price for c in ("open", "high", "low", "close")}
    return pd.DataFrame(
        {"symbol": frame["symbol"], "ts": frame["minute"] * 60, **prices, "volume": 100.0}
    ).assign(line=np.arange(len(frame)) + 2)


def read_now(url: str) -> tuple[int, pd.DataFrame]:
    """A read of the repository and a time taken after it, as a run records them."""
    frame = read_bars(engine_for(url), SYMBOLS, *WINDOW)
    moment = time.time_ns()
    time.sleep(0.002)  # storage times have microseconds: keep the next write's apart
    return moment, frame


def deliver(url: str, frame: pd.DataFrame, file: str) -> None:
    """Store a delivery as an import does: one transaction."""
    with engine_for(url).begin() as conn:
        store_bars(conn, frame, file=file)


def test_the_repository_as_of_each_read_is_what_the_read_returned(db_url: str) -> None:
    engine = engine_for(db_url)
    reads = [read_now(db_url)]
    for keys, base, file in ((FIRST, 10.0, "one.csv"), (SECOND, 20.0, "two.csv"),
                             (THIRD, 30.0, "three.csv")):  # fmt: skip
        deliver(db_url, bars(keys, base), file)
        reads.append(read_now(db_url))
    assert [len(frame) for _, frame in reads] == [0, 19, 20, 20]
    for moment, frame in reads:
        got = read_bars_as_of(engine, SYMBOLS, *WINDOW, at=moment)
        pd.testing.assert_frame_equal(got, frame, check_dtype=False)
    # The three versions of A at minute 5 as the oracle: absent, then 25.0, then 35.0.
    closes = [
        read_bars_as_of(engine, ["A"], 300, 360, at=moment)["close"].tolist() for moment, _ in reads
    ]
    assert closes == [[], [], [25.0], [35.0]]

    # Rows stored before storage times were kept (NULL) count as stored before any read.
    with engine.begin() as conn:
        for table in ("bar", "bar_revision"):
            conn.execute(
                text(f"UPDATE {table} SET stored_at = NULL WHERE stored_at <= :t"),
                {"t": reads[1][0]},
            )
    for moment, frame in reads[1:]:
        got = read_bars_as_of(engine, SYMBOLS, *WINDOW, at=moment)
        pd.testing.assert_frame_equal(got, frame, check_dtype=False)
    first = read_bars_as_of(engine, SYMBOLS, *WINDOW, at=reads[0][0])
    pd.testing.assert_frame_equal(first, reads[1][1], check_dtype=False)
