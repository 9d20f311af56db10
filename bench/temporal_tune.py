"""Chooses the temporal check's thresholds (config `confirmation.temporal`, detectors/temporal.py) on data that
bench/detect_video.py does NOT measure:

* positives: fire8's video sequences (`<video>_mp4-<frame>` images of train + valid, in frame order, one every 0.5 s
  as in tests/detectors/test_fire.py) — real smoke and flames that move;
* negatives: still scenes (bench/detect_video.py's `still_scene`: drift, zoom, noise, JPEG, sampled at 2 fps) of
  pictures from the fire-mix folders with fire in them (pbl5, bombatronic, hotfire, continuous-fire) and of fire8
  frames — pictures of fires that a fixed camera sees unchanged, the hardest still case.

The model and the per-box stages run once per sampled frame (shipped defaults); each frame's change is recorded at
several pixel thresholds, then every candidate (pixel threshold, min change, min frames) is replayed through the
camera's k-of-n `Confirmer`. Prints, per candidate: positive sequences alarmed and their first-alarm delay, still
scenes alarmed.

    python bench/temporal_tune.py [--stills 8] [--still-seconds 20] [--cache FILE]
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from detect_video import STILL_FPS, still_scene  # noqa: E402
from eval_sources import SHARED, all_sources  # noqa: E402

from config.detectors import DetectorsConfig, TemporalCheck  # noqa: E402
from detectors.fire import Confirmer, FireDetector  # noqa: E402
from detectors.temporal import change, small_grey  # noqa: E402

PIXEL_THRESHOLDS = (4.0, 6.0, 8.0, 12.0, 16.0)
STILL_SOURCES = ("pbl5-indoor-fire", "bombatronic-indoor-fire", "hotfire-smoke-fire", "continuous-fire", "fire8")
SIZE = TemporalCheck().size


def fire8_sequences(min_frames: int = 6) -> dict[str, list[Path]]:
    fire8 = SHARED / "fire8"
    seqs: dict[str, list[tuple[int, Path]]] = {}
    for split in ("train", "valid"):
        for p in (fire8 / split / "images").glob("*_mp4-*.jpg"):
            m = re.match(r"(.+_mp4)-(\d+)_jpg", p.name)
            if m:
                seqs.setdefault(m.group(1), []).append((int(m.group(2)), p))
    return {k: [p for _, p in sorted(v)] for k, v in sorted(seqs.items()) if len(v) >= min_frames}


def record(det: FireDetector, frames: list[tuple[float, np.ndarray]]) -> list[dict[str, Any]]:
    """Per sampled frame: t, the boxes that passed the per-box stages, and per class with boxes the change at each
    pixel threshold (inside, outside)."""
    out: list[dict[str, Any]] = []
    prev = None
    for (t, f), boxes in zip(frames, det.detect([f for _, f in frames]), strict=True):
        kept = det.keep(f, boxes)
        cur = small_grey(f, SIZE)
        ch: dict[str, dict[float, tuple[float, float]]] = {}
        for cls in ("smoke", "fire"):
            bx = [b.xyxy for n, b in kept if n == cls]
            if bx and prev is not None and prev.shape == cur.shape:
                ch[cls] = {}
                for pt in PIXEL_THRESHOLDS:
                    c = change(prev, cur, bx, cur.shape[1] / f.shape[1], pt)
                    ch[cls][pt] = (c.inside, c.outside)
        out.append({"t": t, "kept": kept, "change": ch})
        prev = cur
    return out


def replay(rec: list[dict[str, Any]], dcfg: DetectorsConfig, pt: float | None, min_change: float,
           min_frames: int) -> tuple[int, float | None]:
    """Alarms and first-alarm time of one recorded sequence with the given temporal check (pt None: no check)."""
    c = dcfg.confirmation
    conf = Confirmer(c.k, c.n, c.min_overlap, c.rearm_after_s)
    scores: dict[str, list[float | None]] = {"smoke": [], "fire": []}
    alarms, first = 0, None
    for r in rec:
        for cls in scores:
            v = r["change"].get(cls)
            scores[cls].append(None if v is None or pt is None else v[pt][0] - v[pt][1])

        def gate(cls: str) -> bool:
            window = [s for s in scores[cls][-c.n:] if s is not None]
            return sum(s >= min_change for s in window) >= min_frames

        ev = conf.update(r["t"], r["kept"], None if pt is None else gate)
        if ev:
            alarms += len(ev)
            first = r["t"] if first is None else first
    return alarms, first


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stills", type=int, default=8, help="pictures per source made into still scenes")
    ap.add_argument("--still-seconds", type=float, default=20.0)
    ap.add_argument("--cache", type=Path, default=ROOT / "var" / "temporal_tune.pkl")
    args = ap.parse_args(argv)
    dcfg = DetectorsConfig.model_validate({"second_stage": {"learn_hard_negatives": False}})
    if args.cache.is_file():
        data = pickle.loads(args.cache.read_bytes())
    else:
        det = FireDetector(dcfg)
        data = {"pos": {}, "neg": {}}
        for name, paths in fire8_sequences().items():
            frames = [(i * 0.5, cv2.imread(str(p))) for i, p in enumerate(paths)]
            data["pos"][name] = record(det, frames)
        sources = {s.name: s for s in all_sources(wallpapers=False)}
        step = round(STILL_FPS / 2)  # the camera's 2 fps sampling
        for src_name in STILL_SOURCES:
            src = sources[src_name].subset(args.stills)
            for i, p in enumerate(src.images):
                img = cv2.imread(str(p))
                if img is None:
                    continue
                frames = [tf for j, tf in enumerate(still_scene(img, args.still_seconds, 100 + i)) if j % step == 0]
                data["neg"][f"{src_name}/{p.name}"] = record(det, frames)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        args.cache.write_bytes(pickle.dumps(data))
    pos, neg = data["pos"], data["neg"]

    def summary(pt: float | None, mc: float, mf: int) -> tuple[int, int, float, int, int]:
        p = [replay(r, dcfg, pt, mc, mf) for r in pos.values()]
        n = [replay(r, dcfg, pt, mc, mf) for r in neg.values()]
        delays = [f for _, f in p if f is not None]
        return (sum(1 for a, _ in p if a), len(p), float(np.median(delays)) if delays else float("nan"),
                sum(1 for a, _ in n if a), len(n))

    print("positives: fire8 sequences; negatives: still scenes of fire pictures (fire-mix positive folders, fire8)")
    print(f"{'pixel':>6} {'min chg':>7} {'frames':>6}  {'pos alarmed':>11} {'median first':>12}  "
          f"{'stills alarmed':>14}")
    a, b, d, e, f = summary(None, 0, 0)
    print(f"{'off':>6} {'':>7} {'':>6}  {a:>5} of {b:<3} {d:>10.1f} s  {e:>6} of {f:<5}")
    for pt, mc, mf in itertools.product(PIXEL_THRESHOLDS, (0.02, 0.05, 0.1, 0.15, 0.2, 0.3), (1, 2, 3)):
        a, b, d, e, f = summary(pt, mc, mf)
        print(f"{pt:>6.0f} {mc:>7.2f} {mf:>6}  {a:>5} of {b:<3} {d:>10.1f} s  {e:>6} of {f:<5}")
    t = TemporalCheck()
    print(f"per recording, without → with the default check (pixel {t.pixel_threshold:.0f}, min change "
          f"{t.min_change}, {t.min_frames} frame(s)): alarms, first alarm")
    for kind, recs in (("pos", pos), ("neg", neg)):
        for name, r in recs.items():
            (a0, f0), (a1, f1) = replay(r, dcfg, None, 0, 0), replay(r, dcfg, t.pixel_threshold, t.min_change,
                                                                      t.min_frames)
            if a0 or a1:
                print(f"  {kind} {name[:48]:<48} {a0} {f0} → {a1} {f1}")
    for kind, recs in (("pos", pos), ("neg", neg)):
        for pt in PIXEL_THRESHOLDS:
            s = [v[pt][0] - v[pt][1] for r in recs.values() for x in r for v in x["change"].values()]
            if s:
                q = np.percentile(s, [10, 50, 90, 99])
                print(f"{kind} pixel {pt:>4.0f}: {len(s)} frame scores, p10/50/90/99 {np.round(q, 3).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
