"""`barkeeper bench` at toy sizes: every section's keys, and Prefect bookkeeping per session.

No timing is asserted (figures depend on the machine); what is asserted is that each section
produces the keys BENCHMARKS.md and issue 7 rely on, with plausible values, and that the number
of Prefect runs of a replay, read through the API, does not depend on the symbol count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from barkeeper.bench import coordinator, gx, kernel, replay, scaling, store
from barkeeper.cli.main import app


def test_kernel_keys() -> None:
    figures = kernel.bench_kernel(symbols=12, repeats=1, loop_repeats=1)
    assert {"symbols", "bars", "barkeeper_ms", "pandas_loop_ms", "pandas_groupby_ms"} <= set(
        figures
    )
    assert figures["symbols"] == 12
    # 2% missing of 12 x 390 minutes: most bars are there, not all
    assert 0.9 * 12 * 390 < figures["bars"] < 12 * 390
    assert figures["derived_bars"] > 0 and figures["gap_runs"] > 0
    assert kernel.time_kernel(12, repeats=1) > 0


def test_coordinator_and_memory_keys() -> None:
    figures = coordinator.bench_coordinator(symbols=12, repeats=1)
    assert {"bars_per_s", "bars_per_s_with_handler"} <= set(figures)
    assert figures["bars_per_s"] > 0 and figures["bars_per_s_with_handler"] > 0
    memory = coordinator.bench_memory(symbols=12)
    # 1m bars plus their 5/15/30/60m bars, at most 12 x (390 + 78 + 26 + 13 + 7)
    assert figures["bars"] < memory["stored_bars"] <= 12 * (390 + 78 + 26 + 13 + 7)
    assert memory["bytes_per_bar"] > 0


def test_store_keys_per_backend(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        figures = store.bench_store(sqlite_url=db_url, rows=2_000, repeats=1)
        assert set(figures) == {"sqlite_rows_per_s"}
    else:
        figures = store.bench_store(postgres_url=db_url, rows=2_000, repeats=1)
        assert set(figures) == {"sqlite_rows_per_s", "postgres_rows_per_s"}
    assert all(rate > 0 for rate in figures.values())


def test_gx_keys() -> None:
    figures = gx.bench_gx(symbols=12, repeats=1)
    assert figures["rows"] == 12 and figures["cycle_ms"] > 0


def test_scaling_growth_is_time_ratio_over_symbol_ratio() -> None:
    points = [{"symbols": 500, "t": 2.0}, {"symbols": 5000, "t": 10.0}]
    assert scaling.growth(points, "t", 500, 5000) == pytest.approx(0.5)
    assert scaling.growth(points, "t", 100, 5000) is None


def test_scaling_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # the real replay is measured in test_prefect_runs_do_not_grow_with_symbols; here only
    # the curve's shape: replay seconds linear in symbols, so growth is exactly 1
    def fake_replay(n: int, *, repeats: int = 1, count: bool = True) -> dict:
        return {"seconds": n / 100, "seconds_without_upkeep": n / 200}

    monkeypatch.setattr(scaling, "bench_replay", fake_replay)
    figures = scaling.bench_scaling(sizes=(100, 500, 1000), repeats=1)
    assert [p["symbols"] for p in figures["points"]] == [100, 500, 1000]
    assert figures["from_symbols"] == 500 and figures["to_symbols"] == 1000
    assert figures["replay_seconds_growth"] == pytest.approx(1.0)
    assert figures["kernel_ms_growth"] is not None


def test_prefect_runs_per_run_do_not_grow_with_symbols_or_sessions(
    harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = replay.bench_replay(3, repeats=1)
    assert {"symbols", "seconds", "seconds_without_upkeep", "prefect_runs_per_run"} <= set(small)
    assert small["seconds"] > 0 and small["seconds_without_upkeep"] > 0
    url = f"sqlite:///{tmp_path / 'large.db'}"
    monkeypatch.setenv("BARKEEPER_DATABASE_URL", url)
    monkeypatch.setenv("BARKEEPER_REPORTS_DIR", str(tmp_path / "reports"))
    names = replay.seed_repository(url, 2000, sessions=3)
    _, wide = replay.timed_replay(names, upkeep=True)
    _, long = replay.timed_replay(names[:3], upkeep=True, sessions=3)
    # counted through the API, the upkeep subflow and its tasks included
    expected = {
        "open_run": 1,
        "stream_sessions": 1,
        "flow:data_upkeep": 1,
        "publish_report": 1,
        "emit_run_events": 1,
    }
    assert small["prefect_runs"] == expected
    assert small["prefect_runs_per_run"] == sum(expected.values())
    assert replay.prefect_runs(wide) == expected  # 2,000 symbols
    assert replay.prefect_runs(long) == expected  # 3 sessions


def test_cli_json_and_bad_section(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["bench", "--sections", "memory", "--symbols", "10", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout[result.stdout.index("{") :])
    assert document["memory"]["bytes_per_bar"] > 0
    assert document["machine"]["cores"] >= 1
    bad = runner.invoke(app, ["bench", "--sections", "kernel,nope"])
    assert bad.exit_code == 2
    assert "nope" in bad.output
