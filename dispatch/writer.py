"""The core's single writer: one lock, one transaction per change, the record chain, events after commit.

Every service of the core (incidents now; hazards and penalties later) writes through one Writer,
so the hash chain of the record stays a single line and subscribers only ever see committed state.

In cluster mode (docs/cluster.md) each node writes its own chain, moves the chain's signed head in the same
transaction (only from where it last saw it: a second writer on the chain fails its transaction instead of
forking it), and stores the transaction's events for the other nodes (dispatch.fanout), announced by NOTIFY at
commit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.actor import Actor
from dispatch.db import LOCK_ROWS, Database
from dispatch.events import Event, EventBus
from dispatch.models import ChainHead, ClusterEvent, RecordEntry, table_of
from dispatch.records import ChainForked, RecordChain, head_signature
from dispatch.sqlite_inline import OFFLOADED
from ingest.contract import utcnow

INSERT_RECORDS = insert(table_of(RecordEntry))  # built once; a Core insert (the rows are plain dicts already)
INSERT_EVENTS = insert(table_of(ClusterEvent)).returning(table_of(ClusterEvent).c.id)
NOTIFY = text("SELECT pg_notify(:channel, :payload)")
CHANNEL = "firelink_events"


@dataclass(frozen=True, slots=True)
class ClusterWriting:
    """How a node writes in cluster mode: its chain (and events' origin) and the key signing its chain head."""

    node: str
    head_key: bytes = field(repr=False)
    chain: str = ""

    @property
    def chain_name(self) -> str:
        return self.chain or self.node


@dataclass
class Tx:
    """One write transaction: the session, events to publish and callbacks to run after commit."""

    session: AsyncSession
    records: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)


class Writer:
    def __init__(self, db: Database, bus: EventBus, cluster: ClusterWriting | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.bus = bus
        self.cluster = cluster
        self.clock = clock
        self.records = RecordChain(cluster.chain_name if cluster else "main")
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        async with self.db.session() as s:
            await self.records.load(s)
            if self.cluster is None:
                return
            head = await s.get(ChainHead, self.records.name)
            count = await s.scalar(select(func.count()).select_from(RecordEntry)
                                   .where(RecordEntry.chain == self.records.name)) or 0
            if head is None and count:
                raise ChainForked(f"record chain {self.records.name!r} has {count} entries but no signed head")
            if head is not None:
                if head.seq != count or head.hash != self.records.head:
                    raise ChainForked(f"record chain {self.records.name!r}: its head names {head.seq} entries, the "
                                      f"record holds {count}; run `firelink audit verify`")
                self.records.set_head(head.hash, head.seq)

    @asynccontextmanager
    async def tx(self, long: bool = False) -> AsyncIterator[Tx]:
        """`long`: a transaction with much SQL (a large intake batch); on SQLite it runs on the database thread
        instead of the event loop (dispatch.sqlite_inline)."""
        async with self._lock:
            tx = Tx(self.db.write_session())
            if self.cluster is not None:
                tx.session.info[LOCK_ROWS] = True  # rows read to be changed are locked (dispatch.db.locks_rows)
            offloaded = OFFLOADED.set(long)
            try:
                yield tx
                if tx.records:
                    await tx.session.execute(INSERT_RECORDS, tx.records)
                if self.cluster is not None:
                    await self._cluster_commit(tx, self.cluster)
                await tx.session.commit()
            except BaseException:
                await tx.session.rollback()
                self.records.rolled_back()
                raise
            finally:
                await tx.session.close()
                OFFLOADED.reset(offloaded)
            self.records.committed()
            for fn in tx.after_commit:
                fn()
            for event in tx.events:
                self.bus.publish(event)

    async def _cluster_commit(self, tx: Tx, cluster: ClusterWriting) -> None:
        """The chain head moved (signed) and the events stored for the other nodes, in the change's transaction."""
        s = tx.session
        now = self.clock()
        if tx.records:
            digest, seq = self.records.pending
            values = {"seq": seq, "hash": digest, "updated_at": now,
                      "signature": head_signature(cluster.head_key, self.records.name, seq, digest)}
            if self.records.seq == 0:
                try:
                    await s.execute(insert(ChainHead).values(chain=self.records.name, **values))
                except IntegrityError:
                    raise ChainForked(f"record chain {self.records.name!r} was started by another process: "
                                      f"transaction not committed") from None
            else:
                moved = await s.execute(update(ChainHead).where(
                    ChainHead.chain == self.records.name, ChainHead.seq == self.records.seq).values(**values))
                if cast(CursorResult[Any], moved).rowcount != 1:
                    raise ChainForked(f"record chain {self.records.name!r} moved under this writer (another process "
                                      f"writes it): transaction not committed")
        if tx.events:
            body = {"events": [{"type": e.type, "data": e.data} for e in tx.events]}
            event_id = (await s.execute(INSERT_EVENTS, {"node": cluster.node, "events": body,
                                                        "created_at": now})).scalar_one()
            await s.execute(NOTIFY, {"channel": CHANNEL, "payload": json.dumps([event_id, cluster.node])})

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
