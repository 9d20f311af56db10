"""What officers (and the escalation timer) do to an incident: acknowledge, link out agencies, on scene, close,
escalate, talk to the scene. Each command is one writer transaction; its events are published after the commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config import outbound
from dispatch import channels
from dispatch import events as ev
from dispatch import records as rec
from dispatch.actor import SYSTEM, Actor
from dispatch.core import Core, Unacked
from dispatch.errors import BadRequest
from dispatch.events import Event
from dispatch.models import (
    Dispatch,
    Incident,
    Message,
    OutboxMessage,
)
from dispatch.state import (
    DispatchStatus,
    IncidentStatus,
    Outcome,
    TransitionError,
    check_incident,
)
from dispatch.views import (
    dispatch_view,
    message_view,
    unit_view,
)
from dispatch.writer import Tx

MAX_MESSAGE_CHARS = 2000


def _outbox_row(o: outbound.Outbound, payload: dict[str, Any], key: str, now: datetime,
                dispatch_id: int | None = None) -> OutboxMessage:
    """One outbox row for one configured channel; its channel, key and config path are stored, not re-derived."""
    return OutboxMessage(dispatch_id=dispatch_id, channel=o.channel, channel_key=o.key, target=o.target,
                         secret_ref=o.ref, payload=payload, idempotency_key=key, next_attempt_at=now, created_at=now)


class IncidentCommands:
    """The officer's actions on an incident, each one transaction."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def _acknowledge(self, tx: Tx, inc: Incident, actor: Actor, now: datetime) -> None:
        check_incident(inc.status, IncidentStatus.ACKNOWLEDGED)
        inc.status = IncidentStatus.ACKNOWLEDGED
        inc.acknowledged_at = now
        inc.acknowledged_by = actor.username
        self.core.record(tx, inc.id, rec.ACKNOWLEDGED, actor, now)
        incident_id = inc.id

        def taken() -> None:
            self.core.unacked.pop(incident_id, None)

        tx.after_commit.append(taken)

    async def acknowledge(self, incident_id: int, actor: Actor) -> dict[str, Any]:
        """Takes the alarm. Acknowledging twice is harmless and records nothing new."""
        async with self.core.writer.tx() as tx:
            inc = await self.core.incident(tx.session, incident_id, actor, lock=True)
            if inc.status == IncidentStatus.CLOSED:
                raise TransitionError("incident is closed")
            if inc.status == IncidentStatus.NEW:
                self._acknowledge(tx, inc, actor, self.core.clock())
            return await self.core.emit_incident(tx, inc)

    async def dispatch(self, incident_id: int, agencies: Sequence[str], actor: Actor) -> dict[str, Any]:
        """Links out agencies in one action (acknowledging first if needed); each agency once."""
        wanted = list(dict.fromkeys(agencies))
        if not wanted:
            raise BadRequest("agencies must name at least one of: " + ", ".join(self.core.cfg.agencies))
        unknown = [a for a in wanted if a not in self.core.cfg.agencies]
        if unknown:
            raise BadRequest(f"unknown agencies {unknown}; configured: {sorted(self.core.cfg.agencies)}")
        async with self.core.writer.tx() as tx:
            s = tx.session
            now = self.core.clock()
            inc = await self.core.incident(s, incident_id, actor, lock=True)
            if inc.status == IncidentStatus.CLOSED:
                raise TransitionError("incident is closed")
            if inc.status == IncidentStatus.NEW:
                self._acknowledge(tx, inc, actor, now)
            existing = {d.agency for d in (await self.core.dispatches_for(s, [inc.id])).get(inc.id, [])}
            new_rows: list[Dispatch] = []
            for agency in wanted:
                if agency in existing:
                    continue
                d = Dispatch(incident_id=inc.id, agency=agency, status=DispatchStatus.PENDING,
                             idempotency_key=f"fl-{uuid.uuid4().hex}", created_at=now, created_by=actor.username)
                s.add(d)
                new_rows.append(d)
            if not new_rows:
                return await self.core.emit_incident(tx, inc)
            await s.flush()
            if inc.status == IncidentStatus.ACKNOWLEDGED:
                inc.status = IncidentStatus.DISPATCHED
            if inc.dispatched_at is None:
                inc.dispatched_at = now
            for d in new_rows:
                self.core.record(tx, inc.id, rec.DISPATCH_CREATED, actor, now,
                                 {"agency": d.agency, "dispatch_id": d.id})
                self._queue_dispatch(s, inc, d, now)
                tx.events.append(Event(ev.DISPATCH_UPDATED, {"dispatch": dispatch_view(d),
                                                             "incident_id": inc.id, "unit_id": inc.unit_id}))
            tx.events.append(Event(ev.OUTBOX_PENDING, {}))
            return await self.core.emit_incident(tx, inc)

    def _queue_dispatch(self, s: AsyncSession, inc: Incident, d: Dispatch, now: datetime) -> None:
        base = self.core.cfg.public_url().rstrip("/")
        unit = self.core.units[inc.unit_id]
        payload = {
            "dispatch_id": d.id, "idempotency_key": d.idempotency_key, "agency": d.agency,
            "incident_id": inc.id, "kind": inc.kind, "alarm_count": inc.alarm_count,
            "station": {"id": self.core.cfg.station.id, "name": self.core.cfg.station.name},
            "unit": unit_view(unit),
            "alarm_at": inc.opened_at.isoformat(),
            "acknowledged_at": inc.acknowledged_at.isoformat() if inc.acknowledged_at else None,
            "dispatched_at": now.isoformat(),
            "console_url": f"{base}/#incident/{inc.id}",
            "agency_url": f"{base}/agency.html",
            "ack_url": f"{base}/api/dispatches/{d.id}/ack",
            "on_scene_url": f"{base}/api/dispatches/{d.id}/on_scene",
        }
        targets = outbound.for_agency(self.core.cfg, d.agency)
        s.add_all(_outbox_row(o, payload, d.idempotency_key, now, d.id) for o in targets)
        d.channels = [channels.new(o.key, o.channel) for o in targets]

    async def on_scene(self, incident_id: int, actor: Actor) -> dict[str, Any]:
        async with self.core.writer.tx() as tx:
            inc = await self.core.incident(tx.session, incident_id, actor, lock=True)
            check_incident(inc.status, IncidentStatus.ON_SCENE)
            now = self.core.clock()
            inc.status = IncidentStatus.ON_SCENE
            inc.on_scene_at = now
            self.core.record(tx, inc.id, rec.ON_SCENE, actor, now)
            return await self.core.emit_incident(tx, inc)

    async def close(self, incident_id: int, outcome: str, note: str, actor: Actor) -> dict[str, Any]:
        try:
            result = Outcome(outcome)
        except ValueError:
            raise BadRequest("outcome must be resolved or false_alarm") from None
        async with self.core.writer.tx() as tx:
            inc = await self.core.incident(tx.session, incident_id, actor, lock=True)
            now = self.core.clock()
            if inc.status == IncidentStatus.NEW:
                self._acknowledge(tx, inc, actor, now)
            check_incident(inc.status, IncidentStatus.CLOSED)
            inc.status = IncidentStatus.CLOSED
            inc.closed_at = now
            inc.closed_by = actor.username
            inc.outcome = result.value
            inc.close_note = note
            inc.merge_target = None  # the unit's next alarm opens a new incident
            self.core.record(tx, inc.id, rec.CLOSED, actor, now, {"outcome": result.value, "note": note})
            unit_id, inc_id = inc.unit_id, inc.id

            def forget() -> None:
                current = self.core.open_by_unit.get(unit_id)
                if current is not None and current.incident_id == inc_id:
                    del self.core.open_by_unit[unit_id]
                self.core.unacked.pop(inc_id, None)

            tx.after_commit.append(forget)
            return await self.core.emit_incident(tx, inc)

    async def escalate(self, incident_id: int, level: int) -> dict[str, Any] | None:
        """Re-alerts an unacknowledged incident and tells the station leader. None if acked meanwhile."""
        async with self.core.writer.tx() as tx:
            inc = await self.core.incident(tx.session, incident_id, lock=True)
            if inc.status != IncidentStatus.NEW or inc.escalation_level >= level:
                return None
            now = self.core.clock()
            inc.escalation_level = level
            inc.escalated_at = now
            waited = round((now - inc.opened_at).total_seconds(), 1)
            self.core.record(tx, inc.id, rec.ESCALATED, SYSTEM, now, {"level": level, "unacknowledged_s": waited})
            view = await self.core.emit_incident(tx, inc)
            tx.events.append(Event(ev.INCIDENT_ESCALATED, {"incident": view, "level": level}))
            payload = {"type": ev.INCIDENT_ESCALATED, "level": level, "unacknowledged_s": waited,
                       "station": {"id": self.core.cfg.station.id, "name": self.core.cfg.station.name},
                       "incident": {k: view[k] for k in ("id", "kind", "opened_at", "unit")},
                       "console_url": f"{self.core.cfg.public_url().rstrip('/')}/#incident/{inc.id}"}
            key = f"esc-{inc.id}-{level}"
            tx.session.add_all(_outbox_row(o, payload, key, now) for o in outbound.for_leader(self.core.cfg))
            tx.events.append(Event(ev.OUTBOX_PENDING, {}))
            tx.after_commit.append(lambda: self._set_unacked_level(incident_id, level))
            return view

    def _set_unacked_level(self, incident_id: int, level: int) -> None:
        cur = self.core.unacked.get(incident_id)
        if cur is not None:
            self.core.unacked[incident_id] = Unacked(cur.opened_at, level)

    async def add_message(self, incident_id: int, text: str, actor: Actor) -> dict[str, Any]:
        text = text.strip()
        if not text or len(text) > MAX_MESSAGE_CHARS:
            raise BadRequest(f"message text must be 1–{MAX_MESSAGE_CHARS} characters")
        async with self.core.writer.tx() as tx:
            inc = await self.core.incident(tx.session, incident_id, actor, lock=True)
            if inc.status == IncidentStatus.CLOSED:
                raise TransitionError("incident is closed: instructions and replies can no longer be sent")
            now = self.core.clock()
            msg = Message(incident_id=inc.id, sender=actor.username, sender_role=actor.role, text=text, at=now)
            tx.session.add(msg)
            await tx.session.flush()
            self.core.record(tx, inc.id, rec.MESSAGE, actor, now, {"text": text, "message_id": msg.id})
            view = message_view(msg)
            tx.events.append(Event(ev.INCIDENT_MESSAGE, {"message": view, "unit_id": inc.unit_id}))
            return view
