"""Console video routes: listing, auth, snapshot, live MJPEG/WebSocket fan-out, evidence."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np

from config.cameras import VideoConfig
from console.appkeys import CAMERAS, EVIDENCE
from dispatch.events import INCIDENT_CREATED, Event
from ingest.cameras.capture import Status
from tests.cameras.conftest import RtspCamera, VideoApp, camera


async def read_mjpeg(resp: aiohttp.ClientResponse, count: int, within: float = 15) -> list[bytes]:
    """Parse `count` JPEG parts out of a multipart/x-mixed-replace body."""
    assert resp.content_type == "multipart/x-mixed-replace"
    boundary = b"--" + resp.headers["Content-Type"].split("boundary=")[1].encode()
    frames: list[bytes] = []
    async with asyncio.timeout(within):
        while len(frames) < count:
            line = (await resp.content.readline()).strip()
            if line != boundary:
                continue
            headers = {}
            while (h := (await resp.content.readline()).strip()) != b"":
                k, v = h.decode().split(":", 1)
                headers[k.lower()] = v.strip()
            frames.append(await resp.content.readexactly(int(headers["content-length"])))
    return frames


def decode(jpeg: bytes) -> np.ndarray[Any, Any]:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


async def test_camera_list_hides_credentials_and_respects_roles(make_video_app: Any, shared_rtsp: RtspCamera) -> None:
    url_with_creds = shared_rtsp.url.replace("rtsp://", "rtsp://camuser:pa55word@")
    va: VideoApp = await make_video_app(
        [
            camera("a1", url_with_creds, unit="unit-a"),
            camera("b1", shared_rtsp.url, unit="unit-b", username="admin", password="hunter2"),
        ]
    )
    c = va.client
    r = await c.get("/api/cameras")
    assert r.status == 200
    body = await r.text()
    assert "pa55word" not in body and "hunter2" not in body and "camuser" not in body and "rtsp://" not in body
    cams = {x["id"]: x for x in json.loads(body)["cameras"]}
    assert set(cams) == {"a1", "b1"}
    for key in ("unit_id", "name", "location", "status", "fault", "resolution", "fps"):
        assert key in cams["a1"]

    va.as_user("unit", "unit-a")
    r = await c.get("/api/cameras")
    assert [x["id"] for x in (await r.json())["cameras"]] == ["a1"]
    assert (await c.get("/api/cameras/b1/snapshot.jpg")).status == 403
    assert (await c.get("/api/cameras/b1/live.mjpeg")).status == 403

    va.as_user("agency")
    for path in ("/api/cameras", "/api/cameras/a1/live.mjpeg", "/api/incidents/1/evidence"):
        r = await c.get(path)
        # refused by the route table's wrapper (its roles), before any handler runs
        assert r.status == 403 and (await r.json())["error"].startswith("role agency may not"), path
    va.as_user(None)
    assert (await c.get("/api/cameras")).status == 401
    assert (await c.get("/api/cameras/a1/snapshot.jpg")).status == 401
    va.as_user("duty_officer")
    assert (await c.get("/api/cameras/zz/snapshot.jpg")).status == 404
    assert (await c.get("/api/cameras/a1/live.mjpeg?w=abc")).status == 400


async def test_live_mjpeg_fan_out_and_slow_viewer(make_video_app: Any, shared_rtsp: RtspCamera) -> None:
    va: VideoApp = await make_video_app([camera("c1", shared_rtsp.url)])
    hub = va.app[CAMERAS]
    await hub.wait_status("c1", Status.ONLINE, within=15)
    c = va.client

    snap = await c.get("/api/cameras/c1/snapshot.jpg?w=320")
    assert snap.status == 200 and snap.content_type == "image/jpeg"
    assert decode(await snap.read()).shape[1] == 320

    # A viewer that never reads: its socket fills up, it must not hold anybody back.
    stalled = await c.get("/api/cameras/c1/live.mjpeg?w=640")
    viewers = [await c.get("/api/cameras/c1/live.mjpeg?w=640") for _ in range(3)]
    s = hub.get("c1")
    produced0 = s.capture.frames
    results = await asyncio.gather(*(read_mjpeg(v, 25) for v in viewers))
    produced = s.capture.frames - produced0
    for frames in results:
        imgs = [decode(f) for f in frames]
        assert imgs[0].shape[1] == 640
        assert len({hashlib.sha256(f).hexdigest() for f in frames}) >= 20  # moving, not repeated
        assert any(np.abs(imgs[0].astype(int) - im.astype(int)).mean() > 1 for im in imgs[1:])
    # The camera went on, and every viewer kept up with it (counted in frames, not seconds: a loaded machine slows
    # the camera and the viewers alike): 25 frames read while it made at most twice as many.
    assert 20 <= produced <= 2 * 25, produced
    # Encoded once per frame and width: one 640 px channel for the four viewers (and the evidence pre-buffer when it
    # is the same width: the fallback test picture, without var/clips, is 640 px wide itself).
    ch = s.channel(640)
    assert ch.users == 4 + (ch is s.evidence_channel)
    assert ch.encoded <= s.capture.frames
    for v in [stalled, *viewers]:
        v.close()


async def test_live_websocket(make_video_app: Any, shared_rtsp: RtspCamera) -> None:
    va: VideoApp = await make_video_app([camera("c1", shared_rtsp.url)])
    await va.app[CAMERAS].wait_status("c1", Status.ONLINE, within=15)
    async with va.client.ws_connect("/api/cameras/c1/live.ws?w=320") as ws:
        msgs: list[bytes] = []
        async with asyncio.timeout(10):
            while len(msgs) < 5:
                m = await ws.receive()
                assert m.type == aiohttp.WSMsgType.BINARY
                msgs.append(m.data)
    assert decode(msgs[-1]).shape[1] == 320
    assert len(set(msgs)) == 5


async def test_incident_evidence_snapshot_and_clip(
    make_video_app: Any, shared_rtsp: RtspCamera, tmp_path: Path
) -> None:
    va: VideoApp = await make_video_app(
        [
            camera("a1", shared_rtsp.url, unit="unit-a"),
            camera("a2", shared_rtsp.url, unit="unit-a"),
            camera("b1", shared_rtsp.url, unit="unit-b"),
        ],
        video=VideoConfig(pre_s=2, post_s=2),
    )
    hub = va.app[CAMERAS]
    for cid in ("a1", "a2"):
        await hub.wait_status(cid, Status.ONLINE, within=15)
    rec = va.app[EVIDENCE]
    # let the ring fill with the pre-roll: wait until it spans pre_s
    async with asyncio.timeout(10):
        while not (rec.rings["a1"].frames and time.time() - rec.rings["a1"].frames[0].ts >= 2.0):
            await rec.rings["a1"].next_frame()

    opened = datetime.now(UTC)
    va.bus.publish(
        Event(INCIDENT_CREATED, {"incident": {"id": 42, "unit_id": "unit-a", "opened_at": opened.isoformat()}})
    )
    async with asyncio.timeout(20):
        files = await rec.finished(42)

    kinds = sorted((f.camera_id, f.kind) for f in files)
    assert kinds == [("a1", "clip"), ("a1", "snapshot"), ("a2", "clip"), ("a2", "snapshot")]
    root = tmp_path / "evidence"
    for f in files:
        data = (root / f.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f.sha256
    # the hash reached the incident record through the callback
    recorded = {(d["file"], d["sha256"]) for (iid, action, d) in va.records if iid == 42 and action == "evidence.saved"}
    assert recorded == {(f.file, f.sha256) for f in files}

    clip = next(f for f in files if f.kind == "clip" and f.camera_id == "a1")
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", "-count_frames",
        str(root / clip.file), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    probe = json.loads(out)
    st = probe["streams"][0]
    assert st["codec_name"] == "h264" and st["pix_fmt"] == "yuv420p"
    assert "mp4" in probe["format"]["format_name"]
    assert 3.0 <= float(probe["format"]["duration"]) <= 5.0  # pre 2 s + post 2 s
    assert int(st["nb_read_frames"]) >= 25
    assert clip.start is not None and clip.start <= opened.timestamp() - 1.5

    # The listing and the file download, with Range as <video> uses it.
    c = va.client
    listing = await (await c.get("/api/incidents/42/evidence")).json()
    assert {f["sha256"] for f in listing["files"]} == {f.sha256 for f in files}
    url = next(f["url"] for f in listing["files"] if f["file"] == clip.file)
    full = await c.get(url)
    assert full.status == 200 and full.content_type == "video/mp4"
    assert hashlib.sha256(await full.read()).hexdigest() == clip.sha256
    part = await c.get(url, headers={"Range": "bytes=0-99"})
    assert part.status == 206 and len(await part.read()) == 100

    va.as_user("unit", "unit-b")
    assert (await c.get("/api/incidents/42/evidence")).status == 403
    assert (await c.get(url)).status == 403
    va.as_user("duty_officer")
    assert (await c.get("/api/evidence/incident-42/..%2Fmanifest.json")).status == 404
    assert (await c.get("/api/evidence/incident-42/manifest.json")).status == 404


async def test_viewer_leaving_stops_its_encoder_and_shutdown_ends_live_streams(
    make_video_app: Any, shared_rtsp: RtspCamera
) -> None:
    va: VideoApp = await make_video_app([camera("c1", shared_rtsp.url)])
    hub = va.app[CAMERAS]
    await hub.wait_status("c1", Status.ONLINE, within=15)
    r = await va.client.get("/api/cameras/c1/live.mjpeg?w=320")
    await read_mjpeg(r, 2)
    ch = hub.get("c1").channels[320]
    assert ch.users == 1
    r.close()
    async with asyncio.timeout(5):  # the server notices the closed socket on its next write
        while ch.users:  # noqa: ASYNC110 - no event for "viewer gone": poll under a deadline
            await asyncio.sleep(0.05)
    assert ch._task is None  # nobody watches 320 px: no encoding for it

    still_open = await va.client.get("/api/cameras/c1/live.mjpeg")
    await read_mjpeg(still_open, 1)
    t0 = time.monotonic()
    await va.client.close()  # app shutdown with a live viewer connected
    assert time.monotonic() - t0 < 5
    assert not hub.started
