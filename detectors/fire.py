"""Smoke/fire: per-box filtering (thresholds, masks, second stage) and per-camera confirmation over time.

A single frame never raises an alarm. `Confirmer` keeps, per camera and class, regions (tracks) of
detections; a region that was hit in at least k of the last n sampled frames — the same place, by box
overlap or centre containment, so a smoke plume may drift and grow — is confirmed once, and the
camera/class stays quiet until no detection of that class has been seen for `rearm_after_s`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from config.detectors import CameraDetectors, DetectorsConfig, Point, Thresholds
from detectors.hard_negatives import HardNegatives
from detectors.model import Box, YoloRunner, box_iou
from detectors.verifier import BoxVerifier, built_for, load_verifier

log = logging.getLogger(__name__)

KINDS = {"smoke": "video_smoke", "fire": "video_fire"}


# ---------------------------------------------------------------- geometry
def polygon_mask(polys: list[list[Point]], w: int, h: int) -> np.ndarray:
    """Boolean (h, w) mask of normalised polygons."""
    m = np.zeros((h, w), np.uint8)
    for poly in polys:
        pts = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in poly], np.int32)
        cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def contains_centre(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    return a[0] <= cx <= a[2] and a[1] <= cy <= a[3]


def _crop(img: np.ndarray, xyxy: tuple[float, ...]) -> np.ndarray:
    h, w = img.shape[:2]
    x1, y1 = max(0, int(xyxy[0])), max(0, int(xyxy[1]))
    x2, y2 = min(w, int(np.ceil(xyxy[2]))), min(h, int(np.ceil(xyxy[3])))
    return img[y1:y2, x1:x2]


def flame_fraction(img: np.ndarray, xyxy: tuple[float, ...]) -> float:
    """Fraction of bright, saturated red-to-yellow pixels (flame colours) in a box."""
    crop = _crop(img, xyxy)
    if crop.size == 0:
        return 0.0
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    b, g, r = (crop[..., i].astype(np.int16) for i in range(3))
    flame = ((h <= 35) | (h >= 170)) & (s >= 60) & (v >= 150) & (r >= g) & (g >= b)
    white_hot = (v >= 240) & (r >= 230) & (g >= 200)  # flame cores saturate to white-yellow
    return float(np.mean(flame | white_hot))


def median_saturation(img: np.ndarray, xyxy: tuple[float, ...]) -> float:
    crop = _crop(img, xyxy)
    if crop.size == 0:
        return 1.0
    return float(np.median(cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)[..., 1])) / 255.0


# ---------------------------------------------------------------- per-frame decision
class FireDetector:
    """The smoke/fire model plus the per-box stages. One instance serves all cameras."""

    def __init__(
        self, cfg: DetectorsConfig, runner: YoloRunner | None = None, verifier: BoxVerifier | str | None = "config"
    ) -> None:
        self.cfg = cfg
        self._runners: dict[str, YoloRunner] = {}
        self._lock = threading.Lock()
        if runner is not None:  # a runner handed in serves the configured weights (no second copy loaded)
            self._runners[cfg.weights] = runner
        self.runner = runner or self.runner_for(cfg.weights)
        # keyed by the polygons themselves, so masks edited at run time never meet a stale raster
        self._mask_cache: dict[tuple[Any, int, int], np.ndarray] = {}
        if verifier == "config":
            verifier = self._configured_verifier()
        self.verifier: BoxVerifier | None = verifier if isinstance(verifier, BoxVerifier) else None
        self.hard_negatives = self._hard_negatives()

    def _hard_negatives(self) -> HardNegatives | None:
        ss = self.cfg.second_stage
        if not ss.learn_hard_negatives or not Path(self.cfg.hard_negatives_dir).is_dir():
            return None
        return HardNegatives.load(self.cfg.hard_negatives_dir, ss.hard_negative_iou, ss.hard_negative_distance)

    def _configured_verifier(self) -> BoxVerifier | None:
        ss = self.cfg.second_stage
        if not ss.verifier:
            return None
        built = built_for(ss.verifier)
        if built and (built.get("weights"), built.get("imgsz")) != (self.cfg.weights, self.cfg.imgsz):
            log.warning("verifier table %s was built for weights %s at %s px, detectors run %s at %s px: its "
                        "confidence feature may not match; rebuild it with `firelink train-verifier`",
                        ss.verifier, built.get("weights"), built.get("imgsz"), self.cfg.weights, self.cfg.imgsz)
        hard = self.cfg.hard_negatives_dir if ss.learn_hard_negatives else None
        return load_verifier(ss.verifier, ss.verifier_threshold, hard)

    def relearn(self) -> None:
        """Reload the hard negatives collected so far, and refit the verifier when one is configured (blocking,
        ~1 s with a verifier; run in a thread).

        Called when an officer marks a video alarm false, so the same false alarm stops passing now,
        not at the next restart. Each swap is one assignment: frames in flight use the old or the new one."""
        self.hard_negatives = self._hard_negatives()
        if self.verifier is not None:
            self.verifier = self._configured_verifier()

    def runner_for(self, weights: str | None) -> YoloRunner:
        key = weights or self.cfg.weights
        with self._lock:
            r = self._runners.get(key)
            if r is None:
                c = self.cfg
                r = self._runners[key] = YoloRunner(
                    key, imgsz=c.imgsz, device=c.device, backend=c.backend, threads=c.threads
                )
            return r

    @property
    def min_conf(self) -> float:
        th = [self.cfg.thresholds.smoke, self.cfg.thresholds.fire]
        th += [t for c in self.cfg.cameras if c.thresholds for t in (c.thresholds.smoke, c.thresholds.fire)]
        return min(th)

    def detect(self, frames: list[np.ndarray], weights: str | None = None) -> list[list[Box]]:
        """Raw model boxes (≥ the lowest configured threshold) for a batch of frames (blocking)."""
        r = self.runner_for(weights)
        out: list[list[Box]] = []
        step = self.cfg.max_batch
        for i in range(0, len(frames), step):
            out += r.detect(frames[i : i + step], conf=self.min_conf, iou=self.cfg.thresholds.nms_iou)
        return out

    def class_name(self, cls: int, weights: str | None = None) -> str:
        return self.runner_for(weights).names.get(cls, str(cls)).lower()

    def keep(
        self, img: np.ndarray, boxes: list[Box], cam: CameraDetectors | None = None
    ) -> list[tuple[str, Box]]:
        """Boxes that pass thresholds, minimum area, the camera's masks and the second stage."""
        return self.keep_batch([(img, boxes, cam)])[0]

    def keep_batch(
        self, frames: Sequence[tuple[np.ndarray, list[Box], CameraDetectors | None]]
    ) -> list[list[tuple[str, Box]]]:
        """`keep` for several frames with one verifier call: its fixed cost is per call (~1 ms), not per box."""
        firsts = [self._rules(img, boxes, cam) for img, boxes, cam in frames]
        if self.verifier is None:
            return firsts
        flat = [(i, n, b) for i, kept in enumerate(firsts) for n, b in kept]
        scores = self.verifier.scores([(frames[i][0], n, b) for i, n, b in flat])
        out: list[list[tuple[str, Box]]] = [[] for _ in frames]
        for (i, n, b), p in zip(flat, scores, strict=True):
            if p >= self.verifier.threshold:
                out[i].append((n, replace(b, verifier=p)))
        return out

    def _rules(self, img: np.ndarray, boxes: list[Box], cam: CameraDetectors | None) -> list[tuple[str, Box]]:
        """Thresholds, minimum area, masks, the camera's hard negatives, colour rules: everything before the
        verifier."""
        th: Thresholds = (cam.thresholds if cam and cam.thresholds else None) or self.cfg.thresholds
        h, w = img.shape[:2]
        mask = None
        if cam and cam.masks:
            key = (tuple(tuple(p) for p in cam.masks), w, h)
            mask = self._mask_cache.get(key)
            if mask is None:
                mask = self._mask_cache[key] = polygon_mask(cam.masks, w, h)
        ss = self.cfg.second_stage
        hard = self.hard_negatives  # one snapshot per frame (relearn swaps it whole)
        weights = cam.weights if cam else None
        kept: list[tuple[str, Box]] = []
        for b in boxes:
            name = self.class_name(b.cls, weights)
            if name not in KINDS:
                continue
            if b.conf < (th.smoke if name == "smoke" else th.fire):
                continue
            x1, y1, x2, y2 = b.xyxy
            if (x2 - x1) * (y2 - y1) < th.min_box_area * w * h:
                continue
            if mask is not None:
                region = mask[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]
                if region.size and region.mean() >= 0.5:
                    continue
            if hard is not None and cam is not None and hard.matches(cam.camera_id, img, name, b.xyxy):
                continue
            if ss.colour:
                if name == "fire" and flame_fraction(img, b.xyxy) < ss.fire_min_flame_fraction:
                    continue
                if name == "smoke" and median_saturation(img, b.xyxy) > ss.smoke_max_saturation:
                    continue
            kept.append((name, b))
        return kept

    def image_decision(
        self, img: np.ndarray, boxes: list[Box] | None = None, cam: CameraDetectors | None = None
    ) -> dict[str, Any]:
        """The full per-image decision: max raw confidence per class and whether any box passes every stage."""
        if boxes is None:
            boxes = self.detect([img], cam.weights if cam else None)[0]
        weights = cam.weights if cam else None
        best = {"smoke": 0.0, "fire": 0.0}
        for b in boxes:
            n = self.class_name(b.cls, weights)
            if n in best:
                best[n] = max(best[n], b.conf)
        kept = self.keep(img, boxes, cam)
        return {
            "smoke": round(best["smoke"], 4),
            "fire": round(best["fire"], 4),
            "alarm": bool(kept),
            "boxes": [
                b.as_dict(n) for n, b in kept
            ],
        }


# ---------------------------------------------------------------- confirmation over time
@dataclass
class _Track:
    box: tuple[float, float, float, float]
    hits: deque[bool]
    first_t: float
    best: Box
    last_boxes: list[Box] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Confirmed:
    cls_name: str  # smoke | fire
    kind: str  # video_smoke | video_fire
    started_at: float  # ts of the region's first hit
    confidence: float
    boxes: list[Box]  # boxes of this class in the confirming frame


class Confirmer:
    """k-of-n confirmation with region persistence, per class, for one camera."""

    def __init__(self, k: int, n: int, min_overlap: float, rearm_after_s: float) -> None:
        self.k, self.n, self.min_overlap, self.rearm_after_s = k, n, min_overlap, rearm_after_s
        self.tracks: dict[str, list[_Track]] = {"smoke": [], "fire": []}
        self.last_seen: dict[str, float] = {}
        self.disarmed: dict[str, bool] = {"smoke": False, "fire": False}

    def update(self, t: float, kept: list[tuple[str, Box]],
               gate: Callable[[str], bool] | None = None) -> list[Confirmed]:
        """`gate(class)`, when given, must also agree before a region confirms (the temporal check); while it does
        not, the class stays armed and the next frame asks again."""
        out = []
        for cls_name in self.tracks:
            boxes = [b for n, b in kept if n == cls_name]
            if boxes:
                self.last_seen[cls_name] = t
            elif self.disarmed[cls_name] and t - self.last_seen.get(cls_name, t) >= self.rearm_after_s:
                self.disarmed[cls_name] = False
            tracks = self.tracks[cls_name]
            hit = [False] * len(tracks)
            for b in sorted(boxes, key=lambda x: -x.conf):
                best_j, best_iou = -1, -1.0
                for j, tr in enumerate(tracks):
                    ov = box_iou(tr.box, b.xyxy)
                    if ov >= self.min_overlap or contains_centre(tr.box, b.xyxy) or contains_centre(b.xyxy, tr.box):
                        if ov > best_iou:
                            best_j, best_iou = j, ov
                if best_j < 0:
                    tracks.append(_Track(b.xyxy, deque(maxlen=self.n), t, b))
                    hit.append(False)
                    best_j = len(tracks) - 1
                tr = tracks[best_j]
                if not hit[best_j]:
                    tr.last_boxes = []
                hit[best_j] = True
                tr.box = b.xyxy if b.conf >= tr.best.conf or not tr.last_boxes else tr.box
                tr.last_boxes.append(b)
                if b.conf >= tr.best.conf:
                    tr.best = b
            for j, tr in enumerate(tracks):
                tr.hits.append(hit[j])
            self.tracks[cls_name] = [tr for tr in tracks if any(tr.hits)]
            for tr in self.tracks[cls_name]:
                if not self.disarmed[cls_name] and tr.hits[-1] and sum(tr.hits) >= self.k:
                    if gate is not None and not gate(cls_name):
                        break
                    self.disarmed[cls_name] = True
                    conf = max(b.conf for b in tr.last_boxes)
                    out.append(Confirmed(cls_name, KINDS[cls_name], tr.first_t, conf, list(tr.last_boxes)))
                    break
        return out
