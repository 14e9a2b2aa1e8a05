"""Interleavings of a lossy feed, the real upkeep (backfill, repair, derivation) and readers.

test_session_data.py races bare writes; here the writer of backfills and repairs is the real
`Upkeep` against a repository frame that fails on some reads, and the feed is the real fault
injector (drops, duplicates, late and corrupted bars). Oracles: the repository frame (truth)
and `derive` over the 1-minute bars, recomputed from scratch.
"""

from __future__ import annotations

import threading
from datetime import date

import numpy as np
import pandas as pd
import pytest
from helpers import run_together
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from barkeeper.core.calendar import SessionMinutes
from barkeeper.core.kernels import bucket_layout, derive
from barkeeper.core.panel import PRICE_COLUMNS, Panel
from barkeeper.core.synth import synthetic_bars
from barkeeper.live.faults import FaultConfig, inject
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_records import Provenance
from barkeeper.live.upkeep import Upkeep
from barkeeper.live.upkeep_config import SlotState, UpkeepConfig

OPEN = 1_688_995_800  # 2023-07-10 13:30 UTC
INTERVALS = (5, 15)
HYPOTHESIS_EXAMPLES = 200
THREAD_SEEDS = 20


class Repository:
    """The truth as a bar source; while the session runs, a seeded share of reads time out."""

    def __init__(self, truth: pd.DataFrame, data: SessionData, fail_rate: float, seed: int):
        self.truth = truth.set_index(["symbol", "ts"]).sort_index()
        self.data = data
        self.fail_rate = fail_rate
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()

    def fetch(self, keys: pd.DataFrame) -> pd.DataFrame:
        with self.lock:
            fail = self.rng.random() < self.fail_rate
        if fail and not self.data.closed:  # the final pass always gets answers: exact oracle
            raise TimeoutError("repository read timed out")
        wanted = pd.MultiIndex.from_arrays([keys["symbol"], keys["ts"]])
        return self.truth.loc[self.truth.index.intersection(wanted)].reset_index()


class Race:
    """One session: truth, the faulted feed cut into per-minute deliveries, the actors."""

    def __init__(self, seed: int, n_symbols: int = 5, n_minutes: int = 40) -> None:
        minutes = OPEN + 60 * np.arange(n_minutes, dtype=np.int64)
        self.minutes = SessionMinutes(
            session=date(2023, 7, 10),
            minutes=minutes,
            segment=np.zeros(n_minutes, dtype=np.uint8),
            open_ts=int(minutes[0]),
            close_ts=int(minutes[-1]) + 60,
            early_close=False,
        )
        self.symbols = [f"S{i}" for i in range(n_symbols)]
        self.truth = synthetic_bars(
            self.symbols, minutes, illiquid_share=0.2, missing_rate=0.1, seed=seed
        )
        faults = FaultConfig(drop_rate=0.15, duplicate_rate=0.2, out_of_order_rate=0.2,
                             corrupt_rate=0.1, seed=seed)  # fmt: skip
        feed = inject(self.truth, faults).frame
        at = np.searchsorted(minutes, feed["deliver_ts"].to_numpy(), side="left")
        self.deliveries = [feed.loc[at == m] for m in range(n_minutes)]
        self.data = SessionData()
        self.layouts = {n: bucket_layout(minutes, self.minutes.segment, n) for n in INTERVALS}
        self.data.start_session(self.minutes, self.symbols, self.layouts)
        self.repository = Repository(self.truth, self.data, fail_rate=0.3, seed=seed)
        self.upkeep = Upkeep(self.data, self.repository, UpkeepConfig(final_backoff_s=0.0))
        self.upkeep.begin_session(self.minutes, self.layouts)
        self.next_minute = 0
        self.index = {s: i for i, s in enumerate(self.symbols)}

    # -- actors ------------------------------------------------------------------------------
    def feed(self) -> bool:
        """Deliver the next minute's bars (in delivery order) and advance the clock."""
        m = self.next_minute
        if m >= len(self.deliveries):
            return False
        batch = self.deliveries[m]
        if len(batch):
            rows = batch["symbol"].map(self.index).to_numpy()
            cols = np.searchsorted(self.minutes.minutes, batch["ts"].to_numpy())
            values = (batch[c].to_numpy() for c in PRICE_COLUMNS)
            self.data.write_bars(rows, cols, *values, provenance=Provenance.FEED)
        self.data.advance_clock(int(self.minutes.minutes[m]))
        self.next_minute += 1
        if self.next_minute == len(self.deliveries):
            self.data.close_session()
        return True

    def cycle(self) -> None:
        self.upkeep.cycle(max(self.data.clock, int(self.minutes.minutes[0])))

    def read(self, symbol: str, *, derived: bool) -> None:
        bars = self.data.last_n_bars(symbol, 10)
        clock, closed = self.data.clock, self.data.closed
        ts = bars["ts"].to_numpy()
        assert np.all(np.diff(ts) > 0), "1m bars out of order or repeated"
        assert closed or len(ts) == 0 or ts[-1] <= clock, "a bar from the future"
        if not derived:
            return
        one = self.data.last_n_bars(symbol, 10_000)  # no write in between: same moment
        for n in INTERVALS:
            got = self.data.last_n_bars(symbol, 10_000, interval=n)
            assert np.all(np.diff(got["ts"].to_numpy()) > 0)
            check_derived(got, one, n)

    # -- oracle ------------------------------------------------------------------------------
    def finish(self) -> None:
        while self.feed():
            pass
        self.upkeep.final_pass()

    def assert_end_state(self) -> None:
        snapshot = self.data.panel_snapshot()
        truth = Panel.empty(tuple(self.symbols), self.minutes.minutes)
        truth.fill(self.truth)
        for c in PRICE_COLUMNS:  # nothing lost, nothing invented, every bad bar repaired
            np.testing.assert_array_equal(getattr(snapshot.panel, c), getattr(truth, c), c)
        no_bar = ~truth.present
        assert (self.upkeep.state[no_bar] == SlotState.NO_TRADE).all()
        assert (snapshot.provenance[no_bar] == Provenance.NONE).all()
        for n, layout in self.layouts.items():  # derived == derived from the final 1m bars
            want, have = derive(snapshot.panel, layout), snapshot.derived[n]
            for name in ("open", "high", "low", "close", "volume", "count"):
                np.testing.assert_array_equal(getattr(have, name), getattr(want, name), name)


def check_derived(derived: pd.DataFrame, one: pd.DataFrame, n: int) -> None:
    """Each derived bar equals the aggregate of the 1m bars of its bucket."""
    if derived.empty:
        return
    bucket = OPEN + (one["ts"] - OPEN) // (60 * n) * (60 * n)
    oracle = one.groupby(bucket).agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"),
        close=("close", "last"), volume=("volume", "sum"), count=("close", "size"),
    )  # fmt: skip
    oracle = oracle.loc[derived["ts"].to_numpy()]
    for name in ("open", "high", "low", "close", "volume", "count"):
        np.testing.assert_allclose(derived[name].to_numpy(), oracle[name].to_numpy(), err_msg=name)


OPS = st.lists(st.sampled_from(["feed", "feed", "cycle", "read", "derived"]), max_size=120)


@settings(
    max_examples=HYPOTHESIS_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(0, 100_000), ops=OPS)
def test_any_interleaving_of_feed_upkeep_and_reads_ends_in_the_truth(seed: int, ops) -> None:
    race = Race(seed)
    for i, op in enumerate(ops):
        symbol = race.symbols[i % len(race.symbols)]
        if op == "feed":
            race.feed()
        elif op == "cycle":
            race.cycle()
            snapshot = race.data.panel_snapshot()  # right after a cycle, derived is current
            for n in race.upkeep.derived_ready:
                want = derive(snapshot.panel, race.layouts[n])
                np.testing.assert_array_equal(snapshot.derived[n].close, want.close)
        else:
            race.read(symbol, derived=op == "derived")
    race.finish()
    race.assert_end_state()
    assert race.upkeep.stats.cycle_errors == 0


@pytest.mark.parametrize("seed", range(THREAD_SEEDS))
def test_threads_feed_upkeep_and_readers_end_in_the_truth(seed: int) -> None:
    race = Race(seed, n_symbols=40, n_minutes=120)
    rng = np.random.default_rng(seed)

    def feeder() -> None:
        while race.feed():
            if rng.random() < 0.3:
                threading.Event().wait(0.0005)

    def upkeep() -> None:
        while not race.data.closed:
            race.cycle()

    def reader() -> None:
        for i in range(200):
            race.read(race.symbols[i % len(race.symbols)], derived=False)

    errors = run_together(feeder, upkeep, reader, reader, timeout=60)
    assert not errors, errors
    race.upkeep.final_pass()
    race.assert_end_state()
    assert race.upkeep.stats.cycle_errors == 0
