"""What a run records of a session: the bars it changed against the repository, not a copy.

A run ends each session with the repository's bars except where the feed lost, broke or
changed them, so it stores only those slots (backfilled, repaired, synthetic or different
bars, and a `none` marker where the repository held a bar the run ended without) and a
fingerprint of every symbol's slice it read. `barkeeper.reports.rebuild` puts the series back
together from the repository and these rows.

Derived bars are not stored: they are recomputed at export by the same kernel (`derive`) from
the rebuilt 1m series and the session's layout (calendar, extended hours, anchor, intervals,
all in `run_session`). Measured on 500 synthetic symbols x one session (BENCHMARKS.md, "Run
storage"): a full copy was 225,674 rows, 61,095 of them derived, which alone would be ~14 MB
of SQLite store at the full copy's ~237 bytes a row, over the 6 MB budget; recomputed, one
symbol's export takes ~32 ms of CPU and the whole session's rebuild 0.8 s, and the result is
bit-identical to the copy (every replay test checks it with BARKEEPER_VERIFY_EXPORTS=1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from barkeeper.core.calendar import SessionMinutes
from barkeeper.core.fingerprint import slice_digests
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.live.session_records import Provenance
from barkeeper.live.session_results import PROVENANCE_NAMES, SessionState
from barkeeper.live.sources import NO_SOURCE
from models.run_bars import write_session_bars

SYMBOLS_PER_CHUNK = 500
"""Symbols whose changes are built and inserted at a time: bounds persistence memory."""


@dataclass(frozen=True, eq=False)
class SourceSlice:
    """The repository's bars of one session as the run read them.

    `panel` holds the bars at the session's minutes (what the run's series starts from);
    `digests` fingerprints every symbol's rows of the read `window` (the local day); `source`
    names the repository source read ("" when the feed was a file: an empty base); `read_at`
    is when the read had returned (epoch ns): the repository as of then is what it read.
    """

    panel: Panel
    digests: pd.DataFrame
    window: tuple[int, int]
    source: str
    read_at: int


def source_slice(
    bars: pd.DataFrame,
    minutes: SessionMinutes,
    symbols: tuple[str, ...],
    window: tuple[int, int],
    source: str,
    read_at: int,
) -> SourceSlice:
    """Fingerprint the rows of `source` read for a session and lay its in-session bars out as
    a panel; with no source (a feed file) the base is empty and every kept bar is a change."""
    if not source:
        bars = bars.iloc[:0]
    panel = Panel.empty(symbols, minutes.minutes)
    panel.fill(bars)
    digests = slice_digests(bars, symbols)
    return SourceSlice(panel, digests, window, source, read_at)


def session_changes(state: SessionState, source: SourceSlice, rows: slice) -> pd.DataFrame:
    """The run_bar changes of the panel rows `rows`: every slot that differs from the source.

    A slot is unchanged only when the run ended with a feed bar equal (all five values) to
    the repository's bar there (the source slice is the feed source's). A bar equal to the
    repository's under another provenance (a backfill, a repair, from any source) is stored
    with NULL prices: only its provenance and source changed. A slot the run ended without,
    where the repository has a bar, gets a `none` marker. Every change names its source.
    """
    prov = state.provenance[rows]
    codes = state.source_codes()[rows]
    have = prov != Provenance.NONE
    repo = source.panel.present[rows]
    equal = have & repo
    for name in PRICE_COLUMNS:
        equal &= getattr(state.panel, name)[rows] == getattr(source.panel, name)[rows]
    r, c = np.nonzero((have & ~(equal & (prov == Provenance.FEED))) | (~have & repo))
    symbols = np.asarray(state.panel.symbols, dtype=object)[rows]
    priced = ~equal[r, c]
    return pd.DataFrame(
        {
            "symbol": symbols[r],
            "ts": state.panel.minutes[c],
            **{
                name: np.where(priced, getattr(state.panel, name)[rows][r, c], np.nan)
                for name in PRICE_COLUMNS
            },
            "provenance": pd.Series(prov[r, c]).map(PROVENANCE_NAMES).to_numpy(dtype=object),
            "source": pd.Series(codes[r, c])
            .map({NO_SOURCE: "", **dict(enumerate(state.source_names))})
            .to_numpy(dtype=object),
        }
    )


def persist_session_bars(
    engine: Engine,
    run_id: str,
    state: SessionState,
    source: SourceSlice,
    *,
    calendar: str,
    anchor: str,
) -> int:
    """Write the session's changes and fingerprints (one transaction); return the rows written."""
    minutes = state.minutes
    spec = {
        "calendar": calendar,
        "extended_hours": minutes.extended_hours,
        "anchor": anchor,
        "derived": ",".join(str(n) for n in sorted(state.derived)),
        "window_start": source.window[0],
        "window_end": source.window[1],
        "source": source.source,
        "read_at": source.read_at,
    }
    return write_session_bars(
        engine, run_id, minutes.session, spec, source.digests, _chunks(state, source)
    )


def _chunks(state: SessionState, source: SourceSlice) -> Iterator[pd.DataFrame]:
    n_symbols = state.panel.shape[0]
    for start in range(0, n_symbols, SYMBOLS_PER_CHUNK):
        yield session_changes(state, source, slice(start, start + SYMBOLS_PER_CHUNK))


def assert_rebuilt(rebuilt: pd.DataFrame, full: pd.DataFrame, run_id: str, session: date) -> None:
    """Raise AssertionError unless the series rebuilt from the store is the full copy, exactly."""
    order = ["interval", "symbol", "ts"]
    got = rebuilt.sort_values(order, ignore_index=True).astype({"provenance": object})
    want = full.loc[:, list(rebuilt.columns)].sort_values(order, ignore_index=True)
    want = want.astype({"provenance": object, "symbol": got["symbol"].dtype})
    pd.testing.assert_frame_equal(
        got, want, check_exact=True, check_dtype=False, obj=f"run {run_id} session {session}"
    )
