"""HTTP API of hazard supervision and evaluation (`routes`, served by console.web with the console's others).

Officers act; units see their own hazards/notices and upload proof; the assessor reads; the admin
(supervisor) approves penalties. Uploads are multipart, size-limited, and checked by their bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from pydantic import Field

from console.api import _Body, _int, _limit, actor, supervisor
from console.appkeys import (
    CAMERAS,
    CLOCK,
    CONFIG,
    DB,
    DOCUMENTS,
    HAZARD_VIEWS,
    HAZARDS,
    HEAVY,
    INCIDENTS,
    KPI_INDEX,
    KPI_TARGETS,
    PENALTIES,
)
from console.routing import APPROVERS, OFFICERS, STAFF, Count, Query, RouteTable, error, query_of
from dispatch import documents, kpi, queries
from dispatch.document_pdf import RenderPdf
from dispatch.errors import BadRequest, NotFound
from dispatch.hazard_cases import HazardCases
from dispatch.hazard_uploads import Upload
from dispatch.hazard_views import HazardViews
from dispatch.hazards import STAGES, hazards_config
from dispatch.kpi_index import Answer
from dispatch.kpi_targets import EVERY_OFFICER
from dispatch.penalties import Penalties
from dispatch.roles import with_power
from dispatch.state import TransitionError
from dispatch.views import iso
from ingest.contract import check_text
from ingest.integrity import IntegrityError

routes = RouteTable()
log = logging.getLogger(__name__)
SUPERVISION = frozenset({*STAFF, "agency"})  # staff, and an overseeing agency (the fire-rescue brigade) reading
READERS = frozenset({*SUPERVISION, "unit"})
TARGET_SETTERS = with_power("targets")
MAX_FIELD = 4000  # bytes read of one text field
MAX_NOTE = 2000  # characters of a note, as in the JSON bodies
PDF = ("application/pdf",)
IMAGES = ("image/jpeg", "image/png", "image/webp")
_FILES = {"type": "array", "items": {"type": "string", "format": "binary"},
          "description": "JPEG, PNG or WebP images (judged by their bytes), each within hazards.max_upload_bytes."}
_NOTE = {"type": "string", "maxLength": MAX_NOTE}
EVIDENCE_UPLOAD: dict[str, Any] = {
    "type": "object", "required": ["files"],
    "properties": {"stage": {"type": "string", "enum": list(STAGES), "default": "before"}, "note": _NOTE,
                   "files": {**_FILES, "minItems": 1}},
}
PROOF_UPLOAD: dict[str, Any] = {
    "type": "object", "description": "At least a photo or a note.",
    "properties": {"note": _NOTE, "files": _FILES},
}


class PeriodQuery(Query):
    period: str = Field("", pattern=r"^([0-9]{4}(-(0[1-9]|1[0-2])|-[Qq][1-4])?)?$",
                        description="2026-11, 2026-Q4 or 2026 (default: this month).")
    from_: str = Field("", alias="from", max_length=40, description="Start date (YYYY-MM-DD) or ISO datetime.")
    to: str = Field("", max_length=40, description="End date (inclusive) or ISO datetime.")


class HazardsQuery(PeriodQuery):
    status: Literal["open", "all", "notice_issued", "proof_submitted", "recheck_due", "penalty", "closed"] = "open"
    unit_id: str = Field("", max_length=64)
    category: str = Field("", max_length=40)
    severity: str = Field("", max_length=20)
    q: str = Field("", max_length=200, description="Text to look for.")
    limit: Count = 200


class SearchQuery(PeriodQuery):
    type: Literal["all", "incidents", "hazards"] = "all"
    q: str = Field("", max_length=200, description="Text to look for.")
    unit_id: str = Field("", max_length=64)
    status: str = Field("", max_length=40, description="all (default), open, or an incident/hazard status.")
    category: str = Field("", max_length=40)
    severity: str = Field("", max_length=20)
    limit: Count = 200


def hazards(request: web.Request) -> HazardCases:
    return request.app[HAZARDS]


def penalties(request: web.Request) -> Penalties:
    return request.app[PENALTIES]


def views(request: web.Request) -> HazardViews:
    return request.app[HAZARD_VIEWS]


class HazardBody(_Body):
    unit_id: str = Field(..., min_length=1, max_length=64, description="The unit where the hazard is.")
    category: str = Field(..., min_length=1, max_length=40, description="Category key from /api/hazards/config.")
    source: Literal["patrol", "inspection", "detection"] = Field("inspection", description="How it was found.")
    severity: Literal["general", "major"] | None = None
    description: str = Field("", max_length=2000)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    camera_id: str | None = Field(None, max_length=64, description="Camera of a video patrol/detection.")
    zone: str | None = Field(None, max_length=64)


class PatrolBody(_Body):
    category: str = Field(..., min_length=1, max_length=40, description="Category key from /api/hazards/config.")
    severity: Literal["general", "major"] | None = None
    description: str = Field("", max_length=2000)
    zone: str | None = Field(None, max_length=64, description="Exit zone or area seen, if any.")


class NoticeBody(_Body):
    deadline: datetime | None = Field(None, description="ISO-8601 with zone; default now + category days.")
    days: int | None = Field(None, ge=1, le=365, description="Days to the deadline (at least 1; a violation "
                             "corrected on the spot gets an order to correct at once instead: immediate).")
    clauses: list[str] | None = Field(None, max_length=20, description="Law-clause keys; default per category.")
    requirement: str | None = Field(None, max_length=2000)
    immediate: bool = Field(False, description="责令立即改正通知书: the violation was corrected on the spot; no "
                            "deadline or days; the case closes as rectified.")
    basis: list[str] | None = Field(None, max_length=5, description="With immediate: the item-level clause keys the "
                                    "order rests on (each must cover the violation; default: the category's).")


class RecheckBody(_Body):
    rectified: bool
    note: str = Field("", max_length=2000)


class NoteBody(_Body):
    note: str = Field("", max_length=2000)


class StatementBody(_Body):
    statement: Literal["stated", "waived"] = Field(
        ..., description="stated: the party's statement and defence (or hearing) was heard; waived: the party "
                         "waived it (陈述申辩).")
    note: str = Field("", max_length=2000, description="What the party stated (required when stated).")


class ConfirmBody(_Body):
    target: Literal["unit", "individual"] | None = Field(None, description="单位 or 个人 (default: as proposed).")
    kind: Literal["fine", "warning"] | None = Field(None, description="罚款 or 警告 (default: as proposed).")
    amount_yuan: int | None = Field(None, ge=0, le=10_000_000,
                                    description="A fine's amount: within the cited clause's range.")
    person_name: str | None = Field(None, max_length=100, description="The penalised individual's name.")
    person_id: str | None = Field(None, pattern=r"^([0-9]{17}[0-9Xx])?$",
                                  description="The individual's resident identity card number (18 characters).")
    clauses: list[str] | None = Field(None, max_length=5, description="Penalty clause keys from /api/hazards/config "
                                      "(default: the category's clause that allows this penalty).")


class TargetsQuery(Query):
    month: str = Field("", pattern=r"^([0-9]{4}-(0[1-9]|1[0-2]))?$", description="2026-11 (default: every month).")


class TargetBody(_Body):
    month: str = Field(..., pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="The month (YYYY-MM, China time); "
                       "one that has ended can no longer be changed.")
    scope: Literal["officer", "station"] = Field(
        "officer", description="officer: one officer's (or every officer's) target; station: the station's total.")
    officer: str = Field("", max_length=64, pattern=r"^[^\s]*$",
                         description=f"The officer's login, {EVERY_OFFICER!r} for every officer without one of their "
                                     "own; empty for the station.")
    metric: Literal["inspections", "notices_issued", "rechecks_done"] = Field(
        ..., description="What is counted (dispatch.kpi_targets.METRICS).")
    target: int | None = Field(..., ge=1, le=100_000, description="Expected count in the month; null removes it.")


async def read_uploads(request: web.Request) -> tuple[dict[str, str], list[Upload]]:
    """Multipart form: text fields and image files, within the configured limits (413 beyond)."""
    cfg = hazards_config(request.app[CONFIG])
    limit = cfg.max_upload_bytes * cfg.max_files_per_upload + 64 * 1024
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length,
                                            text=f"upload larger than {limit} bytes")
    if not request.content_type.startswith("multipart/form-data"):
        raise BadRequest("send multipart/form-data (fields and image files)")
    fields: dict[str, str] = {}
    files: list[Upload] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart is not accepted")
        if part.filename is None:
            raw = await part.read_chunk(MAX_FIELD + 1)
            if len(raw) > MAX_FIELD:
                raise BadRequest(f"field {part.name!r} longer than {MAX_FIELD} bytes")
            try:
                text = raw.decode("utf-8").strip()
                check_text(text)
            except UnicodeDecodeError:
                raise BadRequest(f"field {part.name!r} is not UTF-8") from None
            except ValueError as exc:
                raise BadRequest(f"field {part.name!r}: {exc}") from None
            if len(text) > MAX_NOTE:
                raise BadRequest(f"field {part.name!r} longer than {MAX_NOTE} characters")
            fields[part.name or ""] = text
            continue
        if len(files) >= cfg.max_files_per_upload:
            raise BadRequest(f"at most {cfg.max_files_per_upload} files per upload")
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data.extend(chunk)
            if len(data) > cfg.max_upload_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=cfg.max_upload_bytes, actual_size=len(data),
                                                    text=f"{part.filename} larger than {cfg.max_upload_bytes} bytes")
        files.append(Upload(part.filename[:200], part.headers.get("Content-Type", ""), bytes(data)))
    return fields, files


# ------------------------------------------------------------------ hazards

@routes.route("GET", "/api/hazards/config", "Hazard categories, law clauses, penalty rules", roles=READERS,
              tag="hazards")
async def get_hazard_config(request: web.Request, _: None) -> dict[str, Any]:
    return views(request).config_view()


@routes.route("GET", "/api/hazards", "List hazards", roles=READERS, tag="hazards", query=HazardsQuery)
async def get_hazards(request: web.Request, _: None) -> list[dict[str, Any]]:
    q = request.query
    start, end = _range(request)
    return await views(request).list_hazards(
        actor(request), status=q.get("status", "open"), unit_id=q.get("unit_id") or None,
        category=q.get("category") or None, severity=q.get("severity") or None, q=q.get("q") or None,
        start=start, end=end, limit=_limit(request))


@routes.route("POST", "/api/hazards", "Create a hazard (patrol, inspection)", roles=OFFICERS, body=HazardBody,
              tag="hazards")
async def post_hazard(request: web.Request, body: HazardBody) -> dict[str, Any]:
    return await hazards(request).create(
        unit_id=body.unit_id, category=body.category, source=body.source, actor=actor(request),
        description=body.description, severity=body.severity, lat=body.lat, lon=body.lon, camera_id=body.camera_id,
        zone=body.zone)


@routes.route("POST", "/api/cameras/{camera_id}/patrol-hazard", "Record a hazard seen on a live view (video patrol)",
              roles=OFFICERS, body=PatrolBody, tag="hazards")
async def post_patrol_hazard(request: web.Request, body: PatrolBody) -> dict[str, Any]:
    """One action from a live view: the camera's current frame becomes the hazard's evidence."""
    camera_id = request.match_info["camera_id"]
    camera = next((c for c in request.app[CONFIG].cameras if c.id == camera_id), None)
    if camera is None:
        raise NotFound(f"unknown camera {camera_id!r}")
    frame = await request.app[CAMERAS].snapshot(camera_id)
    if frame is None:
        raise TransitionError(f"camera {camera_id} has no picture right now; cannot take the snapshot")
    return await hazards(request).create(
        unit_id=camera.unit_id, category=body.category, source="patrol", actor=actor(request),
        description=body.description, severity=body.severity, camera_id=camera_id, zone=body.zone,
        camera_visible=True, photos=[Upload(f"{camera_id}-patrol.jpg", "image/jpeg", frame.data)])


@routes.route("GET", "/api/hazards/{id}", "Get a hazard with its timeline and evidence", roles=READERS, tag="hazards")
async def get_hazard(request: web.Request, _: None) -> dict[str, Any]:
    return await views(request).detail(_int(request), actor(request))


@routes.route("POST", "/api/hazards/{id}/evidence", "Attach photos (multipart: stage, note, files)", roles=OFFICERS,
              tag="hazards", upload=EVIDENCE_UPLOAD)
async def post_evidence(request: web.Request, _: None) -> list[dict[str, Any]]:
    fields, files = await read_uploads(request)
    return await hazards(request).add_evidence(_int(request), fields.get("stage", "before"), files,
                                               fields.get("note", ""), actor(request))


@routes.route("POST", "/api/hazards/{id}/notice", "Issue a rectification notice", roles=OFFICERS, body=NoticeBody,
              tag="hazards")
async def post_notice(request: web.Request, body: NoticeBody) -> dict[str, Any]:
    h = await hazards(request).issue_notice(_int(request), actor(request), deadline=body.deadline,
                                            days=body.days, clauses=body.clauses, requirement=body.requirement,
                                            immediate=body.immediate, basis=body.basis)
    await _seal(request, h["id"])
    return h


@routes.route("POST", "/api/hazards/{id}/proof", "Upload rectification proof (multipart: note, files)",
              roles=frozenset({*OFFICERS, "unit"}), tag="hazards", upload=PROOF_UPLOAD)
async def post_proof(request: web.Request, _: None) -> dict[str, Any]:
    fields, files = await read_uploads(request)
    return await hazards(request).submit_proof(_int(request), fields.get("note", ""), files, actor(request))


@routes.route("POST", "/api/hazards/{id}/recheck", "Record a recheck", roles=OFFICERS, body=RecheckBody, tag="hazards")
async def post_recheck(request: web.Request, body: RecheckBody) -> dict[str, Any]:
    h = await hazards(request).recheck(_int(request), body.rectified, body.note, actor(request))
    await _seal(request, h["id"])  # the recheck opinion signed with it
    return h


@routes.route("POST", "/api/hazards/{id}/withdraw", "Withdraw an open hazard (no hazard after all)", roles=OFFICERS,
              body=NoteBody, tag="hazards")
async def post_withdraw(request: web.Request, body: NoteBody) -> dict[str, Any]:
    return await hazards(request).withdraw(_int(request), body.note, actor(request))


@routes.route("POST", "/api/hazards/{id}/penalty", "Propose a penalty for an overdue hazard", roles=OFFICERS,
              tag="hazards")
async def post_propose(request: web.Request, _: None) -> dict[str, Any]:
    return await penalties(request).propose_penalty(_int(request), actor(request))


@routes.route("POST", "/api/penalties/{id}/confirm", "Confirm a proposed penalty", roles=OFFICERS, body=ConfirmBody,
              tag="hazards")
async def post_confirm(request: web.Request, body: ConfirmBody) -> dict[str, Any]:
    p = await penalties(request).confirm_penalty(_int(request), actor(request), target=body.target,
                                                 kind=body.kind, amount_yuan=body.amount_yuan,
                                                 person_name=body.person_name, person_id=body.person_id,
                                                 clauses=body.clauses)
    await _seal(request, p["hazard_id"])  # the 告知书 served with the confirmation
    return p


@routes.route("POST", "/api/penalties/{id}/refer",
              "Refer a proposed penalty beyond the station's authority to the fire-rescue authority (案件移送书)",
              roles=OFFICERS, body=ConfirmBody, tag="hazards")
async def post_refer(request: web.Request, body: ConfirmBody) -> dict[str, Any]:
    return await penalties(request).refer_case(_int(request), actor(request), target=body.target, kind=body.kind,
                                               amount_yuan=body.amount_yuan, person_name=body.person_name,
                                               person_id=body.person_id, clauses=body.clauses)


@routes.route("POST", "/api/referrals/{id}/approve", "Approve a case referral (supervisor; seals the 案件移送书)",
              roles=APPROVERS, tag="hazards")
async def post_approve_referral(request: web.Request, _: None) -> dict[str, Any]:
    r = await penalties(request).approve_referral(_int(request), actor(request))
    await _seal(request, r["hazard_id"])  # the 案件移送书 now carries the seal
    return r


@routes.route("POST", "/api/penalties/{id}/approve", "Approve a penalty (supervisor)", roles=APPROVERS, tag="hazards")
async def post_approve(request: web.Request, _: None) -> dict[str, Any]:
    p = await penalties(request).approve_penalty(_int(request), actor(request))
    await _seal(request, p["hazard_id"])  # the decision now carries the seal
    return p


@routes.route("POST", "/api/penalties/{id}/close", "Record payment/closure of a penalty", roles=OFFICERS,
              body=NoteBody, tag="hazards")
async def post_close_penalty(request: web.Request, body: NoteBody) -> dict[str, Any]:
    return await penalties(request).close_penalty(_int(request), actor(request), body.note)


@routes.route("POST", "/api/penalties/{id}/statement",
              "Record the party's statement and defence (or its waiver) on the 行政处罚告知书", roles=OFFICERS,
              body=StatementBody, tag="hazards")
async def post_penalty_statement(request: web.Request, body: StatementBody) -> dict[str, Any]:
    return await penalties(request).record_statement(_int(request), actor(request), body.statement, body.note)


# ------------------------------------------------------------------ files

def _pdf(data: bytes, name: str) -> web.Response:
    return web.Response(body=data, content_type="application/pdf", headers={
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}", "Cache-Control": "no-store"})


def _renderer(request: web.Request) -> RenderPdf:
    """Layout in a worker process, bounded by the heavy-work limiter (503 when full)."""
    heavy = request.app[HEAVY]

    async def render(html: str) -> bytes:
        async with heavy.slot("PDF"):
            return await heavy.process(documents.html_to_pdf, html)
    return render


async def _render_pdf(request: web.Request, html: Callable[[], str]) -> bytes:
    """Template on a thread, layout in a worker process: bounded by the heavy-work limiter (503 when full)."""
    heavy = request.app[HEAVY]
    async with heavy.slot("PDF"):
        return await heavy.process(documents.html_to_pdf, await heavy.thread(html))


async def _seal(request: web.Request, hazard_id: int) -> None:
    """Records the PDF SHA-256 of the documents the command just sealed. The command has committed: a failure here
    (e.g. the PDF workers are busy) is logged and made up by the next download of the document."""
    try:
        await request.app[DOCUMENTS].seal(hazard_id, _renderer(request))
    except Exception:
        log.warning("sealed PDFs of hazard %s not hashed yet (recorded at their next download)", hazard_id,
                    exc_info=True)


async def _document(request: web.Request, kind: str) -> web.Response:
    data, name = await request.app[DOCUMENTS].pdf(kind, _int(request), actor(request), _renderer(request))
    return _pdf(data, name)


@routes.route("GET", "/api/notices/{id}/pdf", "Rectification notice (责令限期改正 or 责令立即改正) as PDF",
              roles=READERS, tag="hazards", produces=PDF)
async def get_notice_pdf(request: web.Request, _: None) -> web.StreamResponse:
    return await _document(request, "notice")


@routes.route("GET", "/api/recheck-opinions/{id}/pdf", "Recheck opinion (复查意见书) as PDF", roles=READERS,
              tag="hazards", produces=PDF)
async def get_opinion_pdf(request: web.Request, _: None) -> web.StreamResponse:
    return await _document(request, "opinion")


@routes.route("GET", "/api/referrals/{id}/pdf", "Case referral (案件移送书) as PDF; a draft until approved",
              roles=READERS, tag="hazards", produces=PDF)
async def get_referral_pdf(request: web.Request, _: None) -> web.StreamResponse:
    return await _document(request, "referral")


@routes.route("GET", "/api/penalties/{id}/pdf", "Penalty decision as PDF", roles=READERS, tag="hazards",
              produces=PDF)
async def get_penalty_pdf(request: web.Request, _: None) -> web.StreamResponse:
    return await _document(request, "penalty")


@routes.route("GET", "/api/penalty-notices/{id}/pdf", "Penalty notice (行政处罚告知书) as PDF", roles=READERS,
              tag="hazards", produces=PDF)
async def get_inform_pdf(request: web.Request, _: None) -> web.StreamResponse:
    return await _document(request, "inform")


@routes.route("GET", "/api/units/{unit_id}/documents",
              "Every sealed document addressed to a unit: issued and served dates, recheck results and notes "
              "(a unit sees only its own)", roles=READERS, tag="hazards")
async def get_unit_documents(request: web.Request, _: None) -> list[dict[str, Any]]:
    return await request.app[DOCUMENTS].unit_documents(request.match_info["unit_id"], actor(request))


@routes.route("GET", "/api/evidence/{id}", "Evidence photo", roles=READERS, tag="hazards", produces=IMAGES,
              statuses=(409,))
async def get_evidence(request: web.Request, _: None) -> web.StreamResponse:
    try:
        e, _unit = await views(request).evidence(_int(request), actor(request))
    except IntegrityError as exc:
        return error(409, str(exc))
    return stored_image(e.data, e.content_type, e.sha256)


def stored_image(data: bytes, content_type: str, sha256: str) -> web.Response:
    """A stored photo as served: its SHA-256 named, never sniffed or run as anything else by the browser."""
    return web.Response(body=data, content_type=content_type, headers={
        "Cache-Control": "private, max-age=3600", "X-Content-SHA256": sha256,
        "Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff"})


# ------------------------------------------------------------------ evaluation

def _range(request: web.Request) -> tuple[datetime | None, datetime | None]:
    q = query_of(request, PeriodQuery)
    if not (q.from_ or q.to or q.period):
        return None, None
    p = _period(request)
    return p.start, p.end


def _period(request: web.Request) -> kpi.Period:
    q = query_of(request, PeriodQuery)
    try:
        return kpi.parse_period(q.period or None, q.from_ or None, q.to or None, now=request.app[CLOCK]())
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _units_of(request: web.Request, stations: frozenset[str] | None) -> tuple[dict[str, str], frozenset[str] | None]:
    """(unit id → name, the unit ids to count) of these stations; (every unit, None) when nothing limits them."""
    units = request.app[INCIDENTS].core.units.values()
    if stations is None:
        return {u.id: u.name for u in units}, None
    names = {u.id: u.name for u in units if u.station_id in stations}
    return names, frozenset(names)


async def _kpis(request: web.Request, stations: frozenset[str] | None = None) -> Answer:
    """From the incrementally kept KPI facts; a new computation takes a heavy-work turn (503 when full). The KPIs
    of the caller's stations (of `stations` when given: one station's or one brigade's)."""
    core, who = request.app[INCIDENTS].core, supervisor(request)
    if stations is None:
        mine = who.stations
        every = frozenset(o.id for o in core.orgs.stations())
        stations = None if mine is None or mine >= every else mine
    units, only = _units_of(request, stations)
    period = _period(request)
    clock = request.app[CLOCK]
    if period.start > clock():
        raise BadRequest(f"the period {period.label} has not started yet: nothing in it can be scored")
    heavy = request.app[HEAVY]
    return await request.app[KPI_INDEX].kpis(period.start, period.end, period.label,
                                             hazards_config(request.app[CONFIG]), units,
                                             admit=lambda: heavy.slot("KPI"), clock=clock, only_units=only)


@routes.route("GET", "/api/kpi", "KPIs, scores and ranking (?period=2026-11|2026-Q4|2026 or ?from=&to=)",
              roles=SUPERVISION, tag="evaluation", query=PeriodQuery)
async def get_kpi(request: web.Request, _: None) -> web.StreamResponse:
    answer = await _kpis(request)  # JSON encoded once per computation, shared by every request it answers
    return web.Response(body=answer.body, content_type="application/json")


@routes.route("GET", "/api/kpi.csv", "KPIs as CSV", roles=SUPERVISION, tag="evaluation", query=PeriodQuery,
              produces=("text/csv",))
async def get_kpi_csv(request: web.Request, _: None) -> web.StreamResponse:
    result = (await _kpis(request)).result
    heavy = request.app[HEAVY]
    async with heavy.slot("export"):
        body = "\ufeff" + await heavy.thread(kpi.to_csv, result)  # BOM: Excel opens UTF-8 Chinese correctly
    return web.Response(text=body, content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote('考评-' + result['period'] + '.csv')}"})


@routes.route("GET", "/api/kpi/report.pdf", "Period evaluation report as PDF", roles=SUPERVISION, tag="evaluation",
              query=PeriodQuery, produces=PDF)
async def get_kpi_pdf(request: web.Request, _: None) -> web.StreamResponse:
    result = (await _kpis(request)).result
    cfg = request.app[CONFIG]
    hc = hazards_config(cfg)
    authority, now = hc.issuing_authority or cfg.station.name, request.app[CLOCK]()
    categories = {c.key: c.name for c in hc.categories}
    data = await _render_pdf(request, lambda: documents.report_html(result, authority, categories, now))
    return _pdf(data, f"考评报告-{result['period']}.pdf")


@routes.route("GET", "/api/kpi/stations", "Stations and brigades ranked by their period score (the caller's subtree)",
              roles=SUPERVISION, tag="evaluation", query=PeriodQuery)
async def get_kpi_stations(request: web.Request, _: None) -> dict[str, Any]:
    """Each station's and each brigade's KPIs (the station block and headline of `GET /api/kpi` computed over its
    units alone), ranked by score within their level."""
    core, who = request.app[INCIDENTS].core, supervisor(request)
    mine = who.stations if who.stations is not None else frozenset(o.id for o in core.orgs.stations())
    levels: dict[str, list[dict[str, Any]]] = {"brigade": [], "station": []}
    label = ""
    for org in sorted(core.orgs.orgs.values(), key=lambda o: o.id):
        if org.level not in levels:
            continue
        under = core.orgs.stations_under(org.id)
        if not under or not under <= mine:
            continue  # only organisations wholly within the caller's scope
        result = (await _kpis(request, under)).result
        label = result["period"]
        levels[org.level].append({"id": org.id, "name": org.name, "level": org.level, "parent_id": org.parent_id,
                                  "stations": sorted(under), "units": len(result["units"]),
                                  "score": result["station"]["score"], "station": result["station"],
                                  "headline": result["headline"]})
    for rows in levels.values():
        rows.sort(key=lambda r: (-(r["score"] if r["score"] is not None else -1), r["id"]))
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
    return {"period": label, "brigades": levels["brigade"], "stations": levels["station"]}


@routes.route("GET", "/api/hazards/map", "Hazards per unit with positions and stations, for the heat map",
              roles=SUPERVISION, tag="hazards")
async def get_hazard_map(request: web.Request, _: None) -> dict[str, Any]:
    """Every unit with hazards in the caller's scope (open and closed counts, position, station) and the totals per
    station and brigade: the heat map draws the units, the side table the organisations."""
    who = supervisor(request)
    core, counts = request.app[INCIDENTS].core, await views(request).counts(who)
    per_org: dict[str, dict[str, Any]] = {}
    for u in counts["by_unit"]:
        for org in core.orgs.ancestors(u.get("station_id") or ""):
            row = per_org.setdefault(org.id, {"id": org.id, "name": org.name, "level": org.level,
                                              "open": 0, "closed": 0})
            row["open"] += u["open"]
            row["closed"] += u["closed"]
    return {"units": counts["by_unit"], "organisations": sorted(per_org.values(), key=lambda r: (r["level"], r["id"]))}


@routes.route("GET", "/api/kpi/targets", "Volume targets of the evaluation, per month (?month=2026-11)",
              roles=SUPERVISION, tag="evaluation", query=TargetsQuery)
async def get_kpi_targets(request: web.Request, _: None) -> list[dict[str, Any]]:
    supervisor(request)
    return await request.app[KPI_TARGETS].list_targets(query_of(request, TargetsQuery).month or None)


@routes.route("PUT", "/api/kpi/targets", "Set or remove one volume target (admin; recorded in the hash chain)",
              roles=TARGET_SETTERS, body=TargetBody, tag="evaluation")
async def put_kpi_target(request: web.Request, body: TargetBody) -> dict[str, Any]:
    return await request.app[KPI_TARGETS].set_target(body.month, body.scope, body.officer, body.metric, body.target,
                                                     actor(request))


@routes.route("GET", "/api/dashboard", "Counts: active/unacknowledged incidents, open hazards", roles=SUPERVISION,
              tag="evaluation")
async def get_dashboard(request: web.Request, _: None) -> dict[str, Any]:
    core, who = request.app[INCIDENTS].core, supervisor(request)
    async with request.app[DB].session() as s:
        active, unacked = await queries.open_counts(s, who)
    return {"incidents": {"active": active, "unacknowledged": unacked}, "hazards": await views(request).counts(who),
            "units": sum(1 for u in core.units.values() if who.sees_unit(u.id, u.station_id))}


@routes.route("GET", "/api/search", "Search incidents and hazards (?type=&q=&unit_id=&status=&from=&to=)",
              roles=SUPERVISION, tag="evaluation", query=SearchQuery)
async def get_search(request: web.Request, _: None) -> dict[str, Any]:
    who = supervisor(request)
    q = request.query
    kind = query_of(request, SearchQuery).type
    start, end = _range(request)
    text = (q.get("q") or "").strip()
    unit_id = q.get("unit_id") or None
    status = q.get("status") or "all"
    limit = max(1, min(_limit(request), 500))
    out: dict[str, Any] = {"incidents": [], "hazards": []}
    core = request.app[INCIDENTS].core
    if kind in ("all", "incidents"):
        units = tuple(u.id for u in core.units.values() if text and (text in u.name or text in u.address))
        search = queries.IncidentSearch(text, units, unit_id, status, start, end, limit)
        async with request.app[DB].session() as s:
            rows = await queries.search_incidents(s, search, who)
        out["incidents"] = [{"id": i.id, "unit_id": i.unit_id, "unit_name": core.units[i.unit_id].name,
                             "kind": i.kind, "status": i.status, "outcome": i.outcome, "opened_at": iso(i.opened_at),
                             "acknowledged_by": i.acknowledged_by, "closed_at": iso(i.closed_at)} for i in rows]
    if kind in ("all", "hazards"):
        out["hazards"] = await views(request).list_hazards(
            who, status=status if status != "" else "all", unit_id=unit_id,
            category=q.get("category") or None, severity=q.get("severity") or None, q=text or None,
            start=start, end=end, limit=limit)
    return out
