"""Several sources of one session's bars: which source each bar came from, and where the feed and
a backfill source disagree (reconciliation). Pure numpy/pandas, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from barkeeper.core.panel import PRICE_COLUMNS
from barkeeper.live.session_records import Provenance

AGREE, PRICE, VOLUME = 0, 1, 2
KINDS = {PRICE: "price", VOLUME: "volume"}
NO_SOURCE = -1
"""`origin` of a slot no backfill source wrote (a feed bar, a synthetic bar or no bar)."""


def disagreement(
    feed: np.ndarray, backfill: np.ndarray, tolerance_bps: float, volume_tolerance: float
) -> np.ndarray:
    """Per bar (rows of two (n, 5) OHLCV arrays): AGREE, PRICE or VOLUME (price first).

    Prices agree when every one of open, high, low and close is within `tolerance_bps` basis
    points of the backfill source's price; volumes agree when they differ by at most
    `volume_tolerance` times the larger of the two.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        price_off = np.abs(feed[:, :4] - backfill[:, :4]) > tolerance_bps / 1e4 * np.abs(
            backfill[:, :4]
        )
        volume_off = np.abs(feed[:, 4] - backfill[:, 4]) > volume_tolerance * np.maximum(
            np.abs(feed[:, 4]), np.abs(backfill[:, 4])
        )
    kinds = np.where(volume_off, VOLUME, AGREE)
    return np.where(price_off.any(axis=1), PRICE, kinds).astype(np.int8)


@dataclass
class Reconciliation:
    """The comparisons of a session's feed bars with the backfill sources, and the
    disagreements among them, one per (symbol, minute) slot.

    A slot compared again (its feed bar was delivered again) replaces its earlier record, so
    the end state does not depend on when the comparison ran.
    """

    shape: tuple[int, int]
    records: dict[tuple[int, int], tuple[int, int, bool, np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )
    compared: np.ndarray = field(init=False)  # bool (S, M): feed bar compared with a source
    compared_with: np.ndarray = field(init=False)  # int8 (S, M): the source it was compared with

    def __post_init__(self) -> None:
        self.compared = np.zeros(self.shape, dtype=bool)
        self.compared_with = np.full(self.shape, NO_SOURCE, dtype=np.int8)

    def record(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        kinds: np.ndarray,
        sources: np.ndarray,
        feed: np.ndarray,
        backfill: np.ndarray,
        kept_backfill: bool,
    ) -> None:
        """Remember the outcome of comparing the feed bars at (rows, cols)."""
        self.compared[rows, cols] = True
        self.compared_with[rows, cols] = sources
        for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            if kinds[i] == AGREE:
                self.records.pop((r, c), None)
            else:
                self.records[(r, c)] = (
                    int(kinds[i]),
                    int(sources[i]),
                    kept_backfill,
                    feed[i],
                    backfill[i],
                )

    def mask(self) -> np.ndarray:
        """A boolean (S, M) of the slots with a disagreement."""
        mask = np.zeros(self.shape, dtype=bool)
        if self.records:
            rows, cols = np.array(list(self.records)).T
            mask[rows, cols] = True
        return mask

    def frame(
        self, symbols: tuple[str, ...], minutes: np.ndarray, feed: str, names: tuple[str, ...]
    ) -> pd.DataFrame:
        """The disagreements as `discrepancy` rows, ordered by symbol and minute."""
        columns = ["symbol", "ts", "kind", "feed_source", "backfill_source", "kept"]
        sides = [f"{s}_{n}" for s in ("feed", "backfill") for n in PRICE_COLUMNS]
        if not self.records:
            return pd.DataFrame(columns=[*columns, *sides])
        keys = sorted(self.records, key=lambda k: (symbols[k[0]], k[1]))
        values = [self.records[k] for k in keys]
        data: dict[str, object] = {
            "symbol": [symbols[r] for r, _ in keys],
            "ts": minutes[[c for _, c in keys]].astype(np.int64),
            "kind": [KINDS[v[0]] for v in values],
            "feed_source": feed,
            "backfill_source": [names[v[1]] for v in values],
            "kept": ["backfill" if v[2] else "feed" for v in values],
        }
        bars = np.vstack([np.concatenate([v[3], v[4]]) for v in values])
        for i, name in enumerate(sides):
            data[name] = bars[:, i]
        return pd.DataFrame(data)

    def comparisons(
        self, symbols: tuple[str, ...], minutes: np.ndarray, names: tuple[str, ...]
    ) -> pd.DataFrame:
        """The `cross_source` suite's frame: one row per compared minute (symbol, ts, source,
        comparison), `comparison` being "agree" or "SYMBOL YYYY-MM-DD HH:MM UTC class
        (source)", so Data Docs list each disagreeing minute."""
        rows, cols = np.nonzero(self.compared)
        frame = pd.DataFrame(
            {
                "symbol": np.asarray(symbols, dtype=object)[rows],
                "ts": minutes[cols].astype(np.int64),
                "source": np.asarray(names, dtype=object)[self.compared_with[rows, cols]],
                "comparison": "agree",
            }
        )
        for (r, c), (kind, source, *_) in self.records.items():
            at = np.flatnonzero((rows == r) & (cols == c))
            stamp = pd.Timestamp(int(minutes[c]), unit="s").strftime("%Y-%m-%d %H:%M")
            frame.loc[at, "comparison"] = (
                f"{symbols[r]} {stamp} UTC {KINDS[kind]} ({names[source]})"
            )
        return frame


def slot_source_codes(provenance: np.ndarray, origin: np.ndarray | None) -> np.ndarray:
    """Per slot, whose bar it holds: 0 the feed, 1 + i backfill source i, NO_SOURCE for no bar
    or a synthetic one (int8, the shape of `provenance`)."""
    codes = np.full(provenance.shape, NO_SOURCE, dtype=np.int8)
    codes[provenance == Provenance.FEED] = 0
    if origin is not None:
        filled = (provenance == Provenance.BACKFILL) | (provenance == Provenance.REPAIRED)
        known = filled & (origin != NO_SOURCE)
        codes[known] = origin[known] + 1
    return codes


def source_counts(codes: np.ndarray, names: tuple[str, ...]) -> list[str]:
    """Per row of `slot_source_codes` (names: the feed's, then the backfill sources'): the JSON
    text of {source name: bars}, sources without bars left out."""
    counts = np.stack([(codes == k).sum(axis=1) for k in range(len(names))], axis=1)
    merged: list[dict[str, int]] = [{} for _ in range(len(codes))]
    for k, name in enumerate(names):  # a source named twice (feed and backfill) adds up
        for row in np.flatnonzero(counts[:, k]):
            merged[row][name] = merged[row].get(name, 0) + int(counts[row, k])
    return [json.dumps(m, sort_keys=True) for m in merged]
