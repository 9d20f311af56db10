"""Wires the console into the aiohttp app: error mapping, identity, every route it serves, pages.

Every HTTP route — API, video and evidence, `/ws` — is declared in a console module's route table and listed in
console_routes(), the one place that says what the server serves; install() serves them through the wrapper that
enforces each declaration, and `/api/openapi.json` documents exactly them. The HTML pages and static files (PAGES)
are the only routes outside the table: they are not API operations.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from aiohttp import web

from console import (
    api,
    api_complaints,
    api_hazards,
    api_inspections,
    api_reviews,
    api_units,
    api_zones,
    calls,
    video,
    ws,
)
from console.appkeys import CONFIG, DB, LOGIN_THROTTLE, REPORT_LIMITS, SOCKETS
from console.heavy import Busy, busy_response
from console.outage import database_down, unavailable
from console.routing import Route, error_for, install
from console.security import identify
from console.ws import Sockets
from dispatch.kpi_index import Behind
from dispatch.login_throttle import LoginThrottle
from dispatch.rate_limits import ReportLimits

log = logging.getLogger(__name__)
STATIC = Path(str(resources.files("console") / "static"))
# canonical paths of the HTML pages, static files and QR scan redirects (api_units.scan): not in the route table
PAGES = ("/", "/{name}", "/static", *api_units.SCAN_PATHS)


def console_routes() -> list[Route]:
    """Every route the console serves besides PAGES, module by module."""
    return [*api.routes, *ws.routes, *api_hazards.routes, *api_inspections.routes, *api_reviews.routes,
            *api_units.routes, *api_zones.routes, *video.routes, *api_complaints.routes,
            *calls.routes]


@web.middleware
async def errors(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Maps core exceptions to 4xx JSON and a database outage to 503 with what is down; anything else unexpected is
    logged and answered 500 without details. Pages and static files keep aiohttp's own (non-JSON) errors."""
    try:
        return await handler(request)
    except (Busy, Behind) as exc:  # heavy reads saturated / KPI index catching up: 503 + Retry-After
        return busy_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400 or not _is_api(request):
            raise
        answer = error_for(exc)
        assert answer is not None
        return answer
    except Exception as exc:
        answer = error_for(exc)
        if answer is not None:
            return answer
        if DB in request.app and await database_down(request.app[DB], exc):
            log.error("%s %s: database unavailable (%s: %s)", request.method, request.path, type(exc).__name__,
                      str(exc).splitlines()[0] if str(exc) else "")
            return unavailable()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz", "/ws")


async def _page(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


def setup_console(app: web.Application) -> None:
    app.middlewares.extend([errors, identify])
    if LOGIN_THROTTLE not in app:
        app[LOGIN_THROTTLE] = LoginThrottle(app[CONFIG].console.login_throttle)
    if REPORT_LIMITS not in app:
        app[REPORT_LIMITS] = ReportLimits.of(app[CONFIG].complaints)
    app[SOCKETS] = Sockets()
    install(app, console_routes())
    app.router.add_get("/", _page)
    app.router.add_get("/{name:[a-z_]+\\.html}", _page)
    app.router.add_static("/static/", STATIC, append_version=True)
    for path in api_units.SCAN_PATHS:
        app.router.add_get(path, api_units.scan)
