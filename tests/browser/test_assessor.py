"""The assessor dashboard in Chromium: the first action after a load is never lost — a period query and a case
search submitted while the page still waits for its data (held here) both run once the data is in, instead of
reloading the page."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.pages import Pages, hold_requests
from tests.support import RunningApp


async def test_a_query_and_a_search_sent_before_the_page_has_its_data_run_all_the_same(
        pages: Pages, app: RunningApp) -> None:
    page = await pages.login("assessor")
    held = await hold_requests(page, "**/api/hazards/config")
    await page.goto(f"{app.url}/assessor.html")
    await held.arrived()
    await page.fill("#p-value", "2025-10")
    await page.click("#p-go")
    await page.fill("#s-q", "第一小学")
    await page.click("#s-go")
    held.release()
    await expect(page.locator("#p-label")).to_have_text("2025年10月")
    await expect(page.locator("#p-value")).to_have_value("2025-10")  # the page kept what was typed
    await expect(page.locator("#results table")).to_have_count(1)
