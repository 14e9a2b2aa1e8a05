"""Data Docs of an end-of-run checkpoint render styled in headless Chromium with no network."""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import CHROMIUM_ARGS, REPO_ROOT, need
from helpers import five_minute_oracle

from barkeeper.core.panel import BAR_COLUMNS
from barkeeper.core.vocabulary import LEGEND
from barkeeper.quality.data_docs import docs_site, run_final_checkpoint
from barkeeper.quality.frames import prepare_bars_1m, prepare_derived, prepare_session_quality
from barkeeper.quality.offline_assets import CDN_MAP, localise_page

OUTPUT = REPO_ROOT / "test-output"


def msft_session(real_dir: Path) -> dict[str, pd.DataFrame]:
    """MSFT 2023-07-10, 04:00-20:00 New York, with its real pre-market spike, as prepared frames."""
    raw = pd.read_csv(real_dir / "MSFT_1min_2023-07-10_to_2023-07-13.csv")
    raw["ts"] = pd.to_datetime(raw["timestamp"]).astype("datetime64[s]").astype("int64")
    raw["symbol"] = "MSFT"
    start = pd.Timestamp("2023-07-10 04:00", tz="America/New_York")
    minutes = pd.date_range(start, periods=960, freq="1min").as_unit("s").asi8
    bars = raw.loc[raw["ts"].between(minutes[0], minutes[-1]), list(BAR_COLUMNS)]
    derived = five_minute_oracle(bars)
    metrics = pd.DataFrame(
        {
            "symbol": ["MSFT"],
            "expected_bars": [390],
            "actual_bars": [390],
            "bar_quality": [100.0],
            "completeness": [100.0],
            "unfillable_bars": [0],
            "no_data": [False],
        }
    )
    return {
        "bars_1m": prepare_bars_1m(bars, np.asarray(minutes)),
        "bars_derived": prepare_derived(derived, bars),
        "session_quality": prepare_session_quality(metrics),
    }


def test_pages_point_at_local_copies_only(tmp_path: Path) -> None:
    page = tmp_path / "validations" / "s" / "run" / "time" / "b.html"
    html = "".join(
        f'<script src="{url}" integrity="sha384-x" crossorigin="anonymous"></script>'
        if url.endswith(".js")
        else f'<link rel="stylesheet" href="{url}"/>'
        for url in CDN_MAP
    )
    out = localise_page(html, page, tmp_path)
    assert "http" not in out and "integrity" not in out and "crossorigin" not in out
    assert 'src="../../../../static/vendor/jquery/jquery.min.js"' in out
    assert "popper" not in out


@pytest.fixture(scope="module")
def docs(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("data_docs")
    frames = msft_session(real_dir)
    first = run_final_checkpoint("run-a", "2023-07-10", frames, folder)
    second = run_final_checkpoint("run-b", "2023-07-10", frames, folder)
    return {"folder": folder, "first": first, "second": second}


def test_checkpoint_results_and_pages(docs: dict[str, object]) -> None:
    report = docs["second"]
    assert report.page.is_file() and report.index.is_file()
    assert set(report.pages) == {"bars_1m", "bars_derived", "session_quality"}
    outcome = {(r.suite, r.severity): (r.success, r.failing) for r in report.results}
    assert outcome[("bars_1m", "critical")] == (True, [])
    assert outcome[("bars_1m", "warning")] == (False, ["no_price_spike"])
    assert outcome[("bars_derived", "critical")] == (True, [])
    assert outcome[("session_quality", "warning")] == (True, [])
    for page in [report.index, *report.pages.values()]:
        assert "https://cdn" not in page.read_text() and "unpkg.com" not in page.read_text()


def test_data_docs_render_offline_in_chromium(docs: dict[str, object]) -> None:
    chromium = os.environ.get("BARKEEPER_CHROMIUM") or shutil.which("chromium")
    need(bool(chromium), "Chromium not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    OUTPUT.mkdir(exist_ok=True)
    blocked: list[str] = []
    errors: list[str] = []

    def offline(route: object) -> None:
        url = route.request.url
        if url.startswith("file://") or url.startswith(("http://localhost", "http://127.0.0.1")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", offline)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            page.goto(docs["second"].index.as_uri(), wait_until="load")
            rows = page.locator("table.ge-index-page-validation-results-table tbody tr")
            assert rows.count() == 6  # two runs x three suites, newest first
            text = page.locator("table.ge-index-page-validation-results-table").inner_text()
            for needle in (
                "bars_1m",
                "bars_derived",
                "session_quality",
                "run-a__2023-07-10",
                "run-b__2023-07-10",
            ):
                assert needle in text
            # Styles that only the vendored Bootstrap and Font Awesome give.
            assert (
                page.evaluate("getComputedStyle(document.querySelector('.navbar')).display")
                == "flex"
            )
            assert (
                page.evaluate("getComputedStyle(document.querySelector('.table td')).paddingTop")
                == "4.8px"
            )
            icon_font = page.evaluate(
                "getComputedStyle(document.querySelector('i.fas')).fontFamily"
            )
            assert "Font Awesome 6 Free" in icon_font
            assert page.evaluate("document.fonts.check('900 16px \"Font Awesome 6 Free\"')")
            page.screenshot(path=str(OUTPUT / "data_docs_index.png"))

            page.goto(docs["second"].pages["bars_1m"].as_uri(), wait_until="load")
            body = page.locator("body").inner_text()
            assert "bars_1m" in body and "Failed" in body
            stats = " ".join(
                page.locator("table", has_text="Evaluated Expectations").first.inner_text().split()
            )
            assert "Evaluated Expectations 11" in stats and "Unsuccessful Expectations 1" in stats
            assert "move_vs_prev_close" in body
            assert (
                page.evaluate("getComputedStyle(document.querySelector('.navbar')).display")
                == "flex"
            )
            page.screenshot(path=str(OUTPUT / "data_docs_bars_1m.png"), full_page=True)

            # The figures' one-line legend, on the page that shows them.
            page.goto(docs["second"].pages["session_quality"].as_uri(), wait_until="load")
            legend = page.locator("p.barkeeper-legend").inner_text()
            assert LEGEND in legend and "judges completeness" in legend
            assert "completeness" in page.locator("body").inner_text()
            page.screenshot(path=str(OUTPUT / "data_docs_session_quality_legend.png"))
        finally:
            browser.close()
    assert blocked == []
    assert errors == []


def test_stored_results_stay_bounded(tmp_path: Path) -> None:
    metrics = pd.DataFrame(
        {
            "symbol": ["A", "B"],
            "expected_bars": [390, 390],
            "actual_bars": [390, 300],
            "bar_quality": [100.0, 300 / 390 * 100],
            "completeness": [100.0, 300 / 390 * 100],
            "unfillable_bars": [0, 90],
            "no_data": [False, False],
        }
    )
    reports = [
        run_final_checkpoint(
            f"run{i}", "2023-07-10", {"session_quality": metrics}, tmp_path, keep_results=2
        )
        for i in range(4)
    ]
    stored = list((tmp_path / ".validations").rglob("*.json"))
    assert len(stored) == 2
    assert not reports[0].page.exists() and not reports[1].page.exists()
    assert reports[2].page.is_file() and reports[3].page.is_file()
    index = reports[3].index.read_text()
    assert "run3__2023-07-10" in index and "run2__2023-07-10" in index and "run1__" not in index
    (result,) = reports[3].results
    assert (result.severity, result.failing) == (
        "warning",
        ["completeness_at_threshold", "unfillable_share_bounded"],
    )


def quality_frame(bar_quality: list[float]) -> pd.DataFrame:
    n = len(bar_quality)
    return pd.DataFrame(
        {
            "symbol": [f"S{i}" for i in range(n)],
            "expected_bars": [390] * n,
            "actual_bars": [round(q * 3.9) for q in bar_quality],
            "bar_quality": bar_quality,
            "completeness": bar_quality,
            "unfillable_bars": [0] * n,
            "no_data": [False] * n,
        }
    )


def test_cached_context_keeps_concurrent_runs_apart(tmp_path: Path) -> None:
    """Two replays in one process share the folder's docs context; their results never mix."""
    good, bad = quality_frame([100.0, 99.0]), quality_frame([100.0, 50.0])

    def run(i: int) -> tuple[bool, object]:
        passing = i % 2 == 0
        frames = {"session_quality": good if passing else bad}
        report = run_final_checkpoint(f"run{i}", "2023-07-10", frames, tmp_path)
        return passing, report

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(run, range(6)))
    for passing, report in reports:
        (result,) = report.results
        assert result.failing == ([] if passing else ["completeness_at_threshold"])
        page = " ".join(re.sub(r"<[^>]+>", " ", report.page.read_text()).split())
        assert f"Unsuccessful Expectations {0 if passing else 1} " in page
    assert docs_site(tmp_path) is docs_site(tmp_path / ".." / tmp_path.name)
    index = (tmp_path / "index.html").read_text()
    assert all(f"run{i}__2023-07-10" in index for i in range(6))
    assert len(list((tmp_path / ".validations").rglob("*.json"))) == 6


def test_failed_warnings_never_mark_a_suite_failed_in_the_index(docs: dict[str, object]) -> None:
    report = docs["second"]
    failed = {(r.suite, r.severity) for r in report.results if not r.success}
    assert failed == {("bars_1m", "warning")}  # the real pre-market spike: a warning only
    index = report.index.read_text()
    rows = re.findall(r"'_validation_success_text': '(\w+)', 'asset_name': '(\w+)'", index)
    assert ("Success", "bars_1m") in rows
    assert not [row for row in rows if row[0] != "Success"], rows
