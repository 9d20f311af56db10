"""Officer-taught hard negatives, per camera: a box like one an officer marked false on that camera is dropped.

When an officer closes a video incident as a false alarm, the frame and its boxes are saved
(`detectors.train.save_hard_negative`, with the camera's id). From then on a candidate box *on that camera* is
dropped when it is the same class, in the same place (IoU ≥ `SecondStage.hard_negative_iou` with the marked box, in
fractions of the frame, so a resolution change does not matter) and looks the same: its colour, brightness and
texture measurements (`detectors.verifier.box_features` without class, confidence and size) are within
`hard_negative_distance` of the marked box's. A stove, a lit sign, a sunlit wall stop alarming where they stand;
a fire that spreads beyond the marked place or looks different inside it still passes, and other cameras are never
affected. Nothing is fitted: the lesson applies from the next frame (`FireDetector.relearn`), with or without the
learned verifier, whose generic rows did not hold up on unseen sources (docs/detectors.md, "Leave one source out").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.model import box_iou
from detectors.train import marked_boxes
from detectors.verifier import box_features

log = logging.getLogger(__name__)

APPEARANCE = slice(3, None)  # box_features minus class, confidence and log area
# alarm ids are "video-{camera}-{smoke|fire}-{ms}" (detectors/plugins/smoke_fire.py): the camera of files saved
# before the camera id was recorded beside the boxes
_ALARM_ID = re.compile(r"^video-(?P<camera>.+)-(?:smoke|fire)-\d+$")


@dataclass(frozen=True, slots=True)
class Marked:
    """One box an officer marked false: class, place (fractions of the frame) and appearance."""

    cls_name: str
    box: tuple[float, float, float, float]
    appearance: np.ndarray


def appearance(img: np.ndarray, cls_name: str, xyxy: Sequence[float]) -> np.ndarray | None:
    f = box_features(img, cls_name, 0.0, xyxy)
    return None if f is None else f[APPEARANCE]


def normalised(xyxy: Sequence[float], w: int, h: int) -> tuple[float, float, float, float]:
    return (float(xyxy[0]) / w, float(xyxy[1]) / h, float(xyxy[2]) / w, float(xyxy[3]) / h)


def camera_of(stem: str, meta: dict[str, object]) -> str | None:
    cam = meta.get("camera_id")
    if isinstance(cam, str) and cam:
        return cam
    m = _ALARM_ID.match(stem)
    return m.group("camera") if m else None


class HardNegatives:
    """The marked boxes of every camera, and the check a candidate box goes through."""

    def __init__(self, marked: dict[str, list[Marked]], iou: float = 0.5, distance: float = 0.2) -> None:
        self.marked = marked
        self.iou = iou
        self.distance = distance

    @classmethod
    def load(cls, folder: str | Path, iou: float = 0.5, distance: float = 0.2) -> HardNegatives:
        """Every marked box in `folder` (`detectors.train.marked_boxes`) whose camera is known."""
        marked: dict[str, list[Marked]] = {}
        for m in marked_boxes(folder):
            camera = camera_of(m.name, m.meta)
            a = appearance(m.frame, m.cls_name, m.xyxy)
            if camera is not None and a is not None:
                h, w = m.frame.shape[:2]
                marked.setdefault(camera, []).append(Marked(m.cls_name, normalised(m.xyxy, w, h), a))
        n = sum(len(v) for v in marked.values())
        if n:
            log.info("hard negatives: %d marked boxes on %d cameras from %s", n, len(marked), folder)
        return cls(marked, iou, distance)

    def __len__(self) -> int:
        return sum(len(v) for v in self.marked.values())

    def matches(self, camera_id: str | None, img: np.ndarray, cls_name: str, xyxy: Sequence[float]) -> bool:
        """Whether this candidate is a false alarm already marked on this camera (same class, place and look)."""
        marked = self.marked.get(camera_id) if camera_id else None
        if not marked:
            return False
        h, w = img.shape[:2]
        place = normalised(xyxy, w, h)
        near = [m for m in marked if m.cls_name == cls_name and box_iou(m.box, place) >= self.iou]
        if not near:
            return False
        a = appearance(img, cls_name, xyxy)
        return a is not None and any(float(np.abs(a - m.appearance).max()) <= self.distance for m in near)
