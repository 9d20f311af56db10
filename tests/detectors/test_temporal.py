"""The temporal check of smoke/fire confirmation (detectors/temporal.py): a still picture under camera drift, sensor
noise and JPEG shows no change inside its box; flickering content does. No model: synthetic pictures, a few frames."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from config.detectors import Confirmation, TemporalCheck
from detectors.model import Box
from detectors.temporal import TemporalGate, change, small_grey

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from detect_video import still_scene

BOX = (240.0, 160.0, 400.0, 320.0)  # pixels of the 640×480 still-scene frames


def _picture(seed: int = 0) -> np.ndarray:
    """A textured 'photo' with a bright, sharp-edged flame-like blob in the middle (edges are what a drifting
    picture's residual comes from)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (540, 720, 3), dtype=np.uint8), (0, 0), 3)
    cv2.ellipse(img, (360, 270), (70, 100), 0, 0, 360, (30, 140, 250), -1)
    cv2.ellipse(img, (360, 300), (35, 50), 0, 0, 360, (200, 240, 255), -1)
    return img


def _sampled(frames: list[tuple[float, np.ndarray]]) -> list[np.ndarray]:
    return [f for i, (_, f) in enumerate(frames) if i % 5 == 0]  # the camera's 2 fps of a 10 fps stream


def test_a_drifting_still_picture_never_passes_and_flicker_does() -> None:
    frames = _sampled(list(still_scene(_picture(), 4.0, seed=3)))
    kept = [("fire", Box(1, 0.9, BOX))]
    still = TemporalGate(TemporalCheck(enabled=True), Confirmation().n)
    for f in frames:
        still.observe(f, kept)
    assert not still.passes("fire"), list(still.scores["fire"])
    assert all(s is not None and s < 0.05 for s in list(still.scores["fire"])[1:])

    rng = np.random.default_rng(1)
    flicker = TemporalGate(TemporalCheck(enabled=True), Confirmation().n)
    for f in frames:
        f = f.copy()
        x1, y1, x2, y2 = (int(v) for v in BOX)
        tongues = np.kron(rng.integers(-80, 80, ((y2 - y1) // 16, (x2 - x1) // 16)), np.ones((16, 16), int))
        f[y1:y2, x1:x2] = np.clip(f[y1:y2, x1:x2].astype(int) + tongues[..., None], 0, 255)  # flickering patches
        flicker.observe(f, kept)
    assert flicker.passes("fire"), list(flicker.scores["fire"])
    assert not flicker.passes("smoke")  # no smoke boxes: no evidence for smoke


def test_change_compensates_a_shift_and_leaves_its_inputs_alone() -> None:
    img = _picture(2)
    a = small_grey(img[10:490, 10:650], 160)
    b = small_grey(img[10:490, 18:658], 160)  # the camera moved 8 px (2 px of the small copy)
    a0, b0 = a.copy(), b.copy()
    c = change(a, b, [BOX], 0.25, 8.0)
    assert abs(c.shift[0] + 2.0) < 0.3 and abs(c.shift[1]) < 0.3, c
    assert c.inside < 0.05 and c.score < 0.05, c
    assert np.array_equal(a, a0) and np.array_equal(b, b0)  # phaseCorrelate's window is applied to copies


def test_disabled_gate_always_passes() -> None:
    assert TemporalGate(TemporalCheck(enabled=False), 6).passes("fire")


def test_confirmation_waits_for_the_check_and_stays_armed() -> None:
    from detectors.fire import Confirmer

    c = Confirmer(k=2, n=3, min_overlap=0.05, rearm_after_s=10)
    fire = [("fire", Box(1, 0.8, (0.0, 0.0, 50.0, 50.0)))]
    assert all(c.update(i * 0.5, fire, lambda _: False) == [] for i in range(4))  # k hits, but nothing changed
    out = c.update(2.0, fire, lambda _: True)
    assert len(out) == 1 and out[0].started_at == 0.0
    assert c.update(2.5, fire, lambda _: True) == []  # one alarm per event, as without the check
