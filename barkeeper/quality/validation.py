"""Great Expectations checks of bars and session figures: batch validation and its results.

The rules live once, in the suite JSON files under `expectations/` (read by `suites`). GX
evaluates them; a small numpy reading of the same JSON (`frames.row_failures`) finds the failing
rows, so a cycle validation can ask GX for booleans only (the cheap result format) and still
report the failing keys.

Frames are validated after a `frames.prepare_*` function has added the columns the suites read
(`oc_max`, `in_session`, `move_vs_prev_close`, ...).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from barkeeper.core.panel import BAR_COLUMNS
from barkeeper.quality.frames import prepare_session_quality, row_failures
from barkeeper.quality.suites import (
    SEVERITIES,
    SUITE_NAMES,
    SUITES_DIR,
    SuiteLoadError,
    failed_severity,
    load_suite_spec,
    required_columns,
    suite_parameters,
)

log = logging.getLogger(__name__)

SAMPLE_ROWS = 5
KEY_COLUMNS = ["symbol", "ts"]


# ---------------------------------------------------------------- results


@dataclass
class SuiteResult:
    """The outcome of one suite's expectations of one severity over one batch."""

    suite: str
    severity: str
    success: bool
    evaluated: int
    failed: int
    failing: list[str] = field(default_factory=list)
    unexpected_sample: list[dict] = field(default_factory=list)
    failed_keys: pd.DataFrame | None = None

    def to_record(self, run_id: str, session: date | None = None, stage: str = "cycle") -> dict:
        """Column values of a `validation_result` row (models.tables.ValidationResult)."""
        return {
            "run_id": run_id,
            "session": session,
            "suite": self.suite,
            "severity": self.severity,
            "success": bool(self.success),
            "evaluated": int(self.evaluated),
            "failed": int(self.failed),
            "failing": json.dumps(self.failing),
            "unexpected_sample": json.dumps(self.unexpected_sample, default=_json_default),
            "stage": stage,
        }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _clean(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def summarise(
    spec: Mapping[str, Any],
    successes: Sequence[bool],
    frame: pd.DataFrame,
    params: Mapping[str, float],
    severity_override: str | None = None,
) -> list[SuiteResult]:
    """Group per-expectation successes (in suite order) into one SuiteResult per severity.

    Failing rows are found with `row_failures` on `frame`: their count decides, with the
    expectation's `warn_if` / `error_if`, whether a failure is critical, a warning or within
    bounds; a sample of them goes on record and, for the critical group, the (symbol, ts) keys
    to repair. `evaluated` counts the expectations of each declared severity.
    """
    expectations = spec["expectations"]
    if len(successes) != len(expectations):
        raise SuiteLoadError(
            f"suite {spec['name']!r}: GX returned {len(successes)} results "
            f"for {len(expectations)} expectations"
        )
    declared = [severity_override or exp["meta"]["severity"] for exp in expectations]
    outcomes: list[tuple[str | None, np.ndarray | None]] = []
    for exp, ok, severity in zip(expectations, successes, declared, strict=True):
        mask = None if ok else row_failures(exp, frame, params)
        count = None if mask is None or not mask.any() else int(mask.sum())
        outcomes.append((None if ok else failed_severity(exp["meta"], count, severity), mask))
    results = []
    for severity in SEVERITIES:
        members = [
            (exp, mask)
            for exp, (outcome, mask) in zip(expectations, outcomes, strict=True)
            if outcome == severity
        ]
        if severity not in declared and not members:
            continue
        failing, sample = [], []
        bad_rows = np.zeros(len(frame), dtype=bool)
        for exp, mask in members:
            name = exp["meta"]["name"]
            failing.append(name)
            if mask is None:
                continue
            bad_rows |= mask
            for row in (
                frame.loc[mask, _sample_columns(frame, exp)].head(SAMPLE_ROWS).to_dict("records")
            ):
                sample.append({"expectation": name, **{k: _clean(v) for k, v in row.items()}})
        keys = None
        if severity == "critical" and {"symbol", "ts"} <= set(frame.columns):
            keys = frame.loc[bad_rows, KEY_COLUMNS].reset_index(drop=True)
        results.append(
            SuiteResult(
                suite=spec["name"],
                severity=severity,
                success=not failing,
                evaluated=declared.count(severity),
                failed=len(failing),
                failing=failing,
                unexpected_sample=sample[: SAMPLE_ROWS * 4],
                failed_keys=keys,
            )
        )
    return results


def _sample_columns(frame: pd.DataFrame, exp: Mapping[str, Any]) -> list[str]:
    kw = exp["kwargs"]
    named = [kw.get("column"), kw.get("column_A"), kw.get("column_B"), *kw.get("column_list", [])]
    wanted = [c for c in (*BAR_COLUMNS, "interval", "bar_quality", *named) if c]
    return list(dict.fromkeys(c for c in wanted if c in frame.columns))


# ---------------------------------------------------------------- GX


def ephemeral_context() -> Any:
    """An in-memory GX context with progress bars off (no files, nothing stored per cycle)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def add_suite(context: Any, spec: Mapping[str, Any]) -> Any:
    """Add a suite spec to a GX context; raise SuiteLoadError if any expectation went missing."""
    import great_expectations as gx

    expectations = [
        {
            "type": e["type"],
            "kwargs": e["kwargs"],
            "meta": e["meta"],
            "severity": e["meta"]["severity"],
        }
        for e in spec["expectations"]
    ]
    try:
        suite = gx.ExpectationSuite(
            name=spec["name"], expectations=expectations, meta=spec.get("meta")
        )
        suite = context.suites.add(suite)
    except Exception as exc:
        raise SuiteLoadError(f"suite {spec['name']!r} does not load into GX: {exc}") from exc
    if len(suite.expectations) != len(spec["expectations"]):
        raise SuiteLoadError(
            f"suite {spec['name']!r} loaded {len(suite.expectations)} of the "
            f"{len(spec['expectations'])} expectations its file holds"
        )
    return suite


class Validator:
    """One GX context, data source and batch definition per suite, created once per run.

    Parameters
    ----------
    parameters
        Overrides of the suites' `$PARAMETER` defaults, e.g. `{"spike_move": 0.01,
        "quality_threshold": 90}`; unknown names are ignored.
    session_quality_severity
        Severity of the `session_quality` rules ("warning" by default: they never fail a run).
    suites_dir
        Folder of the suite JSON files.
    """

    def __init__(
        self,
        parameters: Mapping[str, float] | None = None,
        *,
        session_quality_severity: str = "warning",
        suites_dir: Path = SUITES_DIR,
    ) -> None:
        if session_quality_severity not in SEVERITIES:
            raise ValueError(f"session_quality_severity must be one of {SEVERITIES}")
        self.specs = {name: load_suite_spec(name, suites_dir) for name in SUITE_NAMES}
        self.params = {
            name: suite_parameters(spec, parameters) for name, spec in self.specs.items()
        }
        self.severity_overrides = {"session_quality": session_quality_severity}
        self.context = ephemeral_context()
        source = self.context.data_sources.add_pandas("barkeeper")
        self.suites = {}
        self.batch_definitions = {}
        for name, spec in self.specs.items():
            self.suites[name] = add_suite(self.context, spec)
            asset = source.add_dataframe_asset(name)
            self.batch_definitions[name] = asset.add_batch_definition_whole_dataframe(name)

    @classmethod
    def from_settings(cls, settings: Any, **parameters: float) -> Validator:
        """A Validator whose quality threshold comes from `Settings.quality_threshold`."""
        return cls({"quality_threshold": settings.quality_threshold, **parameters})

    def validate(self, suite: str, frame: pd.DataFrame) -> list[SuiteResult]:
        """Validate a prepared frame against one suite in one GX batch (booleans only)."""
        spec = self.specs[suite]
        missing = required_columns(spec) - set(frame.columns)
        if missing:
            raise ValueError(
                f"{suite}: frame lacks {sorted(missing)}; "
                f"prepare it with {spec['meta']['prepared_by']}"
            )
        if frame.empty:
            return []
        batch = self.batch_definitions[suite].get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(
            self.suites[suite],
            result_format="BOOLEAN_ONLY",
            expectation_parameters=self.params[suite],
        )
        successes = successes_in_suite_order(spec, result.results)
        return summarise(
            spec, successes, frame, self.params[suite], self.severity_overrides.get(suite)
        )

    def validate_bars_1m(self, frame: pd.DataFrame) -> list[SuiteResult]:
        """All symbols' new or changed 1m bars (from `prepare_bars_1m`) in one batch."""
        return self.validate("bars_1m", frame)

    def validate_derived(self, frame: pd.DataFrame) -> list[SuiteResult]:
        """Derived bars prepared with `prepare_derived`."""
        return self.validate("bars_derived", frame)

    def validate_session_quality(self, metrics_frame: pd.DataFrame) -> list[SuiteResult]:
        """Per-symbol session metrics (SessionMetric columns), prepared here if need be."""
        return self.validate("session_quality", prepare_session_quality(metrics_frame))


@cache
def _cycle_validator(quality_threshold: float) -> Validator:
    return Validator({"quality_threshold": quality_threshold})


def validate_changed_bars(quality_threshold: float, frame: pd.DataFrame) -> list[SuiteResult]:
    """A cycle's batch of new or changed 1m bars, by the process's validator for the threshold
    (a GX context costs seconds: one per threshold and process)."""
    return _cycle_validator(quality_threshold).validate_bars_1m(frame)


def successes_in_suite_order(spec: Mapping[str, Any], gx_results: Sequence[Any]) -> list[bool]:
    """Match GX's per-expectation results back to the suite file's order by `meta.name`."""
    by_name = {}
    for res in gx_results:
        meta = res.expectation_config.meta or {}
        by_name[meta.get("name")] = bool(res.success)
    missing = [e["meta"]["name"] for e in spec["expectations"] if e["meta"]["name"] not in by_name]
    if missing:
        raise SuiteLoadError(f"suite {spec['name']!r}: GX returned no result for {missing}")
    return [by_name[e["meta"]["name"]] for e in spec["expectations"]]
