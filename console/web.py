"""Wires the console into the aiohttp app: error mapping, identity, API routes, WebSocket, pages."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from aiohttp import web

import console.api_hazards  # (registers hazard/evaluation routes on the route table)
import console.api_zones  # noqa: F401  (registers the exit-zone routes; binds `console` for both imports)
from console.api import api
from console.heavy import Busy, busy_response
from console.security import identify
from console.ws import SOCKETS, Sockets, websocket
from dispatch.kpi_index import Behind
from dispatch.service import BadRequest, Forbidden, NotFound
from dispatch.state import TransitionError

log = logging.getLogger(__name__)
STATIC = Path(str(resources.files("console") / "static"))


@web.middleware
async def errors(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Maps core exceptions to 4xx JSON; anything unexpected is logged and answered 500 without details."""
    try:
        return await handler(request)
    except (Busy, Behind) as exc:
        return busy_response(exc)
    except NotFound as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except Forbidden as exc:
        return web.json_response({"error": str(exc)}, status=403)
    except (BadRequest, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except TransitionError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        return web.json_response({"error": exc.text or exc.reason}, status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


async def _page(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


def setup_console(app: web.Application) -> None:
    app.middlewares.extend([errors, identify])
    app[SOCKETS] = Sockets()
    api.install(app)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/", _page)
    app.router.add_get("/{name:[a-z_]+\\.html}", _page)
    app.router.add_static("/static/", STATIC, append_version=True)
