"""dbt-like thresholds: `warn_if` / `error_if` decide what an expectation's failures count as."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from barkeeper.quality.suites import SuiteLoadError, exceeds, load_suite_spec
from barkeeper.quality.validation import summarise


def spec(**meta: str) -> dict:
    """A one-rule suite: volume >= 0, critical unless the thresholds say otherwise."""
    return {
        "name": "bars_1m",
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "volume", "min_value": 0},
                "meta": {"name": "volume_non_negative", "severity": "critical", **meta},
            }
        ],
    }


def frame(bad: int) -> pd.DataFrame:
    volume = [-1.0] * bad + [10.0] * (20 - bad)
    return pd.DataFrame({"symbol": "MSFT", "ts": range(0, 1200, 60), "volume": volume})


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (0, {"critical": True}),
        (1, {"critical": True}),  # within warn_if ">1": nothing to report
        (2, {"critical": True, "warning": False}),  # over warn_if, not over error_if ">3"
        (3, {"critical": True, "warning": False}),
        (4, {"critical": False}),  # "error if more than 3 bars fail"
    ],
)
def test_failure_counts_decide_the_severity(bad: int, expected: dict[str, bool]) -> None:
    rules = spec(warn_if=">1", error_if=">3")
    results = summarise(rules, [bad == 0], frame(bad), {})
    outcome = {r.severity: r.success for r in results}
    assert outcome == expected
    critical = next(r for r in results if r.severity == "critical")
    assert len(critical.failed_keys) == (bad if bad > 3 else 0)  # only errors are repaired


def test_without_thresholds_any_failure_counts_in_full() -> None:
    (result,) = summarise(spec(), [False], frame(1), {})
    assert (result.severity, result.success, result.failing) == (
        "critical",
        False,
        ["volume_non_negative"],
    )


def test_conditions_are_checked_when_the_suite_loads(tmp_path: Path) -> None:
    (tmp_path / "bars_1m.json").write_text(json.dumps(spec(error_if="more than 3")))
    with pytest.raises(SuiteLoadError, match="error_if 'more than 3'"):
        load_suite_spec("bars_1m", tmp_path)
    assert exceeds(4, ">3") and not exceeds(3, ">3") and exceeds(5, ">=5")
