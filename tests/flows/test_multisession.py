"""Multi-session replays on real bars: date ranges, trailing history, session roll, prefetch.

Real Prefect (test harness), a real SQLite store holding the weeks of the real vendor files the
tests need, the real flow. Oracles: exchange_calendars' sessions and minutes (not barkeeper's
calendar module), the repository's own bars, and pandas `resample` anchored at the session open.

Handlers are registered the way a user does it, by import path: the factories below live in this
module, which pytest imports as `test_multisession` (tests/ is on sys.path).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import exchange_calendars as xc
import numpy as np
import pandas as pd
import pytest
from helpers import session_ohlcv

from barkeeper.core.panel import PRICE_COLUMNS, utc_to_ts
from barkeeper.core.synth import symbol_names, synthetic_bars
from barkeeper.errors import ParameterError
from barkeeper.live.coordinator import BacktestStreamCoordinator
from barkeeper.live.handlers import attach_handlers
from barkeeper.live.session_data import SessionData
from barkeeper.params import ReplayParameters
from barkeeper.reports.export import export_bars
from barkeeper.reports.rebuild import run_series
from models.engine import engine_for
from models.repository import read_bars, upsert_bars
from models.schema import init_db

log = logging.getLogger(__name__)

FILES = {
    "DBB": "DBB_1min_2023-07-10_to_2025-07-08.csv",
    "FXY": "FXY_1min_2023-07-10_to_2025-07-08.csv",
    "MSFT": "MSFT_1min_2023-07-10_to_2023-07-13.csv",
}
# UTC date windows imported from the real files (a day of margin on each side).
WINDOWS = [
    (date(2023, 7, 9), date(2023, 7, 14)),  # the MSFT week: trailing history, handlers
    (date(2023, 11, 19), date(2023, 11, 29)),  # Thanksgiving holiday and early close
    (date(2024, 3, 7), date(2024, 3, 13)),  # DST starts on Sunday 2024-03-10
    (date(2024, 7, 1), date(2024, 7, 6)),  # 07-03 early close, 07-04 holiday
]
XNYS = xc.get_calendar("XNYS")
OHLCV = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


# ---------------------------------------------------------------- oracles


def xc_sessions(start: date, end: date) -> list[date]:
    return [s.date() for s in XNYS.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))]


def xc_minutes(session: date) -> np.ndarray:
    """exchange_calendars' regular minutes of a session, Unix seconds."""
    return XNYS.session_minutes(pd.Timestamp(session)).as_unit("s").asi8


def local_day(session: date) -> tuple[int, int]:
    """The session's exchange-local calendar day, Unix seconds [start, end)."""
    days = [pd.Timestamp(d).tz_localize(XNYS.tz) for d in (session, session + timedelta(days=1))]
    return int(days[0].timestamp()), int(days[1].timestamp())


def repository(url: str, symbol: str, start_ts: int, end_ts: int) -> pd.DataFrame:
    return read_bars(engine_for(url), [symbol], start_ts, end_ts).reset_index(drop=True)


def session_bars(url: str, symbol: str, session: date) -> pd.DataFrame:
    """The repository's bars of `symbol` at the session's regular minutes."""
    minutes = xc_minutes(session)
    bars = repository(url, symbol, int(minutes[0]), int(minutes[-1]) + 60)
    return bars.loc[bars["ts"].isin(minutes)].reset_index(drop=True)


def resample(bars: pd.DataFrame, interval: int, origin_ts: int) -> pd.DataFrame:
    """pandas' N-minute bars of `bars`, buckets anchored at `origin_ts`, empty ones dropped."""
    frame = bars.set_index(pd.to_datetime(bars["ts"], unit="s", utc=True))
    origin = pd.Timestamp(origin_ts, unit="s", tz="UTC")
    out = frame.resample(f"{interval}min", origin=origin, label="left", closed="left")
    out = out.agg({**OHLCV, "ts": "count"}).rename(columns={"ts": "constituents"})
    out = out.loc[out["constituents"] > 0]
    return out.assign(ts=utc_to_ts(out.index.to_series())).reset_index(drop=True)


def exported(url: str, run_id: str, symbol: str, session: date, interval: int) -> pd.DataFrame:
    frame = export_bars(engine_for(url), run_id, symbol, session, interval)
    return frame.assign(ts=utc_to_ts(pd.to_datetime(frame["timestamp"], utc=True)))


def assert_same_bars(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got["ts"].tolist() == want["ts"].tolist()
    for column in PRICE_COLUMNS:
        np.testing.assert_allclose(got[column].to_numpy(float), want[column].to_numpy(float))


# ---------------------------------------------------------------- fixtures


def read_real(path: Path, symbol: str) -> pd.DataFrame:
    """The file's rows inside WINDOWS as BAR_COLUMNS (naive timestamps are UTC)."""
    raw = pd.read_csv(path)
    stamps = pd.to_datetime(raw["timestamp"]).dt.tz_localize("UTC")
    days = stamps.dt.date
    keep = np.zeros(len(raw), dtype=bool)
    for first, last in WINDOWS:
        keep |= ((days >= first) & (days <= last)).to_numpy()
    bars = raw.loc[keep, list(PRICE_COLUMNS)].astype(float)
    bars.insert(0, "ts", utc_to_ts(stamps[keep]))
    bars.insert(0, "symbol", symbol)
    return bars.reset_index(drop=True)


@pytest.fixture(scope="module")
def store(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SQLite store with the real bars of WINDOWS, shared by the module's replays."""
    tmp = tmp_path_factory.mktemp("multisession")
    url = f"sqlite:///{tmp / 'barkeeper.db'}"
    engine = engine_for(url)
    init_db(engine)
    for symbol, name in FILES.items():
        upsert_bars(engine, read_real(real_dir / name, symbol), origin=name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BARKEEPER_DATABASE_URL", url)
        patch.setenv("BARKEEPER_REPORTS_DIR", str(tmp / "reports"))
        yield url


def replay(**values: Any) -> dict[str, Any]:
    from helpers import replayed

    values.setdefault("validation_interval_seconds", 86_400)  # final validation only: faster
    return replayed(ReplayParameters(**values))


# ---------------------------------------------------------------- date ranges

RANGES = [
    pytest.param(date(2023, 11, 20), date(2023, 11, 28), [5, 15, 30, 60], id="thanksgiving"),
    pytest.param(date(2024, 3, 8), date(2024, 3, 12), [7, 45, 90], id="dst-start"),
    pytest.param(date(2024, 7, 2), date(2024, 7, 5), [7, 45, 90], id="independence-day"),
]
# Written out by hand (not from any calendar library): regular minutes and the UTC open.
LANDMARKS = {
    date(2023, 11, 22): (390, "2023-11-22T14:30:00Z"),  # before Thanksgiving (11-23: closed)
    date(2023, 11, 24): (210, "2023-11-24T14:30:00Z"),  # early close 13:00 ET
    date(2024, 3, 8): (390, "2024-03-08T14:30:00Z"),  # last Friday on EST
    date(2024, 3, 11): (390, "2024-03-11T13:30:00Z"),  # first Monday on EDT
    date(2024, 7, 3): (210, "2024-07-03T13:30:00Z"),  # early close 13:00 ET (07-04: closed)
}
HOLIDAYS = {date(2023, 11, 23), date(2024, 7, 4)}


@pytest.mark.slow
@pytest.mark.parametrize(("start", "end", "derived"), RANGES)
def test_date_range_replays_every_calendar_session(
    harness: None, store: str, start: date, end: date, derived: list[int]
) -> None:
    """Holidays skipped, early closes at 210 minutes, DST moving the UTC open by an hour.

    Per session and symbol: quality against the repository's coverage of exchange_calendars'
    minutes, the exported 1m bars against the repository, derived bars (with constituent
    counts) against pandas resample anchored at the open, and the daily bar against the
    session's OHLCV.
    """
    report = replay(symbols=["DBB", "FXY"], start=start, end=end, derived=derived)
    sessions = xc_sessions(start, end)
    dates = [s["date"] for s in report["sessions"]]
    assert dates == [str(s) for s in sessions]
    assert not {str(h) for h in HOLIDAYS} & set(dates)
    assert report["timings"]["rolls"] == len(sessions) - 1
    run_bars = run_series(engine_for(store), report["run_id"])
    for entry, session in zip(report["sessions"], sessions, strict=True):
        minutes = xc_minutes(session)
        open_ts, close_ts = int(minutes[0]), int(minutes[-1]) + 60
        if session in LANDMARKS:
            count, open_utc = LANDMARKS[session]
            assert (len(minutes), open_ts) == (count, int(pd.Timestamp(open_utc).timestamp()))
        for symbol in ("DBB", "FXY"):
            figures = entry["symbols"][symbol]
            truth = session_bars(store, symbol, session)
            assert len(truth) > 0
            assert figures["expected_bars"] == len(minutes)
            assert figures["actual_bars"] == len(truth)
            assert figures["bar_quality"] == pytest.approx(100.0 * len(truth) / len(minutes))
            # every bar of the local day that is not a regular minute is reported as outside
            day = repository(store, symbol, *local_day(session))
            assert figures["outside_bars"] == int((~day["ts"].isin(minutes)).sum())
            assert_same_bars(exported(store, report["run_id"], symbol, session, 1), truth)

            daily = exported(store, report["run_id"], symbol, session, 1440)
            assert daily["ts"].tolist() == [open_ts]
            whole = session_ohlcv(truth)
            np.testing.assert_allclose(daily.loc[0, list(OHLCV)].to_numpy(float), whole)

            mine = run_bars.loc[(run_bars["symbol"] == symbol) & (run_bars["session"] == session)]
            for interval in derived:
                oracle = resample(truth, interval, open_ts)
                got = mine.loc[mine["interval"] == interval].sort_values("ts")
                assert_same_bars(got, oracle)
                assert got["constituents"].tolist() == oracle["constituents"].tolist()
                span = np.minimum(got["ts"].to_numpy() + interval * 60, close_ts) - got["ts"]
                assert got["expected_constituents"].tolist() == (span // 60).tolist()


# ---------------------------------------------------------------- trailing history


class HistoryProbe:
    """Reads MSFT's trailing history before the open and at the first bar of the session."""

    def __init__(self, data: SessionData) -> None:
        self.data = data
        self.history: tuple[date, ...] = ()
        self.at_start: dict[int, pd.DataFrame] = {}
        self.at_first_bar: dict[int, pd.DataFrame] = {}

    def reads(self) -> dict[int, pd.DataFrame]:
        return {
            1: self.data.last_n_bars("MSFT", 1000, 1),
            15: self.data.last_n_bars("MSFT", 70, 15),
        }

    def on_session_start(self, session: date) -> None:
        self.history = self.data.history
        self.at_start = self.reads()

    def __call__(self, symbol: str, ts: int, *ohlcv: float) -> None:
        if not self.at_first_bar:
            self.at_first_bar = self.reads()


CREATED: list[Any] = []
"""Every handler the factories below built, newest last (the flow builds one per run)."""


def history_probe(data: SessionData) -> HistoryProbe:
    CREATED.append(HistoryProbe(data))
    return CREATED[-1]


def not_a_factory(data: SessionData) -> None:
    """A factory that returns no handler."""


def test_last_n_bars_reach_back_over_three_trailing_sessions(harness: None, store: str) -> None:
    session = date(2023, 7, 13)
    report = replay(
        symbols=["MSFT"],
        start=session,
        trailing_days=3,
        handlers=["test_multisession:history_probe"],
    )
    assert [s["date"] for s in report["sessions"]] == [str(session)]
    probe = CREATED[-1]
    earlier = xc_sessions(date(2023, 7, 10), date(2023, 7, 12))
    assert probe.history == tuple(earlier)
    past = pd.concat([session_bars(store, "MSFT", s) for s in earlier], ignore_index=True)
    assert len(past) == 3 * 390  # MSFT trades every regular minute of these sessions
    today = session_bars(store, "MSFT", session)

    # Before the open: 1,000 bars, all from the earlier sessions' regular minutes, in order.
    assert_same_bars(probe.at_start[1], past.tail(1000))
    # At the first minute: the same count back over trading minutes, ending with that bar.
    assert_same_bars(probe.at_first_bar[1], pd.concat([past.tail(999), today.head(1)]))
    assert np.all(np.diff(probe.at_first_bar[1]["ts"].to_numpy()) > 0)

    fifteen = pd.concat(
        [resample(session_bars(store, "MSFT", s), 15, int(xc_minutes(s)[0])) for s in earlier],
        ignore_index=True,
    )
    for got in (probe.at_start[15], probe.at_first_bar[15]):  # the 09:30 bucket is not complete
        assert len(got) == 70
        assert_same_bars(got, fifteen.tail(70))
        spanned = pd.to_datetime(got["ts"], unit="s", utc=True).dt.tz_convert(XNYS.tz).dt.date
        assert sorted(set(spanned)) == earlier
        assert got["count"].tolist() == fifteen.tail(70)["constituents"].tolist()


def test_a_handler_path_that_does_not_resolve_is_a_parameter_error(store: str) -> None:
    from barkeeper.settings import Settings
    from tasks.replay_plan import preflight

    for path, words in [
        ("no_such_module_anywhere:factory", "cannot import"),
        ("test_multisession:no_such_factory", "names no callable"),
    ]:
        params = ReplayParameters(symbols=["MSFT"], start=date(2023, 7, 13), handlers=[path])
        with pytest.raises(ParameterError, match=words):
            preflight(params, Settings())
    with pytest.raises(ValueError, match="handlers"):
        ReplayParameters(symbols=["MSFT"], start=date(2023, 7, 13), handlers=["not a path"])
    data = SessionData()
    with pytest.raises(ParameterError, match="not a bar handler"):
        attach_handlers(BacktestStreamCoordinator(data), data, ("test_multisession:not_a_factory",))


# ---------------------------------------------------------------- session roll and handlers


class SessionRecorder:
    """Session start/end events, the bars between them and the history ring at each start."""

    def __init__(self, data: SessionData) -> None:
        self.data = data
        self.events: list[tuple[str, date, int]] = []
        self.history: list[tuple[date, ...]] = []
        self.bars: list[tuple[date, str, int]] = []

    def on_session_start(self, session: date) -> None:
        self.events.append(("start", session, len(self.bars)))
        self.history.append(self.data.history)

    def __call__(self, symbol: str, ts: int, *ohlcv: float) -> None:
        self.bars.append((self.data.session, symbol, ts))

    def on_session_end(self, session: date) -> None:
        self.events.append(("end", session, len(self.bars)))


class AnalysisEngine:
    """The seed's AnalysisEngine as an async bar handler: quality first, then 5m and 15m bars."""

    def __init__(self, data: SessionData) -> None:
        self.data = data
        self.warnings: list[tuple[str, float]] = []
        self.seen: list[tuple[date, str, int, pd.DataFrame, pd.DataFrame]] = []

    async def __call__(self, symbol: str, ts: int, *ohlcv: float) -> None:
        metrics = await self.data.get_session_metrics(symbol)
        if metrics["bar_quality"] < 95:
            log.warning("Low quality: %.1f%%", metrics["bar_quality"])
            self.warnings.append((symbol, metrics["bar_quality"]))
        bars_5m = await self.data.get_last_n_bars(symbol, 50, interval=5)
        bars_15m = await self.data.get_last_n_bars(symbol, 20, interval=15)
        self.seen.append((self.data.session, symbol, ts, bars_5m, bars_15m))


def session_recorder(data: SessionData) -> SessionRecorder:
    CREATED.append(SessionRecorder(data))
    return CREATED[-1]


def analysis_engine(data: SessionData) -> AnalysisEngine:
    CREATED.append(AnalysisEngine(data))
    return CREATED[-1]


def derived_oracle(store: str, symbol: str, sessions: list[date], interval: int) -> pd.DataFrame:
    """Bars of `interval` over `sessions`, with the ts of each bucket's last minute."""
    frames = []
    for session in sessions:
        minutes = xc_minutes(session)
        bars = resample(session_bars(store, symbol, session), interval, int(minutes[0]))
        last = np.minimum(bars["ts"].to_numpy() + interval * 60, int(minutes[-1]) + 60) - 60
        frames.append(bars.assign(last_minute=last))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_roll_keeps_a_bounded_history_and_handlers_see_complete_bars(
    harness: None, store: str
) -> None:
    """Two sessions, two trailing days: events in order, a ring of two, complete bars."""
    symbols = ["MSFT", "DBB", "FXY"]
    start, end, trailing = date(2023, 7, 12), date(2023, 7, 13), 2
    report = replay(
        symbols=symbols,
        start=start,
        end=end,
        trailing_days=trailing,
        # paced so the upkeep's cycles update the quality while the handlers read it
        speed="20000x",
        handlers=["test_multisession:session_recorder", "test_multisession:analysis_engine"],
    )
    recorder, engine = CREATED[-2:]
    sessions = xc_sessions(start, end)
    assert [s["date"] for s in report["sessions"]] == [str(s) for s in sessions]

    # Start and end events in order, each session's bars between its own two events.
    delivered = 0
    expected_events = []
    for session in sessions:
        bars = sum(len(session_bars(store, s, session)) for s in symbols)
        expected_events += [("start", session, delivered), ("end", session, delivered + bars)]
        delivered += bars
    assert recorder.events == expected_events
    assert {s for s, _, _ in recorder.bars[: expected_events[1][2]]} == {sessions[0]}

    # The ring holds exactly the `trailing` sessions before each one, through every roll.
    before = xc_sessions(start - timedelta(days=10), start)[-trailing - 1 : -1]
    everything = before + sessions
    for i, history in enumerate(recorder.history):
        assert history == tuple(everything[i : i + trailing])

    # The seed's AnalysisEngine: warned about the illiquid symbols only, read complete bars.
    warned = {symbol for symbol, _ in engine.warnings}
    assert warned and warned <= {"DBB", "FXY"}
    assert all(q < 95 for _, q in engine.warnings)
    assert len(engine.seen) == delivered
    oracles = {}
    for session, symbol, ts, bars_5m, bars_15m in engine.seen:
        window = everything[everything.index(session) - trailing : everything.index(session) + 1]
        for got, interval, n in ((bars_5m, 5, 50), (bars_15m, 15, 20)):
            key = (symbol, session, interval)
            if key not in oracles:
                oracles[key] = derived_oracle(store, symbol, window, interval)
            oracle = oracles[key]
            want = oracle.loc[oracle["last_minute"] <= ts].tail(n)
            assert_same_bars(got, want)
            assert got["count"].tolist() == want["constituents"].tolist()


# ---------------------------------------------------------------- prefetch

PREFETCH_SESSIONS = (date(2024, 3, 5), date(2024, 3, 7))


@pytest.fixture
def synth_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store of 500 synthetic symbols over three sessions (a tenth of them illiquid)."""
    from barkeeper.core.calendar import Calendar

    url = f"sqlite:///{tmp_path / 'synth.db'}"
    engine = engine_for(url)
    init_db(engine)
    calendar = Calendar()
    minutes = [calendar.session_minutes(s) for s in calendar.sessions(*PREFETCH_SESSIONS)]
    bars = synthetic_bars(symbol_names(500), minutes, illiquid_share=0.1, seed=3)
    upsert_bars(engine, bars, "synth")
    monkeypatch.setenv("BARKEEPER_DATABASE_URL", url)
    monkeypatch.setenv("BARKEEPER_REPORTS_DIR", str(tmp_path / "reports"))
    return url


def run_bar_difference(url: str, run_a: str, run_b: str) -> int:
    """Bars (rebuilt series) in one run and not the other (both ways), run ids aside."""
    a, b = (run_series(engine_for(url), run) for run in (run_a, run_b))
    both = a.merge(b, how="outer", indicator=True)
    return int((both["_merge"] != "both").sum())


@pytest.mark.slow
def test_roll_pause_is_reported_with_and_without_prefetch(harness: None, synth_url: str) -> None:
    """Both runs report per-session roll pauses; prefetch changes when bars are read, not what.

    The figures (prefetch against none) go in the closing note: timing is not asserted here.
    The upkeep is off to keep the test short; the roll pause is the same stretch of the stream
    side (results persisted to the next session's first minute) either way.
    """
    symbols = symbol_names(500)
    start, end = PREFETCH_SESSIONS
    reports = {
        prefetch: replay(
            symbols=symbols, start=start, end=end, prefetch=prefetch, upkeep_enabled=False
        )
        for prefetch in (True, False)
    }
    for prefetch, report in reports.items():
        timings = report["timings"]
        assert timings["prefetch"] is prefetch
        assert [t["session"] for t in timings["sessions"]] == [
            s["date"] for s in report["sessions"]
        ]
        assert timings["rolls"] == len(report["sessions"]) - 1 == 2
        pauses = [t["roll_pause_s"] for t in timings["sessions"][1:]]
        assert all(p > 0 for p in pauses)
        assert timings["roll_pause_mean_s"] == pytest.approx(sum(pauses) / 2, abs=1e-5)
        assert timings["roll_pause_max_s"] == pytest.approx(max(pauses), abs=1e-5)
        log.warning("prefetch=%s roll pauses %s", prefetch, pauses)
    with_, without = reports[True], reports[False]
    assert with_["sessions"] == without["sessions"]
    assert run_bar_difference(synth_url, with_["run_id"], without["run_id"]) == 0
