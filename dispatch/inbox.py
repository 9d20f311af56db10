"""Routes what ingest delivers to the right part of the core, in one call per batch."""

from __future__ import annotations

from dispatch.detection_sink import DetectionSink
from dispatch.devices import DeviceMonitor
from dispatch.inputs import Actor, AgencyAckIn, AlarmIn, CoreInput, DetectionIn, DeviceStatusIn, Rejection
from dispatch.service import BadRequest, Forbidden, IncidentService, NotFound
from dispatch.state import TransitionError


class CoreInbox:
    def __init__(self, service: IncidentService, devices: DeviceMonitor, detections: DetectionSink) -> None:
        self.service = service
        self.devices = devices
        self.detections = detections

    async def handle(self, items: list[CoreInput]) -> None:
        """Commits everything in `items`; raises only if the database is unavailable (then nothing is acked)."""
        await self.service.ingest([i for i in items if isinstance(i, AlarmIn | Rejection)])
        for item in items:
            if isinstance(item, DeviceStatusIn):
                refused = await self.devices.handle(item)
                if refused is not None:
                    await self.service.reject(refused)
            elif isinstance(item, DetectionIn):
                msg = item.message
                if msg.alarm is not None:
                    await self.detections.on_detection({**(msg.record or {}), "jpeg": msg.jpeg})
                    await self.detections.submit([msg.alarm])
                elif msg.exit_event is not None:
                    await self.detections.on_hazard(msg.exit_event)
            elif isinstance(item, AgencyAckIn):
                actor = Actor(item.by, "agency", agency=item.agency)
                try:
                    await self.service.agency_update(item.dispatch_id, item.status, actor, via="mqtt")
                except (NotFound, Forbidden, BadRequest, TransitionError) as exc:
                    await self.service.reject(Rejection("mqtt", item.topic, str(exc), "", 0, item.received_at))

