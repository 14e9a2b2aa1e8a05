"""A run's full series put back together: the repository's bars plus the run's changes.

The repository slice is read again and checked against the fingerprint the run recorded; a
slice that changed since refuses the rebuild (RepositoryChangedError) rather than export bars
the run never had. Derived bars are recomputed with the replay's own kernel and layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

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
from models.repository import read_bars
from models.run_bars import (
    FULL_COLUMNS,
    read_full_copy,
    read_run_changes,
    read_run_session,
    read_run_sources,
    run_sessions,
)

PROVENANCE_CODES = {name: code for code, name in PROVENANCE_NAMES.items()}


def session_series(
    engine: Engine, run_id: str, session: date, symbols: Sequence[str] | None = None
) -> pd.DataFrame:
    """The run's bars of `session` (all its symbols, or `symbols`), as `series_bars` lays them out.

    A session stored as a full copy (runs before revision 0003) is read as it is.

    Raises
    ------
    RepositoryChangedError
        The repository's rows of a symbol's session differ from those the run read.
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
    repository = read_bars(engine, names, *window, source=base)
    check_sources(run_id, session, sources, slice_digests(repository, names))
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


def check_sources(run_id: str, session: date, recorded: pd.DataFrame, now: pd.DataFrame) -> None:
    """Raise RepositoryChangedError naming the first symbol whose slice no longer matches."""
    merged = recorded.merge(now, on="symbol", how="left", suffixes=("", "_now"))
    changed = merged.loc[merged["digest"] != merged["digest_now"]]
    if len(changed):
        row = changed.iloc[0]
        others = f" and {len(changed) - 1} more symbol(s)" if len(changed) > 1 else ""
        where = f"({row['symbol']}, {session}){others}"
        raise RepositoryChangedError(
            f"the repository changed since run {run_id} read it {where}; it read "
            f"{row['bars']} bars there and now holds {row['bars_now']} (or other values): "
            "restore those bars or replay the session again"
        )


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
