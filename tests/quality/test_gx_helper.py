"""GX in the helper process: the same verdicts and pages as in this process, and a helper that
dies mid-run ends the run with one clear error instead of losing its batch silently."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_final_checks import SESSIONS, SYMBOLS, outcome, session_frames

from barkeeper.core.calendar import Calendar
from barkeeper.core.child import Helper
from barkeeper.core.synth import synthetic_bars
from barkeeper.quality.final_checks import FinalChecks
from barkeeper.quality.gx_helper import GX, RemoteChecks

PARAMETERS = {"quality_threshold": 95.0}


@pytest.fixture(scope="module")
def frames() -> dict:
    minutes = [Calendar().session_minutes(s) for s in SESSIONS]
    bars = synthetic_bars(SYMBOLS, minutes, illiquid_share=0.0, seed=3)
    return {s: session_frames(s, bars) for s in SESSIONS}


def _verdicts(checks: FinalChecks | RemoteChecks, frames: dict) -> dict[str, list]:
    got: dict[str, list] = {}
    for s in SESSIONS:
        got.update(checks.add(str(s), frames[s], pd.DataFrame()))
    got.update(checks.flush())
    return {label: outcome(results) for label, results in got.items()}


def test_the_helper_gives_the_verdicts_and_pages_of_this_process(tmp_path: Path, frames) -> None:
    here = FinalChecks("run-here", tmp_path / "here", PARAMETERS)
    there = RemoteChecks("run-there", tmp_path / "there", PARAMETERS)
    expected = _verdicts(here, frames)
    assert _verdicts(there, frames) == expected
    assert any(not r[2] for results in expected.values() for r in results)  # failures included
    pages = there.publish()
    assert set(pages) == {str(s) for s in SESSIONS}
    assert all(p.is_file() and p.is_relative_to(tmp_path / "there") for p in pages.values())


def test_a_helper_that_dies_mid_run_fails_the_run_in_one_line(tmp_path: Path, frames) -> None:
    there = RemoteChecks("run-killed", tmp_path / "docs", PARAMETERS)
    there.add(str(SESSIONS[0]), frames[SESSIONS[0]], pd.DataFrame())
    process = GX._process
    assert process is not None
    process.kill()
    process.wait()
    with pytest.raises(RuntimeError, match="GX validation process ended during the run"):
        there.flush()


def test_a_call_raises_here_what_it_raised_there() -> None:
    helper = Helper()
    try:
        with pytest.raises(ValueError, match="invalid literal"):
            helper.call("builtins:int", "not a number")
        assert helper.call("builtins:divmod", 7, 2) == (3, 1)
    finally:
        helper.stop()
