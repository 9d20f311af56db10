"""The phone inspection page in real Chromium at a phone's size: the officer arrives from a unit's QR link, logs in,
walks the school's checklist with one failure and a photo, signs, loses the network before submitting — the page
says the record is saved on the phone and not sent, and nothing reaches the server — then gets it back: the record
is submitted once, the failure is a hazard with its clause, and the record's PDF opens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import func, select

from console.appkeys import DB, INSPECTIONS
from dispatch.hazard_models import Hazard
from dispatch.inspection_models import Inspection, InspectionPhoto
from tests.browser.conftest import browser, shot  # noqa: F401  (fixtures)
from tests.browser.pages import PASSWORDS
from tests.hazards.conftest import config, hazard_app
from tests.support import RunningApp, RunningClock

PHOTO = Path(__file__).resolve().parents[1] / "inspections" / "data" / "blocked-exit.jpg"
HERE = {"latitude": 24.8201, "longitude": 108.2502}


@pytest.fixture
async def app(sqlite_url: str) -> AsyncIterator[RunningApp]:
    clock = RunningClock(datetime(2026, 11, 10, 2, tzinfo=UTC))
    async with hazard_app(config(sqlite_url, console={"session_hours": 240}), clock=clock) as running:
        yield running


async def stored(app: RunningApp) -> tuple[int, int, int]:
    """(inspections, hazards, photos) on the server."""
    async with app.app[DB].session() as s:
        return (int(await s.scalar(select(func.count(Inspection.id))) or 0),
                int(await s.scalar(select(func.count(Hazard.id))) or 0),
                int(await s.scalar(select(func.count(InspectionPhoto.id))) or 0))


async def test_inspection_on_a_phone_survives_a_dropped_connection(app: RunningApp, browser: Browser,  # noqa: F811
                                                                   shot) -> None:  # noqa: F811
    errors: list[str] = []
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                    has_touch=True, locale="zh-CN", geolocation=HERE, permissions=["geolocation"])
    try:
        page = await ctx.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # the QR link of the unit, for an officer: the page asks for a login and comes back to the unit
        await page.goto(app.url + "/inspect.html?unit=school-1")
        await page.wait_for_url("**/login.html**")
        await page.fill("#username", "officer")
        await page.fill("#password", PASSWORDS["officer"])
        await page.click("#login-submit")
        await page.wait_for_url("**/inspect.html?unit=school-1")
        await expect(page.locator("#unit-name")).to_have_text("第一小学")
        checklist = app.app[INSPECTIONS].checklist("school", "daily")
        items = page.locator(".item")
        await expect(items).to_have_count(len(checklist.items))
        await expect(page.locator("#gps")).to_contain_text("24.82010")
        await shot(page, "inspect-start")
        first = page.locator('.item[data-item="exits_clear"]')
        await page.click("#lang")  # English, then back to Chinese (the default)
        await expect(first.locator('.res[data-result="pass"]')).to_have_text("Pass")
        await expect(first.locator(".item-label")).to_contain_text("Escape routes")
        await page.click("#lang")
        await expect(first.locator('.res[data-result="pass"]')).to_have_text("合格")

        for item in checklist.items:
            card = page.locator(f'.item[data-item="{item.id}"]')
            if item.id == "exits_clear":
                await card.locator('.res[data-result="fail"]').click()
                await card.locator(".item-note").fill("东侧安全出口被纸箱堵塞")
            else:
                await card.locator('.res[data-result="pass"]').click()
        await expect(page.locator("#progress")).to_contain_text(f"{len(checklist.items)} / {len(checklist.items)}")
        await expect(page.locator("#sync-state")).to_have_attribute("data-state", "editing")
        await expect(page.locator("#sync-state")).to_contain_text("草稿已保存在本机")

        # a reload keeps the started checklist
        await page.reload()
        failed = page.locator('.item[data-item="exits_clear"]')
        await expect(failed).to_have_attribute("data-result", "fail")
        await expect(failed.locator(".item-note")).to_have_value("东侧安全出口被纸箱堵塞")

        # the signal drops: the photo and the signature are kept on the phone
        await ctx.set_offline(True)
        await failed.locator(".item-photo").set_input_files(str(PHOTO))
        await expect(failed.locator(".thumb")).to_have_count(1)
        await expect(failed.locator(".thumb")).to_contain_text("已保存在本机")
        await page.fill("#signer", "韦保安")
        box = await page.locator("#sig").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + 30, box["y"] + 120)
        await page.mouse.down()
        for x, y in ((90, 50), (160, 130), (230, 60), (300, 110)):
            await page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
        await page.mouse.up()
        await page.click("#submit")
        state = page.locator("#sync-state")
        await expect(state).to_have_attribute("data-state", "queued")
        await expect(state).to_contain_text("已保存在本机，尚未发送")
        await shot(page, "inspect-offline-queued")
        assert await stored(app) == (0, 0, 0)  # nothing reached the server, and the page does not say it did

        # back online: sent once, with the photo
        await ctx.set_offline(False)
        await expect(state).to_have_attribute("data-state", "submitted", timeout=20_000)
        await expect(state).to_contain_text("已提交")
        assert await stored(app) == (1, 1, 1)
        hazard_link = page.locator("#result-hazards a")
        await expect(hazard_link).to_have_count(1)
        await expect(page.locator("#result-hazards")).to_contain_text("第二十一条")
        await expect(page.locator("#result-number")).to_contain_text("消检字")
        await shot(page, "inspect-submitted")
        pdf = await ctx.request.get(app.url + await page.locator("#result-pdf").get_attribute("href"))
        assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
        assert (await pdf.body()).startswith(b"%PDF")

        # a reload shows the submitted record and sends nothing again
        await page.reload()
        await expect(state).to_have_attribute("data-state", "submitted")
        assert await stored(app) == (1, 1, 1)
        async with app.app[DB].session() as s:
            hz = (await s.scalars(select(Hazard))).one()
            photo = (await s.scalars(select(InspectionPhoto))).one()
        assert (hz.category, hz.clauses, hz.source) == ("blocked_exit", ["mps61_21"], "inspection")
        assert photo.inspection_id is not None and photo.item_id == "exits_clear"
        assert (round(photo.lat or 0, 4), round(photo.lon or 0, 4)) == (24.8201, 108.2502)

        # the hazard's page shows the clause the item checked and links the record
        await hazard_link.click()
        await expect(page.locator("#d-clauses")).to_contain_text("第二十一条")
        await expect(page.locator("#d-inspection")).to_have_count(1)
    finally:
        await ctx.close()
    assert not errors, f"uncaught JavaScript errors: {errors}"
