"""The calendar against exchange_calendars itself and against known NYSE facts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import exchange_calendars as xc
import numpy as np
import pandas as pd
import pytest

from barkeeper.core.calendar import POST, PRE, REGULAR, Calendar
from barkeeper.core.panel import ts_to_utc, utc_to_ts
from barkeeper.errors import ParameterError


@pytest.fixture(scope="module")
def cal() -> Calendar:
    return Calendar()


def utc(ts: int) -> str:
    return ts_to_utc([ts])[0].strftime("%Y-%m-%d %H:%M")


def local(ts: int, tz: str = "America/New_York") -> str:
    return ts_to_utc([ts]).tz_convert(tz)[0].strftime("%H:%M")


def test_unknown_calendar_names_the_parameter() -> None:
    with pytest.raises(ParameterError, match="calendar"):
        Calendar("NOPE")


def test_other_calendars_by_name() -> None:
    lse = Calendar("XLON")
    sm = lse.session_minutes(date(2024, 7, 10))
    assert local(sm.open_ts, "Europe/London") == "08:00"
    assert local(sm.close_ts, "Europe/London") == "16:30"


def test_sessions_match_exchange_calendars_over_the_real_data_range(cal: Calendar) -> None:
    start, end = date(2023, 7, 10), date(2025, 7, 8)
    oracle = xc.get_calendar("XNYS").sessions_in_range(start.isoformat(), end.isoformat())
    sessions = cal.sessions(start, end)
    assert sessions == [ts.date() for ts in oracle]


# exchange_calendars 4.13 itself warns under pandas 3.1 when asked for minutes.
oracle_warnings = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


@oracle_warnings
def test_minutes_match_exchange_calendars_on_every_session(cal: Calendar) -> None:
    oracle = xc.get_calendar("XNYS")
    for session in cal.sessions(date(2023, 7, 10), date(2025, 7, 8)):
        sm = cal.session_minutes(session)
        expected = oracle.session_minutes(pd.Timestamp(session))
        np.testing.assert_array_equal(ts_to_utc(sm.minutes), expected)
        assert sm.close_ts == oracle.session_close(pd.Timestamp(session)).timestamp()
        assert sm.early_close == (pd.Timestamp(session) in oracle.early_closes)


@oracle_warnings
def test_lunch_breaks_follow_exchange_calendars() -> None:
    """Hong Kong closes for lunch: those minutes are not expected."""
    oracle = xc.get_calendar("XHKG")
    hk = Calendar("XHKG")
    for session in hk.sessions(date(2024, 7, 8), date(2024, 7, 12)):
        expected = oracle.session_minutes(pd.Timestamp(session))
        np.testing.assert_array_equal(ts_to_utc(hk.session_minutes(session).minutes), expected)


@pytest.mark.parametrize(
    ("session", "n_minutes", "early"),
    [
        (date(2023, 7, 10), 390, False),  # plain summer day (first day of the real data)
        (date(2023, 11, 24), 210, True),  # day after Thanksgiving: closes 13:00 ET
        (date(2024, 7, 3), 210, True),  # eve of Independence Day
        (date(2024, 12, 24), 210, True),  # Christmas Eve
        (date(2024, 12, 26), 390, False),  # the day after Christmas is a full day
    ],
)
def test_regular_minute_counts(cal: Calendar, session: date, n_minutes: int, early: bool) -> None:
    sm = cal.session_minutes(session)
    assert len(sm.minutes) == n_minutes
    assert sm.early_close is early
    assert sm.close_ts - sm.open_ts == n_minutes * 60
    assert np.all(np.diff(sm.minutes) == 60)
    assert sm.minutes[0] == sm.open_ts
    assert sm.regular_mask.all()


@pytest.mark.parametrize(
    "day",
    [
        date(2023, 11, 23),  # Thanksgiving
        date(2024, 7, 4),  # Independence Day
        date(2024, 3, 9),  # a Saturday
    ],
)
def test_non_sessions(cal: Calendar, day: date) -> None:
    assert not cal.is_session(day)
    assert cal.sessions(day, day) == []
    with pytest.raises(ParameterError, match="session"):
        cal.session_minutes(day)


@pytest.mark.parametrize(
    ("session", "open_utc"),
    [
        (date(2024, 3, 8), "14:30"),  # last Friday of EST
        (date(2024, 3, 11), "13:30"),  # first Monday of EDT (clocks changed 2024-03-10)
        (date(2023, 11, 3), "13:30"),  # last Friday of EDT
        (date(2023, 11, 6), "14:30"),  # first Monday of EST (clocks changed 2023-11-05)
        (date(2023, 7, 10), "13:30"),  # summer
    ],
)
def test_dst_moves_the_open_in_utc(cal: Calendar, session: date, open_utc: str) -> None:
    sm = cal.session_minutes(session)
    assert utc(sm.open_ts).endswith(open_utc)
    assert local(sm.open_ts) == "09:30"


def test_extended_hours_segments_on_a_normal_day(cal: Calendar) -> None:
    sm = cal.session_minutes(date(2024, 3, 11), extended_hours=True)
    assert len(sm.minutes) == 330 + 390 + 240 == 960
    assert np.all(np.diff(sm.minutes) == 60)
    for code, count, first, last in [
        (PRE, 330, "04:00", "09:29"),
        (REGULAR, 390, "09:30", "15:59"),
        (POST, 240, "16:00", "19:59"),
    ]:
        part = sm.minutes[sm.segment == code]
        assert len(part) == count
        assert (local(part[0]), local(part[-1])) == (first, last)
    regular = cal.session_minutes(date(2024, 3, 11))
    np.testing.assert_array_equal(sm.regular_minutes, regular.minutes)
    assert (sm.open_ts, sm.close_ts) == (regular.open_ts, regular.close_ts)


def test_extended_hours_on_an_early_close(cal: Calendar) -> None:
    sm = cal.session_minutes(date(2023, 11, 24), extended_hours=True)
    post = sm.minutes[sm.segment == POST]
    assert (local(post[0]), local(post[-1])) == ("13:00", "16:59")
    assert len(post) == 240
    assert np.count_nonzero(sm.segment == PRE) == 330
    assert np.count_nonzero(sm.regular_mask) == 210


def test_extended_hours_across_dst(cal: Calendar) -> None:
    winter = cal.session_minutes(date(2024, 3, 8), extended_hours=True)
    summer = cal.session_minutes(date(2024, 3, 11), extended_hours=True)
    assert utc(winter.minutes[0]).endswith("09:00")
    assert utc(summer.minutes[0]).endswith("08:00")


def test_previous_and_next_sessions(cal: Calendar) -> None:
    assert cal.previous_sessions(date(2023, 11, 27), 3) == [
        date(2023, 11, 21),
        date(2023, 11, 22),
        date(2023, 11, 24),
    ]
    assert cal.previous_sessions(date(2023, 11, 23), 1) == [date(2023, 11, 22)]
    assert cal.previous_sessions(date(2023, 11, 27), 0) == []
    assert cal.next_session(date(2023, 11, 22)) == date(2023, 11, 24)
    assert cal.next_session(date(2023, 11, 23)) == date(2023, 11, 24)
    assert cal.next_session(date(2024, 3, 8)) == date(2024, 3, 11)


def test_bad_ranges(cal: Calendar) -> None:
    with pytest.raises(ParameterError, match="end"):
        cal.sessions(date(2024, 3, 11), date(2024, 3, 8))
    with pytest.raises(ParameterError, match="session"):
        cal.session_minutes(date(1990, 1, 2))
    with pytest.raises(ParameterError, match="n"):
        cal.previous_sessions(date(2024, 3, 11), -1)


def test_real_files_trade_inside_the_calendar(cal: Calendar, real_dir: Path) -> None:
    """MSFT has a bar at every regular minute of its four sessions: the calendar's minutes."""
    bars = pd.read_csv(real_dir / "MSFT_1min_2023-07-10_to_2023-07-13.csv")
    stamps = set(utc_to_ts(pd.to_datetime(bars["timestamp"])).tolist())
    sessions = cal.sessions(date(2023, 7, 10), date(2023, 7, 13))
    assert len(sessions) == 4
    for session in sessions:
        sm = cal.session_minutes(session)
        assert set(sm.minutes.tolist()) <= stamps, session
