"""CLI commands of the detectors: detect-image, detect-video, detect (worker), train, train-verifier.

`add_commands(sub)` registers them (the composition root's firelink/cli.py calls it); each names its handler.

Every handler has the signature ``(cfg: FirelinkConfig, args: argparse.Namespace) -> int`` and reads
``cfg.detectors`` when the core config has that field (defaults otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from config.detectors import CameraDetectors, DetectorsConfig, ExitZoneConfig
from ingest.contract import AlarmDetection, DetectionEvent, ExitHazard

if TYPE_CHECKING:
    from detectors.worker import AssignmentFactory


def detectors_config(cfg: Any) -> DetectorsConfig:
    d = getattr(cfg, "detectors", None)
    return d if isinstance(d, DetectorsConfig) else DetectorsConfig()


def load_zones(path: Path, camera_id: str) -> CameraDetectors:
    """--zones FILE (YAML/JSON): a list of exit zones, or a camera entry {exits: [...], masks: [...], ...}."""
    data = yaml.safe_load(path.read_text())
    if isinstance(data, list):
        return CameraDetectors(camera_id=camera_id, exits=[ExitZoneConfig.model_validate(z) for z in data])
    if isinstance(data, dict):
        return CameraDetectors.model_validate({"camera_id": camera_id, **data})
    raise ValueError(f"{path}: expected a list of zones or a mapping")


def _print(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, ensure_ascii=False), flush=True)
    else:
        rest = " ".join(f"{k}={v}" for k, v in obj.items() if k not in ("path", "t", "type", "boxes"))
        head = obj.get("path") or f"t={obj.get('t')}s {obj.get('type')}"
        print(f"{head} {rest}", flush=True)


def cmd_detect_image(cfg: Any, args: argparse.Namespace) -> int:
    import cv2

    from detectors.fire import FireDetector

    det = FireDetector(detectors_config(cfg))
    rc = 0
    for p in args.paths:
        img = cv2.imread(str(p))
        if img is None:
            print(json.dumps({"path": str(p), "error": "not a readable image"}), file=sys.stderr)
            rc = 1
            continue
        d = det.image_decision(img)
        out = {"path": str(p), "smoke": d["smoke"], "fire": d["fire"], "alarm": d["alarm"]}
        if args.boxes:
            out["boxes"] = d["boxes"]
        _print(out, args.json)
    return rc


def event_dict(ev: DetectionEvent) -> dict[str, Any]:
    """A detection event as one line of `detect-video` output (video seconds)."""
    if isinstance(ev, AlarmDetection):
        return {"t": round(ev.frame.t, 2), "type": ev.alarm.kind, "camera_id": ev.alarm.device_id,
                "alarm_id": ev.alarm.alarm_id, "confidence": round(ev.frame.confidence, 4),
                "boxes": list(ev.frame.boxes)}
    if isinstance(ev, ExitHazard):
        return {"t": round(ev.confirmed_at.timestamp(), 2), "type": "blocked_exit", "zone_id": ev.zone_id,
                "fraction": ev.fraction, "started_t": round(ev.started_at.timestamp(), 2)}
    return {"t": round(ev.cleared_at.timestamp(), 2), "type": "blocked_exit_cleared", "zone_id": ev.zone_id,
            "fraction": ev.fraction, "started_t": round(ev.started_at.timestamp(), 2)}


def video_frames(path: Path, max_seconds: float | None = None) -> Iterator[tuple[float, Any]]:
    """(video seconds, BGR frame) of a video file, every frame."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    vfps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            t = i / vfps
            if not ok or (max_seconds is not None and t > max_seconds):
                break
            i += 1
            yield t, frame
    finally:
        cap.release()


def frame_events(
    frames: Iterable[tuple[float, Any]], dcfg: DetectorsConfig, cam: CameraDetectors, *, batch: int = 4
) -> Iterator[dict[str, Any]]:
    """Yields event dicts for a stream of (seconds, frame) run as a live camera: the detectors the camera's settings
    ask for, as live, fed frames at the rate they ask for, `batch` frames per call."""
    from detectors.base import Camera, Sample
    from detectors.pipeline import DetectorSet

    detectors = DetectorSet(dcfg)
    detectors.watch(Camera(cam.camera_id, None, cam))
    pending: list[Sample] = []

    def flush() -> list[dict[str, Any]]:
        events = sorted((event_dict(ev) for ev in detectors.process(pending)), key=lambda e: float(e["t"]))
        pending.clear()
        return events

    next_t = 0.0
    for t, frame in frames:
        fps = detectors.fps(cam.camera_id)
        if fps and t + 1e-9 >= next_t:
            next_t += 1.0 / fps
            pending.append(Sample(cam.camera_id, t, frame))
            if len(pending) >= batch:
                yield from flush()
    yield from flush()


def video_events(
    path: Path, dcfg: DetectorsConfig, cam: CameraDetectors, *, batch: int = 4, max_seconds: float | None = None
) -> Iterator[dict[str, Any]]:
    """Yields event dicts for a video file run as a live camera (timestamps are video seconds)."""
    yield from frame_events(video_frames(path, max_seconds), dcfg, cam, batch=batch)


def cmd_detect_video(cfg: Any, args: argparse.Namespace) -> int:
    dcfg = detectors_config(cfg)
    cam_id = args.camera_id or Path(args.path).stem
    if args.zones:
        cam = load_zones(args.zones, cam_id)
    else:
        cam = dcfg.for_camera(cam_id) or CameraDetectors(camera_id=cam_id)
    if args.fps:
        cam = cam.model_copy(update={"fps": args.fps})
    for ev in video_events(Path(args.path), dcfg, cam):
        _print(ev, args.json)
    return 0


def cmd_detect(cfg: Any, args: argparse.Namespace) -> int:
    from detectors.worker import cmd_detect as run

    return run(cfg, args)


def cmd_train(_cfg: Any, args: argparse.Namespace) -> int:
    from detectors.train import cmd_train as run

    return run(args)


def cmd_train_verifier(cfg: Any, args: argparse.Namespace) -> int:
    """Rebuild the second stage's feature table from labelled datasets and everyday-scene folders."""
    import platform
    import time

    from detectors.fire import FireDetector
    from detectors.verifier import BoxVerifier, Rows, dataset_rows, hard_negative_rows
    from ingest.integrity import sha256_file

    dcfg = detectors_config(cfg)
    det = FireDetector(dcfg, verifier=None)
    runner = det.runner

    def detect(img: Any) -> Any:
        return runner.detect([img], conf=0.05, iou=dcfg.thresholds.nms_iou)[0]

    def images(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))

    t0 = time.perf_counter()
    parts: list[Rows] = []
    for ds in args.data:
        parts.append(dataset_rows(detect, runner.names, images(ds / "train" / "images"), ds / "train" / "labels",
                                  f"positives: {ds}/train"))
    for neg in args.negatives:
        parts.append(dataset_rows(detect, runner.names, images(neg), None, f"everyday scenes: {neg}"))
    for hn in args.hard_negatives:
        extra = hard_negative_rows(hn)
        if extra is not None:
            parts.append(extra)
    rows = parts[0]
    for r in parts[1:]:
        rows = rows + r
    BoxVerifier(rows)  # refuses a table without both classes
    rows.save(args.out)
    licences = {}
    for ds in args.data:
        for name in ("README.dataset.txt", "README.roboflow.txt", "LICENSE"):
            if (ds / name).is_file():
                licences[str(ds / name)] = (ds / name).read_text(errors="replace")[:4000]
    prov = {
        "what": "feature rows (detectors.verifier.FEATURES) of the smoke/fire model's candidate boxes",
        "weights": dcfg.weights, "imgsz": runner.imgsz, "backend": runner.backend,
        "sources": {s: int((rows.source == i).sum()) for i, s in enumerate(rows.sources)},
        "positives": int(rows.y.sum()), "negatives": int(len(rows.y) - rows.y.sum()),
        "sha256": sha256_file(args.out),
        "command": "firelink " + " ".join(sys.argv[1:]), "python": platform.python_version(),
        "seconds": round(time.perf_counter() - t0, 1), "licences": licences,
    }
    args.out.with_suffix(".provenance.json").write_text(json.dumps(prov, indent=1, ensure_ascii=False))
    print(json.dumps({k: prov[k] for k in ("positives", "negatives", "sources", "seconds")}, ensure_ascii=False))
    return 0


def add_commands(subparsers: Any, camera_assignment: AssignmentFactory | None = None) -> None:
    """Adds detect-image, detect-video, detect and train to the `firelink` sub-command parsers. `camera_assignment`
    is how a `detect` worker takes part in cluster mode's camera leases (given by the composition root)."""
    from detectors.train import add_arguments as train_args

    p = subparsers.add_parser("detect-image", help="smoke/fire decision per image (one JSON line each)")
    p.add_argument("--json", action="store_true", help="JSON lines (default: short text)")
    p.add_argument("--boxes", action="store_true", help="include the boxes that passed every stage")
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(handler=cmd_detect_image)

    p = subparsers.add_parser("detect-video", help="run the per-camera pipeline on a video file; one line per event")
    p.add_argument("--json", action="store_true", help="JSON lines (default: short text)")
    p.add_argument("--zones", type=Path, help="YAML/JSON: exit zones (list) or a camera entry with exits/masks")
    p.add_argument("--camera-id", help="camera id used in events (default: the file name)")
    p.add_argument("--fps", type=float, help="sampling rate (default: the camera's, 2)")
    p.add_argument("path", type=Path)
    p.set_defaults(handler=cmd_detect_video)

    p = subparsers.add_parser("detect", help="detector worker: watch cameras, publish detections over MQTT")
    p.add_argument("--cameras", "--camera", action="append", default=[],
                   help="camera ids (comma-separated, repeatable; default: all)")
    p.add_argument("--node-id", help="cluster mode: this worker's node id in the camera leases (default: "
                                     "cluster.node_id, else the host name); give each worker its own")
    p.set_defaults(handler=cmd_detect, assignment=camera_assignment)

    p = subparsers.add_parser("train-verifier", help="rebuild the second stage's feature table (CPU, minutes)")
    p.add_argument("--data", type=Path, action="append", default=[], required=True,
                   help="labelled YOLO dataset folder (train/images + train/labels); repeatable")
    p.add_argument("--negatives", type=Path, action="append", default=[],
                   help="folder of everyday-scene images with no smoke/fire; repeatable")
    p.add_argument("--hard-negatives", type=Path, action="append", default=[],
                   help="folder of officer-marked false alarms (detectors.hard_negatives_dir); repeatable")
    p.add_argument("--out", type=Path, required=True, help="rows file to write (.npz; provenance beside it)")
    p.set_defaults(handler=cmd_train_verifier)

    p = subparsers.add_parser("train", help="fine-tune smoke/fire weights on dataset folders")
    train_args(p)
    p.set_defaults(handler=cmd_train)
