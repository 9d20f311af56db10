"""The core's single writer: one lock, one transaction per change, the record chain, events after commit.

Every service of the core (incidents now; hazards and penalties later) writes through one Writer,
so the hash chain of the record stays a single line and subscribers only ever see committed state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.actor import Actor
from dispatch.db import Database
from dispatch.events import Event, EventBus
from dispatch.models import RecordEntry, table_of
from dispatch.records import RecordChain

INSERT_RECORDS = insert(table_of(RecordEntry))  # built once; a Core insert (the rows are plain dicts already)


@dataclass
class Tx:
    """One write transaction: the session, events to publish and callbacks to run after commit."""

    session: AsyncSession
    records: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)


class Writer:
    def __init__(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self.bus = bus
        self.records = RecordChain()
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        async with self.db.session() as s:
            await self.records.load(s)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        async with self._lock:
            tx = Tx(self.db.session())
            try:
                yield tx
                if tx.records:
                    await tx.session.execute(INSERT_RECORDS, tx.records)
                await tx.session.commit()
            except BaseException:
                await tx.session.rollback()
                self.records.rolled_back()
                raise
            finally:
                await tx.session.close()
            self.records.committed()
            for fn in tx.after_commit:
                fn()
            for event in tx.events:
                self.bus.publish(event)

    def record(self, tx: Tx, action: str, actor: Actor, at: datetime, data: dict[str, Any] | None = None, *,
               incident_id: int | None = None, hazard_id: int | None = None, unit_id: str | None = None) -> None:
        """`unit_id`: the unit a registry entry is about (its history is read by it, dispatch.unit_views)."""
        tx.records.append(self.records.append(action, actor.username, at, data,
                                              incident_id=incident_id, hazard_id=hazard_id, unit_id=unit_id))

    async def note(self, action: str, actor: Actor, at: datetime, data: dict[str, Any] | None = None, *,
                   incident_id: int | None = None, hazard_id: int | None = None) -> None:
        """One record entry in its own transaction: a fact that changes no row (a login, evidence saved, a camera
        fault)."""
        async with self.tx() as tx:
            self.record(tx, action, actor, at, data, incident_id=incident_id, hazard_id=hazard_id)
