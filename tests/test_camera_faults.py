"""Camera faults reach the record (unit KPIs count them), not only the live console."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import select

from console.appkeys import DB
from dispatch.models import RecordEntry
from tests.support import base_config, running_app


async def test_a_dead_camera_is_recorded_as_a_fault_of_its_unit(sqlite_url: str, tmp_path: Path) -> None:
    camera = {"id": "cam-dead", "unit_id": "school-1", "name": "操场", "url": str(tmp_path / "missing.avi"),
              "offline_after_s": 1.0, "open_timeout_s": 1.0, "reconnect_initial_s": 0.3, "reconnect_max_s": 1.0}
    cfg = base_config(sqlite_url, None, cameras=[camera], video={"evidence_dir": str(tmp_path / "ev")})
    async with running_app(cfg, mqtt=False) as app:
        deadline = time.monotonic() + 20
        while True:  # the camera thread's fault → bus → record writer: bounded poll of the database
            async with app.app[DB].session() as s:
                rows = (await s.scalars(select(RecordEntry).where(RecordEntry.action == "camera.offline"))).all()
            if rows:
                break
            assert time.monotonic() < deadline, "camera fault never recorded"
            await asyncio.sleep(0.1)
    assert rows[0].data["unit_id"] == "school-1" and rows[0].data["camera_id"] == "cam-dead"
    assert rows[0].data["detail"]  # the reason the console shows (e.g. file not found)
