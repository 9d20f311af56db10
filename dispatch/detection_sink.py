"""Where video detections enter the core (from in-process detectors or remote workers over MQTT).

- Confirmed smoke/fire → an alarm in the same pipeline as a button press; once the alarm is stored, the
  triggering frame is kept under its SHA-256 (``{evidence_dir}/detections/{sha256}.jpg``; no name from the
  message) and recorded with its boxes on the incident. A rejected or duplicate alarm writes nothing.
- An officer closing such an incident as a false alarm turns that frame into a labelled hard negative
  for `firelink train`.
- A blocked exit → a hazard with before/after snapshots; the obstruction clearing is recorded on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from config import alarm_kinds
from dispatch import events as ev
from dispatch.actor import SYSTEM, Actor
from dispatch.evidence_record import DETECTION_FRAME, entries
from dispatch.hazard_models import Hazard
from dispatch.hazards import HazardService, Upload
from dispatch.service import IncidentService
from dispatch.state import HazardStatus
from ingest.contract import AlarmIn, ExitCleared, ExitHazard
from ingest.integrity import confined, sha256_bytes, write_content_addressed

log = logging.getLogger(__name__)

DETECTOR = Actor("exit-detector", "system")


class SaveNegative(Protocol):
    """Keeps a false alarm's clean frame (with its boxes) as a hard negative; returns where it went."""

    def __call__(self, frame_jpeg: bytes, boxes: list[Any], dataset_dir: str | Path, /, *,
                 name: str | None = None, meta: dict[str, Any] | None = None) -> Path: ...


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
        outcomes = await self.service.ingest(alarms)
        for alarm, outcome in zip(alarms, outcomes, strict=True):
            record = self._pending.pop(alarm.alarm_id, None)
            # Only a newly stored alarm keeps its frame: a rejected or duplicate one writes nothing.
            if outcome == "accepted" and record is not None and record.get("jpeg"):
                await self._keep_frame(alarm, record)

    async def _keep_frame(self, alarm: AlarmIn, record: dict[str, Any]) -> None:
        """Stores the frame under its SHA-256 (never a name from the message) and records it on the incident."""
        open_inc = self.service.open_by_unit.get(alarm.unit_id)
        if open_inc is None:
            return  # no incident to attach it to: nothing is written
        jpeg = record["jpeg"]
        if not isinstance(jpeg, bytes) or not jpeg.startswith(b"\xff\xd8"):
            log.warning("alarm %r: detection frame is not a JPEG; not kept", alarm.alarm_id[:128])
            return
        name, digest = await asyncio.to_thread(write_content_addressed, self.frames, jpeg, "jpg")
        data: dict[str, Any] = {"alarm_id": alarm.alarm_id, "camera_id": alarm.device_id, "file": name,
                                "sha256": digest, "boxes": record.get("boxes", []),
                                "confidence": record.get("confidence")}
        raw = record.get("raw_jpeg")
        if isinstance(raw, bytes) and raw.startswith(b"\xff\xd8"):  # unmarked copy: what a false alarm teaches
            data["raw_file"], data["raw_sha256"] = await asyncio.to_thread(
                write_content_addressed, self.frames, raw, "jpg")
        async with self.service.writer.tx() as tx:
            self.service.writer.record(tx, DETECTION_FRAME, SYSTEM, alarm.received_at, data,
                                       incident_id=open_inc.incident_id)

    def _read_verified(self, name: Any, sha256: Any) -> bytes | None:
        """A kept frame's bytes when its name is plain and its content still has the recorded SHA-256 (blocking)."""
        try:
            data = confined(self.frames, str(name)).read_bytes()
        except (ValueError, OSError):
            return None
        if sha256_bytes(data) != sha256:
            log.error("detection frame %s does not match its recorded SHA-256: not used", name)
            return None
        return data

    async def learn_from_false_alarms(self, save_hard_negative: SaveNegative) -> None:
        """Frames of video incidents closed as false alarms become hard negatives (`save_hard_negative` is the
        detectors' keeper, handed in by the composition root)."""
        with self.service.bus.subscribe([ev.INCIDENT_UPDATED]) as sub:
            async for event in sub:
                inc = event.data["incident"]
                if inc["outcome"] != "false_alarm" or not alarm_kinds.from_detector(str(inc["kind"])):
                    continue
                learned = False
                for frame in await entries(self.service.db, int(inc["id"]), DETECTION_FRAME):
                    marked = await asyncio.to_thread(self._read_verified, frame.get("file"), frame.get("sha256"))
                    raw = None
                    if frame.get("raw_file"):
                        raw = await asyncio.to_thread(self._read_verified, frame["raw_file"], frame.get("raw_sha256"))
                    clean = raw or marked  # MQTT workers send the marked frame only
                    if clean is None:
                        continue
                    alarm_id = str(frame.get("alarm_id", ""))
                    saved = await asyncio.to_thread(save_hard_negative, clean, frame.get("boxes") or [],
                                                    self.hard_negatives_dir, name=alarm_id or None,
                                                    meta={"incident_id": inc["id"], "closed_by": inc["closed_by"]})
                    log.info("false alarm %s saved as hard negative %s", alarm_id[:128], saved)
                    learned = True
                for hook in self.after_learning if learned else []:
                    try:
                        await hook()
                    except Exception:  # a failed refit keeps the previous verifier; never stops learning
                        log.exception("refit after false alarm %s failed", inc["id"])

    # ---------------------------------------------------------------- blocked exits

    async def on_hazard(self, event: Any) -> None:
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
                    Hazard.category == "blocked_exit", Hazard.status != HazardStatus.CLOSED).limit(1))
            if hazard_id is None:
                return
            async with self.service.writer.tx() as tx:
                self.service.writer.record(
                    tx, "hazard.obstruction_cleared", DETECTOR, event.cleared_at,
                    {"camera_id": event.camera_id, "zone_id": event.zone_id, "fraction": event.fraction,
                     "sha256": sha256_bytes(event.after_jpeg)},
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
