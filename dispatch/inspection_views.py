"""The read side of typed inspections: lists and details within the actor's scope, photos and signatures checked
against their recorded SHA-256, and the data the 消防监督检查记录 is printed from.

Pure reads on their own sessions; the commands are `inspections.py`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from config.hazards import HazardsConfig
from config.taxonomy import shipped_taxonomy
from dispatch.actor import Actor
from dispatch.db import Database
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.hazard_models import Hazard
from dispatch.hazard_rows import check_visible, hazard_view
from dispatch.inspection_models import Inspection, InspectionPhoto
from dispatch.models import RecordEntry, Unit
from dispatch.scope import stations_seen
from dispatch.state import IN_RECTIFICATION
from dispatch.views import iso, unit_view
from ingest.integrity import IntegrityError, sha256_bytes

log = logging.getLogger(__name__)

KIND_NAMES = {"daily": "日常消防监督检查", "pre_opening": "开业前消防安全检查", "recheck": "复查"}
RESULT_NAMES = {"pass": "合格", "fail": "不合格", "na": "不适用"}
PHOTO_RECEIVED = "inspection.photo_received"  # (dispatch.inspections records it; named here for the check)


def unit_snapshot(u: Unit) -> dict[str, Any]:
    """The unit as the record prints it, fixed when inspected (a later registry edit does not change the record)."""
    kind = shipped_taxonomy().types().get(u.unit_type)
    return {"name": u.name, "address": u.address, "unit_type": u.unit_type,
            "unit_type_name": kind[1].zh if kind else u.category, "credit_code": u.credit_code or "",
            "contact_name": u.contact_name, "contact_phone": u.contact_phone,
            "safety_manager_name": u.safety_manager_name or "", "safety_manager_phone": u.safety_manager_phone or ""}


def photo_view(p: InspectionPhoto) -> dict[str, Any]:
    return {"id": p.id, "client_id": p.client_id, "unit_id": p.unit_id, "inspection_id": p.inspection_id,
            "item_id": p.item_id, "content_type": p.content_type, "size": p.size, "width": p.width,
            "height": p.height, "sha256": p.sha256, "taken_at": iso(p.taken_at), "lat": p.lat, "lon": p.lon,
            "received_at": iso(p.received_at), "uploaded_by": p.uploaded_by, "url": f"/api/inspection-photos/{p.id}"}


def inspection_view(row: Inspection, units: Mapping[str, Unit], hazards: Mapping[int, dict[str, Any]]
                    ) -> dict[str, Any]:
    """An inspection with its answers, photos, rechecks, and the hazards it created (`hazards`) and rechecked."""
    unit = units.get(row.unit_id)
    created = [v for v in hazards.values() if v.get("inspection_id") == row.id]
    rechecked = [hazards[r.hazard_id] for r in row.rechecks if r.hazard_id in hazards]
    return {
        "id": row.id, "number": row.number, "unit_id": row.unit_id,
        "unit": unit_view(unit) if unit is not None else {"id": row.unit_id, **row.unit_snapshot},
        "unit_snapshot": row.unit_snapshot, "station_id": row.station_id, "kind": row.kind,
        "kind_name": KIND_NAMES.get(row.kind, row.kind), "unit_type": row.unit_type,
        "checklist_version": row.checklist_version, "started_at": iso(row.started_at),
        "submitted_at": iso(row.submitted_at), "lat": row.lat, "lon": row.lon, "officer": row.officer,
        "officer_name": row.officer_name, "co_officers": row.co_officers, "note": row.note,
        "signer_name": row.signer_name, "signature_sha256": row.signature_sha256,
        "results_sha256": row.results_sha256,
        "items": [{"position": i.position, "item_id": i.item_id, "text": i.text, "clause": i.clause,
                   "category": i.category, "result": i.result, "note": i.note, "hazard_id": i.hazard_id}
                  for i in row.items],
        "failed": sum(1 for i in row.items if i.result == "fail"),
        "photos": [photo_view(p) for p in row.photos],
        "rechecks": [{"hazard_id": r.hazard_id, "rectified": r.rectified, "note": r.note, "recheck_id": r.recheck_id}
                     for r in row.rechecks],
        "hazards": sorted(created, key=lambda v: v["id"]), "rechecked": rechecked,
        "pdf": f"/api/inspections/{row.id}/pdf", "signature": f"/api/inspections/{row.id}/signature",
    }


async def hazards_of(s: AsyncSession, row: Inspection, hcfg: HazardsConfig,
                     units: Mapping[str, Unit]) -> dict[int, dict[str, Any]]:
    """Views of the hazards an inspection created or rechecked, by id."""
    ids = {i.hazard_id for i in row.items if i.hazard_id is not None} | {r.hazard_id for r in row.rechecks}
    if not ids:
        return {}
    rows = (await s.scalars(select(Hazard).where(Hazard.id.in_(sorted(ids))))).all()
    return {h.id: hazard_view(h, hcfg, units) for h in rows}


def visible(scope: Actor, row: Inspection, units: Mapping[str, Unit]) -> bool:
    """A unit sees its own inspections; others those of their stations (by the unit's station, or the station
    that inspected)."""
    if scope.role == "unit":
        return row.unit_id == scope.unit_id
    unit = units.get(row.unit_id)
    return scope.sees_station(row.station_id) or (unit is not None and scope.sees_station(unit.station_id))


class InspectionViews:
    def __init__(self, db: Database, hcfg: HazardsConfig, units: Mapping[str, Unit],
                 scope: Callable[[Actor], Actor]) -> None:
        self.db = db
        self.hcfg = hcfg
        self.units = units  # the core's units (a live mapping)
        self.scope = scope

    def _scoped(self, query: Select[Inspection], actor: Actor) -> Select[Inspection]:
        scope = self.scope(actor)
        if scope.role == "unit":
            return query.where(Inspection.unit_id == (scope.unit_id or ""))
        stations = sorted(stations_seen(scope))
        return query.join(Unit, Unit.id == Inspection.unit_id).where(
            or_(Unit.station_id.in_(stations), Inspection.station_id.in_(stations)))

    async def list_inspections(self, actor: Actor, *, unit_id: str | None = None, kind: str | None = None,
                               limit: int = 200) -> list[dict[str, Any]]:
        """Newest first, within the actor's scope (a unit: its own)."""
        query = self._scoped(select(Inspection), actor).order_by(Inspection.id.desc()).limit(max(1, min(limit, 1000)))
        if unit_id:
            query = query.where(Inspection.unit_id == unit_id)
        if kind:
            query = query.where(Inspection.kind == kind)
        async with self.db.session() as s:
            rows = (await s.scalars(query)).unique().all()
            out = []
            for row in rows:
                out.append(inspection_view(row, self.units, await hazards_of(s, row, self.hcfg, self.units)))
        return out

    async def _row(self, s: AsyncSession, inspection_id: int, actor: Actor) -> Inspection:
        row = await s.get(Inspection, inspection_id)
        if row is None:
            raise NotFound(f"inspection {inspection_id} not found")
        if not visible(self.scope(actor), row, self.units):
            raise Forbidden(f"inspection {inspection_id} is not in your area")
        return row

    async def under_notice(self, unit_id: str) -> list[dict[str, Any]]:
        """The unit's hazards under a notice (what a recheck inspection rechecks), oldest first."""
        async with self.db.session() as s:
            rows = (await s.scalars(select(Hazard).where(Hazard.unit_id == unit_id,
                                                         Hazard.status.in_(sorted(IN_RECTIFICATION)))
                                    .order_by(Hazard.id))).all()
        return [hazard_view(h, self.hcfg, self.units) for h in rows]

    async def detail(self, inspection_id: int, actor: Actor) -> dict[str, Any]:
        async with self.db.session() as s:
            row = await self._row(s, inspection_id, actor)
            return inspection_view(row, self.units, await hazards_of(s, row, self.hcfg, self.units))

    async def check(self, inspection_id: int, actor: Actor) -> None:
        """NotFound or Forbidden unless `actor` may see the inspection."""
        async with self.db.session() as s:
            await self._row(s, inspection_id, actor)

    async def signature(self, inspection_id: int, actor: Actor) -> bytes:
        """The drawn signature (PNG), checked against its SHA-256 (IntegrityError when altered)."""
        async with self.db.session() as s:
            row = await self._row(s, inspection_id, actor)
            data = await s.scalar(select(Inspection.signature_png).where(Inspection.id == row.id))
        if data is None or await asyncio.to_thread(sha256_bytes, data) != row.signature_sha256:
            raise IntegrityError(f"the signature of inspection {inspection_id} no longer matches its SHA-256")
        return data

    async def photo(self, photo_id: int, actor: Actor) -> tuple[InspectionPhoto, bytes]:
        """A photo the caller may see (its uploader, or within the scope of its inspection), checked against the
        SHA-256 recorded when it was received. IntegrityError when the bytes, the row and the record disagree."""
        async with self.db.session() as s:
            p = await s.scalar(select(InspectionPhoto).options(undefer(InspectionPhoto.data))
                               .where(InspectionPhoto.id == photo_id))
            if p is None:
                raise NotFound(f"photo {photo_id} not found")
            if p.inspection_id is not None:
                await self._row(s, p.inspection_id, actor)
            elif p.uploaded_by != actor.username:
                raise Forbidden(f"photo {photo_id} is not part of an inspection yet; only its sender sees it")
            recorded = (await s.scalars(select(RecordEntry.data).where(
                RecordEntry.action == PHOTO_RECEIVED, RecordEntry.at == p.received_at))).all()
        sha = next((d.get("sha256") for d in recorded if isinstance(d, dict) and d.get("photo_id") == p.id), None)
        digest = await asyncio.to_thread(sha256_bytes, p.data)
        if digest != p.sha256 or sha != p.sha256:
            log.error("inspection photo %s failed its integrity check (row %s, record %s, content %s): refused",
                      p.id, p.sha256, sha, digest)
            raise IntegrityError(f"photo {p.id} altered: its content no longer matches the SHA-256 recorded when "
                                 "it was received; not served")
        return p, p.data


async def inspection_document(db: Database, hcfg: HazardsConfig, units: Mapping[str, Unit], authority: str,
                              inspection_id: int, actor: Actor) -> dict[str, Any]:
    """What the 消防监督检查记录 prints: the row as stored (its unit as it was), the hazards it created (number and
    category; their later course is not part of the record), its photos' hashes and the signature."""
    async with db.session() as s:
        row = await s.get(Inspection, inspection_id)
        if row is None:
            raise NotFound(f"inspection {inspection_id} not found")
        signature = await s.scalar(select(Inspection.signature_png).where(Inspection.id == row.id))
        hazards = await hazards_of(s, row, hcfg, units)
    check_visible(actor, row.unit_id, row.station_id)
    if signature is None:
        raise BadRequest(f"inspection {inspection_id} has no signature")
    return {"inspection": row, "unit": row.unit_snapshot, "authority": authority,
            "kind_name": KIND_NAMES.get(row.kind, row.kind),
            "hazards": {hid: {"id": hid, "category_name": v["category_name"]} for hid, v in hazards.items()},
            "signature_uri": "data:image/png;base64," + base64.b64encode(signature).decode("ascii"),
            "results": RESULT_NAMES}
