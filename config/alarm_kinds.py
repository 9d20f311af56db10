"""The one list of alarm kinds: what may raise an alarm, who may send it, and how the UI names it.

Everything else derives from `KINDS`: the MQTT alarm payload and the console's press body accept the device
kinds, the incident filter accepts every kind, `firelink press --kind` offers the device kinds, and the pages
get the labels from GET /api/me (`alarm_kinds`). Adding a kind is one line here.

`DeviceKind` / `DetectorKind` / `AnyKind` are `Literal`s for pydantic (so a JSON Schema lists the values and a
wrong value is refused with the list), plain `str` for the type checker.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal


class Source(StrEnum):
    """Who raises a kind."""

    DEVICE = "device"  # buttons and detectors on site (MQTT), the console's press, `firelink press`
    DETECTOR = "detector"  # only Firelink's own video detectors (never accepted from a device)


DEVICE = Source.DEVICE
DETECTOR = Source.DETECTOR


@dataclass(frozen=True, slots=True)
class AlarmKind:
    id: str
    zh: str  # label on the pages (Simplified Chinese)
    en: str  # label with the English toggle
    source: Source

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "zh": self.zh, "en": self.en, "source": self.source.value}


KINDS: tuple[AlarmKind, ...] = (
    AlarmKind("one_key", "一键报警", "One-key alarm", DEVICE),
    AlarmKind("smoke", "烟感报警", "Smoke detector", DEVICE),
    AlarmKind("heat", "温感报警", "Heat detector", DEVICE),
    AlarmKind("manual_call_point", "手动报警按钮", "Manual call point", DEVICE),
    AlarmKind("gas", "燃气报警", "Gas alarm", DEVICE),
    AlarmKind("other", "其他报警", "Other alarm", DEVICE),
    AlarmKind("video_smoke", "视频识别烟雾", "Video: smoke", DETECTOR),
    AlarmKind("video_fire", "视频识别火焰", "Video: fire", DETECTOR),
)

BY_ID: dict[str, AlarmKind] = {k.id: k for k in KINDS}
ALL_IDS: tuple[str, ...] = tuple(BY_ID)
DEVICE_IDS: tuple[str, ...] = tuple(k.id for k in KINDS if k.source == DEVICE)
DETECTOR_IDS: tuple[str, ...] = tuple(k.id for k in KINDS if k.source == DETECTOR)


def from_detector(kind: str) -> bool:
    """Whether `kind` is raised only by a video detector (a false alarm of it teaches the detector)."""
    found = BY_ID.get(kind)
    return found is not None and found.source == DETECTOR


if TYPE_CHECKING:
    DeviceKind = str
    DetectorKind = str
    AnyKind = str
else:
    DeviceKind = Literal[DEVICE_IDS]  # Literal[("a", "b")] is Literal["a", "b"]
    DetectorKind = Literal[DETECTOR_IDS]
    AnyKind = Literal[ALL_IDS]
