"""Chooses the temporal check's thresholds (config `confirmation.temporal`, detectors/temporal.py) on data that
bench/detect_video.py does NOT measure:

* positives: fire8's video sequences (`<video>_mp4-<frame>` images of train + valid, in frame order, one every 0.5 s
  as in tests/detectors/test_fire.py) — real smoke and flames that move;
* still negatives: still scenes (bench/detect_video.py's `still_scene`: drift, zoom, noise, JPEG, sampled at 2 fps) of
  pictures from the fire-mix folders with fire in them (pbl5, bombatronic, hotfire, continuous-fire) and of fire8
  frames — pictures of fires that a fixed camera sees unchanged, the hardest still case;
* moving negatives (`moving_scene`): the same sources' fire pictures — the whole picture, or its largest labelled
  box grown by 30 % — pasted on a background (hotfire-smoke-fire pictures without labels) and moved *rigidly*: driven
  across the frame at 60–200 px/s (a car; bouncing at the edges), or swaying about a pivot (±8–40 px, up to ±6°,
  period 1.2–4 s: a branch in the wind); sensor noise σ 3 and JPEG q70, at the camera's 2 fps, 10 s each. Things
  that really move but do not change: what the motion test (`min_unexplained`) is for.

The model and the per-box stages run once per sampled frame (shipped defaults) and their boxes are cached; the frames
are rebuilt (deterministic) and each frame's change is recorded at several pixel thresholds, and its unexplained
fraction at several residual thresholds and optical-flow settings. Then every candidate setting is replayed through
the camera's k-of-n `Confirmer` with `detectors.temporal.window_passes` (the production rule: min change, frames,
motion test). Prints, per candidate: positive sequences alarmed and their median first alarm, still and moving
scenes alarmed.

    python bench/temporal_tune.py [--stills 6] [--moving 4] [--seconds 20] [--moving-seconds 10] [--cache FILE]
        [--cached-only]
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from detect_video import STILL_FPS, still_scene  # noqa: E402
from eval_sources import FIRE_MIX_POSITIVES, SHARED, images_in, labelled_source  # noqa: E402

from config.detectors import DetectorsConfig, TemporalCheck  # noqa: E402
from detectors.fire import Confirmer, FireDetector  # noqa: E402
from detectors.temporal import Change, change, small_grey, unexplained, window_passes  # noqa: E402

PIXEL_THRESHOLDS = (8.0, 12.0, 16.0)
RESIDUAL_THRESHOLDS = (12.0, 16.0)
FLOWS = ((64, 9, 0.5), (64, 15, 0.5), (64, 15, 1.0))  # (flow_size, flow_window, flow_margin)
SOURCES = (*FIRE_MIX_POSITIVES, "fire8")
SIZE = TemporalCheck().size
FPS = 2.0  # the camera's sampling


def fire8_sequences(min_frames: int = 6) -> dict[str, list[Path]]:
    fire8 = SHARED / "fire8"
    seqs: dict[str, list[tuple[int, Path]]] = {}
    for split in ("train", "valid"):
        for p in (fire8 / split / "images").glob("*_mp4-*.jpg"):
            m = re.match(r"(.+_mp4)-(\d+)_jpg", p.name)
            if m:
                seqs.setdefault(m.group(1), []).append((int(m.group(2)), p))
    return {k: [p for _, p in sorted(v)] for k, v in sorted(seqs.items()) if len(v) >= min_frames}


def source_pictures(name: str, k: int) -> list[tuple[Path, Path]]:
    """`k` labelled (image, label) pairs spread over a positive source."""
    folders = ([SHARED / "fire8" / s / "images" for s in ("train", "valid")] if name == "fire8"
               else [SHARED / "fire-mix" / name / "images"])
    src = labelled_source(name, [f for f in folders if f.is_dir()]).subset(k)
    return list(zip(src.images, src.labels, strict=True))


def backgrounds() -> list[Path]:
    """hotfire-smoke-fire pictures without labels (none of detect_video's sources)."""
    folder = SHARED / "fire-mix" / "hotfire-smoke-fire"
    return [p for p in images_in(folder / "images")
            if not ((folder / "labels" / f"{p.stem}.txt").is_file()
                    and (folder / "labels" / f"{p.stem}.txt").read_text().strip())]


def largest_box(image: np.ndarray, label: Path, grow: float = 0.3) -> np.ndarray:
    h, w = image.shape[:2]
    rows = [list(map(float, ln.split()[1:5])) for ln in label.read_text().splitlines() if ln.strip()]
    cx, cy, bw, bh = max(rows, key=lambda r: r[2] * r[3])
    bw, bh = bw * (1 + grow), bh * (1 + grow)
    x1, y1 = max(0, int((cx - bw / 2) * w)), max(0, int((cy - bh / 2) * h))
    x2, y2 = min(w, int((cx + bw / 2) * w)), min(h, int((cy + bh / 2) * h))
    return image[y1:y2, x1:x2] if x2 - x1 >= 16 and y2 - y1 >= 16 else image


def moving_scene(patch: np.ndarray, background: np.ndarray, mode: str, seconds: float, seed: int,
                 size: tuple[int, int] = (640, 480)) -> Iterator[tuple[float, np.ndarray]]:
    """A fixed camera (2 fps) on a still background across which `patch` moves rigidly: `drive` (60–200 px/s at a
    small angle, bouncing at the edges) or `sway` (about a pivot below it: ±8–40 px and up to ±6°, period 1.2–4 s);
    sensor noise σ 3 and JPEG q70."""
    rng = np.random.default_rng(seed)
    bg = cv2.resize(background, size, interpolation=cv2.INTER_AREA)
    pw = int(rng.uniform(160, 280))
    ph = min(300, max(16, round(patch.shape[0] * pw / patch.shape[1])))
    p = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA)
    W, H = size[0] - pw, size[1] - ph
    x0, y0 = rng.uniform(0, W), rng.uniform(0, max(1, H))
    speed, ang = rng.uniform(60, 200) * rng.choice([-1, 1]), np.deg2rad(rng.uniform(-15, 15))
    amp, period, rot, phase = rng.uniform(8, 40), rng.uniform(1.2, 4.0), rng.uniform(0, 6), rng.uniform(0, 2 * np.pi)
    dirn = rng.uniform(-np.pi / 6, np.pi / 6)
    for i in range(max(1, round(seconds * FPS))):
        t = i / FPS
        if mode == "drive":
            x = (x0 + speed * np.cos(ang) * t) % (2 * W)
            y = (y0 + abs(speed) * np.sin(ang) * t) % (2 * max(1, H))
            x, y, a = (2 * W - x if x > W else x), (2 * H - y if y > H else y), 0.0
        else:
            s = np.sin(2 * np.pi * t / period + phase)
            x, y, a = x0 + amp * s * np.cos(dirn), y0 + amp * s * np.sin(dirn), rot * s
        m = cv2.getRotationMatrix2D((pw / 2, ph), a, 1.0)  # pivot at the patch's bottom centre
        m[:, 2] += (x, y)
        warped = cv2.warpAffine(p, m, size, flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), m, size, flags=cv2.INTER_NEAREST)
        frame = np.where(mask[..., None] > 0, warped, bg)
        noisy = np.clip(frame.astype(np.float32) + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
        _, buf = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 70])
        yield t, cv2.imdecode(buf, cv2.IMREAD_COLOR)


def frames_of(spec: tuple[Any, ...], seconds: float, moving_seconds: float) -> list[tuple[float, np.ndarray]]:
    """The sampled frames of one recording (rebuilt deterministically from its spec)."""
    kind = spec[0]
    if kind == "pos":
        return [(i * 0.5, cv2.imread(str(p))) for i, p in enumerate(spec[1])]
    img = cv2.imread(str(spec[1]))
    if kind == "still":
        step = round(STILL_FPS / FPS)
        return [tf for j, tf in enumerate(still_scene(img, seconds, spec[2])) if j % step == 0]
    _, _, label, bg, mode, whole, seed = spec
    patch = img if whole else largest_box(img, label)
    return list(moving_scene(patch, cv2.imread(str(bg)), mode, moving_seconds, seed))


def specs(stills: int, moving: int) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {f"pos/{k}": ("pos", v) for k, v in fire8_sequences().items()}
    bgs = backgrounds()
    for s, src in enumerate(SOURCES):
        pics = source_pictures(src, stills + moving)
        for i, (img, _) in enumerate(pics[:stills]):
            out[f"still/{src}/{img.name}"] = ("still", img, 100 + i)
        for i, (img, lab) in enumerate(pics[-moving:]):
            for j, (mode, whole) in enumerate(itertools.product(("drive", "sway"), (True, False))):
                seed = 1000 * s + 10 * i + j
                bg = bgs[seed % len(bgs)]
                out[f"moving/{mode}/{'whole' if whole else 'box'}/{src}/{img.name}"] = (
                    "moving", img, lab, bg, mode, whole, seed)
    return out


def record_boxes(det: FireDetector, frames: list[tuple[float, np.ndarray]]) -> list[tuple[float, Any]]:
    """Per sampled frame: t and the boxes that passed the per-box stages (shipped defaults)."""
    return [(t, det.keep(f, b)) for (t, f), b in zip(frames, det.detect([f for _, f in frames]), strict=True)]


def record_changes(frames: list[tuple[float, np.ndarray]], kept: list[tuple[float, Any]]) -> list[dict[str, Any]]:
    """Per frame and class with boxes: (inside, outside) per pixel threshold, unexplained per (flow, residual)."""
    out: list[dict[str, Any]] = []
    prev, prev_small = None, None
    for (_, f), (_, k) in zip(frames, kept, strict=True):
        cur = small_grey(f, SIZE)
        ch: dict[str, Any] = {}
        for cls in ("smoke", "fire"):
            bx = [b.xyxy for n, b in k if n == cls]
            if bx and prev is not None and prev_small is not None and prev.shape == f.shape:
                px = {pt: change(prev_small, cur, bx, cur.shape[1] / f.shape[1], pt) for pt in PIXEL_THRESHOLDS}
                un = {(*fl, rt): unexplained(prev, f, bx, TemporalCheck(
                    flow_size=fl[0], flow_window=fl[1], flow_margin=fl[2], residual_threshold=rt))
                      for fl, rt in itertools.product(FLOWS, RESIDUAL_THRESHOLDS)}
                ch[cls] = {"px": {pt: (c.inside, c.outside) for pt, c in px.items()}, "un": un}
        out.append(ch)
        prev, prev_small = f, cur
    return out


def replay(kept: list[tuple[float, Any]], changes: list[dict[str, Any]], dcfg: DetectorsConfig,
           tc: TemporalCheck) -> tuple[int, float | None]:
    """Alarms and first-alarm time of one recording with the temporal check `tc` (disabled: no check)."""
    c = dcfg.confirmation
    conf = Confirmer(c.k, c.n, c.min_overlap, c.rearm_after_s)
    window: dict[str, list[Change | None]] = {"smoke": [], "fire": []}
    alarms, first = 0, None
    for (t, k), ch in zip(kept, changes, strict=True):
        for cls, w in window.items():
            v = ch.get(cls)
            if v is None:
                w.append(None)
            else:
                inside, outside = v["px"][tc.pixel_threshold]
                un = v["un"][(tc.flow_size, tc.flow_window, tc.flow_margin, tc.residual_threshold)]
                w.append(Change(inside, outside, (0.0, 0.0), un))

        def gate(cls: str) -> bool:
            return window_passes(tc, window[cls][-c.n:])

        ev = conf.update(t, k, gate if tc.enabled else None)
        if ev:
            alarms += len(ev)
            first = t if first is None else first
    return alarms, first


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stills", type=int, default=6, help="pictures per source made into still scenes")
    ap.add_argument("--moving", type=int, default=4, help="pictures per source made into 4 moving scenes each")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of a still scene")
    ap.add_argument("--moving-seconds", type=float, default=10.0, help="length of a moving scene")
    ap.add_argument("--cache", type=Path, default=ROOT / "var" / "temporal_tune_boxes.pkl",
                    help="the model's boxes per recording (the changes are recomputed each run)")
    ap.add_argument("--cached-only", action="store_true", help="only the recordings whose boxes are cached")
    args = ap.parse_args(argv)
    dcfg = DetectorsConfig.model_validate({"second_stage": {"learn_hard_negatives": False}})
    sp = specs(args.stills, args.moving)
    boxes: dict[str, Any] = pickle.loads(args.cache.read_bytes()) if args.cache.is_file() else {}
    if args.cached_only:
        sp = {k: v for k, v in sp.items() if k in boxes}
    det: FireDetector | None = None
    data: dict[str, Any] = {}
    for name, spec in sp.items():
        frames = frames_of(spec, args.seconds, args.moving_seconds)
        if name not in boxes:
            det = det or FireDetector(dcfg)
            boxes[name] = record_boxes(det, frames)
            args.cache.parent.mkdir(parents=True, exist_ok=True)
            args.cache.write_bytes(pickle.dumps(boxes))
        data[name] = (boxes[name], record_changes(frames, boxes[name]))
        print(f"recorded {name} ({len(frames)} frames)", file=sys.stderr, flush=True)
    groups = {g: {k: data[k] for k in sp if k.startswith(g)} for g in ("pos", "still", "moving")}
    base = TemporalCheck()

    def summary(tc: TemporalCheck) -> tuple[int, int, float, int, int, int, int]:
        p = [replay(*r, dcfg, tc) for r in groups["pos"].values()]
        st = [replay(*r, dcfg, tc)[0] for r in groups["still"].values()]
        mv = [replay(*r, dcfg, tc)[0] for r in groups["moving"].values()]
        delays = [f for _, f in p if f is not None]
        return (sum(1 for a, _ in p if a), len(p), float(np.median(delays)) if delays else float("nan"),
                sum(1 for a in st if a), len(st), sum(1 for a in mv if a), len(mv))

    def line(label: str, tc: TemporalCheck) -> tuple[int, int, float, int, int, int, int]:
        s = summary(tc)
        print(f"{label:<58} {s[0]:>3} of {s[1]:<3} {s[2]:>6.1f} s  {s[3]:>3} of {s[4]:<3}  {s[5]:>3} of {s[6]:<3}")
        return s

    print("positives: fire8 sequences; negatives: still and rigidly moving scenes of fire pictures (fire-mix, fire8)")
    print(f"{'setting':<58} {'pos alarmed':>10} {'median':>8}  {'stills':>9}  {'moving':>9}")
    line("no check", base.model_copy(update={"enabled": False}))
    line("previous default (pixel 16, change 0.10, 1 frame, no motion test)",
         base.model_copy(update={"pixel_threshold": 16.0, "min_change": 0.1, "min_frames": 1,
                                 "min_unexplained": 0.0}))
    for pt, mc, mf in itertools.product(PIXEL_THRESHOLDS, (0.05, 0.1, 0.15), (1, 2)):
        for fl, rt, mu in itertools.product(FLOWS, RESIDUAL_THRESHOLDS, (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)):
            tc = base.model_copy(update={"pixel_threshold": pt, "min_change": mc, "min_frames": mf,
                                         "flow_size": fl[0], "flow_window": fl[1], "flow_margin": fl[2],
                                         "residual_threshold": rt, "min_unexplained": mu})
            line(f"pixel {pt:.0f} chg {mc:.2f} fr {mf} flow {fl[0]}/{fl[1]}/{fl[2]} resid {rt:.0f} unexpl {mu:.2f}",
                 tc)
    print("per recording, without → with the default check: alarms, first alarm")
    for name, r in data.items():
        if name not in sp:
            continue
        (a0, f0), (a1, f1) = replay(*r, dcfg, base.model_copy(update={"enabled": False})), replay(*r, dcfg, base)
        if a0 or a1:
            print(f"  {name[:70]:<70} {a0} {f0} → {a1} {f1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
