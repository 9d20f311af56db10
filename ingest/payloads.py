"""MQTT topic/payload contract (docs/mqtt.md) and its parser.

`parse_message` is a pure function: bytes in, one core input out. Anything
that does not fit the contract becomes a `Rejection` with a reason; it
never raises on input.

Every payload is bounded before it is parsed: its size is checked first, then
pydantic parses and validates it in one pass with its JSON parser (jiter),
which refuses nesting deeper than 200 levels and integer literals beyond
~4,300 digits without recursing in Python, and the models bound every string,
number (finite; ids no larger than the database column), list and time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)

from config.alarm_kinds import DetectorKind, DeviceKind
from ingest.contract import (
    MAX_ROW_ID,
    AgencyAckIn,
    AlarmDetection,
    AlarmIn,
    ComplaintIn,
    CoreInput,
    DetectionEvent,
    DetectionFrame,
    DetectionIn,
    DeviceStatusIn,
    ExitCleared,
    ExitHazard,
    InputModel,
    Rejection,
    check_text,
    printable,
    video_alarm_note,
)

EXCERPT_BYTES = 200
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
ALARM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"  # detections: also a file name, so no '/'
MAX_TOPIC_CHARS = 256
MAX_BOXES = 64


def _to_utc(ts: datetime) -> datetime:
    """Aware UTC; a naive time is read as UTC. Times that leave datetime's range in UTC are refused."""
    try:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("time out of range") from None


UtcTime = Annotated[datetime, AfterValidator(_to_utc)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Payload(InputModel):
    model_config = ConfigDict(allow_inf_nan=False)


class AlarmPayload(_Payload):
    alarm_id: str = Field(..., min_length=1, max_length=128, description="Unique per press; used for de-duplication.")
    kind: DeviceKind = Field(..., description="What raised the alarm (config.alarm_kinds, raised by devices).")
    device_id: str | None = Field(None, pattern=ID_PATTERN, description="Button/detector that raised it.")
    ts: UtcTime | None = Field(None, description="Device time, ISO-8601 (informational; receipt time rules).")
    note: str | None = Field(None, max_length=2000, description="Free text from the device or gateway.")


class DeviceStatusPayload(_Payload):
    status: Literal["online", "offline", "fault"] = Field(..., description="online doubles as heartbeat.")
    detail: str | None = Field(None, max_length=400, description="Fault description, battery level, ...")
    ts: UtcTime | None = Field(None, description="Device time, ISO-8601.")


class AgencyAckPayload(_Payload):
    dispatch_id: int = Field(..., ge=1, le=MAX_ROW_ID, description="The dispatch being answered.")
    status: Literal["acknowledged", "on_scene"] = Field("acknowledged", description="What the agency reports.")
    by: str | None = Field(None, max_length=64, description="Dispatcher or crew name.")


HOTLINE_TOPIC = "hotline/complaints"  # under the topic prefix: the 96119 gateway's complaints (docs/complaints.md)
TICKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
PHONE_PATTERN = r"^[0-9+\-() ]{0,40}$"


class HotlineComplaintPayload(_Payload):
    """A complaint the 96119 fire-rescue hotline forwards: the same body over HTTP (signed) and MQTT."""

    ticket: str = Field(..., pattern=TICKET_PATTERN,
                        description="The hotline's own ticket id: a ticket sent again is the same complaint.")
    description: str = Field(..., min_length=1, max_length=4000, description="What the caller reported.")
    lat: FiniteFloat | None = Field(None, ge=-90, le=90, description="Latitude (WGS-84), if the hotline has one.")
    lon: FiniteFloat | None = Field(None, ge=-180, le=180, description="Longitude (WGS-84).")
    address: str = Field("", max_length=400, description="The address the caller gave.")
    unit_id: str | None = Field(None, pattern=ID_PATTERN, description="The supervised unit, when known.")
    facility: str = Field("", pattern=r"^([A-Za-z0-9][A-Za-z0-9_.\-]{0,63})?$",
                          description="A facility code of the unit (from its QR code), if any.")
    caller_phone: str = Field("", pattern=PHONE_PATTERN, description="The caller's number (officers only).")
    reported_at: UtcTime | None = Field(None, description="When the hotline took the call (ISO-8601).")

    def complaint(self, received_at: datetime, topic: str = "") -> ComplaintIn:
        return ComplaintIn(source="hotline", description=self.description, received_at=received_at, lat=self.lat,
                           lon=self.lon, address=self.address, unit_id=self.unit_id, facility=self.facility,
                           contact_phone=self.caller_phone, ticket=self.ticket, reported_at=self.reported_at,
                           topic=topic)


# --- detector workers (detectors/worker.py builds these models; the core validates them) ------------------


def _b64(value: Any) -> Any:
    """base64 text → bytes (validated strictly: a JPEG that is not base64 is a rejection, not a crash)."""
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


def _to_b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


Jpeg = Annotated[bytes, BeforeValidator(_b64), Field(min_length=1),
                 PlainSerializer(_to_b64, return_type=str, when_used="json")]
"""A JPEG on the wire: base64 text in JSON, bytes in Python (a worker builds the model from bytes)."""


def _text(v: str) -> str:
    check_text(v)
    return v


Label = Annotated[str, Field(max_length=64), AfterValidator(_text)]
Box = (Annotated[list[FiniteFloat], Field(max_length=8)]
       | Annotated[dict[Label, Label | FiniteFloat
                        | Annotated[list[FiniteFloat], Field(max_length=8)]], Field(max_length=8)])


class _Detection(_Payload):
    model_config = ConfigDict(extra="ignore")  # workers may add fields; only these are read
    camera_id: str = Field(..., pattern=ID_PATTERN)
    unit_id: str | None = Field(None, pattern=ID_PATTERN)


class FireDetectionPayload(_Detection):
    type: DetectorKind
    alarm_id: str = Field(..., pattern=ALARM_ID_PATTERN)
    ts: UtcTime
    confidence: FiniteFloat = Field(..., ge=0, le=1, strict=True)  # strict: true/"0.9" are not numbers
    boxes: list[Box] = Field(default_factory=list, max_length=MAX_BOXES)
    width: int = Field(..., ge=1, le=100_000)
    height: int = Field(..., ge=1, le=100_000)
    jpeg_b64: Jpeg


class ExitDetectionPayload(_Detection):
    type: Literal["blocked_exit", "blocked_exit_cleared"]
    zone_id: str = Field(..., pattern=ID_PATTERN)
    zone_name: str = Field("", max_length=200)
    started_at: UtcTime
    confirmed_at: UtcTime
    cleared_at: UtcTime | None = None
    fraction: FiniteFloat = Field(..., ge=0, le=1, strict=True)
    after_jpeg_b64: Jpeg
    before_jpeg_b64: Jpeg | None = None


AnyDetectionPayload = FireDetectionPayload | ExitDetectionPayload
DetectionPayload: TypeAdapter[AnyDetectionPayload] = TypeAdapter(
    Annotated[AnyDetectionPayload, Field(discriminator="type")])
"""One detections message: its `type` picks the shape."""


def parse_detection(topic: str, payload: bytes, received_at: datetime,
                    default_unit: str | None = None) -> DetectionEvent | str:
    """A detections message → the typed detection event, or why it is refused. Never raises."""
    try:
        message = DetectionPayload.validate_json(payload)
    except ValidationError as exc:
        return _errors(exc)
    try:
        return detection_event(topic.split("/")[-2], message, received_at, topic, default_unit)
    except ValueError as exc:
        return f"invalid payload: {exc}"


def detection_event(ident: str, p: AnyDetectionPayload, received_at: datetime, topic: str = "",
                    default_unit: str | None = None) -> DetectionEvent:
    """The validated payload → the same event an in-process detector emits (ValueError when it cannot be one)."""
    if p.camera_id != ident:
        raise ValueError("camera_id does not match the topic")
    unit_id = p.unit_id or default_unit
    if isinstance(p, FireDetectionPayload):
        if not unit_id:
            raise ValueError("unit_id is required for smoke/fire")
        alarm = AlarmIn(alarm_id=p.alarm_id, unit_id=unit_id, kind=p.type, source="video", received_at=received_at,
                        device_id=p.camera_id, device_ts=p.ts,
                        note=video_alarm_note(p.camera_id, p.type, p.confidence), topic=topic)
        frame = DetectionFrame(t=p.ts.timestamp(), confidence=p.confidence, boxes=tuple(p.boxes), width=p.width,
                               height=p.height, jpeg=p.jpeg_b64)
        return AlarmDetection(alarm, frame)
    if p.type == "blocked_exit":
        if p.before_jpeg_b64 is None:
            raise ValueError("before_jpeg_b64 is required for blocked_exit")
        return ExitHazard(p.camera_id, p.zone_id, p.started_at, p.confirmed_at, p.fraction, p.before_jpeg_b64,
                          p.after_jpeg_b64, p.zone_name, unit_id)
    if p.cleared_at is None:
        raise ValueError("cleared_at is required for blocked_exit_cleared")
    return ExitCleared(p.camera_id, p.zone_id, p.started_at, p.confirmed_at, p.cleared_at, p.fraction,
                       p.after_jpeg_b64, p.zone_name, unit_id)


# --- the parser --------------------------------------------------------------------------------------------


def excerpt(payload: bytes) -> str:
    return printable(payload[:EXCERPT_BYTES].decode("utf-8", errors="replace"))


def _errors(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False, include_input=False)
    first = errs[0] if errs else None
    if first is not None and first["type"] == "json_invalid":
        return f"malformed JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
    if first is not None and first["type"] in ("model_type", "model_attributes_type") and not first["loc"]:
        return "payload must be a JSON object"
    parts = []
    for err in errs[:5]:
        # union members show up in the location as "list[float]", "dict[...]": left out of the reason
        loc = ".".join(str(p) for p in err["loc"] if "[" not in str(p)) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid payload: " + "; ".join(parts)


def parse_message(prefix: str, topic: str, payload: bytes, max_bytes: int, received_at: datetime,
                  max_detection_bytes: int = 1 << 20, *, agencies: Collection[str] = ()) -> CoreInput:
    """Never raises: whatever arrives becomes a core input or a Rejection.

    `agencies` are the configured agency keys: an ack on firelink/dispatch/{agency}/ack for any other is an
    unknown topic.
    """
    try:
        return _parse(prefix, topic, payload, max_bytes, received_at, max_detection_bytes, agencies)
    except Exception as exc:  # a bug here must not silence the intake: the message becomes a rejection
        return Rejection("mqtt", printable(topic[:MAX_TOPIC_CHARS]), f"parser error: {type(exc).__name__}",
                         excerpt(payload), len(payload), received_at)


def _parse(prefix: str, topic: str, payload: bytes, max_bytes: int, received_at: datetime,
           max_detection_bytes: int, agencies: Collection[str]) -> CoreInput:
    def reject(reason: str) -> Rejection:
        return Rejection("mqtt", printable(topic[:MAX_TOPIC_CHARS]), reason, excerpt(payload), len(payload),
                         received_at)

    if topic == f"{prefix}/{HOTLINE_TOPIC}":
        if len(payload) > max_bytes:
            return reject(f"payload too large: {len(payload)} bytes > {max_bytes}")
        try:
            return HotlineComplaintPayload.model_validate_json(payload).complaint(received_at, topic)
        except ValidationError as exc:
            return reject(_errors(exc))
    parts = topic.split("/", 3)
    if len(topic) > MAX_TOPIC_CHARS or len(parts) < 4 or parts[0] != prefix:
        return reject("unknown topic")
    section, ident, leaf = parts[1], parts[2], parts[3]
    known = ((section == "units" and leaf == "alarm") or (section == "devices" and leaf == "status")
             or (section == "dispatch" and leaf == "ack" and ident in agencies)
             or (section == "cameras" and leaf == "detections"))
    if not known:
        return reject("unknown topic")
    limit = max_detection_bytes if section == "cameras" else max_bytes  # detections carry a JPEG
    if len(payload) > limit:
        return reject(f"payload too large: {len(payload)} bytes > {limit}")
    if section in ("units", "devices", "cameras") and not _is_id(ident):
        return reject(f"invalid id in topic: {printable(ident[:80])!r}")
    if section == "cameras":
        detection = parse_detection(topic, payload, received_at)
        return reject(detection) if isinstance(detection, str) else DetectionIn(detection, received_at, topic)
    try:
        if section == "units":
            alarm = AlarmPayload.model_validate_json(payload)
            return AlarmIn(alarm_id=alarm.alarm_id, unit_id=ident, kind=alarm.kind, source="mqtt",
                           received_at=received_at, device_id=alarm.device_id, device_ts=alarm.ts,
                           note=alarm.note or "", topic=topic)
        if section == "devices":
            status = DeviceStatusPayload.model_validate_json(payload)
            return DeviceStatusIn(ident, status.status, status.detail or "", received_at)
        ack = AgencyAckPayload.model_validate_json(payload)
        return AgencyAckIn(ident, ack.dispatch_id, ack.status, ack.by or f"{ident}-mqtt", received_at, topic)
    except ValidationError as exc:
        return reject(_errors(exc))


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def _is_id(ident: str) -> bool:
    return 0 < len(ident) <= 64 and ident[0].isascii() and ident[0].isalnum() and set(ident) <= _ID_CHARS
