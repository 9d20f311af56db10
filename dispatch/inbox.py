"""Routes what ingest delivers to the right part of the core, in one call per batch."""

from __future__ import annotations

from dispatch.devices import DeviceMonitor
from dispatch.inputs import SYSTEM, Actor, AgencyAckIn, AlarmIn, CoreInput, DeviceStatusIn, Rejection
from dispatch.service import BadRequest, Forbidden, IncidentService, NotFound
from dispatch.state import TransitionError


class CoreInbox:
    def __init__(self, service: IncidentService, devices: DeviceMonitor) -> None:
        self.service = service
        self.devices = devices

    async def handle(self, items: list[CoreInput]) -> None:
        """Commits everything in `items`; raises only if the database is unavailable (then nothing is acked)."""
        await self.service.ingest([i for i in items if isinstance(i, AlarmIn | Rejection)])
        for item in items:
            if isinstance(item, DeviceStatusIn):
                refused = await self.devices.handle(item)
                if refused is not None:
                    await self.service.reject(refused)
            elif isinstance(item, AgencyAckIn):
                actor = Actor(item.by, "agency", agency=item.agency)
                try:
                    await self.service.agency_update(item.dispatch_id, item.status, actor)
                except (NotFound, Forbidden, BadRequest, TransitionError) as exc:
                    await self.service.reject(Rejection("mqtt", item.topic, str(exc), "", 0, item.received_at))


__all__ = ["SYSTEM", "CoreInbox"]
