"""The suite JSON files under `expectations/`: loading them whole, their parameters and columns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUITES_DIR = Path(__file__).resolve().parents[2] / "expectations"
SUITE_NAMES = ("bars_1m", "bars_derived", "session_quality", "cross_source")
SEVERITIES = ("critical", "warning")


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
    return spec


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
