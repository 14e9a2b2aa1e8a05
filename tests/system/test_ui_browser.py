"""The Prefect UI pages people use, in headless Chromium: the Custom run form and the artifacts.

Runs against the server of tests/served.py (shared with the deployment tests). Screenshots go
to test-output/ so a reviewer can look at what the test saw.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from uuid import UUID

import pytest
from conftest import CHROMIUM_ARGS, REPO_ROOT, need
from playwright.sync_api import Browser, Page, sync_playwright
from prefect.client.schemas.objects import FlowRun, StateType
from served import Served

pytestmark = [pytest.mark.browser, pytest.mark.server]
OUTPUT = REPO_ROOT / "test-output"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = os.environ.get("BARKEEPER_CHROMIUM") or shutil.which("chromium")
    need(bool(executable), "Chromium not found (apt-get install chromium, or BARKEEPER_CHROMIUM)")

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    OUTPUT.mkdir(exist_ok=True)
    yield page
    context.close()


def test_custom_run_form_shows_the_replay_fields(page: Page, served: Served) -> None:
    deployment_id = served.deployment_id("replay_sessions/replay")
    page.goto(f"{served.ui_url}/deployments/deployment/{deployment_id}/run")
    page.get_by_text("Symbols to replay, e.g. MSFT, DBB.").wait_for()
    for label in ("Symbols", "Start", "End", "Speed", "Fill policy", "Fault injection", "Seed"):
        assert page.get_by_text(label, exact=False).first.is_visible(), label
    assert page.get_by_text("Can't connect to Server API").count() == 0
    page.screenshot(path=OUTPUT / "ui-replay-custom-run-form.png", full_page=True)


def test_finished_run_shows_its_quality_table_and_summary(
    page: Page,
    served: Served,
    replay_run: FlowRun,
) -> None:
    assert replay_run.state.type == StateType.COMPLETED
    page.goto(f"{served.ui_url}/runs/flow-run/{replay_run.id}")
    page.get_by_text("Artifacts", exact=True).first.click()
    quality = page.get_by_text("barkeeper-quality", exact=True).first  # one table per run
    quality.wait_for()
    page.screenshot(path=OUTPUT / "ui-replay-run-artifacts-tab.png", full_page=True)

    quality.click()
    page.get_by_role("columnheader", name="bar_quality").first.wait_for()
    for text in ("symbol", "MSFT", "DBB"):
        assert page.get_by_text(text, exact=True).first.is_visible(), text
    page.screenshot(path=OUTPUT / "ui-replay-quality-table.png", full_page=True)


def test_audit_summary_renders_its_coverage_chart(
    page: Page,
    served: Served,
    started_runs: dict[str, UUID],
) -> None:
    run = served.wait(started_runs["audit"])
    page.goto(f"{served.ui_url}/runs/flow-run/{run.id}")
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("barkeeper-audit-summary", exact=True).first.click()
    page.get_by_text("Nightly audit", exact=False).first.wait_for()
    chart = page.locator("img[src^='data:image/png']").first
    chart.scroll_into_view_if_needed()
    width = chart.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width > 500  # the PNG decoded, not a broken-image icon
    assert page.get_by_text("Data Docs", exact=True).first.is_visible()
    chart.screenshot(path=OUTPUT / "ui-audit-coverage-chart.png")
    page.screenshot(path=OUTPUT / "ui-audit-summary.png")


def test_summary_links_to_the_sessions_data_docs_over_http(
    page: Page, served: Served, replay_run: FlowRun
) -> None:
    assert replay_run.state.type == StateType.COMPLETED
    page.goto(f"{served.ui_url}/runs/flow-run/{replay_run.id}")
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("barkeeper-replay-summary", exact=True).first.click()
    link = page.get_by_role(
        "link", name="2023-07-10", exact=True
    ).first  # one page per batch of sessions
    link.wait_for()
    assert link.get_attribute("href").startswith(f"{served.reports_url}/data_docs/")
    page.screenshot(path=OUTPUT / "ui-replay-summary-data-docs-link.png")
    with page.context.expect_page() as opened:  # markdown links open in a new tab
        link.click()
    docs = opened.value
    docs.wait_for_load_state()
    assert docs.url.startswith(served.reports_url)
    docs.get_by_text("2023-07-10", exact=False).first.wait_for()
    assert "bars_1m" in docs.content()
    docs.screenshot(path=OUTPUT / "data-docs-from-summary-link.png")


def test_automations_page_and_an_events_detail(
    page: Page, served: Served, replay_run: FlowRun
) -> None:
    page.goto(f"{served.ui_url}/automations")
    page.get_by_text("barkeeper-audit-landed-file").first.wait_for()
    assert page.get_by_text("Can't connect to Server API").count() == 0
    page.screenshot(path=OUTPUT / "ui-automations.png", full_page=True)

    (event,) = served.events(
        "barkeeper.session.validated",
        lambda e: (
            e.resource["barkeeper.run"] == str(replay_run.id)
            and e.resource["barkeeper.session"] == "2023-07-11"
        ),
    )
    page.goto(f"{served.ui_url}/events/event/{event.occurred.date().isoformat()}/{event.id}")
    page.get_by_text("barkeeper.session.validated").first.wait_for()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=OUTPUT / "ui-event-session-validated.png", full_page=True)
    assert "2023-07-11" in page.content()
