"""WebSocket push (`GET /ws`): every bus event a user may see, as JSON `{"type": <event name>, **data}`.

Each event is read as its typed payload (dispatch.events); AUDIENCES says, per payload type, which roles see it
and whether a unit (about its own unit) or an agency (its own dispatches' part) does.

Each connection has its own bounded subscription; a browser that cannot
keep up loses old events and is told to resynchronise (`{"type":
"resync"}`), so one slow screen never holds up the core or other screens.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from console.appkeys import BUS, CLOCK, DB, INCIDENTS, SOCKETS
from console.json_text import encode
from console.routing import EVERYONE, STAFF, RouteTable
from console.security import ACTOR, COOKIE
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.auth import session_for
from dispatch.events import Event, Payload

log = logging.getLogger(__name__)

routes = RouteTable()
QUEUE_PER_CLIENT = 2000
ADMIN = frozenset({"admin"})


@dataclass(frozen=True, slots=True)
class Audience:
    """Who is sent one kind of event: users with one of `roles` all of them; a unit user those about its own unit
    when `units`; an agency user its own part of those that concern its dispatches when `agencies`."""

    roles: frozenset[str] = STAFF  # the station's staff: admin, duty officer, assessor
    units: bool = True
    agencies: bool = False


# Who sees what, by payload type: the one place WebSocket visibility is decided. An event type missing here is
# not pushed at all (outbox.pending: the notify worker's business).
AUDIENCES: dict[type[Payload], Audience] = {
    ev.AlarmReceived: Audience(),
    ev.AlarmRejected: Audience(ADMIN, units=False),  # rejected input may carry anything: the admin's to read
    ev.IncidentCreated: Audience(agencies=True),
    ev.IncidentUpdated: Audience(agencies=True),
    ev.IncidentEscalated: Audience(),
    ev.IncidentMessage: Audience(),
    ev.DispatchUpdated: Audience(agencies=True),
    ev.DeviceUpdated: Audience(),
    ev.CameraUpdated: Audience(units=False),  # camera status is shown on the station's video pages
    ev.HazardUpdated: Audience(),
    ev.ExitZoneChanged: Audience(units=False),
    ev.ExitZoneApplied: Audience(units=False),
    ev.DetectorMaskChanged: Audience(units=False),
    ev.DetectorMaskApplied: Audience(units=False),
    ev.HealthUpdated: Audience(units=False),  # the system health banner of the station's pages
    ev.ComplaintReceived: Audience(units=False),  # the triage queue: only who sees the report's station
    ev.ComplaintUpdated: Audience(units=False),
    ev.CallUpdated: Audience(agencies=True),  # agencies: those whose accepted dispatch lets them join
    ev.CallControl: Audience(frozenset()),  # the unit's phone alone
}
PUSHED = sorted({kind.TYPE for kind in AUDIENCES})


StationOf = Callable[[str], str | None]  # a unit's station (None: unknown unit)


def _no_station(_unit_id: str) -> str | None:
    return None


def shown_to(payload: Payload, who: Actor, station_of: StationOf = _no_station) -> Payload | None:
    """What of this payload the user may see: all of it, the agency's part of it, or None. Staff limited to some
    stations (`Actor.stations`, dispatch.scope) see the events about those stations' units only (`station_of`); a
    payload about one station (`about_station`, the triage queue) is shown only to who sees that station (a user
    without stations: to nobody)."""
    audience = AUDIENCES.get(type(payload))
    if audience is None:
        return None
    station = payload.about_station()
    if station is not None and (who.stations is None or station not in who.stations):
        return None
    if who.role in audience.roles:
        unit = payload.about_unit()
        if unit is not None and who.stations is not None and not who.sees_station(station_of(unit)):
            return None
        return payload
    if who.role == "unit" and audience.units and who.unit_id is not None:
        return payload if payload.about_unit() == who.unit_id else None
    if who.role == "agency" and audience.agencies and who.agency is not None:
        return payload.part_for(who.agency)
    return None


def visible(event: Event, who: Actor, station_of: StationOf = _no_station) -> dict[str, Any] | None:
    """The event as this user may see it (the JSON the WebSocket sends), or None."""
    try:
        payload = event.payload()
    except ValueError as exc:  # a publisher's bug: nobody is sent what cannot be judged
        log.error("event not pushed: %s", exc)
        return None
    shown = shown_to(payload, who, station_of)
    return None if shown is None else {"type": event.type, **shown.to_json()}


def frame(event: Event, who: Actor, station_of: StationOf = _no_station) -> str | None:
    """The WebSocket text of `visible(event, who)`, or None. Encoded once per event and audience: every socket
    shown the whole event sends the same text, and every agency's socket the same text of its part."""
    try:
        payload = event.payload()
    except ValueError as exc:  # a publisher's bug: nobody is sent what cannot be judged
        log.error("event not pushed: %s", exc)
        return None
    shown = shown_to(payload, who, station_of)
    if shown is None:
        return None
    key = "ws" if shown is payload else f"ws:agency:{who.agency}"  # part_for depends on the agency alone
    return event.derived(key, lambda: encode({"type": event.type, **shown.to_json()}))


class Sockets:
    """Open console sockets by session token, so logging out closes that session's live feed."""

    def __init__(self) -> None:
        self.by_token: dict[str, set[web.WebSocketResponse]] = {}

    async def close_session(self, token: str) -> None:
        for ws in list(self.by_token.pop(token, ())):
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"logged out")


SESSION_RECHECK_S = 60.0


@routes.route("GET", "/ws", "Live console events over a WebSocket (README: Events); needs the session cookie",
              roles=EVERYONE, tag="meta", success=101, statuses=(400,))
async def get_ws(request: web.Request, _: None) -> web.StreamResponse:
    who: Actor = request[ACTOR]  # the route table let only a logged-in user through
    token = request.cookies.get(COOKIE)
    if token is None:  # an agency system's bearer token: the feed follows a session (logout closes it)
        return web.json_response({"error": "login required (a session cookie)"}, status=401)
    ws = web.WebSocketResponse(heartbeat=20)
    if not ws.can_prepare(request).ok:
        return web.json_response({"error": "a WebSocket endpoint: connect with Upgrade: websocket"}, status=400)
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.by_token.setdefault(token, set()).add(ws)
    sub = request.app[BUS].subscribe(PUSHED, maxsize=QUEUE_PER_CLIENT)
    units = request.app[INCIDENTS].core.units

    def station_of(unit_id: str) -> str | None:
        unit = units.get(unit_id)
        return unit.station_id if unit is not None else None

    async def expire() -> None:
        """A session that expires while its page stays open stops receiving events."""
        while True:
            await asyncio.sleep(SESSION_RECHECK_S)  # expiry is a time, not an event: re-check periodically
            if await session_for(request.app[DB], token, request.app[CLOCK]()) is None:
                break
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"session expired")

    async def pump() -> None:
        dropped = 0
        while True:
            event = await sub.get()
            if sub.dropped != dropped:
                dropped = sub.dropped
                await ws.send_str('{"type":"resync"}')
            text = frame(event, who, station_of)
            if text is not None:
                await ws.send_str(text)

    await ws.send_str(json.dumps({"type": "hello", "user": {"username": who.username, "role": who.role,
                                                              "unit_id": who.unit_id, "agency": who.agency}}))
    tasks = [asyncio.create_task(pump()), asyncio.create_task(expire())]
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_str('{"type":"pong"}')
    finally:
        for task in tasks:
            task.cancel()
        sub.close()
        sockets.by_token.get(token, set()).discard(ws)
    return ws
