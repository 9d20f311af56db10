"""HTTP API of typed inspections (消防监督检查): checklists per unit type, the phone's photos and submissions, the
inspection record (消防监督检查记录) as PDF (`routes`, served by console.web with the console's others).

Officers inspect units of their stations; a unit reads its own inspections; the assessor reads. The phone sends
each photo when it has signal (`POST /api/inspection-photos`, its own id makes a resend harmless), then the
answered checklist as JSON with an idempotency key (`POST /api/inspections`): a resend answers the stored
inspection (200) instead of storing another.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, Field

from config.checklists import ITEM_ID_PATTERN
from config.taxonomy import shipped_taxonomy
from console.api import _Body, _int, actor, supervisor
from console.api_hazards import IMAGES, PDF, _pdf, _renderer, read_uploads
from console.appkeys import DOCUMENTS, HEAVY, INSPECTION_VIEWS, INSPECTIONS
from console.json_text import encode
from console.routing import OFFICERS, STAFF, Count, Query, RouteTable, error, query_of
from dispatch.errors import BadRequest, NotFound
from dispatch.inspection_images import Stamp, reencode_photo, signature_png
from dispatch.inspections import Answer, Inspections, PhotoIn, PhotoRef, RecheckAnswer, Submission
from ingest.integrity import IntegrityError

routes = RouteTable()
log = logging.getLogger(__name__)
READERS = frozenset({*STAFF, "unit", "agency"})  # an agency reads only with oversight (dispatch.scope: its stations)
TAG = "inspections"
KEY = r"^[A-Za-z0-9][A-Za-z0-9_\-]{7,63}$"
PHOTO_UPLOAD: dict[str, Any] = {
    "type": "object", "required": ["unit_id", "client_id", "files"],
    "properties": {
        "unit_id": {"type": "string", "maxLength": 64, "description": "The unit inspected."},
        "client_id": {"type": "string", "pattern": KEY, "description": "The phone's id of this photo (a UUID): "
                      "sending it again answers the stored photo."},
        "taken_at": {"type": "string", "format": "date-time", "description": "When the phone took it (with zone)."},
        "lat": {"type": "number", "minimum": -90, "maximum": 90, "description": "Where (the phone's GPS)."},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "files": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "string", "format": "binary"},
                  "description": "One JPEG, PNG or WebP photo (judged by its bytes) within hazards.max_upload_bytes; "
                                 "stored re-encoded (metadata stripped) and stamped with time and place."},
    },
}


def service(request: web.Request) -> Inspections:
    return request.app[INSPECTIONS]


class ChecklistQuery(Query):
    kind: Literal["daily", "pre_opening", "recheck"] | None = Field(
        None, description="Only the items this kind of inspection asks (default: every item, with its kinds).")


class InspectionsQuery(Query):
    unit_id: str = Field("", max_length=64, description="One unit's inspections.")
    kind: Literal["daily", "pre_opening", "recheck"] | None = None
    limit: Count = 200


class AnswerBody(_Body):
    item_id: str = Field(..., pattern=ITEM_ID_PATTERN, description="A checklist item id.")
    result: Literal["pass", "fail", "na"]
    note: str = Field("", max_length=500, description="What was found; required for a failure.")


class RecheckBody(_Body):
    hazard_id: int = Field(..., ge=1, le=2**31 - 1, description="A hazard of the unit under a notice.")
    rectified: bool
    note: str = Field("", max_length=500)


class PhotoRefBody(_Body):
    photo_id: int = Field(..., ge=1, le=2**31 - 1, description="From POST /api/inspection-photos.")
    item_id: str | None = Field(None, pattern=ITEM_ID_PATTERN, description="The item it shows (a failure's photos "
                                "become the hazard's evidence).")


class InspectionBody(_Body):
    unit_id: str = Field(..., min_length=1, max_length=64)
    kind: Literal["daily", "pre_opening", "recheck"] = Field(
        ..., description="daily (日常监督检查), pre_opening (开业前检查) or recheck (复查).")
    items: list[AnswerBody] = Field(..., min_length=1, max_length=200,
                                    description="Every item of the unit type's current checklist, once.")
    idempotency_key: str = Field(..., pattern=KEY, description="The phone's id of this inspection (a UUID): "
                                 "sending it again answers the stored inspection.")
    signature: str = Field(..., min_length=1, max_length=44_000,
                           description="The unit's person's drawn signature: a PNG data URL, at most 32 KiB.")
    signer_name: str = Field("", max_length=40, description="Name of the unit's person who signed.")
    note: str = Field("", max_length=1000, description="Other findings.")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    started_at: AwareDatetime | None = Field(None, description="When the checklist was opened (the phone's clock).")
    checklist_version: int | None = Field(None, ge=1, le=1_000_000,
                                          description="The version answered; another than the current is refused.")
    photos: list[PhotoRefBody] = Field(default_factory=list, max_length=30)
    rechecks: list[RecheckBody] = Field(default_factory=list, max_length=50,
                                        description="recheck only: the hazards rechecked and their results.")
    co_officers: list[str] = Field(default_factory=list, max_length=5,
                                   description="Logins of the other officers present.")


def _checklist_json(request: web.Request, unit_type: str, kind: str | None) -> dict[str, Any]:
    svc = service(request)
    types = shipped_taxonomy().types()
    if unit_type not in types:
        raise NotFound(f"unknown unit type {unit_type!r}")
    checklist = svc.checklist(unit_type, kind)
    hcfg = svc.ctx.hcfg
    items = []
    for i in checklist.items:
        clause, cat = hcfg.clause(i.clause), hcfg.category(i.category)
        items.append({"id": i.id, "zh": i.zh, "en": i.en, "kinds": list(i.kinds), "category": i.category,
                      "category_name": cat.name if cat else i.category,
                      "clause": {"key": i.clause, "citation": clause.citation() if clause else i.clause,
                                 "text": clause.text if clause else ""}})
    return {"unit_type": unit_type, "unit_type_name": types[unit_type][1].zh, "unit_type_en": types[unit_type][1].en,
            "name": checklist.name, "version": checklist.version, "kind": kind, "items": items}


@routes.route("GET", "/api/checklists/{unit_type}", "The inspection checklist of a unit type", roles=READERS,
              tag=TAG, query=ChecklistQuery)
async def get_checklist(request: web.Request, _: None) -> dict[str, Any]:
    return _checklist_json(request, request.match_info["unit_type"], query_of(request, ChecklistQuery).kind)


@routes.route("GET", "/api/units/{unit_id}/inspection",
              "What an officer needs to inspect a unit: the unit, its checklist, its hazards under a notice",
              roles=OFFICERS, tag=TAG, query=ChecklistQuery)
async def get_unit_inspection(request: web.Request, _: None) -> dict[str, Any]:
    who = actor(request)
    unit = service(request).unit_for(request.match_info["unit_id"], who)
    return {"unit": {"id": unit.id, "name": unit.name, "address": unit.address, "unit_type": unit.unit_type,
                     "lat": unit.lat, "lon": unit.lon, "station_id": unit.station_id},
            "checklist": _checklist_json(request, unit.unit_type, query_of(request, ChecklistQuery).kind),
            "hazards_under_notice": await request.app[INSPECTION_VIEWS].under_notice(unit.id)}


@routes.route("POST", "/api/inspection-photos",
              "Send a photo of an inspection before submitting it (multipart: unit_id, client_id, taken_at, lat, "
              "lon, files); 200 for a resend", roles=OFFICERS, tag=TAG, upload=PHOTO_UPLOAD, success=201,
              statuses=(200, 409))
async def post_inspection_photo(request: web.Request, _: None) -> web.Response:
    fields, files = await read_uploads(request)
    if len(files) != 1:
        raise BadRequest("send exactly one photo (files)")
    unknown = set(fields) - {"unit_id", "client_id", "taken_at", "lat", "lon"}
    if unknown:
        raise BadRequest(f"unknown fields {sorted(unknown)}")
    photo = PhotoIn(client_id=_key(fields.get("client_id", ""), "client_id"), unit_id=fields.get("unit_id", ""),
                    jpeg=b"", width=0, height=0, taken_at=_time(fields.get("taken_at", "")),
                    lat=_coord(fields.get("lat", ""), "lat", 90), lon=_coord(fields.get("lon", ""), "lon", 180))
    if not photo.unit_id:
        raise BadRequest("unit_id is required")
    who = actor(request)
    service(request).unit_for(photo.unit_id, who)  # 400/403 before the photo is decoded
    heavy = request.app[HEAVY]
    async with heavy.slot("photo"):
        img = await heavy.thread(reencode_photo, files[0].data, Stamp(photo.taken_at, photo.lat, photo.lon))
    view, created = await service(request).receive_photo(
        PhotoIn(photo.client_id, photo.unit_id, img.jpeg, img.width, img.height, photo.taken_at, photo.lat,
                photo.lon), who)
    return web.json_response(view, status=201 if created else 200, dumps=encode)


@routes.route("GET", "/api/inspection-photos/{id}", "A photo of an inspection", roles=READERS, tag=TAG,
              produces=IMAGES, statuses=(409,))
async def get_inspection_photo(request: web.Request, _: None) -> web.StreamResponse:
    try:
        p, data = await request.app[INSPECTION_VIEWS].photo(_int(request), supervisor(request))
    except IntegrityError as exc:
        return error(409, str(exc))
    return web.Response(body=data, content_type=p.content_type, headers={
        "Cache-Control": "private, max-age=3600", "X-Content-SHA256": p.sha256,
        "Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff"})


@routes.route("POST", "/api/inspections",
              "Submit an inspection: every checklist item answered; each failure becomes a hazard with its clause "
              "(201); the same idempotency key again answers the stored inspection (200)", roles=OFFICERS,
              body=InspectionBody, tag=TAG, success=201, statuses=(200, 409))
async def post_inspection(request: web.Request, body: InspectionBody) -> web.Response:
    heavy = request.app[HEAVY]
    async with heavy.slot("signature"):
        png = await heavy.thread(signature_png, body.signature)
    sub = Submission(
        unit_id=body.unit_id, kind=body.kind, idempotency_key=body.idempotency_key, signature_png=png,
        answers=[Answer(a.item_id, a.result, a.note.strip()) for a in body.items], signer_name=body.signer_name.strip(),
        note=body.note.strip(), lat=body.lat, lon=body.lon, started_at=body.started_at,
        checklist_version=body.checklist_version, photos=[PhotoRef(p.photo_id, p.item_id) for p in body.photos],
        rechecks=[RecheckAnswer(r.hazard_id, r.rectified, r.note.strip()) for r in body.rechecks],
        co_officers=body.co_officers)
    view, created = await service(request).submit(sub, actor(request))
    if created:
        await _seal(request, view)
    return web.json_response(view, status=201 if created else 200, dumps=encode)


async def _seal(request: web.Request, view: dict[str, Any]) -> None:
    """Records the PDF SHA-256 of the record just submitted, and of the recheck opinions it issued. The command has
    committed: a failure here is logged and made up by the next download."""
    docs = request.app[DOCUMENTS]
    try:
        await docs.seal_one("inspection", view["id"], _renderer(request))
        for r in view["rechecks"]:
            await docs.seal(r["hazard_id"], _renderer(request))
    except Exception:
        log.warning("sealed PDFs of inspection %s not hashed yet (recorded at their next download)", view["id"],
                    exc_info=True)


@routes.route("GET", "/api/inspections", "List inspections in your area (?unit_id=&kind=)", roles=READERS, tag=TAG,
              query=InspectionsQuery)
async def get_inspections(request: web.Request, _: None) -> list[dict[str, Any]]:
    q = query_of(request, InspectionsQuery)
    return await request.app[INSPECTION_VIEWS].list_inspections(supervisor(request), unit_id=q.unit_id or None,
                                                               kind=q.kind, limit=q.limit)


@routes.route("GET", "/api/inspections/{id}", "An inspection with its answers, photos and hazards", roles=READERS,
              tag=TAG)
async def get_inspection(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[INSPECTION_VIEWS].detail(_int(request), supervisor(request))


@routes.route("GET", "/api/inspections/{id}/pdf", "The inspection record (消防监督检查记录) as PDF", roles=READERS,
              tag=TAG, produces=PDF)
async def get_inspection_pdf(request: web.Request, _: None) -> web.StreamResponse:
    who = supervisor(request)
    await request.app[INSPECTION_VIEWS].check(_int(request), who)  # the station scope (404/403)
    data, name = await request.app[DOCUMENTS].pdf("inspection", _int(request), who, _renderer(request))
    return _pdf(data, name)


@routes.route("GET", "/api/inspections/{id}/signature", "The drawn signature of an inspection (PNG)",
              roles=READERS, tag=TAG, produces=("image/png",), statuses=(409,))
async def get_inspection_signature(request: web.Request, _: None) -> web.StreamResponse:
    try:
        data = await request.app[INSPECTION_VIEWS].signature(_int(request), supervisor(request))
    except IntegrityError as exc:
        return error(409, str(exc))
    return web.Response(body=data, content_type="image/png", headers={
        "Cache-Control": "private, max-age=3600", "Content-Security-Policy": "default-src 'none'",
        "X-Content-Type-Options": "nosniff"})


# ------------------------------------------------------------------ form fields

def _key(value: str, name: str) -> str:
    if not re.fullmatch(KEY, value):
        raise BadRequest(f"{name} must be 8–64 letters, digits, '-' or '_' (a UUID)")
    return value


def _time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest("taken_at must be an ISO 8601 time with a zone") from None
    if at.tzinfo is None:
        raise BadRequest("taken_at needs a time zone")
    return at


def _coord(value: str, name: str, bound: float) -> float | None:
    if not value:
        return None
    try:
        x = float(value)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not -bound <= x <= bound:  # NaN fails too
        raise BadRequest(f"{name} must lie within ±{bound:g}")
    return x
