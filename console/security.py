"""Who is calling: session cookie (browsers) or bearer token (agency systems); CSRF for cookies."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from console.appkeys import CLOCK, CONFIG, DB, INCIDENTS
from console.outage import DB_DOWN, database_down
from dispatch.actor import Actor
from dispatch.auth import SessionInfo, session_for
from dispatch.scope import scoped

log = logging.getLogger(__name__)

COOKIE = "firelink_session"
CSRF_HEADER = "X-CSRF-Token"
ACTOR = web.RequestKey("actor", Actor)  # who is calling; absent for anonymous requests
SESSION = web.RequestKey("session", SessionInfo)
VIA_SESSION = web.RequestKey("via_session", bool)


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def client_address(request: web.Request) -> str:
    """The caller's address. Behind a reverse proxy on this machine (peer on loopback), the address that proxy
    appended to X-Forwarded-For; anyone else's X-Forwarded-For is ignored (it could dodge the login throttle)."""
    peer = request.remote or ""
    if _loopback(peer):
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        if forwarded:
            return forwarded[:64]
    return peer


def secure_cookie(request: web.Request) -> bool:
    """console.secure_cookies: true/false, or auto = Secure when the request came over HTTPS (directly, or
    through a proxy on this machine that says X-Forwarded-Proto: https)."""
    setting = request.app[CONFIG].console.secure_cookies
    if setting != "auto":
        return bool(setting)
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https" and _loopback(request.remote)


def csrf_ok(request: web.Request) -> bool:
    sess: SessionInfo | None = request.get(SESSION)
    sent = request.headers.get(CSRF_HEADER, "")
    return sess is not None and bool(sent) and hmac.compare_digest(sent, sess.csrf_token)


def _bearer_actor(request: web.Request) -> Actor | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    token = header[7:].strip()
    for key, agency in request.app[CONFIG].agencies.items():
        if agency.ack_token is not None and hmac.compare_digest(token, agency.ack_token.get_secret_value()):
            return Actor(f"{key}-system", "agency", agency=key)
    return None


@web.middleware
async def identify(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    token = request.cookies.get(COOKIE)
    if token:
        db = request.app[DB]
        try:
            sess = await session_for(db, token, request.app[CLOCK]())
        except Exception as exc:
            if not await database_down(db, exc):
                raise
            # Public routes (health, login, OpenAPI) still answer; the others say 503 "database unavailable".
            log.warning("session lookup failed: database unavailable (%s)", type(exc).__name__)
            request[DB_DOWN] = True
            sess = None
        if sess is not None:
            request[SESSION] = sess
            cfg, core = request.app[CONFIG], request.app[INCIDENTS].core
            request[ACTOR] = scoped(sess.actor, core.orgs, cfg.station.id,
                                    [k for k, a in cfg.agencies.items() if a.oversight])
            request[VIA_SESSION] = True
    if ACTOR not in request:
        actor = _bearer_actor(request)
        if actor is not None:
            request[ACTOR] = actor
    return await handler(request)
