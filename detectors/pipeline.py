"""Per-camera detector pipelines and the service that feeds them from the camera hub.

`CameraPipeline` is synchronous and clock-agnostic (frames carry their own timestamps), so the same
code runs live (`DetectorService`, wall-clock ts from the hub), on a video file (`firelink
detect-video`, video time) and in tests. `DetectorService` subscribes to each watched camera through
`CameraHub.subscribe_frames(camera_id, fps)`, batches the newest frame of every camera into one
forward pass (in a worker thread, never on the event loop) and hands results to the sinks:

* ``submit(list[AlarmIn])`` — confirmed smoke/fire (IncidentService.ingest);
* ``on_hazard(ExitHazard | ExitCleared)`` — blocked exits (issue 5's hazard service);
* ``on_detection(record)`` — optional, every confirmed detection record (evidence, MQTT workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from config.detectors import CameraDetectors, DetectorsConfig, ExitZoneConfig, Point
from detectors.exits import ExitWatcher, PersonDetector, person_detector
from detectors.fire import Confirmed, Confirmer, FireDetector
from detectors.model import Box
from ingest.contract import AlarmIn, ExitEvent

log = logging.getLogger(__name__)

IDLE_FPS = 0.2  # a watched camera with nothing to analyse yet

Submit = Callable[[list[AlarmIn]], Awaitable[None]]
OnHazard = Callable[[ExitEvent], Awaitable[None]]
OnDetection = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FireEvent:
    """A confirmed smoke/fire detection on one camera."""

    camera_id: str
    unit_id: str | None
    alarm_id: str  # unique per confirmed event, stable for it (camera, kind, region start time)
    kind: str  # video_smoke | video_fire
    t: float  # frame timestamp (UNIX seconds live; video seconds offline)
    started_at: float  # first hit of the confirmed region
    confidence: float
    boxes: list[dict[str, Any]]  # {"class", "confidence", "box": [x1, y1, x2, y2] pixels}
    jpeg: bytes = field(repr=False)  # the triggering frame, boxes drawn (evidence shown to officers)
    width: int = 0
    height: int = 0
    jpeg_path: str | None = None  # where the evidence JPEG was written, once it was
    raw_jpeg: bytes = field(default=b"", repr=False)  # the same frame unmarked (a clean hard negative if false)

    def note(self) -> str:
        what = "smoke" if self.kind == "video_smoke" else "fire"
        return (
            f"camera {self.camera_id}: {what} confirmed over time, "
            f"confidence {self.confidence:.2f}, {len(self.boxes)} box(es)"
        )

    def record(self) -> dict[str, Any]:
        """The detection record attached to the incident as evidence."""
        return {
            "camera_id": self.camera_id,
            "alarm_id": self.alarm_id,
            "t": self.t,
            "type": self.kind,
            "confidence": round(self.confidence, 4),
            "boxes": self.boxes,
            "width": self.width,
            "height": self.height,
            "frame_jpeg": self.jpeg_path,
        }

    def alarm_in(self, received_at: datetime | None = None) -> Any:
        from ingest.contract import AlarmIn

        return AlarmIn(
            alarm_id=self.alarm_id,
            unit_id=self.unit_id or "",
            kind=self.kind,
            source="video",
            received_at=received_at or datetime.now(UTC),
            device_id=self.camera_id,
            note=self.note(),
        )


def encode_jpeg(frame: np.ndarray, boxes: list[dict[str, Any]] | None = None, quality: int = 85) -> bytes:
    img = frame
    if boxes:
        img = frame.copy()
        for b in boxes:
            x1, y1, x2, y2 = (int(v) for v in b["box"])
            color = (0, 0, 255) if b["class"] == "fire" else (200, 200, 200)
            cv2.rectangle(img, (x1, y1), (x2, y2), color, 2)
            cv2.putText(img, f"{b['class']} {b['confidence']:.2f}", (x1, max(12, y1 - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


class CameraPipeline:
    """Confirmation and exit zones for one camera; frames and their model boxes come in from outside.

    Exit zones and masks can be replaced live (`set_exit_zones`, `set_masks`) while a batch thread is working.
    """

    def __init__(
        self,
        camera_id: str,
        cfg: DetectorsConfig,
        fire: FireDetector | None,
        *,
        unit_id: str | None = None,
        cam: CameraDetectors | None = None,
        persons: PersonDetector | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.unit_id = unit_id
        self.cfg = cfg
        self.cam = cam or cfg.for_camera(camera_id) or CameraDetectors(camera_id=camera_id)
        self.fire = fire if self.cam.smoke_fire else None
        c = cfg.confirmation
        self.confirmer = Confirmer(c.k, c.n, c.min_overlap, c.rearm_after_s)
        self.exits = (
            ExitWatcher(camera_id, list(self.cam.exits), cfg.exits, persons=persons, unit_id=unit_id)
            if self.cam.exits else None
        )
        self._persons = persons
        self._lock = threading.Lock()  # zones and masks change on the loop while a batch thread may be analysing
        self._next_exit_t = -1e18
        self.frames = 0

    @property
    def weights(self) -> str | None:
        return self.cam.weights

    def on_boxes(self, t: float, frame: np.ndarray, boxes: list[Box]) -> list[FireEvent]:
        """Feed one sampled frame's raw model boxes; returns confirmed smoke/fire events."""
        if self.fire is None:
            return []
        return self.on_kept(t, frame, self.fire.keep(frame, boxes, self.cam))

    def on_kept(self, t: float, frame: np.ndarray, kept: list[tuple[str, Box]]) -> list[FireEvent]:
        """Feed boxes that passed every per-box stage (`FireDetector.keep_batch` over several cameras)."""
        if self.fire is None:
            return []
        self.frames += 1
        out = []
        for c in self.confirmer.update(t, kept):
            out.append(self._event(t, frame, c))
        return out

    def _event(self, t: float, frame: np.ndarray, c: Confirmed) -> FireEvent:
        assert self.fire is not None
        boxes = [
            b.as_dict(c.cls_name) for b in c.boxes
        ]
        h, w = frame.shape[:2]
        alarm_id = f"video-{self.camera_id}-{c.cls_name}-{round(c.started_at * 1000)}"
        return FireEvent(self.camera_id, self.unit_id, alarm_id, c.kind, t, c.started_at, c.confidence, boxes,
                         encode_jpeg(frame, boxes), w, h, raw_jpeg=encode_jpeg(frame))

    def wants_exit_frame(self, t: float) -> bool:
        return self.exits is not None and t >= self._next_exit_t

    def on_exit_frame(self, t: float, frame: np.ndarray) -> list[ExitEvent]:
        with self._lock:
            if self.exits is None:
                return []
            self._next_exit_t = t + 1.0 / self.cfg.exits.fps - 1e-6
            return self.exits.update(t, frame)

    def set_exit_zones(self, zones: list[ExitZoneConfig], references: dict[str, np.ndarray],
                       persons: PersonDetector | None = None) -> None:
        """Replaces this camera's exit zones and their own clear references (blocking: waits for a running
        analysis). Zones that did not change keep their state; no zones stops the exit watching."""
        with self._lock:
            self._persons = persons or self._persons
            if not zones:
                self.exits = None
                return
            if self.exits is None:
                self.exits = ExitWatcher(self.camera_id, list(zones), self.cfg.exits, persons=self._persons,
                                         unit_id=self.unit_id)
            self.exits.persons = self.exits.persons or self._persons
            self.exits.set_zones(list(zones), references)

    def set_masks(self, masks: list[list[Point]]) -> None:
        """Replaces this camera's smoke/fire masks (config and console merged). `cam` is immutable and swapped whole
        for a copy, so a frame being judged uses either the old masks or the new ones, never a mix."""
        with self._lock:
            self.cam = self.cam.model_copy(update={"masks": [list(poly) for poly in masks]})

    def process(self, t: float, frame: np.ndarray, boxes: list[Box] | None = None) -> list[FireEvent | ExitEvent]:
        """Synchronous convenience: model (if boxes not given) + confirmation + exit zones."""
        events: list[FireEvent | ExitEvent] = []
        if self.fire is not None:
            if boxes is None:
                boxes = self.fire.detect([frame], self.weights)[0]
            events += self.on_boxes(t, frame, boxes)
        if self.wants_exit_frame(t):
            events += self.on_exit_frame(t, frame)
        return events


def save_evidence(event: FireEvent, folder: Path) -> Path:
    """Writes the triggering JPEG: {folder}/{camera_id}/{alarm_id}.jpg (blocking). Both names are made here
    (configured camera id, generated alarm id); the write is still confined to the folder."""
    from ingest.integrity import confined, write_confined

    d = confined(folder, event.camera_id)
    return write_confined(d, f"{event.alarm_id}.jpg", event.jpeg)[0]


class DetectorService:
    """Live detectors for the cameras of a CameraHub."""

    def __init__(
        self,
        hub: Any,  # ingest.cameras.hub.CameraHub
        cfg: DetectorsConfig,
        *,
        submit: Submit | None = None,
        on_hazard: OnHazard | None = None,
        on_detection: OnDetection | None = None,
        camera_ids: Sequence[str] | None = None,
        fire: FireDetector | None = None,
        persons: PersonDetector | None = None,
    ) -> None:
        self.hub = hub
        self.cfg = cfg
        self.submit = submit
        self.on_hazard = on_hazard
        self.on_detection = on_detection
        ids = list(camera_ids) if camera_ids is not None else list(hub.streams)
        self._fire = fire
        self._persons = persons
        self.pipelines: dict[str, CameraPipeline] = {}
        self._ids = [i for i in ids if cfg.for_camera(i) is not None]
        self._queue: dict[str, tuple[float, np.ndarray]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = {"frames": 0, "batches": 0, "events": 0, "busy_s": 0.0}

    async def start(self) -> None:
        """Loads models (in a thread) and starts one subscriber per camera plus the batch loop."""
        cfg = self.cfg
        need_fire = any((c := cfg.for_camera(i)) is not None and c.smoke_fire for i in self._ids)
        need_exits = any((c := cfg.for_camera(i)) is not None and c.exits for i in self._ids)
        if self._fire is None and need_fire:
            self._fire = await asyncio.to_thread(FireDetector, cfg)
        if self._persons is None and need_exits:
            self._persons = await asyncio.to_thread(person_detector, cfg.exits)
        for cid in self._ids:
            stream = self.hub.get(cid)
            self.pipelines[cid] = CameraPipeline(
                cid, cfg, self._fire, unit_id=stream.cfg.unit_id, cam=cfg.for_camera(cid), persons=self._persons
            )
        self._tasks = [asyncio.create_task(self._feed(cid), name=f"detect-feed-{cid}") for cid in self.pipelines]
        self._tasks.append(asyncio.create_task(self._batch_loop(), name="detect-batch"))
        log.info("detectors watching %d camera(s)", len(self.pipelines))

    async def relearn(self) -> None:
        """Officers marked a video alarm false: refit the smoke/fire verifier with the new hard negatives."""
        if self._fire is not None:
            await asyncio.to_thread(self._fire.relearn)

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
        p = self.pipelines.get(camera_id)
        if p is None:
            return False
        if zones and self._persons is None and self.cfg.exits.person_weights:
            self._persons = await asyncio.to_thread(person_detector, self.cfg.exits)
        await asyncio.to_thread(p.set_exit_zones, list(zones), dict(references), self._persons)
        log.info("camera %s: %d exit zone(s) now watched", camera_id, len(zones))
        return True

    async def set_masks(self, camera_id: str, masks: list[list[Point]]) -> bool:
        """Replaces a camera's smoke/fire masks live (the caller merges config and console masks). False when this
        service does not watch that camera."""
        p = self.pipelines.get(camera_id)
        if p is None:
            return False
        await asyncio.to_thread(p.set_masks, masks)  # the lock may be held by an exit analysis
        log.info("camera %s: %d smoke/fire mask(s) now applied", camera_id, len(masks))
        return True

    async def _feed(self, cid: str) -> None:
        p = self.pipelines[cid]
        while True:
            fps = self._feed_fps(p)
            async with contextlib.aclosing(self.hub.subscribe_frames(cid, fps)) as frames:
                async for ts, image in frames:
                    self._queue[cid] = (ts, image)  # newest only: a slow model skips frames, never queues them
                    self._wake.set()
                    if self._feed_fps(p) != fps:
                        break  # exit zones were added or removed: sample at the new rate
                else:
                    return  # the hub stopped

    def _feed_fps(self, p: CameraPipeline) -> float:
        """Sampling rate the camera's detectors need; a slow idle rate when none runs yet (zones may be drawn
        later: the feed notices at its next frame). Never 0, which the hub reads as "every frame"."""
        need = max(p.cam.fps if p.fire is not None else 0.0, self.cfg.exits.fps if p.exits is not None else 0.0)
        return need or IDLE_FPS

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

    def _run_batch(self, batch: dict[str, tuple[float, np.ndarray]]) -> list[FireEvent | ExitEvent]:
        """Blocking: one forward pass per weights file over the cameras' newest frames."""
        events: list[FireEvent | ExitEvent] = []
        groups: dict[str | None, list[str]] = {}
        for cid in batch:
            p = self.pipelines[cid]
            if p.fire is not None:
                groups.setdefault(p.weights, []).append(cid)
        for weights, cids in groups.items():
            assert self._fire is not None
            results = self._fire.detect([batch[c][1] for c in cids], weights)
            kept = self._fire.keep_batch(
                [(batch[c][1], boxes, self.pipelines[c].cam) for c, boxes in zip(cids, results, strict=True)]
            )
            for cid, k in zip(cids, kept, strict=True):
                ts, frame = batch[cid]
                events += self.pipelines[cid].on_kept(ts, frame, k)
        for cid, (ts, frame) in batch.items():
            p = self.pipelines[cid]
            if p.wants_exit_frame(ts):
                events += p.on_exit_frame(ts, frame)
        return [
            dataclasses.replace(ev, jpeg_path=str(save_evidence(ev, Path(self.cfg.evidence_dir))))
            if isinstance(ev, FireEvent) else ev
            for ev in events
        ]

    async def _emit(self, ev: FireEvent | ExitEvent) -> None:
        try:
            if isinstance(ev, FireEvent):
                log.warning("camera %s: %s confirmed (%s)", ev.camera_id, ev.kind, ev.alarm_id)
                if self.on_detection is not None:
                    await self.on_detection({**ev.record(), "jpeg": ev.jpeg, "raw_jpeg": ev.raw_jpeg})
                if self.submit is not None and ev.unit_id:
                    await self.submit([ev.alarm_in()])
            elif self.on_hazard is not None:
                await self.on_hazard(ev)
        except Exception:
            log.exception("detector sink failed for %s", type(ev).__name__)
