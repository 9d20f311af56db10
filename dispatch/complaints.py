"""Complaint commands (投诉举报): a report is filed into the triage queue of its station, then accepted into a
hazard or rejected with a reason. Each command is one transaction through the core's Writer, with its record entry
(complaint.received / complaint.accepted / complaint.rejected) and a live event to the station's consoles.

Reads are `complaint_views.py`; the three views and the receipt codes `complaint_rows.py`; the routing rule
`complaint_routing.py`; the photo's re-encoding `complaint_photo.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from config.complaints import ComplaintsConfig
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.complaint_models import Complaint, ComplaintPhoto
from dispatch.complaint_photo import Photo
from dispatch.complaint_routing import route
from dispatch.complaint_rows import (
    ACCEPTED,
    COMPLAINT_ACCEPTED,
    COMPLAINT_RECEIVED,
    COMPLAINT_REJECTED,
    RECEIVED,
    REJECTED,
    SOURCES,
    new_receipt,
    officer_view,
    shown_receipt,
)
from dispatch.core import Core
from dispatch.db import locks_rows
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.events import Event
from dispatch.hazard_cases import HazardCases
from dispatch.hazard_models import Hazard
from dispatch.hazard_uploads import Upload
from dispatch.state import TransitionError
from dispatch.views import iso
from dispatch.writer import Tx
from ingest.contract import ComplaintIn, check_text

MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class Filed:
    """A report in the queue: its receipt (as printed), its id, and whether it was there already (a hotline ticket
    sent again)."""

    receipt: str
    complaint_id: int
    duplicate: bool = False


class Complaints:
    def __init__(self, core: Core, hazards: HazardCases, cfg: ComplaintsConfig,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.core = core
        self.hazards = hazards
        self.cfg = cfg
        self.clock = clock or core.clock

    # ------------------------------------------------------------ filing

    def _checked(self, c: ComplaintIn) -> None:
        """BadRequest for what the edge models cannot say: lengths from the configuration, an unknown or retired
        unit, half a position."""
        if c.source not in SOURCES:
            raise BadRequest(f"source must be one of {SOURCES}")
        text = c.description.strip()
        if len(text) < self.cfg.min_description_chars:
            raise BadRequest(f"describe the hazard in at least {self.cfg.min_description_chars} characters")
        if len(text) > self.cfg.max_description_chars:
            raise BadRequest(f"the description has {len(text)} characters; at most "
                             f"{self.cfg.max_description_chars} are taken")
        for value in (c.description, c.address, c.facility, c.contact_phone):
            try:
                check_text(value)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
        if (c.lat is None) != (c.lon is None):
            raise BadRequest("give both lat and lon, or neither")
        if c.unit_id is not None:
            unit = self.core.units.get(c.unit_id)
            if unit is None or unit.retired_at is not None:
                raise BadRequest(f"unknown unit {c.unit_id!r}")
        elif c.facility:
            raise BadRequest("a facility code belongs to a unit: give unit_id too")

    async def file(self, c: ComplaintIn, photo: Photo | None = None, *, actor: Actor | None = None) -> Filed:
        """Files a report (the photo already re-encoded). A hotline ticket already filed returns that report."""
        self._checked(c)
        if c.source == "hotline" and not c.reporter:
            c = replace(c, reporter=self.cfg.hotline.name)
        unit = self.core.units.get(c.unit_id) if c.unit_id else None
        where = route(self.core.units.values(), self.core.cfg.station.id, unit=unit, lat=c.lat, lon=c.lon,
                      within_m=self.cfg.route_within_m)
        who = actor or Actor(c.reporter or c.source, c.source)
        for _ in range(3):  # a receipt drawn twice (about once in 10^14) is drawn again
            try:
                return await self._insert(c, photo, where.station_id, where.routed_by, where.distance_m, who)
            except IntegrityError:
                if c.ticket is not None:
                    existing = await self._by_ticket(c.ticket)
                    if existing is not None:
                        return existing
        raise RuntimeError("could not draw a free receipt code")

    async def _by_ticket(self, ticket: str) -> Filed | None:
        async with self.core.db.session() as s:
            row = await s.scalar(select(Complaint).where(Complaint.ticket == ticket))
        return Filed(shown_receipt(row.receipt), row.id, True) if row is not None else None

    async def _insert(self, c: ComplaintIn, photo: Photo | None, station_id: str, routed_by: str,
                      distance_m: float | None, who: Actor) -> Filed:
        async with self.core.writer.tx() as tx:
            s = tx.session
            if c.ticket is not None:
                known = await s.scalar(select(Complaint).where(Complaint.ticket == c.ticket))
                if known is not None:
                    return Filed(shown_receipt(known.receipt), known.id, True)
            row = Complaint(receipt=new_receipt(), source=c.source, status=RECEIVED, description=c.description.strip(),
                            lat=c.lat, lon=c.lon, address=c.address, unit_id=c.unit_id, facility=c.facility,
                            contact_phone=c.contact_phone, station_id=station_id, routed_by=routed_by,
                            reporter=c.reporter, ticket=c.ticket, received_at=c.received_at, reject_reason="")
            s.add(row)
            await s.flush()
            if photo is not None:
                s.add(ComplaintPhoto(complaint_id=row.id, content_type=photo.content_type, width=photo.width,
                                     height=photo.height, size=len(photo.data), sha256=photo.sha256,
                                     data=photo.data))
            # the reporter's phone is not recorded: it lives in the row, for the triage officers only
            self.core.writer.record(tx, COMPLAINT_RECEIVED, who, c.received_at, {
                "complaint_id": row.id, "source": c.source, "station_id": station_id, "routed_by": routed_by,
                "distance_m": distance_m, "unit_id": c.unit_id, "facility": c.facility or None,
                "lat": c.lat, "lon": c.lon, "address": c.address, "description": row.description,
                "ticket": c.ticket, "reported_at": iso(c.reported_at),
                "photo_sha256": photo.sha256 if photo is not None else None})
            self._emit(tx, ev.ComplaintReceived, row, None, photo is not None)
            return Filed(shown_receipt(row.receipt), row.id)

    # ------------------------------------------------------------ triage

    async def accept(self, complaint_id: int, actor: Actor, *, category: str, unit_id: str | None = None,
                     severity: str | None = None, description: str | None = None,
                     attach_photo: bool = True) -> dict[str, Any]:
        """The report becomes a hazard of `unit_id` (default: the report's unit) in the same transaction; its
        photo (unless `attach_photo` is false) becomes the hazard's "before" evidence."""
        target = unit_id or None
        async with self.core.writer.tx() as tx:
            c = await self._for_triage(tx, complaint_id, actor)
            target = target or c.unit_id
            if target is None:
                raise BadRequest("the report names no unit: choose the unit the hazard belongs to")
            unit = self.core.units.get(target)
            if unit is None or unit.retired_at is not None:
                raise BadRequest(f"unknown unit {target!r}")
            if not self.core.scope(actor).sees_station(unit.station_id):
                raise Forbidden("the unit belongs to a station outside your organisation")
            photos = []
            if attach_photo:
                p = (await tx.session.execute(select(ComplaintPhoto.content_type, ComplaintPhoto.data)
                                              .where(ComplaintPhoto.complaint_id == c.id))).first()
                if p is not None:
                    photos.append(Upload(f"complaint-{c.id}.jpg", p.content_type, p.data))
            text = (description if description is not None and description.strip() else c.description).strip()
            hazard, hazard_view = await self.hazards.create_in(
                tx, unit_id=target, category=category, source="complaint", actor=actor, description=text,
                severity=severity, lat=c.lat, lon=c.lon, photos=photos, found_at=c.received_at)
            now = self.clock()
            c.status, c.triaged_at, c.triaged_by, c.hazard_id = ACCEPTED, now, actor.username, hazard.id
            self.core.writer.record(tx, COMPLAINT_ACCEPTED, actor, now, {
                "complaint_id": c.id, "station_id": c.station_id, "unit_id": target, "hazard_id": hazard.id,
                "category": category, "received_at": iso(c.received_at)})
            view = self._emit(tx, ev.ComplaintUpdated, c, hazard, await self._has_photo(tx, c.id))
            return {"complaint": view, "hazard": hazard_view}

    async def reject(self, complaint_id: int, actor: Actor, reason: str) -> dict[str, Any]:
        """Closes the report without a hazard; the reason is what the reporter reads behind the receipt."""
        text = reason.strip()
        if len(text) < 2:
            raise BadRequest("give the reason the report is rejected (the reporter reads it)")
        if len(text) > MAX_REASON:
            raise BadRequest(f"the reason has at most {MAX_REASON} characters")
        try:
            check_text(text)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        async with self.core.writer.tx() as tx:
            c = await self._for_triage(tx, complaint_id, actor)
            now = self.clock()
            c.status, c.triaged_at, c.triaged_by, c.reject_reason = REJECTED, now, actor.username, text
            self.core.writer.record(tx, COMPLAINT_REJECTED, actor, now, {
                "complaint_id": c.id, "station_id": c.station_id, "unit_id": c.unit_id, "reason": text,
                "received_at": iso(c.received_at)})
            return self._emit(tx, ev.ComplaintUpdated, c, None, await self._has_photo(tx, c.id))

    async def _for_triage(self, tx: Tx, complaint_id: int, actor: Actor) -> Complaint:
        c = await tx.session.get(Complaint, complaint_id, with_for_update=locks_rows(tx.session))
        if c is None:
            raise NotFound(f"complaint {complaint_id} not found")
        if not self.core.scope(actor).sees_station(c.station_id):
            raise Forbidden("the report is in another station's triage queue")
        if c.status != RECEIVED:
            raise TransitionError(f"the report was {c.status} already")
        return c

    @staticmethod
    async def _has_photo(tx: Tx, complaint_id: int) -> bool:
        found = await tx.session.scalar(select(ComplaintPhoto.id).where(ComplaintPhoto.complaint_id == complaint_id))
        return found is not None

    def _emit(self, tx: Tx, kind: type[ev.ComplaintReceived] | type[ev.ComplaintUpdated], c: Complaint,
              hazard: Hazard | None, has_photo: bool) -> dict[str, Any]:
        org = self.core.orgs.orgs.get(c.station_id)
        view = officer_view(c, hazard, self.core.units, org.name if org else c.station_id, has_photo)
        tx.events.append(Event.of(kind(complaint=view, station_id=c.station_id)))
        return view
