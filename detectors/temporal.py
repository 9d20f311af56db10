"""Smoke/fire: the temporal check of a camera's confirmation — does the picture change inside the candidate boxes?

Real flames flicker and smoke moves; a picture of a fire (a poster, a screen, a photo on the wall) or a fire-coloured
object seen by a fixed camera does not change inside its box, except by the camera's own near-rigid shift, sensor
noise and compression. For every sampled frame of a camera whose boxes passed the per-box stages, `change` compares
the box region (union of that class's boxes) with the previous sampled frame after compensating the global
translation (phase correlation on a small grey copy of the whole frame), relative to the same residual outside the
boxes. Change that the boxes' own content explains by moving — a car driving through, a branch swaying, a poster
carried past — is not evidence of fire: `unexplained` warps the previous frame's crop around the boxes by the dense
optical flow between the two crops (Farneback, `flow_size` px) and keeps the fraction of box pixels still changed.
Flames flicker and smoke grows and thins, which no smooth motion field reproduces. `window_passes` then lets k-of-n
confirmation fire only when enough of the window's frames changed and were not explained by motion.

Cost: only frames with candidate boxes, on a `size`-px-wide grey copy (two resizes, one phase correlation, one warp;
well under a millisecond at 160 px) plus, on frames whose change passed, one optical flow on two `flow_size`-px
crops (about 2 ms on this VM under load).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from config.detectors import TemporalCheck
from detectors.model import Box

BORDER = 2  # pixels of the small copy ignored at its edges (the warp's border)


@dataclass(frozen=True, slots=True)
class Change:
    """How one box region changed between two sampled frames, after compensating the camera's global shift."""

    inside: float  # fraction of the region's pixels whose residual exceeds the pixel threshold
    outside: float  # the same fraction over the rest of the frame (global change: lighting, noise, a pan)
    shift: tuple[float, float]  # global translation found, pixels of the small copy
    unexplained: float = 1.0  # fraction of the boxes' pixels still changed after warping by the local motion

    @property
    def score(self) -> float:
        """Change inside the boxes beyond the change of the whole scene."""
        return self.inside - self.outside

    def changed(self, cfg: TemporalCheck) -> bool:
        """Enough change inside the boxes, and enough of it not explained by the content moving."""
        return self.score >= cfg.min_change and self.unexplained >= cfg.min_unexplained


def small_grey(frame: np.ndarray, size: int) -> np.ndarray:
    """A `size`-px-wide float32 grey copy (area averaging: it also averages sensor noise away)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    h, w = grey.shape[:2]
    sh = max(8, round(h * size / w))
    return cv2.resize(grey, (size, sh), interpolation=cv2.INTER_AREA).astype(np.float32)


def _box_mask(shape: tuple[int, ...], boxes: Sequence[tuple[float, float, float, float]],
              origin: tuple[float, float], scale: tuple[float, float]) -> np.ndarray:
    """The pixels of `boxes` (full-frame pixels) in an image of `shape` whose pixel (0, 0) is the frame's `origin`
    and whose pixels are `scale` (x, y) of the frame's."""
    inner = np.zeros(shape[:2], bool)
    (ox, oy), (sx, sy) = origin, scale
    for x1, y1, x2, y2 in boxes:
        inner[max(0, int((y1 - oy) * sy)) : max(0, int(np.ceil((y2 - oy) * sy))),
              max(0, int((x1 - ox) * sx)) : max(0, int(np.ceil((x2 - ox) * sx)))] = True
    return inner


def change(prev: np.ndarray, cur: np.ndarray, boxes: Sequence[tuple[float, float, float, float]], scale: float,
           pixel_threshold: float) -> Change:
    """Change of the union of `boxes` (pixels of the full frame; `scale` maps them onto the small copies) between two
    small grey copies of equal shape."""
    h, w = cur.shape
    win = cv2.createHanningWindow((w, h), cv2.CV_32F)
    # windowed copies: OpenCV's phaseCorrelate(a, b, window) windows its inputs in place
    (dx, dy), _ = cv2.phaseCorrelate(prev * win, cur * win)
    m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    moved = cv2.warpAffine(prev, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    changed = np.abs(cur - moved) > pixel_threshold
    inner = _box_mask((h, w), boxes, (0.0, 0.0), (scale, scale))
    valid = np.zeros((h, w), bool)
    b = BORDER + int(np.ceil(max(abs(dx), abs(dy))))
    valid[b : h - b, b : w - b] = True
    ins, out = inner & valid, ~inner & valid
    inside = float(changed[ins].mean()) if ins.any() else 0.0
    outside = float(changed[out].mean()) if out.sum() >= 0.05 * h * w else 0.0
    return Change(inside, outside, (float(dx), float(dy)))


def _region(boxes: Sequence[tuple[float, float, float, float]], margin: float, w: int,
            h: int) -> tuple[int, int, int, int]:
    """The union of `boxes` grown by `margin` of its size on every side (content that moves in comes from there)."""
    x1, y1 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x2, y2 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    return max(0, int(x1 - mx)), max(0, int(y1 - my)), min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))


def _grey_crop(frame: np.ndarray, region: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    x1, y1, x2, y2 = region
    crop = cv2.resize(frame[y1:y2, x1:x2], size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop


def unexplained(prev: np.ndarray, cur: np.ndarray, boxes: Sequence[tuple[float, float, float, float]],
                cfg: TemporalCheck) -> float:
    """Fraction of the pixels of `boxes` (full frames, pixels) that differ by more than `residual_threshold` grey
    levels once the previous frame is warped by the dense optical flow of the region around them (`flow_margin`),
    both crops resampled to `flow_size` px on their long side. Near 0 when the content moved as a whole or in smooth
    parts (a car, a swaying branch, the camera's drift or zoom); high when it changed shape or brightness."""
    h, w = cur.shape[:2]
    region = _region(boxes, cfg.flow_margin, w, h)
    x1, y1, x2, y2 = region
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    s = cfg.flow_size / max(x2 - x1, y2 - y1)
    size = (max(8, round((x2 - x1) * s)), max(8, round((y2 - y1) * s)))
    a, b = _grey_crop(prev, region, size), _grey_crop(cur, region, size)
    # the crop's dominant translation first (phase correlation): a car moves farther between two samples than the
    # flow's pyramid reaches; the flow then refines it locally (cur(x) ≈ prev(x + flow))
    win = cv2.createHanningWindow(size, cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a.astype(np.float32) * win, b.astype(np.float32) * win)
    guess = np.empty((size[1], size[0], 2), np.float32)
    guess[..., 0], guess[..., 1] = -dx, -dy
    flow = cv2.calcOpticalFlowFarneback(b, a, guess, 0.5, 3, cfg.flow_window, 3, 5, 1.1,
                                        cv2.OPTFLOW_USE_INITIAL_FLOW)
    gx, gy = np.meshgrid(np.arange(size[0], dtype=np.float32), np.arange(size[1], dtype=np.float32))
    warped = cv2.remap(a, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    residual = np.abs(b.astype(np.float32) - warped.astype(np.float32)) > cfg.residual_threshold
    inner = _box_mask(residual.shape, boxes, (x1, y1), (size[0] / (x2 - x1), size[1] / (y2 - y1)))
    return float(residual[inner].mean()) if inner.any() else 0.0


def window_passes(cfg: TemporalCheck, window: Sequence[Change | None]) -> bool:
    """The rule over one class's changes in the confirmation window (None: a frame without that class's boxes): at
    least `min_frames` frames changed (`Change.changed`)."""
    if not cfg.enabled:
        return True
    return sum(c.changed(cfg) for c in window if c is not None) >= cfg.min_frames


class TemporalGate:
    """One camera's temporal evidence per class over the confirmation window (the last `window` sampled frames)."""

    def __init__(self, cfg: TemporalCheck, window: int) -> None:
        self.cfg = cfg
        self._prev: np.ndarray | None = None  # the previous sampled frame (a reference, converted only when needed)
        self._prev_small: np.ndarray | None = None
        self.changes: dict[str, deque[Change | None]] = {"smoke": deque(maxlen=window),
                                                          "fire": deque(maxlen=window)}

    @property
    def scores(self) -> dict[str, list[float | None]]:
        """Per class, the window's change scores (None: no boxes of that class in that frame)."""
        return {k: [None if c is None else c.score for c in v] for k, v in self.changes.items()}

    def observe(self, frame: np.ndarray, kept: Sequence[tuple[str, Box]]) -> None:
        """Every sampled frame of the camera, with the boxes that passed the per-box stages."""
        small: np.ndarray | None = None
        for cls_name, changes in self.changes.items():
            boxes = [b.xyxy for n, b in kept if n == cls_name]
            found: Change | None = None
            if boxes and self._prev is not None and self._prev.shape == frame.shape:
                if small is None:
                    small = small_grey(frame, self.cfg.size)
                if self._prev_small is None:
                    self._prev_small = small_grey(self._prev, self.cfg.size)
                scale = small.shape[1] / frame.shape[1]
                found = change(self._prev_small, small, boxes, scale, self.cfg.pixel_threshold)
                if found.score >= self.cfg.min_change and self.cfg.min_unexplained > 0:
                    found = replace(found, unexplained=unexplained(self._prev, frame, boxes, self.cfg))
            changes.append(found)
        self._prev, self._prev_small = frame, small

    def passes(self, cls_name: str) -> bool:
        """Whether a region of this class may confirm now (`window_passes`)."""
        return window_passes(self.cfg, self.changes[cls_name])
