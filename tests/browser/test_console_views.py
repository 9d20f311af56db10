"""What the command room, the unit's phone and the assessor see at the decisive moments, in real Chromium:
the unit page claims only what happened, urgency order, read-only closed incidents, history search, the idle
overview map (offline: no request leaves 127.0.0.1), login's `next`, zeros and nulls, English titles."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, Page, expect

from config.cameras import CameraConfig
from console.appkeys import INCIDENTS
from dispatch.actor import Actor
from dispatch.incidents import Incidents
from ingest.contract import AlarmIn
from tests.browser.pages import PASSWORDS, Pages, hold_requests
from tests.support import Api, Broker, RunningApp, base_config, publish, running_app

Shot = Callable[[Page, str], Awaitable[None]]
OFFICER = Actor("officer", "duty_officer")
PHONE = {"width": 390, "height": 844}


async def api_as(app: RunningApp, name: str) -> Api:
    api = Api(app.url)
    await api.login(name, PASSWORDS[name])
    return api


def watch_requests(page: Page, base: str) -> list[str]:
    """Every request and WebSocket the page opens that does not go to the app on 127.0.0.1."""
    ws_base = base.replace("http", "ws", 1)
    off: list[str] = []

    def check(url: str) -> None:
        if not url.startswith((base + "/", ws_base + "/", "data:", "blob:")):
            off.append(url)

    page.context.on("request", lambda req: check(req.url))
    page.on("websocket", lambda ws: check(ws.url))
    return off


async def login_on(page: Page, base: str, username: str) -> None:
    await page.goto(base + "/login.html")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORDS[username])
    await page.click("#login-submit")
    await page.wait_for_function("() => !location.pathname.startsWith('/login')")


# --------------------------------------------------------------- unit page


async def test_unit_page_after_ack_and_close_without_dispatch_claims_nothing_and_keeps_the_button(
        pages: Pages, app: RunningApp, shot: Shot) -> None:
    page = await pages.login("school", mobile=True)
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    officer = await api_as(app, "officer")
    try:
        created = await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
        inc = created["incident_id"]
        await expect(page.locator("#status-line")).to_have_text("报警已发送，等待民警签收")
        await officer.post(f"/api/incidents/{inc}/ack")
        for text in ("立即切断电源", "组织人员从东侧楼梯疏散", "检查三楼是否有被困人员", "消防车已在路上？请回复"):
            await officer.post(f"/api/incidents/{inc}/messages", {"text": text})
        await expect(page.locator("#instr-list .instr[data-role=duty_officer]")).to_have_count(4)
        await officer.post(f"/api/incidents/{inc}/close", {"outcome": "false_alarm", "note": "电工检修误触"})

        await expect(page.locator("#status-line")).to_have_text("警情已办结 · 按误报处理")
        steps = page.locator("#unit-steps li")
        await expect(steps).to_have_count(3)  # alarm raised, acknowledged, closed — nothing else happened
        assert await steps.evaluate_all("els => els.map(e => e.dataset.step)") == ["new", "acknowledged", "closed"]
        for step in ("new", "acknowledged", "closed"):
            li = page.locator(f"#unit-steps [data-step={step}]")
            await expect(li).to_have_class(re.compile(r"\bdone\b"))
            await expect(li.locator(".when")).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))  # each with its time
        status = await page.locator("#unit-status").inner_text()
        for claim in ("119", "120", "已通知", "到场"):
            assert claim not in status, (claim, status)
        await expect(page.locator("#alarm-hint")).to_have_text("按住 1 秒报警")  # not "民警正在处理"
        await expect(page.locator("#reply-form")).to_be_hidden()

        button = page.locator("#alarm-btn")
        await expect(button).to_be_visible()
        box = await button.bounding_box()
        assert box is not None
        assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], box
        assert 0 <= box["y"] and box["y"] + box["height"] <= PHONE["height"], box  # on screen, not pushed off
        hint = await page.locator("#alarm-hint").bounding_box()
        assert hint is not None and hint["y"] + hint["height"] <= PHONE["height"], hint
        await shot(page, "unit-after-close")

        # When help really was sent and arrived, the page says so — per agency, each with its time.
        second = (await officer.post("/api/units/school-1/alarm", {"kind": "smoke"}))["incident_id"]
        assert second != inc
        await officer.post(f"/api/incidents/{second}/dispatch", {"agencies": ["fire"]})
        brigade = await api_as(app, "brigade")
        fire = next(d for d in await brigade.get("/api/dispatches") if d["incident_id"] == second)
        await brigade.post(f"/api/dispatches/{fire['id']}/on_scene")
        await brigade.close()
        notified = page.locator("#unit-steps [data-step=dispatched][data-agency=fire]")
        await expect(notified).to_have_text(re.compile(r"已通知 消防 119\s*\d\d:\d\d:\d\d"))
        arrived = page.locator("#unit-steps [data-step=on_scene]")
        await expect(arrived).to_have_text(re.compile(r"消防 119 已到场\s*\d\d:\d\d:\d\d"))
        await expect(page.locator("#unit-steps [data-agency=medical]")).to_have_count(0)  # 120 was never called
        await expect(page.locator("#alarm-hint")).to_have_text("情况变化时，按住 1 秒再次报警")
    finally:
        await officer.close()


# ------------------------------------------------------------ on a phone

# Where an element lies and how it is laid out: its box, and its line height (one line of text or more).
BOX = """(e) => { const r = e.getBoundingClientRect(); const lh = parseFloat(getComputedStyle(e).lineHeight);
  return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height, lh }; }"""


async def test_console_on_a_phone_reads_the_queue_and_the_open_incident(pages: Pages, app: RunningApp,
                                                                       shot: Shot) -> None:
    """A station leader checks the console on a phone (390 px): the alarm queue and the open incident are each
    the screen's width, one above the other — beside the queue, the incident's column was squeezed to one
    character a line."""
    officer = await api_as(app, "officer")
    try:
        await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
    finally:
        await officer.close()
    page = await pages.login("officer", mobile=True)
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    await shot(page, "console-phone-incident")
    width = await page.evaluate("() => document.documentElement.clientWidth")
    assert width == PHONE["width"]
    height = await page.evaluate("() => window.innerHeight")

    card = page.locator("#queue .queue-item").first
    await expect(card).to_contain_text("第一小学")
    await expect(card).to_be_in_viewport()
    for what in ("#queue .queue-item", ".d-head", "#d-where", "#d-actions", "#d-info"):
        part = page.locator(what).first
        box = await part.evaluate(BOX)
        assert box["width"] >= 300, f"{what} squeezed: {box}"
        await part.scroll_into_view_if_needed()
        await expect(part).to_be_visible()
        box = await part.evaluate(BOX)
        assert box["left"] >= 0 and box["right"] <= width + 0.5, f"{what} off the screen: {box}"
        assert box["top"] >= 0 and box["top"] < height, f"{what} cannot be brought on the screen: {box}"
    unit = await page.locator("#d-unit").evaluate(BOX)  # the unit's name reads on one line
    assert unit["height"] < 1.5 * unit["lh"] and unit["right"] <= width, unit
    await shot(page, "console-phone-incident-detail")  # (scrolled to the unit's particulars)


# ------------------------------------------------------------ queue order


async def test_an_older_escalated_alarm_stays_above_a_newer_one(
        browser: Browser, app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]], broker: Broker) -> None:
    async with app_factory(escalation={"ack_timeout_s": 1.5, "merge_window_s": 300}) as app:
        pages = Pages(browser, app.url)
        try:
            page = await pages.login("officer")
            await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
            prefix = app.cfg.mqtt.topic_prefix
            await publish(broker, f"{prefix}/units/hotel-1/alarm", {"alarm_id": f"q-{uuid.uuid4().hex}",
                                                                    "kind": "smoke"})
            queue = page.locator("#queue .queue-item")
            await expect(queue.nth(0)).to_have_class(re.compile(r"\bescalated\b"))  # nobody took it in time
            await publish(broker, f"{prefix}/units/school-1/alarm", {"alarm_id": f"q-{uuid.uuid4().hex}",
                                                                     "kind": "one_key"})
            await expect(queue).to_have_count(2)
            await expect(queue.nth(0)).to_contain_text("环江宾馆")  # older and escalated: on top
            await expect(queue.nth(1)).to_contain_text("第一小学")
            officer = await api_as(app, "officer")
            order = [i["unit_id"] for i in await officer.get("/api/incidents")]
            await officer.close()
            assert order == ["hotel-1", "school-1"]  # the API gives the same order
            await page.reload()
            await expect(queue).to_have_count(2)
            await expect(queue.nth(0)).to_contain_text("环江宾馆")
        finally:
            await pages.close()
        assert not pages.errors, pages.errors


# -------------------------------------------- closed is read-only; history


T_HIST = datetime(2026, 12, 30, 12, 0, tzinfo=UTC)  # midday UTC: the same calendar day in any browser zone


class Clock:
    def __init__(self) -> None:
        self.now = T_HIST

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def clocked_app(sqlite_url: str) -> AsyncIterator[tuple[RunningApp, Clock]]:
    clock = Clock()
    async with running_app(base_config(sqlite_url, None), mqtt=False, clock=clock) as app:
        yield app, clock


async def closed_incident(app: RunningApp, clock: Clock, unit: str, kind: str, at: datetime, outcome: str,
                          note: str = "") -> int:
    service: Incidents = app.app[INCIDENTS]
    clock.now = at  # (the escalator follows this clock: the alarm is not overdue when it arrives)
    await service.intake.ingest([AlarmIn(f"c-{uuid.uuid4().hex}", unit, kind, "mqtt", at)])
    inc = service.core.open_by_unit[unit].incident_id
    clock.now = at + timedelta(seconds=12)
    await service.commands.acknowledge(inc, OFFICER)
    clock.now = at + timedelta(minutes=3, seconds=5)
    await service.commands.close(inc, outcome, note, OFFICER)
    return inc


async def test_closed_incident_is_read_only_and_history_is_searchable(
        browser: Browser, clocked_app: tuple[RunningApp, Clock], shot: Shot) -> None:
    app, clock = clocked_app
    day1, day2 = T_HIST - timedelta(days=1), T_HIST
    a = await closed_incident(app, clock, "school-1", "one_key", day1, "false_alarm", "学生误按")
    b = await closed_incident(app, clock, "hotel-1", "smoke", day1 + timedelta(hours=1), "resolved", "厨房起火已扑灭")
    c = await closed_incident(app, clock, "school-1", "smoke", day2, "resolved", "配电箱冒烟，已断电")
    pages = Pages(browser, app.url)
    try:
        page = await pages.new()
        off_host = watch_requests(page, app.url)
        await login_on(page, app.url, "officer")
        await expect(page.locator("#overview")).to_be_visible()  # nothing open: the idle overview

        await page.click("#nav-history")
        rows = page.locator("#hist-rows tr")
        await expect(rows).to_have_count(3)
        assert await rows.evaluate_all("rs => rs.map(r => Number(r.dataset.id))") == [c, b, a]  # newest first
        await page.select_option("#hist-unit", "school-1")
        await page.click("#hist-go")
        await expect(rows).to_have_count(2)
        await page.select_option("#hist-outcome", "false_alarm")
        await page.click("#hist-go")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-id", str(a))
        await page.click("#hist-reset")
        await expect(rows).to_have_count(3)
        await page.select_option("#hist-kind", "smoke")
        await page.fill("#hist-since", "2026-12-30")
        await page.fill("#hist-until", "2026-12-30")
        await page.click("#hist-go")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-id", str(c))
        await expect(rows.first).to_contain_text("03:05")  # duration mm:ss
        assert "#history?" in page.url and "kind=smoke" in page.url  # the search is a link
        await shot(page, "console-history")

        # A closed incident opens read-only: no action bar, no message box, keys do nothing.
        await rows.first.click()
        await expect(page.locator("#d-unit")).to_have_text("第一小学")
        await expect(page.locator("#d-closed")).to_contain_text("配电箱冒烟，已断电")
        await expect(page.locator("#d-readonly")).to_be_visible()
        assert await page.locator("#d-actions, [data-action], #msg-form, #msg-input, .quick-row").count() == 0
        await expect(page.locator("#d-timer")).to_have_text("03:05")  # mm:ss, as while it ran
        await expect(page.locator("[data-time=alarm_to_ack_s]")).to_have_text("12 s")  # to the second
        await page.keyboard.press("r")
        await expect(page.locator("#close-dialog")).to_be_hidden()

        # 历史警情: the school's incidents before this one (one), a link to the school's history.
        link = page.locator("#d-history-link")
        await expect(link).to_contain_text("1")
        await link.click()
        await expect(page.locator("#history-view")).to_be_visible()
        await expect(page.locator("#hist-unit")).to_have_value("school-1")
        await expect(rows).to_have_count(2)
        assert not off_host, off_host
    finally:
        await pages.close()
    assert not pages.errors, pages.errors


async def test_history_chosen_while_the_linked_incidents_load_is_not_undone(
        browser: Browser, clocked_app: tuple[RunningApp, Clock]) -> None:
    """The first click after a load is never lost: the console opened on an incident's link (an alert's 查看), the
    officer asks for the history while the incidents are still loading (held here) and stays there once they are
    in — the link's incident does not take the column back."""
    app, clock = clocked_app
    inc = await closed_incident(app, clock, "school-1", "smoke", T_HIST, "resolved", "配电箱冒烟，已断电")
    pages = Pages(browser, app.url)
    try:
        page = await pages.new()
        await login_on(page, app.url, "officer")
        held = await hold_requests(page, re.compile(r"/api/incidents\?state=open$"))
        await page.goto("about:blank")  # (from "/", only the hash would change: no load)
        await page.goto(f"{app.url}/#incident/{inc}")
        await held.arrived()
        await page.click("#nav-history")
        held.release()
        # the unit list is in (the history's unit filter offers it): the incidents' load has finished
        await expect(page.locator("#hist-unit option[value=hotel-1]")).to_have_count(1)
        await expect(page.locator("#history-view")).to_be_visible()
        await expect(page.locator("#hist-rows tr")).to_have_count(1)
        await expect(page.locator("#detail-body")).to_be_hidden()
        assert "#history" in page.url
    finally:
        await pages.close()
    assert not pages.errors, pages.errors


async def test_closing_the_shown_incident_makes_it_read_only(pages: Pages, app: RunningApp) -> None:
    page = await pages.login("officer")
    officer = await api_as(app, "officer")
    try:
        await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
        await expect(page.locator("#d-unit")).to_have_text("第一小学")
        await expect(page.locator("#msg-form")).to_be_visible()
        await page.locator("#d-unit").click()  # (the first click only enables sound here; see the alerting work)
        await page.keyboard.press("f")
        await page.fill("#close-note", "测试")
        await page.click("#close-confirm")
        await expect(page.locator("#d-closed")).to_be_visible()
        await expect(page.locator("#d-actions")).to_have_count(0)
        await expect(page.locator("#msg-form")).to_have_count(0)
        await expect(page.locator("#d-timer")).to_have_text(re.compile(r"^\d\d:\d\d$"))
        # The next alarm takes the screen from the closed one, with its actions.
        await officer.post("/api/units/hotel-1/alarm", {"kind": "gas"})
        await expect(page.locator("#d-unit")).to_have_text("环江宾馆")
        await expect(page.locator("#d-actions [data-action=ack]")).to_be_enabled()
        await expect(page.locator("#msg-form")).to_be_visible()
    finally:
        await officer.close()


# ------------------------------------------------------------ idle overview


def coords_for_all(db_url: str) -> dict[str, Any]:
    units = [u.model_dump() for u in base_config(db_url, None).units]
    for u in units:
        if u["id"] == "hotel-1":
            u.update(lat=24.8251, lon=108.2610)
    return {"units": units}


async def test_idle_overview_shows_units_devices_cameras_and_a_map_without_leaving_the_machine(
        browser: Browser, app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]], broker: Broker,
        sqlite_url: str, tmp_path: Path, shot: Shot) -> None:
    gate = CameraConfig(id="cam-gate", unit_id="school-1", name="东门", url="rtsp://127.0.0.1:9/none", enabled=False)
    async with app_factory(**coords_for_all(sqlite_url), cameras=[gate],
                           video={"evidence_dir": str(tmp_path / "evidence")}) as app:
        pages = Pages(browser, app.url)
        try:
            page = await pages.new(width=1920, height=1080)
            off_host = watch_requests(page, app.url)
            await login_on(page, app.url, "officer")
            overview = page.locator("#overview")
            await expect(overview).to_be_visible()
            await expect(page.locator("#ov-state")).to_have_text("当前无未处理警情")
            await expect(page.locator("#ov-map.leaflet-container")).to_be_visible()
            markers = page.locator("#ov-map path.unit-marker")
            await expect(markers).to_have_count(2)
            await expect(page.locator("#ov-map .unit-label")).to_have_count(2)
            await expect(page.locator("#ov-map .map-grid-label").first).to_have_text(re.compile(r"^\d+(\.\d+)?°[NE]$"))
            school = page.locator("#ov-units tr[data-unit=school-1]")
            # btn-1 has never sent a heartbeat: unknown (grey), not a red 离线
            await expect(school.locator(".dev-chip")).to_have_attribute("data-status", "unknown")
            await expect(school.locator(".dev-chip")).to_contain_text("未知")
            await expect(school.locator(".cam-chip")).to_contain_text("东门")
            await expect(school.locator(".cam-chip")).to_have_attribute("data-status", "disabled")
            await expect(page.locator("#ov-units tr[data-unit=hotel-1] .ov-pos")).to_contain_text("24.8251")
            await expect(page.locator("#devices .dev.bad")).to_have_count(0)
            await shot(page, "idle-overview")

            # The button is pressed (it names itself): the alarm takes the screen, the device shows alive.
            prefix = app.cfg.mqtt.topic_prefix
            await publish(broker, f"{prefix}/units/school-1/alarm",
                          {"alarm_id": f"o-{uuid.uuid4().hex}", "kind": "one_key", "device_id": "btn-1"})
            await expect(page.locator("#d-unit")).to_have_text("第一小学")
            await expect(overview).to_be_hidden()
            await expect(page.locator("#devices .dev.ok")).to_contain_text("1")
            await expect(page.locator("#devices .dev.bad")).to_have_count(0)

            await page.click("#nav-overview")  # the officer looks at the map with the incident on it
            await expect(overview).to_be_visible()
            await expect(page.locator("#ov-map path.unit-marker.state-incident")).to_have_count(1)
            await expect(page.locator("#ov-state")).to_have_text("1 起警情正在处理")
            await expect(school.locator(".dev-chip")).to_have_attribute("data-status", "online")
            await shot(page, "overview-incident")
            await school.locator(".ov-inc").click()
            await expect(page.locator("#d-unit")).to_have_text("第一小学")
            assert not off_host, off_host  # no tile server, no CDN: nothing leaves 127.0.0.1
        finally:
            await pages.close()
        assert not pages.errors, pages.errors


async def test_agency_card_shows_the_unit_on_an_offline_map(pages: Pages, app: RunningApp, shot: Shot) -> None:
    page = await pages.new()
    off_host = watch_requests(page, app.url)
    await login_on(page, app.url, "brigade")
    officer = await api_as(app, "officer")
    try:
        school = (await officer.post("/api/units/school-1/alarm", {"kind": "smoke"}))["incident_id"]
        await officer.post(f"/api/incidents/{school}/dispatch", {"agencies": ["fire"]})
        card = page.locator("#dispatches .dcard")
        await expect(card.locator(".dcard-map.leaflet-container")).to_be_visible()
        await expect(card.locator(".dcard-map path.unit-marker")).to_have_count(1)
        await expect(card.locator(".dcard-map .unit-label")).to_have_text("第一小学")
        await expect(card.locator(".coords")).to_have_text("24.82000, 108.25000")
        await shot(page, "agency-map")
        assert not off_host, off_host
    finally:
        await officer.close()


# --------------------------------------------------- login, assessor, English


async def test_login_keeps_next_and_a_first_visit_is_not_an_expiry(pages: Pages, app: RunningApp) -> None:
    page = await pages.new()
    await page.goto(app.url + "/assessor.html")
    await page.wait_for_url(re.compile(r"/login\.html\?"))
    assert "next=%2Fassessor.html" in page.url and "reason" not in page.url
    await expect(page.locator("#login-note")).to_be_hidden()  # nobody was logged in: nothing "expired"
    await page.fill("#username", "assessor")
    await page.fill("#password", PASSWORDS["assessor"])
    await page.click("#login-submit")
    await page.wait_for_url(app.url + "/assessor.html")

    # Only same-origin pages of the role: never another host, never a page the role does not use.
    for nxt in ("//example.com/x", "https://example.com/", "/\\example.com", "/agency.html", "javascript:alert(1)"):
        page = await pages.new()
        await page.goto(app.url + "/login.html?next=" + quote(nxt, safe=""))
        await page.fill("#username", "officer")
        await page.fill("#password", PASSWORDS["officer"])
        await page.click("#login-submit")
        await page.wait_for_function("() => !location.pathname.startsWith('/login')")
        assert page.url.startswith(app.url + "/"), (nxt, page.url)
        assert page.url.split("#")[0] == app.url + "/", (nxt, page.url)


async def test_assessor_tiles_show_zero_case_has_no_null_and_english_switches_titles(
        pages: Pages, app: RunningApp, shot: Shot) -> None:
    officer = await api_as(app, "officer")
    inc = (await officer.post("/api/units/school-1/alarm", {"kind": "one_key"}))["incident_id"]
    await officer.post(f"/api/incidents/{inc}/ack")
    await officer.post(f"/api/incidents/{inc}/close", {"outcome": "false_alarm", "note": ""})
    await officer.close()

    page = await pages.login("assessor", path="/login.html?next=%2Fassessor.html")
    assert page.url.endswith("/assessor.html")
    tiles = page.locator("#now .stat .v")
    await expect(tiles).to_have_count(3)
    assert await tiles.all_inner_texts() == ["0", "0", "0"]  # nothing open: zeros, not blanks
    await expect(page.locator('#headline .stat[data-key="penalty_cases"] .v')).to_have_text("0")
    await expect(page.locator('#headline .stat[data-key="false_alarms"] .v')).to_have_text("1")

    await page.click("#s-go")
    await page.locator("#results tbody tr").first.click()
    case = page.locator("#case")
    await expect(case.locator("#case-timeline li")).not_to_have_count(0)
    text = await case.inner_text()
    assert "null" not in text and "undefined" not in text, text
    await expect(case.locator("#case-times")).to_have_text(re.compile(r"^报警→签收 \d+ s · 签收→联动 — · 报警→联动 —$"))
    # the hazard/assessor timeline is a list, not the console's two-column grid
    layout = await case.locator("#case-timeline").evaluate(
        "ol => [getComputedStyle(ol).display, getComputedStyle(ol.firstElementChild).display]")
    assert layout == ["block", "block"], layout
    await shot(page, "assessor-case")

    assert await page.title() == "Firelink · 一键考评"
    await expect(page.locator("#who")).to_contain_text("考评人员")
    await page.click("#lang")
    await expect(page.locator("#who")).to_contain_text("Assessor")
    assert await page.title() == "Firelink · One-key evaluation"
