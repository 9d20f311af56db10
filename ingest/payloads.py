"""MQTT topic/payload contract (docs/mqtt.md) and its parser.

`parse_message` is a pure function: bytes in, one core input out. Anything
that does not fit the contract becomes a `Rejection` with a reason; it
never raises on input.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, ValidationError

from dispatch.inputs import (
    AgencyAckIn,
    AlarmIn,
    CoreInput,
    DetectionIn,
    DeviceStatusIn,
    InputModel,
    Rejection,
    printable,
)

EXCERPT_BYTES = 200
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class _Payload(InputModel):
    pass


class AlarmPayload(_Payload):
    alarm_id: str = Field(..., min_length=1, max_length=128, description="Unique per press; used for de-duplication.")
    kind: Literal["one_key", "smoke", "heat", "manual_call_point", "gas", "other"] = Field(
        ..., description="What raised the alarm."
    )
    device_id: str | None = Field(None, pattern=ID_PATTERN, description="Button/detector that raised it.")
    ts: datetime | None = Field(None, description="Device time, ISO-8601 (informational; receipt time rules).")
    note: str | None = Field(None, max_length=2000, description="Free text from the device or gateway.")


class DeviceStatusPayload(_Payload):
    status: Literal["online", "offline", "fault"] = Field(..., description="online doubles as heartbeat.")
    detail: str | None = Field(None, max_length=400, description="Fault description, battery level, ...")
    ts: datetime | None = Field(None, description="Device time, ISO-8601.")


class AgencyAckPayload(_Payload):
    dispatch_id: int = Field(..., ge=1, description="The dispatch being answered.")
    status: Literal["acknowledged", "on_scene"] = Field("acknowledged", description="What the agency reports.")
    by: str | None = Field(None, max_length=64, description="Dispatcher or crew name.")


def _excerpt(payload: bytes) -> str:
    return printable(payload[:EXCERPT_BYTES].decode("utf-8", errors="replace"))


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_message(prefix: str, topic: str, payload: bytes, max_bytes: int, received_at: datetime,
                  max_detection_bytes: int = 1 << 20) -> CoreInput:
    def reject(reason: str) -> Rejection:
        return Rejection("mqtt", topic, reason, _excerpt(payload), len(payload), received_at)

    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != prefix:
        return reject("unknown topic")
    section, ident, leaf = parts[1], parts[2], "/".join(parts[3:])
    if section == "cameras" and leaf == "detections":  # from detector workers: carries a JPEG, so larger
        if len(payload) > max_detection_bytes:
            return reject(f"payload too large: {len(payload)} bytes > {max_detection_bytes}")
        from detectors.worker import parse_detection_message

        message = parse_detection_message(topic, payload, received_at)
        return DetectionIn(message, received_at, topic) if message else reject("invalid detections message")
    if len(payload) > max_bytes:
        return reject(f"payload too large: {len(payload)} bytes > {max_bytes}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return reject(f"malformed JSON: {exc}")
    if not isinstance(data, dict):
        return reject("payload must be a JSON object")
    try:
        if section == "units" and leaf == "alarm":
            alarm = AlarmPayload.model_validate(data)
            return AlarmIn(alarm_id=alarm.alarm_id, unit_id=ident, kind=alarm.kind, source="mqtt",
                           received_at=received_at, device_id=alarm.device_id, device_ts=_aware(alarm.ts),
                           note=alarm.note or "", topic=topic)
        if section == "devices" and leaf == "status":
            status = DeviceStatusPayload.model_validate(data)
            return DeviceStatusIn(ident, status.status, status.detail or "", received_at)
        if section == "dispatch" and leaf == "ack" and ident in ("fire", "medical"):
            ack = AgencyAckPayload.model_validate(data)
            return AgencyAckIn(ident, ack.dispatch_id, ack.status, ack.by or f"{ident}-mqtt", received_at, topic)
    except ValidationError as exc:
        return reject(f"invalid payload: {_errors(exc)}")
    return reject("unknown topic")
