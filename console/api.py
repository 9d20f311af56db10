"""HTTP API of the console: session, incidents, dispatches, admin and meta routes (`routes`, served by console.web).

Every route declares its roles, parameters and statuses (console.routing)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, Field

from config import alarm_kinds
from config.alarm_kinds import AnyKind, DeviceKind
from config.schema import AgencyKey
from console.appkeys import CLOCK, CONFIG, HEALTH, INCIDENTS, LOGIN_THROTTLE, ROUTES, SOCKETS, WRITER
from console.routing import (
    EVERYONE,
    OFFICERS,
    PATH_PARAMS_KEY,
    QUERY_KEY,
    SIGNED_IN,
    STAFF,
    Count,
    Query,
    Route,
    RouteTable,
    error,
    openapi,
    query_of,
)
from console.security import ACTOR, COOKIE, SESSION, client_address, secure_cookie
from dispatch.actor import Actor
from dispatch.auth import AuthBusy, AuthError, login, logout
from dispatch.errors import Forbidden, NotFound
from dispatch.login_throttle import retry_after_header
from dispatch.queries import IncidentFilter
from dispatch.roles import powers_of
from ingest.contract import AlarmIn, InputModel

log = logging.getLogger(__name__)
routes = RouteTable()


class _Body(InputModel):
    pass


class LoginBody(_Body):
    username: str = Field(..., min_length=1, max_length=64)
    password: str = Field(..., min_length=1, max_length=256)


class DispatchBody(_Body):
    agencies: list[AgencyKey] = Field(
        ..., min_length=1, max_length=32,
        description="Keys of configured agencies to link out (GET /api/me: agencies), e.g. [\"fire\",\"medical\"].")


class CloseBody(_Body):
    outcome: Literal["resolved", "false_alarm"]
    note: str = Field("", max_length=2000)


class MessageBody(_Body):
    text: str = Field(..., min_length=1, max_length=2000, description="Instruction or reply.")


class PressBody(_Body):
    kind: DeviceKind = "one_key"
    note: str = Field("", max_length=2000)


class EmptyBody(_Body):
    pass


class DispatchesQuery(Query):
    state: Literal["open", "all"] = Field("open", description="Which dispatches.")


class LimitQuery(Query):
    limit: Count = 200


def actor(request: web.Request) -> Actor:
    a: Actor = request[ACTOR]
    return a


def supervisor(request: web.Request) -> Actor:
    """The caller of a supervision read: staff, or an agency that oversees stations (403 for one that does not)."""
    who = actor(request)
    if who.role == "agency" and not who.stations:
        raise Forbidden("this agency does not oversee stations' supervision work")
    return who


def _int(request: web.Request, name: str = "id") -> int:
    """A numeric path parameter, validated by the route table (1 to 2**31-1)."""
    return int(request[PATH_PARAMS_KEY][name])


def _limit(request: web.Request) -> int:
    """The validated `limit` of the route's query model."""
    return int(getattr(request[QUERY_KEY], "limit", 200))


def user_json(a: Actor) -> dict[str, Any]:
    """The user as pages see it: `can` lists its powers (dispatch.roles), which decide the buttons shown."""
    return {"username": a.username, "role": a.role, "unit_id": a.unit_id, "agency": a.agency,
            "real_name": a.real_name, "badge": a.badge, "org_id": a.org_id, "can": powers_of(a.role)}


# --------------------------------------------------------------- session

@routes.route("POST", "/api/login", "Log in", roles=None, body=LoginBody, tag="session", statuses=(401, 429, 503))
async def post_login(request: web.Request, body: LoginBody) -> web.StreamResponse:
    """Throttled per account and per client address (429 + Retry-After while locked, the right password too)."""
    cfg = request.app[CONFIG]
    throttle = request.app[LOGIN_THROTTLE]
    address = client_address(request)
    wait = throttle.retry_after(body.username, address)
    if wait > 0:
        log.warning("login refused while locked: %r from %s (retry in %s s)", body.username[:64], address,
                    retry_after_header(wait))
        return _too_many(wait)
    try:
        token, sess = await login(request.app[WRITER], body.username, body.password,
                                  timedelta(hours=cfg.console.session_hours), request.app[CLOCK](), address)
    except AuthBusy:
        log.warning("login from %s refused: too many password checks queued", address)
        return _too_many(1.0, "too many logins in progress; try again shortly")
    except AuthError as exc:
        lock = throttle.failed(body.username, address)
        log.warning("failed login for %r from %s%s", body.username[:64], address,
                    f" (locked for {retry_after_header(lock)} s)" if lock else "")
        return error(401, str(exc))
    throttle.succeeded(body.username)
    resp = web.json_response({"csrf_token": sess.csrf_token, "user": user_json(sess.actor)})
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=secure_cookie(request),
                    max_age=cfg.console.session_hours * 3600, path="/")
    return resp


def _too_many(seconds: float, message: str | None = None) -> web.Response:
    retry = retry_after_header(seconds)
    resp = error(429, message or f"too many failed logins; try again in {retry} s", retry_after=int(retry))
    resp.headers["Retry-After"] = retry
    return resp


@routes.route("POST", "/api/logout", "Log out", roles=SIGNED_IN, tag="session")
async def post_logout(request: web.Request, _: None) -> web.StreamResponse:
    token = request.cookies.get(COOKIE)
    if token:
        await logout(request.app[WRITER], token, actor(request), request.app[CLOCK]())
        await request.app[SOCKETS].close_session(token)
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


def _org_json(request: web.Request, who: Actor) -> dict[str, Any] | None:
    """The user's organisation and the stations it sees (None for a unit's or agency system's login)."""
    tree = request.app[INCIDENTS].core.orgs
    org = tree.orgs.get(who.org_id or "") or (tree.orgs.get(request.app[CONFIG].station.id)
                                               if who.role not in ("unit", "agency") else None)
    if org is None:
        return None
    return {"id": org.id, "name": org.name, "level": org.level,
            "stations": sorted(who.stations) if who.stations is not None else None}


@routes.route("GET", "/api/me", "Who am I", roles=SIGNED_IN, tag="session")
async def get_me(request: web.Request, _: None) -> dict[str, Any]:
    sess = request.get(SESSION)
    cfg = request.app[CONFIG]
    return {"user": user_json(actor(request)), "csrf_token": sess.csrf_token if sess else None,
            "station": {"id": cfg.station.id, "name": cfg.station.name},
            "org": _org_json(request, actor(request)),
            # reads the stations' supervision work (hazards, documents, KPIs): staff, and an overseeing agency
            "supervision": actor(request).role != "unit" and bool(actor(request).stations),
            # in the configured order: the console's dispatch buttons and the labels of every page come from here
            "agencies": {k: {"name": a.name, "phone": a.phone, "label": a.labels().model_dump()}
                         for k, a in cfg.agencies.items()},
            "alarm_kinds": [k.to_json() for k in alarm_kinds.KINDS],
            "escalation": {"ack_timeout_s": cfg.escalation.ack_timeout_s},
            # the server's clock: pages compute "today", periods and running timers from it
            "now": request.app[CLOCK]().isoformat()}


# ------------------------------------------------------------- incidents

class IncidentQuery(Query):
    """Query parameters of GET /api/incidents (the queue and the history search)."""

    state: Literal["open", "closed", "all"] = "open"
    unit_id: str | None = Field(None, min_length=1, max_length=64)
    kind: AnyKind | None = None
    outcome: Literal["resolved", "false_alarm"] | None = None
    since: AwareDatetime | None = Field(None, description="Opened at or after (ISO 8601 with a zone).")
    until: AwareDatetime | None = Field(None, description="Opened before (ISO 8601 with a zone).")
    limit: Count = 200


@routes.route("GET", "/api/incidents", "List incidents (open: urgency order; closed/all: history, filtered)",
              roles=EVERYONE, query=IncidentQuery)
async def get_incidents(request: web.Request, _: None) -> web.StreamResponse | list[dict[str, Any]]:
    q = query_of(request, IncidentQuery)
    service = request.app[INCIDENTS]
    if q.unit_id is not None and q.unit_id not in service.core.units:
        return error(400, f"unknown unit {q.unit_id!r}")
    if q.since is not None and q.until is not None and q.until <= q.since:
        return error(400, "until must be after since")
    return await service.views.list_incidents(actor(request), IncidentFilter(
        state=q.state, unit_id=q.unit_id, kind=q.kind, outcome=q.outcome, since=q.since, until=q.until,
        limit=q.limit))


@routes.route("GET", "/api/incidents/{id}", "Get an incident with its timeline", roles=EVERYONE)
async def get_incident(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[INCIDENTS].views.incident_detail(_int(request), actor(request))


@routes.route("POST", "/api/incidents/{id}/ack", "Acknowledge an incident", roles=OFFICERS)
async def post_ack(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[INCIDENTS].commands.acknowledge(_int(request), actor(request))


@routes.route("POST", "/api/incidents/{id}/dispatch", "Link out agencies", roles=OFFICERS, body=DispatchBody)
async def post_dispatch(request: web.Request, body: DispatchBody) -> dict[str, Any]:
    return await request.app[INCIDENTS].commands.dispatch(_int(request), body.agencies, actor(request))


@routes.route("POST", "/api/incidents/{id}/on_scene", "Mark on scene", roles=OFFICERS)
async def post_on_scene(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[INCIDENTS].commands.on_scene(_int(request), actor(request))


@routes.route("POST", "/api/incidents/{id}/close", "Close an incident", roles=OFFICERS, body=CloseBody)
async def post_close(request: web.Request, body: CloseBody) -> dict[str, Any]:
    return await request.app[INCIDENTS].commands.close(_int(request), body.outcome, body.note, actor(request))


@routes.route("POST", "/api/incidents/{id}/messages", "Send an instruction or reply",
              roles=frozenset({*OFFICERS, "unit"}), body=MessageBody)
async def post_message(request: web.Request, body: MessageBody) -> dict[str, Any]:
    return await request.app[INCIDENTS].commands.add_message(_int(request), body.text, actor(request))


@routes.route("POST", "/api/units/{unit_id}/alarm", "Press the one-key alarm",
              roles=frozenset({*OFFICERS, "unit"}), body=PressBody)
async def post_press(request: web.Request, body: PressBody) -> dict[str, Any]:
    who = actor(request)
    unit_id = request.match_info["unit_id"]
    service = request.app[INCIDENTS]
    if who.role == "unit" and who.unit_id != unit_id:
        raise Forbidden("a unit may press only its own alarm")
    if unit_id not in service.core.units:
        raise NotFound(f"unknown unit {unit_id!r}")
    alarm_id = f"web-{uuid.uuid4().hex}"
    await service.intake.ingest([AlarmIn(alarm_id=alarm_id, unit_id=unit_id, kind=body.kind, source="web",
                                  received_at=request.app[CLOCK](), device_id=None,
                                  note=body.note or f"pressed by {who.username}",
                                  topic=request.path)])
    open_inc = service.core.open_by_unit.get(unit_id)
    return {"alarm_id": alarm_id, "incident_id": open_inc.incident_id if open_inc else None}


# ------------------------------------------------------------- dispatches

@routes.route("GET", "/api/dispatches", "List dispatches", roles=frozenset({*STAFF, "agency"}), tag="agency",
              query=DispatchesQuery)
async def get_dispatches(request: web.Request, _: None) -> list[dict[str, Any]]:
    q = query_of(request, DispatchesQuery)
    return await request.app[INCIDENTS].views.list_dispatches(actor(request), q.state)


@routes.route("POST", "/api/dispatches/{id}/ack", "Agency acknowledges a dispatch",
              roles=frozenset({*OFFICERS, "agency"}), tag="agency")
async def post_dispatch_ack(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[INCIDENTS].deliveries.agency_update(_int(request), "acknowledged", actor(request))


@routes.route("POST", "/api/dispatches/{id}/on_scene", "Agency reports arrival on scene",
              roles=frozenset({*OFFICERS, "agency"}), tag="agency")
async def post_dispatch_on_scene(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[INCIDENTS].deliveries.agency_update(_int(request), "on_scene", actor(request))


# ------------------------------------------------------------------ admin

@routes.route("GET", "/api/admin/rejections", "List rejected input", roles=frozenset({"admin"}), tag="admin",
              query=LimitQuery)
async def get_rejections(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[INCIDENTS].views.list_rejections(_limit(request))


@routes.route("GET", "/healthz", "Health", roles=None, tag="meta", statuses=(503,))
async def healthz(request: web.Request, _: None) -> web.StreamResponse:
    """The truth about the alarm path, checked now; 503 when the database or the MQTT intake is down."""
    monitor = request.app[HEALTH]
    body = await monitor.check()
    return web.json_response(body, status=monitor.http_status(body))


@routes.route("GET", "/api/openapi.json", "OpenAPI document", roles=None, tag="meta")
async def get_openapi(request: web.Request, _: None) -> dict[str, Any]:
    served: list[Route] = request.app[ROUTES]
    return openapi(served, "Firelink API", "1")

