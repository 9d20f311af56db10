"""The zone editor in Chromium: an officer draws an exit zone by clicking on the camera's snapshot, saves it, captures
its clear reference after confirming, and finds it again after a reload; Esc cancels a drawing; in the other mode
(屏蔽区域) the officer draws and saves a detection mask; the assessor only looks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.pages import Pages
from tests.support import Api, RunningApp
from tests.test_exit_zones import demo_clip

CAM = "cam-exit"
CLICKS = [(0.2, 0.3), (0.6, 0.3), (0.6, 0.75), (0.2, 0.75)]
MASK_CLICKS = [(0.65, 0.55), (0.9, 0.55), (0.9, 0.9)]


@pytest.fixture
async def app(app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]],
              tmp_path: Path) -> AsyncIterator[RunningApp]:
    cams = [{"id": CAM, "unit_id": "hotel-1", "name": "安全出口", "location": "北门", "url": demo_clip(tmp_path),
             "loop": True}]
    async with app_factory(cameras=cams, video={"evidence_dir": str(tmp_path / "evidence")}) as running:
        yield running


async def open_editor(page: Page, base: str) -> None:
    await page.goto(f"{base}/video.html#cam/{CAM}")
    await expect(page.locator("#focus")).to_be_visible()
    await page.click("#zones-open")
    await expect(page.locator("#zones")).to_be_visible()
    await expect(page.locator("#zone-stage")).to_have_attribute("data-ready", "1", timeout=20_000)


async def click_at(page: Page, fx: float, fy: float) -> None:
    box = await page.locator("#zone-stage").bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


async def test_officer_draws_saves_and_captures_an_exit_zone(pages: Pages, app: RunningApp,
                                                            shot: Callable[[Page, str], Awaitable[None]]) -> None:
    page = await pages.login("officer")
    await open_editor(page, app.url)
    await expect(page.locator("#focus-img")).to_be_hidden()  # the live view gives way to the snapshot
    await expect(page.locator("#zone-list")).to_contain_text("尚未划定安全出口区域")

    for fx, fy in CLICKS:
        await click_at(page, fx, fy)
    await expect(page.locator("#zone-svg .zone-point")).to_have_count(4)
    await expect(page.locator("#zone-hint")).to_contain_text("已点 4 个点")
    await shot(page, "zones-drawing")
    await page.keyboard.press("Enter")
    assert await page.eval_on_selector("#zone-draft", "el => el.tagName") == "polygon"
    await page.fill("#zone-name", "北侧安全出口")
    await page.fill("#zone-dwell", "2")
    await page.fill("#zone-fraction", "30")
    await page.click("#zone-save")

    item = page.locator("#zone-list [data-zone-id=exit-1]")
    await expect(item).to_contain_text("北侧安全出口")
    await expect(item).to_contain_text("持续 2 分钟")
    await expect(page.locator("#zone-svg polygon[data-zone-id=exit-1]")).to_have_count(1)
    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    zone = (await officer.get(f"/api/cameras/{CAM}/exit-zones"))["zones"][0]
    assert (zone["id"], zone["name"], zone["dwell_s"], zone["min_fraction"]) == ("exit-1", "北侧安全出口", 120, 0.3)
    for (x, y), (fx, fy) in zip(zone["polygon"], CLICKS, strict=True):
        assert abs(x - fx) < 0.01 and abs(y - fy) < 0.01

    await item.locator(".zone-capture").click()
    await expect(item.locator(".zone-confirm")).to_contain_text("畅通")
    await shot(page, "zones-confirm-clear")
    await item.locator(".zone-yes-capture").click()
    await expect(item.locator(".zone-ref")).to_have_attribute("data-has", "1")
    zone = (await officer.get(f"/api/cameras/{CAM}/exit-zones"))["zones"][0]
    assert zone["reference"]["captured_by"] == "officer"
    await officer.close()

    # Esc cancels a drawing; a second Esc leaves the editor for the live view.
    await click_at(page, 0.7, 0.2)
    await click_at(page, 0.9, 0.2)
    await expect(page.locator("#zone-svg .zone-point")).to_have_count(2)
    await page.keyboard.press("Escape")
    await expect(page.locator("#zone-svg .zone-point")).to_have_count(0)
    await page.keyboard.press("Escape")
    await expect(page.locator("#zones")).to_be_hidden()
    await expect(page.locator("#focus-img")).to_be_visible()

    await page.goto("about:blank")  # a fresh page load: the zone is stored, not just drawn
    await open_editor(page, app.url)
    await expect(page.locator("#zone-list [data-zone-id=exit-1]")).to_contain_text("北侧安全出口")
    await expect(page.locator("#zone-list [data-zone-id=exit-1] .zone-ref")).to_have_attribute("data-has", "1")

    # Detection masks (屏蔽区域): the same drawing, no exit settings, no reference; hatched grey, exits dimmed.
    await page.click("#zone-mode-mask")
    await expect(page.locator("#zone-list")).to_contain_text("尚未划定屏蔽区域")
    await expect(page.locator("#zone-exit-fields")).to_be_hidden()
    for fx, fy in MASK_CLICKS:
        await click_at(page, fx, fy)
    await page.keyboard.press("Enter")
    await page.fill("#zone-name", "厨房灶台")
    await page.click("#zone-save")
    item = page.locator("#zone-list [data-zone-id=mask-1]")
    await expect(item).to_contain_text("厨房灶台")
    await expect(item.locator(".zone-capture")).to_have_count(0)
    await expect(page.locator("#zone-svg polygon[data-mask-id=mask-1]")).to_have_attribute("fill", "url(#zone-hatch)")
    await expect(page.locator("#zone-svg .zone-other polygon[data-zone-id=exit-1]")).to_have_count(1)
    await shot(page, "zones-mask")
    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    mask = (await officer.get(f"/api/cameras/{CAM}/masks"))["masks"][0]
    assert (mask["id"], mask["name"]) == ("mask-1", "厨房灶台")
    for (x, y), (fx, fy) in zip(mask["polygon"], MASK_CLICKS, strict=True):
        assert abs(x - fx) < 0.01 and abs(y - fy) < 0.01
    assert [z["id"] for z in (await officer.get(f"/api/cameras/{CAM}/exit-zones"))["zones"]] == ["exit-1"]
    await officer.close()
    await page.click("#zone-mode-exit")
    await expect(page.locator("#zone-list [data-zone-id=exit-1]")).to_be_visible()
    await expect(page.locator("#zone-exit-fields")).to_be_visible()

    assessor = await pages.login("assessor")
    await open_editor(assessor, app.url)
    await expect(assessor.locator("#zone-list [data-zone-id=exit-1]")).to_contain_text("北侧安全出口")
    await expect(assessor.locator("#zone-form")).to_be_hidden()
    await expect(assessor.locator("#zone-list button")).to_have_count(0)
    await expect(assessor.locator("#zone-hint")).to_contain_text("只读")
    await assessor.click("#zone-mode-mask")
    await expect(assessor.locator("#zone-list [data-zone-id=mask-1]")).to_contain_text("厨房灶台")
    await expect(assessor.locator("#zone-list button")).to_have_count(0)
    await shot(assessor, "zones-assessor")
