"""The edge contract: what enters the core from outside (MQTT devices, detector workers, the console's alarm form).

Lowest module of the house after `config`: ingest produces these, detectors produce the detection events, the core
(dispatch) consumes them and the console validates its own input with `InputModel`. Plain frozen dataclasses inside,
pydantic at the wire (ingest/payloads.py)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

MAX_ROW_ID = 2**31 - 1
"""Row ids are 32-bit INTEGER columns: an id above this cannot exist (and PostgreSQL refuses it as a parameter)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_text(v: str) -> None:
    """Control characters (NUL above all: PostgreSQL refuses it) have no place in alarm text."""
    if any(ord(c) < 32 and c not in "\t\n\r" for c in v):
        raise ValueError("control characters are not allowed")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} is out of range")
    return value


def loads(data: bytes | str) -> Any:
    """`json.loads` for input from outside: NaN, Infinity and numbers that overflow to infinity are refused
    (ValueError), as JSON itself refuses them; json.loads alone would hand on float('nan')."""
    return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite)


NO_CONTROL_CHARS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"  # what check_text allows, for JSON Schema


def _document_text_rule(schema: dict[str, Any]) -> None:
    """Adds NO_CONTROL_CHARS to every free-text string of a model's JSON Schema (the rule check_text enforces)."""
    def visit(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if node.get("type") == "string" and not ({"pattern", "enum", "const", "format"} & node.keys()):
            node["pattern"] = NO_CONTROL_CHARS
        for key in ("anyOf", "prefixItems"):
            for sub in node.get(key, []):
                visit(sub)
        visit(node.get("items"))

    for prop in schema.get("properties", {}).values():
        visit(prop)


class InputModel(BaseModel):
    """Base of every edge payload (MQTT and HTTP): unknown keys, control characters, NaN and infinity are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False,
                              json_schema_extra=_document_text_rule)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_chars(cls, v: object) -> object:
        if isinstance(v, str):
            check_text(v)
        return v


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


@dataclass(frozen=True, slots=True)
class AlarmIn:
    alarm_id: str
    unit_id: str
    kind: str
    source: str  # mqtt | web | video
    received_at: datetime
    device_id: str | None = None
    device_ts: datetime | None = None
    note: str = ""
    topic: str = ""


@dataclass(frozen=True, slots=True)
class DeviceStatusIn:
    device_id: str
    status: str  # online | offline | fault
    detail: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AgencyAckIn:
    agency: str
    dispatch_id: int
    status: str  # acknowledged | on_scene
    by: str
    received_at: datetime
    topic: str = ""


# --- detections: what a detector emits (detectors produce them, in process or over MQTT through
# ingest/payloads.py; the core's detection sink commits each in one transaction) ----------------------------

BoxJson = list[float] | dict[str, str | float | list[float]]
"""One detection box as recorded: ``{"class", "confidence", "box": [x1, y1, x2, y2] pixels, ...}`` (in-process
detectors) or a plain list of numbers (what a worker may send)."""


def video_alarm_note(camera_id: str, kind: str, confidence: float) -> str:
    """The alarm text of a video detection (the same for in-process detectors and MQTT workers)."""
    what = kind.removeprefix("video_")
    return f"camera {camera_id}: {what} confirmed over time, confidence {confidence:.2f}"


@dataclass(frozen=True, slots=True)
class DetectionFrame:
    """The frame that confirmed a video alarm: recorded on the incident with its boxes (evidence), and what an
    officer's "false alarm" teaches the detectors."""

    t: float  # frame timestamp (UNIX seconds live; video seconds offline)
    confidence: float
    boxes: tuple[BoxJson, ...]
    width: int
    height: int
    jpeg: bytes = field(repr=False)  # the frame with its boxes drawn (shown to officers)
    raw_jpeg: bytes = field(default=b"", repr=False)  # the same frame unmarked (MQTT workers send none)


@dataclass(frozen=True, slots=True)
class AlarmDetection:
    """A detector's confirmed alarm (smoke, fire, ...) with the frame that confirmed it."""

    alarm: AlarmIn
    frame: DetectionFrame


@dataclass(frozen=True, slots=True)
class ExitHazard:
    """A fire exit obstructed for longer than its dwell time (issue 5's hazard service consumes it)."""

    camera_id: str
    zone_id: str
    started_at: datetime  # when the obstruction was first seen
    confirmed_at: datetime  # started_at + dwell: when this event was raised
    fraction: float  # share of the zone obstructed (0..1)
    before_jpeg: bytes = field(repr=False)  # the clear reference, zone outlined
    after_jpeg: bytes = field(repr=False)  # the frame that confirmed it, zone outlined
    zone_name: str = ""
    unit_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExitCleared:
    """The obstruction behind an earlier ExitHazard is gone."""

    camera_id: str
    zone_id: str
    started_at: datetime  # of the hazard
    confirmed_at: datetime  # of the hazard
    cleared_at: datetime  # when the zone was first seen clear again (after clear_s of clear frames)
    fraction: float  # obstruction fraction when cleared
    after_jpeg: bytes = field(repr=False)  # the frame showing it clear
    zone_name: str = ""
    unit_id: str | None = None


ExitEvent = ExitHazard | ExitCleared
DetectionEvent = AlarmDetection | ExitHazard | ExitCleared
"""Everything a detector may emit: the same typed event from an in-process detector and from an MQTT worker."""


@dataclass(frozen=True, slots=True)
class DetectionIn:
    """A remote detector worker's message, parsed and validated (ingest/payloads.py)."""

    event: DetectionEvent
    received_at: datetime
    topic: str = ""


@dataclass(frozen=True, slots=True)
class ComplaintIn:
    """A complaint or outside report (投诉举报) on its way into a station's triage queue: from the public page, a
    village/community fire assistant (source "assistant", `reporter` = login) or the 96119 hotline gateway (source
    "hotline", `ticket` = the hotline's own ticket id, which makes it idempotent). A photo travels beside it, already
    re-encoded (dispatch.complaint_photo)."""

    source: str  # public | assistant | hotline
    description: str
    received_at: datetime
    lat: float | None = None
    lon: float | None = None
    address: str = ""
    unit_id: str | None = None
    facility: str = ""
    contact_phone: str = ""
    reporter: str = ""
    ticket: str | None = None
    reported_at: datetime | None = None  # the hotline's own time of the call (recorded, informational)
    topic: str = ""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Input refused before or inside the core; stored so an admin can see why."""

    source: str
    topic: str
    reason: str
    excerpt: str
    size: int
    received_at: datetime


CoreInput = AlarmIn | DeviceStatusIn | AgencyAckIn | DetectionIn | ComplaintIn | Rejection
