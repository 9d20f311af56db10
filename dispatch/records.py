"""Append-only, hash-chained record of every handling step, and what is derived from it."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.models import RecordEntry

GENESIS = "0" * 64
MAIN = "main"  # the single box's chain (every entry written before chains existed)

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


class ChainForked(Exception):
    """The chain's head moved under this writer (another process wrote the same chain): nothing was committed."""


def head_signature(key: bytes, chain: str, seq: int, digest: str) -> str:
    """HMAC-SHA256 over a chain head: its name, its entry count and its last entry's hash."""
    return hmac.new(key, f"{chain}\n{seq}\n{digest}".encode(), hashlib.sha256).hexdigest()


class RecordChain:
    """Appends entries to one chain inside the caller's transaction. Callers serialise writes (dispatch.writer).

    `seq` counts the chain's entries: the writer moves the chain's signed head (cluster mode) from the committed
    count to the pending one in the same transaction."""

    def __init__(self, name: str = MAIN) -> None:
        self.name = name
        self._committed = GENESIS
        self._pending = GENESIS
        self.seq = 0  # committed entries
        self._pending_seq = 0

    async def load(self, session: AsyncSession) -> None:
        last = await session.scalar(select(RecordEntry.hash).where(RecordEntry.chain == self.name)
                                    .order_by(RecordEntry.id.desc()).limit(1))
        self._committed = self._pending = last or GENESIS
        self.seq = self._pending_seq = 0

    def set_head(self, digest: str, seq: int) -> None:
        """The committed head as its stored chain head names it (cluster mode)."""
        self._committed = self._pending = digest
        self.seq = self._pending_seq = seq

    @property
    def head(self) -> str:
        return self._committed

    @property
    def pending(self) -> tuple[str, int]:
        return self._pending, self._pending_seq

    def append(self, action: str, actor: str, at: datetime, data: dict[str, Any] | None = None, *,
               incident_id: int | None = None, hazard_id: int | None = None,
               unit_id: str | None = None) -> dict[str, Any]:
        """Returns the row to insert (the writer inserts a transaction's rows in one statement)."""
        data = data or {}
        digest = entry_hash(self._pending, incident_id, hazard_id, action, actor, at, data, unit_id)
        row = {"incident_id": incident_id, "hazard_id": hazard_id, "unit_id": unit_id, "action": action,
               "actor": actor, "at": at, "data": data, "prev_hash": self._pending, "hash": digest,
               "chain": self.name}
        self._pending = digest
        self._pending_seq += 1
        return row

    def committed(self) -> None:
        self._committed = self._pending
        self.seq = self._pending_seq

    def rolled_back(self) -> None:
        self._pending = self._committed
        self._pending_seq = self.seq


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


@dataclass(frozen=True, slots=True)
class Head:
    chain: str
    seq: int
    hash: str
    signature: str


def verify_chains(entries: Iterable[RecordEntry], heads: Sequence[Head], key: bytes | None
                  ) -> tuple[dict[str, int], ChainBreak | str | None]:
    """Every chain (entries in id order) and its signed head. Returns entries per chain and the first problem:
    a ChainBreak, or a text about a head (missing, unsigned, cut off, not matching its chain's last entry)."""
    by_chain: dict[str, list[RecordEntry]] = {}
    for e in entries:
        by_chain.setdefault(e.chain, []).append(e)
    counts = {name: len(rows) for name, rows in by_chain.items()}
    for rows in by_chain.values():
        broken = verify(rows)
        if broken is not None:
            return counts, broken
    signed = {h.chain: h for h in heads}
    if signed and key is None:
        return counts, "record chains have signed heads but no cluster.head_key is configured to check them"
    for name, h in signed.items():
        if key is not None and not hmac.compare_digest(head_signature(key, h.chain, h.seq, h.hash), h.signature):
            return counts, f"chain {name!r}: head signature does not match (head altered or wrong head_key)"
        rows = by_chain.get(name, [])
        if h.seq != len(rows) or h.hash != (rows[-1].hash if rows else GENESIS):
            return counts, (f"chain {name!r}: its signed head names {h.seq} entries ending {h.hash[:12]}…, the "
                            f"record holds {len(rows)} (entries removed from its end, or added without the head)")
    unsigned = sorted(set(by_chain) - set(signed) - {MAIN})
    if unsigned:
        return counts, f"chains without a signed head: {', '.join(unsigned)}"
    return counts, None


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
