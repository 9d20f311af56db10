"""The key unit's phone page and the agency page in a real browser."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from playwright.async_api import Page, expect

from tests.browser.pages import Pages, hold_requests
from tests.support import Api, RunningApp

Shot = Callable[[Page, str], Awaitable[None]]


async def test_unit_presses_alarm_gets_instruction_live_and_replies(pages: Pages, app: RunningApp, shot: Shot) -> None:
    page = await pages.login("school", mobile=True)
    assert page.url.endswith("/unit.html")
    await expect(page.locator("#unit-name")).to_have_text("第一小学")
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    await shot(page, "unit-idle")

    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    try:
        button = page.locator("#alarm-btn")
        box = await button.bounding_box()
        assert box is not None
        center = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

        # A tap (pocket press) does not raise the alarm; it tells the user to hold.
        await page.mouse.move(*center)
        await page.mouse.down()
        await page.mouse.up()
        await expect(page.locator("#alarm-hint")).to_have_text("请按住不放 1 秒")
        assert await officer.get("/api/incidents") == []

        console = await pages.login("officer")  # the duty officer's console, watching
        await expect(console.locator("#ws-state")).to_have_attribute("data-online", "1")

        # Press and hold: the alarm goes out once the ring completes.
        await page.mouse.down()
        await expect(page.locator("#unit-status")).to_be_visible()
        await page.mouse.up()
        await expect(page.locator("#status-line")).to_have_text("报警已发送，等待民警签收")  # nobody has it yet
        incidents = await officer.get("/api/incidents")
        assert len(incidents) == 1 and incidents[0]["unit_id"] == "school-1" and incidents[0]["kind"] == "one_key"
        inc_id = incidents[0]["id"]

        # The officer acknowledges and instructs; the phone shows both live.
        await officer.post(f"/api/incidents/{inc_id}/ack")
        await expect(page.locator("#unit-steps [data-step=acknowledged]")).to_have_class(re.compile(r"\bdone\b"))
        await expect(page.locator("#status-line")).to_have_text("报警已发送，民警正在处理")
        await officer.post(f"/api/incidents/{inc_id}/messages", {"text": "立即切断电源，检查是否有被困人员"})
        await expect(console.locator("#d-unit")).to_have_text("第一小学")
        instr = page.locator("#instr-list .instr[data-role=duty_officer]").first
        await expect(instr).to_contain_text("立即切断电源，检查是否有被困人员")
        await shot(page, "unit-instructed")

        # Reply by typing, and by a quick-reply chip.
        await page.fill("#reply-input", "已切断电源，正在疏散学生")
        await page.click("#reply-send")
        await expect(page.locator("#instr-list .instr[data-role=unit]")).to_have_count(1)
        await page.click("[data-quick='3']")
        await expect(page.locator("#instr-list .instr[data-role=unit]")).to_have_count(2)
        detail = await officer.get(f"/api/incidents/{inc_id}")
        texts = [(m["sender"], m["text"]) for m in detail["messages"]]
        await expect(console.locator("#d-messages .msg[data-role=unit]")).to_have_count(2)
        await expect(console.locator("#d-messages")).to_contain_text("已切断电源，正在疏散学生")
        await shot(console, "console-replies")
        assert ("school", "已切断电源，正在疏散学生") in texts and ("school", "无人员被困") in texts

        await officer.post(f"/api/incidents/{inc_id}/dispatch", {"agencies": ["fire"]})
        await expect(page.locator("#unit-steps [data-step=dispatched]")).to_have_class(re.compile(r"\bdone\b"))
        await shot(page, "unit-dispatched")
        await officer.post(f"/api/incidents/{inc_id}/close", {"outcome": "resolved", "note": ""})
        await expect(page.locator("#status-line")).to_have_text("警情已办结 · 已处置完毕")
    finally:
        await officer.close()


async def test_an_alarm_held_before_the_page_knows_its_unit_goes_out_all_the_same(
        pages: Pages, app: RunningApp) -> None:
    """The first press after a load is never lost: the alarm button is held while the page still waits for GET
    /api/me (held here); the alarm goes out once the page knows its unit."""
    page = await pages.login("school", mobile=True)
    held = await hold_requests(page, "**/api/me")
    await page.goto("about:blank")
    await page.goto(f"{app.url}/unit.html")
    await held.arrived()
    box = await page.locator("#alarm-btn").bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await expect(page.locator("#alarm-hint")).to_have_attribute("data-state", "sending")  # held long enough
    await page.mouse.up()
    held.release()
    await expect(page.locator("#status-line")).to_have_text("报警已发送，等待民警签收")
    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    try:
        incidents = await officer.get("/api/incidents")
        assert [(i["unit_id"], i["kind"]) for i in incidents] == [("school-1", "one_key")]
    finally:
        await officer.close()


async def test_agency_sees_dispatch_live_accepts_and_reports_on_scene(
        pages: Pages, app: RunningApp, shot: Shot) -> None:
    page = await pages.login("brigade")
    assert page.url.endswith("/agency.html")
    await expect(page.locator("#agency-name")).to_have_text("消防救援大队")
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    await expect(page.locator("#ag-empty")).to_be_visible()

    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    try:
        await officer.post("/api/units/hotel-1/alarm", {"kind": "smoke"})  # not dispatched: not shown
        await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
        incidents = {i["unit_id"]: i for i in await officer.get("/api/incidents")}
        school = incidents["school-1"]
        await officer.post(f"/api/incidents/{school['id']}/dispatch", {"agencies": ["fire", "medical"]})

        card = page.locator("#dispatches .dcard")
        await expect(card).to_have_count(1)  # only its own agency's dispatch
        await expect(card).to_contain_text("第一小学")
        await expect(card).to_contain_text("城北路18号")
        await expect(card).to_contain_text("韦保安")
        await expect(card.locator("a[href^='tel:']")).to_have_text("13800000001")
        await expect(card.locator(".coords")).to_have_text("24.82000, 108.25000")
        await expect(card.locator("a.geo-link")).to_have_attribute("href", re.compile(r"^geo:24\.82000,108\.25000"))
        await expect(card).to_contain_text("一键报警")
        await expect(page.locator("body")).to_have_attribute("data-alert", "normal")
        await shot(page, "agency-new")

        await card.locator("[data-action=accept]").click()
        await expect(card).to_have_attribute("data-status", "acknowledged")
        await expect(page.locator("body")).to_have_attribute("data-alert", "off")
        await card.locator("[data-action=on_scene]").click()
        await expect(card).to_have_attribute("data-status", "on_scene")
        await shot(page, "agency-on-scene")

        detail = await officer.get(f"/api/incidents/{school['id']}")
        fire = next(d for d in detail["dispatches"] if d["agency"] == "fire")
        assert fire["status"] == "on_scene" and fire["acknowledged_by"] == "brigade" and fire["on_scene_at"]
        assert detail["status"] == "on_scene"
        actions = [e["action"] for e in detail["timeline"]]
        assert "dispatch.acknowledged" in actions and "dispatch.on_scene" in actions
        medical = next(d for d in detail["dispatches"] if d["agency"] == "medical")
        assert medical["acknowledged_at"] is None
    finally:
        await officer.close()
