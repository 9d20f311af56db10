"""Alarms cannot be missed: sound policy, browser autoplay, first click after load, alerts on every officer page.

What the speakers do is read from the page itself: an init script wraps the real AudioContext (state,
resume calls) and every oscillator start (frequency, the context's state at that moment). Only starts on a
running context make sound ("audible"). The alarm patterns use distinct frequencies: 880 Hz unacknowledged,
1400/1000 Hz escalated, 660/440 Hz system fault, 1046/1318 Hz a chime.

Most tests use a Chromium WITHOUT the kiosk flag `--autoplay-policy=no-user-gesture-required` (the shared
`browser` fixture has it), so the browser's real autoplay rule applies: sound starts only after a gesture on
the page, or on a page reached by a same-origin navigation from one that had a gesture.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from console.appkeys import BUS, MQTT
from console.ws import visible
from dispatch import events as ev
from dispatch.actor import Actor
from tests.browser.conftest import ARGS, launch, watched_pages
from tests.browser.pages import PASSWORDS, Pages, hold_requests
from tests.cameras.conftest import RtspCamera, camera, free_port
from tests.support import Api, Broker, RunningApp, publish

Shot = Callable[[Page, str], Awaitable[None]]

STRICT_ARGS = [a for a in ARGS if not a.startswith("--autoplay-policy")]

PROBE = """
(() => {
  const rec = { contexts: [], resumes: 0, started: [], notes: [] };
  window.__audio = rec;
  const Orig = window.AudioContext;
  window.AudioContext = class extends Orig {
    constructor(...a) { super(...a); rec.contexts.push(this); }
  };
  const base = (window.BaseAudioContext || Orig).prototype;
  const createOscillator = base.createOscillator;
  base.createOscillator = function (...a) {
    const osc = createOscillator.apply(this, a);
    const ctx = this;
    const start = osc.start;
    osc.start = function (...b) {
      rec.started.push({ freq: osc.frequency.value, state: ctx.state, at: performance.now() });
      return start.apply(this, b);
    };
    return osc;
  };
  const resume = Orig.prototype.resume;
  Orig.prototype.resume = function (...a) { rec.resumes += 1; return resume.apply(this, a); };
  // A hidden tab, on demand (window.__hide(true)), and a record of system notifications.
  window.__hidden = false;
  Object.defineProperty(Document.prototype, "hidden", { get: () => window.__hidden, configurable: true });
  Object.defineProperty(Document.prototype, "visibilityState",
    { get: () => (window.__hidden ? "hidden" : "visible"), configurable: true });
  window.__hide = (on) => { window.__hidden = on; document.dispatchEvent(new Event("visibilitychange")); };
  if (window.Notification) {
    const N = window.Notification;
    window.Notification = class extends N {
      constructor(title, opts) { rec.notes.push({ title, body: (opts && opts.body) || "" }); super(title, opts); }
    };
  }
})();
"""

# Oscillator starts that made sound: on a running context, optionally of given frequencies, after a mark.
AUDIBLE = """([freqs, since]) => __audio.started.filter((s) => s.state === 'running' && s.at >= since
    && (!freqs.length || freqs.includes(s.freq))).length"""
NORMAL = [880]
ESCALATED = [1400, 1000]
FAULT = [660, 440]
CHIME = [1046, 1318]


async def audible(page: Page, freqs: list[int] | None = None, since: float = 0) -> int:
    n: int = await page.evaluate(AUDIBLE, [freqs or [], since])
    return n


async def wait_audible(page: Page, freqs: list[int] | None = None, since: float = 0) -> None:
    """Waits until the page has made sound (of these frequencies, since the mark)."""
    await page.wait_for_function(f"(arg) => ({AUDIBLE})(arg) > 0", arg=[freqs or [], since], timeout=10_000)


async def mark(page: Page) -> float:
    t: float = await page.evaluate("performance.now()")
    return t


async def wait_quiet(page: Page, seconds: float) -> None:
    """Waits until no sound has started for `seconds` (longer than any pattern's period): it is silent."""
    await page.wait_for_function(
        """(ms) => { const s = __audio.started.filter((x) => x.state === 'running');
                     const last = s.length ? s[s.length - 1].at : 0;
                     return performance.now() - last > ms; }""", arg=seconds * 1000, timeout=15_000)


async def open_page(pages: Pages, **kwargs: Any) -> Page:
    page = await pages.new(**kwargs)
    await page.context.add_init_script(PROBE)
    return page


async def login(pages: Pages, username: str, *, path: str = "/login.html", notifications: bool = False,
                **kwargs: Any) -> Page:
    """Logs in by clicking, as a person does (that click is the gesture the next page inherits)."""
    page = await open_page(pages, **kwargs)
    if notifications:
        await page.context.grant_permissions(["notifications"], origin=pages.base)
    await page.goto(pages.base + path)
    await page.fill("#username", username)
    await page.fill("#password", PASSWORDS[username])
    if kwargs.get("mobile"):
        await page.tap("#login-submit")
    else:
        await page.click("#login-submit")
    await page.wait_for_function("() => !location.pathname.startsWith('/login')")
    await page.wait_for_function("() => document.body.dataset.sound !== undefined")
    return page


async def quiet_js(page: Page, expression: str) -> Any:
    """Evaluates in the page WITHOUT giving it user activation. Playwright's evaluate, expect and locator
    queries run with CDP `userGesture: true`, which counts as a gesture on the page; a reload or navigation
    after one inherits it and may start sound. The steps before a reload that must not hear use this."""
    cdp = await page.context.new_cdp_session(page)
    try:
        r = await cdp.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
    finally:
        await cdp.detach()
    return r["result"].get("value")


async def quiet_wait(page: Page, condition: str, timeout: float = 10) -> None:
    """Waits, gesture-free, until `condition` (a JS expression) holds in the page."""
    expr = ("new Promise((resolve) => { const check = () => { let ok = false; try { ok = (" + condition
            + "); } catch { /* not yet */ } if (ok) resolve(true); else setTimeout(check, 50); }; check(); })")
    await asyncio.wait_for(quiet_js(page, expr), timeout)


async def open_logged_in(pages: Pages, username: str, path: str = "/", **kwargs: Any) -> Page:
    """A page opened with a session but without any gesture in its tab (a bookmark, a browser restart):
    the browser holds its sound until the first gesture on it."""
    api = Api(pages.base)
    await api.login(username, PASSWORDS[username])
    cookies = [{"name": c.key, "value": c.value, "url": pages.base, "httpOnly": True, "sameSite": "Strict"}
               for c in api.http.cookie_jar]
    await api.close()
    page = await open_page(pages, **kwargs)
    await page.context.add_cookies(cookies)  # type: ignore[arg-type]
    await page.goto(pages.base + path)
    await quiet_wait(page, "document.body.dataset.sound === 'blocked'")
    assert await quiet_js(page, "__audio.started.length") == 0
    return page


async def finger_tap(page: Page, target: Locator, hold_ms: int = 100) -> None:
    """A finger's tap: touch down, held as long as a person's tap (~0.1 s), up at the same point."""
    box = None
    for _ in range(20):  # the page may re-render the element between resolving it and measuring it
        await expect(target).to_be_visible()
        box = await target.bounding_box()
        if box is not None:
            break
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    await page.wait_for_timeout(hold_ms)  # the duration of the gesture itself, not a wait for the app
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    await cdp.detach()


async def alarm(broker: Broker, app: RunningApp, unit: str = "school-1", kind: str = "one_key") -> str:
    alarm_id = f"a-{uuid.uuid4().hex}"
    await publish(broker, f"{app.cfg.mqtt.topic_prefix}/units/{unit}/alarm", {"alarm_id": alarm_id, "kind": kind})
    return alarm_id


@pytest.fixture
async def strict_browser() -> AsyncIterator[Browser]:
    """Chromium with the browser's own autoplay rule (no kiosk flag)."""
    async for b in launch(STRICT_ARGS):
        yield b


@pytest.fixture
async def strict(strict_browser: Browser, app: RunningApp) -> AsyncIterator[Pages]:
    async for p in watched_pages(strict_browser, app):
        yield p


# ------------------------------------------------------------------ first click / tap after load


async def test_first_click_after_load_acknowledges(strict: Pages, app: RunningApp, broker: Broker) -> None:
    page = await open_logged_in(strict, "officer")
    await expect(page.locator("#sound-banner")).to_be_visible()
    await expect(page.locator("#start-duty")).to_be_visible()
    await alarm(broker, app)
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("body")).to_have_attribute("data-alert", "normal")
    await expect(page.locator("#sound-banner")).to_have_attribute("data-alarm", "1")  # an alarm nobody hears
    assert await audible(page) == 0
    ack = page.locator("[data-action=ack]")
    where = await ack.bounding_box()

    await ack.click(delay=100)  # the very first click on the page, pressed as long as a person does
    await expect(page.locator("#d-status")).to_have_text("已签收")
    assert await ack.bounding_box() == where  # unlocking sound moved nothing
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")
    await expect(page.locator("#sound-banner")).to_be_hidden()
    assert await page.evaluate("__audio.contexts.map((c) => c.state)") == ["running"]
    await expect(page.locator("body")).to_have_attribute("data-alert", "off")


async def test_agency_first_tap_accepts_and_new_dispatch_sounds_until_accepted(
        strict: Pages, app: RunningApp) -> None:
    page = await open_logged_in(strict, "brigade", "/agency.html", mobile=True)
    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    try:
        await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
        school = (await officer.get("/api/incidents"))[0]
        await officer.post(f"/api/incidents/{school['id']}/dispatch", {"agencies": ["fire"]})
        card = page.locator("#dispatches .dcard").first
        await expect(card).to_contain_text("第一小学")
        await expect(page.locator("body")).to_have_attribute("data-alert", "normal")
        await expect(card).to_have_attribute("data-status", "delivered")  # settled: no more re-renders
        await page.evaluate("document.fonts.ready.then(() => true)")  # a late web font would move the page, not the tap

        top = await page.evaluate("document.querySelector('#dispatches').getBoundingClientRect().top")
        await finger_tap(page, card.locator("[data-action=accept]"))  # the very first tap on the page
        await expect(card).to_have_attribute("data-status", "acknowledged")
        # Unlocking sound moved nothing.
        assert await page.evaluate("document.querySelector('#dispatches').getBoundingClientRect().top") == top
        await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")
        await expect(page.locator("body")).to_have_attribute("data-alert", "off")

        # Sound is on now: the next dispatch rings until it is accepted.
        since = await mark(page)
        await officer.post("/api/units/hotel-1/alarm", {"kind": "smoke"})
        hotel = next(i for i in await officer.get("/api/incidents") if i["unit_id"] == "hotel-1")
        await officer.post(f"/api/incidents/{hotel['id']}/dispatch", {"agencies": ["fire"]})
        hotel_card = page.locator("#dispatches .dcard", has_text="环江宾馆")
        await expect(hotel_card).to_have_attribute("data-status", "delivered")
        await wait_audible(page, NORMAL, since)
        await hotel_card.locator("[data-action=accept]").tap()
        await expect(hotel_card).to_have_attribute("data-status", "acknowledged")
        await expect(page.locator("body")).to_have_attribute("data-alert", "off")
        await wait_quiet(page, 2.5)
    finally:
        await officer.close()


# ------------------------------------------------------------------ autoplay: start duty, reload


async def test_login_click_starts_duty_the_console_sounds_without_another_click(
        strict: Pages, app: RunningApp, broker: Broker) -> None:
    page = await login(strict, "officer")
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")
    await expect(page.locator("#sound-banner")).to_be_hidden()
    await alarm(broker, app)
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await wait_audible(page, NORMAL)


async def test_reloaded_console_with_open_alarm_sounds_after_start_duty(
        strict: Pages, app: RunningApp, broker: Broker) -> None:
    page = await open_logged_in(strict, "officer")
    await quiet_wait(page, "document.body.dataset.alertsLive === '1'")
    await alarm(broker, app)
    await quiet_wait(page, "document.body.dataset.alert === 'normal' && document.body.dataset.sound === 'blocked'")

    await page.reload()  # not a gesture: still blocked, the alarm still open
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "blocked")
    await expect(page.locator("body")).to_have_attribute("data-alert", "normal")
    assert await audible(page) == 0
    await expect(page.locator("#start-duty")).to_have_text("开始值班")
    await page.click("#start-duty")  # the one start-duty action
    await wait_audible(page, NORMAL)
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")
    await expect(page.locator("#start-duty")).to_be_hidden()
    await expect(page.locator("#d-status")).to_have_text("未签收")  # it sounds for the open alarm


async def test_unit_phone_asks_for_one_tap_to_enable_sound(strict: Pages, app: RunningApp) -> None:
    page = await open_logged_in(strict, "school", "/unit.html", mobile=True)
    step = page.locator("#sound-step")
    await expect(step).to_be_visible()
    await expect(step).to_contain_text("点一下启用提示音")
    # The card floats over the page: the alarm button stays where it was and is not covered.
    step_box = await step.bounding_box()
    button = await page.locator("#alarm-btn").bounding_box()
    assert step_box is not None and button is not None
    assert step_box["y"] + step_box["height"] <= button["y"]
    await page.tap("#sound-step-btn")
    await expect(step).to_be_hidden()
    await wait_audible(page, CHIME)  # a confirmation chime: the phone can ring now
    assert await page.locator("#alarm-btn").bounding_box() == button


# ------------------------------------------------------------------ sound policy


async def test_silence_applies_to_current_alarms_a_new_alarm_sounds_again(
        pages: Pages, app: RunningApp, broker: Broker) -> None:
    page = await login(pages, "officer")
    await expect(page.locator("body")).to_have_attribute("data-alerts-live", "1")
    await alarm(broker, app)
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await wait_audible(page, NORMAL)

    await page.click("#mute")
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "silenced")
    await expect(page.locator("#sound-state")).to_contain_text("已静音至")
    await expect(page.locator("#mute")).to_have_text("取消静音")
    await expect(page.locator("body")).to_have_attribute("data-alert", "normal")  # still shown, not heard
    await wait_quiet(page, 2.5)

    since = await mark(page)
    await alarm(broker, app, "hotel-1", "smoke")  # a new alarm from another unit
    await expect(page.locator("#queue .queue-item")).to_have_count(2)
    await wait_audible(page, NORMAL, since)
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")
    await expect(page.locator("#mute")).to_have_text("静音")

    # Another page of this browser keeps the silence of the alarms it covers (the school's), not the hotel's.
    await page.click("#mute")
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "silenced")
    await page.click("#nav-video")
    await expect(page).to_have_url(app.url + "/video.html")
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "silenced")
    await expect(page.locator("#alert-stack [data-incident]")).to_have_count(2)


async def test_escalation_sounds_again_after_silence(browser: Browser, app_factory: Any, broker: Broker) -> None:
    # its own app (short ack timeout) and no `pages`: that fixture starts the default app on the same database
    async with app_factory(escalation={"ack_timeout_s": 6, "merge_window_s": 300}) as app:
        p = Pages(browser, app.url)
        try:
            page = await login(p, "officer")
            await alarm(broker, app)
            await wait_audible(page, NORMAL)
            await page.click("#mute")
            await expect(page.locator("#sound-state")).to_have_attribute("data-state", "silenced")
            since = await mark(page)
            await expect(page.locator("body")).to_have_attribute("data-alert", "escalated", timeout=15_000)
            await wait_audible(page, ESCALATED, since)
            await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")
        finally:
            await p.close()
        assert not p.errors, p.errors


async def test_mute_clicked_while_the_console_loads_silences_the_alarm_sounding_then(
        pages: Pages, app: RunningApp, broker: Broker, shot: Shot) -> None:
    """The first click after a load is never lost: 静音 clicked while the console still waits for GET /api/me (held
    here) silences the open alarm once the page knows it — it never sounds on the reloaded page; a newer alarm
    sounds all the same."""
    page = await login(pages, "officer")
    await alarm(broker, app)
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await wait_audible(page, NORMAL)
    held = await hold_requests(page, "**/api/me")
    await page.reload()
    await held.arrived()
    await page.click("#mute")
    held.release()
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("#mute")).to_have_text("取消静音")
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "silenced")
    await expect(page.locator("body")).to_have_attribute("data-alert", "normal")  # still shown, not heard
    await shot(page, "console-muted-while-loading")
    await wait_quiet(page, 2.5)
    assert await audible(page, NORMAL) == 0  # not even a beep before the silence took hold

    since = await mark(page)
    await alarm(broker, app, "hotel-1", "smoke")  # newer than the click: it sounds
    await expect(page.locator("#queue .queue-item")).to_have_count(2)
    await wait_audible(page, NORMAL, since)
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")
    await expect(page.locator("#mute")).to_have_text("静音")


# ------------------------------------------------------------------ every officer page alerts


@pytest.fixture(scope="module")
def rtsp() -> Iterator[RtspCamera]:
    cam = RtspCamera(free_port(), path="school").start()
    yield cam
    cam.kill()


@pytest.fixture
async def patrol(strict_browser: Browser, app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]],
                 rtsp: RtspCamera, tmp_path: Path) -> AsyncIterator[tuple[RunningApp, Pages]]:
    """An app with one real RTSP camera at 第一小学 (what the officer patrols), and strict-browser pages."""
    cam = camera("cam-school", rtsp.url, unit="school-1")
    cams = [cam.model_copy(update={"name": "校门摄像头", "location": "南门"})]
    async with app_factory(cameras=cams, video={"evidence_dir": str(tmp_path / "evidence")}) as running:
        p = Pages(strict_browser, running.url)
        yield running, p
        await p.close()
        assert not p.errors, f"uncaught JavaScript errors: {p.errors}"


async def test_alarm_during_video_patrol_alerts_on_the_video_wall(
        patrol: tuple[RunningApp, Pages], broker: Broker, shot: Shot) -> None:
    app, strict = patrol
    page = await login(strict, "officer", notifications=True, width=1600, height=900)
    await page.click("#nav-video")  # routine video patrol; the click carries the sound unlock along
    await expect(page).to_have_url(app.url + "/video.html")
    await expect(page.locator("body")).to_have_attribute("data-alerts-live", "1")
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")
    await expect(page.locator("#wall [data-camera-id=cam-school] img")).to_have_count(1)
    await page.wait_for_function(  # the live picture is on the wall
        "() => { const i = document.querySelector('#wall img'); return i && i.naturalWidth > 0; }", timeout=20_000)
    title = await page.title()

    await alarm(broker, app)
    card = page.locator("#alert-stack [data-alert=incident]")
    await expect(card).to_have_count(1)
    await expect(card).to_contain_text("第一小学")
    await expect(card).to_contain_text("一键报警")
    await expect(card).to_contain_text("城北路18号")
    await wait_audible(page, NORMAL)
    await page.wait_for_function("(t) => document.title !== t && document.title.includes('第一小学')", arg=title)
    await expect(page.locator("link[rel~=icon]")).to_have_attribute("href", "/static/flame.svg", timeout=3000)
    await expect(page.locator("link[rel~=icon]")).to_have_attribute(
        "href", re.compile(r"^data:image/svg"), timeout=3000)  # the favicon flashes too
    await shot(page, "alarm-during-video-patrol")

    # The tab goes to the background: the next alarm also raises a system notification.
    await page.evaluate("__hide(true)")
    await alarm(broker, app, "hotel-1", "smoke")
    await page.wait_for_function("() => __audio.notes.some((n) => n.title.includes('环江宾馆'))")
    note = await page.evaluate("__audio.notes.find((n) => n.title.includes('环江宾馆'))")
    assert "烟感报警" in note["body"] and "解放路66号" in note["body"]
    await page.evaluate("__hide(false)")

    # One click opens the incident on the console (sound stays on: the click is the gesture).
    school_card = page.locator("#alert-stack [data-alert=incident]", has_text="第一小学")
    inc_id = await school_card.get_attribute("data-incident")
    await school_card.locator("a.alert-go").click()
    await expect(page).to_have_url(f"{app.url}/#incident/{inc_id}")
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("#d-status")).to_have_text("未签收")
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "on")
    await wait_audible(page, NORMAL)
    await page.click("[data-action=ack]")
    await expect(page.locator("#d-status")).to_have_text("已签收")


async def test_hazards_and_assessor_pages_alert_officers_and_a_page_opened_during_an_alarm(
        pages: Pages, app: RunningApp) -> None:
    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})  # before any page is open
    await officer.close()
    for path in ("/hazards.html", "/assessor.html"):
        page = await login(pages, "officer")
        await page.goto(app.url + path)
        card = page.locator("#alert-stack [data-alert=incident]")
        await expect(card).to_contain_text("第一小学")
        await expect(card.locator("a.alert-go")).to_have_attribute("href", re.compile(r"^/#incident/\d+$"))
        await wait_audible(page, NORMAL)
    # The assessor is not on duty: no alerts on the assessor's own page.
    page = await login(pages, "assessor")
    await page.goto(app.url + "/assessor.html")
    await expect(page.locator("#headline")).not_to_be_empty()
    await expect(page.locator("#alert-stack")).to_have_count(0)


# ------------------------------------------------------------------ system health


def health(down: list[str]) -> ev.Event:
    body = {"status": "degraded" if down else "ok", "down": down,
            "database": {"ok": "database" not in down, "latency_ms": 1.0}, "mqtt": "mqtt_intake" not in down}
    return ev.Event(ev.HEALTH_UPDATED, {"data": body})


async def test_health_banner_and_sound_on_health_updated(pages: Pages, app: RunningApp) -> None:
    page = await login(pages, "officer")
    await expect(page.locator("body")).to_have_attribute("data-alerts-live", "1")
    await expect(page.locator("#alert-stack")).to_be_hidden()

    app.app[BUS].publish(health(["mqtt_intake"]))
    banner = page.locator("#alert-stack [data-alert=health]")
    await expect(banner).to_have_text(re.compile("报警接入中断"))
    await expect(banner).to_be_visible()
    await wait_audible(page, FAULT)
    await expect(page.locator("body")).to_have_attribute("data-alert", "fault")

    app.app[BUS].publish(health(["database"]))
    await expect(banner).to_contain_text("数据库不可用")

    app.app[BUS].publish(health([]))
    await expect(page.locator("#alert-stack [data-alert=health]")).to_have_count(0)
    await expect(page.locator("body")).to_have_attribute("data-alert", "off")
    await wait_quiet(page, 3)


async def test_killed_intake_thread_shows_the_banner_with_sound_and_recovers(pages: Pages, app: RunningApp) -> None:
    """The real thing, not a published event: the MQTT client's network thread dies (test hook); within 5 s the
    console shows 报警接入中断 with the fault sound, and once the watchdog has restarted the client it clears."""
    page = await login(pages, "officer")
    await expect(page.locator("body")).to_have_attribute("data-alerts-live", "1")
    # the banner may be up for only a second or two: note that it appeared, whenever it does
    await page.evaluate("""() => { window.__intakeDown = null;
        new MutationObserver(() => {
            const b = document.querySelector('#alert-stack [data-alert=health]');
            const down = b && /报警接入中断/.test(b.textContent);
            if (down && window.__intakeDown === null) window.__intakeDown = performance.now();
        }).observe(document.body, { subtree: true, childList: true, characterData: true }); }""")
    since = await mark(page)
    link = app.app[MQTT]
    assert link is not None
    await link.kill_network_thread()
    await page.wait_for_function("() => window.__intakeDown !== null", timeout=5_000)
    await wait_audible(page, FAULT, since)
    await expect(page.locator("#alert-stack [data-alert=health]")).to_have_count(0, timeout=20_000)


def test_health_events_reach_staff_only() -> None:
    event = health(["mqtt_intake"])
    for role in ("admin", "duty_officer", "assessor"):
        assert visible(event, Actor(username="x", role=role)) == {"type": "health.updated", **event.data}
    assert visible(event, Actor(username="u", role="unit", unit_id="school-1")) is None
    assert visible(event, Actor(username="b", role="agency", agency="fire")) is None


async def test_page_opened_during_fault_shows_banner_from_a_503_body(
        pages: Pages, app: RunningApp) -> None:
    """Any API call answered 503 {"error", "down"} raises the banner, until /healthz says healthy."""
    page = await login(pages, "officer")
    await expect(page.locator("body")).to_have_attribute("data-alerts-live", "1")
    await page.route("**/api/units", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"error": "database unavailable", "down": ["database"]}'))
    await page.reload()
    await expect(page.locator("#alert-stack [data-alert=health]")).to_contain_text("数据库不可用")

