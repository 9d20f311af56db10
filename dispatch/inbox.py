"""Routes what ingest delivers to the right part of the core, in one call per batch.

Input the core refuses (unknown device, dispatch not found, another agency's dispatch, a hazard for an
unknown unit) becomes a stored rejection in the same call: refusing is cheap and never fails the batch.
Only an unexpected error (the database gone, a bug) is reported back, per message, so the MQTT link can
retry exactly those and quarantine a message that keeps failing on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select

from dispatch.actor import Actor
from dispatch.complaints import Complaints
from dispatch.detection_sink import DetectionSink
from dispatch.devices import DeviceMonitor
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.incidents import Incidents
from dispatch.models import IntakeAttempt
from dispatch.state import TransitionError
from dispatch.writer import Writer
from ingest.contract import (
    AgencyAckIn,
    AlarmIn,
    ComplaintIn,
    CoreInput,
    DetectionIn,
    DeviceStatusIn,
    Rejection,
    utcnow,
)
from ingest.payloads import excerpt

log = logging.getLogger(__name__)

REFUSED = (NotFound, Forbidden, BadRequest, TransitionError)


class CoreInbox:
    def __init__(self, incidents: Incidents, devices: DeviceMonitor, detections: DetectionSink,
                 complaints: Complaints | None = None) -> None:
        self.incidents = incidents
        self.devices = devices
        self.detections = detections
        self.complaints = complaints  # the 96119 hotline's complaints (None: that input is off)
        self.journal = IntakeJournal(incidents.core.writer)

    async def handle(self, items: list[CoreInput]) -> dict[int, Exception]:
        """Commits everything in `items`. Raises if the alarms of the batch could not be committed (then
        nothing of it counts as done); otherwise returns the positions of the other messages that failed
        unexpectedly, and of those not tried after the first such failure (the database may be down)."""
        await self.incidents.intake.ingest([i for i in items if isinstance(i, AlarmIn | Rejection)])
        refused: list[Rejection] = []
        failed: dict[int, Exception] = {}
        for n, item in enumerate(items):
            if isinstance(item, AlarmIn):
                await self._heard_from(item)
                continue
            if isinstance(item, Rejection):
                continue
            if failed:
                failed[n] = failed[min(failed)]
                continue
            try:
                rejection = await self._one(item)
            except Exception as exc:
                log.warning("%s could not be handled: %s: %s", type(item).__name__, type(exc).__name__, exc)
                failed[n] = exc
                continue
            if rejection is not None:
                refused.append(rejection)
        if refused:
            try:
                await self.incidents.intake.ingest(refused)  # one transaction for all of them
            except Exception as exc:
                failed.update((n, exc) for n, item in enumerate(items) if not isinstance(item, AlarmIn | Rejection))
        return failed

    async def _heard_from(self, alarm: AlarmIn) -> None:
        """The alarm is committed; that its device is alive is a side note that must not fail the batch."""
        try:
            await self.devices.alarm_from(alarm.device_id, alarm.received_at)
        except Exception as exc:
            log.warning("device %r liveness not updated: %s: %s", alarm.device_id, type(exc).__name__, exc)

    async def _one(self, item: CoreInput) -> Rejection | None:
        if isinstance(item, DeviceStatusIn):
            return await self.devices.handle(item)
        if isinstance(item, DetectionIn):
            try:
                await self.detections.handle(item.event)
            except REFUSED as exc:
                return Rejection("mqtt", item.topic, str(exc), "", 0, item.received_at)
            return None
        if isinstance(item, ComplaintIn):
            if self.complaints is None:
                text = item.description.encode()
                return Rejection("mqtt", item.topic, "the hotline's MQTT intake is off (complaints.hotline.mqtt)",
                                 excerpt(text), len(text), item.received_at)
            try:
                await self.complaints.file(item)
            except REFUSED as exc:
                text = item.description.encode()
                return Rejection("mqtt", item.topic, str(exc), excerpt(text), len(text), item.received_at)
            return None
        if isinstance(item, AgencyAckIn):
            actor = Actor(item.by, "agency", agency=item.agency)
            try:
                await self.incidents.deliveries.agency_update(item.dispatch_id, item.status, actor, via="mqtt")
            except REFUSED as exc:
                return Rejection("mqtt", item.topic, str(exc), "", 0, item.received_at)
        return None


class IntakeJournal:
    """How often each redelivered MQTT message was tried (ingest.mqtt_link.AttemptJournal), in the database so
    it survives the process. Written only for messages the broker sends again after a restart."""

    KEEP = timedelta(days=7)

    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    async def attempt(self, keys: Sequence[str], solo: bool) -> dict[str, tuple[int, int]]:
        wanted = list(dict.fromkeys(keys))
        before: dict[str, tuple[int, int]] = {}
        now = utcnow()
        async with self.writer.tx() as tx:
            s = tx.session
            rows = {r.key: r for r in (await s.scalars(select(IntakeAttempt)
                                                       .where(IntakeAttempt.key.in_(wanted)))).all()}
            for key in wanted:
                row = rows.get(key)
                if row is None:
                    row = IntakeAttempt(key=key, tries=0, tries_alone=0, updated_at=now)
                    s.add(row)
                before[key] = (row.tries, row.tries_alone)
                row.tries += 1
                row.tries_alone += 1 if solo else 0
                row.updated_at = now
        return before

    async def forget(self, keys: Sequence[str]) -> None:
        async with self.writer.tx() as tx:
            await tx.session.execute(delete(IntakeAttempt).where(IntakeAttempt.key.in_(list(set(keys)))))
            await tx.session.execute(delete(IntakeAttempt).where(IntakeAttempt.updated_at < utcnow() - self.KEEP))
