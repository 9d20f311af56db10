"""Blocked-exit scenes composited from real footage, generated deterministically (issue 13 part 4).

Nothing here is committed media: every frame is built on the fly from the data under ``../shared/data`` and
Debian's opencv-doc package (fetched into ``var/opencv-doc`` by ``bench/eval_sources.py``), from a seed.

* **Backgrounds** (`BACKGROUNDS`): real camera views. Two are real video with real people walking and standing
  (the Intel office clip, ``one-by-one-person-detection.mp4``, 768×432, and OpenCV's ``vtest.avi``, an outdoor path,
  768×576); the others are single CCTV frames turned into a fixed camera's stream (sensor noise drawn per frame, JPEG
  per frame, lighting over time): clinic CCTV (``fire-mix/clinic-cctv-negatives``: a bright tiled waiting room, a
  desk room, a dark wooden floor, the same room in IR) and two outdoor CCTV frames from ``fire8`` (dark asphalt by
  day, a courtyard at night). Each has two or three exit zones drawn on its floor, most ≤ 1 % of the frame.
* **Objects** (`OBJECTS`): real photographed objects cut out of real pictures with OpenCV's GrabCut from a
  rectangle given here (``grabcut_object``), optionally minus the pixels coloured like the surroundings of the
  rectangle (wall seen through a chair's frame), keeping the largest component. They are scaled so that they cover
  the wanted share of the zone, exposed like the scene (scaled by its median brightness; grey in IR), get a soft
  contact shadow, and are drawn behind the people of the scene (a real person's foreground mask in the videos).
* **People** (`person_pool`): real people cut out of the two videos by background subtraction against the clip's
  clear view (per-pixel median of frames without people), as sequences of walking and standing poses. On still
  backgrounds they walk through the zones (occluding the objects) and stand in them for less than the dwell.
* **Lighting** (`Lighting`): steady, slow drift (±25 % over ten minutes with a left-right gradient), auto-exposure
  jumps (×0.6–1.5 steps with a black-level offset, the picture's median kept in 45..175), low light (×0.3, 2.5× the
  noise, washed-out colour); every frame then goes through a highlight knee (above 200 compressed, as cameras do).

Each background, object and person source is either ``tune`` (thresholds were chosen looking at it) or ``held``
(only measured): ``bench/exit_eval.py`` reports both separately.

    python bench/exit_scenes.py --preview var/exit_scenes   # zones on every background, every cut-out object
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from eval_sources import SHARED, opencv_doc_dir  # noqa: E402

Split = Literal["tune", "held"]
LightingKind = Literal["steady", "drift", "jumps", "lowlight"]
VIDEOS = SHARED / "videos"
CLINIC = SHARED / "fire-mix" / "clinic-cctv-negatives" / "images"


# ------------------------------------------------------------------ sources


def _read_video(path: Path, step: int = 1) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    i = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(f)
        i += 1
    cap.release()
    if not frames:
        raise FileNotFoundError(f"no frames in {path}")
    return frames


def _vtest_path() -> Path:
    clip = ROOT / "var" / "clips" / "vtest.avi"
    if clip.is_file():
        return clip
    data = opencv_doc_dir()
    if data is None or not (data / "vtest.avi").is_file():
        raise FileNotFoundError("vtest.avi unavailable (scripts/demo_clips.sh or apt-get download opencv-doc)")
    return data / "vtest.avi"


def _image(src: str) -> np.ndarray:
    """``fire-mix/<folder>:<index>``, ``fire8:<index>`` (sorted train images), ``opencv:<name>``, ``video:<name>``."""
    kind, _, rest = src.partition(":")
    if kind == "opencv":
        data = opencv_doc_dir()
        img = cv2.imread(str(data / rest)) if data else None
    elif kind == "video":
        img = _read_video(VIDEOS / rest, step=10 ** 9)[0]
    elif kind == "fire8":
        files = sorted((SHARED / "fire8" / "train" / "images").glob("*.jpg"))
        img = cv2.imread(str(files[int(rest)])) if len(files) > int(rest) else None
    else:
        folder = kind.split("/", 1)[1]
        img = cv2.imread(str(SHARED / "fire-mix" / folder / "images" / f"{folder}-{int(rest):05d}.jpg"))
    if img is None:
        raise FileNotFoundError(f"image source {src} unavailable")
    return img


# ------------------------------------------------------------------ sprites (objects, people)


@dataclass(frozen=True)
class Sprite:
    bgr: np.ndarray  # uint8 H×W×3
    alpha: np.ndarray  # float32 H×W in 0..1

    def scaled(self, height: float) -> Sprite:
        s = max(2.0, height) / self.bgr.shape[0]
        w, h = max(2, round(self.bgr.shape[1] * s)), max(2, round(self.bgr.shape[0] * s))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        return Sprite(cv2.resize(self.bgr, (w, h), interpolation=interp),
                      cv2.resize(self.alpha, (w, h), interpolation=cv2.INTER_LINEAR))


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    source: str
    rect: tuple[int, int, int, int]  # x0, y0, x1, y1 around the object
    split: Split
    what: str
    refine: bool = False  # drop pixels coloured like the rectangle's surroundings (wall seen through a frame)


OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec("coat-black", "fire-mix/pbl5-indoor-fire:638", (376, 148, 458, 400), "tune",
               "black coat hanging on a stand: a soft dark bundle, like a bag"),
    ObjectSpec("box-light", "opencv:box.png", (1, 1, 323, 222), "tune", "printed cardboard box (light grey)"),
    ObjectSpec("armchair-brown", "fire-mix/pbl5-indoor-fire:319", (272, 250, 639, 620), "tune",
               "brown leather armchair"),
    ObjectSpec("chair-red", "fire-mix/bombatronic-indoor-fire:420", (50, 130, 170, 395), "tune",
               "wooden chair with a dark red seat", refine=True),
    ObjectSpec("chair-black", "fire-mix/pbl5-indoor-fire:638", (446, 345, 558, 452), "held",
               "black office chair (back and seat)", refine=True),
    ObjectSpec("armchair-black", "fire-mix/bombatronic-indoor-fire:400", (100, 300, 195, 392), "held",
               "black fabric armchair"),
    ObjectSpec("bottle", "video:bottle-detection.mp4", (50, 105, 125, 315), "held",
               "clear plastic water bottle (light, translucent)"),
    ObjectSpec("armchair-grey", "fire-mix/bombatronic-indoor-fire:420", (195, 250, 268, 385), "held",
               "grey-beige fabric armchair"),
)


def grabcut_object(img: np.ndarray, rect: tuple[int, int, int, int], refine: bool) -> Sprite:
    """GrabCut from a rectangle (8 iterations, fixed RNG seed), largest component, soft 1-px edge."""
    x0, y0, x1, y1 = rect
    h, w = img.shape[:2]
    x1, y1 = min(x1, w - 1), min(y1, h - 1)
    fg: np.ndarray
    if x0 <= 1 and y0 <= 1 and x1 >= w - 2 and y1 >= h - 2:  # the picture is the object (a box's face)
        fg = np.zeros((h, w), np.uint8)
        fg[2:-2, 2:-2] = 1
    else:
        cv2.setRNGSeed(13)
        mask = np.zeros((h, w), np.uint8)
        bgm, fgm = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(cv2.GaussianBlur(img, (0, 0), 0.5), mask, (x0, y0, x1 - x0, y1 - y0), bgm, fgm, 8,
                    cv2.GC_INIT_WITH_RECT)
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
        if refine:
            ring = np.zeros((h, w), bool)
            ring[max(0, y0 - 6):y1 + 6, max(0, x0 - 6):x1 + 6] = True
            ring[y0:y1, x0:x1] = False
            lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(np.float32)
            near = np.linalg.norm(lab - np.median(lab[ring], axis=0), axis=2) < 18
            fg[near] = 0
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, lbl, stats, _ = cv2.connectedComponentsWithStats(fg)
        if n > 1:
            fg = (lbl == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    ys, xs = np.nonzero(fg)
    by0, by1, bx0, bx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (3, 3), 0.7)[by0:by1, bx0:bx1]
    return Sprite(img[by0:by1, bx0:bx1].copy(), alpha)


@functools.cache
def cut_object(name: str) -> Sprite:
    spec = next(o for o in OBJECTS if o.name == name)
    return grabcut_object(_image(spec.source), spec.rect, spec.refine)


@dataclass(frozen=True)
class PersonPool:
    walking: tuple[Sprite, ...]
    standing: tuple[tuple[Sprite, ...], ...]  # runs of consecutive poses of someone standing (0.5 s apart)


def _clear_view(frames: list[np.ndarray]) -> np.ndarray:
    """Per-pixel median of 25 frames spread over the clip (people walk on: none stays in one place for half of it)."""
    clear: np.ndarray = np.median(np.stack(frames[:: max(1, len(frames) // 25)][:25]), axis=0).astype(np.uint8)
    return clear


def foreground(frame: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """People (anything not in the clear view) as a 0/1 mask: colour difference > 30, opened, closed, dilated."""
    fg = (cv2.absdiff(frame, clear).max(axis=2) > 30).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    return cv2.dilate(fg, np.ones((3, 3), np.uint8))


@dataclass(frozen=True)
class VideoSource:
    frames: tuple[np.ndarray, ...]  # every frame at the clip's rate
    fps: float
    clear: np.ndarray  # the clear view (no people)


@functools.cache
def video_source(name: str) -> VideoSource:
    path = _vtest_path() if name == "vtest.avi" else VIDEOS / name
    cap = cv2.VideoCapture(str(path))
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 10.0
    cap.release()
    frames = _read_video(path)
    if name == "one-by-one-person-detection.mp4":  # people stand at the table most of the clip: use the empty start
        first = frames[0]
        empty = [f for f in frames[::5] if float((cv2.absdiff(f, first).max(axis=2) > 30).mean()) < 0.01]
        clear = np.median(np.stack(empty), axis=0).astype(np.uint8)
    else:
        clear = _clear_view(frames)
    return VideoSource(tuple(frames), fps, clear)


@functools.cache
def person_pool(video: str) -> PersonPool:
    """People cut out of a clip: each 0.5 s, the largest foreground blob not touching the border."""
    src = video_source(video)
    step = max(1, round(src.fps / 2))
    h, w = src.clear.shape[:2]
    poses: list[tuple[int, Sprite, tuple[float, float]]] = []
    for i in range(0, len(src.frames), step):
        f = src.frames[i]
        fg = foreground(f, src.clear)
        n, lbl, stats, cents = cv2.connectedComponentsWithStats(fg)
        for j in range(1, n):
            x, y, bw, bh, area = (int(v) for v in stats[j])
            if area < 300 or bh < 40 or bh < 1.3 * bw or x <= 1 or y <= 1 or x + bw >= w - 1 or y + bh >= h - 1:
                continue
            alpha = cv2.GaussianBlur((lbl[y:y + bh, x:x + bw] == j).astype(np.float32), (3, 3), 0.7)
            poses.append((i, Sprite(f[y:y + bh, x:x + bw].copy(), alpha), (float(cents[j][0]), float(y + bh))))
    walking: list[Sprite] = []
    standing: list[tuple[Sprite, ...]] = []
    run: list[Sprite] = []
    prev: tuple[int, tuple[float, float]] | None = None
    for i, sp, (cx, foot) in poses:
        still = prev is not None and i - prev[0] == step and math.hypot(cx - prev[1][0], foot - prev[1][1]) < 4
        if still:
            run.append(sp)
        else:
            if len(run) >= 6:
                standing.append(tuple(run))
            run = [sp]
            walking.append(sp)
        prev = (i, (cx, foot))
    if len(run) >= 6:
        standing.append(tuple(run))
    if not walking:
        raise RuntimeError(f"no people found in {video}")
    return PersonPool(tuple(walking), tuple(standing))


PERSON_SOURCES: dict[Split, str] = {"tune": "one-by-one-person-detection.mp4", "held": "vtest.avi"}


# ------------------------------------------------------------------ backgrounds and zones


@dataclass(frozen=True)
class ZoneSpec:
    id: str
    polygon: tuple[tuple[int, int], ...]  # pixels of the background


@dataclass(frozen=True)
class BackgroundSpec:
    name: str
    split: Split
    source: str  # an image source (`_image`) or video:<file>
    zones: tuple[ZoneSpec, ...]
    person_h: int  # height in pixels of a standing person at the zones
    what: str
    crop: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of the source picture
    ir: bool = False
    noise: float = 2.5  # sensor noise σ (grey levels) per frame, stills only

    @property
    def video(self) -> str | None:
        return self.source.split(":", 1)[1] if self.source.startswith("video:") else None


def _quad(x0: int, y0: int, x1: int, y1: int, skew: int = 4) -> tuple[tuple[int, int], ...]:
    """A floor zone: a trapezoid (narrower at the back, as a floor looks from a ceiling camera)."""
    return ((x0 + skew, y0), (x1 - skew, y0), (x1, y1), (x0, y1))


BACKGROUNDS: tuple[BackgroundSpec, ...] = (
    BackgroundSpec("office", "tune", "video:one-by-one-person-detection.mp4", (
        ZoneSpec("front", _quad(366, 335, 430, 387)),
        ZoneSpec("left", _quad(120, 300, 172, 340)),
        ZoneSpec("wall", _quad(596, 262, 656, 298)),
    ), 300, "office video, wooden floor, people walk to a table and stand there (real people)"),
    BackgroundSpec("clinic-day", "tune", "fire-mix/clinic-cctv-negatives:0", (
        ZoneSpec("door", _quad(300, 255, 350, 295)),
        ZoneSpec("cabinet", _quad(330, 195, 380, 228)),
        ZoneSpec("wide", _quad(380, 240, 480, 320, 8)),
    ), 140, "clinic waiting room, colour, bright tiled floor"),
    BackgroundSpec("clinic-desk", "tune", "fire-mix/clinic-cctv-negatives:141", (
        ZoneSpec("floor", _quad(360, 200, 410, 245)),
        ZoneSpec("aisle", _quad(330, 282, 370, 320)),
    ), 170, "clinic desk room, colour, white floor"),
    BackgroundSpec("clinic-dark", "held", "fire-mix/clinic-cctv-negatives:8", (
        ZoneSpec("floor", _quad(150, 265, 200, 300)),
        ZoneSpec("door", _quad(140, 312, 190, 350)),
    ), 150, "clinic waiting room, colour, dark wooden floor"),
    BackgroundSpec("clinic-ir", "held", "fire-mix/clinic-cctv-negatives:275", (
        ZoneSpec("tiles", _quad(300, 250, 350, 290)),
        ZoneSpec("chairs", _quad(200, 290, 250, 330)),
    ), 140, "clinic waiting room at night, infrared (grey)", ir=True, noise=4.0),
    BackgroundSpec("outdoor-asphalt", "held", "fire8:20", (
        ZoneSpec("asphalt", _quad(60, 255, 102, 292)),
        ZoneSpec("kerb", _quad(155, 185, 196, 221)),
    ), 200, "outdoor CCTV by day (fire8 'CH3'), dark asphalt; cropped left of the car fire",
        crop=(0, 130, 345, 608)),
    BackgroundSpec("outdoor-night", "held", "fire8:610", (
        ZoneSpec("bin", _quad(360, 390, 410, 430)),
        ZoneSpec("gate", _quad(60, 520, 120, 565)),
    ), 260, "outdoor CCTV at night (fire8 'Camera 02'), courtyard by a bin and a gate", noise=5.0),
    BackgroundSpec("vtest", "held", "video:vtest.avi", (
        ZoneSpec("path", _quad(300, 250, 366, 300)),
        ZoneSpec("road", _quad(560, 170, 620, 215)),
    ), 90, "OpenCV vtest.avi: outdoor path and road (real people)"),
)


@functools.cache
def background_image(name: str) -> np.ndarray:
    """The clear view of a background (a still, or a video's clear view)."""
    spec = background(name)
    if spec.video:
        return video_source(spec.video).clear
    img = _image(spec.source)
    if spec.crop:
        x0, y0, x1, y1 = spec.crop
        img = img[y0:y1, x0:x1].copy()
    if spec.ir:
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return img


def background(name: str) -> BackgroundSpec:
    return next(b for b in BACKGROUNDS if b.name == name)


def zone_mask(shape: tuple[int, int], zone: ZoneSpec) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.array(zone.polygon, np.int32)], 1)
    return m.astype(bool)


def normalised(zone: ZoneSpec, shape: tuple[int, int]) -> list[tuple[float, float]]:
    h, w = shape
    return [(x / (w - 1), y / (h - 1)) for x, y in zone.polygon]


# ------------------------------------------------------------------ lighting


@dataclass(frozen=True)
class Lighting:
    kind: LightingKind
    seed: int
    duration_s: float
    jumps: tuple[tuple[float, float, float], ...] = field(default=())  # (t, gain, offset) steps

    @staticmethod
    def make(kind: LightingKind, seed: int, duration_s: float, median: float = 128.0) -> Lighting:
        """Exposure jumps are what auto exposure does when the scene changes: ×0.6–1.5 steps every 25–70 s, with a
        black-level shift, never driving the picture's median grey out of 45..175 (the camera's target range)."""
        jumps: list[tuple[float, float, float]] = []
        if kind == "jumps":
            rng = np.random.default_rng(seed + 1)
            t, g = float(rng.uniform(20, 50)), 1.0
            lo, hi = 45.0 / max(median, 1.0), 175.0 / max(median, 1.0)
            while t < duration_s:
                f = float(rng.choice([0.6, 0.75, 1.3, 1.5]))
                if not lo <= g * f <= hi:
                    f = 1 / f
                g = float(np.clip(g * f, lo, hi))
                jumps.append((t, g, float(rng.uniform(-8, 8))))
                t += float(rng.uniform(25, 70))
        return Lighting(kind, seed, duration_s, tuple(jumps))

    def at(self, t: float, w: int) -> tuple[np.ndarray, float]:
        """(gain per column, black-level offset) at `t`."""
        cols = np.linspace(-0.5, 0.5, w, dtype=np.float32)
        if self.kind in ("drift", "lowlight"):
            phase = 2 * math.pi * t / 600.0 + (self.seed % 7)
            g = 1.0 + 0.25 * math.sin(phase)
            ramp = 0.15 * math.sin(phase * 0.7 + 1.0)
            base = 0.3 if self.kind == "lowlight" else 1.0
            return (base * g * (1 + ramp * cols)).astype(np.float32), 0.0
        if self.kind == "jumps":
            g, off = 1.0, 0.0
            for jt, jg, jo in self.jumps:
                if t >= jt:
                    g, off = jg, jo
            return np.full(w, g, np.float32), off
        return np.ones(w, np.float32), 0.0


# ------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    background: str
    split: Split
    seed: int
    duration_s: int
    dwell_s: float
    lighting: LightingKind = "steady"
    obj: str | None = None  # the obstruction's object (None: the zones stay clear)
    zone: str | None = None  # the zone it is left in
    coverage: float = 0.0  # wanted share of the zone it covers
    place_t: float = 0.0
    remove_t: float = 0.0
    passers_per_min: float = 2.0  # people walking through each zone (stills; the videos have their own)
    stand: tuple[str, float, float] | None = None  # (zone, start, seconds) someone stands in a zone
    match: float | None = None  # expose the object at this multiple of the floor's mean grey (low contrast on purpose)


@dataclass(frozen=True)
class Placed:
    """The object as drawn into the frame: where, its sprite, and the zone share it covers (the ground truth)."""
    x: int
    y: int
    sprite: Sprite
    shadow: np.ndarray  # float32 darkening 0..1 over the padded box (x - pad, y - pad)
    pad: int
    fraction: float


def _shadow(alpha: np.ndarray, pad: int) -> np.ndarray:
    """A soft contact shadow: the lower third of the object's footprint pushed down-right and blurred."""
    h, w = alpha.shape
    out = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    dy, dx = max(1, h // 15), max(1, w // 12)
    low = h - max(1, h // 3)
    out[pad + dy + low:pad + dy + h, pad + dx:pad + dx + w] = alpha[low:]
    out = cv2.GaussianBlur(out, (0, 0), max(1.0, h / 12))
    shade: np.ndarray = np.clip(out * 0.8, 0, 0.4)
    return shade


def place_object(spec: BackgroundSpec, zone: ZoneSpec, name: str, coverage: float, rng: np.random.Generator,
                 shape: tuple[int, int], match: float | None = None) -> Placed:
    """Scales and positions the object (feet on the zone's lower part) so it covers `coverage` of the zone.

    Exposure: a photographed object is scaled by the scene's median brightness (÷150), or with `match` so that its mean
    grey is `match` × the mean grey of the floor it stands on (a dark bag on a dark floor: low contrast on purpose)."""
    base = cut_object(name)
    bg = background_image(spec.name)
    zm = zone_mask(shape, zone)
    area = float(zm.sum())
    ys, xs = np.nonzero(zm)
    zx0, zx1, zy0, zy1 = xs.min(), xs.max(), ys.min(), ys.max()
    # expose like the scene: a photographed object is scaled by the scene's brightness; grey in infrared
    expo = float(np.clip(np.median(cv2.cvtColor(bg, cv2.COLOR_BGR2GRAY)) / 150.0, 0.35, 1.15))
    bgr = np.clip(base.bgr.astype(np.float32) * expo, 0, 255).astype(np.uint8)
    if spec.ir:
        bgr = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    sprite = Sprite(bgr, base.alpha)
    if base.alpha.shape[0] > 1.6 * base.alpha.shape[1]:  # a tall object (coat, bottle) lies on the floor
        sprite = Sprite(np.ascontiguousarray(np.rot90(bgr)), np.ascontiguousarray(np.rot90(base.alpha)))
    fx = float(rng.uniform(0.2, 0.8))
    foot = float(rng.uniform(0.75, 0.95))
    ah, aw = sprite.alpha.shape
    height = math.sqrt(coverage * area / max(1e-6, float(sprite.alpha.mean()) * aw / ah))
    sp, x, y, got = sprite, 0, 0, 0.0
    for _ in range(8):
        sp = sprite.scaled(height)
        h, w = sp.alpha.shape
        cx = zx0 + fx * (zx1 - zx0)
        x = int(np.clip(round(cx - w / 2), 0, shape[1] - w))
        y = int(np.clip(round(zy0 + foot * (zy1 - zy0) - h), 0, shape[0] - h))
        got = float(((sp.alpha > 0.5) & zm[y:y + h, x:x + w]).sum()) / area
        if coverage <= got < coverage + 0.03 or got <= 0:
            break
        height *= math.sqrt((coverage + 0.01) / got)
    if match is not None:
        h, w = sp.alpha.shape
        a = sp.alpha > 0.5
        floor = float(cv2.cvtColor(bg, cv2.COLOR_BGR2GRAY)[y:y + h, x:x + w][a].mean())
        own = float(cv2.cvtColor(sp.bgr, cv2.COLOR_BGR2GRAY)[a].mean())
        k = match * floor / max(own, 1.0)
        sp = Sprite(np.clip(sp.bgr.astype(np.float32) * k, 0, 255).astype(np.uint8), sp.alpha)
    pad = max(2, sp.alpha.shape[0] // 5, sp.alpha.shape[1] // 10 + 2)
    return Placed(x, y, sp, _shadow(sp.alpha, pad), pad, got)


def _blend(frame: np.ndarray, x: int, y: int, sprite: Sprite, keep: np.ndarray | None = None) -> None:
    """Draws `sprite` at (x, y) in place; `keep` (0/1 over the frame) marks pixels drawn over it (people)."""
    h, w = sprite.alpha.shape
    fh, fw = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    if x0 >= x1 or y0 >= y1:
        return
    a = sprite.alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    if keep is not None:
        a = a * (1 - keep[y0:y1, x0:x1].astype(np.float32))
    a3 = a[..., None]
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (roi * (1 - a3) + sprite.bgr[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32) * a3).astype(
        np.uint8)


def _darken(frame: np.ndarray, x: int, y: int, shade: np.ndarray, keep: np.ndarray | None = None) -> None:
    h, w = shade.shape
    fh, fw = frame.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + w), min(fh, y + h)
    if x0 >= x1 or y0 >= y1:
        return
    s = shade[y0 - y:y1 - y, x0 - x:x1 - x]
    if keep is not None:
        s = s * (1 - keep[y0:y1, x0:x1].astype(np.float32))
    frame[y0:y1, x0:x1] = (frame[y0:y1, x0:x1].astype(np.float32) * (1 - s[..., None])).astype(np.uint8)


@dataclass(frozen=True)
class Walk:
    """A person crossing a zone (or standing in it): feet at `foot_y`, from x0 at t0 to x1 at t1."""
    t0: float
    t1: float
    x0: float
    x1: float
    foot_y: float
    poses: tuple[Sprite, ...]
    stand: tuple[float, float] | None = None  # (from, to): standing still at the zone's centre in between

    def at(self, t: float) -> tuple[Sprite, float, float] | None:
        if not self.t0 <= t <= self.t1:
            return None
        if self.stand is not None:
            s0, s1 = self.stand
            mid = (self.x0 + self.x1) / 2
            if t < s0:
                x = self.x0 + (mid - self.x0) * (t - self.t0) / max(1e-6, s0 - self.t0)
            elif t <= s1:
                x = mid
            else:
                x = mid + (self.x1 - mid) * (t - s1) / max(1e-6, self.t1 - s1)
        else:
            x = self.x0 + (self.x1 - self.x0) * (t - self.t0) / max(1e-6, self.t1 - self.t0)
        pose = self.poses[int(t * 2) % len(self.poses)]
        return pose, x, self.foot_y


class Scene:
    """Renders one scenario: `frames()` yields (t, BGR frame, truth) at 1 frame/s; truth maps zone id → the share of
    the zone the object covers at `t` (0 when clear)."""

    def __init__(self, scn: Scenario) -> None:
        self.scn = scn
        self.spec = background(scn.background)
        self.bg = background_image(scn.background)
        self.shape: tuple[int, int] = (int(self.bg.shape[0]), int(self.bg.shape[1]))
        self.rng = np.random.default_rng(scn.seed)
        median = float(np.median(cv2.cvtColor(self.bg, cv2.COLOR_BGR2GRAY)))
        self.light = Lighting.make(scn.lighting, scn.seed, scn.duration_s, median)
        self.video = video_source(self.spec.video) if self.spec.video else None
        self.offset = int(self.rng.integers(0, len(self.video.frames))) if self.video else 0
        self.zones = {z.id: z for z in self.spec.zones}
        self.placed: Placed | None = None
        if scn.obj is not None and scn.zone is not None:
            self.placed = place_object(self.spec, self.zones[scn.zone], scn.obj, scn.coverage, self.rng, self.shape,
                                       scn.match)
        self.walks = self._walks()
        h, w = self.shape
        self.noise = [self.rng.normal(0, 1, (h, w, 3)).astype(np.float32) for _ in range(4)]

    # people ---------------------------------------------------------------
    def _walk_through(self, zone: ZoneSpec, t0: float, poses: tuple[Sprite, ...], stand_s: float = 0.0) -> Walk:
        pts = np.array(zone.polygon)
        zx0, zx1 = float(pts[:, 0].min()), float(pts[:, 0].max())
        zy0, zy1 = float(pts[:, 1].min()), float(pts[:, 1].max())
        ph = self.spec.person_h * float(self.rng.uniform(0.85, 1.1))
        pw = ph * 0.45
        foot = zy0 + float(self.rng.uniform(0.5, 1.0)) * (zy1 - zy0)
        left = bool(self.rng.integers(0, 2))
        xa, xb = zx0 - pw - 4, zx1 + pw + 4
        if not left:
            xa, xb = xb, xa
        speed = ph * float(self.rng.uniform(0.45, 0.8))  # ≈ 0.8–1.4 m/s
        walk_s = abs(xb - xa) / speed
        poses = tuple(p.scaled(ph) for p in poses)
        if stand_s > 0:
            half = walk_s / 2
            return Walk(t0 - half, t0 + stand_s + half, xa, xb, foot, poses, (t0, t0 + stand_s))
        return Walk(t0, t0 + walk_s, xa, xb, foot, poses)

    def _poses(self, k: int = 6) -> tuple[Sprite, ...]:
        pool = person_pool(PERSON_SOURCES[self.spec.split])
        i = int(self.rng.integers(0, len(pool.walking)))
        return tuple(pool.walking[(i + j) % len(pool.walking)] for j in range(k))

    def _walks(self) -> list[Walk]:
        scn, walks = self.scn, []
        zone_ids = list(self.zones)
        if self.placed is not None and scn.zone is not None:  # whoever leaves it and whoever takes it away
            for t in (scn.place_t, scn.remove_t):
                if 0 < t < scn.duration_s:
                    w = self._walk_through(self.zones[scn.zone], 0.0, self._poses())
                    mid = (w.t1 - w.t0) / 2
                    walks.append(Walk(t - mid, t + mid, w.x0, w.x1, w.foot_y, w.poses))
        if self.video is None and scn.passers_per_min > 0:
            for zid in zone_ids:
                t = float(self.rng.exponential(60 / scn.passers_per_min))
                while t < scn.duration_s:
                    walks.append(self._walk_through(self.zones[zid], t, self._poses()))
                    t += float(self.rng.exponential(60 / scn.passers_per_min))
        if scn.stand is not None:
            zid, t0, secs = scn.stand
            pool = person_pool(PERSON_SOURCES[self.spec.split])
            if pool.standing:
                run = pool.standing[int(self.rng.integers(0, len(pool.standing)))]
                poses = tuple(run[int(i * len(run) / 12) % len(run)] for i in range(12))
            else:
                one = self._poses(1)[0]
                poses = (one,) * 12
            walks.append(self._walk_through(self.zones[zid], t0, poses, secs))
        return walks

    # frames ---------------------------------------------------------------
    def covered(self, zone_id: str) -> float:
        """The share of a zone the placed object covers (a tall object left in one zone can reach into the next)."""
        p = self.placed
        if p is None:
            return 0.0
        zm = zone_mask(self.shape, self.zones[zone_id])
        h, w = p.sprite.alpha.shape
        fh, fw = self.shape
        x0, y0, x1, y1 = max(0, p.x), max(0, p.y), min(fw, p.x + w), min(fh, p.y + h)
        if x0 >= x1 or y0 >= y1:
            return 0.0
        obj = p.sprite.alpha[y0 - p.y:y1 - p.y, x0 - p.x:x1 - p.x] > 0.5
        return float((obj & zm[y0:y1, x0:x1]).sum()) / max(1.0, float(zm.sum()))

    def truth(self, t: float) -> dict[str, float]:
        """Zone id → the share of it the object covers at `t` (0 when clear): its own zone and any it reaches into."""
        out = {z: 0.0 for z in self.zones}
        if self.placed is not None and self.scn.zone is not None and self.scn.place_t <= t < self.scn.remove_t:
            for z in self.zones:
                out[z] = self.placed.fraction if z == self.scn.zone else self.covered(z)
        return out

    def clear_frame(self) -> np.ndarray:
        """What an officer captures as the clear reference at t = 0 (no object, no people)."""
        return self._finish(self.bg.copy(), 0.0, 0)

    def frame(self, t: float, k: int) -> np.ndarray:
        people: np.ndarray | None = None
        if self.video is not None:
            v = self.video
            img = v.frames[(self.offset + round(t * v.fps)) % len(v.frames)].copy()
            people = foreground(img, v.clear)
        else:
            img = self.bg.copy()
        p = self.placed
        if p is not None and self.scn.place_t <= t < self.scn.remove_t:
            _darken(img, p.x - p.pad, p.y - p.pad, p.shadow, people)
            _blend(img, p.x, p.y, p.sprite, people)
        for w in self.walks:
            pos = w.at(t)
            if pos is None:
                continue
            pose, x, foot = pos
            ph, pw = pose.alpha.shape
            pose_img = pose if not self.spec.ir else Sprite(
                cv2.cvtColor(cv2.cvtColor(pose.bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR), pose.alpha)
            sh = _shadow(pose.alpha[-max(2, ph // 8):], pw // 10 + 3)
            _darken(img, round(x - pw / 2) - 3, round(foot - sh.shape[0] + 3), sh * 0.6)
            _blend(img, round(x - pw / 2), round(foot - ph), pose_img)
        return self._finish(img, t, k)

    def _finish(self, img: np.ndarray, t: float, k: int) -> np.ndarray:
        h, w = self.shape
        gain, off = self.light.at(t, w)
        out = img.astype(np.float32) * gain[None, :, None] + off
        if self.scn.lighting == "lowlight":
            grey = out.mean(axis=2, keepdims=True)
            out = grey + (out - grey) * 0.4
        # the camera's highlight knee: above 200, values are compressed into 200..255 instead of clipping hard
        out = np.where(out > 200, 200 + 55 * (1 - np.exp(-(out - 200) / 55)), out)
        if self.video is None:
            sigma = self.spec.noise * (2.5 if self.scn.lighting == "lowlight" else 1.0)
            n = self.noise[k % len(self.noise)]
            out += np.roll(n, (k * 37) % h, axis=0) * sigma
        _, buf = cv2.imencode(".jpg", np.clip(out, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 80])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        assert decoded is not None
        return decoded

    def frames(self) -> Iterator[tuple[float, np.ndarray, dict[str, float]]]:
        for k in range(self.scn.duration_s):
            t = float(k)
            yield t, self.frame(t, k), self.truth(t)


# ------------------------------------------------------------------ the set


def contrast_class(scene: Scene) -> str:
    """How the object differs from the floor it covers (grey levels of the clear view at t = 0): dark-on-dark when
    both are darker than 100 and differ by < 40, light-on-light when both are brighter than 130 and differ by < 40,
    low-contrast when they differ by < 40 otherwise, else contrast."""
    p = scene.placed
    if p is None:
        return "-"
    h, w = p.sprite.alpha.shape
    a = p.sprite.alpha > 0.5
    floor = cv2.cvtColor(scene.bg, cv2.COLOR_BGR2GRAY)[p.y:p.y + h, p.x:p.x + w][a].astype(np.float32)
    obj = cv2.cvtColor(p.sprite.bgr, cv2.COLOR_BGR2GRAY)[a].astype(np.float32)
    gain = 0.3 if scene.scn.lighting == "lowlight" else 1.0
    fo, oo = float(np.mean(floor)) * gain, float(np.mean(obj)) * gain
    if abs(fo - oo) < 40:
        if fo < 100 and oo < 100:
            return "dark-on-dark"
        if fo > 130 and oo > 130:
            return "light-on-light"
        return "low-contrast"
    return "contrast"


def scenarios(split: Split | None = None, dwell_s: float = 30.0, clear_s: int = 900,
              set_seed: int = 0) -> list[Scenario]:
    """The composited set. For every background, every zone × object of the same split three times: covering 30 % and
    60 % of the zone as photographed, and 35 % exposed to within ~25 % of the floor's grey (dark-on-dark on a dark
    floor, light-on-light on a bright one); lighting cycles through steady, drift, exposure jumps and low light. Then
    clear scenes (people passing, someone standing for 0.7 × the dwell, no object) under each lighting. Every
    scenario has its own seed; `set_seed` ≠ 0 draws a fresh set (other placements, people, video offsets, exposure
    jumps, and the lighting cycle shifted by `set_seed`) for figures measured after thresholds were chosen."""
    out: list[Scenario] = []
    lights: tuple[LightingKind, ...] = ("steady", "drift", "jumps", "lowlight")
    for bi, bg in enumerate(BACKGROUNDS):
        if split is not None and bg.split != split:
            continue
        objs = [o.name for o in OBJECTS if o.split == bg.split]
        grey = cv2.cvtColor(background_image(bg.name), cv2.COLOR_BGR2GRAY)
        k = 0
        for zone in bg.zones:
            floor = float(grey[zone_mask(grey.shape, zone)].mean())
            low = 0.75 if floor < 140 else 1.12
            for obj in objs:
                for cov, match in ((0.3, None), (0.6, None), (0.35, low)):
                    seed = 100_000 * set_seed + 1000 * bi + k
                    light = lights[(k + set_seed) % len(lights)]
                    if bg.video and light == "lowlight":
                        light = "drift"
                    place = 60.0 + 7 * (k % 5)
                    dur = int(place + dwell_s + 70)
                    tag = f"{cov:.0%}" + ("" if match is None else f"~{match:.2f}")
                    out.append(Scenario(f"{bg.name}/{zone.id}/{obj}/{tag}/{light}", bg.name, bg.split, seed, dur,
                                        dwell_s, light, obj, zone.id, cov, place, place + dwell_s + 40, match=match))
                    k += 1
        for li, light in enumerate(lights):
            if bg.video and light == "lowlight":
                continue
            zone = bg.zones[li % len(bg.zones)]
            seed = 100_000 * set_seed + 1000 * bi + 500 + li
            stand = (zone.id, 120.0, dwell_s * 0.7)
            out.append(Scenario(f"{bg.name}/clear/{light}", bg.name, bg.split, seed, clear_s, dwell_s, light,
                                passers_per_min=3.0, stand=stand))
    return out


def preview(out: Path) -> None:
    """Writes each background with its zones and one composited frame, and every cut-out object (var/, not git)."""
    out.mkdir(parents=True, exist_ok=True)
    for bg in BACKGROUNDS:
        img = background_image(bg.name).copy()
        h, w = img.shape[:2]
        objs = [o.name for o in OBJECTS if o.split == bg.split]
        scn = Scenario("preview", bg.name, bg.split, 1, 60, 30, obj=objs[0], zone=bg.zones[0].id, coverage=0.5,
                       place_t=0, remove_t=60)
        s = Scene(scn)
        comp = s.frame(0.0, 0)
        for z in bg.zones:
            pct = 100 * zone_mask((h, w), z).sum() / (h * w)
            for im in (img, comp):
                cv2.polylines(im, [np.array(z.polygon, np.int32)], True, (0, 0, 255), 1)
                cv2.putText(im, f"{z.id} {pct:.2f}%", z.polygon[0], 0, 0.4, (0, 255, 255), 1)
        cv2.imwrite(str(out / f"{bg.name}.png"), np.hstack([img, comp]))
    tiles = []
    for o in OBJECTS:
        sp = cut_object(o.name).scaled(200)
        tile = np.full((200, sp.bgr.shape[1], 3), (255, 0, 255), np.uint8)
        a = sp.alpha[..., None]
        tiles.append((tile * (1 - a) + sp.bgr * a).astype(np.uint8))
    cv2.imwrite(str(out / "objects.png"), np.hstack(tiles))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preview", type=Path, default=ROOT / "var" / "exit_scenes")
    args = ap.parse_args()
    preview(args.preview)
    for s in scenarios():
        print(s.name, s.duration_s)
    print(f"wrote previews to {args.preview}")


if __name__ == "__main__":
    main()
