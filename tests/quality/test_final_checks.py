"""Sessions validated in one GX batch get the verdicts a GX run of their own gives them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from helpers import five_minute_oracle

from barkeeper.core.calendar import Calendar
from barkeeper.core.panel import BAR_COLUMNS
from barkeeper.core.synth import synthetic_bars
from barkeeper.quality.data_docs import run_final_checkpoint
from barkeeper.quality.final_checks import FinalChecks
from barkeeper.quality.frames import prepare_bars_1m, prepare_derived, prepare_session_quality

SESSIONS = [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]
SYMBOLS = ["AAA", "BBB", "CCC"]


def session_frames(session: date, bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Prepared frames of one session; 2024-03-05 has a broken bar of BBB, 03-06 a bad 5m bar."""
    minutes = Calendar().session_minutes(session).minutes
    one = bars.loc[bars["ts"].between(minutes[0], minutes[-1]), list(BAR_COLUMNS)]
    one = one.reset_index(drop=True)
    if session == SESSIONS[1]:
        row = one.index[(one["symbol"] == "BBB")][10]
        one.loc[row, "high"] = one.loc[row, "low"] - 1.0  # high below open/close: critical
    five = five_minute_oracle(one)
    if session == SESSIONS[2]:
        five.loc[five["symbol"] == "CCC", "constituents"] = 9  # more than expected: critical
    metrics = pd.DataFrame(
        {
            "symbol": SYMBOLS,
            "expected_bars": 390,
            "actual_bars": one.groupby("symbol").size().reindex(SYMBOLS).to_numpy(),
            "unfillable_bars": 0,
        }
    )
    metrics["bar_quality"] = 100.0 * metrics["actual_bars"] / 390
    metrics["completeness"] = metrics["bar_quality"]  # the sources have every minute
    metrics["no_data"] = False
    return {
        "bars_1m": prepare_bars_1m(one, minutes),
        "bars_derived": prepare_derived(five, one),
        "session_quality": prepare_session_quality(metrics),
    }


def outcome(results: list) -> list[tuple]:
    keys = [
        None if r.failed_keys is None else sorted(map(tuple, r.failed_keys.to_numpy().tolist()))
        for r in results
    ]
    return [
        (r.suite, r.severity, r.success, r.evaluated, r.failed, r.failing, k)
        for r, k in zip(results, keys, strict=True)
    ]


@pytest.mark.parametrize("batch_rows", [10**9, 1], ids=["one-batch", "batch-per-session"])
def test_batched_verdicts_equal_one_checkpoint_per_session(tmp_path: Path, batch_rows: int) -> None:
    minutes = [Calendar().session_minutes(s) for s in SESSIONS]
    bars = synthetic_bars(SYMBOLS, minutes, illiquid_share=0.0, seed=3)
    frames = {s: session_frames(s, bars) for s in SESSIONS}
    checks = FinalChecks(
        "run-b", tmp_path / "docs", {"quality_threshold": 95.0}, batch_rows=batch_rows
    )
    got: dict[str, list] = {}
    for s in SESSIONS:
        got.update(checks.add(str(s), frames[s], pd.DataFrame()))
    got.update(checks.flush())
    pages = checks.publish()
    assert set(pages) == {str(s) for s in SESSIONS} and all(p.is_file() for p in pages.values())
    for s in SESSIONS:
        alone = run_final_checkpoint(
            "run-a", str(s), frames[s], tmp_path / "alone", parameters={"quality_threshold": 95.0}
        )
        assert outcome(got[str(s)]) == outcome(alone.results), s
    critical = {s: [r.success for r in got[str(s)] if r.severity == "critical"] for s in SESSIONS}
    assert all(critical[SESSIONS[0]])
    assert not all(critical[SESSIONS[1]]) and not all(critical[SESSIONS[2]])
    (bars_1m_critical,) = (
        r for r in got[str(SESSIONS[1])] if r.suite == "bars_1m" and r.severity == "critical"
    )
    assert bars_1m_critical.failed_keys["symbol"].unique().tolist() == ["BBB"]
