"""Append-only, hash-chained record of every handling step, and what is derived from it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.models import RecordEntry

GENESIS = "0" * 64

# Record actions (also the timeline's vocabulary).
ALARM_RECEIVED = "alarm.received"
INCIDENT_CREATED = "incident.created"
ACKNOWLEDGED = "incident.acknowledged"
DISPATCH_CREATED = "dispatch.created"
DISPATCH_SENT = "dispatch.sent"
DISPATCH_DELIVERED = "dispatch.delivered"
DISPATCH_FAILED = "dispatch.attempt_failed"
DISPATCH_ACKNOWLEDGED = "dispatch.acknowledged"
DISPATCH_ON_SCENE = "dispatch.on_scene"
ON_SCENE = "incident.on_scene"
ESCALATED = "incident.escalated"
CLOSED = "incident.closed"
MESSAGE = "incident.message"


def entry_hash(prev_hash: str, incident_id: int | None, hazard_id: int | None, action: str, actor: str,
               at: datetime, data: dict[str, Any], unit_id: str | None = None) -> str:
    content: dict[str, Any] = {"prev": prev_hash, "incident_id": incident_id, "hazard_id": hazard_id,
                               "action": action, "actor": actor, "at": at.isoformat(), "data": data}
    if unit_id is not None:  # covered when set; entries without a unit hash exactly as before the column existed
        content["unit_id"] = unit_id
    body = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class RecordChain:
    """Appends entries inside the caller's transaction. Callers serialise writes (dispatch.writer)."""

    def __init__(self) -> None:
        self._committed = GENESIS
        self._pending = GENESIS

    async def load(self, session: AsyncSession) -> None:
        last = await session.scalar(select(RecordEntry.hash).order_by(RecordEntry.id.desc()).limit(1))
        self._committed = self._pending = last or GENESIS

    def append(self, action: str, actor: str, at: datetime, data: dict[str, Any] | None = None, *,
               incident_id: int | None = None, hazard_id: int | None = None,
               unit_id: str | None = None) -> dict[str, Any]:
        """Returns the row to insert (the writer inserts a transaction's rows in one statement)."""
        data = data or {}
        digest = entry_hash(self._pending, incident_id, hazard_id, action, actor, at, data, unit_id)
        row = {"incident_id": incident_id, "hazard_id": hazard_id, "unit_id": unit_id, "action": action,
               "actor": actor, "at": at, "data": data, "prev_hash": self._pending, "hash": digest}
        self._pending = digest
        return row

    def committed(self) -> None:
        self._committed = self._pending

    def rolled_back(self) -> None:
        self._pending = self._committed


@dataclass(frozen=True, slots=True)
class ChainBreak:
    entry_id: int
    reason: str


def verify(entries: Iterable[RecordEntry]) -> ChainBreak | None:
    """Returns the first entry whose link or content does not match, or None if intact."""
    prev = GENESIS
    for e in entries:
        if e.prev_hash != prev:
            return ChainBreak(e.id, "previous-hash link broken (entry removed or reordered)")
        if entry_hash(e.prev_hash, e.incident_id, e.hazard_id, e.action, e.actor, e.at, e.data, e.unit_id) != e.hash:
            return ChainBreak(e.id, "content does not match its hash (entry altered)")
        prev = e.hash
    return None


def response_times(entries: Sequence[RecordEntry]) -> dict[str, float | None]:
    """Seconds alarm→ack, ack→dispatch, alarm→dispatch, computed from the record only."""
    def first(action: str) -> datetime | None:
        return next((e.at for e in entries if e.action == action), None)

    alarm = first(ALARM_RECEIVED)
    ack = first(ACKNOWLEDGED)
    disp = first(DISPATCH_CREATED)

    def span(a: datetime | None, b: datetime | None) -> float | None:
        return None if a is None or b is None else round((b - a).total_seconds(), 3)

    return {
        "alarm_to_ack_s": span(alarm, ack),
        "ack_to_dispatch_s": span(ack, disp),
        "alarm_to_dispatch_s": span(alarm, disp),
    }
