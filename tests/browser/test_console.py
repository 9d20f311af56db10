"""The duty officer's console in a real browser: live alarm, acknowledge, linked dispatch, language, session."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests.browser.pages import Pages
from tests.support import Api, Broker, RunningApp, WebhookReceiver, publish

Shot = Callable[[Page, str], Awaitable[None]]


async def press(broker: Broker, app: RunningApp, unit: str = "school-1", kind: str = "one_key") -> str:
    alarm_id = f"a-{uuid.uuid4().hex}"
    await publish(broker, f"{app.cfg.mqtt.topic_prefix}/units/{unit}/alarm",
                  {"alarm_id": alarm_id, "kind": kind, "device_id": "btn-1" if unit == "school-1" else None})
    return alarm_id


async def test_officer_sees_alarm_live_acknowledges_and_dispatches(
        pages: Pages, app: RunningApp, broker: Broker, receiver: WebhookReceiver, shot: Shot) -> None:
    page = await pages.login("officer")
    assert page.url.rstrip("/") == app.url or page.url.startswith(app.url + "/#")
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    await expect(page.locator("#queue-empty")).to_be_visible()
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")  # kiosk flag: no gesture needed
    await expect(page.locator("#sound-banner")).to_be_hidden()

    await press(broker, app)

    # Appears without reload, auto-selected, with the unit's particulars and a running timer.
    item = page.locator("#queue .queue-item").first
    await expect(item).to_contain_text("第一小学")
    await expect(item).to_contain_text("一键报警")
    await expect(item).to_have_attribute("data-status", "new")
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("#d-address")).to_have_text("城北路18号")
    await expect(page.locator("#d-where")).to_contain_text("韦保安")
    await expect(page.locator("#d-where a[href='tel:13800000001']")).to_have_text("13800000001")
    await expect(page.locator("#d-info")).to_contain_text("学校")
    timer = item.locator(".timer")
    await expect(timer).to_have_text(re.compile(r"^\d\d:\d\d$"))
    first = await timer.inner_text()
    await expect(timer).not_to_have_text(first, timeout=3000)  # it runs
    await expect(page.locator("body")).to_have_attribute("data-alert", "normal")
    await expect(page.locator("#video-panel [data-video-none]")).to_be_visible()
    await expect(page.locator("#d-timeline")).to_contain_text("收到报警")
    await shot(page, "console-new-incident")

    await page.click("[data-action=ack]")
    await expect(page.locator("#d-status")).to_have_text("已签收")
    await expect(page.locator("body")).to_have_attribute("data-alert", "off")
    await expect(page.locator("[data-action=ack]")).to_be_disabled()

    await page.click("[data-action=dispatch_both]")
    await expect(page.locator("#d-status")).to_have_text("已联动")
    for agency in ("fire", "medical"):
        row = page.locator(f"#d-dispatch [data-agency={agency}]")
        await expect(row).to_have_attribute("data-status", "delivered")
        await expect(row.locator("[data-step=sent]")).to_have_class(re.compile(r"\bdone\b"))
        await expect(row.locator("[data-step=delivered]")).to_have_class(re.compile(r"\bdone\b"))
        await expect(row.locator(".dstatus")).to_have_text("已送达")
        # per channel: the webhook's 2xx confirmed it; the MQTT broker only took it (nobody listens here)
        await expect(row.locator("[data-channel=webhook]")).to_have_attribute("data-status", "delivered")
        await expect(row.locator("[data-channel=mqtt] .ch-status")).to_have_text("已发出，未确认")
    await expect(page.locator("[data-time=alarm_to_dispatch_s]")).not_to_have_text("—")
    await expect(page.locator("#d-timeline")).to_contain_text("联动已送达")
    await shot(page, "console-dispatch-channels")

    await receiver.wait_for(2)
    bodies = sorted((r.json for r in receiver.received), key=lambda b: b["agency"])
    assert [b["agency"] for b in bodies] == ["fire", "medical"]
    assert bodies[0]["unit"]["name"] == "第一小学" and all(receiver.signature_ok)

    # The brigade accepts through its API; the console shows it live.
    brigade = Api(app.url)
    await brigade.login("brigade", "brigade-pw")
    fire = next(d for d in (await brigade.get("/api/dispatches")) if d["agency"] == "fire")
    await brigade.post(f"/api/dispatches/{fire['id']}/ack")
    await brigade.close()
    await expect(page.locator("#d-dispatch [data-agency=fire] .dstatus")).to_have_text("已签收")
    await expect(page.locator("#d-dispatch [data-agency=fire] [data-step=acknowledged]")).to_contain_text("brigade")

    await page.click("[data-action=on_scene]")
    await expect(page.locator("#d-status")).to_have_text("已到场")
    await shot(page, "console-dispatched")

    # Resolve with a note (key R opens the dialog).
    await page.keyboard.press("r")
    await expect(page.locator("#close-dialog")).to_be_visible()
    await page.fill("#close-note", "已扑灭，无人员伤亡")
    await page.click("#close-confirm")
    await expect(page.locator("#d-closed")).to_contain_text("已扑灭，无人员伤亡")
    await expect(page.locator("#queue .queue-item")).to_have_count(0)

    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    incidents = await officer.get("/api/incidents?state=closed")
    assert incidents[0]["outcome"] == "resolved" and incidents[0]["close_note"] == "已扑灭，无人员伤亡"
    await officer.close()


async def test_queue_order_keyboard_and_unread_replies(pages: Pages, app: RunningApp, broker: Broker,
                                                      shot: Shot) -> None:
    page = await pages.login("officer", width=1920, height=1080)
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    await press(broker, app, "hotel-1", "smoke")
    await expect(page.locator("#d-unit")).to_have_text("环江宾馆")  # auto-selected: nothing else was
    await expect(page.locator("#d-kind")).to_have_text("烟感报警")
    await page.keyboard.press("a")
    await expect(page.locator("#d-status")).to_have_text("已签收")

    await press(broker, app, "school-1")
    queue = page.locator("#queue .queue-item")
    await expect(queue).to_have_count(2)
    # Unacknowledged first; the officer's selection is not stolen by the new alarm.
    await expect(queue.nth(0)).to_contain_text("第一小学")
    await expect(queue.nth(1)).to_contain_text("环江宾馆")
    await expect(page.locator("#d-unit")).to_have_text("环江宾馆")
    await expect(page.locator("body")).to_have_attribute("data-alert", "normal")

    # The school replies while the hotel is selected: an unread mark on the school's entry.
    school = Api(app.url)
    await school.login("school", "school-pw")
    school_inc = (await school.get("/api/incidents"))[0]
    await school.post(f"/api/incidents/{school_inc['id']}/messages", {"text": "三楼有烟"})
    await school.close()
    await expect(queue.nth(0).locator(".unread-dot")).to_be_visible()
    await shot(page, "console-two-incidents")

    await page.keyboard.press("ArrowUp")
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("#d-messages")).to_contain_text("三楼有烟")
    await expect(queue.nth(0).locator(".unread-dot")).to_have_count(0)
    await page.keyboard.press("d")  # one key: acknowledges and links out 119 + 120
    await expect(page.locator("#d-dispatch [data-agency=fire]")).not_to_have_attribute("data-status", "none")
    await expect(page.locator("#d-dispatch [data-agency=medical]")).not_to_have_attribute("data-status", "none")
    await expect(page.locator("#d-status")).to_have_text("已联动")
    await expect(page.locator("body")).to_have_attribute("data-alert", "off")

    # Linked out, the school drops below the hotel (acknowledged, nobody linked out yet: a decision pending).
    await expect(queue.nth(0)).to_contain_text("环江宾馆")
    await expect(queue.nth(1)).to_contain_text("第一小学")

    # False alarm on the hotel, by key F.
    await page.keyboard.press("ArrowUp")
    await expect(page.locator("#d-unit")).to_have_text("环江宾馆")
    await page.keyboard.press("f")
    await page.fill("#close-note", "厨房油烟误触发")
    await page.keyboard.press("Enter")
    await expect(queue).to_have_count(1)


async def test_english_toggle_switches_labels_and_persists(pages: Pages, app: RunningApp, broker: Broker,
                                                           shot: Shot) -> None:
    page = await pages.login("officer")
    await press(broker, app)
    await expect(page.locator("[data-action=ack]")).to_contain_text("签收")
    await expect(page.locator("#lang")).to_have_text("EN")
    await page.click("#lang")
    await expect(page.locator("#lang")).to_have_text("中")
    await expect(page.locator("[data-action=ack]")).to_contain_text("Acknowledge")
    await expect(page.locator("[data-action=dispatch_both]")).to_contain_text("Dispatch 119+120")
    await expect(page.locator("#queue .kind-badge").first).to_have_text("One-key alarm")
    await expect(page.locator(".col-title")).to_contain_text("Incidents")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#d-timeline")).to_contain_text("Alarm received")
    await shot(page, "console-english")
    await page.reload()
    await expect(page.locator("[data-action=ack]")).to_contain_text("Acknowledge")
    await page.click("#lang")
    await expect(page.locator("[data-action=ack]")).to_contain_text("签收")


async def test_expired_session_redirects_to_login(pages: Pages, app: RunningApp, broker: Broker) -> None:
    page = await pages.login("officer")
    await press(broker, app)
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("#d-timeline")).to_contain_text("生成警情")  # page settled

    # The server forgets the session (as on expiry): use the page's cookie to log it out elsewhere.
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    other = Api(app.url)
    other.http.cookie_jar.update_cookies(cookies)
    me = await other.get("/api/me")
    other.csrf = me["csrf_token"]
    await other.post("/api/logout")
    await other.close()

    await page.keyboard.press("a")  # acknowledge: the API answers 401
    # Logging out also closes the page's live socket, whose reconnect may redirect first: either way
    # the page must end on the login page (expect() tolerates one navigation aborting the other).
    await expect(page).to_have_url(re.compile(r"/login\.html\?"))
    await expect(page.locator("#login-note")).to_be_visible()
    await page.fill("#username", "officer")
    await page.fill("#password", "officer-pw")
    await page.click("#login-submit")
    await page.wait_for_url(re.compile(r"/(#incident/\d+)?$"))
    await expect(page.locator("#d-unit")).to_have_text("第一小学")


async def test_unknown_page_visitor_goes_to_login(pages: Pages, app: RunningApp, shot: Shot) -> None:
    page = await pages.new()
    await page.goto(app.url + "/login.html")
    await page.fill("#username", "officer")
    await page.fill("#password", "wrong")
    await page.click("#login-submit")
    await expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
    await shot(page, "login-error")
    page = await pages.new()
    await page.goto(app.url + "/")
    await page.wait_for_url(re.compile(r"/login\.html"))
    page = await pages.new()
    await page.goto(app.url + "/agency.html")
    await page.wait_for_url(re.compile(r"/login\.html"))


async def test_unacknowledged_alarm_escalates_and_flashes(
        browser: Browser, app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]], broker: Broker,
        shot: Shot) -> None:
    async with app_factory(escalation={"ack_timeout_s": 1.5, "merge_window_s": 300}) as app:
        pages = Pages(browser, app.url)
        try:
            page = await pages.login("officer")
            await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
            await press(broker, app)
            item = page.locator("#queue .queue-item").first
            await expect(item).to_be_visible()
            await expect(page.locator("body")).to_have_attribute("data-alert", "normal")
            # Past the ack timeout the timer turns red, then the core escalates: flashing, louder alert.
            await expect(item.locator(".timer")).to_have_class(re.compile(r"\blate\b"))
            await expect(item).to_have_class(re.compile(r"\bescalated\b"))
            await expect(page.locator("body")).to_have_attribute("data-alert", "escalated")
            await expect(page.locator("#d-esc")).to_be_visible()
            await expect(page.locator("#d-timeline")).to_contain_text("超时升级")
            await shot(page, "console-escalated")
            await page.keyboard.press("a")
            await expect(item).not_to_have_class(re.compile(r"\bescalated\b"))
            await expect(page.locator("body")).to_have_attribute("data-alert", "off")
        finally:
            await pages.close()
        assert not pages.errors, pages.errors


async def test_assessor_sees_incidents_without_action_buttons(pages: Pages, app: RunningApp, broker: Broker) -> None:
    page = await pages.login("assessor")
    assert not page.url.endswith((".html",)) or page.url.endswith("/index.html")
    await press(broker, app)
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("#who")).to_contain_text("只读")
    assert await page.locator("#d-actions, button[data-action]").count() == 0
    assert await page.locator("#msg-form").count() == 0
    await page.keyboard.press("a")  # keys do nothing either
    await expect(page.locator("#d-status")).to_have_text("未签收")


async def test_admin_sees_rejected_input_and_device_faults(
        pages: Pages, app: RunningApp, broker: Broker, shot: Shot) -> None:
    page = await pages.login("admin")
    await expect(page.locator("#rejections")).to_be_visible()
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    prefix = app.cfg.mqtt.topic_prefix
    await publish(broker, f"{prefix}/units/school-1/alarm", b"{not json")
    await expect(page.locator("#rej-list [data-rejection]")).to_have_count(1)
    await expect(page.locator("#rej-total")).to_contain_text("1")
    await publish(broker, f"{prefix}/devices/btn-1/status", {"status": "fault", "detail": "battery low"})
    chip = page.locator("#devices [data-device=btn-1]")
    await expect(chip).to_have_attribute("data-status", "fault")
    await expect(chip).to_contain_text("第一小学")
    await expect(chip).to_have_class(re.compile(r"\bbad\b"))
    await shot(page, "console-admin")
    await publish(broker, f"{prefix}/devices/btn-1/status", {"status": "online"})
    await expect(chip).to_have_count(0)
    await expect(page.locator("#devices .dev.ok")).to_contain_text("1")


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc000000301"
    "0100c9fe92ef0000000049454e44ae426082")


async def test_video_panel_shows_the_units_cameras_and_degrades(pages: Pages, app: RunningApp, broker: Broker) -> None:
    """The camera layer (console/video.py) is stood in for by routing /api/cameras in the browser."""
    page = await pages.new()
    cameras = {"cameras": [
        {"id": "cam-gate", "unit_id": "school-1", "name": "东门", "status": "online"},
        {"id": "cam-broken", "unit_id": "school-1", "name": "操场", "status": "offline"},
        {"id": "cam-hotel", "unit_id": "hotel-1", "name": "大堂", "status": "online"},
    ]}
    await page.route("**/api/cameras", lambda route: route.fulfill(json=cameras))
    await page.route("**/api/cameras/cam-gate/live.mjpeg*",
                     lambda route: route.fulfill(body=PNG_1PX, content_type="image/png"))
    await page.route("**/api/cameras/cam-broken/live.mjpeg*", lambda route: route.fulfill(status=404, body=b""))
    await page.goto(app.url + "/login.html")
    await page.fill("#username", "officer")
    await page.fill("#password", "officer-pw")
    await page.click("#login-submit")
    await page.wait_for_url(re.compile(r"/$"))
    await press(broker, app)
    panel = page.locator("#video-panel")
    await expect(panel.locator("[data-camera-id]")).to_have_count(2)  # only this unit's cameras
    await expect(panel.locator("[data-camera-id=cam-gate] img")).to_have_attribute(
        "src", re.compile(r"^/api/cameras/cam-gate/live\.mjpeg"))
    await expect(panel.locator("[data-camera-id=cam-broken] [data-video-none]")).to_contain_text("视频中断")
    await expect(panel.locator("[data-camera-id=cam-gate]")).to_contain_text("东门")


async def test_video_panel_placeholder_when_video_is_not_running(pages: Pages, app: RunningApp,
                                                                  broker: Broker) -> None:
    page = await pages.login("officer")
    await page.route("**/api/cameras", lambda route: route.fulfill(status=404, json={"error": "not found"}))
    await press(broker, app)
    await expect(page.locator("#video-panel [data-video-none]")).to_contain_text("暂无视频")
    assert page.url.startswith(app.url + "/#incident/")  # a video failure never logs the officer out


async def test_websocket_reconnects_and_refetches(pages: Pages, app: RunningApp) -> None:
    """The live socket drops; an alarm arrives meanwhile; on reconnect the console refetches and shows it."""
    page = await pages.new()
    routes: list[WebSocketRoute] = []
    allow_reconnect = asyncio.Event()

    async def handler(ws: WebSocketRoute) -> None:
        routes.append(ws)
        if len(routes) > 1:
            await allow_reconnect.wait()
        ws.connect_to_server()

    await page.route_web_socket(re.compile(r"/ws$"), handler)
    await page.goto(app.url + "/login.html")
    await page.fill("#username", "officer")
    await page.fill("#password", "officer-pw")
    await page.click("#login-submit")
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")

    await routes[0].close()
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "0")
    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    await officer.post("/api/units/hotel-1/alarm", {"kind": "gas"})
    await officer.close()
    await expect(page.locator("#queue .queue-item")).to_have_count(0)  # missed while offline

    allow_reconnect.set()
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    await expect(page.locator("#queue .queue-item")).to_have_count(1)
    await expect(page.locator("#d-unit")).to_have_text("环江宾馆")
    await expect(page.locator("#d-kind")).to_have_text("燃气报警")
