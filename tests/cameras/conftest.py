"""Fixtures for the camera layer: real RTSP cameras on loopback, configs, a bare console app.

The RTSP camera is `python -m ingest.cameras.testsrc` (Debian ffmpeg encodes the clip to H.264;
the module speaks RTSP and relays RTP interleaved), run as its own process group so a test can
kill it like a camera losing power. The clip is OpenCV's vtest.avi fetched at setup by
scripts/demo_clips.sh into var/clips/; without it the tests use ffmpeg's moving test pattern.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from config.cameras import CameraConfig, VideoConfig
from config.schema import FirelinkConfig
from console.appkeys import BUS, CAMERAS, CONFIG, EVIDENCE
from console.routing import install
from console.video import USER_KEY, setup_video
from console.video import routes as video_routes
from dispatch.actor import Actor
from dispatch.events import EventBus

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "var" / "clips" / "vtest.avi"

if shutil.which("ffmpeg") is None:  # pragma: no cover
    pytest.skip("ffmpeg is not installed (make sysdeps)", allow_module_level=True)


def clip_input() -> list[str]:
    """ffmpeg input options for a looping, real-time, moving picture."""
    if CLIP.exists():
        return ["-re", "-stream_loop", "-1", "-i", str(CLIP)]
    return ["-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=10"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RtspCamera:
    """A real RTSP camera process on loopback."""

    def __init__(self, port: int, path: str = "cam1", username: str | None = None, password: str | None = None):
        self.port = port
        self.path = path
        self.username = username
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.path}"

    def start(self, timeout: float = 45.0) -> RtspCamera:  # returns as soon as READY; cold starts were > 15 s
        cmd = [sys.executable, "-m", "ingest.cameras.testsrc", "--port", str(self.port), "--path", self.path]
        env = dict(os.environ)
        if self.username:
            cmd += ["--username", self.username]
            env["TESTSRC_PASSWORD"] = self.password or ""
        cmd += ["--", *clip_input()]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
        )
        assert self.proc.stdout is not None
        # Wait for its READY line (the port is listening and ffmpeg is sending), not a fixed sleep.
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()) and b"READY" in self.proc.stdout.readline():
                return self
            if self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError("RTSP test camera did not start")

    def kill(self) -> None:
        """Like pulling the plug: SIGKILL the whole process group (relay and ffmpeg)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@pytest.fixture
def rtsp_camera() -> Iterator[Any]:
    """Factory: rtsp_camera(username=..., password=...) → a started RtspCamera on a free port."""
    started: list[RtspCamera] = []

    def make(**kw: Any) -> RtspCamera:
        cam = RtspCamera(free_port(), **kw).start()
        started.append(cam)
        return cam

    yield make
    for cam in started:
        cam.kill()


@pytest.fixture(scope="session")
def shared_rtsp() -> Iterator[RtspCamera]:
    """One RTSP camera shared by the tests that only watch it (saves ~1 s start per test)."""
    cam = RtspCamera(free_port(), path="shared").start()
    yield cam
    cam.kill()


def camera(cid: str, url: str, unit: str = "unit-a", **kw: Any) -> CameraConfig:
    fast = {"offline_after_s": 3.0, "read_timeout_s": 2.0, "open_timeout_s": 3.0, "reconnect_initial_s": 0.3,
            "reconnect_max_s": 1.0}  # fmt: skip
    return CameraConfig(id=cid, unit_id=unit, name=f"Camera {cid}", url=url, location="门厅", **{**fast, **kw})


def firelink_config(cameras: list[CameraConfig]) -> FirelinkConfig:
    units = sorted({c.unit_id for c in cameras} | {"unit-a", "unit-b"})
    return FirelinkConfig.model_validate(
        {"units": [{"id": u, "name": u} for u in units], "cameras": [c.model_dump() for c in cameras]}
    )


def User(role: str, unit_id: str | None = None) -> Actor:
    return Actor("tester", role, unit_id=unit_id)


@dataclass
class VideoApp:
    app: web.Application
    client: TestClient[Any, Any]
    bus: EventBus
    records: list[tuple[int, str, dict[str, Any]]]
    login: dict[str, Actor | None]

    def as_user(self, role: str | None, unit_id: str | None = None) -> None:
        self.login["user"] = None if role is None else User(role, unit_id)


@pytest.fixture
async def make_video_app(tmp_path: Path) -> AsyncIterator[Any]:
    """Factory: await make_video_app([CameraConfig...], video=VideoConfig(...)) → a started VideoApp.

    A bare aiohttp app with setup_video(), the video routes and a middleware standing in for the console's login
    (request["user"], default a duty officer; change with VideoApp.as_user).
    """
    made: list[TestClient[Any, Any]] = []

    async def make(cameras: list[CameraConfig], video: VideoConfig | None = None) -> VideoApp:
        records: list[tuple[int, str, dict[str, Any]]] = []
        login: dict[str, Actor | None] = {"user": User("duty_officer")}

        async def record(incident_id: int, action: str, data: dict[str, Any]) -> None:
            records.append((incident_id, action, data))

        @web.middleware
        async def fake_login(request: web.Request, handler: Any) -> web.StreamResponse:
            if login["user"] is not None:
                request[USER_KEY] = login["user"]
            resp: web.StreamResponse = await handler(request)
            return resp

        app = web.Application(middlewares=[fake_login])
        bus = EventBus()
        app[CONFIG] = firelink_config(cameras)
        app[BUS] = bus
        setup_video(app, record=record, video=video or VideoConfig(), evidence_dir=str(tmp_path / "evidence"))
        install(app, video_routes)  # the console serves them with its others (console.web.console_routes)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        made.append(client)
        return VideoApp(app, client, bus, records, login)

    yield make
    for c in made:
        await c.close()


__all__ = ["CAMERAS", "EVIDENCE", "RtspCamera", "User", "VideoApp", "camera", "clip_input", "firelink_config"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small moving picture (ffmpeg's test pattern), looped by the cameras that read it (cluster tests)."""
    out = tmp_path_factory.mktemp("clips") / "pattern.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5", "-t", "4",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out
