"""Read-only incident queries: the console's queue (ordered by urgency) and the history search.

Pure reads on a session the caller opens; nothing here writes. The filter is a plain dataclass the edge
(console/api.py) fills from validated query parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.actor import Actor
from dispatch.models import Dispatch, Incident
from dispatch.scope import in_scope
from dispatch.state import IncidentStatus

MAX_LIMIT = 1000
STATES = ("open", "closed", "all")


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    state: str = "open"  # open | closed | all
    unit_id: str | None = None
    kind: str | None = None
    outcome: str | None = None
    since: datetime | None = None  # opened at or after
    until: datetime | None = None  # opened before
    limit: int = 200


# The queue's order (README "Queue order"): what needs the officer most comes first.
#   0  unacknowledged and escalated (the core already re-alerted and told the leader)
#   1  unacknowledged
#   2  acknowledged, nobody linked out yet (a decision is pending)
#   3  dispatched / on scene (in hand, waiting for the outcome)
#   4  closed
# Within a tier the longest-waiting (earliest opened) comes first; ties by id.
URGENCY = case(
    (and_(Incident.status == IncidentStatus.NEW, Incident.escalation_level > 0), 0),
    (Incident.status == IncidentStatus.NEW, 1),
    (Incident.status == IncidentStatus.ACKNOWLEDGED, 2),
    (Incident.status == IncidentStatus.CLOSED, 4),
    else_=3,
)


async def incident_rows(s: AsyncSession, actor: Actor, f: IncidentFilter) -> Sequence[Incident]:
    """Incidents the actor may see that match the filter.

    Open incidents come in urgency order; closed and mixed lists newest first (history).
    """
    q = select(Incident)
    if f.state == "open":
        q = q.where(Incident.status != IncidentStatus.CLOSED).order_by(URGENCY, Incident.opened_at, Incident.id)
    else:
        if f.state == "closed":
            q = q.where(Incident.status == IncidentStatus.CLOSED)
        q = q.order_by(Incident.opened_at.desc(), Incident.id.desc())
    if actor.role == "unit":
        q = q.where(Incident.unit_id == actor.unit_id)
    elif (limited := in_scope(actor, Incident.unit_id)) is not None and actor.role != "agency":
        q = q.where(limited)
    if actor.role == "agency":
        q = q.where(Incident.id.in_(select(Dispatch.incident_id).where(Dispatch.agency == actor.agency)))
    if f.unit_id is not None:
        q = q.where(Incident.unit_id == f.unit_id)
    if f.kind is not None:
        q = q.where(Incident.kind == f.kind)
    if f.outcome is not None:
        q = q.where(Incident.outcome == f.outcome)
    if f.since is not None:
        q = q.where(Incident.opened_at >= f.since)
    if f.until is not None:
        q = q.where(Incident.opened_at < f.until)
    q = q.limit(max(1, min(f.limit, MAX_LIMIT)))
    return (await s.scalars(q)).all()


async def open_counts(s: AsyncSession, actor: Actor) -> tuple[int, int]:
    """(active, unacknowledged) incidents of the actor's scope: the dashboard's two live numbers."""
    q = select(Incident.status).where(Incident.status != IncidentStatus.CLOSED)
    if (limited := in_scope(actor, Incident.unit_id)) is not None:
        q = q.where(limited)
    rows = (await s.execute(q)).all()
    return len(rows), sum(1 for (status,) in rows if status == IncidentStatus.NEW)


@dataclass(frozen=True, slots=True)
class IncidentSearch:
    """The staff search (GET /api/search): `units` are the unit ids whose name/address matched the text."""

    text: str = ""
    units: tuple[str, ...] = ()
    unit_id: str | None = None
    status: str = "all"  # all | open | one IncidentStatus value
    start: datetime | None = None  # active in [start, end): opened before end, not closed before start
    end: datetime | None = None
    limit: int = 200


async def search_incidents(s: AsyncSession, f: IncidentSearch, actor: Actor) -> Sequence[Incident]:
    """Newest first; the text matches the unit (name/address, resolved by the caller), the kind or the close note.
    Only incidents of the actor's scope."""
    q = select(Incident).order_by(Incident.id.desc()).limit(max(1, min(f.limit, MAX_LIMIT)))
    if (limited := in_scope(actor, Incident.unit_id)) is not None:
        q = q.where(limited)
    if f.unit_id:
        q = q.where(Incident.unit_id == f.unit_id)
    if f.status == "open":
        q = q.where(Incident.status != IncidentStatus.CLOSED)
    elif f.status not in ("all", ""):
        q = q.where(Incident.status == f.status)
    if f.start:
        q = q.where(or_(Incident.closed_at.is_(None), Incident.closed_at >= f.start))
    if f.end:
        q = q.where(Incident.opened_at < f.end)
    if f.text:
        q = q.where(or_(Incident.unit_id.in_(f.units), Incident.kind == f.text,
                        Incident.close_note.like(f"%{f.text}%")))
    return (await s.scalars(q)).all()
