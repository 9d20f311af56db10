"""Smoke/fire: confirmation logic, masks, the image decision, and real video (vtest.avi, fire8 frames)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from config.detectors import CameraDetectors, DetectorsConfig
from detectors.base import Camera
from detectors.fire import Confirmed, Confirmer
from detectors.model import Box
from detectors.plugins.smoke_fire import SmokeFire, alarm_detection
from ingest.contract import AlarmDetection


def smoke(x: float, conf: float = 0.6) -> tuple[str, Box]:
    return ("smoke", Box(0, conf, (x, 100.0, x + 80, 180.0)))


def test_single_frame_never_alarms() -> None:
    c = Confirmer(k=4, n=6, min_overlap=0.05, rearm_after_s=120)
    assert c.update(0.0, [smoke(100)]) == []
    for i in range(1, 6):
        assert c.update(i * 0.5, []) == []


def test_k_of_n_in_the_same_region_confirms_once() -> None:
    c = Confirmer(k=4, n=6, min_overlap=0.05, rearm_after_s=10)
    seq = [[smoke(100)], [], [smoke(105)], [smoke(110)], [smoke(112)]]
    out = [c.update(i * 0.5, s) for i, s in enumerate(seq)]
    assert [len(o) for o in out] == [0, 0, 0, 0, 1]
    ev = out[-1][0]
    assert ev.kind == "video_smoke" and ev.started_at == 0.0
    # still smoking: no second alarm for the same event
    assert all(c.update(3 + i * 0.5, [smoke(112)]) == [] for i in range(20))
    # quiet for rearm_after_s, then a new event raises a new alarm (new start time → new alarm id)
    for i in range(25):
        c.update(14 + i * 0.5, [])
    out = [c.update(30 + i * 0.5, [smoke(300)]) for i in range(4)]
    assert len(out[-1]) == 1 and out[-1][0].started_at == 30.0


def test_hits_in_different_places_do_not_add_up() -> None:
    c = Confirmer(k=3, n=4, min_overlap=0.05, rearm_after_s=10)
    xs = [0, 300, 600, 0, 300, 600, 0, 300]
    assert all(c.update(i * 0.5, [smoke(x)]) == [] for i, x in enumerate(xs))


def test_masks_drop_boxes(fire_detector) -> None:
    from detectors.fire import FireDetector

    # the mask is the subject here: a plain grey "smoke" box that the colour rules pass and no verifier judges
    det = FireDetector(fire_detector.cfg, runner=fire_detector.runner, verifier=None)
    img = np.full((400, 400, 3), 128, np.uint8)
    box = Box(0, 0.9, (50.0, 50.0, 150.0, 150.0))
    cam = CameraDetectors(camera_id="c", masks=[[(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)]])
    assert det.keep(img, [box], CameraDetectors(camera_id="c")) != []
    assert det.keep(img, [box], cam) == []


def _fire8_sequence(fire8: Path, video: str) -> list[Path]:
    paths = [p for split in ("train", "valid") for p in (fire8 / split / "images").glob(f"{video}-*.jpg")]
    return sorted(paths, key=lambda p: int(re.search(r"-(\d+)_jpg", p.name).group(1)))  # type: ignore[union-attr]


def test_image_decision_on_fire8_and_everyday_frames(fire_detector, fire8: Path, vtest_frames) -> None:
    """The default decision is the model's own at the thresholds chosen leave one source out (no second stage):
    an image alarms exactly when a smoke box reaches the smoke threshold or a fire box the fire threshold."""
    th = fire_detector.cfg.thresholds
    seq = _fire8_sequence(fire8, "fire2_mp4")[:16]
    decisions = [fire_detector.image_decision(cv2.imread(str(p))) for p in seq]
    assert all(d["alarm"] == (d["smoke"] >= th.smoke or d["fire"] >= th.fire) for d in decisions), decisions
    assert sum(d["alarm"] for d in decisions) >= 8, decisions  # 11 of 16 measured
    d = fire_detector.image_decision(vtest_frames[0])
    assert set(d) >= {"smoke", "fire", "alarm"} and d["alarm"] is False


def test_vtest_hour_loop_raises_no_alarm(fire_detector, dcfg: DetectorsConfig, vtest_frames) -> None:
    """An hour of people walking through a hall (vtest.avi looped, sampled at 2 fps) → zero alarms.

    The model runs once on every sampled frame of the clip (159 frames); the hour is then replayed
    through the camera pipeline with those real model outputs, 45 loops of the 79.5 s clip.
    """
    sampled = vtest_frames[::5]  # 10 fps clip, 2 fps sampling
    boxes = fire_detector.detect(sampled)
    smoke_fire = SmokeFire(dcfg, fire_detector)
    smoke_fire.watch(Camera("hall", "U1", CameraDetectors(camera_id="hall")))
    events: list[AlarmDetection] = []
    t = 0.0
    while t < 3600:
        for f, b in zip(sampled, boxes, strict=True):
            events += smoke_fire.on_boxes("hall", t, f, b)
            t += 0.5
    raw = sum(1 for b in boxes for _ in b)
    print(f"vtest: {raw} raw boxes ≥ lowest threshold in {len(sampled)} frames; alarms {len(events)}", file=sys.stderr)
    assert events == []


@pytest.mark.parametrize("video", ["fire2_mp4", "newsmoke1_mp4"])
def test_smoke_clip_alarms_within_8s(fire_detector, dcfg: DetectorsConfig, fire8: Path, vtest_frames,
                                     tmp_path: Path, video: str) -> None:
    """A clip: 10 s of the hall, then a real fire/smoke CCTV sequence (fire8 frames of one video, 2 per second).
    `detect-video` on it must raise the alarm within 8 s of the first smoke frame, and not before.

    Measured 6.0 s (fire2) and 7.0 s (newsmoke1) with the default chosen leave one source out. The earlier bound,
    5 s, held for a verifier whose table contained these very frames (fire8 train); ≤ 5 s on clips of sources no
    stage was tuned on is issue 13 part 3's target (video-level truth), not met by this test's clips today."""
    from detectors.cli import video_events

    seq = _fire8_sequence(fire8, video)[:16]
    clip = tmp_path / "smoke.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (608, 608))
    for f in vtest_frames[:100]:
        w.write(cv2.resize(f, (608, 608)))
    for p in seq:
        img = cv2.imread(str(p))
        for _ in range(5):
            w.write(img)
    w.release()
    events = list(video_events(clip, dcfg, CameraDetectors(camera_id="clip")))
    assert events, "no alarm"
    first = events[0]
    assert first["type"] in ("video_smoke", "video_fire")
    assert 10.0 <= first["t"] <= 18.0, events
    assert first["alarm_id"].startswith("video-clip-")


def test_confirmed_region_becomes_the_contract_alarm_detection(dcfg: DetectorsConfig) -> None:
    """What the smoke/fire plug-in emits is the edge contract's AlarmDetection: the alarm and its frame."""
    img = np.zeros((100, 120, 3), np.uint8)
    boxes = [Box(1, 0.8, (1.0, 2.0, 30.0, 40.0), verifier=0.9)]
    c = Confirmed("fire", "video_fire", 0.5, 0.8, boxes)
    det = alarm_detection(Camera("cam1", "U1", CameraDetectors(camera_id="cam1")), 1.0, img, c)
    a = det.alarm
    assert (a.alarm_id, a.unit_id, a.kind, a.source, a.device_id) == ("video-cam1-fire-500", "U1", "video_fire",
                                                                      "video", "cam1")
    assert a.received_at.tzinfo is not None and a.device_ts is not None and "fire" in a.note
    f = det.frame
    assert (f.t, f.confidence, f.width, f.height) == (1.0, 0.8, 120, 100)
    assert f.boxes == ({"class": "fire", "confidence": 0.8, "box": [1.0, 2.0, 30.0, 40.0], "verifier": 0.9},)
    assert f.jpeg[:2] == f.raw_jpeg[:2] == b"\xff\xd8" and f.jpeg != f.raw_jpeg  # boxes drawn on one only
    from detectors.worker import fire_payload

    assert fire_payload(det).alarm_id == a.alarm_id  # a valid MQTT message as it is


def test_registry_builds_the_detectors_a_camera_asks_for(dcfg: DetectorsConfig) -> None:
    from detectors.base import registry, wanted_by

    assert {"smoke_fire", "exits"} <= set(registry())
    assert set(wanted_by(CameraDetectors(camera_id="a"))) == {"exits", "smoke_fire"}
    assert "smoke_fire" not in wanted_by(CameraDetectors(camera_id="a", smoke_fire=False))
    with pytest.raises(ValueError, match=r"unknown detector.*no_such"):
        wanted_by(CameraDetectors(camera_id="a", plugins={"no_such": {}}))


def test_a_still_fire_picture_never_alarms_and_a_still_wall_never(
        fire_detector, dcfg: DetectorsConfig, fire8: Path) -> None:
    """bench/detect_video.py's still scenes (pan, zoom, sensor noise, JPEG) through the live pipeline. The model takes a
    picture of a fire seen by a fixed camera for a fire in every frame — without the temporal check it alarms within
    seconds — but nothing changes inside its box beyond the camera's drift, so with the check (the default) it never
    alarms: on a real camera a photo of a fire on a wall or a poster is a false alarm. A featureless wall never."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from detect_video import STILL_FPS, run_clip, still_scene

    fire = cv2.imread(str(_fire8_sequence(fire8, "fire2_mp4")[8]))
    frames = list(still_scene(fire, 6.0, seed=1))
    assert len(frames) == 6 * STILL_FPS and frames[0][1].shape == (480, 640, 3)
    assert not np.array_equal(frames[0][1], frames[-1][1])  # the camera drifts and its sensor is noisy
    assert [t for t, _ in still_scene(fire, 6.0, seed=1)][:3] == [0.0, 0.1, 0.2]
    assert dcfg.confirmation.temporal.enabled
    r = run_clip("still", "fire", iter(frames), dcfg)
    assert r.alarms == 0, r
    unchecked = dcfg.model_copy(update={"confirmation": dcfg.confirmation.model_copy(
        update={"temporal": dcfg.confirmation.temporal.model_copy(update={"enabled": False})})})
    r = run_clip("still", "fire", iter(frames), unchecked)
    assert 1 <= r.alarms <= 2 and r.first_alarm_s is not None and r.first_alarm_s <= 5.0, r
    wall = np.full((480, 640, 3), 128, np.uint8)
    assert run_clip("still", "wall", still_scene(wall, 6.0, seed=2), dcfg).alarms == 0
