"""Escalation: an incident nobody acknowledges re-alerts every console and the station leader.

Deadlines sit in a heap, so a burst of thousands of open incidents costs O(log n) per incident
instead of a scan of all of them on every wake-up.
"""

from __future__ import annotations

import heapq
import logging
from datetime import datetime, timedelta

from config.schema import EscalationConfig
from dispatch import events as ev
from dispatch.core import Core
from dispatch.deadlines import run_deadlines
from dispatch.errors import NotFound
from dispatch.events import EventBus
from dispatch.incident_commands import IncidentCommands

log = logging.getLogger(__name__)


class Escalator:
    """Sleeps until the next deadline; a new incident wakes it to add its deadline."""

    def __init__(self, core: Core, commands: IncidentCommands, bus: EventBus, cfg: EscalationConfig) -> None:
        self.core = core
        self.commands = commands
        self.bus = bus
        self.timeout = timedelta(seconds=cfg.ack_timeout_s)
        self.max_level = cfg.max_level
        self._heap: list[tuple[datetime, int]] = []
        self.replan()

    def _due(self, opened_at: datetime, level: int) -> datetime:
        return opened_at + self.timeout * (level + 1)

    def replan(self) -> None:
        """Rebuilds the heap from the core's index of unacknowledged incidents."""
        self._heap = [(self._due(s.opened_at, s.level), i) for i, s in self.core.unacked.items()
                      if s.level < self.max_level]
        heapq.heapify(self._heap)

    def watch(self, incident_id: int) -> None:
        state = self.core.unacked.get(incident_id)
        if state is not None and state.level < self.max_level:
            heapq.heappush(self._heap, (self._due(state.opened_at, state.level), incident_id))

    async def tick(self) -> float:
        """Escalates what is due; returns seconds until the next deadline."""
        now = self.core.clock()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, incident_id = heapq.heappop(heap)
            state = self.core.unacked.get(incident_id)
            if state is None or state.level >= self.max_level:
                continue  # acknowledged or closed meanwhile, or done escalating
            due = self._due(state.opened_at, state.level)
            if due > now:  # a stale entry: its level moved on
                heapq.heappush(heap, (due, incident_id))
                continue
            try:
                await self.commands.escalate(incident_id, state.level + 1)
            except NotFound:
                self.core.unacked.pop(incident_id, None)
                continue
            self.watch(incident_id)
        return max(0.02, (heap[0][0] - now).total_seconds()) if heap else 3600.0

    async def run(self) -> None:
        with self.bus.subscribe([ev.INCIDENT_CREATED]) as wake:
            # a new incident adds its deadline; missed wake-ups re-plan from the core's index
            await run_deadlines(wake, self.tick, "escalation", woken=self._created, missed=self.replan)

    def _created(self, events: list[ev.Event]) -> None:
        for event in events:
            self.watch(event.data["incident"]["id"])
