"""The exchange calendar: which sessions exist and which minutes each one expects.

A thin layer over exchange_calendars that speaks barkeeper's units (int64 Unix seconds, UTC,
start-stamped) and adds the extended-hours segments the library does not model.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import exchange_calendars as xc
import numpy as np
import pandas as pd

from barkeeper.errors import ParameterError

REGULAR, PRE, POST = 0, 1, 2
"""Segment codes of a minute: regular session, pre-market, post-market."""

PRE_MARKET_OPEN = time(4, 0)
"""Local time the pre-market segment opens (it runs until the regular open)."""

POST_MARKET_HOURS = 4
"""The post-market segment runs this many hours from the regular close (16:00-20:00 ET)."""

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, eq=False)
class SessionMinutes:
    """The expected 1-minute bars of one session.

    `minutes` are int64 Unix seconds (UTC, bar start), sorted; `segment` marks each minute as
    REGULAR (0), PRE (1) or POST (2). `open_ts`/`close_ts` bound the regular session
    (`close_ts` is the end of the last regular minute).
    """

    session: date
    minutes: np.ndarray
    segment: np.ndarray
    open_ts: int
    close_ts: int
    early_close: bool

    @property
    def regular_mask(self) -> np.ndarray:
        """Boolean (M,): True on regular-session minutes."""
        return self.segment == REGULAR

    @property
    def regular_minutes(self) -> np.ndarray:
        return self.minutes[self.regular_mask]

    @property
    def extended_hours(self) -> bool:
        return bool((self.segment != REGULAR).any())

    def __len__(self) -> int:
        return len(self.minutes)


@dataclass(frozen=True, eq=False)
class _Schedule:
    """One calendar's sessions and times as plain arrays (Unix seconds; -1 where no break)."""

    tz: str
    sessions: np.ndarray  # datetime64[D], sorted
    opens: np.ndarray
    break_starts: np.ndarray
    break_ends: np.ndarray
    closes: np.ndarray
    early: np.ndarray  # bool per session


def _seconds(column: pd.Series) -> np.ndarray:
    values = column.dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
    return np.where(column.isna().to_numpy(), -1, values)


@functools.lru_cache(maxsize=8)
def _schedule(name: str) -> _Schedule:
    """Read an exchange_calendars calendar once into arrays; every later call is numpy."""
    try:
        with warnings.catch_warnings():
            # exchange_calendars 4.13 trips pandas 3.1's `.values` deprecation while it
            # builds a calendar: not ours to fix, and noise for every user.
            warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
            cal = xc.get_calendar(name)
    except xc.errors.InvalidCalendarName:
        raise ParameterError(
            f"calendar: {name!r} is not an exchange_calendars name (for example XNYS, XLON)"
        ) from None
    schedule = cal.schedule
    sessions = schedule.index.to_numpy().astype("datetime64[D]")
    return _Schedule(
        tz=str(cal.tz),
        sessions=sessions,
        opens=_seconds(schedule["open"]),
        break_starts=_seconds(schedule["break_start"]),
        break_ends=_seconds(schedule["break_end"]),
        closes=_seconds(schedule["close"]),
        early=np.isin(sessions, cal.early_closes.to_numpy().astype("datetime64[D]")),
    )


class Calendar:
    """Sessions and expected minutes of one exchange (XNYS by default).

    Parameters
    ----------
    name
        An exchange_calendars calendar name; an unknown name raises ParameterError.
    """

    def __init__(self, name: str = "XNYS") -> None:
        self.name = name
        self._s = _schedule(name)
        self.tz = self._s.tz

    def __repr__(self) -> str:
        return f"Calendar({self.name!r})"

    @property
    def first_session(self) -> date:
        return self._s.sessions[0].item()

    @property
    def last_session(self) -> date:
        return self._s.sessions[-1].item()

    def _check_bounds(self, d: date, parameter: str) -> None:
        if not self.first_session <= d <= self.last_session:
            raise ParameterError(
                f"{parameter}: {d.isoformat()} is outside calendar {self.name}'s range "
                f"{self.first_session.isoformat()} to {self.last_session.isoformat()}"
            )

    def _position(self, d: date, side: str = "left") -> int:
        return int(np.searchsorted(self._s.sessions, np.datetime64(d, "D"), side=side))

    def is_session(self, d: date) -> bool:
        """True if `d` is a trading day of this exchange (False outside the calendar's range)."""
        i = self._position(d)
        return i < len(self._s.sessions) and self._s.sessions[i] == np.datetime64(d, "D")

    def sessions(self, start: date, end: date) -> list[date]:
        """The sessions from `start` to `end`, both inclusive; empty if none fall in the range."""
        if end < start:
            raise ParameterError(
                f"end: {end.isoformat()} is before start {start.isoformat()}; swap them"
            )
        return self._s.sessions[self._position(start) : self._position(end, "right")].tolist()

    def next_session(self, session: date) -> date:
        """The first session after `session` (which need not itself be a session)."""
        self._check_bounds(session, "session")
        i = self._position(session, "right")
        if i == len(self._s.sessions):
            raise ParameterError(f"session: {session.isoformat()} is the calendar's last session")
        return self._s.sessions[i].item()

    def previous_sessions(self, session: date, n: int) -> list[date]:
        """The `n` sessions before `session`, oldest first (fewer at the calendar's start)."""
        if n < 0:
            raise ParameterError(f"n: {n} must be zero or more")
        self._check_bounds(session, "session")
        stop = self._position(session)
        return self._s.sessions[max(stop - n, 0) : stop].tolist()

    def session_minutes(self, session: date, extended_hours: bool = False) -> SessionMinutes:
        """The minutes a bar is expected at during `session`.

        Parameters
        ----------
        session
            A session date; a weekend, holiday or out-of-range date raises ParameterError.
        extended_hours
            Also expect the pre-market (04:00 local to the open) and the post-market (the
            close to 4 hours after it) minutes.

        Notes
        -----
        The regular minutes are exchange_calendars' own (early closes, DST, lunch breaks):
        open to close, start-stamped. On an early-close day the post-market follows the early
        close (13:00-17:00 ET at NYSE).
        """
        self._check_bounds(session, "session")
        if not self.is_session(session):
            raise ParameterError(
                f"session: {session.isoformat()} is not a trading day of {self.name} "
                "(weekend or holiday)"
            )
        i = self._position(session)
        open_ts, close_ts = int(self._s.opens[i]), int(self._s.closes[i])
        regular = np.arange(open_ts, close_ts, 60, dtype=np.int64)
        if self._s.break_starts[i] >= 0:
            in_break = (regular >= self._s.break_starts[i]) & (regular < self._s.break_ends[i])
            regular = regular[~in_break]
        early_close = bool(self._s.early[i])
        if not extended_hours:
            segment = np.zeros(len(regular), dtype=np.uint8)
            return SessionMinutes(session, regular, segment, open_ts, close_ts, early_close)

        local_start = pd.Timestamp(datetime.combine(session, PRE_MARKET_OPEN), tz=self.tz)
        pre = np.arange(local_start.value // _NS_PER_S, open_ts, 60, dtype=np.int64)
        post_end = close_ts + int(timedelta(hours=POST_MARKET_HOURS).total_seconds())
        post = np.arange(close_ts, post_end, 60, dtype=np.int64)
        minutes = np.concatenate([pre, regular, post])
        segment = np.repeat(
            np.array([PRE, REGULAR, POST], dtype=np.uint8), [len(pre), len(regular), len(post)]
        )
        return SessionMinutes(session, minutes, segment, open_ts, close_ts, early_close)
