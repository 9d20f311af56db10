"""Hazard deadlines: what happens when a rectification notice's deadline passes, and the scheduler that sleeps
until the next one.

At the deadline: a camera recheck if the hazard is camera-visible and a camera callable is wired (rectified →
closed, not → penalty); without a camera result: recheck_due — an officer rechecks (到期复查), with or without the
unit's proof. No penalty is ever proposed without a failed recheck at or after the deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from dispatch import events as ev
from dispatch.actor import SYSTEM, Actor
from dispatch.deadlines import run_deadlines
from dispatch.events import EventBus
from dispatch.hazard_cases import HazardCases
from dispatch.hazard_context import HazardContext
from dispatch.hazard_models import Hazard
from dispatch.hazard_rows import get_hazard
from dispatch.hazard_uploads import Upload
from dispatch.hazards import RECHECK_DUE
from dispatch.penalties import Penalties
from dispatch.state import UNDER_NOTICE, HazardStatus
from dispatch.views import iso

log = logging.getLogger(__name__)

CAMERA = Actor("camera", "system")

# recheck_by_camera(hazard view) -> (rectified, snapshot JPEG) or None (no camera result: an officer rechecks)
CameraRecheck = Callable[[dict[str, Any]], Awaitable[tuple[bool, bytes] | None]]


async def no_camera(_hazard: dict[str, Any]) -> tuple[bool, bytes] | None:
    return None


class HazardDeadlines:
    def __init__(self, ctx: HazardContext, cases: HazardCases, penalties: Penalties,
                 recheck_by_camera: CameraRecheck = no_camera) -> None:
        self.ctx = ctx
        self.cases = cases
        self.penalties = penalties
        self.recheck_by_camera = recheck_by_camera  # set by the composition root once detectors run

    async def due(self, now: datetime) -> tuple[list[int], datetime | None]:
        """Hazards whose deadline has passed and still wait for it to be handled; and the next deadline."""
        async with self.ctx.writer.db.session() as s:
            rows = (await s.execute(select(Hazard.id, Hazard.deadline).where(
                Hazard.status.in_(UNDER_NOTICE), Hazard.deadline.is_not(None)))).all()
        due = [hid for hid, dl in rows if dl is not None and dl <= now]
        later: list[datetime] = [dl for _, dl in rows if dl is not None and dl > now]
        return due, min(later) if later else None

    async def process_deadline(self, hazard_id: int) -> dict[str, Any] | None:
        """At the deadline: camera recheck if possible; else an officer's recheck is due (no penalty without one)."""
        ctx = self.ctx
        async with ctx.writer.db.session() as s:
            h0 = await get_hazard(s, hazard_id)
            if h0.status not in UNDER_NOTICE or h0.deadline is None or h0.deadline > ctx.clock():
                return None
            view0 = ctx.view(h0)
        result: tuple[bool, bytes] | None = None
        if h0.camera_visible:
            try:
                result = await self.recheck_by_camera(view0)  # outside the writer lock: may take seconds
            except Exception:
                log.exception("camera recheck of hazard %s failed", hazard_id)
                result = None
        async with ctx.writer.tx() as tx:
            h = await get_hazard(tx.session, hazard_id)
            if h.status not in UNDER_NOTICE:
                return None  # an officer acted meanwhile
            now = ctx.clock()
            if result is not None:
                rectified, jpeg = result
                photos = [Upload("camera-recheck.jpg", "image/jpeg", jpeg)] if jpeg else []
                return await self.cases.apply_recheck(tx, h, "camera", rectified, "自动视频复查", CAMERA, photos)
            h.status = HazardStatus.RECHECK_DUE
            ctx.record(tx, h, RECHECK_DUE, SYSTEM, now,
                       {"deadline": iso(h.deadline), "proof": h0.status == HazardStatus.PROOF_SUBMITTED})
            return ctx.emit(tx, h)


class HazardScheduler:
    """Sleeps until the next deadline (like dispatch.escalation); any hazard change wakes it to re-plan."""

    def __init__(self, deadlines: HazardDeadlines, bus: EventBus) -> None:
        self.deadlines = deadlines
        self.bus = bus

    async def tick(self) -> float:
        clock = self.deadlines.ctx.clock
        due, nxt = await self.deadlines.due(clock())
        for hid in due:
            try:
                await self.deadlines.process_deadline(hid)
            except Exception:
                log.exception("deadline handling of hazard %s failed", hid)
        if nxt is None:
            return 3600.0
        return max(0.02, (nxt - clock()).total_seconds())

    async def run(self) -> None:
        with self.bus.subscribe([ev.HAZARD_UPDATED]) as wake:  # any change re-plans (one pass per burst)
            await run_deadlines(wake, self.tick, "hazard deadline")
