"""Call routes (docs/calls.md): start, join with a WebRTC offer, hang up, report a failure, control the phone.

Signalling is one HTTP request per step, in the route table like every other command: a participant's browser
POSTs its complete offer (ICE candidates gathered, no trickle: aiortc answers only complete descriptions) and gets
the complete answer back. Roles, CSRF, the body's size and shape, 400/403/404/409 and the OpenAPI document come
from the table; what changes afterwards (ringing, connected, who joined, ended) is pushed to everyone concerned as
`call.updated` on the console WebSocket (`/ws`), the camera switch request to the phone as `call.control`.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from console.appkeys import CALLS, CONFIG
from console.routing import OFFICERS, PATH_PARAMS_KEY, STAFF, HttpError, RouteTable
from console.security import ACTOR
from dispatch.actor import Actor
from dispatch.calls import Calls, CallsFull, ClientFailure, side_of
from dispatch.errors import Forbidden
from ingest.contract import InputModel

routes = RouteTable()
TAG = "calls"
VIEWERS = frozenset({*STAFF, "unit", "agency"})  # who may read a call's state (an agency: once it accepted)
CALLERS = frozenset({*OFFICERS, "unit"})  # who may ring the other side
PARTICIPANTS = frozenset({*OFFICERS, "unit", "agency"})  # who may take part


class _Body(InputModel):
    pass


class EmptyBody(_Body):
    pass


class JoinBody(_Body):
    type: Literal["offer"] = Field("offer", description="Always an offer: the server answers.")
    sdp: str = Field(..., min_length=10, max_length=32_000,
                     description="The browser's complete offer (after ICE gathering; no trickle ICE).")
    device: str = Field("", pattern=r"^[A-Za-z0-9_-]{0,40}$",
                        description="An id of the page that joins (a phone that answers elsewhere takes over).")


class ReportBody(_Body):
    reason: ClientFailure = Field(
        ..., description="permission_denied (microphone), camera_denied, no_media_path (ICE failed), media_error.")
    detail: str = Field("", max_length=200, description="The browser's error name, for the record.")


class ControlBody(_Body):
    action: Literal["switch_camera"] = Field(..., description="Ask the phone to switch between rear and front camera.")


def _calls(request: web.Request) -> Calls:
    calls = request.app.get(CALLS)
    if calls is None:
        raise HttpError(503, "calls are not enabled here (calls.enabled)", down=["calls"])
    return calls


def _incident(request: web.Request) -> int:
    incident_id: int = request[PATH_PARAMS_KEY]["incident_id"]
    return incident_id


def _actor(request: web.Request) -> Actor:
    who: Actor = request[ACTOR]
    return who


def _may_take_part(who: Actor) -> bool:
    try:
        side_of(who)
    except Forbidden:
        return False
    return True


def _ice(request: web.Request, calls: Calls, who: Actor) -> list[dict[str, Any]]:
    """ICE servers only for who may take part (TURN credentials are by nature given to the participant's browser)."""
    return calls.ice_servers(who) if _may_take_part(who) else []


@routes.route("GET", "/api/incidents/{incident_id}/call", "The incident's call: live, else the last one",
              roles=VIEWERS, tag=TAG)
async def get_call(request: web.Request, _: None) -> dict[str, Any]:
    calls, who = _calls(request), _actor(request)
    call = await calls.current(_incident(request), who)
    return {"call": call, "ice_servers": _ice(request, calls, who), "enabled": request.app[CONFIG].calls.enabled}


@routes.route("POST", "/api/incidents/{incident_id}/call", "Start a call (ring the unit, or the command room)",
              roles=CALLERS, tag=TAG, body=EmptyBody, statuses=(503,))
async def post_call(request: web.Request, _: EmptyBody) -> dict[str, Any]:
    calls, who = _calls(request), _actor(request)
    try:
        call = await calls.start(_incident(request), who)
    except CallsFull as exc:
        raise HttpError(503, str(exc), down=["calls"]) from None
    return {"call": call, "ice_servers": _ice(request, calls, who)}


@routes.route("POST", "/api/incidents/{incident_id}/call/join", "Join the call: a WebRTC offer, answered",
              roles=PARTICIPANTS, tag=TAG, body=JoinBody, statuses=(503,))
async def post_call_join(request: web.Request, body: JoinBody) -> dict[str, Any]:
    try:
        return await _calls(request).join(_incident(request), _actor(request), body.sdp, body.device)
    except CallsFull as exc:
        raise HttpError(503, str(exc), down=["calls"]) from None


@routes.route("POST", "/api/incidents/{incident_id}/call/hangup",
              "Hang up (the unit or an officer ends the call; an agency leaves it)", roles=PARTICIPANTS, tag=TAG,
              body=EmptyBody)
async def post_call_hangup(request: web.Request, _: EmptyBody) -> dict[str, Any]:
    return await _calls(request).hangup(_incident(request), _actor(request))


@routes.route("POST", "/api/incidents/{incident_id}/call/report",
              "Report why this browser cannot take part fully (microphone, camera, network)", roles=PARTICIPANTS,
              tag=TAG, body=ReportBody)
async def post_call_report(request: web.Request, body: ReportBody) -> dict[str, Any]:
    return await _calls(request).report(_incident(request), _actor(request), body.reason, body.detail)


@routes.route("POST", "/api/incidents/{incident_id}/call/control", "Ask the unit's phone to switch its camera",
              roles=OFFICERS, tag=TAG, body=ControlBody)
async def post_call_control(request: web.Request, body: ControlBody) -> dict[str, Any]:
    return await _calls(request).control(_incident(request), _actor(request), body.action)


@routes.route("POST", "/api/incidents/{incident_id}/call/snapshot",
              "Save the phone's current picture as the incident's evidence", roles=OFFICERS, tag=TAG,
              body=EmptyBody, success=201, statuses=(503,))
async def post_call_snapshot(request: web.Request, _: EmptyBody) -> web.Response:
    calls = _calls(request)
    try:
        ef = await calls.snapshot(_incident(request), _actor(request))
    except CallsFull as exc:
        raise HttpError(503, str(exc), down=["video"]) from None
    return web.json_response(dict(ef.to_json(), url=f"/api/evidence/{ef.file}"), status=201)
