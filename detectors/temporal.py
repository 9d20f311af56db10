"""Smoke/fire: the temporal check of a camera's confirmation — does the picture change inside the candidate boxes?

Real flames flicker and smoke moves; a picture of a fire (a poster, a screen, a photo on the wall) or a fire-coloured
object seen by a fixed camera does not change inside its box, except by the camera's own near-rigid shift, sensor
noise and compression. For every sampled frame of a camera whose boxes passed the per-box stages, `change` compares
the box region (union of that class's boxes) with the previous sampled frame after compensating the global
translation (phase correlation on a small grey copy of the whole frame), relative to the same residual outside the
boxes. `TemporalGate.passes` then lets k-of-n confirmation fire only when enough of the window's frames changed.

Cost: only frames with candidate boxes, on a `size`-px-wide grey copy (two resizes, one phase correlation, one warp;
well under a millisecond at 160 px).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

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

    @property
    def score(self) -> float:
        """Change inside the boxes beyond the change of the whole scene."""
        return self.inside - self.outside


def small_grey(frame: np.ndarray, size: int) -> np.ndarray:
    """A `size`-px-wide float32 grey copy (area averaging: it also averages sensor noise away)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    h, w = grey.shape[:2]
    sh = max(8, round(h * size / w))
    return cv2.resize(grey, (size, sh), interpolation=cv2.INTER_AREA).astype(np.float32)


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
    inner = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in boxes:
        c1, r1 = max(0, int(x1 * scale)), max(0, int(y1 * scale))
        c2, r2 = min(w, int(np.ceil(x2 * scale))), min(h, int(np.ceil(y2 * scale)))
        inner[r1:r2, c1:c2] = True
    valid = np.zeros((h, w), bool)
    b = BORDER + int(np.ceil(max(abs(dx), abs(dy))))
    valid[b : h - b, b : w - b] = True
    ins, out = inner & valid, ~inner & valid
    inside = float(changed[ins].mean()) if ins.any() else 0.0
    outside = float(changed[out].mean()) if out.sum() >= 0.05 * h * w else 0.0
    return Change(inside, outside, (float(dx), float(dy)))


class TemporalGate:
    """One camera's temporal evidence per class over the confirmation window (the last `window` sampled frames)."""

    def __init__(self, cfg: TemporalCheck, window: int) -> None:
        self.cfg = cfg
        self._prev: np.ndarray | None = None  # the previous sampled frame (a reference, converted only when needed)
        self._prev_small: np.ndarray | None = None
        self.scores: dict[str, deque[float | None]] = {"smoke": deque(maxlen=window), "fire": deque(maxlen=window)}

    def observe(self, frame: np.ndarray, kept: Sequence[tuple[str, Box]]) -> None:
        """Every sampled frame of the camera, with the boxes that passed the per-box stages."""
        small: np.ndarray | None = None
        for cls_name, scores in self.scores.items():
            boxes = [b.xyxy for n, b in kept if n == cls_name]
            score: float | None = None
            if boxes and self._prev is not None and self._prev.shape == frame.shape:
                if small is None:
                    small = small_grey(frame, self.cfg.size)
                if self._prev_small is None:
                    self._prev_small = small_grey(self._prev, self.cfg.size)
                scale = small.shape[1] / frame.shape[1]
                score = change(self._prev_small, small, boxes, scale, self.cfg.pixel_threshold).score
            scores.append(score)
        self._prev, self._prev_small = frame, small

    def passes(self, cls_name: str) -> bool:
        """Whether at least `min_frames` of the window's frames with this class's boxes changed by ≥ `min_change`."""
        if not self.cfg.enabled:
            return True
        scores = [s for s in self.scores[cls_name] if s is not None]
        return sum(s >= self.cfg.min_change for s in scores) >= self.cfg.min_frames
