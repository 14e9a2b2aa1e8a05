"""A seeded, reproducible lossy feed: drops, outages, duplicates, late and corrupted bars.

The upkeep is tested against a feed that loses and damages bars the way real vendors do. Every
fault comes from one numpy Generator seeded by `FaultConfig.seed`, drawn once per bar in a
fixed order after sorting the input by (symbol, ts): the same seed and bars give the same
feed, whatever the input row order, and raising one rate never changes which bars another
fault hits. The log records exactly which bars each fault touched, so tests and reports can
check the upkeep against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from barkeeper.errors import ParameterError

MAX_DELAY_MINUTES = 5
"""Late bars arrive 1 to this many minutes after their own minute; duplicates 0 to this."""

CORRUPTION_MODES = ("high_below_low", "nonpositive_price", "close_above_high")
"""How a corrupted bar is damaged; each breaks a hard OHLC check (session_records.invalid_bars)."""

_OUTAGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_outage(text: str) -> tuple[time, time]:
    """An outage window "HH:MM-HH:MM" (exchange local time, end exclusive) as two times."""
    match = _OUTAGE.match(text)
    if not match:
        raise ParameterError(f"outage: {text!r} is not a window like 10:00-10:30")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        start, end = time(h1, m1), time(h2, m2)
    except ValueError:
        raise ParameterError(f"outage: {text!r} holds an impossible time of day") from None
    if start >= end:
        raise ParameterError(f"outage: {text!r} must start before it ends")
    return start, end


@dataclass(frozen=True)
class FaultConfig:
    """What the lossy feed does; all rates are per bar, in [0, 1].

    `outages` are (start, end) exchange-local times, end exclusive; strings "HH:MM-HH:MM"
    are accepted and parsed. `tz` is the exchange's time zone.
    """

    drop_rate: float = 0.0
    outages: tuple[tuple[time, time], ...] = ()
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    corrupt_rate: float = 0.0
    seed: int = 0
    tz: str = "America/New_York"

    def __post_init__(self) -> None:
        for name in ("drop_rate", "duplicate_rate", "out_of_order_rate", "corrupt_rate"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ParameterError(f"{name}: {value!r} must be a number from 0 to 1")
        windows = tuple(parse_outage(w) if isinstance(w, str) else tuple(w) for w in self.outages)
        for window in windows:
            if len(window) != 2 or not all(isinstance(t, time) for t in window):
                raise ParameterError(f"outages: {window!r} must be a (start, end) pair of times")
            if window[0] >= window[1]:
                raise ParameterError(f"outages: {window[0]}-{window[1]} must start before it ends")
        object.__setattr__(self, "outages", windows)
        if not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise ParameterError(f"seed: {self.seed!r} must be a whole number, 0 or more")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ParameterError(f"tz: {self.tz!r} is not an IANA time zone") from None

    @property
    def active(self) -> bool:
        """True when the feed is lossy at all."""
        rates = (self.drop_rate, self.duplicate_rate, self.out_of_order_rate, self.corrupt_rate)
        return bool(self.outages) or any(r > 0 for r in rates)


def _empty_log_frame() -> pd.DataFrame:
    return pd.DataFrame({"symbol": pd.Series(dtype=object), "ts": pd.Series(dtype=np.int64)})


@dataclass(eq=False)
class FaultLog:
    """Which (symbol, ts) bars each fault hit.

    `corrupted` keeps the original OHLCV and the corruption `mode`; `delayed` and
    `duplicated` carry the `deliver_ts` of the late or extra copy.
    """

    dropped: pd.DataFrame = field(default_factory=_empty_log_frame)
    outage: pd.DataFrame = field(default_factory=_empty_log_frame)
    duplicated: pd.DataFrame = field(default_factory=_empty_log_frame)
    delayed: pd.DataFrame = field(default_factory=_empty_log_frame)
    corrupted: pd.DataFrame = field(default_factory=_empty_log_frame)

    def counts(self) -> dict[str, int]:
        return {
            "dropped": len(self.dropped),
            "outage": len(self.outage),
            "duplicated": len(self.duplicated),
            "delayed": len(self.delayed),
            "corrupted": len(self.corrupted),
        }


@dataclass(eq=False)
class FaultedFeed:
    """The bars as the lossy feed delivers them, in delivery order, and what was done to them.

    `frame` has BAR_COLUMNS plus `deliver_ts` (the time the bar arrives, ≥ its ts), sorted
    by (deliver_ts, ts, symbol).
    """

    frame: pd.DataFrame
    log: FaultLog


def inject(bars: pd.DataFrame, config: FaultConfig, session: date | None = None) -> FaultedFeed:
    """Pass `bars` (BAR_COLUMNS) through the lossy feed described by `config`.

    Parameters
    ----------
    bars
        The true bars, e.g. a session read from the repository; any row order.
    config
        Rates, outage windows and the seed.
    session
        The session the bars belong to: its faults come from a stream of their own, derived
        from (seed, session), so each session of a replay gets different faults and the same
        seed and session always the same ones. None: the seed's stream alone.

    Notes
    -----
    Order of faults: bars inside an outage window are cut; of the rest, `drop_rate` are lost;
    of those delivered, `corrupt_rate` get inconsistent OHLC, `out_of_order_rate` arrive 1-5
    minutes late and `duplicate_rate` arrive once more 0-5 minutes after the first copy (a
    copy of the delivered bar, corrupted or not).
    """
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ParameterError(f"bars: missing column(s) {missing}; need {list(BAR_COLUMNS)}")
    frame = bars.loc[:, list(BAR_COLUMNS)].sort_values(["symbol", "ts"], kind="stable")
    frame = frame.reset_index(drop=True)
    n = len(frame)
    entropy = config.seed if session is None else [config.seed, session.toordinal()]
    rng = np.random.default_rng(entropy)
    u_drop, u_corrupt, u_late, u_dup = rng.random((4, n))
    mode = rng.integers(0, len(CORRUPTION_MODES), n)
    late_by = rng.integers(1, MAX_DELAY_MINUTES + 1, n)
    dup_by = rng.integers(0, MAX_DELAY_MINUTES + 1, n)

    ts = frame["ts"].to_numpy(dtype=np.int64)
    cut = _in_outage(ts, config)
    dropped = ~cut & (u_drop < config.drop_rate)
    delivered = ~cut & ~dropped
    corrupted = delivered & (u_corrupt < config.corrupt_rate)
    delayed = delivered & (u_late < config.out_of_order_rate)
    duplicated = delivered & (u_dup < config.duplicate_rate)

    deliver_ts = np.where(delayed, ts + 60 * late_by, ts)
    original = frame.loc[corrupted].copy()
    original.insert(2, "mode", np.asarray(CORRUPTION_MODES, dtype=object)[mode[corrupted]])
    damaged = _corrupt(frame, corrupted, mode)
    damaged["deliver_ts"] = deliver_ts

    copies = damaged.loc[duplicated].copy()
    copies["deliver_ts"] = deliver_ts[duplicated] + 60 * dup_by[duplicated]
    out = pd.concat([damaged.loc[delivered], copies], ignore_index=True)
    out = out.sort_values(["deliver_ts", "ts", "symbol"], kind="stable").reset_index(drop=True)

    log = FaultLog(
        dropped=frame.loc[dropped, ["symbol", "ts"]].reset_index(drop=True),
        outage=frame.loc[cut, ["symbol", "ts"]].reset_index(drop=True),
        duplicated=copies[["symbol", "ts", "deliver_ts"]].reset_index(drop=True),
        delayed=damaged.loc[delayed, ["symbol", "ts", "deliver_ts"]].reset_index(drop=True),
        corrupted=original.reset_index(drop=True),
    )
    return FaultedFeed(frame=out, log=log)


def _in_outage(ts: np.ndarray, config: FaultConfig) -> np.ndarray:
    """True where the bar's exchange-local time of day falls in an outage window."""
    cut = np.zeros(len(ts), dtype=bool)
    if not config.outages or len(ts) == 0:
        return cut
    local = pd.DatetimeIndex(pd.to_datetime(ts, unit="s", utc=True)).tz_convert(config.tz)
    minute_of_day = np.asarray(local.hour * 60 + local.minute)
    for start, end in config.outages:
        lo, hi = start.hour * 60 + start.minute, end.hour * 60 + end.minute
        cut |= (minute_of_day >= lo) & (minute_of_day < hi)
    return cut


def _corrupt(frame: pd.DataFrame, corrupted: np.ndarray, mode: np.ndarray) -> pd.DataFrame:
    """A copy of `frame` with the chosen bars made inconsistent according to `mode`."""
    out = frame.copy()
    prices = {c: out[c].to_numpy(dtype=np.float64, copy=True) for c in PRICE_COLUMNS}
    high_below_low = corrupted & (mode == 0)
    nonpositive = corrupted & (mode == 1)
    above_high = corrupted & (mode == 2)
    low = prices["low"]
    prices["high"][high_below_low] = low[high_below_low] * 0.99 - 0.01
    prices["low"][nonpositive] = -np.abs(low[nonpositive]) - 0.01
    prices["close"][above_high] = prices["high"][above_high] * 1.01 + 0.01
    for c in ("high", "low", "close"):
        out[c] = prices[c]
    return out
