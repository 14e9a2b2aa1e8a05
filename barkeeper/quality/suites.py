"""The suite JSON files under `expectations/`: loading them whole, their parameters, columns and
thresholds.

Each expectation's `meta` has a `severity` (`critical` or `warning`) and, like dbt's tests,
optional `warn_if` / `error_if` conditions on its count of failing rows (`">0"` by default,
e.g. `"error_if": ">3"`: critical only when more than 3 rows fail, a warning below that).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUITES_DIR = Path(__file__).resolve().parents[2] / "expectations"
SUITE_NAMES = ("bars_1m", "bars_derived", "session_quality", "cross_source")
SEVERITIES = ("critical", "warning")
CONDITION = re.compile(r"\s*(>=|>)\s*(\d+)\s*")
DEFAULT_CONDITION = ">0"


class SuiteLoadError(RuntimeError):
    """A suite file could not be loaded whole: validating with part of it would hide failures."""


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
        for key in ("warn_if", "error_if"):
            condition = exp["meta"].get(key, DEFAULT_CONDITION)
            if not CONDITION.fullmatch(str(condition)):
                raise SuiteLoadError(
                    f"{path}: expectation {exp['meta']['name']!r}: {key} {condition!r} is not "
                    "a count condition like '>0' or '>=5'"
                )
    return spec


def exceeds(failures: int, condition: str) -> bool:
    """Whether `failures` failing rows meet a `warn_if` / `error_if` condition (">3", ">=5")."""
    match = CONDITION.fullmatch(str(condition))
    if match is None:
        raise ValueError(f"not a count condition: {condition!r}")
    operator, bound = match.group(1), int(match.group(2))
    return failures > bound if operator == ">" else failures >= bound


def failed_severity(meta: Mapping[str, Any], failures: int | None, severity: str) -> str | None:
    """What a failed expectation counts as: `critical`, `warning` or None (within thresholds).

    `severity` is the expectation's (or its suite's override); `failures` its failing rows, or
    None when they cannot be counted row by row (then any failure counts in full).
    """
    if failures is None:
        return severity
    if severity == "critical" and exceeds(failures, meta.get("error_if", DEFAULT_CONDITION)):
        return "critical"
    if exceeds(failures, meta.get("warn_if", DEFAULT_CONDITION)):
        return "warning"
    return None


def suite_parameters(spec: Mapping[str, Any], overrides: Mapping[str, float] | None = None) -> dict:
    """The suite's `$PARAMETER` values: its defaults (meta.parameters) updated by `overrides`."""
    params = dict(spec.get("meta", {}).get("parameters", {}))
    for key, value in (overrides or {}).items():
        if key in params and value is not None:
            params[key] = float(value)
    return params


def resolve(value: Any, params: Mapping[str, float]) -> Any:
    """A kwarg's value, with a `{"$PARAMETER": name}` reference replaced by its value."""
    if isinstance(value, dict) and "$PARAMETER" in value:
        return params[value["$PARAMETER"]]
    return value


def required_columns(spec: Mapping[str, Any]) -> set[str]:
    """Every column a suite's expectations read."""
    cols: set[str] = set()
    for exp in spec["expectations"]:
        kw = exp["kwargs"]
        cols.update(c for c in (kw.get("column"), kw.get("column_A"), kw.get("column_B")) if c)
        cols.update(kw.get("column_list", []))
    return cols
