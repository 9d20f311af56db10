"""Detectors on cameras: the loaded plug-ins (`DetectorSet`), one camera's view of them (`CameraPipeline`) and the
live service that feeds them from the camera hub (`DetectorService`).

Everything but `DetectorService` is synchronous and clock-agnostic (frames carry their own timestamps), so the same
code runs live (wall-clock ts from the hub), on a video file (`firelink detect-video`, video time) and in tests.
`DetectorService` subscribes to each watched camera through `CameraHub.subscribe_frames(camera_id, fps)` at the rate
its detectors ask for, hands the newest frame of every camera to the detectors as one batch (in a worker thread,
never on the event loop) and passes each `DetectionEvent` to one sink, `emit`: the core's detection sink in
`firelink run`, an MQTT publisher in a `firelink detect` worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from config.detectors import CameraDetectors, DetectorsConfig, ExitZoneConfig, Point
from detectors.base import Camera, Detector, Sample, registry, wanted_by
from detectors.exits import ExitWatcher
from detectors.fire import FireDetector
from detectors.plugins.blocked_exit import BlockedExit
from detectors.plugins.smoke_fire import SmokeFire
from ingest.contract import AlarmDetection, DetectionEvent
from ingest.integrity import confined, write_confined

if TYPE_CHECKING:
    from ingest.cameras.hub import CameraHub

log = logging.getLogger(__name__)

IDLE_FPS = 0.2  # a watched camera with nothing to analyse yet

Emit = Callable[[DetectionEvent], Awaitable[None]]


class DetectorSet:
    """The detector plug-ins the cameras' settings ask for (`detectors.base.registry()`), each loaded once for all
    cameras, and which cameras each watches. Blocking: call it from a worker thread on a live loop."""

    def __init__(self, cfg: DetectorsConfig, loaded: Mapping[str, Detector] | None = None) -> None:
        self.cfg = cfg
        self.detectors: dict[str, Detector] = dict(loaded or {})  # type key → the one loaded instance
        self.cameras: dict[str, set[str]] = {}  # type key → ids of the cameras it watches

    def watch(self, camera: Camera) -> None:
        """Builds the detectors the camera's settings ask for (loading a type's models the first time)."""
        types = registry()
        for key in wanted_by(camera.settings):
            det = self.detectors.get(key)
            if det is None:
                det = self.detectors[key] = types[key].load(self.cfg)
            det.watch(camera)
            self.cameras.setdefault(key, set()).add(camera.camera_id)

    def watched_by(self, camera_id: str) -> list[str]:
        return [key for key, ids in self.cameras.items() if camera_id in ids]

    def fps(self, camera_id: str) -> float:
        """The sampling rate the camera's detectors need now (0: none has anything to analyse there)."""
        return max((self.detectors[k].fps(camera_id) for k in self.watched_by(camera_id)), default=0.0)

    def process(self, samples: Sequence[Sample]) -> list[DetectionEvent]:
        """Each detector analyses the samples of the cameras it watches, in one call (its batch)."""
        events: list[DetectionEvent] = []
        for key, det in self.detectors.items():
            ids = self.cameras.get(key, set())
            mine = [s for s in samples if s.camera_id in ids]
            if mine:
                events += det.process(mine)
        return events

    @property
    def smoke_fire(self) -> SmokeFire | None:
        det = self.detectors.get(SmokeFire.type_key)
        return det if isinstance(det, SmokeFire) else None

    @property
    def exits(self) -> BlockedExit | None:
        det = self.detectors.get(BlockedExit.type_key)
        return det if isinstance(det, BlockedExit) else None


class CameraPipeline:
    """One camera's view of the detectors that watch it."""

    def __init__(self, camera: Camera, detectors: DetectorSet) -> None:
        self.camera = camera
        self.detectors = detectors

    @property
    def camera_id(self) -> str:
        return self.camera.camera_id

    @property
    def cam(self) -> CameraDetectors:
        """The camera's current settings (its masks as last applied)."""
        sf = self.detectors.smoke_fire
        return (sf.settings(self.camera_id) if sf is not None else None) or self.camera.settings

    @property
    def fire(self) -> FireDetector | None:
        """The smoke/fire model, when smoke/fire runs on this camera."""
        sf = self.detectors.smoke_fire
        return sf.model if sf is not None and sf.settings(self.camera_id) is not None else None

    @property
    def exits(self) -> ExitWatcher | None:
        """The camera's exit zones and their state, when it has zones."""
        ex = self.detectors.exits
        return ex.watcher(self.camera_id) if ex is not None else None

    def fps(self) -> float:
        return self.detectors.fps(self.camera_id)

    def process(self, t: float, frame: np.ndarray) -> list[DetectionEvent]:
        """Synchronous convenience: one frame through every detector of the camera."""
        return self.detectors.process([Sample(self.camera_id, t, frame)])


def save_evidence(event: AlarmDetection, folder: Path) -> Path:
    """Writes the triggering JPEG: {folder}/{camera_id}/{alarm_id}.jpg (blocking). Both names are made by the
    detector (configured camera id, generated alarm id); the write is still confined to the folder."""
    d = confined(folder, event.alarm.device_id or "unknown-camera")
    return write_confined(d, f"{event.alarm.alarm_id}.jpg", event.frame.jpeg)[0]


class DetectorService:
    """Live detectors for the cameras of a CameraHub."""

    def __init__(
        self,
        hub: CameraHub,
        cfg: DetectorsConfig,
        emit: Emit | None = None,
        *,
        camera_ids: Sequence[str] | None = None,
        detectors: DetectorSet | None = None,
    ) -> None:
        self.hub = hub
        self.cfg = cfg
        self.emit = emit
        ids = list(camera_ids) if camera_ids is not None else list(hub.streams)
        self.detectors = detectors or DetectorSet(cfg)
        self.pipelines: dict[str, CameraPipeline] = {}
        self._ids = [i for i in ids if cfg.for_camera(i) is not None]
        self._queue: dict[str, tuple[float, np.ndarray]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = {"frames": 0, "batches": 0, "events": 0, "busy_s": 0.0}

    async def start(self) -> None:
        """Builds the cameras' detectors (models load in a thread) and starts one subscriber per camera plus the
        batch loop. ValueError when a camera's settings name an unknown detector."""
        cameras = []
        for cid in self._ids:
            settings = self.cfg.for_camera(cid)
            assert settings is not None
            cameras.append(Camera(cid, self.hub.get(cid).cfg.unit_id, settings))
        await asyncio.to_thread(self._watch, cameras)
        self._tasks = [asyncio.create_task(self._feed(cid), name=f"detect-feed-{cid}") for cid in self.pipelines]
        self._tasks.append(asyncio.create_task(self._batch_loop(), name="detect-batch"))
        log.info("detectors watching %d camera(s): %s", len(self.pipelines), ", ".join(sorted(self.detectors.cameras)))

    def _watch(self, cameras: list[Camera]) -> None:
        for camera in cameras:
            self.detectors.watch(camera)
            self.pipelines[camera.camera_id] = CameraPipeline(camera, self.detectors)

    async def relearn(self) -> None:
        """Officers marked a video alarm false: smoke/fire reloads its hard negatives (refits a configured verifier)."""
        sf = self.detectors.smoke_fire
        if sf is not None:
            await asyncio.to_thread(sf.relearn)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []

    async def set_exit_zones(self, camera_id: str, zones: list[ExitZoneConfig],
                             references: dict[str, np.ndarray]) -> bool:
        """Replaces a camera's exit zones live (the caller merges config and console zones); references are
        zones' own clear views. False when this service does not watch that camera."""
        ex = self.detectors.exits
        if camera_id not in self.pipelines or ex is None:
            return False
        done = await asyncio.to_thread(ex.set_exit_zones, camera_id, list(zones), dict(references))
        log.info("camera %s: %d exit zone(s) now watched", camera_id, len(zones))
        return done

    async def set_masks(self, camera_id: str, masks: list[list[Point]]) -> bool:
        """Replaces a camera's smoke/fire masks live (the caller merges config and console masks). False when this
        service does not watch that camera."""
        if camera_id not in self.pipelines:
            return False
        sf = self.detectors.smoke_fire
        if sf is not None:
            sf.set_masks(camera_id, masks)
        log.info("camera %s: %d smoke/fire mask(s) now applied", camera_id, len(masks))
        return True

    async def _feed(self, cid: str) -> None:
        while True:
            fps = self._feed_fps(cid)
            async with contextlib.aclosing(self.hub.subscribe_frames(cid, fps)) as frames:
                async for ts, image in frames:
                    self._queue[cid] = (ts, image)  # newest only: a slow model skips frames, never queues them
                    self._wake.set()
                    if self._feed_fps(cid) != fps:
                        break  # exit zones were added or removed: sample at the new rate
                else:
                    return  # the hub stopped

    def _feed_fps(self, cid: str) -> float:
        """Sampling rate the camera's detectors need; a slow idle rate when none has anything to analyse yet (zones
        may be drawn later: the feed notices at its next frame). Never 0, which the hub reads as "every frame"."""
        return self.detectors.fps(cid) or IDLE_FPS

    async def _batch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, {}
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                events = await asyncio.to_thread(self._run_batch, batch)
            except Exception:
                log.exception("detector batch failed")
                await asyncio.sleep(1)
                continue
            self.stats["busy_s"] += time.perf_counter() - t0
            self.stats["batches"] += 1
            self.stats["frames"] += len(batch)
            for ev in events:
                self.stats["events"] += 1
                await self._emit(ev)

    def _run_batch(self, batch: dict[str, tuple[float, np.ndarray]]) -> list[DetectionEvent]:
        """Blocking: every detector over the cameras' newest frames; alarm frames kept under evidence_dir."""
        events = self.detectors.process([Sample(cid, ts, image) for cid, (ts, image) in batch.items()])
        for ev in events:
            if isinstance(ev, AlarmDetection):
                save_evidence(ev, Path(self.cfg.evidence_dir))
        return events

    async def _emit(self, ev: DetectionEvent) -> None:
        if isinstance(ev, AlarmDetection):
            log.warning("camera %s: %s confirmed (%s)", ev.alarm.device_id, ev.alarm.kind, ev.alarm.alarm_id)
        if self.emit is None:
            return
        try:
            await self.emit(ev)
        except Exception:
            log.exception("detector sink failed for %s", type(ev).__name__)
