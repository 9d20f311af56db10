"""Fine-tuning judged leave-one-source-out: does `firelink train` on all sources beat the shipped weights on a source
it never saw?

    python bench/train_loso.py pack DIR [--max-side 416] [--quick N]
    python bench/train_loso.py run --pack DIR --out OUT [--epochs 12 --freeze-epochs 4 --imgsz 416 --batch 32
                                   --parallel 7 --device auto]
    python bench/train_loso.py report OUT/scores.json

`pack` copies every source of bench/eval_sources.py (labelled images only for the fire/smoke sources; every
everyday-scene source) into DIR/<source>/images (+ labels), downsized, with DIR/sources.json — small enough to send to
a GPU machine. `run` fine-tunes, in parallel processes, one model per *trainable* source held out (fire8, the four
fire-mix fire folders, clinic CCTV) on all the others (detectors.train.train: the shipped FasterNet weights,
freeze-then-unfreeze), and one on all of them (`all.pt`, the candidate). Each model, and the shipped weights, then
scores the sources it never saw through the pipeline's own `YoloRunner` (letterbox, NMS): the fold model its held-out
source and every eval-only source (opencv-doc, desktop backgrounds, everyday-video frames: never trained on); the
candidate the eval-only sources. `report` prints, per source, recall (fire/smoke sources) or false-positive rate
(everyday sources) of the model alone at confidence >= 0.5 for the shipped weights and for the model(s) that never
saw it, worst first, and the verdict: the candidate replaces the shipped weights only if no unseen source got worse.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

OPERATING_POINT = 0.5  # "model alone at 0.5": the bar of issue 13
RAW_CONF = 0.05
SHIPPED = "shipped"  # how the report names the shipped weights


# ------------------------------------------------------------------------------------------------ pack
def pack(dest: Path, max_side: int = 416, quality: int = 85, per_source: int = 0,
         eval_per_source: int = 0) -> dict[str, Any]:
    """DIR/<source>/images (+labels) and DIR/sources.json; labels are normalised YOLO rows, unchanged by resizing.
    `per_source` / `eval_per_source` (0: all) keep that many images of each trainable / eval-only source, spread
    evenly over it (to fit what a GPU machine can be sent)."""
    from eval_sources import all_sources

    dest.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {}
    for src in all_sources():
        trainable = src.kind == "positive" or src.name.startswith("clinic")
        cap = per_source if trainable else eval_per_source
        src = src.subset(cap) if cap else src
        folder = dest / src.name.replace(":", "-")
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "labels").mkdir(exist_ok=True)
        for i, img in enumerate(src.images):
            frame = cv2.imread(str(img))
            if frame is None:
                continue
            h, w = frame.shape[:2]
            if max(h, w) > max_side:
                k = max_side / max(h, w)
                frame = cv2.resize(frame, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
            name = f"{i:05d}-{img.stem[:40]}"
            cv2.imwrite(str(folder / "images" / f"{name}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
            label = src.labels[i].read_text() if src.labels else ""
            (folder / "labels" / f"{name}.txt").write_text(label)
        meta[folder.name] = {"kind": src.kind, "trainable": trainable, "images": len(src.images)}
    (dest / "sources.json").write_text(json.dumps(meta, indent=1))
    return meta


# ------------------------------------------------------------------------------------------------- run
@dataclass(frozen=True)
class Job:
    name: str  # "fold-<source>" or "all"
    held_out: str | None
    train_on: tuple[str, ...]
    score_on: tuple[str, ...]


def jobs(meta: dict[str, Any]) -> list[Job]:
    trainable = [s for s, m in meta.items() if m["trainable"]]
    eval_only = tuple(s for s, m in meta.items() if not m["trainable"])
    out = [Job(f"fold-{s}", s, tuple(t for t in trainable if t != s), (s, *eval_only)) for s in trainable]
    return [*out, Job("all", None, tuple(trainable), eval_only)]


def score(weights: str, pack_dir: Path, sources: tuple[str, ...], imgsz: int, device: str) -> dict[str, Any]:
    """Per image of each source: the highest smoke and fire confidence (>= RAW_CONF) and whether it is labelled."""
    from detectors.model import YoloRunner

    runner = YoloRunner(weights, imgsz=imgsz, device=device, backend="torch" if device != "cpu" else "auto")
    index = {v: k for k, v in runner.names.items()}
    smoke, fire = index["smoke"], index["fire"]
    out: dict[str, Any] = {}
    for s in sources:
        imgs = sorted((pack_dir / s / "images").glob("*.jpg"))
        best = np.zeros((len(imgs), 2), np.float32)
        for i in range(0, len(imgs), 32):
            frames = [cv2.imread(str(p)) for p in imgs[i:i + 32]]
            for j, boxes in enumerate(runner.detect(frames, conf=RAW_CONF)):
                for b in boxes:
                    k = 0 if b.cls == smoke else 1 if b.cls == fire else -1
                    if k >= 0:
                        best[i + j, k] = max(best[i + j, k], b.conf)
        labelled = [bool((pack_dir / s / "labels" / f"{p.stem}.txt").read_text().strip()) for p in imgs]
        out[s] = {"best": best.round(4).tolist(), "labelled": labelled}
    return out


def _without_polars() -> None:
    """ultralytics reads results.csv back with polars only to copy it into each checkpoint; where polars is missing
    (a bare GPU machine) the checkpoints go without that copy."""
    try:
        import polars  # noqa: F401
    except ImportError:
        from ultralytics.engine.trainer import BaseTrainer

        BaseTrainer.read_results_csv = lambda self: {}  # type: ignore[method-assign]


def run_job(job: Job, pack_dir: Path, out: Path, opts: dict[str, Any]) -> dict[str, Any]:
    from detectors.train import train

    _without_polars()
    t0 = time.time()
    weights = out / f"{job.name}.pt"
    prov = train([pack_dir / s for s in job.train_on], out=weights, weights=opts["shipped"], epochs=opts["epochs"],
                 imgsz=opts["imgsz"],
                 batch=opts["batch"], device=opts["device"], workers=opts["workers"],
                 freeze_epochs=opts["freeze_epochs"], val_every_epoch=False, fraction=opts["fraction"],
                 command=f"bench/train_loso.py {job.name}")
    trained = time.time() - t0
    scores = score(str(weights), pack_dir, job.score_on, opts["imgsz"], prov["settings"]["device"])
    return {"job": job.name, "held_out": job.held_out, "train_on": list(job.train_on), "scores": scores,
            "train_s": round(trained, 1), "total_s": round(time.time() - t0, 1), "metrics": prov["metrics"]}


def run(pack_dir: Path, out: Path, opts: dict[str, Any], parallel: int) -> dict[str, Any]:
    meta = json.loads((pack_dir / "sources.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    todo = jobs(meta)
    with ProcessPoolExecutor(max_workers=max(1, parallel), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_job, j, pack_dir, out, opts) for j in todo]
        shipped = pool.submit(score, opts["shipped"], pack_dir, tuple(meta), opts["imgsz"],
                              "cpu" if opts["device"] == "cpu" else _device(opts["device"]))
        results = [f.result() for f in futures]
    doc = {"pack": meta, "options": opts, "shipped": shipped.result(), "models": results,
           "seconds": round(time.time() - t0, 1)}
    doc["replace"] = not compare(doc)[1]
    (out / "scores.json").write_text(json.dumps(doc))
    return doc


def _device(device: str) -> str:
    from detectors.model import pick_device

    return pick_device(device)


# ---------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class Figure:
    source: str
    kind: str  # positive: recall; negative: false-positive rate
    model: str
    value: float
    n: int


def figure(source: str, kind: str, model: str, s: dict[str, Any]) -> Figure:
    best = np.asarray(s["best"], np.float32).reshape(-1, 2).max(axis=1) if s["best"] else np.zeros(0)
    mask = np.asarray(s["labelled"], bool) if kind == "positive" else np.ones(len(best), bool)
    flagged = best[mask] >= OPERATING_POINT
    return Figure(source, kind, model, float(flagged.mean()) if flagged.size else 0.0, int(flagged.size))


def worse(new: Figure, old: Figure) -> bool:
    return new.value < old.value if new.kind == "positive" else new.value > old.value


def compare(doc: dict[str, Any]) -> tuple[list[tuple[Figure, Figure]], list[str]]:
    """(shipped, unseen model) per source and model; and the sources where an unseen model did worse."""
    kinds = {s: m["kind"] for s, m in doc["pack"].items()}
    pairs = []
    for m in doc["models"]:
        for s, sc in m["scores"].items():
            pairs.append((figure(s, kinds[s], SHIPPED, doc["shipped"][s]), figure(s, kinds[s], m["job"], sc)))
    return pairs, sorted({f"{new.source} ({new.model})" for old, new in pairs if worse(new, old)})


def report(doc: dict[str, Any]) -> str:
    pairs, losses = compare(doc)
    # worst first: by the unseen model's miss rate or false-positive rate
    pairs.sort(key=lambda p: -(1 - p[1].value if p[1].kind == "positive" else p[1].value))
    lines = [f"model alone at confidence >= {OPERATING_POINT}; each row a source the model never saw "
             f"(epochs {doc['options']['epochs']}, backbone frozen for {doc['options']['freeze_epochs']}, "
             f"{doc['options']['imgsz']} px, {doc['seconds']} s)",
             f"{'source':<28} {'n':>5} {'figure':<7} {'shipped':>8} {'trained':>8}  model"]
    for old, new in pairs:
        what = "recall" if new.kind == "positive" else "FP"
        lines.append(f"{new.source:<28} {new.n:>5} {what:<7} {old.value:>8.3f} {new.value:>8.3f}  {new.model}"
                     + ("  WORSE" if worse(new, old) else ""))
    verdict = ("candidate (all.pt) is never worse on an unseen source: it may replace the shipped weights"
               if not losses else "shipped weights kept: worse on " + ", ".join(losses))
    return "\n".join([*lines, verdict])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("dest", type=Path)
    p.add_argument("--max-side", type=int, default=416)
    p.add_argument("--quality", type=int, default=85, help="JPEG quality of the copies")
    p.add_argument("--per-source", type=int, default=0, help="images kept per trainable source (0: all)")
    p.add_argument("--eval-per-source", type=int, default=0, help="images kept per eval-only source (0: all)")
    r = sub.add_parser("run")
    r.add_argument("--pack", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--epochs", type=int, default=12)
    r.add_argument("--freeze-epochs", type=int, default=4)
    r.add_argument("--imgsz", type=int, default=416)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--fraction", type=float, default=1.0)
    r.add_argument("--parallel", type=int, default=7)
    r.add_argument("--device", default="auto")
    r.add_argument("--shipped", default="fire-detector", help="the shipped weights (a name or a file)")
    q = sub.add_parser("report")
    q.add_argument("scores", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        print(json.dumps(pack(args.dest, args.max_side, args.quality, args.per_source, args.eval_per_source),
                         indent=1))
    elif args.cmd == "run":
        opts = {k: getattr(args, k) for k in ("epochs", "freeze_epochs", "imgsz", "batch", "workers", "fraction",
                                                "device", "shipped")}
        doc = run(args.pack, args.out, opts, args.parallel)
        print(report(doc))
    else:
        print(report(json.loads(args.scores.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
