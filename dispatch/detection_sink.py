"""Where video detections enter the core (from in-process detectors or remote workers over MQTT).

- Confirmed smoke/fire → an alarm in the same pipeline as a button press; the triggering frame and its
  boxes are kept as evidence and recorded on the incident (with the file's SHA-256).
- An officer closing such an incident as a false alarm turns that frame into a labelled hard negative
  for `firelink train`.
- A blocked exit → a hazard with before/after snapshots; the obstruction clearing is recorded on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dispatch import events as ev
from dispatch.hazard_models import Hazard
from dispatch.hazards import CLOSED, HazardService, Upload
from dispatch.inputs import SYSTEM, Actor, AlarmIn
from dispatch.models import Alarm
from dispatch.service import IncidentService

log = logging.getLogger(__name__)

DETECTOR = Actor("exit-detector", "system")


class DetectionSink:
    def __init__(self, service: IncidentService, hazards: HazardService, evidence_dir: str | Path,
                 hard_negatives_dir: str | Path) -> None:
        self.service = service
        self.hazards = hazards
        self.frames = Path(evidence_dir) / "detections"
        self.hard_negatives_dir = Path(hard_negatives_dir)
        self._pending: dict[str, dict[str, Any]] = {}
        # awaited after false-alarm frames were saved as hard negatives (in-process detectors refit on them)
        self.after_learning: list[Callable[[], Awaitable[None]]] = []

    # ---------------------------------------------------------------- smoke / fire

    async def on_detection(self, record: dict[str, Any]) -> None:
        """Called just before the alarm is submitted: keeps the frame and boxes until it is committed."""
        self._pending[str(record["alarm_id"])] = record

    async def submit(self, alarms: list[AlarmIn]) -> None:
        await self.service.ingest(alarms)
        for alarm in alarms:
            record = self._pending.pop(alarm.alarm_id, None)
            if record is not None and record.get("jpeg"):
                await self._keep_frame(alarm, record)

    async def _keep_frame(self, alarm: AlarmIn, record: dict[str, Any]) -> None:
        jpeg: bytes = record["jpeg"]
        self.frames.mkdir(parents=True, exist_ok=True)
        path = self.frames / f"{alarm.alarm_id}.jpg"
        meta = {k: v for k, v in record.items() if k not in ("jpeg", "raw_jpeg", "frame_jpeg")}
        await asyncio.to_thread(path.write_bytes, jpeg)
        if record.get("raw_jpeg"):  # unmarked copy: what a false alarm teaches the detectors
            await asyncio.to_thread(path.with_suffix(".raw.jpg").write_bytes, record["raw_jpeg"])
        await asyncio.to_thread(path.with_suffix(".json").write_text, json.dumps(meta, default=str))
        open_inc = self.service.open_by_unit.get(alarm.unit_id)
        if open_inc is None:
            return
        async with self.service.writer.tx() as tx:
            self.service.writer.record(
                tx, "detection.frame", SYSTEM, alarm.received_at,
                {"alarm_id": alarm.alarm_id, "camera_id": alarm.device_id, "file": path.name,
                 "sha256": hashlib.sha256(jpeg).hexdigest(), "boxes": meta.get("boxes", []),
                 "confidence": meta.get("confidence")},
                incident_id=open_inc.incident_id)

    async def learn_from_false_alarms(self) -> None:
        """Frames of video incidents closed as false alarms become hard negatives."""
        from detectors.train import save_hard_negative

        with self.service.bus.subscribe([ev.INCIDENT_UPDATED]) as sub:
            async for event in sub:
                inc = event.data["incident"]
                if inc["outcome"] != "false_alarm" or not str(inc["kind"]).startswith("video_"):
                    continue
                async with self.service.db.session() as s:
                    ids = (await s.scalars(select(Alarm.alarm_id).where(Alarm.incident_id == inc["id"]))).all()
                learned = False
                for alarm_id in ids:
                    frame = self.frames / f"{alarm_id}.jpg"
                    if not frame.exists():
                        continue
                    meta = json.loads(frame.with_suffix(".json").read_text())
                    raw = frame.with_suffix(".raw.jpg")
                    clean = raw if raw.exists() else frame  # MQTT workers send the marked frame only
                    saved = await asyncio.to_thread(save_hard_negative, clean.read_bytes(), meta.get("boxes", []),
                                                    self.hard_negatives_dir, name=alarm_id,
                                                    meta={"incident_id": inc["id"], "closed_by": inc["closed_by"]})
                    log.info("false alarm %s saved as hard negative %s", alarm_id, saved)
                    learned = True
                for hook in self.after_learning if learned else []:
                    try:
                        await hook()
                    except Exception:  # a failed refit keeps the previous verifier; never stops learning
                        log.exception("refit after false alarm %s failed", inc["id"])

    # ---------------------------------------------------------------- blocked exits

    async def on_hazard(self, event: Any) -> None:
        from detectors.exits import ExitCleared, ExitHazard

        unit_id = event.unit_id or self._unit_of(event.camera_id)
        if unit_id is None:
            log.warning("exit event from camera %s with no unit", event.camera_id)
            return
        if isinstance(event, ExitHazard):
            note = (f"出口“{event.zone_name or event.zone_id}”被占用约{event.fraction:.0%}，"
                    f"自 {event.started_at.isoformat()} 起持续")
            view = await self.hazards.create_from_detection(
                unit_id=unit_id, camera_id=event.camera_id, zone=event.zone_id, category="blocked_exit",
                snapshot_jpeg=event.after_jpeg, detected_at=event.confirmed_at, detector=DETECTOR.username,
                note=note)
            await self.hazards.add_evidence(view["id"], "before", [
                Upload(f"{event.camera_id}-{event.zone_id}-clear-reference.jpg", "image/jpeg", event.before_jpeg)],
                "clear reference (before)", DETECTOR)
        elif isinstance(event, ExitCleared):
            async with self.service.db.session() as s:
                hazard_id = await s.scalar(select(Hazard.id).where(
                    Hazard.unit_id == unit_id, Hazard.camera_id == event.camera_id, Hazard.zone == event.zone_id,
                    Hazard.category == "blocked_exit", Hazard.status != CLOSED).limit(1))
            if hazard_id is None:
                return
            async with self.service.writer.tx() as tx:
                self.service.writer.record(
                    tx, "hazard.obstruction_cleared", DETECTOR, event.cleared_at,
                    {"camera_id": event.camera_id, "zone_id": event.zone_id, "fraction": event.fraction,
                     "sha256": hashlib.sha256(event.after_jpeg).hexdigest()},
                    hazard_id=hazard_id)

    def camera_recheck(self, detectors: Any, hub: Any) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        """A hazard's automatic recheck at its deadline: the exit zone's live state plus a snapshot."""

        async def recheck(hazard: dict[str, Any]) -> tuple[bool, bytes] | None:
            pipeline = detectors.pipelines.get(hazard.get("camera_id"))
            if pipeline is None or pipeline.exits is None:
                return None  # not watched by a detector here: an officer rechecks
            zone = next((z for z in pipeline.exits.state() if z["zone_id"] == hazard.get("zone")), None)
            frame = await hub.snapshot(hazard["camera_id"])
            if zone is None or frame is None:
                return None
            return zone["blocked_since"] is None, frame.data

        return recheck

    def _unit_of(self, camera_id: str) -> str | None:
        return next((c.unit_id for c in self.service.cfg.cameras if c.id == camera_id), None)
