"""The frames the replay hands to Great Expectations, and what their results mean per symbol."""

from __future__ import annotations

import numpy as np
import pandas as pd

from barkeeper.core.kernels import bucket_layout
from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from barkeeper.live.session_results import SessionState
from barkeeper.quality.frames import prepare_bars_1m, prepare_derived
from barkeeper.quality.validation import SuiteResult


class CycleChecks:
    """Collects the bars changed between validations, as delivered, for one GX batch.

    Bars that failed the hard checks are kept as the feed delivered them (before repair), so
    the cycle results show the corruption that the upkeep then repaired.
    """

    def __init__(self) -> None:
        self.pending: np.ndarray | None = None
        self.rejected: list[pd.DataFrame] = []
        self.session_rejected: list[pd.DataFrame] = []

    def begin_session(self, shape: tuple[int, int]) -> None:
        self.pending = np.zeros(shape, dtype=bool)
        self.rejected = []
        self.session_rejected = []

    def changed(self, mask: np.ndarray) -> None:
        if self.pending is not None:
            self.pending |= mask

    def reject(self, bars: pd.DataFrame) -> None:
        self.rejected.append(bars)
        self.session_rejected.append(bars)

    def rejected_frame(self, minutes: np.ndarray) -> pd.DataFrame:
        """Prepared `bars_1m` frame of every bar of the session rejected as delivered."""
        if not self.session_rejected:
            return pd.DataFrame()
        frame = pd.concat(self.session_rejected, ignore_index=True)
        return prepare_bars_1m(frame.loc[:, list(BAR_COLUMNS)], minutes)

    def take_frame(
        self, panel_symbols: tuple[str, ...], minutes: np.ndarray, panel, *, pending: bool = True
    ) -> pd.DataFrame:
        """Prepared `bars_1m` frame of the pending bars (if `pending`) and the rejected originals.

        Empty when there is nothing to validate.
        """
        assert self.pending is not None
        mask = self.pending & panel.present if pending else np.zeros_like(self.pending)
        rows, cols = np.nonzero(mask)
        self.pending[:] = False
        if not len(rows) and not self.rejected:
            return pd.DataFrame()
        current = pd.DataFrame(
            {
                "symbol": np.asarray(panel_symbols, dtype=object)[rows],
                "ts": minutes[cols],
                **{name: getattr(panel, name)[rows, cols] for name in PRICE_COLUMNS},
            }
        )
        frames = [current, *self.rejected]
        self.rejected = []
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else current
        return prepare_bars_1m(frame.loc[:, list(BAR_COLUMNS)], minutes)


def final_frames(state: SessionState, bars: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prepared `bars_1m` and `bars_derived` frames of a session's final bars (`session_bars`)."""
    one = bars.loc[(bars["interval"] == 1) & (bars["provenance"] != "synthetic")]
    one = one.loc[:, list(BAR_COLUMNS)].reset_index(drop=True)
    derived = bars.loc[bars["interval"] > 1].reset_index(drop=True)
    derived["end_ts"] = bucket_ends(state, derived)
    return prepare_bars_1m(one, state.minutes.minutes), prepare_derived(derived, one)


def bucket_ends(state: SessionState, derived: pd.DataFrame) -> np.ndarray:
    """End (exclusive) of each derived bar's bucket: short buckets end with their segment."""
    minutes = state.minutes
    ends = np.zeros(len(derived), dtype=np.int64)
    for interval, rows in derived.groupby("interval").indices.items():
        layout = bucket_layout(minutes.minutes, minutes.segment, int(interval))
        end_of = pd.Series(minutes.minutes[layout.stop_idx - 1] + 60, index=layout.starts)
        ends[rows] = end_of.reindex(derived["ts"].to_numpy()[rows]).to_numpy()
    return ends


def symbol_success(results: list[SuiteResult], symbols: tuple[str, ...]) -> dict[str, bool]:
    """Per symbol: True unless a critical expectation failed on one of its rows."""
    success = dict.fromkeys(symbols, True)
    for result in results:
        if result.severity != "critical" or result.success:
            continue
        if result.failed_keys is None or result.failed_keys.empty:
            return dict.fromkeys(symbols, False)
        for symbol in result.failed_keys["symbol"].unique():
            success[symbol] = False
    return success
