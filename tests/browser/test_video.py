"""Cameras in a real browser: video wall, the alarm opening the unit's video, evidence playing, phone photos.

One real RTSP camera (tests/cameras: ffmpeg serving the demo clip on loopback) watches 第一小学 (school-1);
the app is the real one (running_app) with video evidence of 1 s before to 1 s after an alarm.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from playwright.async_api import Page, expect

from console.appkeys import BUS, CAMERAS, EVIDENCE
from dispatch.events import DEVICE_UPDATED, Event
from tests.browser.pages import Pages
from tests.cameras.conftest import RtspCamera, camera, free_port
from tests.support import Api, Broker, RunningApp, publish

CAM = "cam-school"

# A small fingerprint of what an <img> shows now (same-origin frames: the canvas is readable).
FINGERPRINT = """(sel) => {
  const img = document.querySelector(sel);
  if (!img || !img.complete || !img.naturalWidth) return null;
  const c = document.createElement("canvas"); c.width = 32; c.height = 18;
  const g = c.getContext("2d"); g.drawImage(img, 0, 0, 32, 18);
  return Array.from(g.getImageData(0, 0, 32, 18).data).join(",");
}"""


@pytest.fixture(scope="module")
def rtsp() -> Iterator[RtspCamera]:
    cam = RtspCamera(free_port(), path="school").start()
    yield cam
    cam.kill()


@pytest.fixture
async def app(app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]], rtsp: RtspCamera,
              tmp_path: Path) -> AsyncIterator[RunningApp]:
    cams = [camera(CAM, rtsp.url, unit="school-1").model_copy(update={"name": "校门摄像头", "location": "南门"})]
    video = {"evidence_dir": str(tmp_path / "evidence"), "pre_s": 1, "post_s": 1}
    async with app_factory(cameras=cams, video=video) as running:
        await until(lambda: running.app[CAMERAS].get(CAM).health.status.value == "online", 15)
        yield running


async def until(pred: Callable[[], bool], timeout: float) -> None:
    """Polls a condition of the app under test (there is no event to await from the test's side)."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def press(broker: Broker, app: RunningApp, unit: str = "school-1") -> None:
    await publish(broker, f"{app.cfg.mqtt.topic_prefix}/units/{unit}/alarm",
                  {"alarm_id": f"a-{uuid.uuid4().hex}", "kind": "one_key", "device_id": "btn-1"})


async def moving(page: Page, sel: str) -> None:
    """The <img> at `sel` shows a picture, and a different one a moment later."""
    await page.wait_for_function(f"() => ({FINGERPRINT})({sel!r}) !== null")
    first = await page.evaluate(FINGERPRINT, sel)
    await page.wait_for_function(f"(first) => {{ const f = ({FINGERPRINT})({sel!r}); return f && f !== first; }}",
                                 arg=first)


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


async def test_video_wall_shows_moving_frames_and_focused_view(pages: Pages, app: RunningApp) -> None:
    page = await pages.login("officer")
    await page.click("#nav-video")
    await expect(page.locator("#wall [data-camera-id]")).to_have_count(1)
    tile = page.locator(f"#wall [data-camera-id={CAM}]")
    await expect(tile).to_contain_text("校门摄像头")
    await expect(tile).to_contain_text("第一小学")
    await expect(tile).to_contain_text("南门")
    await expect(tile.locator(".cam-badge")).to_have_attribute("data-status", "online")
    await expect(tile.locator(".cam-badge")).not_to_have_class("bad")
    sel = f"#wall [data-camera-id={CAM}] img"
    await moving(page, sel)
    width = await page.eval_on_selector(sel, "img => img.naturalWidth")
    assert 0 < width <= 480  # the small live size

    # Camera faults reach the tile live (as the hub publishes them: device.updated, kind camera).
    hub = app.app[CAMERAS]
    info = {**hub.get(CAM).info(), "status": "frozen", "fault": "画面冻结"}
    app.app[BUS].publish(Event(DEVICE_UPDATED, {"kind": "camera", "camera": info}))
    await expect(tile.locator(".cam-badge")).to_have_class(re.compile(r"\bbad\b"))
    await expect(tile).to_have_class(re.compile(r"\bfault\b"))
    app.app[BUS].publish(Event(DEVICE_UPDATED, {"kind": "camera", "camera": hub.get(CAM).info()}))
    await expect(tile.locator(".cam-badge")).to_have_attribute("data-status", "online")

    # Focused view: full resolution, snapshot button.
    await tile.click()
    await expect(page.locator("#focus")).to_be_visible()
    await expect(page.locator("#wall [data-camera-id]")).to_have_count(0)  # tiles stop streaming
    await moving(page, "#focus-img")
    full = await page.eval_on_selector("#focus-img", "img => img.naturalWidth")
    assert full > width
    await page.click("#focus-snap")
    await page.wait_for_function("() => document.querySelector('#snaps img')?.naturalWidth > 0")

    # Video patrol: one action records a hazard with the current frame as evidence.
    await page.select_option("#patrol-cat", "blocked_exit")
    await page.click("#patrol-record")
    await expect(page.locator(".toast").last).to_contain_text("#")
    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    listed = await officer.get("/api/hazards")
    items = listed["items"] if isinstance(listed, dict) else listed
    assert [(h["source"], h["camera_id"], h["category"]) for h in items] == [("patrol", CAM, "blocked_exit")]
    await officer.close()
    await page.keyboard.press("Escape")
    await expect(page.locator("#wall [data-camera-id]")).to_have_count(1)


async def test_alarm_opens_the_units_live_video_and_evidence_clip_plays(
        pages: Pages, app: RunningApp, broker: Broker) -> None:
    page = await pages.login("officer")
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    await press(broker, app)

    # Auto-selected, with the unit's camera live in the video panel.
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    cam = page.locator(f"#video-panel [data-camera-id={CAM}] img")
    await expect(cam).to_have_attribute("src", f"/api/cameras/{CAM}/live.mjpeg?w=640&fps=10")
    await moving(page, f"#video-panel [data-camera-id={CAM}] img")

    # Evidence: snapshot and a 2 s clip; it plays in Chromium.
    incident_id = int(page.url.rsplit("/", 1)[1])
    files = await asyncio.wait_for(app.app[EVIDENCE].finished(incident_id), 20)
    assert {f.kind for f in files} == {"snapshot", "clip"}
    await page.click("#evidence-refresh")
    items = page.locator("#evidence-list [data-evidence-kind]")
    await expect(items).to_have_count(2)
    clip = next(f for f in files if f.kind == "clip")
    await expect(page.locator("#evidence-list [data-evidence-kind=clip]")).to_contain_text(clip.sha256[:8])
    await page.wait_for_function(
        "() => document.querySelector('#evidence-list [data-evidence-kind=snapshot] img')?.naturalWidth > 0")
    video = page.locator("#evidence-list [data-evidence-kind=clip] video")
    duration = await video.evaluate("async v => { v.muted = true; await v.play(); return v.duration; }")
    assert duration > 0
    await page.wait_for_function("() => { const v = document.querySelector('#evidence-list video');"
                                 " return v.readyState >= 2 && v.currentTime > 0.2; }")
    await expect(page.locator("#d-timeline")).to_contain_text("证据已保存")


async def test_unit_sends_a_photo_the_officer_sees_it(pages: Pages, app: RunningApp, broker: Broker,
                                                     tmp_path: Path) -> None:
    officer = await pages.login("officer")
    phone = await pages.login("school", mobile=True)
    await expect(phone.locator("#photo-zone")).to_be_hidden()  # only once an alarm is on
    btn = phone.locator("#alarm-btn")
    box = await btn.bounding_box()
    assert box is not None
    await phone.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await phone.mouse.down()
    await expect(phone.locator("#unit-status")).to_be_visible(timeout=5000)
    await phone.mouse.up()
    await expect(phone.locator("#photo-zone")).to_be_visible()
    await expect(phone.locator("#photo-input")).to_have_attribute("capture", "environment")

    photo = tmp_path / "scene.png"
    photo.write_bytes(png_bytes())
    await phone.set_input_files("#photo-input", str(photo))
    await expect(phone.locator("#photo-status")).to_have_attribute("data-state", "sent")

    await expect(officer.locator("#d-unit")).to_have_text("第一小学")
    await officer.click("#evidence-refresh")
    item = officer.locator("#evidence-list [data-evidence-kind=photo]")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("现场照片")
    await officer.wait_for_function(
        "() => document.querySelector('#evidence-list [data-evidence-kind=photo] img')?.naturalWidth === 64")


async def upload(api: Api, incident_id: int, body: bytes, *, csrf: bool = True,
                 filename: str = "p.png") -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("photo", body, filename=filename, content_type="image/png")
    headers = {"X-CSRF-Token": api.csrf or ""} if csrf else {}
    async with api.http.post(f"{api.base}/api/incidents/{incident_id}/photos", data=form, headers=headers) as r:
        return r.status, await r.json()


async def test_photo_upload_rules(app: RunningApp) -> None:
    officer, school, hotel = Api(app.url), Api(app.url), Api(app.url)
    try:
        await officer.login("officer", "officer-pw")
        await school.login("school", "school-pw")
        await hotel.login("hotel", "hotel-pw")
        created = await school.post("/api/units/school-1/alarm", {"kind": "one_key"})
        incident_id = created["incident_id"]

        assert (await upload(hotel, incident_id, png_bytes()))[0] == 403  # another unit's incident
        assert (await upload(school, incident_id, png_bytes(), csrf=False))[0] == 403  # no CSRF token
        status, body = await upload(school, incident_id, b"%PDF-1.4 not a picture", filename="x.jpg")
        assert status == 400, body
        assert (await upload(school, 999999, png_bytes()))[0] == 404

        status, body = await upload(school, incident_id, png_bytes())
        assert status == 201, body
        assert body["kind"] == "photo" and body["file"].endswith(".png") and len(body["sha256"]) == 64
        listed = await officer.get(f"/api/incidents/{incident_id}/evidence")
        assert [f["sha256"] for f in listed["files"] if f["kind"] == "photo"] == [body["sha256"]]
        assert (await upload(officer, incident_id, png_bytes()))[0] == 201  # officers may add photos too
        detail = await officer.get(f"/api/incidents/{incident_id}")
        saved = [e for e in detail["timeline"] if e["action"] == "evidence.saved" and e["data"]["kind"] == "photo"]
        assert len(saved) == 2
    finally:
        for a in (officer, school, hotel):
            await a.close()
