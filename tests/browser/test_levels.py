"""Three levels in the browser: the city supervisor's evaluation page ranks the stations and draws the hazards on
the heat map; the brigade reviewer returns a filed notice with a reason, and it leaves the pending queue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import watched_pages
from tests.browser.pages import Pages
from tests.support import Api, RunningApp

ORGS = [
    {"id": "city", "name": "市公安局", "level": "city"},
    {"id": "b1", "name": "一大队", "level": "brigade", "parent": "city"},
    {"id": "s1", "name": "城北派出所", "level": "station", "parent": "b1"},
    {"id": "s2", "name": "思恩派出所", "level": "station", "parent": "b1"},
]
USERS = [{"username": n, "password": f"{n}-pw", "role": r, "org": o} for n, r, o in (
    ("city-admin", "admin", "city"), ("city-supervisor", "city_supervisor", "city"),
    ("b1-reviewer", "brigade_reviewer", "b1"))]
UNITS = [{"id": f"u{i}", "name": f"第{i}小学", "category": "学校", "address": f"城北路{i}号",
          "lat": 24.82 + i / 200, "lon": 108.25 + i / 200, "station": st} for i, st in ((1, "s1"), (2, "s2"))]


@pytest.fixture
async def city(app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]]) -> AsyncIterator[RunningApp]:
    async with app_factory(organisations=ORGS, station={"id": "s1", "name": "城北派出所"}, units=UNITS,
                           users=USERS) as app:
        admin = Api(app.url)
        await admin.login("city-admin", "city-admin-pw")
        category = (await admin.get("/api/hazards/config"))["categories"][0]["key"]
        for unit in UNITS:
            _, hazard = await admin.request("POST", "/api/hazards", {"unit_id": unit["id"], "category": category})
            await admin.post(f"/api/hazards/{hazard['id']}/notice", {"days": 7})
        await admin.close()
        yield app


@pytest.fixture
async def city_pages(browser: Browser, city: RunningApp) -> AsyncIterator[Pages]:
    async for p in watched_pages(browser, city):
        yield p


async def test_city_supervisor_sees_stations_ranked_and_the_heat_map(city_pages: Pages) -> None:
    page = await city_pages.login("city-supervisor")
    await page.goto(city_pages.base + "/assessor.html")
    ranking = page.locator("#station-ranking tbody tr")
    await expect(ranking).to_have_count(2)
    await expect(page.locator("#station-ranking")).to_contain_text("城北派出所")
    await expect(page.locator("#station-ranking")).to_contain_text("思恩派出所")
    await expect(page.locator("#brigade-ranking")).to_contain_text("一大队")
    await expect(page.locator("#heat-map .unit-marker")).to_have_count(2)  # both hazards' units, from the registry
    await expect(page.locator("#heat-map canvas.leaflet-heatmap-layer")).to_have_count(1)
    await expect(page.locator("#heat-orgs")).to_contain_text("市公安局")
    assert await page.locator("#review-section").is_visible()  # a city supervisor may review too


async def test_brigade_reviewer_returns_a_notice_with_a_reason(city_pages: Pages) -> None:
    page = await city_pages.login("b1-reviewer")
    await page.goto(city_pages.base + "/assessor.html")
    rows = page.locator("#review-list .review-row")
    await expect(rows).to_have_count(2)
    first = rows.first
    await first.locator(".review-return").click()  # no reason: refused, still pending
    await expect(page.locator("#toast")).to_contain_text("note")
    await expect(rows).to_have_count(2)
    await first.locator(".review-note").fill("整改期限过长")
    await first.locator(".review-return").click()
    await expect(rows).to_have_count(1)
    await page.locator("#review-pending").uncheck()
    await expect(page.locator("#review-list")).to_contain_text("整改期限过长")
