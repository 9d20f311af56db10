"""Batched YOLO inference without ultralytics' predict() machinery.

`YoloRunner` letterboxes BGR frames (any sizes) into one NCHW batch, runs the raw detection module
(PyTorch on CPU/GPU, or an ONNX Runtime / OpenVINO export), applies NMS and maps boxes back to
each frame's pixel coordinates. This is the whole per-frame cost of the pipeline: measured in
bench/detect.py against the bare forward pass.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx", "openvino"]


@dataclass(frozen=True, slots=True)
class Box:
    cls: int
    conf: float
    xyxy: tuple[float, float, float, float]  # pixels in the source frame
    verifier: float | None = None  # second-stage probability, once judged (shown with the evidence)

    def as_dict(self, name: str) -> dict[str, Any]:
        d: dict[str, Any] = {"class": name, "confidence": round(self.conf, 4), "box": [round(v, 1) for v in self.xyxy]}
        if self.verifier is not None:
            d["verifier"] = round(self.verifier, 4)
        return d


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def pick_backend(backend: Backend, device: str) -> Backend:
    """'auto': PyTorch on a GPU; on a CPU the OpenVINO export when OpenVINO is installed — on 2 cores it
    needs ~60 CPU-ms per 416-px frame against ~160–250 for PyTorch (bench/detect.py)."""
    if backend != "auto":
        return backend
    if not device.startswith("cpu"):
        return "torch"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "torch"
    return "openvino"


LETTERBOX = "bilinear-114"  # names how frames are letterboxed: caches of model outputs key on it


def letterbox_into(img: np.ndarray, out: np.ndarray, size: int) -> tuple[float, float, float]:
    """Resize keeping aspect ratio, pad with 114 into `out` (size×size×3 uint8); returns (gain, padx, pady)."""
    h, w = img.shape[:2]
    gain = min(size / h, size / w)
    nw, nh = round(w * gain), round(h * gain)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[...] = 114
    # bilinear, as ultralytics' own predict letterbox: 5-10x faster than INTER_AREA (0.3 vs 1.6-3 ms for a
    # 768x576 frame), which was the largest cost around the model (bench/detect.py "pipeline without the model")
    out[py : py + nh, px : px + nw] = (
        cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else img
    )
    return gain, float(px), float(py)


class YoloRunner:
    """Thread-safe batched detector for one set of weights."""

    def __init__(
        self,
        weights: str = "fire-detector",
        *,
        imgsz: int = 640,
        device: str = "auto",
        backend: Backend = "auto",
        half: bool = True,
        threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        import torch

        from detectors import weights as W

        self.weights = weights
        self.imgsz = int(imgsz)
        self.device = pick_device(device)
        self.backend = backend = pick_backend(backend, self.device)
        if threads:
            torch.set_num_threads(threads)
        model = W.load_model(weights)
        self.names: dict[int, str] = {int(k): str(v) for k, v in dict(model.names).items()}
        self.nc = len(self.names)
        self.stride = int(max(model.stride))
        if self.imgsz % self.stride:
            raise ValueError(f"imgsz {imgsz} must be a multiple of {self.stride}")
        self.half = bool(half) and self.device.startswith("cuda")
        self._lock = threading.Lock()
        self._ort: Any = None
        self._ov: Any = None
        if backend == "torch":
            self.model = model.to(self.device)
            if self.half:
                self.model = self.model.half()
        else:
            self.model = None
            self._load_export(model, backend, cache_dir or W.default_cache_dir())

    # ---- exports ----
    def _load_export(self, model: Any, backend: Backend, cache_dir: Path) -> None:
        import torch

        from detectors import weights as W
        from ingest.integrity import sha256_file

        src = W.resolve(self.weights)
        cache_dir.mkdir(parents=True, exist_ok=True)
        onnx_path = cache_dir / f"{src.stem}-{sha256_file(src)[:12]}-{self.imgsz}.onnx"
        if not onnx_path.is_file():
            for m in model.modules():  # export-friendly Detect head (raw (B, 4+nc, N) output)
                if hasattr(m, "export"):
                    m.export = True
                    m.format = "onnx"
            dummy = torch.zeros(1, 3, self.imgsz, self.imgsz)
            tmp = onnx_path.with_suffix(f".{os.getpid()}.tmp.onnx")  # processes exporting at once: each its own
            torch.onnx.export(
                model, (dummy,), str(tmp), input_names=["images"], output_names=["output0"], opset_version=17,
                dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}}, dynamo=False,
            )
            tmp.replace(onnx_path)
        if backend == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._ort = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        else:
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(str(onnx_path), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
            self._ov = compiled

    # ---- inference ----
    def preprocess(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
        s = self.imgsz
        batch = np.empty((len(frames), s, s, 3), dtype=np.uint8)
        metas = [letterbox_into(f, batch[i], s) for i, f in enumerate(frames)]
        return batch, metas

    def forward(self, batch_hwc: np.ndarray) -> Any:
        """uint8 NHWC BGR batch → raw (B, 4+nc, N) predictions as a torch tensor."""
        import torch

        x = np.ascontiguousarray(batch_hwc[..., ::-1].transpose(0, 3, 1, 2))  # BGR→RGB, NCHW
        if self._ort is not None:
            out = self._ort.run(None, {"images": x.astype(np.float32) / 255.0})[0]
            return torch.from_numpy(out)
        if self._ov is not None:
            out = self._ov(x.astype(np.float32) / 255.0)[0]
            return torch.from_numpy(np.asarray(out))
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device, non_blocking=True)
            t = t.half() if self.half else t.float()
            t /= 255.0
            y = self.model(t)
            y = y[0] if isinstance(y, list | tuple) else y
            return y.float()

    def postprocess(
        self, pred: Any, metas: list[tuple[float, float, float]], shapes: list[tuple[int, int]], conf: float, iou: float
    ) -> list[list[Box]]:
        from ultralytics.utils.nms import non_max_suppression

        dets = non_max_suppression(pred, conf_thres=conf, iou_thres=iou, max_det=100, nc=self.nc)
        out: list[list[Box]] = []
        for d, (gain, px, py), (h, w) in zip(dets, metas, shapes, strict=True):
            boxes = []
            for x1, y1, x2, y2, c, k in d.cpu().numpy().tolist():
                x1 = min(max((x1 - px) / gain, 0.0), w)
                x2 = min(max((x2 - px) / gain, 0.0), w)
                y1 = min(max((y1 - py) / gain, 0.0), h)
                y2 = min(max((y2 - py) / gain, 0.0), h)
                boxes.append(Box(int(k), float(c), (x1, y1, x2, y2)))
            out.append(boxes)
        return out

    def detect(self, frames: list[np.ndarray], conf: float = 0.1, iou: float = 0.5) -> list[list[Box]]:
        """Boxes with confidence ≥ `conf` for each frame (blocking; call from a worker thread)."""
        if not frames:
            return []
        batch, metas = self.preprocess(frames)
        with self._lock:
            pred = self.forward(batch)
        return self.postprocess(pred, metas, [f.shape[:2] for f in frames], conf, iou)
