"""Second stage: a learned check on each candidate box, from cheap physical measurements of the box.

Why: the shipped model alone cannot separate fire from warm lights, sunsets and orange things at any
threshold (raise it and recall falls with the false alarms). A box's own pixels say more — flames are
bright, saturated red-to-yellow with a hot core and texture; smoke is unsaturated and soft — but
hand-set colour rules are brittle. So the model's candidates (confidence ≥ ~0.1) are scored by a small
gradient-boosted classifier over ten measurements (`FEATURES`), trained on boxes the model produced on
labelled fire/smoke images (positives) and on everyday scenes (negatives). Deliberately *no* scene
context (position, whole-image brightness) and no deep features: measured with whole scenes held out,
those learn which video a frame came from, not fire (docs/detectors.md has the figures).

The classifier is refitted from a small table of feature rows when it is loaded (well under a second),
so no pickled model is shipped and officers' false alarms (`hard_negatives_dir`) join the negatives as
soon as they are marked (`FireDetector.relearn`). `firelink train-verifier` rebuilds the table; the shipped one is
``detectors/data/verifier_rows.npz`` with its provenance beside it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detectors.model import Box, box_iou

log = logging.getLogger(__name__)

BUILTIN = Path(__file__).with_name("data") / "verifier_rows.npz"
FEATURES = (
    "class (0 smoke, 1 fire)", "model confidence", "log box area (fraction of frame)", "flame-coloured fraction",
    "median saturation", "mean brightness", "brightness spread", "mean saturation", "95th-percentile brightness",
    "texture (Laplacian RMS / 50)",
)
CLASS_INDEX = {"smoke": 0, "fire": 1}
# An officer-confirmed false alarm from our own cameras outweighs a generic everyday scene: each counts as
# this many rows, so a scene marked false two or three times is learned (the classifier's leaves need ≥ 20 rows).
HARD_NEGATIVE_WEIGHT = 10


def box_features(img: np.ndarray, cls_name: str, conf: float, xyxy: Sequence[float]) -> np.ndarray | None:
    """The ten measurements of one box (None for an empty box)."""
    h, w = img.shape[:2]
    x1, y1 = max(0, int(xyxy[0])), max(0, int(xyxy[1]))
    x2, y2 = min(w, int(xyxy[2])), min(h, int(xyxy[3]))
    crop = img[y1:y2, x1:x2]
    if crop.size == 0:
        return None
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    b, g, r = (crop[..., i].astype(np.int16) for i in range(3))
    flame = ((hue <= 35) | (hue >= 170)) & (sat >= 60) & (val >= 150) & (r >= g) & (g >= b)
    white_hot = (val >= 240) & (r >= 230) & (g >= 200)
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    texture = float(cv2.Laplacian(grey, cv2.CV_32F).var()) ** 0.5
    area = (x2 - x1) * (y2 - y1) / float(w * h)
    return np.array([
        CLASS_INDEX.get(cls_name, 1), conf, np.log(area + 1e-6), float(np.mean(flame | white_hot)),
        float(np.median(sat)) / 255, float(val.mean()) / 255, float(val.std()) / 255, float(sat.mean()) / 255,
        float(np.percentile(val, 95)) / 255, texture / 50,
    ], dtype=np.float32)


@dataclass
class Rows:
    """Training table: features, labels (1 smoke/fire, 0 not), and where each row came from."""

    x: np.ndarray  # (n, len(FEATURES)) float32
    y: np.ndarray  # (n,) int8
    source: np.ndarray  # (n,) int16 index into `sources`
    sources: list[str]

    @classmethod
    def load(cls, path: Path) -> Rows:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["x"], z["y"], z["source"], [str(s) for s in z["sources"]])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(f, x=self.x, y=self.y, source=self.source, sources=np.array(self.sources))

    def repeated(self, k: int) -> Rows:
        return Rows(np.repeat(self.x, k, 0), np.repeat(self.y, k), np.repeat(self.source, k), self.sources)

    def __add__(self, other: Rows) -> Rows:
        return Rows(
            np.concatenate([self.x, other.x]), np.concatenate([self.y, other.y]),
            np.concatenate([self.source, other.source + len(self.sources)]), self.sources + other.sources,
        )


def rows_from(samples: Iterable[tuple[np.ndarray, float]], source: str) -> Rows:
    """Rows from (features, label) pairs of one source."""
    feats = [(f, y) for f, y in samples]
    x = np.array([f for f, _ in feats], np.float32).reshape(-1, len(FEATURES))
    return Rows(x, np.array([y for _, y in feats], np.int8), np.zeros(len(feats), np.int16), [source])


def hard_negative_rows(folder: Path) -> Rows | None:
    """Rows from officers' false alarms saved by `detectors.train.save_hard_negative`."""
    from detectors.train import marked_boxes

    samples: list[tuple[np.ndarray, float]] = []
    for m in marked_boxes(folder):
        f = box_features(m.frame, m.cls_name, m.confidence, m.xyxy)
        if f is not None:
            samples.append((f, 0.0))
    return rows_from(samples, f"hard negatives: {folder}") if samples else None


class BoxVerifier:
    """P(real smoke/fire) for candidate boxes."""

    def __init__(self, rows: Rows, threshold: float = 0.5) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]

        y = rows.y.astype(int)
        if y.min(initial=1) == y.max(initial=0):
            raise ValueError("verifier rows need both positives and negatives")
        pos = max(1, int(y.sum()))
        weight = np.where(y == 1, len(y) / (2 * pos), len(y) / (2 * max(1, len(y) - pos)))
        self.model = HistGradientBoostingClassifier(
            max_depth=3, max_iter=150, learning_rate=0.05, min_samples_leaf=20, random_state=0
        ).fit(rows.x, y, sample_weight=weight)
        self.threshold = threshold
        self.n_rows = len(y)

    def scores(self, boxes: Sequence[tuple[np.ndarray, str, Box]]) -> list[float]:
        """P(real) for (frame, class name, box) triples, in one model call."""
        feats = [box_features(img, n, b.conf, b.xyxy) for img, n, b in boxes]
        ok = [i for i, f in enumerate(feats) if f is not None]
        out = [0.0] * len(boxes)
        if ok:
            p = self.score_features(np.stack([f for f in feats if f is not None]))
            for i, v in zip(ok, p, strict=True):
                out[i] = float(v)
        return out

    def score_features(self, x: np.ndarray) -> np.ndarray:
        """P(real) for rows of `box_features` (n, len(FEATURES)): what `scores` does after measuring the boxes."""
        if len(x) == 0:
            return np.zeros(0)
        return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)


def table_path(spec: str) -> Path:
    return BUILTIN if spec == "builtin" else Path(spec)


def built_for(spec: str) -> dict[str, Any] | None:
    """The provenance written beside a rows table (weights, imgsz, sources), when there is one."""
    prov = table_path(spec).with_suffix(".provenance.json")
    try:
        data = json.loads(prov.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_verifier(spec: str, threshold: float, hard_negatives: str | Path | None = None) -> BoxVerifier:
    """The verifier from a rows table ('builtin' or a path), plus any collected hard negatives."""
    rows = Rows.load(table_path(spec))
    if hard_negatives and Path(hard_negatives).is_dir():
        extra = hard_negative_rows(Path(hard_negatives))
        if extra is not None:
            rows = rows + extra.repeated(HARD_NEGATIVE_WEIGHT)
            log.info("verifier: %d hard-negative boxes from %s", len(extra.y), hard_negatives)
    return BoxVerifier(rows, threshold)


def dataset_rows(detect: Any, names: dict[int, str], images: list[Path], label_dir: Path | None,
                 source: str, top: int = 5) -> Rows:
    """Rows from the model's own candidates (conf ≥ 0.05, best `top` per image).

    With labels: a candidate overlapping a labelled box (IoU ≥ 0.3) is a positive, others are left out
    (an unlabelled wisp may still be smoke), images without labels are left out. Without labels (a folder
    of everyday scenes): every candidate is a negative.
    """
    samples: list[tuple[np.ndarray, float]] = []
    for p in images:
        img = cv2.imread(str(p))
        if img is None:
            continue
        h, w = img.shape[:2]
        gts: list[tuple[float, float, float, float]] = []
        if label_dir is not None:
            lab = label_dir / f"{p.stem}.txt"
            text = lab.read_text().split("\n") if lab.is_file() else []
            for line in text:
                v = line.split()
                if len(v) == 5:
                    xc, yc, bw, bh = (float(t) for t in v[1:])
                    gts.append(((xc - bw / 2) * w, (yc - bh / 2) * h, (xc + bw / 2) * w, (yc + bh / 2) * h))
            if not gts:
                continue
        for b, label in labelled_candidates(detect(img), gts if label_dir is not None else None, top):
            f = box_features(img, names.get(b.cls, "fire"), b.conf, b.xyxy)
            if f is not None:
                samples.append((f, label))
    return rows_from(samples, source)


def labelled_candidates(boxes: Sequence[Box], gts: Sequence[Sequence[float]] | None,
                        top: int = 5) -> list[tuple[Box, float]]:
    """The candidates of one image that become table rows, with their label: the `top` most confident boxes;
    with labelled boxes `gts` (pixels) a candidate overlapping one (IoU ≥ 0.3) is a positive and the others are
    left out; without (`None`: an everyday scene) every candidate is a negative."""
    out: list[tuple[Box, float]] = []
    for b in sorted(boxes, key=lambda b: -b.conf)[:top]:
        if gts is None:
            out.append((b, 0.0))
        elif gts and max(box_iou(b.xyxy, g) for g in gts) >= 0.3:
            out.append((b, 1.0))
    return out
