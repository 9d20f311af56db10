"""Escalation: an incident nobody acknowledges re-alerts every console and the station leader."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from config.schema import EscalationConfig
from dispatch import events as ev
from dispatch.events import EventBus
from dispatch.service import IncidentService, NotFound

log = logging.getLogger(__name__)


class Escalator:
    """Sleeps until the next deadline; a new incident wakes it to re-plan."""

    def __init__(self, service: IncidentService, bus: EventBus, cfg: EscalationConfig) -> None:
        self.service = service
        self.bus = bus
        self.timeout = timedelta(seconds=cfg.ack_timeout_s)
        self.max_level = cfg.max_level

    def _due(self, opened_at: datetime, level: int) -> datetime:
        return opened_at + self.timeout * (level + 1)

    async def tick(self) -> float:
        """Escalates what is due; returns seconds until the next deadline."""
        now = self.service.clock()
        next_wait = 3600.0
        for incident_id, state in list(self.service.unacked.items()):
            if state.level >= self.max_level:
                continue
            due = self._due(state.opened_at, state.level)
            if due <= now:
                try:
                    await self.service.escalate(incident_id, state.level + 1)
                except NotFound:
                    self.service.unacked.pop(incident_id, None)
                    continue
                due = self._due(state.opened_at, state.level + 1)
            next_wait = min(next_wait, (due - now).total_seconds())
        return max(0.02, next_wait)

    async def run(self) -> None:
        with self.bus.subscribe([ev.INCIDENT_CREATED]) as wake:
            while True:
                try:
                    wait = await self.tick()
                except Exception:
                    log.exception("escalation pass failed")
                    wait = 1.0
                try:
                    await asyncio.wait_for(wake.get(), wait)
                except TimeoutError:
                    pass
