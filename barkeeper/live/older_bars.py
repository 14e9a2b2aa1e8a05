"""Bars older than `session_data` holds, read from the repository, so that
`get_last_n_bars(symbol, n, interval)` returns n bars whenever the repository has them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from barkeeper.core.calendar import Calendar, SessionMinutes
from barkeeper.core.kernels import Anchor, bucket_layout, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.live.session_records import Provenance

LOOKBACK_SESSIONS = 260
"""How far back (about a year of sessions) a read goes past the history before it gives up."""


@dataclass(frozen=True)
class RepositoryHistory:
    """The repository's sessions before the history ring, read on demand (`OlderBars`)."""

    calendar: Calendar
    read_bars: Callable[[tuple[str, ...], int, int], pd.DataFrame]
    extended_hours: bool = False
    anchor: Anchor = "session"

    def __call__(self, symbol: str, interval: int, n: int, before: date) -> dict[str, np.ndarray]:
        """The last `n` bars of `symbol` in the sessions before `before`, oldest first.

        Reads back in growing blocks of sessions (5, 10, 20, ...) and stops at n bars or after
        LOOKBACK_SESSIONS sessions, so a symbol that never traded costs a bounded read. Derived
        bars are built per session as the replay builds them (buckets anchored at the open).
        """
        parts: list[dict[str, np.ndarray]] = []
        have, looked, block, newest = 0, 0, 5, before
        while have < n and looked < LOOKBACK_SESSIONS:
            count = min(block, LOOKBACK_SESSIONS - looked)
            sessions = self.calendar.previous_sessions(newest, count)
            if not sessions:
                break
            days = [self.calendar.session_minutes(s, self.extended_hours) for s in sessions]
            bars = self.read_bars(
                (symbol,), int(days[0].minutes[0]), int(days[-1].minutes[-1]) + 60
            )
            for minutes in reversed(days):
                part = self._session_tail(symbol, bars, minutes, interval, n - have)
                parts.append(part)
                have += len(part["ts"])
                if have >= n:
                    break
            looked, block, newest = looked + len(sessions), block * 2, sessions[0]
        if not parts:
            return {"ts": np.empty(0, dtype=np.int64)}
        return {c: np.concatenate([p[c] for p in reversed(parts)]) for c in parts[0]}

    def _session_tail(
        self, symbol: str, bars: pd.DataFrame, minutes: SessionMinutes, interval: int, n: int
    ) -> dict[str, np.ndarray]:
        """The last `n` bars of one session (1m as stored, or derived)."""
        panel = Panel.empty((symbol,), minutes.minutes)
        inside = bars["ts"].between(int(minutes.minutes[0]), int(minutes.minutes[-1]))
        panel.fill(bars.loc[inside])
        if interval == 1:
            keep = np.flatnonzero(panel.present[0])[-n:]
            data = {"ts": minutes.minutes[keep]}
            data.update({c: getattr(panel, c)[0, keep] for c in PRICE_COLUMNS})
            data["provenance"] = np.full(len(keep), Provenance.BACKFILL, dtype=np.uint8)
            return data
        layout = bucket_layout(minutes.minutes, minutes.segment, interval, self.anchor)
        d = derive(panel, layout)
        keep = np.flatnonzero(d.count[0] > 0)[-n:]
        data = {"ts": d.starts[keep]}
        data.update({c: getattr(d, c)[0, keep] for c in (*PRICE_COLUMNS, "count")})
        data["expected"] = d.expected[keep]
        return data
