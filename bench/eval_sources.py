"""The image sources of the leave-one-source-out evaluation (bench/detect_eval.py).

A *source* is one origin of pictures: one labelled dataset, one package of everyday scenes, one video. A source is
held out whole — its fire pictures and its everyday scenes never sit on both sides of a split.

* positive sources: labelled smoke/fire images (`../shared/data/fire8` train + valid, and four folders of
  `../shared/data/fire-mix`). Only images with at least one smoke/fire box count: a few of these datasets' empty-label
  images do show fire (a forest fire, an explosion), so they are neither positives nor negatives here.
* negative sources (no smoke/fire anywhere): `fire-mix/clinic-cctv-negatives` (ceiling CCTV of a waiting room),
  Debian opencv-doc's sample frames and photographs (`build_negatives`), Debian desktop backgrounds
  (`build_wallpapers`: sunsets, autumn, lamps) and one frame per second of each everyday video in
  `../shared/data/videos` (office, bottles, cars).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
IMG_EXT = {".jpg", ".jpeg", ".png", ".bmp"}
FIRE_MIX_POSITIVES = ("pbl5-indoor-fire", "bombatronic-indoor-fire", "hotfire-smoke-fire", "continuous-fire")
FIRE_MIX_NEGATIVES = ("clinic-cctv-negatives",)
EVERYDAY_VIDEOS = ("one-by-one-person-detection.mp4", "bottle-detection.mp4", "car-detection.mp4")

# opencv-doc sample images that are photographs of everyday scenes (not charts, logos, renders).
OPENCV_DOC_PHOTOS = [
    "aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "basketball2.png", "blox.jpg",
    "board.jpg", "box_in_scene.png", "building.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg", "leuvenA.jpg",
    "leuvenB.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "rubberwhale2.png", "smarties.png",
    "squirrel_cls.jpg", "stuff.jpg", "lena.jpg", "graf1.png", "graf3.png", "aloeL.jpg", "aloeR.jpg",
    "licenseplate_motion.jpg", "HappyFish.jpg", "starry_night.jpg", "tsukuba_l.png", "tsukuba_r.png",
]
CLIPS = {"vtest.avi": 10, "Megamind.avi": 15, "tree.avi": 15, "Megamind_bugy.avi": 30}
# Debian desktop-background packages: photographs and artwork with warm colours (sunsets, autumn, lamps),
# the kind of scene a fire model confuses with flames.
WALLPAPER_PACKAGES = (
    "ukui-wallpapers", "mate-backgrounds", "plasma-workspace-wallpapers", "gnome-backgrounds", "lomiri-wallpapers",
    "lomiri-wallpapers-20.04", "lomiri-wallpapers-16.04", "sway-backgrounds", "mypaint-data-extras",
)

Kind = Literal["positive", "negative"]


@dataclass(frozen=True)
class Source:
    """One source: its images and, for a positive source, each image's YOLO label file."""

    name: str
    kind: Kind
    images: tuple[Path, ...]
    labels: tuple[Path, ...] = ()  # parallel to `images` for a positive source
    skipped: int = 0  # empty-label images of a positive source (neither positive nor negative)

    def subset(self, k: int) -> Source:
        """`k` images spread evenly over the source (the quick mode)."""
        if k >= len(self.images):
            return self
        idx = np.linspace(0, len(self.images) - 1, k).round().astype(int)
        return Source(self.name, self.kind, tuple(self.images[i] for i in idx),
                      tuple(self.labels[i] for i in idx) if self.labels else (), 0)


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXT)


def yolo_boxes(label: Path, w: int, h: int) -> np.ndarray:
    """(n, 5) rows of class, x1, y1, x2, y2 in pixels from a YOLO label file."""
    rows = []
    for line in label.read_text().splitlines() if label.is_file() else []:
        v = line.split()
        if len(v) >= 5:
            c, xc, yc, bw, bh = (float(t) for t in v[:5])
            rows.append([c, (xc - bw / 2) * w, (yc - bh / 2) * h, (xc + bw / 2) * w, (yc + bh / 2) * h])
    return np.array(rows, np.float32).reshape(-1, 5)


def labelled_source(name: str, image_dirs: Sequence[Path]) -> Source:
    imgs, labs, skipped = [], [], 0
    for d in image_dirs:
        for p in images_in(d):
            lab = d.parent / "labels" / f"{p.stem}.txt"
            if lab.is_file() and lab.read_text().strip():
                imgs.append(p)
                labs.append(lab)
            else:
                skipped += 1
    return Source(name, "positive", tuple(imgs), tuple(labs), skipped)


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


def video_frames(video: Path, out: Path, every_s: float = 1.0) -> Path:
    """One JPEG per `every_s` seconds of a video (the first frame of each interval), into `out` once."""
    if out.is_dir() and any(out.iterdir()):
        return out
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    i, next_t = 0, 0.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        t = i / fps
        if t + 1e-9 >= next_t:
            cv2.imwrite(str(out / f"{video.stem}-{round(t):04d}s.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
            next_t += every_s
        i += 1
    cap.release()
    return out


def all_sources(shared: Path = SHARED, var: Path = ROOT / "var", *, wallpapers: bool = True) -> list[Source]:
    """Every source that is present: the labelled folders of `shared`, then the everyday-scene sources.

    Sources that need a download (opencv-doc, desktop backgrounds: nine Debian packages, ~30 s the first time;
    `wallpapers=False` leaves them out) are left out, with a note, when apt-get fails."""
    out: list[Source] = []
    fire8 = shared / "fire8"
    if (fire8 / "train" / "images").is_dir():
        out.append(labelled_source("fire8", [fire8 / s / "images" for s in ("train", "valid")
                                             if (fire8 / s / "images").is_dir()]))
    for name in FIRE_MIX_POSITIVES:
        if (shared / "fire-mix" / name / "images").is_dir():
            out.append(labelled_source(name, [shared / "fire-mix" / name / "images"]))
    for name in FIRE_MIX_NEGATIVES:
        if (shared / "fire-mix" / name / "images").is_dir():
            out.append(Source(name, "negative", tuple(images_in(shared / "fire-mix" / name / "images"))))
    builders: list[tuple[str, Callable[[Path], Path], Path]] = [("opencv-doc", build_negatives, var / "negatives")]
    if wallpapers:
        builders.append(("desktop-backgrounds", build_wallpapers, var / "neg-wall"))
    for name, build, where in builders:
        try:
            folder = build(where)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"{name}: unavailable ({exc})", file=sys.stderr)
            continue
        imgs = images_in(folder) if folder.is_dir() else []
        if imgs:
            out.append(Source(name, "negative", tuple(imgs)))
        else:
            print(f"{name}: no images (apt-get download failed?); left out", file=sys.stderr)
    for video in EVERYDAY_VIDEOS:
        path = shared / "videos" / video
        if path.is_file():
            stem = Path(video).stem
            out.append(Source(f"video:{stem}", "negative",
                              tuple(images_in(video_frames(path, var / "eval-frames" / stem)))))
    return out
