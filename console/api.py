"""HTTP API of the console. Every route declares its roles in the route table (console.routing)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from console.routing import EVERYONE, OFFICERS, ApiRouter, error, openapi
from console.security import ACTOR, COOKIE, SESSION
from console.ws import SOCKETS
from dispatch.appkeys import CONFIG, DB, SERVICE, WRITER
from dispatch.auth import AuthError, login, logout
from dispatch.health import HEALTH
from dispatch.inputs import Actor, AlarmIn, InputModel, utcnow
from dispatch.service import BadRequest, Forbidden, NotFound

log = logging.getLogger(__name__)
api = ApiRouter()


class _Body(InputModel):
    pass


class LoginBody(_Body):
    username: str = Field(..., min_length=1, max_length=64)
    password: str = Field(..., min_length=1, max_length=256)


class DispatchBody(_Body):
    agencies: list[Literal["fire", "medical"]] = Field(..., min_length=1, max_length=2,
                                                       description="Agencies to link out, e.g. [\"fire\",\"medical\"].")


class CloseBody(_Body):
    outcome: Literal["resolved", "false_alarm"]
    note: str = Field("", max_length=2000)


class MessageBody(_Body):
    text: str = Field(..., min_length=1, max_length=2000, description="Instruction or reply.")


class PressBody(_Body):
    kind: Literal["one_key", "smoke", "heat", "manual_call_point", "gas", "other"] = "one_key"
    note: str = Field("", max_length=2000)


class EmptyBody(_Body):
    pass


def actor(request: web.Request) -> Actor:
    a: Actor = request[ACTOR]
    return a


def _int(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    if value < 1:
        raise web.HTTPBadRequest(text=f"{name} must be positive")
    return value


def _limit(request: web.Request) -> int:
    try:
        return int(request.query.get("limit", "200"))
    except ValueError:
        raise BadRequest("limit must be an integer") from None


def user_json(a: Actor) -> dict[str, Any]:
    return {"username": a.username, "role": a.role, "unit_id": a.unit_id, "agency": a.agency}


# --------------------------------------------------------------- session

@api.route("POST", "/api/login", "Log in", roles=None, body=LoginBody, tag="session")
async def post_login(request: web.Request, body: LoginBody) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    try:
        token, sess = await login(request.app[DB], body.username, body.password,
                                  timedelta(hours=cfg.console.session_hours))
    except AuthError as exc:
        log.warning("failed login for %r from %s", body.username[:64], request.remote)
        return error(401, str(exc))
    await request.app[WRITER].note("user.login", sess.actor, utcnow(), {"remote": request.remote or ""})
    resp = web.json_response({"csrf_token": sess.csrf_token, "user": user_json(sess.actor)})
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=cfg.console.secure_cookies,
                    max_age=cfg.console.session_hours * 3600, path="/")
    return resp


@api.route("POST", "/api/logout", "Log out", roles=EVERYONE, tag="session")
async def post_logout(request: web.Request, _: None) -> web.StreamResponse:
    token = request.cookies.get(COOKIE)
    if token:
        await logout(request.app[DB], token)
        await request.app[SOCKETS].close_session(token)
        await request.app[WRITER].note("user.logout", actor(request), utcnow())
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


@api.route("GET", "/api/me", "Who am I", roles=EVERYONE, tag="session")
async def get_me(request: web.Request, _: None) -> dict[str, Any]:
    sess = request.get(SESSION)
    cfg = request.app[CONFIG]
    return {"user": user_json(actor(request)), "csrf_token": sess.csrf_token if sess else None,
            "station": {"id": cfg.station.id, "name": cfg.station.name},
            "agencies": {k: {"name": a.name, "phone": a.phone} for k, a in cfg.agencies.items()},
            "escalation": {"ack_timeout_s": cfg.escalation.ack_timeout_s}}


# ------------------------------------------------------------- incidents

@api.route("GET", "/api/units", "List units", roles=frozenset({"admin", "duty_officer", "assessor", "unit"}))
async def get_units(request: web.Request, _: None) -> list[dict[str, Any]]:
    return await request.app[SERVICE].list_units(actor(request))


@api.route("GET", "/api/incidents", "List incidents", roles=EVERYONE)
async def get_incidents(request: web.Request, _: None) -> list[dict[str, Any]]:
    return await request.app[SERVICE].list_incidents(actor(request), request.query.get("state", "open"),
                                                     _limit(request))


@api.route("GET", "/api/incidents/{id}", "Get an incident with its timeline", roles=EVERYONE)
async def get_incident(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[SERVICE].incident_detail(_int(request), actor(request))


@api.route("POST", "/api/incidents/{id}/ack", "Acknowledge an incident", roles=OFFICERS)
async def post_ack(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[SERVICE].acknowledge(_int(request), actor(request))


@api.route("POST", "/api/incidents/{id}/dispatch", "Link out agencies", roles=OFFICERS, body=DispatchBody)
async def post_dispatch(request: web.Request, body: DispatchBody) -> dict[str, Any]:
    return await request.app[SERVICE].dispatch(_int(request), body.agencies, actor(request))


@api.route("POST", "/api/incidents/{id}/on_scene", "Mark on scene", roles=OFFICERS)
async def post_on_scene(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[SERVICE].on_scene(_int(request), actor(request))


@api.route("POST", "/api/incidents/{id}/close", "Close an incident", roles=OFFICERS, body=CloseBody)
async def post_close(request: web.Request, body: CloseBody) -> dict[str, Any]:
    return await request.app[SERVICE].close(_int(request), body.outcome, body.note, actor(request))


@api.route("POST", "/api/incidents/{id}/messages", "Send an instruction or reply",
           roles=frozenset({"admin", "duty_officer", "unit"}), body=MessageBody)
async def post_message(request: web.Request, body: MessageBody) -> dict[str, Any]:
    return await request.app[SERVICE].add_message(_int(request), body.text, actor(request))


@api.route("POST", "/api/units/{unit_id}/alarm", "Press the one-key alarm",
           roles=frozenset({"admin", "duty_officer", "unit"}), body=PressBody)
async def post_press(request: web.Request, body: PressBody) -> dict[str, Any]:
    who = actor(request)
    unit_id = request.match_info["unit_id"]
    service = request.app[SERVICE]
    if who.role == "unit" and who.unit_id != unit_id:
        raise Forbidden("a unit may press only its own alarm")
    if unit_id not in service.units:
        raise NotFound(f"unknown unit {unit_id!r}")
    alarm_id = f"web-{uuid.uuid4().hex}"
    await service.ingest([AlarmIn(alarm_id=alarm_id, unit_id=unit_id, kind=body.kind, source="web",
                                  received_at=utcnow(), device_id=None, note=body.note or f"pressed by {who.username}",
                                  topic=request.path)])
    open_inc = service.open_by_unit.get(unit_id)
    return {"alarm_id": alarm_id, "incident_id": open_inc.incident_id if open_inc else None}


# ------------------------------------------------------------- dispatches

@api.route("GET", "/api/dispatches", "List dispatches", roles=frozenset({"admin", "duty_officer", "assessor",
                                                                          "agency"}), tag="agency")
async def get_dispatches(request: web.Request, _: None) -> list[dict[str, Any]]:
    return await request.app[SERVICE].list_dispatches(actor(request), request.query.get("state", "open"))


@api.route("POST", "/api/dispatches/{id}/ack", "Agency acknowledges a dispatch",
           roles=frozenset({"admin", "duty_officer", "agency"}), tag="agency")
async def post_dispatch_ack(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[SERVICE].agency_update(_int(request), "acknowledged", actor(request))


@api.route("POST", "/api/dispatches/{id}/on_scene", "Agency reports arrival on scene",
           roles=frozenset({"admin", "duty_officer", "agency"}), tag="agency")
async def post_dispatch_on_scene(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[SERVICE].agency_update(_int(request), "on_scene", actor(request))


# ------------------------------------------------------------------ admin

@api.route("GET", "/api/admin/rejections", "List rejected input", roles=frozenset({"admin"}), tag="admin")
async def get_rejections(request: web.Request, _: None) -> dict[str, Any]:
    return await request.app[SERVICE].list_rejections(_limit(request))


@api.route("GET", "/healthz", "Health", roles=None, tag="meta")
async def healthz(request: web.Request, _: None) -> web.StreamResponse:
    """The truth about the alarm path, checked now; 503 when the database or the MQTT intake is down."""
    monitor = request.app[HEALTH]
    body = await monitor.check()
    return web.json_response(body, status=monitor.http_status(body))


@api.route("GET", "/api/openapi.json", "OpenAPI document", roles=None, tag="meta")
async def get_openapi(request: web.Request, _: None) -> dict[str, Any]:
    return openapi(api, "Firelink API", "1")
