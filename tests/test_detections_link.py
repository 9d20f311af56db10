"""Detector workers publish over MQTT; the core turns smoke/fire into incidents and blocked exits into hazards."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from detectors.worker import fire_payload, hazard_payload, topic
from ingest.contract import AlarmDetection, AlarmIn, DetectionFrame, ExitCleared, ExitHazard
from tests.support import Api, Broker, base_config, publish, running_app, ws_client


def jpeg(color: tuple[int, int, int]) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((120, 160, 3), color, np.uint8))
    assert ok
    return buf.tobytes()


async def wait_for_file(path: Path, timeout: float = 10) -> None:
    """The hard negative is written by a background task of the core: bounded poll of the filesystem."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(path.exists):
        assert time.monotonic() < deadline, f"{path} not written"
        await asyncio.sleep(0.05)


async def test_worker_smoke_becomes_incident_and_false_alarm_becomes_hard_negative(
        broker: Broker, sqlite_url: str, tmp_path: Path) -> None:
    camera = {"id": "cam-1", "unit_id": "hotel-1", "name": "大堂", "url": str(tmp_path / "none.avi")}
    cfg = base_config(sqlite_url, broker, cameras=[camera],
                      video={"evidence_dir": str(tmp_path / "evidence")},
                      detectors={"hard_negatives_dir": str(tmp_path / "negatives")})
    frame = jpeg((40, 40, 200))
    alarm = AlarmIn("video-cam-1-smoke-1", "hotel-1", "video_smoke", "video", datetime.now(UTC), device_id="cam-1")
    detection = AlarmDetection(alarm, DetectionFrame(datetime.now(UTC).timestamp(), 0.81, ([10, 10, 60, 50, 0.81, 0],),
                                                     160, 120, frame))
    async with running_app(cfg) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            await publish(broker, topic(cfg.mqtt.topic_prefix, "cam-1"), fire_payload(detection).model_dump_json())
            created = await ws.next_matching(lambda e: e["type"] == "incident.created")
        inc = created["incident"]
        assert inc["kind"] == "video_smoke" and inc["unit"]["name"] == "环江宾馆"
        detail = await officer.get(f"/api/incidents/{inc['id']}")
        assert detail["alarms"][0]["device_id"] == "cam-1" and detail["alarms"][0]["source"] == "video"
        frames = [e for e in detail["timeline"] if e["action"] == "detection.frame"]
        assert frames and frames[0]["data"]["boxes"] == [[10, 10, 60, 50, 0.81, 0]]
        await officer.post(f"/api/incidents/{inc['id']}/close", {"outcome": "false_alarm", "note": "灯光反射"})
        negative = tmp_path / "negatives" / "train" / "images" / "video-cam-1-smoke-1.jpg"
        await wait_for_file(negative)
        assert (tmp_path / "negatives" / "train" / "labels" / "video-cam-1-smoke-1.txt").read_text() == ""
        rejected = json.loads((tmp_path / "negatives" / "train" / "rejected" / "video-cam-1-smoke-1.json").read_text())
        assert rejected["camera_id"] == "cam-1"  # what places the lesson on its camera (detectors/hard_negatives.py)
        await officer.close()


async def test_worker_blocked_exit_becomes_hazard_and_clearing_is_recorded(
        broker: Broker, sqlite_url: str, tmp_path: Path) -> None:
    camera = {"id": "cam-2", "unit_id": "hotel-1", "name": "安全出口", "url": str(tmp_path / "x.avi")}
    cfg = base_config(sqlite_url, broker, cameras=[camera],
                      video={"evidence_dir": str(tmp_path / "evidence")})
    started = datetime.now(UTC) - timedelta(minutes=11)
    confirmed = started + timedelta(minutes=10)
    hazard = ExitHazard("cam-2", "exit-north", started, confirmed, 0.62, jpeg((0, 200, 0)), jpeg((0, 0, 200)),
                        "北侧安全出口", "hotel-1")
    async with running_app(cfg) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            await publish(broker, topic(cfg.mqtt.topic_prefix, "cam-2"), hazard_payload(hazard).model_dump_json())
            made = await ws.next_matching(lambda e: e["type"] == "hazard.updated")
            hazard_id = made["hazard"]["id"]
            cleared = ExitCleared("cam-2", "exit-north", started, confirmed, datetime.now(UTC), 0.05,
                                  jpeg((0, 200, 0)), "北侧安全出口", "hotel-1")
            await publish(broker, topic(cfg.mqtt.topic_prefix, "cam-2"), hazard_payload(cleared).model_dump_json())
            # The clearing is a record entry, not a bus event: publish a marker alarm after it and wait for that.
            await publish(broker, f"{cfg.mqtt.topic_prefix}/units/school-1/alarm", {"alarm_id": "m", "kind": "other"})
            await ws.next_matching(lambda e: e["type"] == "incident.created")
        detail = await officer.get(f"/api/hazards/{hazard_id}")
        assert detail["category"] == "blocked_exit" and detail["camera_id"] == "cam-2"
        actions = [e["action"] for e in detail["timeline"]]
        assert "hazard.obstruction_cleared" in actions
        await officer.close()


async def test_camera_recheck_reads_the_exit_zone_state_and_takes_a_snapshot(sqlite_url: str) -> None:
    from types import SimpleNamespace

    from console.appkeys import DETECTIONS

    cfg = base_config(sqlite_url, None)
    async with running_app(cfg, mqtt=False) as app:
        zones = [{"zone_id": "north", "fraction": 0.0, "blocked_since": None, "hazard": False}]
        pipeline = SimpleNamespace(exits=SimpleNamespace(state=lambda: zones))
        detectors = SimpleNamespace(pipelines={"cam-9": pipeline})
        shot = jpeg((1, 2, 3))

        async def snapshot(camera_id: str) -> SimpleNamespace:
            return SimpleNamespace(data=shot)

        streams = {"cam-9": SimpleNamespace(watching=True)}

        class Hub(SimpleNamespace):  # the camera hub's part a recheck uses
            def __contains__(self, camera_id: object) -> bool:
                return camera_id in streams

            def get(self, camera_id: str) -> SimpleNamespace:
                return streams[camera_id]

        recheck = app.app[DETECTIONS].camera_recheck(detectors, Hub(snapshot=snapshot))
        assert await recheck({"camera_id": "cam-9", "zone": "north"}) == (True, shot)
        zones[0].update(fraction=0.5, blocked_since=123.0, hazard=True)
        assert await recheck({"camera_id": "cam-9", "zone": "north"}) == (False, shot)
        assert await recheck({"camera_id": "other", "zone": "north"}) is None  # not watched: officer rechecks
        assert await recheck({"camera_id": "cam-9", "zone": "south"}) is None
        streams["cam-9"].watching = False  # cluster mode: another node watches it, this one's state is stale
        assert await recheck({"camera_id": "cam-9", "zone": "north"}) is None
