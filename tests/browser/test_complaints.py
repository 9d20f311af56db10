"""A member of the public reports a hazard from a unit's QR page on a phone (real Chromium, phone viewport): the
receipt appears only once the report is stored; the station's triage page shows it live, the officer accepts it
into a hazard, and the public status lookup then says it was accepted."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.pages import Pages
from tests.complaints.conftest import UNITS, config, jpeg_with_gps
from tests.support import Api, RunningApp, running_app

DEMO_SCHOOL = {"id": "demo-school", "name": "环江县第一小学", "category": "学校", "address": "思恩镇城北路18号",
               "lat": 24.8286, "lon": 108.2582}
RECEIPT = re.compile(r"^[23456789ABCDEFGHJKMNPQRSTVWXYZ]{5}-[23456789ABCDEFGHJKMNPQRSTVWXYZ]{5}$")


@pytest.fixture
async def app(sqlite_url: str) -> AsyncIterator[RunningApp]:
    async with running_app(config(sqlite_url, units=[*UNITS, DEMO_SCHOOL]), mqtt=False) as running:
        yield running


async def test_phone_report_to_hazard_with_live_triage_and_public_status(
        app: RunningApp, pages: Pages, shot: Callable[[Page, str], Awaitable[None]]) -> None:
    officer = await pages.login("officer", path="/login.html?next=/triage.html")
    await expect(officer).to_have_url(re.compile(r"/triage\.html$"))
    await expect(officer.locator("#ws-state")).to_have_attribute("data-online", "1")
    await expect(officer.locator("#tr-list")).to_contain_text("暂无待受理举报")

    phone = await pages.new(mobile=True)
    await phone.goto(pages.base + "/report.html?unit=demo-school&facility=hydrant-2")
    await expect(phone.locator("#unit-name")).to_have_text("环江县第一小学")
    await expect(phone.locator("#facility")).to_contain_text("hydrant-2")
    await phone.fill("#description", "教学楼一楼安全出口被课桌堵住")
    await phone.set_input_files("#photo", files=[{"name": "exit.jpg", "mimeType": "image/jpeg",
                                                  "buffer": jpeg_with_gps((1200, 900))}])
    await expect(phone.locator("#photo-preview")).to_be_visible()
    fits = await phone.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert fits, "the report page scrolls sideways on a phone"

    # the connection drops while sending: no receipt is shown, the page says the report was not sent
    async def drop(route: Route) -> None:
        await route.abort()
    await phone.route("**/api/public/complaints", drop)
    await phone.click("#submit")
    await expect(phone.locator("#form-error")).to_contain_text("举报未提交")
    await expect(phone.locator("#done")).to_be_hidden()
    await phone.unroute("**/api/public/complaints", drop)
    assert await officer.locator(".tr-item").count() == 0

    await phone.click("#submit")
    await expect(phone.locator("#done")).to_be_visible()
    await expect(phone.locator("#receipt")).to_have_text(RECEIPT)
    receipt = (await phone.locator("#receipt").text_content() or "").strip()
    await shot(phone, "report-receipt")

    item = officer.locator(".tr-item")  # pushed over the WebSocket: no reload
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("环江县第一小学")
    await item.click()
    await expect(officer.locator("#tr-description")).to_have_text("教学楼一楼安全出口被课桌堵住")
    await expect(officer.locator("#detail h1")).to_contain_text(receipt)
    photo = officer.locator("#tr-photo")
    await expect(photo).to_be_visible()
    await officer.wait_for_function("() => document.querySelector('#tr-photo').naturalWidth === 1200")
    await expect(officer.locator("#tr-map .unit-marker.unit-demo-school")).to_have_count(1)
    await expect(officer.locator("#tr-unit")).to_have_value("demo-school")
    await officer.select_option("#tr-category", "blocked_exit")
    await shot(officer, "triage-report")
    await officer.click("#tr-accept")
    await expect(officer.locator("#tr-hazard-link")).to_be_visible()
    await expect(officer.locator(".tr-item")).to_have_count(0)  # left the "to triage" list

    api = Api(app.url)
    try:
        await api.login("officer", "officer-pw")
        hazards = await api.get("/api/hazards")
        assert [(h["unit_id"], h["category"], h["source"]) for h in hazards] == \
            [("demo-school", "blocked_exit", "complaint")]
    finally:
        await api.close()

    await phone.click("#again")
    await expect(phone.locator("#report-form")).to_be_visible()
    await phone.locator(".rp-chip").first.click()  # the receipts this phone sent, kept on the phone
    await expect(phone.locator("#lookup-out")).to_contain_text("已受理")
    await expect(phone.locator("#lookup-out")).to_contain_text(receipt)
    await shot(phone, "report-status-accepted")


async def test_an_assistant_lands_on_the_report_page_files_as_itself_and_sees_its_own(app: RunningApp,
                                                                                     pages: Pages) -> None:
    page = await pages.new(mobile=True)
    await page.goto(pages.base + "/login.html")
    await page.fill("#username", "grid")
    await page.fill("#password", "grid-pw")
    await page.click("#login-submit")
    await expect(page).to_have_url(re.compile(r"/report\.html$"))  # an assistant's home
    await expect(page.locator("#who")).to_contain_text("村级消防员")
    await expect(page.locator("#mine-list")).to_contain_text("还没有提交过举报")
    await page.fill("#description", "三组晒谷场旁柴堆靠近电线")
    await page.fill("#address", "思恩镇三组")
    await page.click("#submit")
    await expect(page.locator("#receipt")).to_have_text(RECEIPT)
    await expect(page.locator("#mine-list .rp-item")).to_have_count(1)
    await expect(page.locator("#mine-list")).to_contain_text("三组晒谷场旁柴堆靠近电线")
    await expect(page.locator("#mine-list")).to_contain_text("已收到，等待派出所核查")
    api = Api(app.url)
    try:
        await api.login("officer", "officer-pw")
        (filed,) = await api.get("/api/complaints")
        assert (filed["source"], filed["reporter"], filed["address"]) == ("assistant", "grid", "思恩镇三组")
    finally:
        await api.close()
