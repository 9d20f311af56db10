"""System health: what /healthz answers and what every console is told when it changes.

The alarm path is healthy when the database answers and the MQTT intake is alive (network thread running,
connected and subscribed, messages or probes coming back). The outbox is reported too (pending count, age of
the oldest pending message); a stale outbox marks the system degraded but is not the alarm path.

Body (the contract in the README, "System health"):
  {"status": "ok"|"degraded", "down": [...], "database": {"ok", "latency_ms"}, "mqtt": bool,
   "intake": {"ok", "connected", "thread_alive", "last_message_age_s", "backlog", "restarts", ...},
   "outbox": {"ok", "pending", "oldest_pending_age_s"}}
A `health.updated` event carrying the body is published on the bus whenever `status` or `down` changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select

from dispatch import events as ev
from dispatch.db import Database
from dispatch.events import Event, EventBus
from dispatch.models import OutboxMessage
from ingest.contract import utcnow

log = logging.getLogger(__name__)

DATABASE = "database"
MQTT_INTAKE = "mqtt_intake"
OUTBOX = "outbox"
ALARM_PATH = frozenset({DATABASE, MQTT_INTAKE})  # any of these down: /healthz answers 503

DB_TIMEOUT_S = 2.0
OUTBOX_STALE_S = 60.0  # a message pending longer than this: the outbox is reported as not ok
PERIOD_S = 1.0


class IntakeHealth(Protocol):
    """What the monitor needs of the intake's status (ingest.mqtt_link.IntakeStatus)."""

    @property
    def ok(self) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...


class HealthMonitor:
    """Checks on demand (/healthz) and every PERIOD_S; `poke()` asks for a check now (the intake calls it)."""

    def __init__(self, db: Database, bus: EventBus, intake: Callable[[], IntakeHealth | None],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.bus = bus
        self.intake = intake  # () -> ingest.mqtt_link.IntakeStatus, or None when this core runs without MQTT
        self.clock = clock
        self.last: dict[str, Any] | None = None
        self._published: tuple[str, tuple[str, ...]] | None = None
        self._poked = asyncio.Event()
        self._db_check: asyncio.Future[tuple[dict[str, Any], dict[str, Any]]] | None = None

    def poke(self) -> None:
        self._poked.set()

    def close(self) -> None:
        if self._db_check is not None:
            self._db_check.cancel()

    def down(self) -> list[str]:
        """What was down at the last check (for 503 bodies elsewhere); [] before the first check."""
        return list(self.last["down"]) if self.last else []

    async def check(self) -> dict[str, Any]:
        # /healthz is anonymous: callers arriving while a database check runs share it instead of adding queries.
        if self._db_check is None or self._db_check.done():
            self._db_check = asyncio.ensure_future(self._database())
        database, outbox = await asyncio.shield(self._db_check)
        intake = self.intake()
        if intake is None:
            intake_json: dict[str, Any] = {"ok": True, "enabled": False, "connected": False, "thread_alive": False,
                                           "last_message_age_s": None, "backlog": 0, "restarts": 0}
        else:
            intake_json = {"enabled": True, **intake.to_json()}
        down = [name for name, part in ((DATABASE, database), (MQTT_INTAKE, intake_json), (OUTBOX, outbox))
                if not part["ok"] and not (name == OUTBOX and not database["ok"])]
        status = "degraded" if down else "ok"
        body = {"status": status, "down": down, "database": database,
                "mqtt": bool(intake is not None and intake.ok), "intake": intake_json, "outbox": outbox}
        self.last = body
        key = (status, tuple(down))
        if key != self._published:
            if self._published is not None or down:
                log.log(logging.ERROR if down else logging.WARNING, "health: %s%s", status,
                        f" (down: {', '.join(down)})" if down else "")
            self._published = key
            self.bus.publish(Event(ev.HEALTH_UPDATED, {"data": body}))
        return body

    @staticmethod
    def http_status(body: dict[str, Any]) -> int:
        return 503 if ALARM_PATH.intersection(body["down"]) else 200

    async def _database(self) -> tuple[dict[str, Any], dict[str, Any]]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(DB_TIMEOUT_S):  # not wait_for: on 3.11 it can swallow a cancellation
                pending, oldest = await self._outbox_query()
        except Exception as exc:  # down, unreachable or too slow: all the same to the alarm path
            log.debug("health: database check failed: %s", exc)
            return ({"ok": False, "latency_ms": None, "error": type(exc).__name__ or "timeout"},
                    {"ok": False, "pending": None, "oldest_pending_age_s": None})
        latency = round((time.perf_counter() - started) * 1000, 1)
        age = None if oldest is None else round(max(0.0, (self.clock() - oldest).total_seconds()), 1)
        return ({"ok": True, "latency_ms": latency},
                {"ok": age is None or age <= OUTBOX_STALE_S, "pending": pending, "oldest_pending_age_s": age})

    async def _outbox_query(self) -> tuple[int, datetime | None]:
        async with self.db.session() as s:
            row = (await s.execute(select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at))
                                   .where(OutboxMessage.status == "pending"))).one()
        return int(row[0] or 0), row[1]

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("health check failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PERIOD_S):  # periodic, or at once when poked
                    await self._poked.wait()
            self._poked.clear()
