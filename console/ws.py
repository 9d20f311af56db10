"""WebSocket push: every bus event a user may see, as JSON `{"type": <event name>, ...}`.

Each connection has its own bounded subscription; a browser that cannot
keep up loses old events and is told to resynchronise (`{"type":
"resync"}`), so one slow screen never holds up the core or other screens.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from console.appkeys import BUS, CLOCK, DB
from console.security import ACTOR, COOKIE
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.auth import session_for
from dispatch.events import Event

log = logging.getLogger(__name__)

PUSHED = [e for e in sorted(ev.ALL_EVENTS) if e != ev.OUTBOX_PENDING]
QUEUE_PER_CLIENT = 2000


def _event_unit(event: Event) -> str | None:
    data = event.data
    if "unit_id" in data:
        return str(data["unit_id"])
    incident = data.get("incident")
    return str(incident["unit_id"]) if isinstance(incident, dict) else None


def visible(event: Event, who: Actor) -> dict[str, Any] | None:
    """The event as this user may see it, or None."""
    if event.type == ev.HEALTH_UPDATED:  # system health: the station's staff, whose pages show the banner
        return event.to_json() if who.role in ("admin", "duty_officer", "assessor") else None
    if who.role in ("admin", "duty_officer", "assessor"):
        if event.type == ev.ALARM_REJECTED and who.role != "admin":
            return None
        return event.to_json()
    if event.type in (ev.ALARM_REJECTED, ev.DEVICE_UPDATED) and who.role != "unit":
        return None
    if who.role == "unit":
        if event.type == ev.ALARM_REJECTED or _event_unit(event) != who.unit_id:
            return None
        return event.to_json()
    if who.role == "agency":
        if event.type == ev.DISPATCH_UPDATED:
            return event.to_json() if event.data["dispatch"]["agency"] == who.agency else None
        incident = event.data.get("incident")
        if event.type in (ev.INCIDENT_UPDATED, ev.INCIDENT_CREATED) and isinstance(incident, dict):
            mine = [d for d in incident.get("dispatches", []) if d["agency"] == who.agency]
            if mine:
                return {"type": event.type, "incident": {**incident, "dispatches": mine}}
    return None


class Sockets:
    """Open console sockets by session token, so logging out closes that session's live feed."""

    def __init__(self) -> None:
        self.by_token: dict[str, set[web.WebSocketResponse]] = {}

    async def close_session(self, token: str) -> None:
        for ws in list(self.by_token.pop(token, ())):
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"logged out")


SOCKETS = web.AppKey("sockets", Sockets)
SESSION_RECHECK_S = 60.0


async def websocket(request: web.Request) -> web.StreamResponse:
    who: Actor | None = request.get(ACTOR)
    token = request.cookies.get(COOKIE)
    if who is None or token is None:
        return web.json_response({"error": "login required (a session cookie)"}, status=401)
    ws = web.WebSocketResponse(heartbeat=20)
    if not ws.can_prepare(request).ok:
        return web.json_response({"error": "a WebSocket endpoint: connect with Upgrade: websocket"}, status=400)
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.by_token.setdefault(token, set()).add(ws)
    sub = request.app[BUS].subscribe(PUSHED, maxsize=QUEUE_PER_CLIENT)

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
            out = visible(event, who)
            if out is not None:
                await ws.send_str(json.dumps(out, ensure_ascii=False))

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
