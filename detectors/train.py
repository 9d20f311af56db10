"""Hard negatives and fine-tuning (`firelink train`).

`save_hard_negative` turns an officer's "false alarm" on a video incident into a YOLO training
sample: the frame in ``DIR/train/images`` and an *empty* label file in ``DIR/train/labels`` (nothing
to detect here), the rejected boxes kept beside it in ``DIR/train/rejected/*.json`` for the record.
``DIR/data.yaml`` makes the folder a dataset on its own.

`train` fine-tunes weights on one or more such dataset folders (e.g. ../shared/data/fire8 plus the
collected hard negatives) with ultralytics on whatever device is present, and writes
``OUT.pt`` plus ``OUT.provenance.json`` (sources, their licence/attribution files, command,
metrics). Datasets are staged in a temporary folder (images symlinked, labels copied) so nothing
is written into the source folders (ultralytics writes label caches next to labels).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

NAMES = {0: "smoke", 1: "fire"}
LICENCE_FILES = ("README.dataset.txt", "README.roboflow.txt", "LICENSE", "LICENCE", "README.md")


def save_hard_negative(frame_jpeg: bytes, boxes: list[dict[str, Any]] | list[Any], dataset_dir: str | Path,
                       *, name: str | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Writes a labelled negative (image + empty YOLO label) into `dataset_dir`; returns the image path."""
    root = Path(dataset_dir)
    images, labels, rejected = root / "train" / "images", root / "train" / "labels", root / "train" / "rejected"
    for d in (images, labels, rejected):
        d.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", name or f"neg-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}")
    img = images / f"{stem}.jpg"
    tmp = img.with_suffix(".tmp")
    tmp.write_bytes(frame_jpeg)
    (labels / f"{stem}.txt").write_text("")
    (rejected / f"{stem}.json").write_text(json.dumps({"boxes": boxes, **(meta or {})}, default=str, indent=1))
    tmp.replace(img)
    data_yaml = root / "data.yaml"
    if not data_yaml.exists():
        data_yaml.write_text(
            "# Hard negatives collected from Firelink cameras (officer-marked false alarms): empty labels.\n"
            + yaml.safe_dump({"path": ".", "train": "train/images", "val": "train/images", "names": NAMES})
        )
    return img


@dataclass(frozen=True, slots=True)
class MarkedBox:
    """One box of a frame an officer marked false, read back from `save_hard_negative`'s folder."""

    name: str  # the file stem: the alarm id
    meta: dict[str, Any]  # what was saved beside the boxes (incident_id, closed_by, camera_id)
    frame: np.ndarray  # BGR
    cls_name: str
    confidence: float
    xyxy: tuple[float, float, float, float]  # pixels of `frame`


def marked_boxes(dataset_dir: str | Path) -> Iterator[MarkedBox]:
    """Every box saved by `save_hard_negative` in `dataset_dir`. A damaged file or entry (hand-edited, truncated) is
    skipped: one must not keep the detectors from starting."""
    import cv2

    root = Path(dataset_dir) / "train"
    for js in sorted((root / "rejected").glob("*.json")):
        try:
            meta = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        boxes = meta.get("boxes") if isinstance(meta, dict) else None
        if not isinstance(boxes, list):
            continue
        frame = cv2.imread(str(root / "images" / f"{js.stem}.jpg"))
        if frame is None:
            continue
        for b in boxes:
            try:
                name, conf, xyxy = str(b["class"]), float(b["confidence"]), [float(v) for v in b["box"]]
            except (KeyError, TypeError, ValueError):
                continue
            if len(xyxy) >= 4:
                yield MarkedBox(js.stem, meta, frame, name, conf, (xyxy[0], xyxy[1], xyxy[2], xyxy[3]))


def _splits(ds: Path) -> dict[str, Path]:
    """train/val image folders of a dataset folder (data.yaml, or train/ and valid/ subfolders)."""
    out: dict[str, Path] = {}
    y = ds / "data.yaml"
    if y.is_file():
        d = yaml.safe_load(y.read_text()) or {}
        base = ds / str(d.get("path") or ".") if not Path(str(d.get("path") or ".")).is_absolute() else Path(d["path"])
        for k in ("train", "val"):
            if isinstance(d.get(k), str) and (base / d[k]).is_dir():
                out[k] = (base / d[k]).resolve()
        names = d.get("names")
        pairs = names.items() if isinstance(names, dict) else enumerate(names or [])
        if names and {int(k): str(v) for k, v in pairs} != NAMES:
            raise ValueError(f"{ds}: classes must be {NAMES} (got {names})")
    for k, sub in (("train", "train/images"), ("val", "valid/images"), ("val", "val/images"), ("train", "images")):
        if k not in out and (ds / sub).is_dir():
            out[k] = (ds / sub).resolve()
    if "train" not in out:
        raise ValueError(f"{ds}: no train images (expected data.yaml or train/images)")
    return out


def _stage(images: Path, dest: Path) -> Path:
    """dest/images/* → symlinks to each image (a linked folder would be resolved by ultralytics, which then
    writes its label cache into the source); dest/labels ← copies of the YOLO labels."""
    (dest / "images").mkdir(parents=True)
    for f in images.iterdir():
        if f.is_file():
            (dest / "images" / f.name).symlink_to(f.resolve())
    src_labels = images.parent / "labels"
    if src_labels.is_dir():
        shutil.copytree(src_labels, dest / "labels", ignore=shutil.ignore_patterns("*.cache"))
    else:
        (dest / "labels").mkdir()
    return dest / "images"


def backbone_layers(model: Any) -> int:
    """How many leading modules of an ultralytics model are its backbone (the model's yaml says; YOLOv8: 10)."""
    spec = getattr(getattr(model, "model", None), "yaml", None)
    return len(spec["backbone"]) if isinstance(spec, dict) and isinstance(spec.get("backbone"), list) else 10


def _no_amp_download() -> None:
    """ultralytics checks mixed precision on a GPU by downloading yolo26n.pt; nothing is downloaded here (offline by
    design), and its fallback for a failed download only catches ConnectionError. AMP stays on: the check guards
    against old GPUs (GTX 16xx) that this deployment does not target."""
    from ultralytics.engine import trainer as ul_trainer

    ul_trainer.check_amp = lambda model: True  # type: ignore[attr-defined]


def _keeping_trainer() -> type:
    """ultralytics' detection trainer, except that it trains the checkpoint's own module. The stock trainer rebuilds
    the network from the checkpoint's yaml (plain C2f blocks) and copies over only the tensors whose names and shapes
    match — 139 of the shipped model's 355: its FasterNet blocks would be thrown away and re-initialised."""
    import copy

    from ultralytics.models.yolo.detect import DetectionTrainer

    class KeepArchitecture(DetectionTrainer):
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> Any:
            if weights is None:
                return super().get_model(cfg=cfg, weights=weights, verbose=verbose)
            model = copy.deepcopy(weights).float()
            for p in model.parameters():
                p.requires_grad_(True)
            return self.set_model_names_for_load(model)  # type: ignore[no-untyped-call]

    return KeepArchitecture


def train(
    data: list[Path], *, weights: str = "fire-detector", out: Path, epochs: int = 30, imgsz: int = 640,
    batch: int = 16, device: str = "auto", fraction: float = 1.0, workers: int = 2, command: str = "",
    freeze_epochs: int = 0, val_every_epoch: bool = True,
) -> dict[str, Any]:
    """Fine-tunes `weights` (every layer and weight kept, the FasterNet blocks included) on `data`.

    Freeze-then-unfreeze: the first `freeze_epochs` epochs train only the neck and head (the backbone frozen, so
    a small or narrow dataset cannot wreck the shipped features), the remaining epochs train everything, starting
    from the first phase's weights."""
    from detectors import weights as W
    from detectors.model import pick_device
    from ingest.integrity import sha256_file

    if not 0 <= freeze_epochs < epochs:
        raise ValueError(f"freeze_epochs must be in [0, epochs): {freeze_epochs} of {epochs}")
    dev = pick_device(device)
    ul_device = "cpu" if dev == "cpu" else dev.split(":")[-1]
    t0 = time.time()
    sources = []
    with tempfile.TemporaryDirectory(prefix="firelink-train-") as tmp:
        trains, vals = [], []
        for i, ds in enumerate(data):
            sp = _splits(ds)
            trains.append(str(_stage(sp["train"], Path(tmp) / f"d{i}" / "train")))
            if "val" in sp and sp["val"] != sp["train"]:
                vals.append(str(_stage(sp["val"], Path(tmp) / f"d{i}" / "val")))
            lic = {f: (ds / f).read_text(errors="replace")[:2000] for f in LICENCE_FILES if (ds / f).is_file()}
            sources.append({"path": str(ds.resolve()), "licence_files": lic,
                            "train_images": sum(1 for _ in sp["train"].iterdir())})
        if not vals:
            vals = trains[:1]
        cfg_path = Path(tmp) / "data.yaml"
        cfg_path.write_text(yaml.safe_dump({"path": tmp, "train": trains, "val": vals, "names": NAMES}))
        common = dict(data=str(cfg_path), imgsz=imgsz, batch=batch, device=ul_device, fraction=fraction,
                      workers=workers, project=str(Path(tmp) / "runs"), exist_ok=True, plots=False, verbose=False,
                      amp=dev != "cpu", val=val_every_epoch)
        _no_amp_download()
        start, res = weights, None
        phases = [("frozen", freeze_epochs, True), ("all", epochs - freeze_epochs, False)]
        for name, n, frozen in phases:
            if n == 0:
                continue
            model = W.yolo(start)
            res = model.train(**common, trainer=_keeping_trainer(), name=name, epochs=n,
                              freeze=backbone_layers(model) if frozen else None)
            wdir = Path(tmp) / "runs" / name / "weights"
            start = str(wdir / "best.pt" if (wdir / "best.pt").is_file() else wdir / "last.pt")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(start, out)
    metrics = {k: float(v) for k, v in (getattr(res, "results_dict", None) or {}).items()}
    prov = {
        "weights": out.name,
        "sha256": sha256_file(out),
        "created": datetime.now(UTC).isoformat(),
        "base_weights": weights,
        "base_weights_source": "PyPI fire-detector 1.0.3 (fire_detector/models/light_yolov8_flame.pt)"
        if weights == "fire-detector" else str(weights),
        "data": sources,
        "licence": "derived from the datasets above; keep their attribution (fire8: Roboflow fire-wrpgm v8, CC BY 4.0)",
        "command": command or " ".join(sys.argv),
        "settings": {"epochs": epochs, "freeze_epochs": freeze_epochs, "imgsz": imgsz, "batch": batch, "device": dev,
                     "fraction": fraction},
        "metrics": metrics,
        "seconds": round(time.time() - t0, 1),
        "host": platform.node(),
    }
    out.with_suffix(".provenance.json").write_text(json.dumps(prov, indent=2))
    return prov


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, action="append", required=True,
                   help="dataset folder (data.yaml or train/images+labels); repeat to combine")
    p.add_argument("--weights", default="fire-detector", help="starting weights (default: fire-detector)")
    p.add_argument("--out", type=Path, default=Path("var/models/firelink-fire.pt"), help="weights file to write")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--freeze-epochs", type=int, default=0,
                   help="first train this many epochs with the backbone frozen, then everything")
    p.add_argument("--fraction", type=float, default=1.0, help="use this fraction of the training images")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 2))


def cmd_train(args: argparse.Namespace) -> int:
    prov = train(
        args.data, weights=args.weights, out=args.out, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
        device=args.device, fraction=args.fraction, workers=args.workers, freeze_epochs=args.freeze_epochs,
        command="firelink train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "",
    )
    print(json.dumps({"weights": str(args.out), "metrics": prov["metrics"], "seconds": prov["seconds"]}))
    return 0
