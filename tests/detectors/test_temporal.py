"""The temporal check of smoke/fire confirmation (detectors/temporal.py): a still picture under camera drift, sensor
noise and JPEG shows no change inside its box; flickering content does. No model: synthetic pictures, a few frames."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from config.detectors import Confirmation, TemporalCheck
from detectors.model import Box
from detectors.temporal import TemporalGate, change, small_grey, unexplained, window_passes

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
    assert all(c.update(i * 0.5, fire, lambda *_: False) == [] for i in range(4))  # k hits, but nothing changed
    out = c.update(2.0, fire, lambda *_: True)
    assert len(out) == 1 and out[0].started_at == 0.0
    assert c.update(2.5, fire, lambda *_: True) == []  # one alarm per event, as without the check


def _background(seed: int = 5) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 3)


def _camera(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise σ 3 and JPEG q70, as a camera sends it."""
    import cv2

    noisy = np.clip(frame.astype(np.float32) + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)


def _flame_patch() -> np.ndarray:
    """The flame-like blob with its surround, 160×200, softened: the background carries the frame's structure, as a
    street or a garden does (the global shift then follows the camera, not the moving patch)."""
    import cv2

    return cv2.GaussianBlur(_picture(4)[170:370, 280:440], (0, 0), 4)


def _paste(bg: np.ndarray, patch: np.ndarray, x: int, y: int, angle: float = 0.0) -> np.ndarray:
    import cv2

    h, w = patch.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h), angle, 1.0)
    m[:, 2] += (x, y)
    size = (bg.shape[1], bg.shape[0])
    mask = cv2.warpAffine(np.full((h, w), 255, np.uint8), m, size, flags=cv2.INTER_NEAREST)
    return np.where(mask[..., None] > 0, cv2.warpAffine(patch, m, size), bg)


def _gate_over(frames: list[np.ndarray], boxes: list[tuple[float, float, float, float]]) -> TemporalGate:
    gate = TemporalGate(TemporalCheck(), Confirmation().n)
    for f, b in zip(frames, boxes, strict=True):
        gate.observe(f, [("fire", Box(1, 0.9, b))])
    return gate


def test_content_that_moves_rigidly_through_a_box_does_not_pass_and_flicker_does() -> None:
    """A fire picture driven through a fixed box (a car through the boxes of a road), one swaying about a pivot (a
    branch) and one followed by its box: the picture inside the box changes — the old check let them through — but
    the local motion explains the change. The same patch flickering in place passes."""
    rng = np.random.default_rng(7)
    bg, patch = _background(), _flame_patch()
    fixed = (200.0, 140.0, 440.0, 340.0)
    drive = [_camera(_paste(bg, patch, 150 + 30 * i, 140), rng) for i in range(6)]  # 60 px/s at 2 fps
    sway = [_camera(_paste(bg, patch, 240 + round(20 * np.sin(i * 2.1)), 140, 4 * np.sin(i * 2.1)), rng)
            for i in range(6)]
    follow = [_camera(_paste(bg, patch, 100 + 45 * i, 150), rng) for i in range(6)]
    flicker = []
    for _ in range(6):
        p = patch.copy()
        tongues = np.kron(rng.integers(-80, 80, (200 // 20, 160 // 20)), np.ones((20, 20), int))
        p[...] = np.clip(p.astype(int) + tongues[..., None], 0, 255)
        flicker.append(_camera(_paste(bg, p, 240, 140), rng))
    for name, frames, boxes in (("drive", drive, [fixed] * 6), ("sway", sway, [fixed] * 6),
                                ("follow", follow, [(100.0 + 45 * i, 150.0, 260.0 + 45 * i, 350.0) for i in range(6)])):
        g = _gate_over(frames, boxes)
        changes = [c for c in g.changes["fire"] if c is not None]
        assert not g.passes("fire"), (name, changes)
        if name != "follow":  # the picture in the box changed: only the motion test stops it
            assert max(c.score for c in changes) >= TemporalCheck().min_change, (name, changes)
        cfg = TemporalCheck()  # the motion test runs only on frames whose change passed
        assert all(c.unexplained < cfg.min_unexplained for c in changes if c.score >= cfg.min_change), (name, changes)
    g = _gate_over(flicker, [(240.0, 140.0, 400.0, 340.0)] * 6)
    assert g.passes("fire"), list(g.changes["fire"])


def test_unexplained_follows_the_content_not_the_camera() -> None:
    """The camera's drift and a plain rigid shift leave nothing unexplained; a changed patch does."""
    rng = np.random.default_rng(3)
    img = _picture(2)
    a, b = img[10:490, 10:650], img[14:494, 22:662]  # the camera moved 12 px, 4 px
    assert unexplained(_camera(a, rng), _camera(b, rng), [BOX], TemporalCheck()) < 0.02
    c = b.copy()
    c[200:280, 280:360] = 255 - c[200:280, 280:360]
    assert unexplained(_camera(a, rng), _camera(c, rng), [BOX], TemporalCheck()) > 0.15


def test_one_changed_frame_passes_unless_motion_explains_it() -> None:
    from detectors.temporal import Change

    cfg = TemporalCheck(min_change=0.1, min_unexplained=0.1, min_frames=1)
    changed, still = Change(0.15, 0.0, (0, 0), 0.5), Change(0.02, 0.0, (0, 0), 0.5)
    rigid = Change(0.6, 0.0, (0, 0), 0.01)  # much change, all of it explained by motion
    assert window_passes(cfg, [None, changed, None, still])
    assert not window_passes(cfg, [None, still, still])
    assert not window_passes(cfg, [None, rigid, rigid, rigid])
    assert window_passes(TemporalCheck(enabled=False), [None])
