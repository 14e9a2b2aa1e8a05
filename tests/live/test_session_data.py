"""session_data: provenance rule, interleavings of feed/backfill/repair/reads, history, memory."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import date, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import run_together
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barkeeper.bench.coordinator import bench_memory
from barkeeper.core.kernels import bucket_layout, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.errors import ParameterError
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_records import Provenance, UnknownSymbolError, invalid_bars

P = Provenance
OPEN_TS = 1_700_000_000 - 1_700_000_000 % 86_400 + 14 * 3600 + 1800  # a 14:30 UTC open


def session_minutes(day: int, n: int) -> SimpleNamespace:
    start = OPEN_TS + day * 86_400
    return SimpleNamespace(
        session=date(2023, 11, 1) + timedelta(days=day),
        minutes=start + 60 * np.arange(n, dtype=np.int64),
        segment=np.zeros(n, dtype=np.uint8),
    )


def truth_bars(rng: np.random.Generator, shape: tuple[int, int], missing: float = 0.0):
    """Valid random OHLCV arrays; NaN where the repository has no bar."""
    close = 100 + rng.normal(0, 1, shape).cumsum(axis=1)
    spread = rng.uniform(0.01, 0.5, shape)
    bars = {
        "open": close + rng.uniform(-1, 1, shape) * spread,
        "high": close + spread,
        "low": close - spread,
        "close": close,
        "volume": rng.integers(1, 1000, shape).astype(float),
    }
    bars["high"] = np.maximum(bars["high"], bars["open"])
    bars["low"] = np.minimum(bars["low"], bars["open"])
    gone = rng.random(shape) < missing
    for v in bars.values():
        v[gone] = np.nan
    return bars


def corrupted(bar: tuple[float, ...]) -> tuple[float, ...]:
    o, _high, lo, c, v = bar
    return (o, lo * 0.99 - 0.01, lo, c, v)  # high below low


# ---------------------------------------------------------------------------- provenance rule
# The rule of the module docstring, written out slot state by slot state.
#                     existing: NONE   FEED   BACKFILL REPAIRED SYNTHETIC  (valid bars)
RULE = {
    P.FEED: {P.NONE: True, P.FEED: True, P.BACKFILL: True, P.REPAIRED: True, P.SYNTHETIC: True},
    P.BACKFILL: {P.NONE: True, P.FEED: False, P.BACKFILL: False, P.REPAIRED: False,
                 P.SYNTHETIC: True},
    P.REPAIRED: {P.NONE: True, P.FEED: False, P.BACKFILL: False, P.REPAIRED: False,
                 P.SYNTHETIC: True},
    P.SYNTHETIC: {P.NONE: True, P.FEED: False, P.BACKFILL: False, P.REPAIRED: False,
                  P.SYNTHETIC: False},
}  # fmt: skip


def _one_slot_store() -> SessionData:
    sd = SessionData()
    sd.start_session(session_minutes(0, 3), ["A"])
    return sd


@pytest.mark.parametrize("existing", list(P))
@pytest.mark.parametrize("incoming", [P.FEED, P.BACKFILL, P.REPAIRED, P.SYNTHETIC])
def test_provenance_rule_on_valid_slot(existing: Provenance, incoming: Provenance) -> None:
    sd = _one_slot_store()
    old, new = (10.0, 11.0, 9.0, 10.5, 5.0), (20.0, 21.0, 19.0, 20.5, 7.0)
    if existing != P.NONE:
        sd.write_bars([0], [1], *([x] for x in old), provenance=existing)
    applied = sd.write_bars([0], [1], *([x] for x in new), provenance=incoming)
    expect = RULE[incoming][existing]
    assert bool(applied[0]) is expect
    snap = sd.panel_snapshot()
    assert snap.provenance[0, 1] == (incoming if expect else existing)
    want = new if expect else (old if existing != P.NONE else (np.nan,) * 5)
    got = tuple(getattr(snap.panel, c)[0, 1] for c in PRICE_COLUMNS)
    np.testing.assert_array_equal(got, want)


def test_repair_replaces_an_invalid_feed_bar_but_not_a_valid_one() -> None:
    sd = _one_slot_store()
    good = (10.0, 11.0, 9.0, 10.5, 5.0)
    sd.write_bars([0, 0], [0, 1], *([x, y] for x, y in zip(good, corrupted(good), strict=True)),
                  provenance=P.FEED)  # fmt: skip
    applied = sd.write_bars([0, 0], [0, 1], *([x, x] for x in good), provenance=P.REPAIRED)
    assert applied.tolist() == [False, True]
    assert sd.panel_snapshot().provenance[0].tolist() == [P.FEED, P.REPAIRED, P.NONE]


def test_invalid_bars_hard_checks() -> None:
    bars = np.array(
        [
            [10, 11, 9, 10, 1],  # fine
            [10, 8, 9, 10, 1],  # high below low
            [10, 11, 9, 12, 1],  # close above high
            [10, 11, -1, 10, 1],  # price <= 0
            [10, 11, 9, 10, -1],  # negative volume
            [np.nan] * 5,  # no bar: not invalid
        ],
        dtype=float,
    )
    assert invalid_bars(*bars.T).tolist() == [False, True, True, True, True, False]


# ---------------------------------------------------------------------------- interleavings
class Scenario:
    """A session of true bars, a lossy feed of them, and the end state the rule implies."""

    def __init__(self, seed: int, n_symbols: int = 4, n_minutes: int = 12) -> None:
        rng = np.random.default_rng(seed)
        self.shape = (n_symbols, n_minutes)
        self.truth = truth_bars(rng, self.shape, missing=0.1)
        self.minutes = session_minutes(0, n_minutes)
        # deliveries[m]: (sym, minute, bar) written when the clock reaches minute m.
        self.deliveries: list[list[tuple[int, int, tuple[float, ...]]]] = [
            [] for _ in range(n_minutes)
        ]
        self.last_feed: dict[tuple[int, int], tuple[float, ...]] = {}
        for s in range(n_symbols):
            for m in range(n_minutes):
                bar = tuple(float(self.truth[c][s, m]) for c in PRICE_COLUMNS)
                if np.isnan(bar[3]) or rng.random() < 0.25:
                    continue  # not traded, or dropped by the feed
                copies = [corrupted(bar) if rng.random() < 0.2 else bar]
                if rng.random() < 0.3:
                    copies.append(corrupted(bar) if rng.random() < 0.5 else bar)
                at = m
                for copy in copies:
                    at = min(at + int(rng.integers(0, 3)), n_minutes - 1)
                    self.deliveries[at].append((s, m, copy))
                    self.last_feed[(s, m)] = copy  # delivery order within a minute is kept

    def expected(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        prov = np.zeros(self.shape, dtype=np.uint8)
        values = {c: np.full(self.shape, np.nan) for c in PRICE_COLUMNS}
        for s in range(self.shape[0]):
            for m in range(self.shape[1]):
                truth = tuple(self.truth[c][s, m] for c in PRICE_COLUMNS)
                last = self.last_feed.get((s, m))
                if last is None:
                    bar, p = truth, P.NONE if np.isnan(truth[3]) else P.BACKFILL
                elif invalid_bars(*([x] for x in last))[0]:
                    bar, p = truth, P.REPAIRED
                else:
                    bar, p = last, P.FEED
                prov[s, m] = p
                for c, x in zip(PRICE_COLUMNS, bar, strict=True):
                    values[c][s, m] = x
        return prov, values


class Actors:
    """The feed, the upkeep (scan then apply, so feed writes can race in between) and a reader."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.sd = SessionData()
        self.sd.start_session(sc.minutes, [f"S{i}" for i in range(sc.shape[0])])
        self.next_minute = 0
        self.pending: list[tuple[np.ndarray, np.ndarray, Provenance]] = []

    def feed(self) -> bool:
        m = self.next_minute
        if m >= self.sc.shape[1]:
            return False
        batch = self.sc.deliveries[m]
        on_time = [d for d in batch if d[1] == m]
        if len({d[0] for d in on_time}) == len(on_time) and on_time:
            sym = np.array([d[0] for d in on_time])
            cols = [np.array([d[2][i] for d in on_time]) for i in range(5)]
            self.sd.write_minute(m, sym, *cols)
            batch = [d for d in batch if d[1] != m]
        if batch:
            self.sd.write_bars(
                [d[0] for d in batch],
                [d[1] for d in batch],
                *([d[2][i] for d in batch] for i in range(5)),
                provenance=P.FEED,
            )
        self.sd.advance_clock(int(self.sc.minutes.minutes[m]))
        self.next_minute += 1
        if self.next_minute == self.sc.shape[1]:
            self.sd.close_session()
        return True

    def scan(self) -> None:
        snap = self.sd.panel_snapshot()
        upto = int(np.searchsorted(snap.minutes, snap.clock, side="right"))
        if snap.closed:
            upto = len(snap.minutes)
        p = snap.panel
        empty = ~p.present
        empty[:, upto:] = False
        bad = invalid_bars(*(getattr(p, c) for c in PRICE_COLUMNS))
        for mask, prov in ((empty, P.BACKFILL), (bad, P.REPAIRED)):
            s, m = np.nonzero(mask & ~np.isnan(self.sc.truth["close"]))
            self.pending.append((s, m, prov))

    def apply(self) -> None:
        for s, m, prov in self.pending:
            self.sd.write_bars(s, m, *(self.sc.truth[c][s, m] for c in PRICE_COLUMNS), prov)
        self.pending = []

    def read(self, symbol: int) -> None:
        frame = self.sd.last_n_bars(f"S{symbol}", 5)
        check_read(frame, self.sd.clock, self.sd.closed)


def check_read(frame: pd.DataFrame, clock_after: int, closed: bool) -> None:
    ts = frame["ts"].to_numpy()
    assert np.all(np.diff(ts) > 0), "bars must be ascending without repeats"
    if not closed:
        assert len(ts) == 0 or ts[-1] <= clock_after, "a read saw a bar from the future"


def assert_end_state(sd: SessionData, sc: Scenario) -> None:
    prov, values = sc.expected()
    snap = sd.panel_snapshot()
    np.testing.assert_array_equal(snap.provenance, prov)
    for c in PRICE_COLUMNS:
        np.testing.assert_array_equal(getattr(snap.panel, c), values[c], err_msg=c)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    ops=st.lists(st.sampled_from(["feed", "scan", "apply", "read"]), max_size=80),
)
def test_any_interleaving_ends_in_the_same_state(seed: int, ops: list[str]) -> None:
    sc = Scenario(seed)
    actors = Actors(sc)
    for i, op in enumerate(ops):
        if op == "read":
            actors.read(i % sc.shape[0])
        else:
            getattr(actors, op)()
    while actors.feed():
        pass
    actors.apply()  # a scan from before the close still lands late, as in a real race
    actors.scan()  # the final pass at the close
    actors.apply()
    assert_end_state(actors.sd, sc)


@pytest.mark.parametrize("seed", range(6))
def test_threads_feed_upkeep_and_readers_race_safely(seed: int) -> None:
    sc = Scenario(seed, n_symbols=30, n_minutes=60)
    actors = Actors(sc)
    rng = np.random.default_rng(seed)

    def feeder() -> None:
        while actors.feed():
            if rng.random() < 0.3:
                threading.Event().wait(0.0005)

    def upkeep() -> None:
        while not actors.sd.closed:
            actors.scan()
            actors.apply()

    def reader() -> None:
        for i in range(300):
            actors.read(i % sc.shape[0])

    errors = run_together(feeder, upkeep, reader, reader, timeout=30)
    assert not errors, errors
    actors.scan()
    actors.apply()
    assert_end_state(actors.sd, sc)


# ---------------------------------------------------------------------------- reads & history
def fill_session(sd: SessionData, bars: dict[str, np.ndarray], provenance=P.FEED) -> None:
    s, m = np.nonzero(~np.isnan(bars["close"]))
    sd.write_bars(s, m, *(bars[c][s, m] for c in PRICE_COLUMNS), provenance=provenance)


def long_frame(sessions: list[tuple[SimpleNamespace, dict[str, np.ndarray]]], row: int):
    """Oracle: one symbol's bars of every session as one frame, ascending."""
    parts = []
    for sm, bars in sessions:
        frame = pd.DataFrame({"ts": sm.minutes, **{c: bars[c][row] for c in PRICE_COLUMNS}})
        parts.append(frame.dropna())
    return pd.concat(parts, ignore_index=True)


def resample_oracle(frame: pd.DataFrame, open_ts: int, n: int) -> pd.DataFrame:
    """pandas' n-minute bars of one session, anchored at the session open."""
    idx = pd.to_datetime(frame["ts"], unit="s", utc=True)
    origin = pd.Timestamp(open_ts, unit="s", tz="UTC")
    g = frame.set_index(idx).resample(f"{n}min", origin=origin, label="left")
    out = g.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    out["count"] = g["close"].count()
    out = out[out["count"] > 0]
    out.insert(0, "ts", (out.index.as_unit("s").asi8).astype(np.int64))
    return out.reset_index(drop=True)


@pytest.fixture
def three_day_history() -> tuple[SessionData, list, list[str]]:
    rng = np.random.default_rng(7)
    symbols = ["AAA", "BBB"]
    sd = SessionData(history_sessions=3)
    sessions = []
    for day in range(3):
        sm = session_minutes(day, 30)
        bars = truth_bars(rng, (2, 30), missing=0.15)
        layouts = {5: bucket_layout(sm.minutes, sm.segment, 5)}
        panel = Panel(tuple(symbols), sm.minutes, *(bars[c] for c in PRICE_COLUMNS))
        derived = {5: derive(panel, layouts[5])}
        sd.add_history(sm.session, sm.minutes, sm.segment, panel, derived)
        sessions.append((sm, bars))
    sm = session_minutes(3, 30)
    sd.start_session(sm, symbols, {5: bucket_layout(sm.minutes, sm.segment, 5)})
    bars = truth_bars(rng, (2, 30), missing=0.15)
    fill_session(sd, bars)
    sessions.append((sm, bars))
    return sd, sessions, symbols


def test_last_n_bars_counts_back_over_bars_across_sessions(three_day_history) -> None:
    sd, sessions, _ = three_day_history
    clock_idx = 9
    sd.advance_clock(int(sessions[3][0].minutes[clock_idx]))
    oracle = long_frame(sessions, 0)
    oracle = oracle[oracle["ts"] <= sd.clock].reset_index(drop=True)
    for n in (1, 10, 45, 80, len(oracle)):
        got = sd.last_n_bars("AAA", n)
        assert len(got) == n
        pd.testing.assert_frame_equal(
            got[["ts", *PRICE_COLUMNS]], oracle.tail(n).reset_index(drop=True), check_dtype=False
        )
    assert len(sd.last_n_bars("AAA", 10_000)) == len(oracle)  # all there is, no more
    assert set(sd.last_n_bars("AAA", 10_000)["provenance"]) == {P.BACKFILL, P.FEED}


def test_derived_bars_across_sessions_match_pandas_and_stop_at_complete_buckets(
    three_day_history,
) -> None:
    sd, sessions, _ = three_day_history
    clock_idx = 12  # minute 12 is the 3rd minute of the 3rd 5m bucket: that bucket is forming
    sd.advance_clock(int(sessions[3][0].minutes[clock_idx]))
    parts = []
    for i, (sm, bars) in enumerate(sessions):
        one = long_frame([(sm, bars)], 1)
        if i == 3:
            one = one[one["ts"] < sm.minutes[10]]  # buckets complete by the clock only
        parts.append(resample_oracle(one, int(sm.minutes[0]), 5))
    oracle = pd.concat(parts, ignore_index=True)
    got = sd.last_n_bars("BBB", 20, interval=5)
    assert len(got) == 20
    want = oracle.tail(20).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got[["ts", *PRICE_COLUMNS, "count"]], want, check_dtype=False, check_exact=False
    )
    assert (got["expected"] == 5).all()
    assert got["ts"].iloc[-1] == sessions[3][0].minutes[5]  # the last complete bucket


def test_no_future_leak_before_open_and_after_close(three_day_history) -> None:
    sd, sessions, _ = three_day_history
    current = sessions[3][0]
    before = sd.last_n_bars("AAA", 1000)
    assert before["ts"].max() < current.minutes[0]  # clock -1: history only
    assert sd.bars_between("AAA", int(current.minutes[0]), int(current.minutes[-1])).empty
    sd.close_session()
    oracle = long_frame(sessions[3:], 0)
    got = sd.bars_between("AAA", int(current.minutes[0]), int(current.minutes[-1]))
    np.testing.assert_array_equal(got["ts"], oracle["ts"])


def test_bars_between_is_inclusive_and_crosses_sessions(three_day_history) -> None:
    sd, sessions, _ = three_day_history
    sd.close_session()
    oracle = long_frame(sessions, 1)
    lo, hi = int(sessions[1][0].minutes[20]), int(sessions[2][0].minutes[4])
    want = oracle[(oracle["ts"] >= lo) & (oracle["ts"] <= hi)]
    got = sd.bars_between("BBB", lo, hi)
    np.testing.assert_array_equal(got["ts"], want["ts"])
    assert not got.empty


def test_history_ring_stays_bounded_through_rolls() -> None:
    sd = SessionData(history_sessions=2)
    rng = np.random.default_rng(3)
    kept = []
    for day in range(5):
        sm = session_minutes(day, 10)
        sd.start_session(sm, ["X"], {5: bucket_layout(sm.minutes, sm.segment, 5)})
        bars = truth_bars(rng, (1, 10))
        fill_session(sd, bars)
        sd.set_metrics(bar_quality=np.array([50.0]))
        sd.close_session()
        kept.append((sm, bars))
        assert len(sd.history) == min(day, 2)
        assert sd.session_metrics("X")["bar_quality"] == 50.0
    assert sd.history == (kept[2][0].session, kept[3][0].session)
    sd.start_session(session_minutes(5, 10), ["X"])
    assert sd.session_metrics("X")["bar_quality"] == 100.0  # metrics reset at the roll
    oracle = long_frame(kept[3:], 0)  # the ring now holds sessions 3 and 4
    got = sd.last_n_bars("X", 100)
    np.testing.assert_array_equal(got["ts"], oracle["ts"])
    got5 = sd.last_n_bars("X", 100, interval=5)
    assert len(got5) == 4 and (got5["count"] == 5).all()


def test_unknown_symbol_is_a_clear_key_error(three_day_history) -> None:
    sd, _, _ = three_day_history
    with pytest.raises(UnknownSymbolError, match="'ZZZ'") as info:
        sd.last_n_bars("ZZZ", 3)
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyError):
        sd.session_metrics("ZZZ")


def test_async_api_and_metrics(three_day_history) -> None:
    sd, sessions, _ = three_day_history
    sd.advance_clock(int(sessions[3][0].minutes[-1]))
    sd.set_metrics(["BBB"], bar_quality=97.5, expected_bars=30, actual_bars=29, gaps=1)

    async def analyse() -> tuple[dict, pd.DataFrame]:
        metrics = await sd.get_session_metrics("BBB")
        bars = await sd.get_last_n_bars("BBB", 4, interval=5)
        return metrics, bars

    metrics, bars = asyncio.run(analyse())
    assert metrics["bar_quality"] == 97.5 and metrics["actual_bars"] == 29
    assert {"backfilled_bars", "repaired_bars", "unfillable_bars"} <= set(metrics)
    assert len(bars) == 4
    with pytest.raises(ParameterError, match="unknown field"):
        sd.set_metrics(quality=1.0)


def test_take_dirty_marks_written_slots_once() -> None:
    sd = SessionData()
    sd.start_session(session_minutes(0, 6), ["A", "B", "C"])
    sd.write_minute(2, np.array([0, 2]), *([1.0, 1.0] for _ in range(5)))
    sd.write_bars([1], [4], *([1.0] for _ in range(5)), provenance=P.BACKFILL)
    sd.write_bars([0], [2], *([1.0] for _ in range(5)), provenance=P.BACKFILL)  # refused
    dirty = sd.take_dirty()
    assert sorted(zip(*np.nonzero(dirty), strict=True)) == [(0, 2), (1, 4), (2, 2)]
    assert not sd.take_dirty().any()
    snap = sd.panel_snapshot(take_dirty=True)
    assert snap.dirty is not None and not snap.dirty.any()


def test_set_derived_patches_buckets() -> None:
    sm = session_minutes(0, 20)
    sd = SessionData()
    layout = bucket_layout(sm.minutes, sm.segment, 5)
    sd.start_session(sm, ["A"], {5: layout})
    bars = truth_bars(np.random.default_rng(1), (1, 20))
    fill_session(sd, bars)
    sd.set_derived(5, derive(sd.panel_snapshot().panel, layout))
    sd.write_bars([0], [7], 1.0, 500.0, 0.5, 1.0, 1.0, provenance=P.FEED)
    patch = derive(sd.panel_snapshot().panel, layout, np.array([1]))
    sd.set_derived(5, patch, buckets=np.array([1]))
    stored = sd.panel_snapshot().derived[5]
    assert stored.high[0, 1] == 500.0
    np.testing.assert_array_equal(stored.count[0], [5, 5, 5, 5])


def test_wait_for_clock_wakes_on_advance_and_close() -> None:
    sd = SessionData()
    sm = session_minutes(0, 5)
    sd.start_session(sm, ["A"])
    assert sd.wait_for_clock(int(sm.minutes[1]), timeout=0.01) is False
    woke = []
    t = threading.Thread(target=lambda: woke.append(sd.wait_for_clock(int(sm.minutes[3]), 5)))
    t.start()
    sd.advance_clock(int(sm.minutes[3]))
    t.join(5)
    assert woke == [True]
    t = threading.Thread(target=lambda: woke.append(sd.wait_for_clock(10**12, 5)))
    t.start()
    sd.close_session()
    t.join(5)
    assert woke == [True, True]


def test_memory_is_at_most_64_bytes_per_stored_bar() -> None:
    result = bench_memory(symbols=2000)
    assert result["stored_bars"] > 1_000_000  # 1m bars with 2% gaps plus 5/15/30/60m bars
    assert result["bytes_per_bar"] <= 64


# ---------------------------------------------------------------------------- fast reads
def full_derive_oracle(
    sessions: list[tuple[np.ndarray, np.ndarray, Panel, int]], row: int, interval: int
) -> pd.DataFrame:
    """Every session's buckets of one row from a full-panel derive, complete by the clock.

    `sessions`: (minutes, segment, panel, visible minutes) per session, oldest first.
    """
    parts = []
    for minutes, segment, panel, n_visible in sessions:
        layout = bucket_layout(minutes, segment, interval)
        d = derive(panel, layout)
        done = layout.stop_idx <= n_visible
        keep = (d.count[row] > 0) & done
        part = {"ts": d.starts[keep]}
        part.update({c: getattr(d, c)[row, keep] for c in (*PRICE_COLUMNS, "count")})
        part["expected"] = d.expected[keep]
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)


def test_reads_with_2000_symbols_match_a_full_derive() -> None:
    rng = np.random.default_rng(11)
    sm = session_minutes(0, 390)
    symbols = [f"S{i:04d}" for i in range(2000)]
    bars = truth_bars(rng, (2000, 390), missing=0.05)
    bars_panel = Panel(tuple(symbols), sm.minutes, *(bars[c] for c in PRICE_COLUMNS))
    sd = SessionData()
    sd.start_session(sm, symbols)
    fill_session(sd, bars)
    clock_idx = 212  # minute 213 of 390: a 5m and a 15m bucket are still forming
    sd.advance_clock(int(sm.minutes[clock_idx]))
    session = [(sm.minutes, sm.segment, bars_panel, clock_idx + 1)]
    for row in (0, 999, 1999):
        for interval in (5, 15, 30, 60):
            want = full_derive_oracle(session, row, interval)
            assert want["ts"].iloc[-1] + interval * 60 - 60 <= sd.clock  # no forming bucket
            for n in (1, 7, 50, 10_000):
                got = sd.last_n_bars(symbols[row], n, interval)
                pd.testing.assert_frame_equal(got, want.tail(n).reset_index(drop=True))
            lo, hi = int(sm.minutes[40]), int(sm.minutes[300])
            inside = want[(want["ts"] >= lo) & (want["ts"] <= hi)].reset_index(drop=True)
            pd.testing.assert_frame_equal(sd.bars_between(symbols[row], lo, hi, interval), inside)
        ones = sd.last_n_bars(symbols[row], 50)
        visible = bars_panel.present[row, : clock_idx + 1]
        np.testing.assert_array_equal(ones["ts"], sm.minutes[: clock_idx + 1][visible][-50:])
        np.testing.assert_array_equal(
            ones["close"], bars["close"][row, : clock_idx + 1][visible][-50:]
        )


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_minutes=st.integers(1, 45),
    missing=st.sampled_from([0.0, 0.3, 0.8, 1.0]),
    interval=st.sampled_from([2, 3, 5, 7, 15]),
    n=st.integers(0, 40),
    clock_idx=st.integers(-1, 50),
    with_history=st.booleans(),
    closed=st.booleans(),
)
def test_fast_reads_equal_a_full_panel_derive(
    seed: int,
    n_minutes: int,
    missing: float,
    interval: int,
    n: int,
    clock_idx: int,
    with_history: bool,
    closed: bool,
) -> None:
    rng = np.random.default_rng(seed)
    symbols = ("A", "B", "C")
    sd = SessionData(history_sessions=1)
    sessions = []
    if with_history:
        old = session_minutes(0, n_minutes)
        past = truth_bars(rng, (3, n_minutes), missing=missing)
        panel = Panel(symbols, old.minutes, *(past[c] for c in PRICE_COLUMNS))
        sd.add_history(old.session, old.minutes, old.segment, panel)
        sessions.append((old.minutes, old.segment, panel, n_minutes))
    sm = session_minutes(1, n_minutes)
    sd.start_session(sm, symbols)
    bars = truth_bars(rng, (3, n_minutes), missing=missing)
    fill_session(sd, bars)
    clock_idx = min(clock_idx, n_minutes - 1)
    if clock_idx >= 0:
        sd.advance_clock(int(sm.minutes[clock_idx]))
    if closed:
        sd.close_session()
    n_visible = n_minutes if closed else clock_idx + 1
    panel = Panel(symbols, sm.minutes, *(bars[c] for c in PRICE_COLUMNS))
    sessions.append((sm.minutes, sm.segment, panel, n_visible))
    row = int(rng.integers(0, 3))
    want = full_derive_oracle(sessions, row, interval)
    got = sd.last_n_bars(symbols[row], n, interval)
    pd.testing.assert_frame_equal(got, want.tail(n).reset_index(drop=True), check_dtype=n > 0)
    lo = int(sessions[0][0][0]) + 60 * int(rng.integers(-5, 2 * n_minutes))
    hi = lo + 60 * int(rng.integers(0, 3 * n_minutes))
    inside = want[(want["ts"] >= lo) & (want["ts"] <= hi)].reset_index(drop=True)
    got = sd.bars_between(symbols[row], lo, hi, interval)
    pd.testing.assert_frame_equal(got, inside, check_dtype=len(inside) > 0)


def test_reads_do_not_wait_for_the_lock_and_never_see_torn_bars() -> None:
    """Reads run lock-free (a long snapshot copy does not block them) yet stay consistent."""
    sm = session_minutes(0, 60)
    sd = SessionData()
    sd.start_session(sm, ["A", "B"])
    ones = np.ones(2)
    for m in range(60):  # every bar of write k has all prices equal to k
        sd.write_minute(m, np.array([0, 1]), *(ones, ones, ones, ones, ones))
    sd.advance_clock(int(sm.minutes[-1]))
    held, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with sd._lock:  # what panel_snapshot does for the length of a full copy
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    held.wait(5)
    try:
        started = time.perf_counter()
        assert len(sd.last_n_bars("A", 10, interval=5)) == 10
        assert len(sd.bars_between("A", int(sm.minutes[0]), int(sm.minutes[-1]))) == 60
        assert time.perf_counter() - started < 1.0  # a locking read waits the holder's 5 s
    finally:
        release.set()
        holder.join(5)

    stop = threading.Event()

    def writer() -> None:
        k = 1.0
        while not stop.is_set():
            k += 1.0
            v = np.full(2, k)
            sd.write_bars([0] * 60, np.arange(60), *(np.full(60, k) for _ in range(5)), P.FEED)
            sd.write_minute(int(k) % 60, np.array([0, 1]), v, v, v, v, v)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            one = sd.last_n_bars("A", 60)
            prices = one[list(PRICE_COLUMNS)].to_numpy()
            assert (prices == prices[:, :1]).all(), "a bar mixes two writes"
            five = sd.last_n_bars("A", 12, interval=5)
            assert (five["high"] == five["low"]).all(), "a bucket mixes two writes"
    finally:
        stop.set()
        t.join(5)
