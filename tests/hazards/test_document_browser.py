"""The new documents by clicks (headless Chromium): a violation corrected on the spot gets a 责令立即改正通知书; a
recheck gets its 复查意见书; a unit fine beyond a small station's authority is referred (案件移送书) and the referral
approved by the supervisor; the page speaks Chinese by default and English on the toggle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, expect

from console.appkeys import HAZARD_DEADLINES, HAZARDS
from tests.browser.conftest import Pages, browser  # noqa: F401  (fixtures)
from tests.hazards.conftest import config, hazard_app, jpeg
from tests.hazards.test_document_kinds import SMALL_AUTHORITY
from tests.support import RunningApp, RunningClock


@pytest.fixture
def clock() -> RunningClock:
    return RunningClock(datetime(2026, 11, 30, 3, 0, tzinfo=UTC))


@pytest.fixture
async def app(sqlite_url: str, clock: RunningClock) -> AsyncIterator[RunningApp]:
    cfg = config(sqlite_url, console={"session_hours": 72}, hazards={"station_authority": SMALL_AUTHORITY})
    async with hazard_app(cfg, clock=clock) as running:
        yield running


@pytest.fixture
async def pages(browser: Browser, app: RunningApp) -> AsyncIterator[Pages]:  # noqa: F811
    p = Pages(browser, app.url)
    yield p
    await p.close()
    assert not p.errors, f"uncaught JavaScript errors: {p.errors}"


async def test_immediate_notice_opinion_and_referral_by_clicks(app: RunningApp, pages: Pages,
                                                               clock: RunningClock) -> None:
    svc = app.app[HAZARDS]
    spot = await svc.create_from_detection(unit_id="hotel-1", camera_id="cam-2", zone="exit-west",
                                           category="blocked_exit", snapshot_jpeg=jpeg())
    late = await svc.create_from_detection(unit_id="school-1", camera_id="cam-1", zone="exit-east",
                                           category="blocked_exit", snapshot_jpeg=jpeg())
    officer = await pages.login("officer")
    # corrected on the spot: the order to correct at once closes the case
    await officer.goto(pages.base + f"/hazards.html#id={spot['id']}")
    await officer.click("#n-immediate")
    await expect(officer.locator("#d-status")).to_have_text("已办结")
    await expect(officer.locator("#d-notice-number")).to_contain_text("消立字")
    await expect(officer.locator('.card[data-kind="immediate"] h2')).to_have_text("责令立即改正通知书")
    await expect(officer.locator('#d-timeline li[data-action="hazard.immediate_notice"]')).to_have_count(1)

    # a notice, the deadline passes, the recheck fails: its 复查意见书; the unit fine is beyond this station
    await officer.locator(f'.hz-item[data-id="{late["id"]}"]').click()
    await officer.click("#n-issue")
    await expect(officer.locator("#d-status")).to_have_text("限期整改中")
    clock.offset = timedelta(days=2)
    await app.app[HAZARD_DEADLINES].process_deadline(late["id"])
    await expect(officer.locator("#d-status")).to_have_text("待复查")
    await officer.fill("#r-note", "安全出口仍被堵塞")
    await officer.click("#r-fail")
    await expect(officer.locator("#d-status")).to_have_text("处罚中")
    await expect(officer.locator('.row.opinion[data-rectified="false"]')).to_contain_text("消复字")
    await expect(officer.locator("#pen-beyond")).to_be_visible()
    await officer.click("#pen-refer")
    await expect(officer.locator(".card.penalty")).to_have_attribute("data-status", "referred")
    await expect(officer.locator(".row.referral")).to_have_attribute("data-status", "proposed")
    await expect(officer.locator("#ref-approve")).to_have_count(0)  # an officer does not approve

    admin = await pages.login("admin")
    await admin.goto(pages.base + f"/hazards.html#id={late['id']}")
    await admin.click("#ref-approve")
    await expect(admin.locator(".row.referral")).to_have_attribute("data-status", "approved")
    await expect(admin.locator("#d-status")).to_have_text("已办结")
    await expect(admin.locator("#ref-pdf")).to_have_text("案件移送书 PDF")
    await admin.click("#lang")
    await expect(admin.locator("#ref-pdf")).to_have_text("Case referral PDF")
    await expect(admin.locator(".row.opinion .opinion-pdf")).to_have_text("Recheck opinion PDF")
