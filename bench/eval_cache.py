"""One inference pass per source and input size, kept on disk: every operating point is judged from it.

For each image of a source the model's raw boxes (confidence ≥ `RAW_CONF`, the pipeline's NMS) are stored with
the per-box measurements the pipeline's later stages look at, computed by the pipeline's own functions:
`detectors.fire.flame_fraction` and `median_saturation` (colour rules) and `detectors.verifier.box_features`
(the verifier's input). A threshold, colour rule or verifier is then applied to those numbers without touching the
images again (`bench/detect_eval.py`; its `--check` replays the chosen pipelines through `FireDetector` itself).

Files: ``var/eval-cache/loso/{source}-{imgsz}-{key}.npz``; the key covers the weights file's SHA-256, input size,
backend, letterbox, NMS IoU, the list of image files (name, size, mtime) and `CACHE_VERSION`.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eval_sources import Source, yolo_boxes  # noqa: E402

from detectors import weights as W  # noqa: E402
from detectors.fire import flame_fraction, median_saturation  # noqa: E402
from detectors.model import LETTERBOX, Box, YoloRunner  # noqa: E402
from detectors.verifier import FEATURES, box_features  # noqa: E402
from ingest.integrity import sha256_file  # noqa: E402

RAW_CONF = 0.05  # lowest confidence kept: below every threshold tried
CACHE_VERSION = 1
CACHE_DIR = ROOT / "var" / "eval-cache" / "loso"


@dataclass(frozen=True)
class Measured:
    """The model's boxes on every image of one source at one input size, with the per-box measurements."""

    source: str
    kind: str  # positive | negative
    imgsz: int
    paths: list[str]
    hw: np.ndarray  # (n_img, 2) int: height, width
    labelled: np.ndarray  # (n_img, 2) bool: the image has a smoke / a fire box (all False for negatives)
    img: np.ndarray  # (n_box,) int32: image index of each box
    cls: np.ndarray  # (n_box,) int8: the model's class index (fire-detector: 0 smoke, 1 fire)
    conf: np.ndarray  # (n_box,) float64 (the float32 the model gave, exactly)
    xyxy: np.ndarray  # (n_box, 4) float64, pixels
    flame: np.ndarray  # (n_box,) float64: detectors.fire.flame_fraction
    msat: np.ndarray  # (n_box,) float64: detectors.fire.median_saturation
    feat: np.ndarray  # (n_box, len(FEATURES)) float32: detectors.verifier.box_features
    row: np.ndarray  # (n_box,) int8: verifier-table label of the box (1, 0) or -1 when it is not a table row

    @property
    def n_images(self) -> int:
        return len(self.paths)

    def boxes_of(self, i: int) -> list[Box]:
        """Image i's raw boxes, as `YoloRunner.detect` returned them."""
        sel = np.flatnonzero(self.img == i)
        return [Box(int(self.cls[j]), float(self.conf[j]), tuple(float(v) for v in self.xyxy[j]))  # type: ignore[arg-type]
                for j in sel]


def cache_key(runner: YoloRunner, nms_iou: float, src: Source) -> str:
    h = hashlib.sha1()
    h.update(f"{CACHE_VERSION}|{sha256_file(W.resolve(runner.weights))}|{runner.imgsz}|{runner.backend}|"
             f"{LETTERBOX}|{nms_iou}|{RAW_CONF}|{src.kind}\n".encode())
    for p in src.images + src.labels:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def read_image(path: Path | str) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return img


def _measure(src: Source, runner: YoloRunner, nms_iou: float, log: Callable[[str], None]) -> Measured:
    n = len(src.images)
    hw = np.zeros((n, 2), np.int32)
    labelled = np.zeros((n, 2), bool)
    cols: dict[str, list[object]] = {k: [] for k in ("img", "cls", "conf", "xyxy", "flame", "msat", "feat", "row")}
    t0 = time.perf_counter()
    step = 8
    for start in range(0, n, step):
        idx = list(range(start, min(n, start + step)))
        frames = [read_image(src.images[i]) for i in idx]
        results = runner.detect(frames, conf=RAW_CONF, iou=nms_iou)
        for i, frame, boxes in zip(idx, frames, results, strict=True):
            h, w = frame.shape[:2]
            hw[i] = (h, w)
            gts: list[list[float]] | None = None
            if src.kind == "positive":
                lab = yolo_boxes(src.labels[i], w, h)
                labelled[i] = [(lab[:, 0] == 0).any(), (lab[:, 0] == 1).any()]
                gts = lab[:, 1:].tolist()
            rows = _table_rows(boxes, gts)
            for k, b in enumerate(boxes):
                name = runner.names.get(b.cls, str(b.cls)).lower()
                f = box_features(frame, name, b.conf, b.xyxy)
                cols["img"].append(i)
                cols["cls"].append(b.cls)
                cols["conf"].append(b.conf)
                cols["xyxy"].append(b.xyxy)
                cols["flame"].append(flame_fraction(frame, b.xyxy))
                cols["msat"].append(median_saturation(frame, b.xyxy))
                cols["feat"].append(f if f is not None else np.full(len(FEATURES), np.nan, np.float32))
                cols["row"].append(rows[k] if f is not None else -1)
        if (start // step) % 25 == 0:
            log(f"  {src.name} @{runner.imgsz}: {min(n, start + step)}/{n} images, "
                f"{time.perf_counter() - t0:.0f} s")
    return Measured(
        src.name, src.kind, runner.imgsz, [str(p) for p in src.images], hw, labelled,
        np.array(cols["img"], np.int32), np.array(cols["cls"], np.int8), np.array(cols["conf"], np.float64),
        np.array(cols["xyxy"], np.float64).reshape(-1, 4), np.array(cols["flame"], np.float64),
        np.array(cols["msat"], np.float64), np.array(cols["feat"], np.float32).reshape(-1, len(FEATURES)),
        np.array(cols["row"], np.int8),
    )


def _table_rows(boxes: list[Box], gts: list[list[float]] | None) -> list[int]:
    """Per box: its label as a verifier-table row (`detectors.verifier.labelled_candidates`), or -1."""
    from detectors.verifier import labelled_candidates

    chosen = labelled_candidates(boxes, gts)
    out = [-1] * len(boxes)
    for b, label in chosen:
        out[next(k for k, x in enumerate(boxes) if x is b)] = int(label)
    return out


def measured(src: Source, runner: YoloRunner, nms_iou: float,
             log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Measured:
    """The source's measurements at the runner's input size, from the cache or by running the model once."""
    key = cache_key(runner, nms_iou, src)
    path = CACHE_DIR / f"{src.name.replace(':', '_')}-{runner.imgsz}-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return Measured(src.name, src.kind, runner.imgsz, [str(p) for p in z["paths"]], z["hw"], z["labelled"],
                            z["img"], z["cls"], z["conf"], z["xyxy"], z["flame"], z["msat"], z["feat"], z["row"])
    m = _measure(src, runner, nms_iou, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, paths=np.array(m.paths), hw=m.hw, labelled=m.labelled, img=m.img, cls=m.cls,
                        conf=m.conf, xyxy=m.xyxy, flame=m.flame, msat=m.msat, feat=m.feat, row=m.row)
    tmp.replace(path)
    return m
