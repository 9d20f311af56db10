"""Through the browser (headless Debian Chromium): a detected hazard driven to a paid penalty by clicks,
then found by the assessor with its full timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, expect

from console.appkeys import HAZARD_DEADLINES, HAZARDS
from tests.browser.conftest import Pages, browser, shot  # noqa: F401  (fixtures)
from tests.hazards.conftest import config, hazard_app, jpeg
from tests.support import RunningApp, RunningClock

# The last evening of the year in the station's time zone (UTC+8): the deadline jump below crosses a month and a
# year end, the edge where a page or server that reads the real calendar instead of the app's clock goes wrong.
YEAR_END = datetime(2026, 12, 31, 13, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> RunningClock:
    return RunningClock(YEAR_END)


@pytest.fixture
async def app(sqlite_url: str, clock: RunningClock) -> AsyncIterator[RunningApp]:
    # sessions run on the app's clock: they must outlast the two-day deadline jump below
    async with hazard_app(config(sqlite_url, console={"session_hours": 72}), clock=clock) as running:
        yield running


@pytest.fixture
async def pages(browser: Browser, app: RunningApp) -> AsyncIterator[Pages]:  # noqa: F811
    p = Pages(browser, app.url)
    yield p
    await p.close()
    assert not p.errors, f"uncaught JavaScript errors: {p.errors}"


async def test_detection_to_penalty_by_clicks(app: RunningApp, pages: Pages, clock: RunningClock, shot) -> None:  # noqa: F811
    svc = app.app[HAZARDS]
    hz = await svc.create_from_detection(unit_id="school-1", camera_id="cam-1", zone="exit-east",
                                         category="blocked_exit", snapshot_jpeg=jpeg())
    officer = await pages.login("officer")
    await officer.goto(pages.base + "/hazards.html")
    item = officer.locator(f'.hz-item[data-id="{hz["id"]}"]')
    await expect(item).to_contain_text("第一小学")
    await item.click()
    await expect(officer.locator("#d-status")).to_have_text("待下发通知")
    await expect(officer.locator(".gallery img")).to_have_count(1)
    await officer.click("#n-issue")
    await expect(officer.locator("#d-status")).to_have_text("限期整改中")
    await expect(officer.locator("#d-notice-number")).to_contain_text("消限字")
    await shot(officer, "hazard-notice")

    # the deadline passes (no proof, no camera result): a recheck is due (到期复查); it fails → penalty proposed
    clock.offset = timedelta(days=2)
    await app.app[HAZARD_DEADLINES].process_deadline(hz["id"])
    await expect(officer.locator("#d-status")).to_have_text("待复查")  # pushed over the WebSocket
    await officer.fill("#r-note", "安全出口仍被堵塞")
    await officer.click("#r-fail")
    await expect(officer.locator("#d-status")).to_have_text("处罚中")
    school = await pages.login("school")  # the unit sees why its recheck failed
    await school.goto(pages.base + f"/hazards.html#id={hz['id']}")
    await expect(school.locator('#d-timeline li[data-action="hazard.rechecked"]')).to_contain_text(
        "不合格 · 安全出口仍被堵塞")
    # the form expresses a fine on the responsible person: 个人, name and ID, an amount within ¶2's range
    await expect(officer.locator("#pen-range")).to_have_text("5000–50000")
    await officer.select_option("#pen-target", "individual")
    await expect(officer.locator("#pen-clause")).to_contain_text("第六十条第二款")
    await expect(officer.locator("#pen-range")).to_have_text("1–500")
    await officer.fill("#pen-person", "韦某")
    await officer.fill("#pen-person-id", "450202198805061234")
    await officer.fill("#pen-amount", "200")
    await officer.click("#pen-confirm")
    await expect(officer.locator(".card.penalty")).to_have_attribute("data-status", "confirmed")
    await expect(officer.locator(".card.penalty")).to_contain_text("¥200")
    # the 行政处罚告知书 is served on confirmation; the party waives its statement before the decision is approved
    await expect(officer.locator("#inform-pdf")).to_be_visible()
    await officer.click("#inform-waived")
    await expect(officer.locator(".row.inform")).to_have_attribute("data-statement", "waived")

    admin = await pages.login("admin")
    await admin.goto(pages.base + f"/hazards.html#id={hz['id']}")
    await admin.click("#pen-approve")
    await expect(admin.locator(".card.penalty")).to_have_attribute("data-status", "approved")

    await expect(officer.locator("#pen-close")).to_be_visible()
    await officer.fill("#pen-note", "已缴纳")
    await officer.click("#pen-close")
    await expect(officer.locator("#d-status")).to_have_text("已办结")
    await expect(officer.locator('#d-timeline li[data-action="penalty.closed"]')).to_have_count(1)
    await shot(officer, "hazard-closed")

    assessor = await pages.login("assessor")
    await assessor.goto(pages.base + "/assessor.html")
    # the page's default period is the current month of the server's (advanced) clock: January 2027 here
    await expect(assessor.locator('#headline .stat[data-key="penalty_cases"] .v')).to_have_text("1")
    await expect(assessor.locator("#ranking tbody tr")).to_have_count(2)  # station + officer
    await assessor.fill("#s-q", "第一小学")
    await assessor.click("#s-go")
    await assessor.locator("#results tbody tr").first.click()
    await expect(assessor.locator('#case-timeline li[data-action="penalty.approved"]')).to_have_count(1)
    await shot(assessor, "assessor")
