"""Live calls in real Chromium with its fake camera and microphone: the officer's console and the unit's phone (and
the brigade's page), each its own browser context, talking through the server (aiortc) over loopback.

Both directions carry media: the officer's <video> advances frames of the phone's fake camera, and the audio energy
each side receives (getStats) grows while the other side speaks and stops when it mutes. The recording is found
afterwards: audio and video of the call's length, hashed in the record, played in the assessor's case view."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import av
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import ARGS, launch, watched_pages
from tests.browser.pages import Pages
from tests.calls.support import track_seconds
from tests.support import Api, RunningApp

Shot = Callable[[Page, str], Awaitable[None]]
MEDIA_ARGS = [*ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
# navigator.vibrate is recorded (headless Chromium has nothing to vibrate)
VIBRATE = "window.__vibrations = []; navigator.vibrate = (p) => { window.__vibrations.push(p); return true; };"
HEARD = 1e-4  # totalAudioEnergy gained over a window while the other side speaks (silence adds ~0)
QUIET_MS = 2500  # silence this long on end: five beeps of the fake microphone missed
MEDIA_MS = 30_000  # media set-up and flow on a loaded machine (deadlines, not timings)


@pytest.fixture
async def media_browser() -> AsyncIterator[Browser]:
    async for b in launch(MEDIA_ARGS):
        yield b


@pytest.fixture
async def app(app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]],
              tmp_path: Path) -> AsyncIterator[RunningApp]:
    async with app_factory(video={"evidence_dir": str(tmp_path / "evidence")}) as running:
        yield running


@pytest.fixture
async def pages(media_browser: Browser, app: RunningApp) -> AsyncIterator[Pages]:
    async for p in watched_pages(media_browser, app):
        yield p


async def stats(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("() => window.firelinkCall.stats()")
    return result


async def hears(page: Page, deadline_ms: int = 20_000) -> None:
    """The page's call receives audio energy (more than HEARD) within `deadline_ms`. Chromium's fake microphone
    beeps (20 ms every 500 ms) and a loaded machine delivers in bursts: a fixed window may fall between them."""
    heard = await page.evaluate(
        """async ([heard, deadlineMs]) => {
          const energy = async () => (await window.firelinkCall.stats()).audioIn;
          const end = performance.now() + deadlineMs, start = await energy();
          while (performance.now() < end) {
            await new Promise((r) => setTimeout(r, 250));
            if ((await energy()) - start > heard) return true;
          }
          return false;
        }""", [HEARD, deadline_ms])
    assert heard, f"no audio heard within {deadline_ms} ms"


async def falls_silent(page: Page, deadline_ms: int = 30_000) -> None:
    """The page's call stops receiving audio energy and stays silent for QUIET_MS on end, within `deadline_ms`
    (the buffers on the way drain first). QUIET_MS spans several of the fake microphone's beeps (one every 500 ms),
    so an unmuted speaker cannot pass for silence between two beeps, nor a short stall of a loaded machine."""
    heard = await page.evaluate(
        """async ([quietMs, deadlineMs, limit]) => {
          const energy = async () => (await window.firelinkCall.stats()).audioIn;
          const end = performance.now() + deadlineMs;
          let mark = await energy(), since = performance.now(), last = 0;
          while (performance.now() < end) {
            await new Promise((r) => setTimeout(r, 250));
            const now = await energy();
            if (now - mark >= limit) { last = now - mark; mark = now; since = performance.now(); }
            else if (performance.now() - since >= quietMs) return null;
          }
          return last;
        }""", [QUIET_MS, deadline_ms, HEARD / 10])
    assert heard is None, f"still hearing audio after {deadline_ms} ms (energy {heard} in the last burst)"


async def frames_shown(page: Page, selector: str) -> int:
    return int(await page.evaluate(
        "(s) => document.querySelector(s).getVideoPlaybackQuality().totalVideoFrames", selector))


async def alarm(app: RunningApp) -> tuple[Api, int]:
    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
    inc = next(i["id"] for i in await officer.get("/api/incidents") if i["unit_id"] == "school-1")
    return officer, int(inc)


async def test_officer_calls_the_phone_both_directions_carry_media_and_the_call_is_recorded(
        pages: Pages, app: RunningApp, shot: Shot) -> None:
    phone = await pages.login("school", mobile=True)
    await phone.add_init_script(VIBRATE)
    await phone.reload()
    console = await pages.login("officer")
    officer, inc = await alarm(app)
    try:
        panel = console.locator("#call-panel")
        await expect(console.locator("#d-unit")).to_have_text("第一小学")
        await panel.locator("[data-call-action=start]").click()  # 通话
        zone = phone.locator("#call-zone")
        await expect(zone).to_have_attribute("data-ringing", "1")  # the phone rings ...
        answer = zone.locator("[data-call-action=answer]")
        await expect(answer).to_have_text("接听")
        await expect(zone.locator("[data-call-action=hangup]")).to_have_text("挂断")
        assert await phone.evaluate("window.__vibrations.length") > 0  # ... and vibrates
        await shot(phone, "call-phone-ringing")
        await answer.click()  # one tap answers

        await expect(panel).to_have_attribute("data-call-state", "connected", timeout=MEDIA_MS)
        await expect(zone).to_have_attribute("data-call-state", "connected", timeout=MEDIA_MS)
        await expect(panel.locator(".call-status")).to_have_text("通话中")
        await shot(phone, "call-phone-connected")
        # The officer sees the phone's camera: its <video> advances frames.
        video = "#call-panel video"
        first = await frames_shown(console, video)
        await console.wait_for_function(
            "([s, n]) => document.querySelector(s).getVideoPlaybackQuality().totalVideoFrames > n + 20",
            arg=[video, first], timeout=MEDIA_MS)
        assert (await stats(console))["framesIn"] > 20
        # The phone's page is reloaded (or its browser restarted the tab): it goes back into the same call by itself.
        await phone.reload()
        await phone.wait_for_function("() => window.firelinkCall && window.firelinkCall.state === 'connected'",
                                      timeout=MEDIA_MS)
        frames = await frames_shown(console, video)
        await console.wait_for_function(
            "([s, n]) => document.querySelector(s).getVideoPlaybackQuality().totalVideoFrames > n + 10",
            arg=[video, frames], timeout=MEDIA_MS)
        # Audio both ways: each side receives energy while the other speaks, none while it is muted.
        await hears(console)
        await hears(phone)
        await zone.locator("[data-call-action=mute]").click()
        await expect(zone.locator("[data-call-action=mute]")).to_have_text("取消静音")
        await falls_silent(console)
        await zone.locator("[data-call-action=mute]").click()
        await panel.locator("[data-call-action=mute]").click()
        await falls_silent(phone)
        await hears(console)  # the phone talks again
        await panel.locator("[data-call-action=mute]").click()
        await shot(console, "call-console-connected")

        await panel.locator("[data-call-action=snapshot]").click()
        await expect(console.locator("#evidence-list [data-evidence-kind=call_snapshot]")).to_have_count(1)
        await panel.locator("[data-call-action=hangup]").click()  # 挂断
        await expect(panel.locator(".call-status")).to_contain_text("通话已结束")
        await expect(zone).to_have_attribute("data-call-state", "ended")
        recording = console.locator("#evidence-list [data-evidence-kind=call]")
        await expect(recording).to_have_count(1, timeout=MEDIA_MS)
        await expect(console.locator("#d-timeline [data-event='call.ended']")).to_contain_text("已挂断")

        detail = await officer.get(f"/api/incidents/{inc}")
        ended = next(e["data"] for e in detail["timeline"] if e["action"] == "call.ended")
        steps = [e["action"] for e in detail["timeline"] if e["action"].startswith("call.")]
        assert steps.count("call.connected") == 1 and "call.reconnected" in steps  # one call through the reload
        saved = next(e["data"] for e in detail["timeline"]
                     if e["action"] == "evidence.saved" and e["data"]["kind"] == "call")
        assert await recording.get_attribute("data-sha256") == saved["sha256"]
        path = Path(app.cfg.video.evidence_dir) / saved["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == saved["sha256"]
        with av.open(str(path)) as c:
            streams = {s.type: s for s in c.streams}
            assert set(streams) == {"audio", "video"}
            length = (c.duration or 0) / 1e6
            assert abs(track_seconds(streams["video"]) - ended["duration_s"]) <= 1.0
        assert abs(length - ended["duration_s"]) <= 1.0, (length, ended)

        # The assessor plays it in the case view.
        assessor = await pages.login("assessor")
        await assessor.goto(app.url + "/assessor.html")
        await assessor.select_option("#s-type", "incidents")
        await assessor.fill("#s-q", "第一小学")
        await assessor.click("#s-go")
        await assessor.locator("#results tr.click").first.click()
        player = assessor.locator("#case-evidence [data-evidence-kind=call] video")
        await expect(player).to_have_count(1)
        await assessor.wait_for_function(
            "(d) => { const v = document.querySelector('#case-evidence [data-evidence-kind=call] video');"
            " return v && v.readyState >= 1 && Math.abs(v.duration - d) <= 1; }", arg=ended["duration_s"])
        await player.evaluate("(v) => { v.muted = true; return v.play(); }")
        await assessor.wait_for_function(
            "() => document.querySelector('#case-evidence [data-evidence-kind=call] video').currentTime > 0.5")
        await shot(assessor, "call-assessor-recording")
    finally:
        await officer.close()


async def test_the_unit_calls_the_command_room_and_the_brigade_joins_and_is_heard_by_both(
        pages: Pages, app: RunningApp, shot: Shot) -> None:
    phone = await pages.login("school", mobile=True)
    console = await pages.login("officer")
    brigade = await pages.login("brigade")
    officer, inc = await alarm(app)
    try:
        await officer.post(f"/api/incidents/{inc}/dispatch", {"agencies": ["fire"]})
        card = brigade.locator("#dispatches .dcard")
        await card.locator("[data-action=accept]").click()
        await expect(card).to_have_attribute("data-status", "acknowledged")

        # After its alarm the unit calls the command room; the console rings with 接听.
        zone = phone.locator("#call-zone")
        start = zone.locator("[data-call-action=start]")
        await expect(start).to_have_text("通话")
        await start.click()
        panel = console.locator("#call-panel")
        await expect(panel).to_have_attribute("data-ringing", "1")
        await expect(panel.locator(".call-status")).to_have_text("单位来电")
        await panel.locator("[data-call-action=answer]").click()
        await expect(panel).to_have_attribute("data-call-state", "connected", timeout=MEDIA_MS)

        # The brigade (its dispatch accepted) joins the call in progress.
        join = brigade.locator("#call-zone [data-call-action=join]")
        await expect(join).to_have_text("加入通话")
        await join.click()
        await expect(brigade.locator("#call-zone")).to_have_attribute("data-call-state", "connected", timeout=MEDIA_MS)
        await expect(brigade.locator("#call-zone .call-about")).to_have_text("第一小学")
        await brigade.wait_for_function("() => document.querySelector('#call-zone video')"
                                        ".getVideoPlaybackQuality().totalVideoFrames > 10", timeout=MEDIA_MS)
        # Only the brigade speaks: the officer and the phone both hear it; silence when it mutes too.
        await zone.locator("[data-call-action=mute]").click()
        await panel.locator("[data-call-action=mute]").click()
        await falls_silent(brigade)  # (the brigade hears neither now)
        await hears(console)
        await hears(phone)
        await brigade.locator("#call-zone [data-call-action=mute]").click()
        await falls_silent(console)
        await falls_silent(phone)
        await shot(brigade, "call-brigade-joined")

        await zone.locator("[data-call-action=hangup]").click()  # the phone hangs up: the call ends for all
        await expect(panel.locator(".call-status")).to_contain_text("通话已结束")
        await expect(brigade.locator("#call-zone .call-status")).to_contain_text("通话已结束")
        detail = await officer.get(f"/api/incidents/{inc}")
        joined = [e["actor"] for e in detail["timeline"] if e["action"] == "call.joined"]
        # each joined once (the caller's and the answerer's media may connect in either order)
        assert sorted(joined) == ["brigade", "officer", "school"]
        assert re.search("call.ended", " ".join(e["action"] for e in detail["timeline"]))
    finally:
        await officer.close()
