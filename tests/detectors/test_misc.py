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
from detectors.worker import fire_payload, hazard_payload, parse_detection_message, topic

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
    from ingest.contract import ExitHazard

    jpeg = cv2.imencode(".jpg", np.zeros((480, 1280, 3), np.uint8))[1].tobytes()
    rec = {"camera_id": "cam1", "alarm_id": "video-cam1-smoke-1", "t": 1_700_000_000.0, "type": "video_smoke",
           "confidence": 0.7, "boxes": [], "width": 1280, "height": 480, "jpeg": jpeg}
    tp = topic("firelink", "cam1")
    msg = parse_detection_message(tp, json.dumps(fire_payload(rec, "U1")).encode())
    assert msg is not None and msg.alarm is not None
    assert (msg.alarm.kind, msg.alarm.unit_id, msg.alarm.source, msg.alarm.device_id) == ("video_smoke", "U1",
                                                                                        "video", "cam1")
    assert msg.jpeg and msg.jpeg[:2] == b"\xff\xd8"
    now = datetime.now(UTC)
    hz = ExitHazard("cam1", "z", now, now, 0.4, jpeg, jpeg, "North", "U1")
    got = parse_detection_message(tp, json.dumps(hazard_payload(hz)).encode())
    assert got is not None and isinstance(got.exit_event, ExitHazard) and got.exit_event.fraction == 0.4
    assert parse_detection_message(tp, b"{not json") is None
    wrong = "firelink/cameras/other/detections"
    assert parse_detection_message(wrong, json.dumps(fire_payload(rec, "U1")).encode()) is None


def test_cli_detect_image_json(fire8: Path, vtest_frames, tmp_path: Path, capsys) -> None:
    from detectors.cli import add_commands

    p = argparse.ArgumentParser()
    add_commands(p.add_subparsers(dest="command"))
    hall = tmp_path / "hall.jpg"
    cv2.imwrite(str(hall), vtest_frames[0])
    fire = sorted((fire8 / "valid" / "images").glob("fire2_mp4-6*.jpg"))[0]
    args = p.parse_args(["detect-image", "--json", str(hall), str(fire)])
    assert args.detectors_handler(None, args) == 0
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
