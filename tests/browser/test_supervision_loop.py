"""The supervision loop of the field, end to end in real Chromium (issue 14's "done when").

One brigade (b1) with two stations: 城北 (s1: the school) and 思恩 (s2: the market).
1. s1's officer, logged in on a phone, scans the school's QR code: `/q/school-1` opens the school's inspection;
   the school type's checklist is walked with one failure (the escape route blocked) and a photo, signed and
   submitted: the failure is a hazard with its clause, the 消防监督检查记录 PDF renders.
2. A member of the public scans the market's QR code: the same `/q/...` opens the complaint form; the report is
   filed with a photo and gets a receipt; s2's officer triages it into a hazard from the live queue.
3. The brigade reviewer sees both hazards and the filed inspection record; the city supervisor's evaluation page
   ranks the two stations and shows both hazards on the heat map.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import watched_pages
from tests.browser.pages import Pages
from tests.support import RunningApp

PHOTO = Path(__file__).resolve().parents[1] / "inspections" / "data" / "blocked-exit.jpg"
HERE = {"latitude": 24.8201, "longitude": 108.2502}
ORGS = [
    {"id": "city", "name": "河池市公安局", "level": "city"},
    {"id": "b1", "name": "环江县公安局", "level": "brigade", "parent": "city"},
    {"id": "s1", "name": "城北派出所", "level": "station", "parent": "b1"},
    {"id": "s2", "name": "思恩派出所", "level": "station", "parent": "b1"},
]
UNITS = [
    {"id": "school-1", "name": "城北第一小学", "category": "学校", "address": "城北路18号", "lat": 24.8286,
     "lon": 108.2582, "station": "s1"},
    {"id": "market-2", "name": "思恩农贸市场", "category": "商场/市场", "address": "东兴街3号", "lat": 24.8302,
     "lon": 108.2663, "station": "s2"},
]
USERS = [{"username": n, "password": f"{n}-pw", "role": r, "org": o} for n, r, o in (
    ("s1-officer", "duty_officer", "s1"), ("s2-officer", "duty_officer", "s2"),
    ("b1-reviewer", "brigade_reviewer", "b1"), ("city-supervisor", "city_supervisor", "city"))]


@pytest.fixture
async def city(app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]]) -> AsyncIterator[RunningApp]:
    async with app_factory(organisations=ORGS, station={"id": "s1", "name": "城北派出所"}, units=UNITS,
                           users=USERS, cameras=[]) as app:
        yield app


@pytest.fixture
async def city_pages(browser: Browser, city: RunningApp) -> AsyncIterator[Pages]:
    async for p in watched_pages(browser, city):
        yield p


async def phone(pages: Pages, browser: Browser) -> Page:
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                    has_touch=True, locale="zh-CN", geolocation=HERE, permissions=["geolocation"])
    pages.contexts.append(ctx)
    page = await ctx.new_page()
    page.on("pageerror", lambda exc: pages.errors.append(f"{page.url}: {exc}"))
    return page


async def login(page: Page, base: str, name: str) -> None:
    await page.goto(base + "/login.html")
    await page.fill("#username", name)
    await page.fill("#password", f"{name}-pw")
    await page.click("#login-submit")
    await page.wait_for_function("() => !location.pathname.startsWith('/login')")


async def test_qr_inspection_and_public_report_reach_the_brigade_and_the_city(
        city: RunningApp, city_pages: Pages, browser: Browser) -> None:
    base = city_pages.base
    # 1. the officer's phone scans the school's QR code and inspects
    officer = await phone(city_pages, browser)
    await login(officer, base, "s1-officer")
    await officer.goto(base + "/q/school-1")
    await officer.wait_for_url("**/inspect.html?unit=school-1")
    await expect(officer.locator("#unit-name")).to_have_text("城北第一小学")
    items = officer.locator(".item")
    await expect(items.first).to_be_visible()
    for i in range(await items.count()):
        card = items.nth(i)
        if await card.get_attribute("data-item") == "exits_clear":
            await card.locator('.res[data-result="fail"]').click()
            await card.locator(".item-note").fill("东侧安全出口被纸箱堵塞")
            await card.locator(".item-photo").set_input_files(str(PHOTO))
            await expect(card.locator(".thumb")).to_have_count(1)
        else:
            await card.locator('.res[data-result="pass"]').click()
    await officer.fill("#signer", "韦保安")
    box = await officer.locator("#sig").bounding_box()
    assert box is not None
    await officer.mouse.move(box["x"] + 30, box["y"] + 120)
    await officer.mouse.down()
    for x, y in ((90, 50), (160, 130), (230, 60)):
        await officer.mouse.move(box["x"] + x, box["y"] + y, steps=3)
    await officer.mouse.up()
    await officer.click("#submit")
    await expect(officer.locator("#sync-state")).to_have_attribute("data-state", "submitted", timeout=20_000)
    await expect(officer.locator("#result-hazards a")).to_have_count(1)
    await expect(officer.locator("#result-hazards")).to_contain_text("第二十一条")  # the clause, filled in
    pdf = await officer.context.request.get(base + (await officer.locator("#result-pdf").get_attribute("href") or ""))
    assert pdf.status == 200 and (await pdf.body()).startswith(b"%PDF")

    # 2. a member of the public scans the market's QR code and reports; the market's station triages it
    triage = await city_pages.new()
    await login(triage, base, "s2-officer")
    await triage.goto(base + "/triage.html")
    await expect(triage.locator("#ws-state")).to_have_attribute("data-online", "1")
    public = await phone(city_pages, browser)
    await public.goto(base + "/q/market-2")
    await public.wait_for_url("**/report.html?unit=market-2**")
    await expect(public.locator("#unit-name")).to_have_text("思恩农贸市场")
    await public.fill("#description", "市场东门消防通道被摊位堵住")
    await public.set_input_files("#photo", str(PHOTO))
    await public.click("#submit")
    await expect(public.locator("#done")).to_be_visible()
    receipt = (await public.locator("#receipt").text_content() or "").strip()
    assert len(receipt.replace("-", "")) == 10
    item = triage.locator(".tr-item")
    await expect(item).to_have_count(1)  # pushed live to the market's station
    await item.click()
    await triage.select_option("#tr-category", "blocked_exit")
    await triage.click("#tr-accept")
    await expect(triage.locator("#tr-hazard-link")).to_be_visible()

    # 3. the brigade reviewer sees both hazards and the filed inspection record
    reviewer = await city_pages.new()
    await login(reviewer, base, "b1-reviewer")
    await reviewer.goto(base + "/hazards.html")
    for name in ("城北第一小学", "思恩农贸市场"):
        await expect(reviewer.locator("body")).to_contain_text(name)
    await reviewer.goto(base + "/assessor.html")
    await expect(reviewer.locator("#review-list")).to_contain_text("消防监督检查记录")
    # the city supervisor: two stations ranked, both hazards on the heat map
    supervisor = await city_pages.new()
    await login(supervisor, base, "city-supervisor")
    await supervisor.goto(base + "/assessor.html")
    await expect(supervisor.locator("#station-ranking tbody tr")).to_have_count(2)
    await expect(supervisor.locator("#heat-map .unit-marker")).to_have_count(2)
    await expect(supervisor.locator("#heat-map canvas.leaflet-heatmap-layer")).to_have_count(1)
    await expect(supervisor.locator("#heat-orgs")).to_contain_text("河池市公安局")
