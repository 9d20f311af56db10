"""Capture and health against real sources: RTSP on loopback, broken URLs, files."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ingest.cameras.capture import Status
from ingest.cameras.hub import CameraHub
from tests.cameras.conftest import RtspCamera, camera


class LoopLag:
    """Measures the event loop's worst scheduling delay while running (blocking calls show up here)."""

    def __init__(self, tick: float = 0.02) -> None:
        self.tick = tick
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.tick)
            self.worst = max(self.worst, time.monotonic() - t0 - self.tick)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_rtsp_kill_gives_offline_within_5s_and_restart_recovers(rtsp_camera: Any) -> None:
    cam: RtspCamera = rtsp_camera()
    hub = CameraHub([camera("c1", cam.url)])
    await hub.start()
    try:
        async with LoopLag() as lag:
            await hub.wait_status("c1", Status.ONLINE, within=15)
            s = hub.get("c1")
            assert s.capture.width and s.capture.height
            frames_before = s.capture.frames

            cam.kill()
            t0 = time.monotonic()
            h = await hub.wait_status("c1", Status.OFFLINE, within=5)
            took = time.monotonic() - t0
            assert h.is_fault and h.fault
            assert took < 5, took

            # The camera comes back on the same address: the hub reconnects by itself.
            await asyncio.to_thread(cam.start)
            await hub.wait_status("c1", Status.ONLINE, within=15)
            assert s.capture.frames > frames_before
            assert s.capture.reconnects >= 1
        assert lag.worst < 0.5, f"event loop blocked for {lag.worst:.2f} s"
    finally:
        await hub.stop()


class RetryLog(logging.Handler):
    """The capture thread's 'retrying in N s' warnings for one camera, awaitable from the test's loop."""

    def __init__(self, camera_id: str) -> None:
        super().__init__(logging.WARNING)
        self.camera_id = camera_id
        self.waits: list[float] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.levelno == logging.WARNING and msg.startswith(f"camera {self.camera_id} ") and "retrying in" in msg:
            wait = float(msg.rsplit("retrying in ", 1)[1].split()[0])
            self._loop.call_soon_threadsafe(self._add, wait)

    def _add(self, wait: float) -> None:
        self.waits.append(wait)
        self._changed.set()

    async def until(self, pred: Any, timeout: float = 30) -> None:
        async def go() -> None:
            while not pred():
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(go(), timeout)


async def test_a_blip_after_a_long_outage_retries_at_the_initial_wait(rtsp_camera: Any) -> None:
    cam: RtspCamera = rtsp_camera()
    hub = CameraHub([camera("c1", cam.url, reconnect_initial_s=0.2, reconnect_max_s=0.8)])
    retries = RetryLog("c1")
    capture_log = logging.getLogger("ingest.cameras.capture")
    capture_log.addHandler(retries)
    await hub.start()
    try:
        await hub.wait_status("c1", Status.ONLINE, within=15)
        cam.kill()  # a long outage: the waits climb to the ceiling
        await retries.until(lambda: retries.waits.count(0.8) >= 2)
        await asyncio.to_thread(cam.start)
        await hub.wait_status("c1", Status.ONLINE, within=15)
        seen = len(retries.waits)
        cam.kill()  # a blip hours later: the first retry waits the initial 0.2 s, not the 0.8 s ceiling
        await retries.until(lambda: len(retries.waits) > seen)
        assert retries.waits[seen] == 0.2, retries.waits
    finally:
        capture_log.removeHandler(retries)
        await hub.stop()


async def test_bad_sources_are_faults_not_crashes(
    rtsp_camera: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "S3cret-pw!"
    locked = rtsp_camera(username="admin", password="right-password")
    closed_port = f"rtsp://viewer:{secret}@127.0.0.1:9/cam"  # nothing listens on port 9
    cams = [
        camera("refused", closed_port),
        camera("badpass", locked.url, username="admin", password=secret),
        camera("badpath", f"rtsp://127.0.0.1:{locked.port}/nope", username="admin", password="right-password"),
        camera("nofile", str(tmp_path / "missing.mp4")),
        camera("good", locked.url, username="admin", password="right-password"),
    ]
    hub = CameraHub(cams)
    await hub.start()
    try:
        async with LoopLag() as lag:
            await hub.wait_status("good", Status.ONLINE, within=15)
            faults = {}
            for cid in ("refused", "badpass", "badpath", "nofile"):
                h = await hub.wait_status(cid, Status.OFFLINE, within=10)
                faults[cid] = h.fault or ""
        assert lag.worst < 0.5, f"event loop blocked for {lag.worst:.2f} s"
        assert "connection refused" in faults["refused"]
        assert "login failed" in faults["badpass"]
        assert "not found" in faults["badpath"]
        assert "file not found" in faults["nofile"]
        assert not hub.get("good").health.is_fault  # (may be resyncing on a loaded machine)
        listing = str(hub.list())
    finally:
        await hub.stop()
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err, listing):
        assert secret not in text
        assert "right-password" not in text
    assert "rtsp://***@127.0.0.1:9/cam" in caplog.text  # URLs are logged redacted


def _make_clip(path: Path, lavfi: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", lavfi, "-t", "2",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


async def test_frozen_and_dark_faults_from_file_sources(tmp_path: Path) -> None:
    still = _make_clip(tmp_path / "still.mp4", "testsrc=size=320x240:rate=10,trim=end_frame=1,loop=loop=-1:size=1")
    black = _make_clip(tmp_path / "black.mp4", "color=c=black:size=320x240:rate=10")
    grey = _make_clip(tmp_path / "grey.mp4", "color=c=0x808080:size=320x240:rate=10")
    moving = _make_clip(tmp_path / "moving.mp4", "testsrc2=size=320x240:rate=10")
    quick: dict[str, Any] = {"frozen_after_s": 1.0, "dark_after_s": 1.0}
    hub = CameraHub(
        [
            camera("still", str(still), **quick),
            camera("black", str(black), **{**quick, "frozen_after_s": 30}),
            camera("grey", str(grey), **{**quick, "frozen_after_s": 30}),
            camera("moving", str(moving), **quick),
        ]
    )
    await hub.start()
    try:
        h = await hub.wait_status("still", Status.FROZEN, within=8)
        assert "unchanged" in (h.fault or "")
        h = await hub.wait_status("black", Status.DARK, within=8)
        assert "dark" in (h.fault or "")
        h = await hub.wait_status("grey", Status.DARK, within=8)
        assert "covered" in (h.fault or "")
        await hub.wait_status("moving", Status.ONLINE, within=8)
        # A looping file keeps its native rate (10 fps) and keeps going past its end (2 s).
        s = hub.get("moving")
        n0, t0 = s.capture.frames, time.monotonic()
        seq = s.frames.seq
        while time.monotonic() - t0 < 2.5:
            got = await s.frames.wait_newer(seq)
            assert got is not None
            seq = got[0]
        rate = (s.capture.frames - n0) / (time.monotonic() - t0)
        assert 7 <= rate <= 13, rate
        assert hub.get("moving").health.status == Status.ONLINE
    finally:
        await hub.stop()


async def test_subscribe_frames_gives_bgr_frames_at_the_requested_rate(shared_rtsp: RtspCamera) -> None:
    hub = CameraHub([camera("c1", shared_rtsp.url)])
    await hub.start()
    try:
        await hub.wait_status("c1", Status.ONLINE, within=15)
        stamps: list[float] = []
        frames: list[np.ndarray[Any, Any]] = []
        async for ts, frame in hub.subscribe_frames("c1", fps=4):
            stamps.append(ts)
            frames.append(frame)
            if len(stamps) == 8:
                break
        assert frames[0].ndim == 3 and frames[0].shape[2] == 3 and frames[0].dtype == np.uint8
        assert not frames[0].flags.writeable  # shared between consumers
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        assert rate <= 4.6, rate
        assert any(not np.array_equal(frames[0], f) for f in frames[1:])  # the picture moves
    finally:
        await hub.stop()


async def test_http_sources_mjpeg_stream_and_snapshot_with_login() -> None:
    """Second source type: HTTP MJPEG stream and HTTP snapshot polling (Basic auth), served locally."""
    import base64

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    good = "Basic " + base64.b64encode(b"cam:secret").decode()
    counter = {"n": 0}

    def jpeg() -> bytes:
        counter["n"] += 1
        img = np.full((240, 320, 3), 90, np.uint8)
        cv2.putText(img, str(counter["n"]), (20, 150), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 5)
        return cv2.imencode(".jpg", img)[1].tobytes()

    async def snap(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != good:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="cam"'})
        return web.Response(body=jpeg(), content_type="image/jpeg")

    async def mjpeg(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=xx"})
        await resp.prepare(request)
        while True:
            data = jpeg()
            await resp.write(b"--xx\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data))
            await resp.write(data + b"\r\n")
            await asyncio.sleep(0.1)  # the simulated camera's frame clock

    app = web.Application()
    app.router.add_get("/snap.jpg", snap)
    app.router.add_get("/video.mjpg", mjpeg)
    server = TestServer(app)
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    hub = CameraHub(
        [
            camera("snap", f"{base}/snap.jpg", username="cam", password="secret", fps=5),
            camera("snapbad", f"{base}/snap.jpg", username="cam", password="wrong", fps=5),
            camera("mjpeg", f"{base}/video.mjpg", mode="stream"),
        ]
    )
    await hub.start()
    try:
        await hub.wait_status("snap", Status.ONLINE, within=10)
        await hub.wait_status("mjpeg", Status.ONLINE, within=15)
        h = await hub.wait_status("snapbad", Status.OFFLINE, within=10)
        assert "login failed" in (h.fault or "")
        n = hub.get("snap").capture.frames
        seq = hub.get("snap").frames.seq
        async with asyncio.timeout(5):
            while hub.get("snap").capture.frames < n + 3:
                got = await hub.get("snap").frames.wait_newer(seq)
                assert got is not None
                seq = got[0]
        assert hub.get("mjpeg").capture.width == 320
    finally:
        await hub.stop()
        await server.close()
