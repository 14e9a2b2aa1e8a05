"""BacktestStreamCoordinator: delivery order, faults, handlers, pacing and control."""

from __future__ import annotations

import threading
import time
from datetime import date
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barkeeper.bench.coordinator import bench_coordinator, synthetic_feed
from barkeeper.core.kernels import bucket_layout
from barkeeper.core.panel import PRICE_COLUMNS
from barkeeper.errors import ParameterError
from barkeeper.live import delivery as delivery_module
from barkeeper.live.coordinator import BacktestStreamCoordinator, StreamType, parse_speed
from barkeeper.live.faults import FaultConfig, inject
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_records import Provenance

OPEN_TS = 1710250200  # 2024-03-12 09:30 America/New_York


def minutes(n: int) -> SimpleNamespace:
    return SimpleNamespace(
        session=date(2024, 3, 12),
        minutes=OPEN_TS + 60 * np.arange(n, dtype=np.int64),
        segment=np.zeros(n, dtype=np.uint8),
    )


def store(symbols: list[str], n: int, derived: tuple[int, ...] = ()) -> SessionData:
    sm = minutes(n)
    sd = SessionData()
    sd.start_session(sm, symbols, {k: bucket_layout(sm.minutes, sm.segment, k) for k in derived})
    return sd


def feed(n_symbols: int, n_minutes: int) -> tuple[list[str], pd.DataFrame]:
    """Bars of the first n_minutes of the synthetic bench session."""
    names, frame = synthetic_feed(n_symbols, seed=5)
    return names, frame[frame["ts"] < OPEN_TS + 60 * n_minutes].reset_index(drop=True)


@pytest.mark.parametrize(
    ("text", "value"),
    [("max", None), ("realtime", 1.0), ("10x", 10.0), ("1000x", 1000.0), ("2.5x", 2.5), (4, 4.0)],
)
def test_parse_speed(text, value) -> None:
    assert parse_speed(text) == value


@pytest.mark.parametrize("text", ["fast", "0x", "-3x", "x", "nanx", "10y", 0])
def test_parse_speed_rejects(text) -> None:
    with pytest.raises(ParameterError, match="speed"):
        parse_speed(text)


def test_lossy_feed_is_delivered_in_order_once_per_bar() -> None:
    names, bars = feed(40, 60)
    faulted = inject(
        bars,
        FaultConfig(
            drop_rate=0.05, duplicate_rate=0.05, out_of_order_rate=0.05, corrupt_rate=0.02, seed=9
        ),
    )
    sd = store(names, 60)
    coordinator = BacktestStreamCoordinator(sd)
    seen: list[tuple[str, int, int]] = []
    coordinator.register_handler(lambda s, ts, *ohlcv: seen.append((s, ts, sd.clock)))
    coordinator.feed_frame(faulted.frame.sample(frac=1.0, random_state=1))  # any row order
    stats = coordinator.run()

    frame = faulted.frame
    first = frame.drop_duplicates(["symbol", "ts"], keep="first")
    # Each delivered (symbol, ts) reaches the handlers exactly once, never before its minute.
    assert len(seen) == len(first) == len(set((s, t) for s, t, _ in seen))
    assert all(ts <= clock for _, ts, clock in seen)
    # Handlers see minute after minute, and within a minute (ts, symbol) ascending.
    got = pd.DataFrame(seen, columns=["symbol", "ts", "clock"])
    keys = list(zip(got["clock"], got["ts"], got["symbol"], strict=True))
    assert keys == sorted(keys)
    delivered_at = first.assign(at=np.minimum(first["deliver_ts"], OPEN_TS + 59 * 60))
    want = delivered_at.sort_values(["at", "ts", "symbol"])[["symbol", "ts"]]
    assert list(zip(got["symbol"], got["ts"], strict=True)) == list(
        zip(want["symbol"], want["ts"], strict=True)
    )
    assert stats.duplicates == len(faulted.log.duplicated)
    delayed = faulted.log.delayed  # delivery past the last minute happens at the last minute
    assert (
        stats.late_bars
        == (np.minimum(delayed["deliver_ts"], OPEN_TS + 59 * 60) > delayed["ts"]).sum()
    )
    assert stats.bars_delivered == len(frame) and stats.minutes_delivered == 60
    assert stats.completed and sd.closed

    # The store holds the last delivered copy of every slot, with provenance FEED.
    last = frame.drop_duplicates(["symbol", "ts"], keep="last")
    snap = sd.panel_snapshot()
    stored = snap.panel.to_frame()
    merged = stored.merge(last, on=["symbol", "ts"], suffixes=("", "_want"))
    assert len(merged) == len(stored) == len(last)
    for c in PRICE_COLUMNS:
        np.testing.assert_array_equal(merged[c], merged[f"{c}_want"])
    assert set(np.unique(snap.provenance)) == {Provenance.NONE, Provenance.FEED}


def test_handler_reads_session_data_and_sees_only_complete_buckets() -> None:
    names, bars = feed(5, 30)
    sd = store(names, 30, derived=(5,))
    coordinator = BacktestStreamCoordinator(sd)
    checked = []

    async def analyze(symbol, ts, o, h, lo, c, v) -> None:  # the seed's AnalysisEngine shape
        metrics = await sd.get_session_metrics(symbol)
        assert metrics["bar_quality"] >= 0
        last = await sd.get_last_n_bars(symbol, 1)
        assert last["ts"].iloc[-1] == ts and last["close"].iloc[-1] == c
        bars_5m = await sd.get_last_n_bars(symbol, 50, interval=5)
        if len(bars_5m):
            assert bars_5m["ts"].iloc[-1] + 5 * 60 <= ts + 60  # complete by the clock
        checked.append(len(bars_5m))

    coordinator.register_handler(analyze)
    coordinator.feed_frame(bars)
    coordinator.run()
    assert len(checked) == len(bars)
    assert max(checked) == 6


def test_feed_data_list_accepts_frames_tuples_and_dicts_and_reports_outside_bars() -> None:
    sd = store(["A", "B", "C"], 5)
    coordinator = BacktestStreamCoordinator(sd)
    bar = (1.0, 2.0, 0.5, 1.5, 10.0)
    coordinator.feed_data_list("A", StreamType.BAR, [(OPEN_TS, *bar), (OPEN_TS + 60, *bar)])
    coordinator.feed_data_list(
        "B", StreamType.BAR, [dict(zip(["ts", *PRICE_COLUMNS], (OPEN_TS + 120, *bar), strict=True))]
    )
    frame = pd.DataFrame([(pd.Timestamp(OPEN_TS + 180, unit="s", tz="UTC"), *bar)])
    frame.columns = ["ts", *PRICE_COLUMNS]
    coordinator.feed_data_list("C", StreamType.BAR, frame)
    coordinator.feed_data_list("ZZZ", StreamType.BAR, [(OPEN_TS, *bar)])  # not replayed
    coordinator.feed_data_list("A", StreamType.BAR, [(OPEN_TS + 30, *bar)])  # off the minute
    stats = coordinator.run()
    assert stats.bars_delivered == 4 and stats.outside_bars == 2
    assert sorted(coordinator.outside_frame()["symbol"]) == ["A", "ZZZ"]
    assert sd.panel_snapshot().panel.present.sum() == 4


def test_session_events_and_clock_listener_order() -> None:
    sd = store(["A"], 3)
    coordinator = BacktestStreamCoordinator(sd)
    events: list[object] = []
    coordinator.add_session_listener(lambda s: events.append(("start", s)), events.append)
    coordinator.add_clock_listener(lambda ts: events.append(ts))
    coordinator.run()
    assert events == [("start", date(2024, 3, 12)), *(OPEN_TS + 60 * i for i in range(3)),
                      date(2024, 3, 12)]  # fmt: skip


def test_handler_error_stops_the_stream_or_is_counted() -> None:
    names, bars = feed(3, 10)

    def boom(symbol, ts, *rest) -> None:
        if ts >= OPEN_TS + 300:
            raise RuntimeError("strategy failed")

    sd = store(names, 10)
    coordinator = BacktestStreamCoordinator(sd)
    coordinator.register_handler(boom)
    coordinator.feed_frame(bars)
    with pytest.raises(RuntimeError, match="strategy failed"):
        coordinator.run()
    assert sd.closed and not coordinator.stats.completed
    assert sd.clock == OPEN_TS + 300

    sd = store(names, 10)
    coordinator = BacktestStreamCoordinator(sd, on_handler_error="log")
    coordinator.register_handler(boom)
    coordinator.feed_frame(bars)
    stats = coordinator.run()
    assert stats.completed and stats.handler_errors == len(bars[bars["ts"] >= OPEN_TS + 300])


def test_worker_pause_resume_stop() -> None:
    names, bars = feed(3, 200)
    sd = store(names, 200)
    coordinator = BacktestStreamCoordinator(sd, speed="6000x")  # 10 ms per session minute
    coordinator.feed_frame(bars)
    coordinator.start_worker()
    assert sd.wait_for_clock(OPEN_TS + 5 * 60, timeout=5)
    coordinator.pause()
    assert coordinator.is_paused
    time.sleep(0.05)
    held = sd.clock
    time.sleep(0.2)
    assert sd.clock == held  # nothing moves while paused
    coordinator.resume()
    assert sd.wait_for_clock(held + 5 * 60, timeout=5)
    coordinator.stop()
    assert coordinator.join(timeout=5)
    stats = coordinator.stats
    assert not stats.completed and sd.closed
    assert 10 <= stats.minutes_delivered < 200
    assert sd.clock == OPEN_TS + 60 * (stats.minutes_delivered - 1)


def test_worker_error_is_reraised_by_join() -> None:
    sd = store(["A"], 3)
    coordinator = BacktestStreamCoordinator(sd)
    coordinator.add_clock_listener(lambda ts: 1 / 0)
    coordinator.start_worker()
    with pytest.raises(ZeroDivisionError):
        coordinator.join(timeout=5)


def test_pacing_takes_the_session_time_over_the_multiplier() -> None:
    sd = store(["A"], 11)
    coordinator = BacktestStreamCoordinator(sd, speed="3000x")  # 20 ms per session minute
    started = time.perf_counter()
    coordinator.run()
    elapsed = time.perf_counter() - started
    assert 0.19 <= elapsed < 2.0  # 10 intervals between 11 minutes


def test_threads_write_through_the_coordinator_while_upkeep_backfills() -> None:
    names, bars = feed(20, 60)
    faulted = inject(bars, FaultConfig(drop_rate=0.2, out_of_order_rate=0.1, seed=2))
    sd = store(names, 60)
    coordinator = BacktestStreamCoordinator(sd, speed="60000x")
    coordinator.feed_frame(faulted.frame)
    repo = store(names, 60)  # the repository: the true bars
    rows = sd.symbol_index(list(bars["symbol"]))
    cols = (bars["ts"].to_numpy() - OPEN_TS) // 60
    repo.write_bars(rows, cols, *(bars[c] for c in PRICE_COLUMNS), provenance=Provenance.BACKFILL)
    repo_panel = repo.panel_snapshot().panel

    def upkeep() -> None:
        while not sd.closed:
            snap = sd.panel_snapshot()
            upto = int(np.searchsorted(snap.minutes, snap.clock, side="right"))
            r, c = np.nonzero(~snap.panel.present[:, :upto] & repo_panel.present[:, :upto])
            sd.write_bars(r, c, *(getattr(repo_panel, k)[r, c] for k in PRICE_COLUMNS),
                          provenance=Provenance.BACKFILL)  # fmt: skip
            threading.Event().wait(0.001)

    thread = threading.Thread(target=upkeep)
    thread.start()
    coordinator.run()
    thread.join(5)
    final = sd.panel_snapshot()
    r, c = np.nonzero(~final.panel.present & repo_panel.present)
    sd.write_bars(
        r, c, *(getattr(repo_panel, k)[r, c] for k in PRICE_COLUMNS), provenance=Provenance.BACKFILL
    )  # fmt: skip  (the final pass)
    final = sd.panel_snapshot()
    for k in PRICE_COLUMNS:
        np.testing.assert_array_equal(getattr(final.panel, k), getattr(repo_panel, k))
    fed = set(zip(faulted.frame["symbol"], faulted.frame["ts"], strict=True))
    sym_of = {n: i for i, n in enumerate(names)}
    want = np.where(repo_panel.present, Provenance.BACKFILL, Provenance.NONE)
    for sym, ts in fed:
        want[sym_of[sym], (ts - OPEN_TS) // 60] = Provenance.FEED
    np.testing.assert_array_equal(final.provenance, want)


def test_bench_runs_and_reports_both_rates() -> None:
    result = bench_coordinator(symbols=50, repeats=1)
    assert result["bars_per_s"] > 0 and result["bars_per_s_with_handler"] > 0


def replay(
    symbols: list[str], n: int, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> tuple[SessionData, BacktestStreamCoordinator, list[tuple], bool]:
    """Stream `frame`; also report whether the plan took the feed's own order (no gather)."""
    fast: list[bool] = []
    in_feed_order = delivery_module.DeliveryPlan.in_feed_order.__func__
    monkeypatch.setattr(
        delivery_module.DeliveryPlan,
        "in_feed_order",
        classmethod(lambda cls, *args: fast.append(True) or in_feed_order(cls, *args)),
    )
    sd = store(symbols, n)
    coordinator = BacktestStreamCoordinator(sd)
    seen: list[tuple] = []
    coordinator.register_handler(lambda *bar: seen.append(bar))
    coordinator.feed_frame(frame)
    coordinator.run()
    return sd, coordinator, seen, bool(fast)


@settings(max_examples=60, deadline=None)
@given(
    slots=st.sets(st.tuples(st.integers(0, 3), st.integers(0, 6)), max_size=28),
    outside=st.sets(
        st.one_of(
            st.tuples(st.just(4), st.integers(-2, 8)),  # symbol "ZZ" is not replayed
            st.tuples(st.integers(0, 3), st.sampled_from([-2, -1, 7, 8])),  # not a minute
        ),
        max_size=3,
    ),
    off_minute=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_feed_in_delivery_order_streams_like_the_same_bars_shuffled(
    slots: set[tuple[int, int]], outside: set[tuple[int, int]], off_minute: bool, seed: int
) -> None:
    symbols, n = ["A", "B", "C", "D"], 7
    rng = np.random.default_rng(seed)
    rows = sorted((k, i) for i, k in slots | outside)  # (minute, symbol): the delivery order
    ts = OPEN_TS + 60 * np.array([k for k, _ in rows], dtype=np.int64)
    if off_minute and len(ts):
        ts[0] += 30
    frame = pd.DataFrame(
        {
            "symbol": pd.array([[*symbols, "ZZ"][i] for _, i in rows], dtype="str"),
            "ts": ts,
            **{c: rng.uniform(1, 2, len(rows)) for c in PRICE_COLUMNS},
        }
    )
    in_slot = frame["symbol"].isin(symbols) & frame["ts"].isin(minutes(n).minutes)
    swap = np.arange(len(frame))
    swap[-2:] = swap[-2:][::-1]
    reordered = [frame.sample(frac=1.0, random_state=seed), frame.iloc[swap]]  # last two swapped
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(delivery_module, "SLOT_ORDER_PREFIX", 3)  # check the prefix, then all
        sd, coordinator, seen, fast = replay(symbols, n, frame, mp)
        others = [replay(symbols, n, other, mp) for other in reordered]

    assert fast == bool(in_slot.all())  # the fast path whenever it applies
    # Oracle: every in-slot bar stored as fed; handlers see them in (ts, symbol) order.
    want = frame[in_slot]
    assert [(s, t) for s, t, *_ in seen] == list(zip(want["symbol"], want["ts"], strict=True))
    stored = sd.panel_snapshot().panel.to_frame()
    merged = stored.merge(want, on=["symbol", "ts"], suffixes=("", "_want"))
    assert len(merged) == len(stored) == len(want)
    for c in PRICE_COLUMNS:
        np.testing.assert_array_equal(merged[c], merged[f"{c}_want"])
    outside = coordinator.outside_frame()
    assert list(outside.columns) == [*frame.columns, "deliver_ts"]
    assert coordinator.stats.outside_bars == (~in_slot).sum()
    # Any other order of the same bars ends in exactly the same state, calls and counters.
    a = sd.panel_snapshot()
    coordinator.stats.wall_seconds = 0.0
    for sd2, coordinator2, seen2, _ in others:
        b = sd2.panel_snapshot()
        for c in PRICE_COLUMNS:
            np.testing.assert_array_equal(getattr(a.panel, c), getattr(b.panel, c))
        np.testing.assert_array_equal(a.provenance, b.provenance)
        assert seen == seen2
        coordinator2.stats.wall_seconds = 0.0
        assert coordinator.stats == coordinator2.stats
        pd.testing.assert_frame_equal(
            outside.sort_values(["symbol", "ts"], ignore_index=True),
            coordinator2.outside_frame().sort_values(["symbol", "ts"], ignore_index=True),
        )


def test_delivery_order_fast_path_needs_on_time_unique_bars(monkeypatch) -> None:
    names, bars = feed(4, 10)  # (ts, symbol) order, as the repository reads a session
    _, _, seen, fast = replay(names, 10, bars.assign(deliver_ts=bars["ts"]), monkeypatch)
    assert fast and len(seen) == len(bars)

    late = bars.assign(deliver_ts=bars["ts"])
    late.loc[0, "deliver_ts"] += 120  # first bar delivered two minutes late
    _, coordinator, seen, fast = replay(names, 10, late, monkeypatch)
    assert not fast and coordinator.stats.late_bars == 1
    assert (seen[0][0], seen[0][1]) == (bars["symbol"][1], bars["ts"][1])

    repeated = pd.concat([bars, bars.iloc[[-1]]], ignore_index=True)  # still sorted, not strictly
    _, coordinator, seen, fast = replay(names, 10, repeated, monkeypatch)
    assert not fast and coordinator.stats.duplicates == 1 and len(seen) == len(bars)
