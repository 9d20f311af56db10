"""Smoke/fire as a detector plug-in: one model (`FireDetector`) for every camera, k-of-n confirmation per camera.

`process` runs one forward pass per weights file over the frames of all cameras in the batch, the per-box stages
(thresholds, masks, the camera's hard negatives, and colour rules / verifier when configured; one verifier call),
then each camera's `Confirmer`. A confirmed region becomes an `AlarmDetection`: the alarm (kind video_smoke |
video_fire) with the frame that confirmed it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import ClassVar, Self

import cv2
import numpy as np

from config.detectors import CameraDetectors, DetectorsConfig, Point
from detectors.base import Camera, Sample, register
from detectors.fire import Confirmed, Confirmer, FireDetector
from detectors.model import Box
from detectors.temporal import TemporalGate
from ingest.contract import AlarmDetection, AlarmIn, BoxJson, DetectionEvent, DetectionFrame, video_alarm_note

log = logging.getLogger(__name__)


def box_json(cls_name: str, box: Box) -> BoxJson:
    """A box as recorded with the evidence: {class, confidence, box (pixels), verifier?}, plain floats."""
    out: dict[str, str | float | list[float]] = {
        "class": cls_name, "confidence": round(float(box.conf), 4), "box": [round(float(v), 1) for v in box.xyxy]}
    if box.verifier is not None:
        out["verifier"] = round(float(box.verifier), 4)
    return out


def encode_jpeg(frame: np.ndarray, boxes: Sequence[tuple[str, Box]] = (), quality: int = 85) -> bytes:
    """The frame as JPEG, with the given boxes drawn and labelled."""
    img = frame
    if boxes:
        img = frame.copy()
        for cls_name, b in boxes:
            x1, y1, x2, y2 = (int(v) for v in b.xyxy)
            color = (0, 0, 255) if cls_name == "fire" else (200, 200, 200)
            cv2.rectangle(img, (x1, y1), (x2, y2), color, 2)
            cv2.putText(img, f"{cls_name} {b.conf:.2f}", (x1, max(12, y1 - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def alarm_detection(camera: Camera, t: float, frame: np.ndarray, c: Confirmed) -> AlarmDetection:
    """A confirmed region → the alarm (id stable per event: camera, class, region start) and its frame."""
    h, w = frame.shape[:2]
    confidence = float(c.confidence)
    alarm = AlarmIn(alarm_id=f"video-{camera.camera_id}-{c.cls_name}-{round(c.started_at * 1000)}",
                    unit_id=camera.unit_id or "", kind=c.kind, source="video", received_at=datetime.now(UTC),
                    device_id=camera.camera_id, device_ts=datetime.fromtimestamp(t, UTC),
                    note=video_alarm_note(camera.camera_id, c.kind, confidence))
    drawn = [(c.cls_name, b) for b in c.boxes]
    return AlarmDetection(alarm, DetectionFrame(
        t=t, confidence=confidence, boxes=tuple(box_json(n, b) for n, b in drawn), width=w, height=h,
        jpeg=encode_jpeg(frame, drawn), raw_jpeg=encode_jpeg(frame)))


@dataclass(slots=True)
class _Watched:
    camera: Camera  # replaced whole (never mutated) when its masks change: a frame sees old or new, never a mix
    confirmer: Confirmer
    temporal: TemporalGate


@register
class SmokeFire:
    """Smoke and fire on the cameras whose settings say `smoke_fire: true` (the default)."""

    type_key: ClassVar[str] = "smoke_fire"

    def __init__(self, cfg: DetectorsConfig, model: FireDetector) -> None:
        self.cfg = cfg
        self.model = model
        self._watched: dict[str, _Watched] = {}

    @classmethod
    def wanted(cls, settings: CameraDetectors) -> bool:
        return settings.smoke_fire

    @classmethod
    def load(cls, cfg: DetectorsConfig) -> Self:
        return cls(cfg, FireDetector(cfg))

    def watch(self, camera: Camera) -> None:
        c = self.cfg.confirmation
        self._watched[camera.camera_id] = _Watched(camera, Confirmer(c.k, c.n, c.min_overlap, c.rearm_after_s),
                                                   TemporalGate(c.temporal, c.n))

    def fps(self, camera_id: str) -> float:
        w = self._watched.get(camera_id)
        return w.camera.settings.fps if w is not None else 0.0

    def settings(self, camera_id: str) -> CameraDetectors | None:
        w = self._watched.get(camera_id)
        return w.camera.settings if w is not None else None

    def set_masks(self, camera_id: str, masks: list[list[Point]]) -> bool:
        """Replaces a watched camera's masks (config and console merged); False when it is not watched."""
        w = self._watched.get(camera_id)
        if w is None:
            return False
        settings = w.camera.settings.model_copy(update={"masks": [list(poly) for poly in masks]})
        w.camera = replace(w.camera, settings=settings)
        return True

    def relearn(self) -> None:
        """Reloads the hard negatives officers marked, and refits a configured verifier (blocking)."""
        self.model.relearn()

    def process(self, samples: Sequence[Sample]) -> list[DetectionEvent]:
        groups: dict[str | None, list[tuple[Sample, Camera]]] = {}
        for s in samples:
            w = self._watched.get(s.camera_id)
            if w is not None:
                groups.setdefault(w.camera.settings.weights, []).append((s, w.camera))
        events: list[DetectionEvent] = []
        for weights, group in groups.items():
            results = self.model.detect([s.image for s, _ in group], weights)
            kept = self.model.keep_batch([(s.image, boxes, cam.settings)
                                          for (s, cam), boxes in zip(group, results, strict=True)])
            for (s, _), k in zip(group, kept, strict=True):
                events += self.confirm(s.camera_id, s.t, s.image, k)
        return events

    def on_boxes(self, camera_id: str, t: float, frame: np.ndarray, boxes: list[Box]) -> list[AlarmDetection]:
        """One frame's raw model boxes through the per-box stages and the camera's confirmation."""
        w = self._watched[camera_id]
        return self.confirm(camera_id, t, frame, self.model.keep(frame, boxes, w.camera.settings))

    def confirm(self, camera_id: str, t: float, frame: np.ndarray,
                kept: list[tuple[str, Box]]) -> list[AlarmDetection]:
        """Boxes that passed every per-box stage → the camera's confirmed alarms."""
        w = self._watched[camera_id]
        gate = None
        if w.temporal.cfg.enabled:
            w.temporal.observe(frame, kept)
            gate = w.temporal.passes
        return [alarm_detection(w.camera, t, frame, c) for c in w.confirmer.update(t, kept, gate)]
