"""A third detector is one module plus its config entry: this test module registers one (no core file knows it),
a camera's `plugins:` settings ask for it, and its alarm reaches the core through the same detection sink as
smoke/fire — an incident, with the frame recorded on it in the alarm's own transaction.

The camera is the demo camera of tests/test_exit_zones.py (a real video file opened by the real app).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Self

import cv2
import pytest

from config.detectors import CameraDetectors, DetectorsConfig
from console.appkeys import BUS, DETECTORS, INCIDENTS
from detectors.base import Camera, Sample, register, unregister, wanted_by
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.evidence_record import DETECTION_FRAME
from ingest.contract import AlarmDetection, AlarmIn, DetectionEvent, DetectionFrame
from tests.support import base_config, running_app
from tests.test_exit_zones import CAM, demo_clip

OFFICER = Actor("officer", "duty_officer")


class FlagDetector:
    """Raises one alarm per camera, on the first frame it is given (kind from the camera's settings)."""

    type_key: ClassVar[str] = "test_flag"

    def __init__(self, cfg: DetectorsConfig) -> None:
        self.cfg = cfg
        self.cameras: dict[str, Camera] = {}
        self.raised: set[str] = set()

    @classmethod
    def wanted(cls, settings: CameraDetectors) -> bool:
        return False  # only where a camera's `plugins:` names it

    @classmethod
    def load(cls, cfg: DetectorsConfig) -> Self:
        return cls(cfg)

    def watch(self, camera: Camera) -> None:
        kind = camera.settings.plugins[self.type_key].get("kind")
        if not isinstance(kind, str) or not kind.startswith("video_"):
            raise ValueError(f"camera {camera.camera_id}: test_flag.kind must be a video_* alarm kind")
        self.cameras[camera.camera_id] = camera

    def fps(self, camera_id: str) -> float:
        return 5.0 if camera_id in self.cameras and camera_id not in self.raised else 0.0

    def process(self, samples: Sequence[Sample]) -> list[DetectionEvent]:
        out: list[DetectionEvent] = []
        for s in samples:
            if s.camera_id in self.raised:
                continue
            self.raised.add(s.camera_id)
            camera = self.cameras[s.camera_id]
            kind = str(camera.settings.plugins[self.type_key]["kind"])
            h, w = s.image.shape[:2]
            ok, buf = cv2.imencode(".jpg", s.image)
            assert ok
            alarm = AlarmIn(f"flag-{s.camera_id}-{round(s.t * 1000)}", camera.unit_id or "", kind, "video",
                            datetime.now(UTC), device_id=s.camera_id, note="flag raised")
            box = {"class": "flag", "confidence": 1.0, "box": [0.0, 0.0, float(w), float(h)]}
            out.append(AlarmDetection(alarm, DetectionFrame(s.t, 1.0, (box,), w, h, buf.tobytes())))
        return out


@pytest.fixture
def flag_detector() -> Iterator[type[FlagDetector]]:
    register(FlagDetector)
    yield FlagDetector
    unregister(FlagDetector.type_key)


def test_plugin_settings_pick_the_detector(flag_detector: type[FlagDetector]) -> None:
    asked = CameraDetectors(camera_id="c", smoke_fire=False, plugins={"test_flag": {"kind": "video_flag"}})
    assert "test_flag" in wanted_by(asked) and "smoke_fire" not in wanted_by(asked)
    assert "test_flag" not in wanted_by(CameraDetectors(camera_id="c"))


async def test_a_registered_detector_raises_an_incident_through_the_sink(
        sqlite_url: str, tmp_path: Path, flag_detector: type[FlagDetector]) -> None:
    cfg = base_config(
        sqlite_url, None,
        cameras=[{"id": CAM, "unit_id": "hotel-1", "name": "仓库", "url": demo_clip(tmp_path), "loop": True}],
        video={"evidence_dir": str(tmp_path / "evidence")},
        detectors={"enabled": True, "all_cameras": False, "exits": {"person_weights": None},
                   "evidence_dir": str(tmp_path / "detections"),
                   "cameras": [{"camera_id": CAM, "smoke_fire": False,
                                "plugins": {"test_flag": {"kind": "video_flag"}}}]})
    async with running_app(cfg, mqtt=False) as app:
        assert set(app.app[DETECTORS].detectors.watched_by(CAM)) == {"exits", "test_flag"}
        service = app.app[INCIDENTS]
        with app.app[BUS].subscribe([ev.INCIDENT_CREATED]) as created:
            if "hotel-1" not in service.core.open_by_unit:  # else it was committed before this subscription
                await asyncio.wait_for(created.get(), 30)
        detail = await service.views.incident_detail(service.core.open_by_unit["hotel-1"].incident_id, OFFICER)
        assert (detail["kind"], detail["unit_id"]) == ("video_flag", "hotel-1")
        assert [(a["source"], a["device_id"], a["kind"]) for a in detail["alarms"]] == [("video", CAM, "video_flag")]
        [frame] = await service.intake.record_of(detail["id"], DETECTION_FRAME)
        assert frame["alarm_id"].startswith(f"flag-{CAM}-") and frame["camera_id"] == CAM
        assert frame["boxes"][0]["class"] == "flag" and frame["confidence"] == 1.0
        kept = tmp_path / "evidence" / "detections" / frame["file"]
        assert kept.is_file() and kept.read_bytes()[:2] == b"\xff\xd8"
        # the detector's own copy, as for smoke/fire: {detectors.evidence_dir}/{camera}/{alarm_id}.jpg
        assert (tmp_path / "detections" / CAM / f"{frame['alarm_id']}.jpg").is_file()


def test_built_in_exits_plugin_through_the_detector_set() -> None:
    """The blocked-exit plug-in as the live service drives it: camera settings → registry → samples → events, at its
    own rate (exits.fps) although frames come faster."""
    from config.detectors import ExitZoneConfig
    from detectors.pipeline import DetectorSet
    from ingest.contract import ExitHazard
    from tests.test_exit_zones import LEFT, scene, with_box

    cfg = DetectorsConfig.model_validate({"exits": {"person_weights": None, "fps": 1}})
    zone = ExitZoneConfig(id="left", polygon=LEFT, dwell_s=4, clear_s=1)
    detectors = DetectorSet(cfg)
    detectors.watch(Camera("c", "hotel-1", CameraDetectors(camera_id="c", smoke_fire=False, exits=[zone])))
    assert set(detectors.watched_by("c")) == {"exits"} and detectors.fps("c") == 1
    exits = detectors.exits
    assert exits is not None
    clear, blocked = scene(), with_box(scene(), LEFT)
    watcher = exits.watcher("c")
    assert watcher is not None
    events = [e for i in range(0, 5) for e in detectors.process([Sample("c", i / 4, clear)])]  # 4 fps
    assert events == [] and len(watcher._auto) == 2  # analysed at 0 s and 1 s only: its own 1 fps
    events = [e for i in range(5, 40) for e in detectors.process([Sample("c", i / 4, clear)])]
    assert events == [] and watcher.ref is not None  # 10 analysed: the auto reference is taken
    events = [e for i in range(40, 120) for e in detectors.process([Sample("c", i / 4, blocked)])]
    assert [(type(e), e.zone_id, e.unit_id) for e in events] == [(ExitHazard, "left", "hotel-1")]  # type: ignore[union-attr]
