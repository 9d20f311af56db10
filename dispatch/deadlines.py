"""The one shape of every timer in the core: do what is due, then sleep until the next deadline or a bus event.

Escalation of unacknowledged alarms, hazard deadlines and the notify outbox all run this loop; each supplies only
its `tick` (does what is due, returns seconds until the next deadline) and, where it wants them, the events that
woke it. A failing pass is logged and retried in a second; it never stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from dispatch.events import Event, Subscription

log = logging.getLogger(__name__)

RETRY_S = 1.0


async def run_deadlines(wake: Subscription, tick: Callable[[], Awaitable[float]], what: str, *,
                        woken: Callable[[list[Event]], None] | None = None,
                        missed: Callable[[], None] | None = None) -> None:
    """Runs forever (until cancelled). `woken(events)` gets every event that woke the loop (drained at once, so a
    burst costs one pass); `missed()` is called when the subscription dropped events (a full queue), so the
    owner can re-plan from its source of truth instead of trusting the events."""
    dropped = wake.dropped
    while True:
        try:
            wait = await tick()
        except Exception:
            log.exception("%s pass failed", what)
            wait = RETRY_S
        if wait <= 0:
            continue
        try:
            first = await asyncio.wait_for(wake.get(), wait)
        except TimeoutError:
            continue
        events = [first]
        while (event := wake.get_nowait()) is not None:
            events.append(event)
        if woken is not None:
            woken(events)
        if missed is not None and wake.dropped != dropped:
            dropped = wake.dropped
            missed()
