"""Smoke/fire detector quality: per-class precision/recall/mAP50 on a YOLO dataset split, per-image
recall on its fire/smoke images, and the false-positive rate on everyday scenes (negatives).

    python bench/detect_eval.py /work/shared/data/fire8 [--split valid] [--imgsz 640]
        [--negatives DIR] [--weights fire-detector] [--json OUT]

Negatives: a folder of images with no smoke/fire. Without --negatives the script builds one in
var/negatives/ from everyday footage in Debian's opencv-doc package (`apt-get download opencv-doc`;
people in a hall — vtest.avi, an office/lab scene series — left*/right*.jpg, street, building, fruit,
animals, cartoon …; see `build_negatives`). The split of negatives into "tune" (even index) and
"check" (odd index) halves lets thresholds be chosen on one half and reported on the other.

The per-image decision is the configured pipeline's `alarm` (FireDetector.image_decision: class
thresholds, masks n/a, the configured second stage): the same decision `firelink detect-image`
prints. Raw detections (conf ≥ 0.05) are cached per image in var/eval-cache/ so threshold sweeps
are cheap.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.detectors import DetectorsConfig  # noqa: E402
from detectors.fire import FireDetector  # noqa: E402
from detectors.model import LETTERBOX, Box  # noqa: E402
from detectors.verifier import BoxVerifier, Rows, table_path  # noqa: E402

IMG_EXT = {".jpg", ".jpeg", ".png", ".bmp"}
# opencv-doc sample images that are photographs of everyday scenes (not charts, logos, renders).
OPENCV_DOC_PHOTOS = [
    "aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "basketball2.png", "blox.jpg",
    "board.jpg", "box_in_scene.png", "building.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg", "leuvenA.jpg",
    "leuvenB.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "rubberwhale2.png", "smarties.png",
    "squirrel_cls.jpg", "stuff.jpg", "lena.jpg", "graf1.png", "graf3.png", "aloeL.jpg", "aloeR.jpg",
    "licenseplate_motion.jpg", "HappyFish.jpg", "starry_night.jpg", "tsukuba_l.png", "tsukuba_r.png",
]
CLIPS = {"vtest.avi": 10, "Megamind.avi": 15, "tree.avi": 15, "Megamind_bugy.avi": 30}


def opencv_doc_dir() -> Path | None:
    """opencv-doc's examples/data, extracted into var/opencv-doc once (apt-get download, no root)."""
    dest = ROOT / "var" / "opencv-doc"
    data = dest / "usr/share/doc/opencv-doc/examples/data"
    if data.is_dir():
        return data
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["apt-get", "download", "-q", "opencv-doc"], cwd=tmp, check=True, capture_output=True)
            deb = next(Path(tmp).glob("opencv-doc_*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True)
        except (OSError, subprocess.CalledProcessError, StopIteration) as exc:
            print(f"opencv-doc unavailable ({exc}); negatives from var/clips only", file=sys.stderr)
            return None
    return data if data.is_dir() else None


def build_negatives(out: Path) -> Path:
    """Everyday-scene negatives: every Nth frame of the opencv-doc clips plus its photographs."""
    if out.is_dir() and any(out.iterdir()):
        return out
    out.mkdir(parents=True, exist_ok=True)
    data = opencv_doc_dir()
    sources = [ROOT / "var" / "clips"] + ([data] if data else [])
    for name, step in CLIPS.items():
        path = next((d / name for d in sources if (d / name).is_file()), None)
        if path is None:
            continue
        cap = cv2.VideoCapture(str(path))
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step == 0:
                cv2.imwrite(str(out / f"{path.stem}-{i:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
            i += 1
        cap.release()
    if data:
        office = [p.name for p in sorted(data.glob("left*.jpg")) + sorted(data.glob("right*.jpg"))]
        for name in OPENCV_DOC_PHOTOS + office:
            p = data / name
            img = cv2.imread(str(p)) if p.is_file() else None
            if img is not None:
                cv2.imwrite(str(out / f"doc-{p.stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return out


# Debian desktop-background packages: photographs and artwork with warm colours (sunsets, autumn, lamps),
# the kind of scene a fire model confuses with flames. Used as verifier negatives (`firelink train-verifier`).
WALLPAPER_PACKAGES = (
    "ukui-wallpapers", "mate-backgrounds", "plasma-workspace-wallpapers", "gnome-backgrounds", "lomiri-wallpapers",
    "lomiri-wallpapers-20.04", "lomiri-wallpapers-16.04", "sway-backgrounds", "mypaint-data-extras",
)


def build_wallpapers(out: Path) -> Path:
    """One JPEG (≤ 1280 px) per distinct picture of `WALLPAPER_PACKAGES` (apt-get download, no root)."""
    if out.is_dir() and any(out.iterdir()):
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for pkg in WALLPAPER_PACKAGES:
            subprocess.run(["apt-get", "download", "-q", pkg], cwd=tmp, capture_output=True)
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True, capture_output=True)
        for f in sorted((Path(tmp) / "x").rglob("*")):
            if f.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            img = cv2.imread(str(f))
            if img is None or min(img.shape[:2]) < 400:
                continue
            h, w = img.shape[:2]
            s = 1280 / max(h, w)
            if s < 1:
                img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            name = f"{f.parent.name[:20]}_{f.stem[:40]}.jpg".replace(" ", "_")
            cv2.imwrite(str(out / name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXT)


def labels_for(img: Path) -> np.ndarray:
    """YOLO labels (cls, cx, cy, w, h normalised) of a dataset image (images/ → labels/)."""
    lab = img.parent.parent / "labels" / (img.stem + ".txt")
    if not lab.is_file():
        return np.zeros((0, 5))
    rows = [list(map(float, ln.split()[:5])) for ln in lab.read_text().splitlines() if ln.strip()]
    return np.array(rows).reshape(-1, 5)


def cached_detections(det: FireDetector, paths: list[Path], tag: str) -> list[list[Box]]:
    """Raw boxes (conf ≥ 0.05) per image, cached by weights/imgsz/backend/preprocessing and file content."""
    cache_dir = ROOT / "var" / "eval-cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    r = det.runner
    out: list[list[Box]] = []
    todo: list[tuple[int, Path, Path]] = []
    for i, p in enumerate(paths):
        ident = f"{r.weights}|{r.imgsz}|{r.backend}|{LETTERBOX}|{tag}|".encode()
        key = hashlib.sha1(ident + p.read_bytes()).hexdigest()
        c = cache_dir / f"{key}.json"
        out.append([])
        if c.is_file():
            out[i] = [Box(b[0], b[1], tuple(b[2])) for b in json.loads(c.read_text())]  # type: ignore[arg-type]
        else:
            todo.append((i, p, c))
    for start in range(0, len(todo), 4):
        chunk = todo[start : start + 4]
        frames = [cv2.imread(str(p)) for _, p, _ in chunk]
        res = r.detect(frames, conf=0.05)
        for (i, _p, c), boxes in zip(chunk, res, strict=True):
            out[i] = boxes
            c.write_text(json.dumps([[b.cls, b.conf, list(b.xyxy)] for b in boxes]))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def ap50(dets: list[list[Box]], gts: list[np.ndarray], cls: int, thr: float) -> dict[str, float]:
    """VOC-style all-point AP at IoU 0.5 for one class, plus P/R at confidence `thr`."""
    records = []  # (conf, tp)
    n_gt = 0
    tp_thr = fp_thr = 0
    for boxes, gt in zip(dets, gts, strict=True):
        g = gt[gt[:, 0] == cls][:, 1:]
        n_gt += len(g)
        b = sorted((x for x in boxes if x.cls == cls), key=lambda x: -x.conf)
        used = np.zeros(len(g), bool)
        if len(g) and b:
            ious = iou(np.array([x.xyxy for x in b]), g)
        for k, x in enumerate(b):
            hit = False
            if len(g):
                j = int(np.argmax(np.where(used, -1, ious[k])))
                if not used[j] and ious[k, j] >= 0.5:
                    used[j] = hit = True
            records.append((x.conf, hit))
            if x.conf >= thr:
                tp_thr += hit
                fp_thr += not hit
    if n_gt == 0:
        return {"ap50": float("nan"), "precision": float("nan"), "recall": float("nan"), "n_gt": 0}
    records.sort(key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in records]) if records else np.zeros(0)
    fp = np.cumsum([not r[1] for r in records]) if records else np.zeros(0)
    rec = tp / n_gt
    prec = tp / np.maximum(tp + fp, 1e-9)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[1.0], prec, [0.0]])
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    ap = float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
    return {
        "ap50": ap,
        "precision": tp_thr / max(tp_thr + fp_thr, 1),
        "recall": tp_thr / n_gt,
        "n_gt": n_gt,
    }


def evaluate(det: FireDetector, dataset: Path, split: str, negatives: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    pos_paths = images_in(dataset / split / "images")
    gts = []
    for p in pos_paths:
        lab = labels_for(p)
        img = cv2.imread(str(p))
        h, w = img.shape[:2]
        xyxy = np.stack(
            [lab[:, 0], (lab[:, 1] - lab[:, 3] / 2) * w, (lab[:, 2] - lab[:, 4] / 2) * h,
             (lab[:, 1] + lab[:, 3] / 2) * w, (lab[:, 2] + lab[:, 4] / 2) * h], axis=1,
        ) if len(lab) else np.zeros((0, 5))
        gts.append(xyxy)
    pos_dets = cached_detections(det, pos_paths, "pos")
    neg_paths = images_in(negatives)
    neg_dets = cached_detections(det, neg_paths, "neg")
    cfg = det.cfg
    names = det.runner.names
    per_class = {}
    for k, name in names.items():
        thr = cfg.thresholds.smoke if name == "smoke" else cfg.thresholds.fire
        per_class[name] = ap50(pos_dets, gts, k, thr)
    m = [v["ap50"] for v in per_class.values() if v["n_gt"]]
    pos_mask = [len(g) > 0 for g in gts]
    pos_imgs = [cv2.imread(str(p)) for p, keep in zip(pos_paths, pos_mask, strict=True) if keep]
    pos_alarm = [
        det.image_decision(img, boxes)["alarm"]
        for img, boxes in zip(pos_imgs, [d for d, keep in zip(pos_dets, pos_mask, strict=True) if keep], strict=True)
    ]
    neg_alarm = []
    neg_flagged = []
    for p, boxes in zip(neg_paths, neg_dets, strict=True):
        a = det.image_decision(cv2.imread(str(p)), boxes)["alarm"]
        neg_alarm.append(a)
        if a:
            neg_flagged.append(p.name)
    halves = {
        "tune": [a for i, a in enumerate(neg_alarm) if i % 2 == 0],
        "check": [a for i, a in enumerate(neg_alarm) if i % 2 == 1],
    }
    return {
        "dataset": str(dataset),
        "split": split,
        "weights": det.runner.weights,
        "imgsz": det.runner.imgsz,
        "backend": det.runner.backend,
        "thresholds": cfg.thresholds.model_dump(),
        "second_stage": cfg.second_stage.model_dump(),
        "per_class": per_class,
        "map50": float(np.mean(m)) if m else float("nan"),
        "image_recall": float(np.mean(pos_alarm)) if pos_alarm else float("nan"),
        "n_positive_images": len(pos_alarm),
        "fp_rate": float(np.mean(neg_alarm)) if neg_alarm else float("nan"),
        "fp_rate_tune_half": float(np.mean(halves["tune"])) if halves["tune"] else float("nan"),
        "fp_rate_check_half": float(np.mean(halves["check"])) if halves["check"] else float("nan"),
        "n_negative_images": len(neg_alarm),
        "negatives_flagged": neg_flagged,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def held_out_verifier(cfg: DetectorsConfig, negatives: Path) -> BoxVerifier | None:
    """The configured verifier refitted *without* rows from the negatives being evaluated (and without
    collected hard negatives): false positives are then measured on scenes the verifier never saw."""
    ss = cfg.second_stage
    if not ss.verifier:
        return None
    rows = Rows.load(table_path(ss.verifier))
    keep = [i for i, src in enumerate(rows.sources) if Path(src.split(": ", 1)[-1]).name != negatives.name]
    if len(keep) < len(rows.sources):
        print(f"verifier refitted without its rows from {negatives.name} (held out)", file=sys.stderr)
    m = np.isin(rows.source, keep)
    return BoxVerifier(Rows(rows.x[m], rows.y[m], rows.source[m], rows.sources), ss.verifier_threshold)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--split", default="valid")
    ap.add_argument("--negatives", type=Path, default=None)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--backend", default=None, choices=["auto", "torch", "onnx", "openvino"])
    ap.add_argument("--smoke", type=float, default=None, help="smoke threshold (default: config)")
    ap.add_argument("--fire", type=float, default=None, help="fire threshold (default: config)")
    ap.add_argument("--second-stage", choices=["both", "verifier", "colour", "off"], default=None,
                    help="second stage (default: config, i.e. both colour rules and the verifier)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = DetectorsConfig()
    upd: dict[str, Any] = {}
    if args.weights:
        upd["weights"] = args.weights
    if args.imgsz:
        upd["imgsz"] = args.imgsz
    if args.backend:
        upd["backend"] = args.backend
    th = cfg.thresholds.model_dump()
    if args.smoke is not None:
        th["smoke"] = args.smoke
    if args.fire is not None:
        th["fire"] = args.fire
    upd["thresholds"] = th
    if args.second_stage:
        colour = args.second_stage in ("both", "colour")
        verifier = cfg.second_stage.verifier if args.second_stage in ("both", "verifier") else None
        upd["second_stage"] = {**cfg.second_stage.model_dump(), "colour": colour, "verifier": verifier}
    cfg = DetectorsConfig.model_validate({**cfg.model_dump(), **upd})
    negatives = args.negatives or build_negatives(ROOT / "var" / "negatives")
    det = FireDetector(cfg, verifier=held_out_verifier(cfg, negatives))
    res = evaluate(det, args.dataset, args.split, negatives)
    print(f"weights={res['weights']} imgsz={res['imgsz']} backend={res['backend']} thresholds={res['thresholds']}")
    print(f"{'class':8} {'AP50':>6} {'P':>6} {'R':>6} {'n_gt':>5}")
    for name, v in res["per_class"].items():
        print(f"{name:8} {v['ap50']:6.3f} {v['precision']:6.3f} {v['recall']:6.3f} {v['n_gt']:5d}")
    print(f"mAP50 {res['map50']:.3f}")
    print(f"per-image recall (alarm on smoke/fire images): {res['image_recall']:.3f} of {res['n_positive_images']}")
    print(
        f"false positives on everyday scenes: {res['fp_rate']:.3f} of {res['n_negative_images']} "
        f"(tune half {res['fp_rate_tune_half']:.3f}, check half {res['fp_rate_check_half']:.3f})"
    )
    if res["negatives_flagged"]:
        print("flagged negatives:", " ".join(res["negatives_flagged"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
