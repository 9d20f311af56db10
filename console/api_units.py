"""HTTP API of the unit registry (单位档案): search, a unit's page with its history, create/edit/retire, import and
export, the taxonomy, QR sheets — and the scan address the QR codes encode (`/q/...`, a page redirect, see `scan`).

Officers (admin, duty officer) write, within their scope; staff read within theirs; a unit's own login reads itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from aiohttp import BodyPartReader, web
from pydantic import BeforeValidator, Field

from config.facilities import shipped_facilities
from console.api import actor, supervisor
from console.appkeys import CLOCK, CONFIG, HEAVY, INCIDENTS, REGISTRY, UNIT_VIEWS
from console.json_text import encode
from console.routing import (
    ID_MAX,
    KEY_PATTERN,
    OFFICERS,
    STAFF,
    Count,
    HttpError,
    Query,
    RouteTable,
    error,
    query_of,
    whole_number,
)
from console.security import ACTOR
from dispatch import documents, unit_sheets
from dispatch.actor import Actor
from dispatch.errors import BadRequest
from dispatch.registry import ImportRefused, RowError, StaleVersion
from dispatch.unit_fields import RetireBody, UnitCreate, UnitPatch
from dispatch.unit_qr import qr_sheet_html
from dispatch.unit_views import UnitFilter, taxonomy_view

routes = RouteTable()
READERS = frozenset({*STAFF, "unit", "agency"})  # an agency only with oversight (console.api.supervisor)
TYPE_CODE = r"^([a-z][a-z0-9_]{0,39})?$"
MAX_IMPORT_BYTES = 16 * 1024 * 1024
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
IMPORT_UPLOAD: dict[str, Any] = {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "CSV (UTF-8 or GB 18030) or XLSX with a header row; see docs/registry.md."}},
}
Offset = Annotated[int, Field(ge=0, le=ID_MAX, description="Skip this many matches."), BeforeValidator(whole_number)]


class UnitsQuery(Query):
    q: str = Field("", max_length=200, description="Words to find in the name, address, credit code or id.")
    unit_type: str = Field("", pattern=TYPE_CODE, description="A unit type code (GET /api/taxonomy).")
    unit_class: str = Field("", pattern=TYPE_CODE, description="A class code: every type in it.")
    station_id: str = Field("", pattern=r"^([A-Za-z0-9][A-Za-z0-9_.\-]{0,63})?$", description="One station.")
    include_retired: bool = Field(False, description="Retired units too.")


class ListQuery(UnitsQuery):
    limit: Count | None = Field(None, description="A page of at most this many (default: every match).")
    offset: Offset = 0


class ExportQuery(UnitsQuery):
    format: Literal["csv", "xlsx"] = "csv"


def _filter(q: UnitsQuery, limit: int | None = None, offset: int = 0) -> UnitFilter:
    return UnitFilter(q=q.q, unit_type=q.unit_type or None, unit_class=q.unit_class or None,
                      station_id=q.station_id or None, include_retired=q.include_retired, limit=limit, offset=offset)


def _unit_id(request: web.Request) -> str:
    return request.match_info["unit_id"]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=encode)


# ------------------------------------------------------------------ reads

@routes.route("GET", "/api/taxonomy", "Unit taxonomy (class → type) and fire facilities", roles=None, tag="registry")
async def get_taxonomy(request: web.Request, _: None) -> dict[str, Any]:
    return taxonomy_view()


@routes.route("GET", "/api/units", "List or search units (?q=&unit_type=&unit_class=&station_id=&limit=&offset=); "
              "X-Total-Count: all matches", roles=READERS, tag="registry", query=ListQuery)
async def get_units(request: web.Request, _: None) -> web.StreamResponse:
    q = query_of(request, ListQuery)
    total, items = await request.app[UNIT_VIEWS].search(supervisor(request), _filter(q, q.limit, q.offset))
    return _json(items, headers={"X-Total-Count": str(total)})


@routes.route("GET", "/api/units/options", "Stations and community officers a unit form offers", roles=STAFF,
              tag="registry")
async def get_unit_options(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[UNIT_VIEWS].options(actor(request))


@routes.route("GET", "/api/units/export", "Export units as CSV or XLSX (?format=csv|xlsx and the list's filters)",
              roles=STAFF, tag="registry", query=ExportQuery, produces=("text/csv", XLSX))
async def get_units_export(request: web.Request, _: None) -> web.StreamResponse:
    q = query_of(request, ExportQuery)
    units = await request.app[UNIT_VIEWS].units(actor(request), _filter(q))
    heavy = request.app[HEAVY]
    stamp = request.app[CLOCK]().strftime("%Y%m%d")
    async with heavy.slot("export"):
        if q.format == "xlsx":
            data = await heavy.thread(unit_sheets.to_xlsx, units)
            return web.Response(body=data, content_type=XLSX, headers=_attachment(f"单位档案-{stamp}.xlsx"))
        text = await heavy.thread(unit_sheets.to_csv, units)
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers=_attachment(f"单位档案-{stamp}.csv"))


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}", "Cache-Control": "no-store"}


# ------------------------------------------------------------------ commands

@routes.route("POST", "/api/units/import", "Import units from CSV or XLSX (multipart `file`): all rows or none",
              roles=OFFICERS, tag="registry", upload=IMPORT_UPLOAD)
async def post_units_import(request: web.Request, _: None) -> web.StreamResponse:
    name, data = await _read_file(request)
    who = actor(request)
    heavy = request.app[HEAVY]
    registry = request.app[REGISTRY]

    def check() -> Any:
        try:
            rows = unit_sheets.read_rows(data)
        except unit_sheets.SheetError as exc:
            raise ImportRefused([RowError(1, str(exc))]) from None
        return registry.check_rows(rows, who)

    try:
        async with heavy.slot("import"):
            checked = await heavy.thread(check)
        count = await registry.import_units(checked, who, name, hashlib.sha256(data).hexdigest())
    except ImportRefused as exc:
        return error(400, str(exc), errors=[{"row": e.row, "message": e.message} for e in exc.errors])
    return _json({"imported": count})


async def _read_file(request: web.Request) -> tuple[str, bytes]:
    """The multipart body's `file` part (its name and bytes), within MAX_IMPORT_BYTES (413 beyond)."""
    if request.content_length is not None and request.content_length > MAX_IMPORT_BYTES + 64 * 1024:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_IMPORT_BYTES, actual_size=request.content_length,
                                            text=f"upload larger than {MAX_IMPORT_BYTES} bytes")
    if not request.content_type.startswith("multipart/form-data"):
        raise BadRequest("send multipart/form-data with the spreadsheet as `file`")
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart is not accepted")
        if part.name != "file":
            await part.release()
            continue
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data.extend(chunk)
            if len(data) > MAX_IMPORT_BYTES:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_IMPORT_BYTES, actual_size=len(data),
                                                    text=f"file larger than {MAX_IMPORT_BYTES} bytes")
        if not data:
            raise BadRequest("the file is empty")
        return (part.filename or "")[:200], bytes(data)
    raise BadRequest("no `file` part in the upload")


@routes.route("POST", "/api/units", "Create a unit (admin or duty officer of its station)", roles=OFFICERS,
              body=UnitCreate, tag="registry", success=201, statuses=(409,))
async def post_unit(request: web.Request, body: UnitCreate) -> web.StreamResponse:
    return _json(await request.app[REGISTRY].create(body, actor(request)), status=201)


@routes.route("GET", "/api/units/{unit_id}", "A unit's registry entry, devices, cameras and history", roles=READERS,
              tag="registry")
async def get_unit(request: web.Request, _: None) -> dict[str, Any]:
    unit_id = _unit_id(request)
    cams = [{"id": c.id, "name": c.name, "location": c.location}
            for c in request.app[CONFIG].cameras if c.unit_id == unit_id]
    return await request.app[UNIT_VIEWS].detail(unit_id, actor(request), cams)


@routes.route("PUT", "/api/units/{unit_id}", "Edit a unit: the fields given, on the version given (409 if stale)",
              roles=OFFICERS, body=UnitPatch, tag="registry")
async def put_unit(request: web.Request, body: UnitPatch) -> dict[str, Any]:
    return await _versioned(request.app[REGISTRY].update(_unit_id(request), body, actor(request)))


@routes.route("POST", "/api/units/{unit_id}/retire", "Retire a unit (kept with its history; hidden from lists)",
              roles=OFFICERS, body=RetireBody, tag="registry")
async def post_unit_retire(request: web.Request, body: RetireBody) -> dict[str, Any]:
    return await _versioned(request.app[REGISTRY].retire(_unit_id(request), body, actor(request)))


async def _versioned(command: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A command made on a version of the unit: a stale one answers 409 with the unit's current version."""
    try:
        return await command
    except StaleVersion as exc:
        raise HttpError(409, str(exc), version=exc.current) from None


@routes.route("GET", "/api/units/{unit_id}/qr.pdf", "The unit's QR sheet (unit and key facilities) as PDF",
              roles=STAFF, tag="registry", produces=("application/pdf",))
async def get_unit_qr(request: web.Request, _: None) -> web.StreamResponse:
    views = request.app[UNIT_VIEWS]
    unit = views.visible(actor(request), _unit_id(request))
    view = views.view(unit)
    cfg = request.app[CONFIG]
    authority = view["station_name"] or cfg.station.name
    now: datetime = request.app[CLOCK]()
    heavy = request.app[HEAVY]
    async with heavy.slot("PDF"):
        html = await heavy.thread(qr_sheet_html, view, cfg.public_url(), authority, now)
        data = await heavy.process(documents.html_to_pdf, html)
    return web.Response(body=data, content_type="application/pdf", headers={
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(f'二维码-{unit.name}.pdf')}",
        "Cache-Control": "no-store"})


# ------------------------------------------------------------------ the QR codes' address (a page, not the API)

FACILITY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
SCAN_PATHS = ("/q/{unit_id}", "/q/{unit_id}/{facility}")


def scan_target(who: Actor | None, sees: bool, unit_id: str, facility: str | None) -> str:
    """Where a scanned code leads: staff who oversee the unit to its inspection (officers) or registry page
    (assessors); anyone else — no session, a unit's or agency's login, another subtree's officer — to the public
    complaint form for the unit (and facility)."""
    extra = {"facility": facility} if facility else {}
    if who is not None and who.role in STAFF and sees:
        if who.role in OFFICERS:
            return "/inspect.html?" + urlencode({"unit": unit_id, **extra})
        return f"/units.html#{quote(unit_id, safe='')}"
    return "/report.html?" + urlencode({"unit": unit_id, **extra})


async def scan(request: web.Request) -> web.StreamResponse:
    """GET /q/{unit_id}[/{facility}]: what a unit's QR code opens (302; never cached: it depends on who asks)."""
    unit_id = request.match_info["unit_id"]
    facility = request.match_info.get("facility")
    if not re.fullmatch(KEY_PATTERN, unit_id) or (facility is not None and not FACILITY_PATTERN.fullmatch(facility)):
        raise web.HTTPNotFound(text="no such code")
    core = request.app[INCIDENTS].core
    unit = core.units.get(unit_id)
    # a facility the data file knows (a sticker stays on the wall after the unit's entry changed)
    if unit is None or (facility is not None and facility not in shipped_facilities().by_code()):
        raise web.HTTPNotFound(text="no such unit or facility")
    who: Actor | None = request.get(ACTOR)
    sees = who is not None and core.scope(who).sees_unit(unit.id, unit.station_id)
    raise web.HTTPFound(scan_target(who, sees, unit_id, facility), headers={"Cache-Control": "no-store"})
