"""Where video detections enter the core: one typed `DetectionEvent` (ingest/contract.py), from an in-process
detector (`DetectorService(emit=sink.handle)`) or a remote worker over MQTT (`DetectionIn.event`), committed in ONE
transaction each.

- `AlarmDetection` (confirmed smoke/fire, or any detector's alarm) → an alarm in the same pipeline as a button
  press, and, in the same transaction, its frame and boxes recorded on the incident (`detection.frame`). The frame is
  written first, under its SHA-256 (``{evidence_dir}/detections/{sha256}.jpg``; no name from the message): should
  the transaction fail, the file is unreferenced and harmless, and a retry writes the same name. A duplicate or
  rejected alarm records nothing (an alarm for an unknown unit writes no file either).
- An officer closing such an incident as a false alarm turns that frame into a labelled hard negative
  for `firelink train`.
- `ExitHazard` → a hazard with its snapshot and the clear reference (before), in one transaction;
  `ExitCleared` → recorded on the open hazard of that exit (HazardCases.obstruction_cleared).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from config import alarm_kinds
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.core import AlarmNote
from dispatch.events import EventBus
from dispatch.evidence_record import DETECTION_FRAME
from dispatch.hazard_cases import HazardCases
from dispatch.hazard_deadlines import CameraRecheck
from dispatch.intake import Intake
from ingest.contract import AlarmDetection, BoxJson, DetectionEvent, ExitCleared, ExitHazard
from ingest.integrity import confined, sha256_bytes, write_content_addressed

if TYPE_CHECKING:
    from detectors.pipeline import DetectorService
    from ingest.cameras.hub import CameraHub

log = logging.getLogger(__name__)

DETECTOR = Actor("exit-detector", "system")
JPEG_MAGIC = b"\xff\xd8"


class SaveNegative(Protocol):
    """Keeps a false alarm's clean frame (with its boxes) as a hard negative; returns where it went."""

    def __call__(self, frame_jpeg: bytes, boxes: list[BoxJson], dataset_dir: str | Path, /, *,
                 name: str | None = None, meta: dict[str, Any] | None = None) -> Path: ...


class DetectionSink:
    def __init__(self, intake: Intake, hazards: HazardCases, bus: EventBus, evidence_dir: str | Path,
                 hard_negatives_dir: str | Path, camera_units: Mapping[str, str]) -> None:
        self.intake = intake
        self.hazards = hazards
        self.bus = bus
        self.frames = Path(evidence_dir) / "detections"
        self.hard_negatives_dir = Path(hard_negatives_dir)
        self.camera_units = dict(camera_units)  # camera id → the unit it watches (config), for events without one
        # awaited after false-alarm frames were saved as hard negatives (in-process detectors refit on them)
        self.after_learning: list[Callable[[], Awaitable[None]]] = []

    async def handle(self, event: DetectionEvent) -> None:
        """Commits one detection event (one transaction). Refusals raise the core's BadRequest/NotFound."""
        match event:
            case AlarmDetection():
                await self._alarm(event)
            case ExitHazard():
                await self._exit_hazard(event)
            case ExitCleared():
                await self._exit_cleared(event)
            case _:
                assert_never(event)

    # ---------------------------------------------------------------- alarms (smoke / fire, ...)

    async def _alarm(self, det: AlarmDetection) -> None:
        alarm = det.alarm
        notes: dict[str, list[AlarmNote]] = {}
        if alarm.unit_id in self.intake.core.units:  # an unknown unit's alarm is only a stored rejection: no file
            frame = await self._keep_frame(det)
            if frame is not None:
                notes[alarm.alarm_id] = [AlarmNote(DETECTION_FRAME, frame)]
        await self.intake.ingest([alarm], notes)

    async def _keep_frame(self, det: AlarmDetection) -> dict[str, Any] | None:
        """Stores the frame under its SHA-256 (never a name from the message); what the record says about it."""
        jpeg, raw = det.frame.jpeg, det.frame.raw_jpeg
        if not jpeg.startswith(JPEG_MAGIC):
            log.warning("alarm %r: detection frame is not a JPEG; not kept", det.alarm.alarm_id[:128])
            return None
        name, digest = await asyncio.to_thread(write_content_addressed, self.frames, jpeg, "jpg")
        data: dict[str, Any] = {"alarm_id": det.alarm.alarm_id, "camera_id": det.alarm.device_id, "file": name,
                                "sha256": digest, "boxes": [_plain(b) for b in det.frame.boxes],
                                "confidence": det.frame.confidence}
        if raw.startswith(JPEG_MAGIC):  # the unmarked copy: what a false alarm teaches
            data["raw_file"], data["raw_sha256"] = await asyncio.to_thread(
                write_content_addressed, self.frames, raw, "jpg")
        return data

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
        with self.bus.subscribe([ev.INCIDENT_UPDATED]) as sub:
            async for event in sub:
                inc = event.data["incident"]
                if event.remote:  # closed on another core of the cluster: that core learns from it
                    continue
                if inc["outcome"] != "false_alarm" or not alarm_kinds.from_detector(str(inc["kind"])):
                    continue
                learned = False
                for frame in await self.intake.record_of(int(inc["id"]), DETECTION_FRAME):
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
                                                    meta={"incident_id": inc["id"], "closed_by": inc["closed_by"],
                                                          "camera_id": frame.get("camera_id")})
                    log.info("false alarm %s saved as hard negative %s", alarm_id[:128], saved)
                    learned = True
                for hook in self.after_learning if learned else []:
                    try:
                        await hook()
                    except Exception:  # a failed refit keeps the previous verifier; never stops learning
                        log.exception("refit after false alarm %s failed", inc["id"])

    # ---------------------------------------------------------------- blocked exits

    def _unit(self, event: ExitHazard | ExitCleared) -> str | None:
        unit_id = event.unit_id or self.camera_units.get(event.camera_id)
        if unit_id is None:
            log.warning("exit event from camera %s with no unit", event.camera_id)
        return unit_id

    async def _exit_hazard(self, event: ExitHazard) -> None:
        unit_id = self._unit(event)
        if unit_id is None:
            return
        note = (f"出口“{event.zone_name or event.zone_id}”被占用约{event.fraction:.0%}，"
                f"自 {event.started_at.isoformat()} 起持续")
        await self.hazards.create_from_detection(
            unit_id=unit_id, camera_id=event.camera_id, zone=event.zone_id, category="blocked_exit",
            snapshot_jpeg=event.after_jpeg, reference_jpeg=event.before_jpeg, detected_at=event.confirmed_at,
            detector=DETECTOR.username, note=note)

    async def _exit_cleared(self, event: ExitCleared) -> None:
        unit_id = self._unit(event)
        if unit_id is None:
            return
        await self.hazards.obstruction_cleared(
            unit_id=unit_id, camera_id=event.camera_id, zone=event.zone_id, cleared_at=event.cleared_at,
            data={"camera_id": event.camera_id, "zone_id": event.zone_id, "fraction": event.fraction,
                  "sha256": sha256_bytes(event.after_jpeg)},
            detector=DETECTOR.username)

    def camera_recheck(self, detectors: DetectorService, hub: CameraHub) -> CameraRecheck:
        """A hazard's automatic recheck at its deadline: the exit zone's live state plus a snapshot."""

        async def recheck(hazard: dict[str, Any]) -> tuple[bool, bytes] | None:
            cid = hazard.get("camera_id") or ""
            pipeline = detectors.pipelines.get(cid)
            exits = pipeline.exits if pipeline is not None else None
            if exits is None or cid not in hub or not hub.get(cid).watching:
                return None  # not watched by a detector here (cluster: maybe by another node): an officer rechecks
            zone = next((z for z in exits.state() if z["zone_id"] == hazard.get("zone")), None)
            frame = await hub.snapshot(hazard["camera_id"])
            if zone is None or frame is None:
                return None
            return zone["blocked_since"] is None, frame.data

        return recheck


def _plain(box: BoxJson) -> BoxJson:
    """A box as plain JSON (lists, not tuples) for the record."""
    return list(box) if isinstance(box, list | tuple) else dict(box)
