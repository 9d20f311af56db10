"""Weights loading, configuration, hard negatives, the MQTT message contract and the CLI."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pydantic
import pytest

from config import detectors as C
from detectors.train import save_hard_negative
from detectors.worker import detection_payload, fire_payload, hazard_payload, parse_detection_message, topic

ROOT = Path(__file__).resolve().parents[2]


def test_weights_load_without_touching_main() -> None:
    code = (
        "import sys; from detectors.model import YoloRunner; r = YoloRunner('fire-detector', imgsz=320);"
        "assert r.names == {0: 'smoke', 1: 'fire'}, r.names;"
        "assert not hasattr(sys.modules['__main__'], 'FasterNetC2f');"
        "assert 'fire_detector' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_every_config_field_has_title_and_description() -> None:
    for model in (C.Thresholds, C.Confirmation, C.SecondStage, C.ExitZoneConfig, C.ExitAnalysis,
                  C.CameraDetectors, C.DetectorsConfig):
        for name, f in model.model_fields.items():
            assert f.title and f.description, f"{model.__name__}.{name}"


def test_config_rejects_typos_and_bad_geometry() -> None:
    with pytest.raises(pydantic.ValidationError):
        C.DetectorsConfig.model_validate({"weigths": "x"})
    with pytest.raises(pydantic.ValidationError):
        C.ExitZoneConfig(id="z", polygon=[(0, 0), (1.5, 0), (1, 1)])
    with pytest.raises(pydantic.ValidationError):
        C.Confirmation(k=5, n=3)
    d = C.DetectorsConfig(cameras=[C.CameraDetectors(camera_id="a", enabled=False)])
    assert d.for_camera("a") is None and d.for_camera("b") is not None
    z = C.ExitZoneConfig(id="z", polygon=[(0, 0), (1, 0), (1, 1)])
    assert z.dwell_s == 600 and C.CameraDetectors(camera_id="x").fps == 2


def test_hard_negative_is_a_yolo_negative(tmp_path: Path) -> None:
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    img = save_hard_negative(jpeg, [{"class": "fire", "confidence": 0.7, "box": [1, 2, 30, 40]}], tmp_path,
                             name="cam1-alarm7")
    assert img == tmp_path / "train" / "images" / "cam1-alarm7.jpg" and img.read_bytes() == jpeg
    assert (tmp_path / "train" / "labels" / "cam1-alarm7.txt").read_text() == ""
    assert json.loads((tmp_path / "train" / "rejected" / "cam1-alarm7.json").read_text())["boxes"]
    from detectors.train import _splits

    assert _splits(tmp_path)["train"] == (tmp_path / "train" / "images").resolve()


def test_mqtt_detection_message_round_trip() -> None:
    """A worker's payload (built from the same pydantic models the core validates with) parses back into the
    same typed event an in-process detector emits."""
    from ingest.contract import AlarmDetection, AlarmIn, DetectionFrame, ExitCleared, ExitHazard, video_alarm_note

    jpeg = cv2.imencode(".jpg", np.zeros((480, 1280, 3), np.uint8))[1].tobytes()
    box = {"class": "smoke", "confidence": 0.7, "box": [1.0, 2.0, 30.0, 40.0]}
    alarm = AlarmIn("video-cam1-smoke-1", "U1", "video_smoke", "video", datetime.now(UTC), device_id="cam1")
    det = AlarmDetection(alarm, DetectionFrame(1_700_000_000.0, 0.7, (box,), 1280, 480, jpeg, raw_jpeg=jpeg))
    tp = topic("firelink", "cam1")
    msg = parse_detection_message(tp, fire_payload(det).model_dump_json().encode())
    assert isinstance(msg, AlarmDetection)
    assert (msg.alarm.alarm_id, msg.alarm.kind, msg.alarm.unit_id, msg.alarm.source, msg.alarm.device_id) == (
        "video-cam1-smoke-1", "video_smoke", "U1", "video", "cam1")
    assert msg.alarm.note == video_alarm_note("cam1", "video_smoke", 0.7)  # the same text as in process
    assert (msg.frame.t, msg.frame.confidence, msg.frame.boxes, msg.frame.height) == (1_700_000_000.0, 0.7, (box,),
                                                                                     480)
    shrunk = cv2.imdecode(np.frombuffer(msg.frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert msg.frame.jpeg[:2] == b"\xff\xd8" and shrunk.shape[1] == 640 and msg.frame.raw_jpeg == b""
    now = datetime.now(UTC)
    hz = ExitHazard("cam1", "z", now, now, 0.4, jpeg, jpeg, "North", "U1")
    got = parse_detection_message(tp, hazard_payload(hz).model_dump_json().encode())
    assert isinstance(got, ExitHazard) and got.fraction == 0.4 and got.zone_name == "North" and got.unit_id == "U1"
    cleared = ExitCleared("cam1", "z", now, now, now, 0.05, jpeg, "North", "U1")
    back = parse_detection_message(tp, detection_payload(cleared).model_dump_json().encode())
    assert isinstance(back, ExitCleared) and back.cleared_at == now
    assert parse_detection_message(tp, b"{not json") is None
    wrong = "firelink/cameras/other/detections"
    assert parse_detection_message(wrong, fire_payload(det).model_dump_json().encode()) is None
    with pytest.raises(pydantic.ValidationError):  # a worker cannot publish what the core would refuse
        fire_payload(AlarmDetection(AlarmIn("../x", "U1", "video_smoke", "video", now, device_id="cam1"), det.frame))


def test_cli_detect_image_json(fire8: Path, vtest_frames, tmp_path: Path, capsys) -> None:
    from detectors.cli import add_commands

    p = argparse.ArgumentParser()
    add_commands(p.add_subparsers(dest="command"))
    hall = tmp_path / "hall.jpg"
    cv2.imwrite(str(hall), vtest_frames[0])
    fire = sorted((fire8 / "valid" / "images").glob("fire2_mp4-6*.jpg"))[0]
    args = p.parse_args(["detect-image", "--json", str(hall), str(fire)])
    assert args.handler(None, args) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [set(x) for x in lines] == [{"path", "smoke", "fire", "alarm"}] * 2
    assert lines[0]["alarm"] is False and lines[1]["alarm"] is True


def test_loading_weights_leaves_pil_and_pip_alone(fire_detector: object) -> None:
    """ultralytics wraps PIL.Image.open to pip-install pi-heif on unreadable images; the loader undoes it."""
    import io

    from PIL import Image, UnidentifiedImageError

    assert Image.open.__module__.startswith("PIL")
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"not an image"))
    from ultralytics.utils import AUTOINSTALL

    assert AUTOINSTALL is False
