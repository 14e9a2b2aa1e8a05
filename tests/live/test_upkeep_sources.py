"""The upkeep over several backfill sources: order, one read per source per cycle, what stays
missing, and the comparison of feed bars with a source. Oracle: the sources' frames themselves."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from barkeeper.core.calendar import SessionMinutes
from barkeeper.core.panel import PRICE_COLUMNS
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_records import Provenance
from barkeeper.live.sources import NO_SOURCE
from barkeeper.live.upkeep import Upkeep
from barkeeper.live.upkeep_config import SlotState, UpkeepConfig

OPEN = 1_688_995_800  # 2023-07-10 13:30 UTC
N = 10
MINUTES = OPEN + 60 * np.arange(N, dtype=np.int64)


class Source:
    """Bars at some minutes of symbol A (price = 100 + minute index); may be down."""

    def __init__(self, at: list[int], *, down: bool = False, offset: float = 0.0) -> None:
        self.bars = pd.DataFrame(
            {
                "symbol": "A",
                "ts": MINUTES[at],
                **{c: 100.0 + np.asarray(at) + offset for c in ("open", "high", "low", "close")},
                "volume": 10.0,
            }
        )
        self.down = down
        self.reads = 0

    def fetch(self, keys: pd.DataFrame) -> pd.DataFrame:
        self.reads += 1
        if self.down:
            raise TimeoutError("source down")
        return self.bars.merge(keys, on=["symbol", "ts"])


def session(fed: list[int], sources: list[Source], **config) -> tuple[SessionData, Upkeep]:
    minutes = SessionMinutes(
        session=date(2023, 7, 10),
        minutes=MINUTES,
        segment=np.zeros(N, dtype=np.uint8),
        open_ts=int(MINUTES[0]),
        close_ts=int(MINUTES[-1]) + 60,
        early_close=False,
    )
    data = SessionData()
    data.start_session(minutes, ["A"], {})
    prices = 100.0 + np.asarray(fed, dtype=np.float64)
    cols = np.asarray(fed, dtype=np.intp)
    data.write_bars(np.zeros(len(fed), np.intp), cols, prices, prices, prices, prices,
                    np.full(len(fed), 10.0), provenance=Provenance.FEED)  # fmt: skip
    data.advance_clock(int(MINUTES[-1]))
    upkeep = Upkeep(data, sources, UpkeepConfig(final_backoff_s=0.0, max_retries=2, **config))
    upkeep.begin_session(minutes, {})
    return data, upkeep


def test_sources_are_asked_in_order_and_missing_means_missing_everywhere() -> None:
    first, second = Source([1, 2]), Source([2, 3, 4])
    data, upkeep = session([0, 5, 6, 7, 8, 9], [first, second])
    upkeep.cycle(int(MINUTES[-1]))
    assert first.reads == second.reads == 1  # one batched read per source per cycle
    snap = data.panel_snapshot()
    assert snap.provenance[0, 1:5].tolist() == [Provenance.BACKFILL] * 4
    assert upkeep.origin[0, 1:5].tolist() == [0, 0, 1, 1]  # minute 2: the first source's bar
    upkeep.final_pass()
    assert (upkeep.state[0, 1:5] == SlotState.OPEN).all()
    assert snap.panel.close[0, 2] == 102.0


def test_a_failing_source_makes_minutes_unfillable_not_no_trade() -> None:
    down, up = Source([], down=True), Source([3])
    data, upkeep = session([0, 1, 2, 5, 6, 7, 8, 9], [down, up])
    upkeep.final_pass()
    provenance = data.panel_snapshot().provenance[0]
    assert provenance[3] == Provenance.BACKFILL and upkeep.origin[0, 3] == 1
    assert upkeep.state[0, 4] == SlotState.UNFILLABLE  # the first source never answered
    _, answered = session([0, 1, 2, 5, 6, 7, 8, 9], [Source([]), up])
    answered.final_pass()
    assert answered.state[0, 4] == SlotState.NO_TRADE  # every source answered: none has it


def test_feed_bars_are_compared_and_prefer_decides_the_kept_bar() -> None:
    vendor = Source(list(range(N)), offset=0.2)  # 0.2 on ~100: 20 bps, beyond 5 bps
    for prefer, kept in (("feed", Provenance.FEED), ("backfill", Provenance.REPAIRED)):
        data, upkeep = session([0, 1, 2], [vendor], reconcile=True, prefer=prefer)
        upkeep.final_pass()
        snap = data.panel_snapshot()
        assert snap.provenance[0, :3].tolist() == [kept] * 3
        assert upkeep.reconciliation.mask()[0].tolist() == [True] * 3 + [False] * (N - 3)
        frame = upkeep.reconciliation.frame(("A",), MINUTES, "recorded", ("vendor",))
        assert frame["kind"].tolist() == ["price"] * 3 and (frame["kept"] == prefer).all()
        want = 100.0 + np.arange(3) + (0.2 if prefer == "backfill" else 0.0)
        for column in PRICE_COLUMNS[:4]:
            np.testing.assert_allclose(getattr(snap.panel, column)[0, :3], want)
        origin = upkeep.origin[0, :3].tolist()
        assert origin == ([0] * 3 if prefer == "backfill" else [NO_SOURCE] * 3)
