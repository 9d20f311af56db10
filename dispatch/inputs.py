"""What the core accepts: plain dataclasses produced by ingest (MQTT), the console and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
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


class InputModel(BaseModel):
    """Base of every edge payload (MQTT and HTTP): unknown keys and control characters are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

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


@dataclass(frozen=True, slots=True)
class DetectionIn:
    """A remote detector worker's message (detectors.worker.DetectionMessage): an alarm or an exit event."""

    message: Any
    received_at: datetime
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


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an action: a logged-in user, an agency's system, or the system itself."""

    username: str
    role: str  # admin | duty_officer | unit | agency | assessor | system
    unit_id: str | None = None
    agency: str | None = None


SYSTEM = Actor("system", "system")

CoreInput = AlarmIn | DeviceStatusIn | AgencyAckIn | DetectionIn | Rejection
