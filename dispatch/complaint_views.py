"""The complaints' read side: the triage queue of the stations an officer sees (dispatch.scope), an assistant's
own reports, one report and its photo, the public status behind a receipt, and a unit's name for the public page.

Every read filters by who asks: officers by `Core.scope(actor)` (a report's `station_id`), assistants by their own
login, the public by the receipt alone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from dispatch.actor import Actor
from dispatch.complaint_models import Complaint, ComplaintPhoto
from dispatch.complaint_rows import (
    ACCEPTED,
    RECEIVED,
    REJECTED,
    normalise_receipt,
    officer_view,
    own_view,
    public_view,
)
from dispatch.core import Core
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.hazard_models import Hazard
from dispatch.scope import stations_seen

ASSISTANT = "assistant"
QUEUE_STATES = {"new": (RECEIVED,), "accepted": (ACCEPTED,), "rejected": (REJECTED,),
                "all": (RECEIVED, ACCEPTED, REJECTED)}


class ComplaintViews:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _station_name(self, station_id: str) -> str:
        org = self.core.orgs.orgs.get(station_id)
        return org.name if org else station_id

    async def _hazards(self, rows: list[Complaint]) -> dict[int, Hazard]:
        ids = [c.hazard_id for c in rows if c.hazard_id is not None]
        if not ids:
            return {}
        async with self.core.db.session() as s:
            return {h.id: h for h in (await s.scalars(select(Hazard).where(Hazard.id.in_(ids)))).all()}

    async def queue(self, actor: Actor, state: str = "new", limit: int = 200) -> list[dict[str, Any]]:
        """Officers: the reports of the stations they see, oldest new one first (new) or newest first (else).
        An assistant: its own reports, newest first, whatever `state`."""
        if state not in QUEUE_STATES:
            raise BadRequest(f"state must be one of {sorted(QUEUE_STATES)}")
        query = select(Complaint)
        if actor.role == ASSISTANT:
            query = query.where(Complaint.source == ASSISTANT, Complaint.reporter == actor.username)
            query = query.order_by(Complaint.id.desc())
        else:
            scope = self.core.scope(actor)
            if scope.role == "unit":
                raise Forbidden("units do not see the triage queue")
            query = query.where(Complaint.station_id.in_(sorted(stations_seen(scope))),
                                Complaint.status.in_(QUEUE_STATES[state]))
            query = query.order_by(Complaint.id.asc() if state == "new" else Complaint.id.desc())
        query = query.limit(max(1, min(limit, 1000)))
        async with self.core.db.session() as s:
            rows = list((await s.scalars(query)).all())
            photos = set((await s.scalars(select(ComplaintPhoto.complaint_id).where(
                ComplaintPhoto.complaint_id.in_([c.id for c in rows])))).all()) if rows else set()
        hazards = await self._hazards(rows)
        if actor.role == ASSISTANT:
            return [own_view(c, hazards.get(c.hazard_id or 0), self.core.units) for c in rows]
        return [officer_view(c, hazards.get(c.hazard_id or 0), self.core.units, self._station_name(c.station_id),
                             c.id in photos) for c in rows]

    async def _visible(self, complaint_id: int, actor: Actor) -> Complaint:
        async with self.core.db.session() as s:
            c = await s.get(Complaint, complaint_id)
        if c is None:
            raise NotFound(f"complaint {complaint_id} not found")
        if actor.role == ASSISTANT:
            if c.source != ASSISTANT or c.reporter != actor.username:
                raise Forbidden("assistants see only their own reports")
        elif not self.core.scope(actor).sees_station(c.station_id):
            raise Forbidden("the report is in another station's triage queue")
        return c

    async def detail(self, complaint_id: int, actor: Actor) -> dict[str, Any]:
        c = await self._visible(complaint_id, actor)
        hazard = (await self._hazards([c])).get(c.hazard_id or 0)
        if actor.role == ASSISTANT:
            return own_view(c, hazard, self.core.units)
        async with self.core.db.session() as s:
            has_photo = await s.scalar(select(ComplaintPhoto.id).where(ComplaintPhoto.complaint_id == c.id))
        return officer_view(c, hazard, self.core.units, self._station_name(c.station_id), has_photo is not None)

    async def photo(self, complaint_id: int, actor: Actor) -> tuple[bytes, str, str]:
        """(bytes, content type, SHA-256) of the report's photo as stored."""
        await self._visible(complaint_id, actor)
        async with self.core.db.session() as s:
            p = (await s.execute(select(ComplaintPhoto.data, ComplaintPhoto.content_type, ComplaintPhoto.sha256)
                                 .where(ComplaintPhoto.complaint_id == complaint_id))).first()
        if p is None:
            raise NotFound(f"complaint {complaint_id} has no photo")
        return p.data, p.content_type, p.sha256

    async def public_status(self, receipt: str) -> dict[str, Any]:
        """Where the report behind `receipt` stands (NotFound for a code that names none)."""
        code = normalise_receipt(receipt)
        if code is None:
            raise BadRequest("a receipt is 10 letters and digits, e.g. K7QH3-M9TRW")
        async with self.core.db.session() as s:
            c = await s.scalar(select(Complaint).where(Complaint.receipt == code))
            if c is None:
                raise NotFound("no report has this receipt")
            hazard = await s.get(Hazard, c.hazard_id) if c.hazard_id is not None else None
        return public_view(c, hazard)

    def public_unit(self, unit_id: str) -> dict[str, Any]:
        """The name of a unit for the public page reached by its QR code (nothing else of the registry)."""
        unit = self.core.units.get(unit_id)
        if unit is None or unit.retired_at is not None:
            raise NotFound(f"unknown unit {unit_id!r}")
        return {"id": unit.id, "name": unit.name}
