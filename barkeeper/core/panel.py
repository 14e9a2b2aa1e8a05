"""The session panel: one session's 1-minute bars as dense symbol × minute numpy arrays.

Every kernel works on this layout so that one numpy call covers all symbols at once.
A minute with no bar holds NaN in every price column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
BAR_COLUMNS = ("symbol", "ts", *PRICE_COLUMNS)


@dataclass(eq=False)
class Panel:
    """Bars of `symbols` (rows) over the session's expected `minutes` (columns).

    `minutes` are int64 Unix seconds (UTC, bar start), sorted ascending.
    """

    symbols: tuple[str, ...]
    minutes: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def empty(cls, symbols: tuple[str, ...], minutes: np.ndarray) -> Panel:
        shape = (len(symbols), len(minutes))
        arrays = {c: np.full(shape, np.nan) for c in PRICE_COLUMNS}
        return cls(tuple(symbols), np.asarray(minutes, dtype=np.int64), **arrays)

    @property
    def present(self) -> np.ndarray:
        """Boolean (S, M): True where a bar exists."""
        return ~np.isnan(self.close)

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    def fill(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Write `bars` (columns BAR_COLUMNS) into their slots; return the rows that have none.

        Rows whose symbol is not in the panel or whose minute is not an expected minute are
        returned untouched (they are outside the session), never dropped silently.
        """
        sym_index = {s: i for i, s in enumerate(self.symbols)}
        rows = bars["symbol"].map(sym_index).to_numpy(dtype=float, na_value=np.nan)
        ts = bars["ts"].to_numpy(dtype=np.int64)
        n = len(self.minutes)
        cols = np.minimum(np.searchsorted(self.minutes, ts), max(n - 1, 0))
        on_minute = self.minutes[cols] == ts if n else np.zeros(len(ts), dtype=bool)
        inside = ~np.isnan(rows) & on_minute
        r = rows[inside].astype(np.intp)
        c = cols[inside]
        for name in PRICE_COLUMNS:
            getattr(self, name)[r, c] = bars[name].to_numpy(dtype=np.float64)[inside]
        return bars.loc[~inside]

    def to_frame(self) -> pd.DataFrame:
        """The present bars as a long frame with BAR_COLUMNS, sorted by symbol then ts."""
        r, c = np.nonzero(self.present)
        data = {"symbol": np.asarray(self.symbols, dtype=object)[r], "ts": self.minutes[c]}
        for name in PRICE_COLUMNS:
            data[name] = getattr(self, name)[r, c]
        return pd.DataFrame(data, columns=list(BAR_COLUMNS))


def ts_to_utc(ts: np.ndarray | pd.Series) -> pd.DatetimeIndex:
    """Unix seconds → tz-aware UTC timestamps."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(ts, dtype=np.int64), unit="s", utc=True))


def utc_to_ts(index: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    """tz-aware timestamps → Unix seconds (int64), whatever pandas' time unit."""
    values = pd.DatetimeIndex(index)
    if values.tz is None:
        values = values.tz_localize("UTC")
    return values.tz_convert("UTC").as_unit("s").asi8.astype(np.int64)
