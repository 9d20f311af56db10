"""Detector throughput: end-to-end (decoded frame in → detection out) vs the raw model forward pass.

    python bench/detect.py [--cameras 1,8,64] [--imgsz 416] [--backend auto|torch|onnx|openvino]
        [--seconds 10] [--json bench/out/detect.json]

End-to-end per round: the newest decoded frame of every camera (vtest.avi frames, 768×576 BGR) is
letterboxed into batches of ≤ max_batch, run through the model, NMS'd, boxes mapped back, then each
camera's pipeline applies thresholds/masks/colour check and k-of-n confirmation — exactly
`DetectorService._run_batch` without the asyncio hand-off. Raw forward: the same batches as ready
tensors, model call only. Pipeline without the model: end-to-end with the forward pass's output replayed —
the ceiling the code around the model puts on a GPU worker (end-to-end ≈ 1 / (1/forward + 1/this)).
Reports frames/s (wall) and CPU seconds per frame (robust on a busy box).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.detectors import CameraDetectors, DetectorsConfig  # noqa: E402
from detectors.base import Camera  # noqa: E402
from detectors.fire import FireDetector  # noqa: E402
from detectors.model import Box  # noqa: E402
from detectors.plugins.smoke_fire import SmokeFire  # noqa: E402


def frames_from(path: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        out.append(f)
    return out


def timed(fn, seconds: float, per_round: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    while True:
        fn()
        n += per_round
        if time.perf_counter() - t0 >= seconds:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"fps": round(n / wall, 2), "cpu_ms_per_frame": round(1000 * cpu / n, 1), "frames": n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="1,8,64")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "openvino"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clip", type=Path, default=ROOT / "var" / "clips" / "vtest.avi")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    cfg = DetectorsConfig(imgsz=args.imgsz, backend=args.backend, device=args.device, max_batch=args.max_batch)
    fire = FireDetector(cfg)
    r = fire.runner
    ncams = [int(x) for x in args.cameras.split(",")]
    frames = frames_from(args.clip, max(ncams))
    results = {"imgsz": args.imgsz, "backend": r.backend, "device": r.device, "max_batch": args.max_batch,
               "cpus": os.cpu_count(), "load_avg": os.getloadavg(), "runs": []}
    for n in ncams:
        smoke_fire = SmokeFire(cfg, fire)
        pipes = [f"cam{i}" for i in range(n)]
        for cid in pipes:
            smoke_fire.watch(Camera(cid, "U", CameraDetectors(camera_id=cid)))
        cam_frames = frames[:n]
        t = [0.0]

        def end_to_end() -> None:
            t[0] += 0.5  # noqa: B023
            boxes = fire.detect(cam_frames)  # noqa: B023
            feed(pipes, cam_frames, boxes)  # noqa: B023

        def feed(ps: list[str], chunk: list[np.ndarray], boxes: list[list[Box]]) -> None:
            """As SmokeFire.process: per-box stages for all cameras at once, then each confirmer."""
            settings = [smoke_fire.settings(p) for p in ps]  # noqa: B023
            kept = fire.keep_batch([(f, b, c) for c, f, b in zip(settings, chunk, boxes, strict=True)])
            for p, f, k in zip(ps, chunk, kept, strict=True):
                smoke_fire.confirm(p, t[0], f, k)  # noqa: B023

        batches = [r.preprocess(cam_frames[i : i + args.max_batch])[0] for i in range(0, n, args.max_batch)]

        def raw() -> None:
            for b in batches:  # noqa: B023
                r.forward(b)

        chunks = [cam_frames[i : i + args.max_batch] for i in range(0, n, args.max_batch)]
        preds = [r.forward(b) for b in batches]
        conf, iou = fire.min_conf, cfg.thresholds.nms_iou

        def around_model() -> None:
            """Everything end_to_end does except the forward pass (its output replayed): the pipeline's own cost."""
            t[0] += 0.5  # noqa: B023
            mb = args.max_batch
            for i, (chunk, pred) in enumerate(zip(chunks, preds, strict=True)):  # noqa: B023
                _, metas = r.preprocess(chunk)
                boxes = r.postprocess(pred, metas, [f.shape[:2] for f in chunk], conf, iou)  # noqa: B023
                feed(pipes[i * mb : (i + 1) * mb], chunk, boxes)  # noqa: B023

        e2e = timed(end_to_end, args.seconds, n)
        fwd = timed(raw, args.seconds, n)
        rest = timed(around_model, min(args.seconds, 3.0), n)
        row = {"cameras": n, "end_to_end": e2e, "raw_forward": fwd, "around_model": rest}
        results["runs"].append(row)
        print(f"{n:3d} cameras  end-to-end {e2e['fps']:7.2f} frames/s ({e2e['cpu_ms_per_frame']} CPU-ms/frame)   "
              f"raw forward {fwd['fps']:7.2f} frames/s ({fwd['cpu_ms_per_frame']} CPU-ms/frame)   "
              f"pipeline without the model {rest['fps']:8.1f} frames/s ({rest['cpu_ms_per_frame']} CPU-ms/frame)",
              flush=True)
    print(f"imgsz={args.imgsz} backend={r.backend} device={r.device} load_avg={results['load_avg']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
