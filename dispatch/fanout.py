"""Cluster mode: the events other cores committed, onto this core's bus (PostgreSQL LISTEN/NOTIFY).

A core's writer stores each transaction's events in `cluster_events` and sends NOTIFY with the row's id and its
node, in the same transaction (PostgreSQL delivers it at commit, never for a rolled-back change). Every core
listens on one dedicated connection: it fetches the rows the others announced, rebuilds each typed event and
publishes it marked `remote` (its consoles show it; side effects stay with the core that committed it). A dropped
connection is reopened and the rows committed meanwhile are fetched (each id once: ids seen are remembered).
The scheduler node prunes rows older than `cluster.event_retention_s`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from dispatch.db import Database
from dispatch.events import Event, EventBus
from dispatch.models import ClusterEvent
from dispatch.writer import CHANNEL
from ingest.contract import utcnow

log = logging.getLogger(__name__)
SLACK = 1000  # ids below the highest seen that may still commit (one writer transaction in flight per node)
PROBE_S = 5.0  # an idle listening connection is probed this often


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as a plain libpq DSN for asyncpg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class EventFanout:
    def __init__(self, db: Database, bus: EventBus, node: str, *, reconnect_s: float = 1.0,
                 on_remote: Callable[[Event], None] | None = None) -> None:
        """`on_remote` sees each relayed event before the bus does (the core's indexes follow it)."""
        self.dsn = asyncpg_dsn(db.url)
        self.bus = bus
        self.on_remote = on_remote
        self.node = node
        self.reconnect_s = reconnect_s
        self.ready = asyncio.Event()  # set while listening (tests wait on it)
        self.high = 0  # the highest event id seen
        self._seen: set[int] = set()
        self.relayed = 0

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except (OSError, ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("cluster event listener lost its connection (%s); reconnecting", exc)
            self.ready.clear()
            await asyncio.sleep(self.reconnect_s)  # a pause between reconnection attempts, not a synchronisation

    async def _listen(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        queue: asyncio.Queue[int] = asyncio.Queue()

        def announced(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                event_id, node = json.loads(payload)
            except (ValueError, TypeError):
                log.warning("ignored a malformed cluster event notification")
                return
            if node != self.node:
                queue.put_nowait(int(event_id))

        conn.add_termination_listener(lambda _conn: queue.put_nowait(-1))
        try:
            await conn.add_listener(CHANNEL, announced)
            if self.high == 0:  # first start: from now on
                self.high = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM cluster_events"))
            else:  # back after a drop: what was committed meanwhile
                await self._relay(conn, await conn.fetch(
                    "SELECT id, events FROM cluster_events WHERE id > $1 AND node <> $2 ORDER BY id",
                    self.high - SLACK, self.node))
            self.ready.set()
            while True:
                try:
                    first = await asyncio.wait_for(queue.get(), PROBE_S)
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=PROBE_S)
                    continue
                ids = [first]
                while not queue.empty():
                    ids.append(queue.get_nowait())
                if -1 in ids:
                    raise ConnectionError("listening connection closed")
                await self._relay(conn, await conn.fetch(
                    "SELECT id, events FROM cluster_events WHERE id = any($1::int[]) ORDER BY id", ids))
        finally:
            if not conn.is_closed():
                conn.terminate()

    async def _relay(self, _conn: asyncpg.Connection, rows: list[Any]) -> None:
        for row in rows:
            event_id = int(row["id"])
            if event_id in self._seen:
                continue
            self._seen.add(event_id)
            self.high = max(self.high, event_id)
            body = row["events"]
            for item in (json.loads(body) if isinstance(body, str) else body).get("events", []):
                event = Event(str(item.get("type")), dict(item.get("data") or {}), remote=True)
                try:
                    event.payload()  # the typed event, checked before anyone sees it
                except ValueError as exc:
                    log.warning("ignored cluster event %s: %s", event_id, exc)
                    continue
                if self.on_remote is not None:
                    self.on_remote(event)
                self.bus.publish(event)
                self.relayed += 1
        if len(self._seen) > 4 * SLACK:
            self._seen = {i for i in self._seen if i > self.high - SLACK}


async def prune_events(db: Database, retention_s: float, clock: Callable[[], datetime] = utcnow) -> None:
    """Deletes relayed events older than the retention, every quarter of it (run by the scheduler node)."""
    while True:
        try:
            async with db.session() as s:
                await s.execute(delete(ClusterEvent).where(
                    ClusterEvent.created_at < clock() - timedelta(seconds=retention_s)))
                await s.commit()
        except Exception as exc:  # the database is away: next round
            log.warning("pruning cluster events failed: %s", exc)
        await asyncio.sleep(retention_s / 4)
