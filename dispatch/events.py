"""The one publish/subscribe interface inside the core.

MQTT ingest publishes into it, the dispatch core publishes state changes
out of it, and the WebSocket console, the notify worker, the escalation
timer and the camera layer subscribe to it. Event names are the same
strings everywhere: on the bus, on the WebSocket (`type`) and in docs.

Publishing never blocks: each subscriber owns a bounded queue, and a
subscriber that falls behind loses its oldest events (counted in
`dropped`) instead of slowing the core or the other subscribers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Event names. Keep this list the single source; docs/events.md mirrors it.
ALARM_RECEIVED = "alarm.received"
ALARM_REJECTED = "alarm.rejected"
INCIDENT_CREATED = "incident.created"
INCIDENT_UPDATED = "incident.updated"
INCIDENT_ESCALATED = "incident.escalated"
INCIDENT_MESSAGE = "incident.message"
DISPATCH_UPDATED = "dispatch.updated"
OUTBOX_PENDING = "outbox.pending"
DEVICE_UPDATED = "device.updated"
HAZARD_UPDATED = "hazard.updated"
EXIT_ZONE_CHANGED = "exit_zone.changed"
EXIT_ZONE_APPLIED = "exit_zone.applied"
DETECTOR_MASK_CHANGED = "detector_mask.changed"
DETECTOR_MASK_APPLIED = "detector_mask.applied"
HEALTH_UPDATED = "health.updated"  # data: {"data": <the /healthz body>}

ALL_EVENTS = frozenset(
    {
        ALARM_RECEIVED,
        ALARM_REJECTED,
        INCIDENT_CREATED,
        INCIDENT_UPDATED,
        INCIDENT_ESCALATED,
        INCIDENT_MESSAGE,
        DISPATCH_UPDATED,
        OUTBOX_PENDING,
        DEVICE_UPDATED,
        HAZARD_UPDATED,
        EXIT_ZONE_CHANGED,
        EXIT_ZONE_APPLIED,
        DETECTOR_MASK_CHANGED,
        DETECTOR_MASK_APPLIED,
        HEALTH_UPDATED,
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `data` is JSON-ready (what the WebSocket sends)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **self.data}


class Subscription:
    """A bounded, drop-oldest queue of events for one consumer."""

    def __init__(self, bus: EventBus, types: frozenset[str] | None, maxsize: int) -> None:
        self._bus = bus
        self.types = types
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if self.types is not None and event.type not in self.types:
            return
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self.dropped += 1

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        self._bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """In-process fan-out. Must be used from the event loop's thread."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []

    def subscribe(self, types: Iterable[str] | None = None, maxsize: int = 10_000) -> Subscription:
        wanted = frozenset(types) if types is not None else None
        if wanted is not None:
            unknown = wanted - ALL_EVENTS
            if unknown:
                raise ValueError(f"unknown event types: {sorted(unknown)}")
        sub = Subscription(self, wanted, maxsize)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: Event) -> None:
        if event.type not in ALL_EVENTS:
            raise ValueError(f"unknown event type {event.type!r}")
        for sub in list(self._subs):
            sub.offer(event)
