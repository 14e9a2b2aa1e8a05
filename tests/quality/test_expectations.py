"""The GX suites: each rule fails on a frame that breaks it, the real sample passes, and the
numpy reading of the rules (hard checks, failing keys) agrees with GX."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barkeeper.core.panel import BAR_COLUMNS
from barkeeper.quality.frames import (
    hard_check_failures,
    prepare_bars_1m,
    prepare_derived,
    prepare_session_quality,
)
from barkeeper.quality.suites import SUITE_NAMES, SUITES_DIR, SuiteLoadError
from barkeeper.quality.validation import SuiteResult, Validator
from models.tables import ValidationResult

T0 = 1_689_000_000 // 60 * 60  # a whole minute
MINUTES = np.arange(T0, T0 + 60 * 60, 60, dtype=np.int64)
RUN_LIMIT = 3  # max_unchanged_run for these tests: short runs are enough to break it


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator({"max_unchanged_run": RUN_LIMIT})


def by_severity(results: list[SuiteResult]) -> dict[str, SuiteResult]:
    return {r.severity: r for r in results}


def clean_bars(n_symbols: int = 3, n_minutes: int = 8, seed: int = 1) -> pd.DataFrame:
    """Bars that pass every rule: small moves, no flat bars, positive volume."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_symbols):
        close = 50.0 + 10 * s
        for m in range(n_minutes):
            open_ = close
            close = open_ * (1 + rng.uniform(0.0005, 0.002) * rng.choice([-1, 1]))
            high = max(open_, close) * 1.0005
            low = min(open_, close) * 0.9995
            rows.append(
                (f"S{s}", int(MINUTES[m]), open_, high, low, close, float(rng.integers(1, 500)))
            )
    return pd.DataFrame(rows, columns=list(BAR_COLUMNS))


# ---------------------------------------------------------------- suite files


def test_suite_files_hold_what_gx_loads(validator: Validator) -> None:
    for name in SUITE_NAMES:
        in_file = json.loads((SUITES_DIR / f"{name}.json").read_text())["expectations"]
        assert len(in_file) > 0
        assert len(validator.suites[name].expectations) == len(in_file)
        severities = {e.severity.value for e in validator.suites[name].expectations}
        assert severities == {e["meta"]["severity"] for e in in_file}


def test_a_suite_that_loses_an_expectation_fails_loudly(tmp_path: Path) -> None:
    for name in SUITE_NAMES:
        spec = json.loads((SUITES_DIR / f"{name}.json").read_text())
        if name == "bars_derived":
            spec["expectations"][0]["type"] = "expect_column_values_to_be_wonderful"
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
    with pytest.raises(SuiteLoadError, match="bars_derived"):
        Validator(suites_dir=tmp_path)


# ---------------------------------------------------------------- each rule breaks


def _set(row: int, column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        if value is None:
            frame = frame.astype({column: object})
        elif isinstance(value, float):
            frame = frame.astype({column: float})
        frame.loc[row, column] = value
        return frame

    return mutate


def _flat_run(frame: pd.DataFrame) -> pd.DataFrame:
    first = frame.index[frame["symbol"] == "S1"][0]
    price = frame.loc[first, "close"]
    for k in range(1, RUN_LIMIT + 2):
        frame.loc[first + k, ["open", "high", "low", "close"]] = price
    return frame


BARS_1M_BREAKERS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "no_nulls": _set(4, "close", np.nan),
    "high_ge_open_close": lambda f: _set(4, "high", f.loc[4, ["open", "close"]].max() - 0.01)(f),
    "low_le_open_close": lambda f: _set(4, "low", f.loc[4, ["open", "close"]].min() + 0.01)(f),
    "prices_positive": lambda f: f.assign(
        **{c: f[c].where(f.index != 9, -f[c]) for c in ["open", "high", "low", "close"]}
    ),
    "volume_non_negative": _set(4, "volume", -5.0),
    "ts_on_whole_minute": lambda f: _set(4, "ts", f.loc[4, "ts"] + 30)(f),
    "symbol_ts_unique": lambda f: pd.concat([f, f.iloc[[4]]], ignore_index=True),
    "ts_in_session": lambda f: _set(4, "ts", f.loc[4, "ts"] + 86_400)(f),
    "no_price_spike": lambda f: _set(4, "high", f.loc[3, "close"] * 1.02)(f),
    "no_long_unchanged_run": _flat_run,
    "volume_positive": _set(4, "volume", 0.0),
}


def test_every_bars_1m_rule_has_a_breaker(validator: Validator) -> None:
    names = {e["meta"]["name"] for e in validator.specs["bars_1m"]["expectations"]}
    assert names == set(BARS_1M_BREAKERS)


@pytest.mark.parametrize("column", BAR_COLUMNS)
def test_a_null_in_any_bar_column_breaks_no_nulls(validator: Validator, column: str) -> None:
    broken = _set(4, column, None if column == "symbol" else np.nan)(clean_bars())
    critical = by_severity(validator.validate_bars_1m(prepare_bars_1m(broken, MINUTES)))["critical"]
    assert "no_nulls" in critical.failing
    assert hard_check_failures(broken)[4]


def test_clean_bars_pass(validator: Validator) -> None:
    results = validator.validate_bars_1m(prepare_bars_1m(clean_bars(), MINUTES))
    assert [(r.severity, r.success, r.failing) for r in results] == [
        ("critical", True, []),
        ("warning", True, []),
    ]
    assert by_severity(results)["critical"].failed_keys.empty


@pytest.mark.parametrize("rule", sorted(BARS_1M_BREAKERS))
def test_each_bars_1m_rule_fails_on_a_frame_that_breaks_it(validator: Validator, rule: str) -> None:
    broken = BARS_1M_BREAKERS[rule](clean_bars())
    results = by_severity(validator.validate_bars_1m(prepare_bars_1m(broken, MINUTES)))
    severity = next(
        e["meta"]["severity"]
        for e in validator.specs["bars_1m"]["expectations"]
        if e["meta"]["name"] == rule
    )
    assert rule in results[severity].failing
    assert not results[severity].success
    if severity == "warning":
        # A warning is recorded but never marks the bars for repair.
        assert results["critical"].success
        assert results["critical"].failed_keys.empty
    else:
        assert len(results["critical"].failed_keys) >= 1
    assert any(s["expectation"] == rule for s in results[severity].unexpected_sample)


def test_thresholds_are_set_at_run_time() -> None:
    frame = clean_bars()
    frame.loc[4, "high"] = frame.loc[3, "close"] * 1.008  # a 0.8 % excursion
    prepared = prepare_bars_1m(frame, MINUTES)
    strict, loose = Validator(), Validator({"spike_move": 0.01})
    assert "no_price_spike" in by_severity(strict.validate_bars_1m(prepared))["warning"].failing
    assert by_severity(loose.validate_bars_1m(prepared))["warning"].success


def derived_from(bars: pd.DataFrame, minutes: int = 5) -> pd.DataFrame:
    """Derived bars by pandas resample: an oracle independent of barkeeper's derivation."""
    frames = []
    for symbol, g in bars.groupby("symbol"):
        idx = pd.to_datetime(g["ts"], unit="s", utc=True)
        r = g.set_index(idx).resample(f"{minutes}min")
        out = pd.DataFrame(
            {
                "open": r["open"].first(),
                "high": r["high"].max(),
                "low": r["low"].min(),
                "close": r["close"].last(),
                "volume": r["volume"].sum(),
                "constituents": r["close"].count(),
            }
        ).dropna(subset=["open"])
        out["ts"] = out.index.as_unit("s").asi8
        out["symbol"] = symbol
        frames.append(out.reset_index(drop=True))
    derived = pd.concat(frames, ignore_index=True)
    derived["interval"] = minutes
    derived["expected_constituents"] = minutes
    return derived


DERIVED_BREAKERS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "no_nulls": _set(1, "interval", np.nan),
    "constituents_at_least_one": _set(1, "constituents", 0),
    "constituents_at_most_expected": _set(1, "constituents", 7),
    "volume_equals_constituents": lambda f: _set(1, "volume", f.loc[1, "volume"] + 1)(f),
    "high_ge_open_close": lambda f: _set(1, "high", f.loc[1, ["open", "close"]].max() - 0.01)(f),
    "low_le_open_close": lambda f: _set(1, "low", f.loc[1, ["open", "close"]].min() + 0.01)(f),
    "symbol_interval_ts_unique": lambda f: pd.concat([f, f.iloc[[1]]], ignore_index=True),
}


def test_every_derived_rule_has_a_breaker(validator: Validator) -> None:
    names = {e["meta"]["name"] for e in validator.specs["bars_derived"]["expectations"]}
    assert names == set(DERIVED_BREAKERS)


@pytest.mark.parametrize("rule", [None, *sorted(DERIVED_BREAKERS)])
def test_each_derived_rule_fails_on_a_frame_that_breaks_it(
    validator: Validator, rule: str | None
) -> None:
    bars = clean_bars()
    derived = derived_from(bars)
    if rule is not None:
        derived = DERIVED_BREAKERS[rule](derived)
    (result,) = validator.validate_derived(prepare_derived(derived, bars))
    assert result.severity == "critical"
    assert result.success is (rule is None)
    assert (rule in result.failing) if rule else result.failing == []


def test_derived_volume_is_recomputed_from_the_1m_bars() -> None:
    bars = clean_bars(n_minutes=20)
    derived = derived_from(bars, 15)
    prepared = prepare_derived(derived, bars)
    np.testing.assert_allclose(prepared["constituent_volume"], derived["volume"])
    assert (prepared["volume_mismatch"] == 0).all()


def metrics(
    quality: float = 100.0, unfillable: int = 0, complete: float = 100.0, no_data: bool = False
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["A", "B"],
            "expected_bars": [390, 390],
            "actual_bars": [390, round(390 * quality / 100)],
            "bar_quality": [100.0, quality],
            "completeness": [100.0, complete],
            "unfillable_bars": [0, unfillable],
            "no_data": [False, no_data],
        }
    )


@pytest.mark.parametrize(
    ("frame", "failing"),
    [
        (metrics(), []),
        (metrics(quality=20.0), []),  # illiquid: a low bar_quality with nothing lost passes
        (metrics(quality=90.0, complete=90.0), ["completeness_at_threshold"]),
        (metrics(unfillable=40), ["unfillable_share_bounded"]),
        (metrics(quality=0.0, no_data=True), ["has_data"]),
    ],
)
def test_session_quality_rules_are_warnings(
    validator: Validator, frame: pd.DataFrame, failing: list[str]
) -> None:
    (result,) = validator.validate_session_quality(frame)
    assert (result.severity, result.failing, result.success) == ("warning", failing, not failing)


def test_quality_threshold_comes_from_parameters() -> None:
    frame = metrics(quality=90.0, complete=90.0)
    (result,) = Validator({"quality_threshold": 85}).validate_session_quality(frame)
    assert result.success
    assert prepare_session_quality(metrics(unfillable=39))["unfillable_share"].iloc[
        1
    ] == pytest.approx(0.1)


# ---------------------------------------------------------------- preparation vs pandas


def test_prepared_moves_and_runs_match_pandas_and_carry_across_cycles() -> None:
    bars = _flat_run(clean_bars(n_minutes=12)).sample(frac=1, random_state=3)
    whole = prepare_bars_1m(bars, MINUTES)
    ordered = bars.sort_values(["symbol", "ts"])
    prev = ordered.groupby("symbol")["close"].shift()
    expected_move = np.fmax(ordered["high"] / prev - 1, 1 - ordered["low"] / prev)
    got = whole.set_index(bars.index).loc[ordered.index, "move_vs_prev_close"]
    np.testing.assert_allclose(got, expected_move)
    assert whole["unchanged_run"].max() == RUN_LIMIT + 1
    # The last minutes validated alone, with the earlier ones as context, give the same columns.
    cut = MINUTES[8]
    tail = bars[bars["ts"] >= cut]
    split = prepare_bars_1m(tail, MINUTES, context=bars[bars["ts"] < cut])
    pd.testing.assert_frame_equal(
        split.sort_values(["symbol", "ts"]).reset_index(drop=True),
        whole[whole["ts"] >= cut].sort_values(["symbol", "ts"]).reset_index(drop=True),
    )


# ---------------------------------------------------------------- hard checks agree with GX


def random_bars(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = clean_bars(n_symbols=30, n_minutes=10, seed=seed).head(n)
    k = len(frame)
    for column in ["open", "high", "low", "close", "volume", "ts"]:
        hit = rng.random(k) < 0.03
        frame[column] = frame[column].astype(float).where(~hit, np.nan)
    swap = rng.random(k) < 0.05
    frame.loc[swap, ["high", "low"]] = frame.loc[swap, ["low", "high"]].to_numpy()
    frame.loc[rng.random(k) < 0.03, "low"] *= -1
    frame.loc[rng.random(k) < 0.03, "volume"] = -1.0
    frame.loc[rng.random(k) < 0.03, "ts"] += 17
    frame.loc[rng.random(k) < 0.03, "close"] = frame["high"] * 1.01
    return frame


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_hard_checks_agree_with_the_critical_suite(validator: Validator, seed: int) -> None:
    frame = random_bars(seed)
    prepared = prepare_bars_1m(frame, MINUTES)
    batch = validator.batch_definitions["bars_1m"].get_batch(
        batch_parameters={"dataframe": prepared}
    )
    gx_result = batch.validate(
        validator.suites["bars_1m"],
        result_format={"result_format": "COMPLETE"},
        expectation_parameters=validator.params["bars_1m"],
    )
    hard, critical = set(), set()
    for res in gx_result.results:
        meta = res.expectation_config.meta
        rows = set(res.result.get("unexpected_index_list") or [])
        if meta["severity"] == "critical":
            critical |= rows
            if meta.get("hard_check"):
                hard |= rows
    assert set(np.flatnonzero(hard_check_failures(frame))) == hard
    keys = by_severity(validator.validate_bars_1m(prepared))["critical"].failed_keys
    expected = prepared.loc[sorted(critical), ["symbol", "ts"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(keys, expected)
    assert hard  # the corruption rates make an all-clean frame practically impossible


def test_result_record_fits_the_store_table(validator: Validator) -> None:
    broken = BARS_1M_BREAKERS["high_ge_open_close"](clean_bars())
    critical = by_severity(validator.validate_bars_1m(prepare_bars_1m(broken, MINUTES)))["critical"]
    record = critical.to_record("run-1", date(2023, 7, 10), stage="cycle")
    row = ValidationResult(**record)
    assert (row.suite, row.severity, row.success, row.failed) == ("bars_1m", "critical", False, 1)
    assert json.loads(row.failing) == ["high_ge_open_close"]
    sample = json.loads(row.unexpected_sample)
    assert sample[0]["symbol"] == "S0" and sample[0]["ts"] == int(MINUTES[4])


# ---------------------------------------------------------------- the real sample


def read_real(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame["ts"] = pd.to_datetime(frame["timestamp"]).astype("datetime64[s]").astype("int64")
    frame["symbol"] = path.name.split("_")[0]
    return frame[list(BAR_COLUMNS)]


def extended_minutes(session: str) -> np.ndarray:
    """04:00-20:00 New York time of a full XNYS session, as Unix seconds."""
    calendar = xcals.get_calendar("XNYS")
    assert calendar.is_session(session)
    assert len(calendar.session_minutes(session)) == 390  # not an early close
    start = pd.Timestamp(f"{session} 04:00", tz="America/New_York")
    return pd.date_range(start, periods=16 * 60, freq="1min").as_unit("s").asi8


# Sessions: MSFT's four (liquid; 07-10 holds the pre-market spike), and summer and winter
# sessions of the two illiquid ETFs (most minutes have no bar).
REAL_SESSIONS = [
    ("MSFT", "2023-07-10"),
    ("MSFT", "2023-07-11"),
    ("MSFT", "2023-07-12"),
    ("MSFT", "2023-07-13"),
    ("DBB", "2023-07-11"),
    ("DBB", "2024-07-10"),
    ("FXY", "2024-01-10"),
    ("FXY", "2025-07-07"),
]


@pytest.fixture(scope="module")
def real_frames(real_dir: Path) -> dict[str, pd.DataFrame]:
    return {p.name.split("_")[0]: read_real(p) for p in real_dir.glob("*_1min_*.csv")}


@pytest.mark.parametrize(("symbol", "session"), REAL_SESSIONS)
def test_real_clean_sessions_pass(
    validator: Validator, real_frames: dict[str, pd.DataFrame], symbol: str, session: str
) -> None:
    minutes = extended_minutes(session)
    bars = real_frames[symbol]
    day = bars[(bars["ts"] >= minutes[0]) & (bars["ts"] <= minutes[-1])].reset_index(drop=True)
    assert len(day) > 10
    results = by_severity(validator.validate_bars_1m(prepare_bars_1m(day, minutes)))
    assert results["critical"].success, results["critical"]
    (derived,) = validator.validate_derived(prepare_derived(derived_from(day, 5), day))
    assert derived.success, derived


def test_real_msft_spike_is_a_warning(
    validator: Validator, real_frames: dict[str, pd.DataFrame]
) -> None:
    minutes = extended_minutes("2023-07-10")
    bars = real_frames["MSFT"]
    day = bars[(bars["ts"] >= minutes[0]) & (bars["ts"] <= minutes[-1])].reset_index(drop=True)
    spike_ts = int(pd.Timestamp("2023-07-10 13:21", tz="UTC").timestamp())
    row = day.index[day["ts"] == spike_ts][0]
    assert day.loc[row, "high"] == 337.22
    assert day.loc[row, "high"] / day.loc[row - 1, "close"] - 1 > 0.005  # the documented rule
    results = by_severity(validator.validate_bars_1m(prepare_bars_1m(day, minutes)))
    assert results["critical"].success
    assert results["warning"].failing == ["no_price_spike"]
    assert spike_ts in {s["ts"] for s in results["warning"].unexpected_sample}
    quality = metrics().assign(symbol=["MSFT", "X"])
    assert all(r.success for r in validator.validate_session_quality(quality))
