"""The detector plug-in contract: one `Detector` protocol, a registry by type key, discovery of the built-ins.

A detector is a producer: it analyses sampled camera frames and emits `ingest.contract.DetectionEvent`s (an alarm
with its frame, a blocked exit, an exit cleared). It never talks to the core: `DetectorService` hands its events to
one sink — the core's detection sink in `firelink run`, an MQTT publisher in a `firelink detect` worker.

One instance per detector type serves every camera that asks for it and keeps each camera's state itself (keyed by
camera id), so a model is loaded once and `process` can batch the newest frames of many cameras into one forward
pass. The built-ins live in `detectors/plugins/` (one module each, found at first use like Frigate's detector
plug-ins); another detector is one more module there — or anywhere, registered with `@register` — plus its entry in
a camera's `plugins:` settings (config/detectors.py `CameraDetectors.plugins`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self, TypeVar

import numpy as np

from config.detectors import CameraDetectors, DetectorsConfig
from ingest.contract import DetectionEvent


@dataclass(frozen=True, slots=True)
class Camera:
    """A camera a detector is asked to watch, with its detector settings."""

    camera_id: str
    unit_id: str | None  # the unit its alarms belong to (None offline, `firelink detect-video`: alarms carry "")
    settings: CameraDetectors


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampled frame of one camera."""

    camera_id: str
    t: float  # the frame's timestamp: UNIX seconds live, video seconds offline
    image: np.ndarray  # BGR, read-only


class Detector(Protocol):
    """A detector plug-in. Every method but `wanted` runs in a worker thread (never on the event loop)."""

    type_key: ClassVar[str]  # unique, also its key in a camera's `plugins:` settings (DETECTOR_KEY)

    @classmethod
    def wanted(cls, settings: CameraDetectors) -> bool:
        """Whether a camera's settings ask for this detector (cheap; no model is loaded)."""
        ...

    @classmethod
    def load(cls, cfg: DetectorsConfig) -> Self:
        """The detector with its models loaded (blocking)."""
        ...

    def watch(self, camera: Camera) -> None:
        """Starts watching a camera (a fresh state for it); a bad setting raises ValueError."""
        ...

    def fps(self, camera_id: str) -> float:
        """Frames per second it wants of that camera now; 0 when it has nothing to analyse there (yet)."""
        ...

    def process(self, samples: Sequence[Sample]) -> list[DetectionEvent]:
        """Analyses frames of watched cameras (each camera's in time order; several cameras batched) and returns
        what they confirmed. A detector skips frames it does not need (e.g. above its own rate)."""
        ...


D = TypeVar("D", bound=type[Detector])

_REGISTRY: dict[str, type[Detector]] = {}
PLUGINS = "detectors.plugins"


def register(cls: D) -> D:
    """Class decorator: makes a detector available under its `type_key`."""
    key = cls.type_key
    known = _REGISTRY.get(key)
    if known is not None and known is not cls:
        raise ValueError(f"detector type {key!r} is registered twice ({known.__qualname__}, {cls.__qualname__})")
    _REGISTRY[key] = cls
    return cls


def unregister(type_key: str) -> None:
    _REGISTRY.pop(type_key, None)


def registry() -> dict[str, type[Detector]]:
    """Every registered detector type by key, after importing the built-in plug-ins' modules."""
    package = importlib.import_module(PLUGINS)
    for info in pkgutil.iter_modules(package.__path__, f"{PLUGINS}."):
        importlib.import_module(info.name)
    return dict(_REGISTRY)


def wanted_by(settings: CameraDetectors) -> list[str]:
    """The detector types a camera's settings ask for, in registration order. ValueError for a `plugins:` key that
    names no registered detector (a typo must not silently leave a camera unwatched)."""
    types = registry()
    unknown = sorted(set(settings.plugins) - set(types))
    if unknown:
        raise ValueError(f"camera {settings.camera_id}: unknown detector(s) {', '.join(unknown)}; "
                         f"registered: {', '.join(sorted(types))}")
    return [key for key, cls in types.items() if key in settings.plugins or cls.wanted(settings)]

