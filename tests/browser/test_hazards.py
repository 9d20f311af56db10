"""The hazards page in Chromium: the first click after a load is never lost — 新建隐患 clicked while the page still
waits for its data (held here) opens the form, with its unit list, once the data is in; the hazard is filed."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.pages import Pages, hold_requests
from tests.support import RunningApp


async def test_new_hazard_clicked_before_the_page_has_its_data_opens_the_form_all_the_same(
        pages: Pages, app: RunningApp) -> None:
    page = await pages.login("officer")
    held = await hold_requests(page, "**/api/units")
    await page.goto(f"{app.url}/hazards.html")
    await held.arrived()
    await page.click("#new-btn")
    held.release()
    await expect(page.locator("#new-form")).to_be_visible()
    await expect(page.locator("#f-unit option[value=school-1]")).to_have_count(1)
    await page.select_option("#f-unit", "school-1")
    await page.fill("#f-desc", "疏散通道堆放杂物")
    await page.click("#f-submit")
    await expect(page.locator("#new-form")).to_be_hidden()
    await expect(page.locator("#hz-list .hz-item")).to_have_count(1)
    await expect(page.locator("#hz-list .hz-item")).to_contain_text("第一小学")
