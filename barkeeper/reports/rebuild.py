"""A run's full series put back together: the repository's bars plus the run's changes.

The repository slice is read again and checked against the fingerprint the run recorded; a
slice that changed since (a later delivery) is put back as of when the run read it, from the
storage times and revisions, and checked again; only a slice that still differs (a change
nothing recorded) refuses the rebuild (RepositoryChangedError) rather than export bars the run
never had. Derived bars are recomputed with the replay's own kernel and layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from barkeeper.core.calendar import Calendar
from barkeeper.core.fingerprint import slice_digests
from barkeeper.core.kernels import bucket_layout, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.errors import RepositoryChangedError
from barkeeper.live.session_records import Provenance
from barkeeper.live.session_results import PROVENANCE_NAMES, series_bars
from barkeeper.live.sources import NO_SOURCE
from barkeeper.live.upkeep_config import real_bars
from models.as_of import read_bars_as_of
from models.repository import read_bars
from models.results import resolve_run
from models.run_bars import (
    FULL_COLUMNS,
    read_full_copy,
    read_run_changes,
    read_run_session,
    read_run_sources,
    run_sessions,
)
from models.tables import nanos

PROVENANCE_CODES = {name: code for code, name in PROVENANCE_NAMES.items()}


def session_series(
    engine: Engine, run_id: str, session: date, symbols: Sequence[str] | None = None
) -> pd.DataFrame:
    """The run's bars of `session` (all its symbols, or `symbols`), as `series_bars` lays them out.

    A session stored as a full copy (runs before revision 0003) is read as it is.

    Raises
    ------
    RepositoryChangedError
        The repository's rows of a symbol's session differ from those the run read, even as
        of when it read them.
    """
    spec = read_run_session(engine, run_id, session)
    if spec is None:
        copy = pd.concat(
            [read_full_copy(engine, run_id, session, symbol=s) for s in symbols]
            if symbols is not None
            else [read_full_copy(engine, run_id, session)]
        )
        return copy.drop(columns="session").reset_index(drop=True)
    sources = read_run_sources(engine, run_id, session, symbols)
    names = tuple(sources["symbol"])
    base = spec["source"]  # "" when the feed was a file: the run's changes are every bar
    window = (spec["window_start"], spec["window_end"] if base else spec["window_start"])
    repository = slice_as_read(engine, run_id, session, spec, sources, window)
    minutes = Calendar(spec["calendar"]).session_minutes(session, spec["extended_hours"])
    panel = Panel.empty(names, minutes.minutes)
    panel.fill(repository)
    provenance = np.where(panel.present, Provenance.FEED, Provenance.NONE).astype(np.uint8)
    codes = np.where(panel.present, 0, NO_SOURCE).astype(np.int8)
    changes = read_run_changes(engine, run_id, session, names)
    source_names = (base, *sorted(set(changes["source"]) - {"", base}))
    _apply_changes(panel, provenance, codes, changes, source_names)
    intervals = [int(n) for n in spec["derived"].split(",") if n]
    real = real_bars(provenance)  # fill-forward bars shape prices, never the constituents
    derived = {
        n: derive(
            panel, bucket_layout(minutes.minutes, minutes.segment, n, spec["anchor"]), None, real
        )
        for n in intervals
    }
    return series_bars(panel, provenance, derived, codes, source_names)


def slice_as_read(
    engine: Engine,
    run_id: str,
    session: date,
    spec: Mapping[str, Any],
    recorded: pd.DataFrame,
    window: tuple[int, int],
) -> pd.DataFrame:
    """The repository's bars of the run's slice exactly as the run read them (its fingerprint).

    Today's slice when it still matches; else the slice as of when the run read it (the time
    recorded after the read; runs from before 0007 have only their start, earlier than the
    read, so an import landing in between makes them refuse).
    """
    names = tuple(recorded["symbol"])
    source = spec["source"]
    now = read_bars(engine, names, *window, source=source)
    digests = slice_digests(now, names)
    if _changed(recorded, digests).empty:
        return now
    at = spec.get("read_at")
    if at is None:
        at = nanos(resolve_run(engine, run_id).started_at)
    then = read_bars_as_of(engine, names, *window, at=int(at), source=source)
    if _changed(recorded, slice_digests(then, names)).empty:
        return then
    changed = _changed(recorded, digests)
    row = changed.iloc[0]
    others = f" and {len(changed) - 1} more symbol(s)" if len(changed) > 1 else ""
    raise RepositoryChangedError(
        f"the repository changed since run {run_id} read it ({row['symbol']}, {session})"
        f"{others}; it read {row['bars']} bars there and now holds {row['bars_now']} (or other "
        "values), and no recorded delivery or revision gives them back: restore those bars or "
        "replay the session again"
    )


def _changed(recorded: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    """The recorded fingerprints (with bars_now, digest_now) that `now` no longer matches."""
    merged = recorded.merge(now, on="symbol", how="left", suffixes=("", "_now"))
    return merged.loc[merged["digest"] != merged["digest_now"]]


def _apply_changes(
    panel: Panel,
    provenance: np.ndarray,
    codes: np.ndarray,
    changes: pd.DataFrame,
    names: tuple[str, ...],
) -> None:
    """Write the run's changes over the repository's bars (and their sources over `codes`,
    indexes into `names`).

    A change with prices replaces the bar; one without keeps the repository's values under
    its own provenance and source, or, as a `none` marker, removes the bar.
    """
    if changes.empty:
        return
    rows = pd.Index(panel.symbols).get_indexer(changes["symbol"])
    cols = np.searchsorted(panel.minutes, changes["ts"].to_numpy(dtype=np.int64))
    kinds = changes["provenance"].map(PROVENANCE_CODES).to_numpy(dtype=np.uint8)
    priced = changes["close"].notna().to_numpy() | (kinds == Provenance.NONE)
    for name in PRICE_COLUMNS:
        values = changes[name].to_numpy(dtype=np.float64)
        getattr(panel, name)[rows[priced], cols[priced]] = values[priced]
    provenance[rows, cols] = kinds
    source_codes = {"": NO_SOURCE, **{name: k for k, name in enumerate(names)}}
    codes[rows, cols] = changes["source"].map(source_codes).to_numpy(dtype=np.int8)


def run_series(engine: Engine, run_id: str) -> pd.DataFrame:
    """Every session's bars of a run, with a `session` column (the old run_bar full copy)."""
    frames = [
        session_series(engine, run_id, session).assign(session=session)
        for session in run_sessions(engine, run_id)
    ]
    if not frames:
        return pd.DataFrame(columns=list(FULL_COLUMNS))
    return pd.concat(frames, ignore_index=True)
