"""HTTP API of complaints and outside reports (投诉举报, docs/complaints.md): `routes`, served by console.web.

- Anyone, without an account: file a report (`/report.html`), read where it stands by its receipt, read the name of
  the unit a QR code names. Rate-limited per client address and per browser (429 + Retry-After), size-limited
  (413), the photo re-encoded; a cross-site form or script is refused (403): the public intake acts as nobody.
- The 96119 hotline gateway: a complaint signed with HMAC-SHA256 (X-Firelink-Signature), idempotent on its ticket.
- Village/community fire assistants: file reports (attributed to them) and see only their own.
- Officers: the triage queue of the stations they see; accept a report into a hazard, or reject it with a reason.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web
from pydantic import Field, ValidationError

from console.api import _Body, _int, _too_many, actor
from console.api_hazards import stored_image
from console.appkeys import CLOCK, COMPLAINT_VIEWS, COMPLAINTS, CONFIG, HEAVY, REPORT_LIMITS
from console.json_text import encode
from console.routing import ASSISTANTS, OFFICERS, STAFF, Count, HttpError, Query, RouteTable, error, query_of
from console.security import client_address, secure_cookie
from dispatch.complaint_photo import Photo, reencode
from dispatch.complaints import Complaints, Filed
from dispatch.errors import BadRequest
from dispatch.login_throttle import retry_after_header
from dispatch.rate_limits import Verdict
from ingest.contract import ComplaintIn, check_text
from ingest.payloads import ID_PATTERN, PHONE_PATTERN, HotlineComplaintPayload

routes = RouteTable()
log = logging.getLogger(__name__)

READERS = STAFF | ASSISTANTS  # the queue: officers (and the assessor) their stations'; an assistant its own
DEVICE_COOKIE = "firelink_reporter"  # a random id per browser: the per-device limit (HttpOnly, this site only)
DEVICE_ID = re.compile(r"[A-Za-z0-9_\-]{16,64}")
MAX_FIELD = 16 * 1024  # bytes of one text field of a multipart form (4,000 CJK characters fit)
FACILITY_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9_.\-]{0,63})?$"
IMAGE = ("image/jpeg",)


class ReportBody(_Body):
    """A report as the public page (or an assistant) sends it."""

    description: str = Field(..., min_length=1, max_length=4000,
                             description="What and where the hazard is (complaints.max_description_chars apply).")
    lat: float | None = Field(None, ge=-90, le=90, description="Latitude (WGS-84) from the phone, if given.")
    lon: float | None = Field(None, ge=-180, le=180, description="Longitude (WGS-84), with lat.")
    address: str = Field("", max_length=400, description="The address, typed, when there is no position.")
    unit_id: str | None = Field(None, pattern=ID_PATTERN, description="The unit, from its QR code (?unit=).")
    facility: str = Field("", pattern=FACILITY_PATTERN, description="A facility code of the unit (?facility=).")
    contact_phone: str = Field("", pattern=PHONE_PATTERN,
                               description="A number to call back, if the reporter wishes (officers only).")


def _upload_schema() -> dict[str, Any]:
    schema = ReportBody.model_json_schema()
    props = {k: v for k, v in schema["properties"].items() if k not in ("lat", "lon")}
    props["lat"] = {"type": "number", "minimum": -90, "maximum": 90}
    props["lon"] = {"type": "number", "minimum": -180, "maximum": 180}
    props["photo"] = {"type": "string", "format": "binary",
                      "description": "One photo (JPEG, PNG or WebP, judged by its bytes) within "
                                     "complaints.max_photo_bytes; stored re-encoded, without metadata."}
    return {"type": "object", "required": ["description"], "properties": props}


REPORT_UPLOAD = _upload_schema()


class AcceptBody(_Body):
    category: str = Field(..., min_length=1, max_length=40, description="Hazard category key (/api/hazards/config).")
    unit_id: str | None = Field(None, pattern=ID_PATTERN,
                                description="The unit the hazard belongs to (default: the report's unit).")
    severity: Literal["general", "major"] | None = None
    description: str | None = Field(None, max_length=2000,
                                    description="The hazard's description (default: the report's).")
    attach_photo: bool = Field(True, description="The report's photo becomes the hazard's first evidence.")


class RejectBody(_Body):
    reason: str = Field(..., min_length=2, max_length=1000,
                        description="Why (the reporter reads it behind the receipt).")


class QueueQuery(Query):
    state: Literal["new", "accepted", "rejected", "all"] = Field(
        "new", description="new: waiting for triage (oldest first); the others newest first. Assistants: "
                           "always their own, all of them.")
    limit: Count = 200


def complaints(request: web.Request) -> Complaints:
    return request.app[COMPLAINTS]


# ------------------------------------------------------------------ abuse defence

def _cross_site(request: web.Request) -> bool:
    """A browser sending this from another site's page (a form or a script there): refused. Clients that are not
    browsers send no Origin and no Sec-Fetch-Site."""
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    ours = {request.host.lower(), urlsplit(request.app[CONFIG].public_url()).netloc.lower()}
    try:
        return urlsplit(origin).netloc.lower() not in ours
    except ValueError:
        return True


def _refused(verdict: Verdict, what: str) -> web.Response:
    """429 with Retry-After (the login throttle's answer)."""
    wait = verdict.retry_after_s
    return _too_many(wait, f"too many {what} from here; try again in {retry_after_header(wait)} s")


def _device(request: web.Request) -> str | None:
    value = request.cookies.get(DEVICE_COOKIE, "")
    return value if DEVICE_ID.fullmatch(value) else None


async def _form(request: web.Request) -> tuple[dict[str, str], bytes]:
    """A multipart report: its text fields and the photo's bytes (none: b""). 413 beyond the limits."""
    cfg = request.app[CONFIG].complaints
    limit = cfg.max_photo_bytes + 64 * 1024
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, f"request larger than {limit} bytes")
    fields: dict[str, str] = {}
    photo = b""
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart is not accepted")
        if part.name == "photo" and part.filename is not None:
            if photo:
                raise BadRequest("one photo per report")
            photo = await _read_part(part, cfg.max_photo_bytes, HttpError(
                413, f"the photo is larger than {cfg.max_photo_bytes} bytes"))
            if not photo:
                raise BadRequest("the photo is empty")
            continue
        raw = await _read_part(part, MAX_FIELD, BadRequest(f"field {part.name!r} is longer than {MAX_FIELD} bytes"))
        try:
            text = raw.decode("utf-8")
            check_text(text)
        except UnicodeDecodeError:
            raise BadRequest(f"field {part.name!r} is not UTF-8") from None
        except ValueError as exc:
            raise BadRequest(f"field {part.name!r}: {exc}") from None
        if part.name in fields:
            raise BadRequest(f"field {part.name!r} given twice")
        fields[part.name or ""] = text
    return fields, photo


async def _read_part(part: BodyPartReader, limit: int, too_long: Exception) -> bytes:
    """A part's bytes, refused with `too_long` as soon as they pass `limit` (never all read first)."""
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data.extend(chunk)
        if len(data) > limit:
            raise too_long
    return bytes(data)


async def _report(request: web.Request, body: ReportBody | None) -> tuple[ReportBody, Photo | None]:
    """The report (JSON, validated by the route table; or a multipart form, validated here) and its photo,
    re-encoded off the event loop within the heavy-work limiter."""
    data = b""
    if body is None:
        fields, data = await _form(request)
        try:
            body = ReportBody.model_validate({k: v for k, v in fields.items() if v.strip() != ""})
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
            where = ".".join(str(p) for p in first["loc"])
            raise BadRequest(f"invalid field {where}: {first['msg']}") from None
    if not data:
        return body, None
    cfg = request.app[CONFIG].complaints
    heavy = request.app[HEAVY]
    async with heavy.slot("photo"):
        photo = await heavy.thread(functools.partial(reencode, data, max_pixels=cfg.max_photo_pixels,
                                                     max_side=cfg.photo_max_side))
    return body, photo


def _complaint_in(request: web.Request, body: ReportBody, source: str, reporter: str = "") -> ComplaintIn:
    return ComplaintIn(source=source, description=body.description, received_at=request.app[CLOCK](),
                       lat=body.lat, lon=body.lon, address=body.address, unit_id=body.unit_id,
                       facility=body.facility, contact_phone=body.contact_phone, reporter=reporter,
                       topic=request.path)


def _filed(filed: Filed, status: int = 201) -> web.Response:
    resp = web.json_response({"receipt": filed.receipt}, status=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ------------------------------------------------------------------ the public

@routes.route("POST", "/api/public/complaints",
              "Report a fire hazard without an account (JSON, or multipart/form-data with one `photo`)",
              roles=None, body=ReportBody, upload=REPORT_UPLOAD, tag="complaints", success=201,
              statuses=(403, 413, 429, 503))
async def post_public_complaint(request: web.Request, body: ReportBody | None) -> web.StreamResponse:
    """Acts as nobody: a session cookie that comes along is ignored (the report is anonymous), and a browser on
    another site cannot send it (403). Answers 201 with the receipt only once the report is stored."""
    if _cross_site(request):
        return error(403, "reports are taken from this site's own report page only")
    device = _device(request)
    verdict = request.app[REPORT_LIMITS].report(client_address(request), device and f"device:{device}")
    if not verdict.allowed:
        return _refused(verdict, "reports")
    report, photo = await _report(request, body)
    filed = await complaints(request).file(_complaint_in(request, report, "public"), photo)
    resp = _filed(filed)
    if device is None:
        resp.set_cookie(DEVICE_COOKIE, secrets.token_urlsafe(18), httponly=True, samesite="Strict",
                        secure=secure_cookie(request), max_age=365 * 24 * 3600, path="/api/public/")
    return resp


@routes.route("GET", "/api/public/complaints/{receipt}", "Where a report stands, by its receipt (nothing else)",
              roles=None, tag="complaints", statuses=(429, 503))
async def get_public_complaint(request: web.Request, _: None) -> web.StreamResponse:
    verdict = request.app[REPORT_LIMITS].lookups.hit(client_address(request))
    if not verdict.allowed:
        return _refused(verdict, "lookups")
    status = await request.app[COMPLAINT_VIEWS].public_status(request.match_info["receipt"])
    return web.json_response(status, headers={"Cache-Control": "no-store"}, dumps=encode)


@routes.route("GET", "/api/public/units/{unit_id}", "The name of the unit a QR code names (for the report page)",
              roles=None, tag="complaints", statuses=(429,))
async def get_public_unit(request: web.Request, _: None) -> web.StreamResponse:
    verdict = request.app[REPORT_LIMITS].lookups.hit(client_address(request))
    if not verdict.allowed:
        return _refused(verdict, "lookups")
    unit = request.app[COMPLAINT_VIEWS].public_unit(request.match_info["unit_id"])
    return web.json_response(unit, dumps=encode)


# ------------------------------------------------------------------ the 96119 hotline gateway

def _hotline_secret(request: web.Request) -> str | None:
    secret = request.app[CONFIG].complaints.hotline.secret
    return secret.get_secret_value() if secret is not None else None


@routes.route("POST", "/api/hotline/complaints",
              "A complaint forwarded by the 96119 hotline (signed; a ticket sent again is the same complaint)",
              roles=None, body=HotlineComplaintPayload, tag="complaints", success=201, statuses=(200,),
              signed=_hotline_secret)
async def post_hotline_complaint(request: web.Request, body: HotlineComplaintPayload) -> web.StreamResponse:
    """201 with the receipt; the same ticket again: 200 with the same receipt (`duplicate`), nothing stored."""
    filed = await complaints(request).file(body.complaint(request.app[CLOCK](), request.path))
    return web.json_response({"receipt": filed.receipt, "duplicate": filed.duplicate},
                             status=200 if filed.duplicate else 201)


# ------------------------------------------------------------------ assistants and the triage queue

@routes.route("POST", "/api/complaints", "File a report as a village/community fire assistant (JSON or multipart)",
              roles=ASSISTANTS, body=ReportBody, upload=REPORT_UPLOAD, tag="complaints", success=201,
              statuses=(429,))
async def post_assistant_complaint(request: web.Request, body: ReportBody | None) -> web.StreamResponse:
    who = actor(request)
    verdict = request.app[REPORT_LIMITS].by_device.hit(f"user:{who.username}")
    if not verdict.allowed:
        return _refused(verdict, "reports")
    report, photo = await _report(request, body)
    filed = await complaints(request).file(_complaint_in(request, report, "assistant", who.username), photo,
                                           actor=who)
    resp = web.json_response({"receipt": filed.receipt, "id": filed.complaint_id}, status=201)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@routes.route("GET", "/api/complaints", "The triage queue of your stations (an assistant: its own reports)",
              roles=READERS, tag="complaints", query=QueueQuery)
async def get_complaints(request: web.Request, _: None) -> list[dict[str, Any]]:
    q = query_of(request, QueueQuery)
    return await request.app[COMPLAINT_VIEWS].queue(actor(request), q.state, q.limit)


@routes.route("GET", "/api/complaints/{id}", "One report", roles=READERS, tag="complaints")
async def get_complaint(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[COMPLAINT_VIEWS].detail(_int(request), actor(request))


@routes.route("GET", "/api/complaints/{id}/photo", "A report's photo (re-encoded JPEG, no metadata)",
              roles=READERS, tag="complaints", produces=IMAGE)
async def get_complaint_photo(request: web.Request, _: None) -> web.StreamResponse:
    return stored_image(*await request.app[COMPLAINT_VIEWS].photo(_int(request), actor(request)))


@routes.route("POST", "/api/complaints/{id}/accept", "Accept a report: it becomes a hazard (category, unit)",
              roles=OFFICERS, body=AcceptBody, tag="complaints")
async def post_accept(request: web.Request, body: AcceptBody) -> dict[str, Any]:
    return await complaints(request).accept(_int(request), actor(request), category=body.category,
                                            unit_id=body.unit_id, severity=body.severity,
                                            description=body.description, attach_photo=body.attach_photo)


@routes.route("POST", "/api/complaints/{id}/reject", "Reject a report with a reason (the reporter reads it)",
              roles=OFFICERS, body=RejectBody, tag="complaints")
async def post_reject(request: web.Request, body: RejectBody) -> dict[str, Any]:
    return await complaints(request).reject(_int(request), actor(request), body.reason)
