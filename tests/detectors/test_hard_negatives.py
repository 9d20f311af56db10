"""Officer-taught hard negatives per camera (detectors/hard_negatives.py), with the default pipeline (no verifier)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from config.detectors import CameraDetectors, DetectorsConfig
from detectors.fire import FireDetector
from detectors.hard_negatives import HardNegatives
from detectors.model import Box
from detectors.train import save_hard_negative

KITCHEN, LOBBY = CameraDetectors(camera_id="kitchen"), CameraDetectors(camera_id="lobby")


def scene(colour: tuple[int, int, int] = (0, 140, 255)) -> np.ndarray:
    img = np.full((240, 320, 3), 70, np.uint8)
    img[80:160, 100:180] = colour  # a flame-coloured patch: a stove, a lit sign
    return img


def jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def mark(folder: Path, img: np.ndarray, box: list[float], *, camera: str | None, name: str) -> None:
    meta = {"camera_id": camera} if camera else {}
    save_hard_negative(jpeg(img), [{"class": "fire", "confidence": 0.7, "box": box}], folder, name=name, meta=meta)


def test_a_marked_box_is_dropped_on_its_camera_only_and_only_where_and_as_it_was(tmp_path: Path) -> None:
    img = scene()
    mark(tmp_path, img, [100, 80, 180, 160], camera="kitchen", name="incident-7")
    hard = HardNegatives.load(tmp_path)
    assert len(hard) == 1
    assert hard.matches("kitchen", img, "fire", (102, 82, 178, 158))  # same place, same look
    big = cv2.resize(img, (640, 480))
    assert hard.matches("kitchen", big, "fire", (204, 164, 356, 316))  # the camera's resolution changed
    assert not hard.matches("lobby", img, "fire", (102, 82, 178, 158))  # another camera
    assert not hard.matches("kitchen", img, "smoke", (102, 82, 178, 158))  # another class
    assert not hard.matches("kitchen", img, "fire", (60, 40, 260, 220))  # spread well beyond the marked place
    blue = scene((200, 90, 40))
    assert not hard.matches("kitchen", blue, "fire", (102, 82, 178, 158))  # something else in that place
    assert not hard.matches(None, img, "fire", (102, 82, 178, 158))  # a picture of no camera (detect-image)


def test_the_camera_of_an_older_file_comes_from_its_alarm_id_and_damage_is_skipped(tmp_path: Path) -> None:
    img = scene()
    mark(tmp_path, img, [100, 80, 180, 160], camera=None, name="video-cam-2-fire-1700000000123")
    mark(tmp_path, img, [100, 80, 180, 160], camera=None, name="no-camera-known")  # cannot be placed: skipped
    save_hard_negative(jpeg(img), [{"class": "fire", "confidence": "x", "box": [1, 2]}, 7], tmp_path,
                       name="video-cam-2-fire-2", meta={})
    (tmp_path / "train" / "rejected" / "truncated.json").write_text('{"boxes": [')
    hard = HardNegatives.load(tmp_path)
    assert list(hard.marked) == ["cam-2"] and len(hard) == 1


def test_officers_teach_the_default_pipeline_a_false_alarm(fire_detector, fire8: Path, tmp_path: Path) -> None:
    """A real flame the officers mark false on one camera (think of a stove) stops passing there at once; it
    still passes on other cameras, and other fires on that camera still pass."""
    cfg = DetectorsConfig.model_validate({"hard_negatives_dir": str(tmp_path)})  # defaults: learns hard negatives
    assert cfg.second_stage.verifier is None  # the default has no verifier: the lesson does not depend on one
    det = FireDetector(cfg, runner=fire_detector.runner)
    passing: list[tuple[np.ndarray, Box]] = []
    for p in sorted((fire8 / "valid" / "images").glob("*.jpg")):
        img = cv2.imread(str(p))
        kept = det.keep(img, det.detect([img])[0], KITCHEN)
        if kept:
            passing.append((img, kept[0][1]))
    assert len(passing) >= 10
    (stove_img, stove), others = passing[0], passing[1:]
    _ok, buf = cv2.imencode(".jpg", stove_img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    box = {"class": det.class_name(stove.cls), "confidence": stove.conf, "box": list(stove.xyxy)}
    save_hard_negative(buf.tobytes(), [box], tmp_path, name="video-kitchen-fire-1", meta={"camera_id": "kitchen"})
    assert det.keep(stove_img, [stove], KITCHEN) != []  # not yet learned
    det.relearn()  # what the core does after an officer marks a video alarm false
    assert det.keep(stove_img, [stove], KITCHEN) == []
    assert det.keep(stove_img, [stove], LOBBY) != []
    still = [det.keep(img, [b], KITCHEN) != [] for img, b in others]
    assert np.mean(still) >= 0.9, still
