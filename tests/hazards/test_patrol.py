"""Video patrol: one action on a live view records a hazard with the camera's current frame."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from tests.hazards.conftest import hazard_app
from tests.support import Api, base_config


def clip(path: Path) -> Path:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=10", "-t", "3", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


async def test_patrol_snapshot_becomes_hazard_evidence(sqlite_url: str, tmp_path: Path) -> None:
    video = await asyncio.to_thread(clip, tmp_path / "exit.mp4")
    cfg = base_config(sqlite_url, None, cameras=[
        {"id": "cam-exit", "unit_id": "hotel-1", "name": "安全出口", "url": str(video), "loop": True}],
        video={"evidence_dir": str(tmp_path / "evidence")})
    async with hazard_app(cfg) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        deadline = time.monotonic() + 15
        while True:
            async with officer.http.get(f"{app.url}/api/cameras/cam-exit/snapshot.jpg") as resp:
                if resp.status == 200:
                    break
            assert time.monotonic() < deadline, "camera never produced a frame"
            await asyncio.sleep(0.1)  # the capture thread's first frame: no event is exposed for it
        made = await officer.post("/api/cameras/cam-exit/patrol-hazard",
                                  {"category": "blocked_exit", "description": "安全出口堆放杂物"})
        assert made["unit_id"] == "hotel-1" and made["source"] == "patrol" and made["camera_id"] == "cam-exit"
        detail = await officer.get(f"/api/hazards/{made['id']}")
        assert [e["filename"] for e in detail["evidence"]] == ["cam-exit-patrol.jpg"]
        assert len(detail["evidence"][0]["sha256"]) == 64
        assert (await officer.request("POST", "/api/cameras/nope/patrol-hazard", {"category": "blocked_exit"}))[0] \
            == 404
        school = Api(app.url)
        await school.login("school", "school-pw")
        assert (await school.request("POST", "/api/cameras/cam-exit/patrol-hazard",
                                     {"category": "blocked_exit"}))[0] == 403
        await school.close()
        await officer.close()
