"""Telling a database outage apart from a bug, so the console answers 503 "database unavailable", not 500.

A failed statement does not by itself say whether the database is down (asyncpg reports "not accepting
connections" as a plain DBAPIError, a refused connection as an OSError); a lost connection does, and for the rest
one bounded probe (`SELECT 1` on a fresh connection) decides.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from dispatch.db import Database

PROBE_TIMEOUT_S = 3.0
DB_DOWN = web.RequestKey("db_down", bool)  # set when the caller's session could not be looked up: database down
DOWN_BODY: dict[str, Any] = {"error": "database unavailable", "down": ["database"]}


async def database_down(db: Database, exc: BaseException) -> bool:
    """True when `exc` happened because the database cannot be reached now."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            return not await db.alive()
    except TimeoutError:
        return True


def unavailable() -> web.Response:
    return web.json_response(DOWN_BODY, status=503)
