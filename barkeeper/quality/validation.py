"""Great Expectations checks of bars and session figures: suites, batch validation, results.

The rules live once, in the suite JSON files under `expectations/`. GX evaluates them; a small
numpy reading of the same JSON (`row_failures`) finds the failing rows, so the upkeep can run the
critical OHLC rules every cycle without GX (`hard_check_failures`) and so a cycle validation can
ask GX for booleans only (the cheap result format) and still report the failing keys.

Frames are validated after a `prepare_*` function has added the columns the suites read
(`oc_max`, `in_session`, `move_vs_prev_close`, ...): preparation is pure pandas/numpy and
vectorised across all symbols.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from barkeeper.core.panel import BAR_COLUMNS

log = logging.getLogger(__name__)

SUITES_DIR = Path(__file__).resolve().parents[2] / "expectations"
SUITE_NAMES = ("bars_1m", "bars_derived", "session_quality")
SEVERITIES = ("critical", "warning")
SAMPLE_ROWS = 5
KEY_COLUMNS = ["symbol", "ts"]


class SuiteLoadError(RuntimeError):
    """A suite file could not be loaded whole: validating with part of it would hide failures."""


# ---------------------------------------------------------------- suite files


def load_suite_spec(name: str, suites_dir: Path = SUITES_DIR) -> dict[str, Any]:
    """Read one suite JSON file (GX 1.x ExpectationSuite layout plus `meta.severity` per rule)."""
    path = Path(suites_dir) / f"{name}.json"
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SuiteLoadError(f"cannot read suite {name!r} from {path}: {exc}") from exc
    for i, exp in enumerate(spec.get("expectations", [])):
        severity = exp.get("meta", {}).get("severity")
        if severity not in SEVERITIES:
            raise SuiteLoadError(
                f"{path}: expectation {i} has severity {severity!r}, not one of {SEVERITIES}"
            )
        if not exp.get("meta", {}).get("name"):
            raise SuiteLoadError(f"{path}: expectation {i} has no meta.name")
    return spec


def suite_parameters(spec: Mapping[str, Any], overrides: Mapping[str, float] | None = None) -> dict:
    """The suite's `$PARAMETER` values: its defaults (meta.parameters) updated by `overrides`."""
    params = dict(spec.get("meta", {}).get("parameters", {}))
    for key, value in (overrides or {}).items():
        if key in params and value is not None:
            params[key] = float(value)
    return params


def _resolve(value: Any, params: Mapping[str, float]) -> Any:
    if isinstance(value, dict) and "$PARAMETER" in value:
        return params[value["$PARAMETER"]]
    return value


# ---------------------------------------------------------------- preparation (pure)


def add_ohlc_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Add `null_fields`, `oc_max`, `oc_min`, `min_price`, `second_of_minute`.

    These are the columns the OHLC rules read. `null_fields` counts a row's nulls among
    BAR_COLUMNS (and `interval`): one rule instead of one per column halves GX's cost per
    cycle, which grows with the number of expectations, not rows.
    """
    out = frame.copy()
    checked = [c for c in (*BAR_COLUMNS, "interval") if c in out.columns]
    out["null_fields"] = out[checked].isna().sum(axis=1).to_numpy(np.int64)
    o = out["open"].to_numpy(dtype=np.float64)
    c = out["close"].to_numpy(dtype=np.float64)
    out["oc_max"] = np.maximum(o, c)
    out["oc_min"] = np.minimum(o, c)
    prices = np.column_stack(
        [o, out["high"].to_numpy(np.float64), out["low"].to_numpy(np.float64), c]
    )
    out["min_price"] = prices.min(axis=1)
    ts = pd.to_numeric(out["ts"], errors="coerce").to_numpy(dtype=np.float64)
    out["second_of_minute"] = np.mod(ts, 60)
    return out


def prepare_bars_1m(
    frame: pd.DataFrame,
    expected_minutes_or_mask: np.ndarray | Sequence[int] | None,
    *,
    context: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Add the columns the `bars_1m` suite reads, for all symbols at once.

    Parameters
    ----------
    frame
        Bars to validate (columns BAR_COLUMNS, any order of rows; row order is kept).
    expected_minutes_or_mask
        The session's calendar minutes (int64 Unix seconds) or a boolean mask aligned with
        `frame`'s rows; `None` treats every bar as inside the session.
    context
        Earlier bars of the same symbols (BAR_COLUMNS), not validated: they give the first
        rows of `frame` their previous close and running count of unchanged bars. Pass the last
        `max_unchanged_run` minutes for exact run lengths across cycles.

    Returns
    -------
    pandas.DataFrame
        `frame` plus `null_fields`, `oc_max`, `oc_min`, `min_price`, `second_of_minute`,
        `in_session` (bool),
        `move_vs_prev_close` (NaN without a previous close) and `unchanged_run` (int).
    """
    out = add_ohlc_columns(frame.reset_index(drop=True))
    ts = pd.to_numeric(out["ts"], errors="coerce").to_numpy(dtype=np.float64)
    if expected_minutes_or_mask is None:
        out["in_session"] = True
    else:
        arr = np.asarray(expected_minutes_or_mask)
        if arr.dtype == bool:
            if len(arr) != len(out):
                raise ValueError(f"in-session mask has {len(arr)} rows, frame has {len(out)}")
            out["in_session"] = arr
        else:
            out["in_session"] = np.isin(ts, arr.astype(np.float64))
    move, run = _moves_and_runs(out, context)
    out["move_vs_prev_close"] = move
    out["unchanged_run"] = run
    return out


def _moves_and_runs(
    frame: pd.DataFrame, context: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: excursion of high/low against the previous close, and the unchanged-bar run."""
    cols = list(BAR_COLUMNS)
    n_ctx = 0 if context is None else len(context)
    both = frame[cols] if not n_ctx else pd.concat([context[cols], frame[cols]], ignore_index=True)
    # Context rows first so that, on equal keys, the validated row comes after its context.
    codes, _ = pd.factorize(both["symbol"])
    ts = pd.to_numeric(both["ts"], errors="coerce").to_numpy(np.float64)
    order = np.lexsort((np.arange(len(both)), ts, codes))
    sym = codes[order]
    o, h, lo, c = (both[k].to_numpy(np.float64)[order] for k in ("open", "high", "low", "close"))
    prev_close = np.empty_like(c)
    prev_close[:1] = np.nan
    prev_close[1:] = c[:-1]
    new_symbol = np.ones(len(sym), dtype=bool)
    new_symbol[1:] = sym[1:] != sym[:-1]
    prev_close[new_symbol] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        move = np.fmax(h / prev_close - 1.0, 1.0 - lo / prev_close)
    move[~(prev_close > 0)] = np.nan
    flat = (o == prev_close) & (h == prev_close) & (lo == prev_close) & (c == prev_close)
    idx = np.arange(len(flat))
    last_reset = np.maximum.accumulate(np.where(flat, 0, idx))
    run = np.where(flat, idx - last_reset, 0)
    inverse = np.empty_like(order)
    inverse[order] = idx
    keep = inverse[n_ctx:]
    return move[keep], run[keep].astype(np.int64)


def prepare_derived(derived: pd.DataFrame, bars_1m: pd.DataFrame) -> pd.DataFrame:
    """Add the OHLC columns and `volume_mismatch` (against the 1m bars) to derived bars.

    `derived` has BAR_COLUMNS plus `interval` (minutes), `constituents` and
    `expected_constituents`; a derived bar covers [ts, end_ts) when an `end_ts` column is given
    (short buckets at a segment's end, the daily bar), else [ts, ts + interval * 60). The 1m
    volume sum is found with one `searchsorted` over (symbol, ts) keys, not a loop.
    """
    out = add_ohlc_columns(derived.reset_index(drop=True))
    codes = pd.Categorical(
        pd.concat([bars_1m["symbol"], out["symbol"]], ignore_index=True).astype(str)
    )
    one_code = codes.codes[: len(bars_1m)].astype(np.int64)
    der_code = codes.codes[len(bars_1m) :].astype(np.int64)
    # float keys: exact below 2**53, and a null ts or interval (a rule failure) stays NaN.
    one_key = one_code * 2.0**34 + bars_1m["ts"].to_numpy(np.float64)
    order = np.argsort(one_key, kind="stable")
    one_key = one_key[order]
    cum = np.concatenate([[0.0], np.cumsum(bars_1m["volume"].to_numpy(np.float64)[order])])
    start = der_code * 2.0**34 + pd.to_numeric(out["ts"], errors="coerce").to_numpy(np.float64)
    if "end_ts" in out.columns:
        end = der_code * 2.0**34 + pd.to_numeric(out["end_ts"], errors="coerce").to_numpy(
            np.float64
        )
    else:
        end = start + pd.to_numeric(out["interval"], errors="coerce").to_numpy(np.float64) * 60
    lo = np.searchsorted(one_key, start)
    hi = np.searchsorted(one_key, np.nan_to_num(end, nan=-np.inf))
    hi = np.maximum(hi, lo)
    constituent_volume = cum[hi] - cum[lo]
    out["constituent_volume"] = constituent_volume
    out["volume_mismatch"] = np.abs(
        out["volume"].to_numpy(np.float64) - constituent_volume
    ) / np.maximum(1.0, np.abs(constituent_volume))
    return out


def prepare_session_quality(metrics: pd.DataFrame) -> pd.DataFrame:
    """Add `unfillable_share` = unfillable_bars / expected_bars (0 for an empty session).

    Idempotent: a frame that already has the column is returned as it is.
    """
    if "unfillable_share" in metrics.columns:
        return metrics
    out = metrics.reset_index(drop=True).copy()
    expected = out["expected_bars"].to_numpy(np.float64)
    unfillable = out["unfillable_bars"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["unfillable_share"] = np.where(expected > 0, unfillable / expected, 0.0)
    return out


# ---------------------------------------------------------------- the rules without GX


def row_failures(
    expectation: Mapping[str, Any], frame: pd.DataFrame, params: Mapping[str, float]
) -> np.ndarray | None:
    """Rows of `frame` that break one suite expectation, read as GX reads it; None if not row-wise.

    Null handling follows GX: a column-map rule skips null values, a pair rule skips rows where
    both values are null, a compound-unique rule skips rows where all values are null.
    """
    kind, kw = expectation["type"], expectation["kwargs"]
    if kind == "expect_column_values_to_not_be_null":
        return frame[kw["column"]].isna().to_numpy()
    if kind == "expect_column_values_to_be_between":
        values = pd.to_numeric(frame[kw["column"]], errors="coerce").to_numpy(np.float64)
        ok = np.ones(len(values), dtype=bool)
        low, high = _resolve(kw.get("min_value"), params), _resolve(kw.get("max_value"), params)
        with np.errstate(invalid="ignore"):
            if low is not None:
                ok &= values > low if kw.get("strict_min") else values >= low
            if high is not None:
                ok &= values < high if kw.get("strict_max") else values <= high
        return ~ok & ~np.isnan(values)
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a = frame[kw["column_A"]].to_numpy(np.float64)
        b = frame[kw["column_B"]].to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            ok = a >= b if kw.get("or_equal") else a > b
        return ~ok & ~(np.isnan(a) & np.isnan(b))
    if kind == "expect_column_values_to_be_in_set":
        col = frame[kw["column"]]
        return (~col.isin(kw["value_set"]) & col.notna()).to_numpy()
    if kind == "expect_compound_columns_to_be_unique":
        sub = frame[list(kw["column_list"])]
        return (sub.duplicated(keep=False) & sub.notna().any(axis=1)).to_numpy()
    return None


@functools.cache
def _hard_check_rules() -> tuple[dict[str, Any], ...]:
    spec = load_suite_spec("bars_1m")
    return tuple(e for e in spec["expectations"] if e["meta"].get("hard_check"))


def hard_check_failures(frame: pd.DataFrame) -> np.ndarray:
    """Rows that break a critical OHLC rule of the `bars_1m` suite, without GX.

    Parameters
    ----------
    frame
        Bars with BAR_COLUMNS.

    Returns
    -------
    numpy.ndarray
        Boolean, one per row: True where the bar must be repaired.

    Notes
    -----
    The rules are the suite's expectations marked `meta.hard_check` (nulls, high/low against
    open/close, positive prices, non-negative volume, whole minutes), read from the same JSON
    file GX validates, so the two cannot drift apart.
    """
    prepared = add_ohlc_columns(frame)
    failed = np.zeros(len(frame), dtype=bool)
    for exp in _hard_check_rules():
        failed |= row_failures(exp, prepared, {})
    return failed


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

    Failing rows are found with `row_failures` on `frame`: a sample of them for the record and,
    for the critical group, the (symbol, ts) keys to repair.
    """
    expectations = spec["expectations"]
    if len(successes) != len(expectations):
        raise SuiteLoadError(
            f"suite {spec['name']!r}: GX returned {len(successes)} results "
            f"for {len(expectations)} expectations"
        )
    results = []
    for severity in SEVERITIES:
        members = [
            (exp, ok)
            for exp, ok in zip(expectations, successes, strict=True)
            if (severity_override or exp["meta"]["severity"]) == severity
        ]
        if not members:
            continue
        failing, sample = [], []
        bad_rows = np.zeros(len(frame), dtype=bool)
        for exp, ok in members:
            if ok:
                continue
            name = exp["meta"]["name"]
            failing.append(name)
            mask = row_failures(exp, frame, params)
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
                evaluated=len(members),
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


def required_columns(spec: Mapping[str, Any]) -> set[str]:
    """Every column a suite's expectations read."""
    cols: set[str] = set()
    for exp in spec["expectations"]:
        kw = exp["kwargs"]
        cols.update(c for c in (kw.get("column"), kw.get("column_A"), kw.get("column_B")) if c)
        cols.update(kw.get("column_list", []))
    return cols


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
