"""Blocked fire exits as a detector plug-in: one `ExitWatcher` per camera with exit zones (detectors/exits.py).

Every watched camera may get zones later (drawn in the console), so the plug-in watches every camera and asks for
frames (`exits.fps`) only where zones exist. The person model (cells under people are ignored) is loaded once, the
first time a camera has zones.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np

from config.detectors import CameraDetectors, DetectorsConfig, ExitZoneConfig
from detectors.base import Camera, Sample, register
from detectors.exits import ExitWatcher, PersonDetector, person_detector
from ingest.contract import DetectionEvent


@register
class BlockedExit:
    """Exit zones obstructed for their dwell time → `ExitHazard`; clear again → `ExitCleared`."""

    type_key: ClassVar[str] = "exits"

    def __init__(self, cfg: DetectorsConfig, persons: PersonDetector | None = None) -> None:
        self.cfg = cfg
        self._persons = persons
        self._cameras: dict[str, Camera] = {}
        self._watchers: dict[str, ExitWatcher] = {}
        self._next_t: dict[str, float] = {}
        self._lock = threading.Lock()  # zones change (a worker thread) while a batch thread may be analysing

    @classmethod
    def wanted(cls, settings: CameraDetectors) -> bool:
        return True  # zones may be drawn in the console at any time; no frames are asked for until then

    @classmethod
    def load(cls, cfg: DetectorsConfig) -> Self:
        return cls(cfg)  # the person model is loaded with the first zones

    def _person_model(self) -> PersonDetector | None:
        if self._persons is None and self.cfg.exits.person_weights:
            self._persons = person_detector(self.cfg.exits)
        return self._persons

    def watch(self, camera: Camera) -> None:
        zones = list(camera.settings.exits)
        watcher = ExitWatcher(camera.camera_id, zones, self.cfg.exits, persons=self._person_model(),
                              unit_id=camera.unit_id) if zones else None
        with self._lock:
            self._cameras[camera.camera_id] = camera
            self._watchers.pop(camera.camera_id, None)
            if watcher is not None:
                self._watchers[camera.camera_id] = watcher

    def watcher(self, camera_id: str) -> ExitWatcher | None:
        """The camera's exit zones and their state (None without zones)."""
        return self._watchers.get(camera_id)

    def fps(self, camera_id: str) -> float:
        return self.cfg.exits.fps if camera_id in self._watchers else 0.0

    def set_exit_zones(self, camera_id: str, zones: list[ExitZoneConfig],
                       references: dict[str, np.ndarray]) -> bool:
        """Replaces a watched camera's zones and their own clear references (blocking: waits for a running analysis).
        Zones that did not change keep their state; no zones stops the exit watching. False when not watched."""
        camera = self._cameras.get(camera_id)
        if camera is None:
            return False
        persons = self._person_model() if zones else self._persons
        with self._lock:
            if not zones:
                self._watchers.pop(camera_id, None)
                return True
            watcher = self._watchers.get(camera_id)
            if watcher is None:
                watcher = self._watchers[camera_id] = ExitWatcher(camera_id, list(zones), self.cfg.exits,
                                                                  persons=persons, unit_id=camera.unit_id)
            watcher.persons = watcher.persons or persons
            watcher.set_zones(list(zones), references)
        return True

    def process(self, samples: Sequence[Sample]) -> list[DetectionEvent]:
        events: list[DetectionEvent] = []
        with self._lock:
            for s in samples:
                watcher = self._watchers.get(s.camera_id)
                if watcher is None or s.t < self._next_t.get(s.camera_id, -1e18):
                    continue
                self._next_t[s.camera_id] = s.t + 1.0 / self.cfg.exits.fps - 1e-6
                events += watcher.update(s.t, s.image)
        return events
