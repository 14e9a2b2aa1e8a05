"""The replay summary a person reads: its legend and the coverage chart's colours.

Oracles: the pixels of the chart (each cause of a minute has its own colour, no-trade minutes
are not red) and the summary artifact as the Prefect API stores it, rendered in headless
Chromium with a screenshot under test-output/.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from datetime import date

import numpy as np
import pytest
from conftest import CHROMIUM_ARGS, REPO_ROOT, need
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from barkeeper.core.calendar import Calendar
from barkeeper.core.vocabulary import LEGEND
from barkeeper.params import ReplayParameters
from barkeeper.reports.charts import (
    BACKFILL,
    CHART_LEGEND,
    COLOURS,
    LABELS,
    NO_TRADE,
    QUARANTINED,
    UNFILLABLE,
    coverage_chart,
)

OUTPUT = REPO_ROOT / "test-output"


def pixels(png: bytes) -> np.ndarray:
    """The chart's RGB pixels, rounded to 8 bits."""
    return np.round(imread(io.BytesIO(png))[..., :3] * 255).astype(int).reshape(-1, 3)


def test_the_chart_paints_each_cause_its_own_colour() -> None:
    minutes = Calendar("XNYS").session_minutes(date(2023, 7, 10)).minutes
    codes = np.ones((len(LABELS), len(minutes)), dtype=np.uint8)
    for code in range(len(LABELS)):
        codes[code, 100:220] = code  # a wide block of every state
    png = coverage_chart(minutes, codes, list(LABELS), "every state")
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "coverage_every_state.png").write_bytes(png)
    seen = {tuple(p) for p in pixels(png)}
    for code, colour in enumerate(COLOURS):
        rgb = tuple(round(c * 255) for c in to_rgb(colour))
        assert rgb in seen, LABELS[code]
    red = np.array(to_rgb("#d62728"))
    grey = np.array(to_rgb(COLOURS[NO_TRADE]))
    assert np.abs(grey - grey.mean()).max() < 0.01  # neutral: no hue at all
    for lost in (UNFILLABLE, QUARANTINED):
        r, g, b = to_rgb(COLOURS[lost])
        assert r > 0.6 and g < 0.2 and b < 0.2  # red
    assert not np.allclose(to_rgb(COLOURS[BACKFILL]), red)


@pytest.fixture
def sample_url(sqlite_url: str, sample_store: Callable[[str], str]) -> str:
    return sample_store(sqlite_url)


def test_the_summary_artifact_carries_the_legends(harness, sample_url: str) -> None:
    from markdown_it import MarkdownIt
    from prefect.artifacts import Artifact

    from flows.replay import replay_sessions

    chromium = os.environ.get("BARKEEPER_CHROMIUM") or shutil.which("chromium")
    need(bool(chromium), "Chromium not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    faults = {"drop_rate": 0.05, "outages": ["10:00-10:20"], "corrupt_rate": 0.01, "seed": 7}
    report = replay_sessions(
        ReplayParameters(symbols=["MSFT", "DBB"], start=date(2023, 7, 10), faults=faults)
    )
    artifact = Artifact.get("barkeeper-replay-summary")
    assert artifact is not None and report["run_id"] in artifact.data
    html = MarkdownIt("commonmark").enable("table").render(artifact.data)
    OUTPUT.mkdir(exist_ok=True)
    page_file = OUTPUT / "summary_artifact.html"
    page_file.write_text(f"<html><body style='font-family:sans-serif'>{html}</body></html>")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            page.goto(page_file.as_uri(), wait_until="load")
            text = " ".join(page.locator("body").inner_text().split())
            assert LEGEND in text
            assert "judges completeness" in text
            assert CHART_LEGEND in text
            assert page.locator("img").count() >= 1
            page.screenshot(path=str(OUTPUT / "summary_artifact.png"), full_page=True)
        finally:
            browser.close()
