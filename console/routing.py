"""One table of API routes: it drives routing, role checks, CSRF, body validation and the OpenAPI document.

A route declares who may call it; the wrapper enforces that before the
handler runs, so no handler can forget a check.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from console.security import ACTOR, COOKIE, CSRF_HEADER, VIA_SESSION, csrf_ok
from dispatch.inputs import Actor

Handler = Callable[[web.Request, Any], Awaitable[Any]]

EVERYONE = frozenset({"admin", "duty_officer", "unit", "agency", "assessor"})
OFFICERS = frozenset({"admin", "duty_officer"})
STAFF = frozenset({"admin", "duty_officer", "assessor"})
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    roles: frozenset[str] | None  # None: public
    body: type[BaseModel] | None
    handler: Handler
    tag: str


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class ApiRouter:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str, path: str, summary: str, *, roles: frozenset[str] | None,
              body: type[BaseModel] | None = None, tag: str = "api") -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(method, path, summary, roles, body, fn, tag))
            return fn
        return deco

    def install(self, app: web.Application) -> None:
        for r in self.routes:
            app.router.add_route(r.method, r.path, _wrap(r))


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        actor: Actor | None = request.get(ACTOR)
        if route.roles is not None:
            if actor is None:
                # session_expired: a session cookie came but no longer names a session (the login page
                # says "expired" only then, not on a first visit)
                return error(401, "login required", session_expired=COOKIE in request.cookies)
            if actor.role not in route.roles:
                return error(403, f"role {actor.role} may not {route.summary.lower()}")
            if request.method not in ("GET", "HEAD") and request.get(VIA_SESSION) and not csrf_ok(request):
                return error(403, f"missing or wrong {CSRF_HEADER} header")
        payload: Any = None
        if route.body is not None:
            if request.content_length is not None and request.content_length > MAX_BODY:
                return error(413, f"request body larger than {MAX_BODY} bytes")
            raw = await request.read()
            try:
                data = json.loads(raw or b"{}")
            except (UnicodeDecodeError, json.JSONDecodeError):
                return error(400, "request body is not valid JSON")
            try:
                payload = route.body.model_validate(data)
            except ValidationError as exc:
                details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
                return error(400, "invalid request body", details=details)
        result = await route.handler(request, payload)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(result, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    return handler


def openapi(router: ApiRouter, title: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for r in router.routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "tags": [r.tag],
            "responses": {"200": {"description": "OK"}},
        }
        params = [seg[1:-1] for seg in r.path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [{"name": p.split(":")[0], "in": "path", "required": True,
                                 "schema": {"type": "integer" if p == "id" else "string"}} for p in params]
        if r.roles is not None:
            op["security"] = [{"session": []}, {"agencyToken": []}] if "agency" in r.roles else [{"session": []}]
            op["description"] = "Roles: " + ", ".join(sorted(r.roles))
            op["responses"].update({"401": {"description": "login required"},
                                    "403": {"description": "role not allowed or CSRF token missing"}})
        if r.body is not None:
            name = r.body.__name__
            schemas[name] = r.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schemas[name].pop("$defs", {}))
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{name}"}}}}
            op["responses"]["400"] = {"description": "invalid JSON or invalid fields"}
        path = "/".join(seg.split(":")[0] + ("}" if ":" in seg else "") for seg in r.path.split("/"))
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "firelink_session",
                            "description": f"From POST /api/login; state-changing calls also send {CSRF_HEADER}."},
                "agencyToken": {"type": "http", "scheme": "bearer",
                                "description": "Agency system token (agencies.<key>.ack_token)."},
            },
        },
    }
