"""Read side of incidents: the queue, an incident's detail with its timeline, units, an agency's dispatch queue,
refused input. Pure reads; nothing here writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from dispatch import records as rec
from dispatch.actor import Actor
from dispatch.core import Core
from dispatch.errors import BadRequest
from dispatch.models import (
    Alarm,
    Dispatch,
    Incident,
    Message,
    RecordEntry,
    RejectedMessage,
)
from dispatch.queries import STATES, IncidentFilter, incident_rows
from dispatch.scope import in_scope
from dispatch.state import (
    IncidentStatus,
)
from dispatch.views import (
    alarm_view,
    dispatch_view,
    incident_view,
    message_view,
    record_view,
    rejection_view,
    unit_view,
)


class IncidentViews:
    """What the console shows of incidents; reads only."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def list_incidents(self, actor: Actor, state: str | IncidentFilter = "open",
                             limit: int = 200) -> list[dict[str, Any]]:
        """Open incidents in urgency order, or the history (closed / all) newest first, filtered."""
        f = state if isinstance(state, IncidentFilter) else IncidentFilter(state=state, limit=limit)
        if f.state not in STATES:
            raise BadRequest("state must be open, closed or all")
        async with self.core.db.session() as s:
            rows = await incident_rows(s, actor, f)
            disp = await self.core.dispatches_for(s, [r.id for r in rows])
            return [incident_view(r, self.core.units[r.unit_id], disp.get(r.id, [])) for r in rows]

    async def incident_detail(self, incident_id: int, actor: Actor) -> dict[str, Any]:
        async with self.core.db.session() as s:
            inc = await self.core.incident(s, incident_id)
            dispatches = (await self.core.dispatches_for(s, [inc.id])).get(inc.id, [])
            self.core.check_visible(actor, inc.unit_id, {d.agency for d in dispatches})
            alarms = (await s.scalars(select(Alarm).where(Alarm.incident_id == inc.id).order_by(Alarm.id))).all()
            entries = (await s.scalars(select(RecordEntry).where(RecordEntry.incident_id == inc.id)
                                       .order_by(RecordEntry.id))).all()
            messages = (await s.scalars(select(Message).where(Message.incident_id == inc.id)
                                        .order_by(Message.id))).all()
            # the unit's incidents before this one (a later one is not this alarm's history)
            history = await s.scalar(select(func.count(Incident.id)).where(Incident.unit_id == inc.unit_id,
                                                                            Incident.id < inc.id))
            view = incident_view(inc, self.core.units[inc.unit_id], dispatches)
            view.update(
                alarms=[alarm_view(a) for a in alarms],
                timeline=[record_view(e) for e in entries],
                messages=[message_view(m) for m in messages],
                response_times=rec.response_times(entries),
                unit_incident_count=history or 0,
            )
            if actor.role == "agency":
                view["dispatches"] = [d for d in view["dispatches"] if d["agency"] == actor.agency]
            return view

    async def list_dispatches(self, actor: Actor, state: str = "open") -> list[dict[str, Any]]:
        async with self.core.db.session() as s:
            q = select(Dispatch, Incident).join(Incident, Incident.id == Dispatch.incident_id)
            q = q.order_by(Dispatch.id.desc()).limit(500)
            if actor.role == "agency":
                q = q.where(Dispatch.agency == actor.agency)
            elif (limited := in_scope(actor, Incident.unit_id)) is not None:
                q = q.where(limited)
            if state == "open":
                q = q.where(Incident.status != IncidentStatus.CLOSED)
            elif state != "all":
                raise BadRequest("state must be open or all")
            out = []
            for d, inc in (await s.execute(q)).all():
                view = dispatch_view(d)
                view["incident"] = {"id": inc.id, "kind": inc.kind, "status": inc.status,
                                    "opened_at": inc.opened_at.isoformat(),
                                    "unit": unit_view(self.core.units[inc.unit_id])}
                out.append(view)
            return out

    async def list_rejections(self, limit: int = 100) -> dict[str, Any]:
        async with self.core.db.session() as s:
            rows = (await s.scalars(select(RejectedMessage).order_by(RejectedMessage.id.desc())
                                    .limit(max(1, min(limit, 1000))))).all()
            total = await s.scalar(select(func.count(RejectedMessage.id)))
        return {"total": total or 0, "counters": dict(self.core.counters), "items": [rejection_view(r) for r in rows]}
