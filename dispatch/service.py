"""The dispatch core: the single writer of incidents, dispatches, the outbox and the record.

Every state change runs in one transaction under one lock, appends its
record entries in that transaction, and publishes its events on the bus
only after the commit, so what subscribers see is always in the database.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from log_rate_limit import RateLimit, StreamRateLimitFilter  # type: ignore[import-untyped]
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from config import outbound
from config.schema import FirelinkConfig
from dispatch import channels
from dispatch import events as ev
from dispatch import records as rec
from dispatch.actor import SYSTEM, Actor
from dispatch.events import Event
from dispatch.evidence_record import entries as record_entries
from dispatch.models import (
    Alarm,
    Device,
    Dispatch,
    Incident,
    Message,
    OutboxMessage,
    RecordEntry,
    RejectedMessage,
    Unit,
)
from dispatch.queries import STATES, IncidentFilter, incident_rows
from dispatch.state import (
    DispatchStatus,
    IncidentStatus,
    Outcome,
    TransitionError,
    check_incident,
    dispatch_advances,
)
from dispatch.views import (
    alarm_view,
    device_view,
    dispatch_view,
    incident_view,
    message_view,
    record_view,
    rejection_view,
    unit_view,
)
from dispatch.writer import Tx, Writer
from ingest.contract import AlarmIn, Rejection, printable, utcnow

log = logging.getLogger(__name__)
# A flood of bad input is stored and counted in full, but logged at most 20 lines per 10 s (then a count of the rest).
log.addFilter(StreamRateLimitFilter(period_sec=10, allow_next_n=20, default_stream_id=None))
REJECTED_LOG = RateLimit(stream_id="rejected-input")

MAX_MESSAGE_CHARS = 2000


class NotFound(Exception):
    """No such incident/dispatch (HTTP 404)."""


class Forbidden(Exception):
    """The actor may not see or touch this (HTTP 403)."""


class BadRequest(Exception):
    """The request is well-formed but asks for something invalid (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """The unit's open incident; the merge window is judged on its row's last_alarm_at."""

    incident_id: int


@dataclass(frozen=True, slots=True)
class AlarmNote:
    """A record entry written on an accepted alarm's incident in the alarm's own transaction (e.g. the detection
    frame that raised it): the alarm and its evidence are committed together or not at all."""

    action: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unacked:
    opened_at: datetime
    level: int


def _outbox_row(o: outbound.Outbound, payload: dict[str, Any], key: str, now: datetime,
                dispatch_id: int | None = None) -> OutboxMessage:
    """One outbox row for one configured channel; its channel, key and config path are stored, not re-derived."""
    return OutboxMessage(dispatch_id=dispatch_id, channel=o.channel, channel_key=o.key, target=o.target,
                         secret_ref=o.ref, payload=payload, idempotency_key=key, next_attempt_at=now, created_at=now)


class IncidentService:
    def __init__(self, writer: Writer, cfg: FirelinkConfig, clock: Callable[[], datetime] = utcnow) -> None:
        self.writer = writer
        self.db = writer.db
        self.bus = writer.bus
        self.cfg = cfg
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.units: dict[str, Unit] = {}
        self.open_by_unit: dict[str, OpenIncident] = {}
        self.unacked: dict[int, Unacked] = {}

    # ---------------------------------------------------------------- start-up

    async def start(self) -> None:
        """Sync units/devices from config and load the in-memory indexes from the database."""
        await self.writer.load()
        async with self.db.session() as s:
            for u in self.cfg.units:
                await s.merge(Unit(id=u.id, name=u.name, category=u.category, address=u.address, lat=u.lat,
                                   lon=u.lon, contact_name=u.contact_name, contact_phone=u.contact_phone))
            await s.flush()
            for u in self.cfg.units:
                for d in u.devices:
                    dev = await s.get(Device, d.id)
                    if dev is None:
                        s.add(Device(id=d.id, unit_id=u.id, kind=d.kind, heartbeat_interval_s=d.heartbeat_interval_s,
                                     status="unknown", detail=""))
                    else:
                        dev.unit_id, dev.kind, dev.heartbeat_interval_s = u.id, d.kind, d.heartbeat_interval_s
            await s.commit()
            self.units = {u.id: u for u in (await s.scalars(select(Unit))).all()}
            rows = (await s.scalars(select(Incident).where(Incident.status != IncidentStatus.CLOSED))).all()
            for inc in rows:
                self.open_by_unit[inc.unit_id] = OpenIncident(inc.id)
                if inc.status == IncidentStatus.NEW:
                    self.unacked[inc.id] = Unacked(inc.opened_at, inc.escalation_level)

    # ------------------------------------------------------------ transactions

    def _record(self, tx: Tx, incident_id: int | None, action: str, actor: Actor, at: datetime,
                data: dict[str, Any] | None = None) -> None:
        self.writer.record(tx, action, actor, at, data, incident_id=incident_id)

    # ------------------------------------------------------------------ ingest

    async def ingest(self, items: Sequence[AlarmIn | Rejection],
                     notes: Mapping[str, Sequence[AlarmNote]] | None = None) -> list[str]:
        """Commits a batch of alarms (and refusals) in one transaction.

        Returns one outcome per item: accepted | duplicate | rejected. The
        caller acknowledges the messages to the broker only after this returns.
        `notes` (by alarm id) are recorded on an accepted alarm's incident in the same transaction; a duplicate
        or rejected alarm records none.
        """
        if not items:
            return []
        async with self.writer.tx() as tx:
            return await self._ingest(tx, items, notes or {})

    async def record_of(self, incident_id: int, action: str) -> list[dict[str, Any]]:
        """The data of an incident's record entries of one action, oldest first (e.g. its detection frames)."""
        return await record_entries(self.db, incident_id, action)

    async def _ingest(self, tx: Tx, items: Sequence[AlarmIn | Rejection],
                      notes: Mapping[str, Sequence[AlarmNote]]) -> list[str]:
        s = tx.session
        window = timedelta(seconds=self.cfg.escalation.merge_window_s)
        alarms = [i for i in items if isinstance(i, AlarmIn)]
        known: set[str] = set()
        open_rows: dict[int, Incident] = {}
        open_ids = list({self.open_by_unit[a.unit_id].incident_id for a in alarms if a.unit_id in self.open_by_unit})
        for start in range(0, max(len(alarms), len(open_ids)), 500):  # one round trip per 500, not per alarm
            ids = [a.alarm_id for a in alarms[start:start + 500]]
            if ids:
                known.update((await s.scalars(select(Alarm.alarm_id).where(Alarm.alarm_id.in_(ids)))).all())
            chunk = open_ids[start:start + 500]
            if chunk:
                open_rows.update((r.id, r) for r in (await s.scalars(select(Incident).where(Incident.id.in_(chunk)))))

        outcomes: list[str] = []
        accepted: list[tuple[AlarmIn, Incident]] = []
        created: list[Incident] = []
        batch_open: dict[str, Incident] = {}
        rejections: list[RejectedMessage] = []

        for item in items:
            if isinstance(item, Rejection):
                rejections.append(self._rejection_row(item))
                outcomes.append("rejected")
                continue
            if item.alarm_id in known:
                outcomes.append("duplicate")
                self.counters["alarms_duplicate"] += 1
                continue
            if item.unit_id not in self.units:
                rejections.append(self._rejection_row(Rejection(
                    item.source, item.topic, f"unknown unit {item.unit_id!r}", "", 0, item.received_at)))
                outcomes.append("rejected")
                continue
            known.add(item.alarm_id)
            inc = batch_open.get(item.unit_id)
            if inc is None and item.unit_id in self.open_by_unit:
                inc = open_rows.get(self.open_by_unit[item.unit_id].incident_id)
            if inc is not None and item.received_at - inc.last_alarm_at <= window:
                inc.alarm_count += 1
                inc.last_alarm_at = max(inc.last_alarm_at, item.received_at)
            else:
                inc = Incident(unit_id=item.unit_id, kind=item.kind, status=IncidentStatus.NEW,
                               opened_at=item.received_at, last_alarm_at=item.received_at, alarm_count=1,
                               escalation_level=0, close_note="")
                s.add(inc)
                created.append(inc)
            batch_open[item.unit_id] = inc
            accepted.append((item, inc))
            outcomes.append("accepted")

        s.add_all(rejections)
        await s.flush()  # assigns incident ids
        tx.events.extend(Event(ev.ALARM_REJECTED, {"rejection": rejection_view(r)}) for r in rejections)
        if not accepted:
            return outcomes

        new_ids = {inc.id for inc in created}
        first_alarm = set(new_ids)
        touched: dict[int, Incident] = {}
        alarm_rows: list[dict[str, Any]] = []
        for item, inc in accepted:
            alarm_rows.append({"alarm_id": item.alarm_id, "unit_id": item.unit_id, "incident_id": inc.id,
                               "kind": item.kind, "device_id": item.device_id, "device_ts": item.device_ts,
                               "received_at": item.received_at, "note": item.note, "source": item.source})
            touched[inc.id] = inc
            self._record(tx, inc.id, rec.ALARM_RECEIVED, Actor(item.device_id or item.source, "device"),
                         item.received_at, {"alarm_id": item.alarm_id, "kind": item.kind, "source": item.source,
                                            "device_id": item.device_id})
            if inc.id in first_alarm:
                self._record(tx, inc.id, rec.INCIDENT_CREATED, SYSTEM, item.received_at,
                             {"unit_id": inc.unit_id, "kind": inc.kind})
                first_alarm.discard(inc.id)
            for note in notes.get(item.alarm_id, ()):
                self._record(tx, inc.id, note.action, SYSTEM, item.received_at, note.data)
        await s.execute(insert(Alarm), alarm_rows)

        dispatches = await self._dispatches_for(s, [i for i in touched if i not in new_ids])
        self.counters["alarms_accepted"] += len(alarm_rows)
        for row in alarm_rows:
            tx.events.append(Event(ev.ALARM_RECEIVED, {"alarm": alarm_view(Alarm(**row)), "unit_id": row["unit_id"]}))
        for inc_id, inc in touched.items():
            view = incident_view(inc, self.units[inc.unit_id], dispatches.get(inc_id, []))
            kind = ev.INCIDENT_CREATED if inc_id in new_ids else ev.INCIDENT_UPDATED
            tx.events.append(Event(kind, {"incident": view}))

        def apply() -> None:
            for inc in touched.values():
                self.open_by_unit[inc.unit_id] = OpenIncident(inc.id)
            for inc in created:
                self.unacked[inc.id] = Unacked(inc.opened_at, 0)

        tx.after_commit.append(apply)
        return outcomes

    def _rejection_row(self, r: Rejection) -> RejectedMessage:
        self.counters["rejected"] += 1
        log.warning("rejected %s input on %r: %s", r.source, r.topic, r.reason, extra=REJECTED_LOG)
        return RejectedMessage(received_at=r.received_at, source=r.source, topic=printable(r.topic)[:400],
                               reason=r.reason[:400], excerpt=r.excerpt[:600], size=r.size)

    async def reject(self, rejection: Rejection) -> None:
        async with self.writer.tx() as tx:
            row = self._rejection_row(rejection)
            tx.session.add(row)
            await tx.session.flush()
            tx.events.append(Event(ev.ALARM_REJECTED, {"rejection": rejection_view(row)}))

    # ----------------------------------------------------------------- actions

    async def _incident(self, s: AsyncSession, incident_id: int) -> Incident:
        inc = await s.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"incident {incident_id} not found")
        return inc

    async def _dispatches_for(self, s: AsyncSession, incident_ids: Sequence[int]) -> dict[int, list[Dispatch]]:
        out: dict[int, list[Dispatch]] = {}
        if incident_ids:
            rows = await s.scalars(select(Dispatch).where(Dispatch.incident_id.in_(list(incident_ids))))
            for d in rows:
                out.setdefault(d.incident_id, []).append(d)
        return out

    async def _emit_incident(self, tx: Tx, inc: Incident) -> dict[str, Any]:
        disp = (await self._dispatches_for(tx.session, [inc.id])).get(inc.id, [])
        view = incident_view(inc, self.units[inc.unit_id], disp)
        tx.events.append(Event(ev.INCIDENT_UPDATED, {"incident": view}))
        return view

    def _acknowledge(self, tx: Tx, inc: Incident, actor: Actor, now: datetime) -> None:
        check_incident(inc.status, IncidentStatus.ACKNOWLEDGED)
        inc.status = IncidentStatus.ACKNOWLEDGED
        inc.acknowledged_at = now
        inc.acknowledged_by = actor.username
        self._record(tx, inc.id, rec.ACKNOWLEDGED, actor, now)
        incident_id = inc.id

        def taken() -> None:
            self.unacked.pop(incident_id, None)

        tx.after_commit.append(taken)

    async def acknowledge(self, incident_id: int, actor: Actor) -> dict[str, Any]:
        """Takes the alarm. Acknowledging twice is harmless and records nothing new."""
        async with self.writer.tx() as tx:
            inc = await self._incident(tx.session, incident_id)
            if inc.status == IncidentStatus.CLOSED:
                raise TransitionError("incident is closed")
            if inc.status == IncidentStatus.NEW:
                self._acknowledge(tx, inc, actor, self.clock())
            return await self._emit_incident(tx, inc)

    async def dispatch(self, incident_id: int, agencies: Sequence[str], actor: Actor) -> dict[str, Any]:
        """Links out agencies in one action (acknowledging first if needed); each agency once."""
        wanted = list(dict.fromkeys(agencies))
        if not wanted:
            raise BadRequest("agencies must name at least one of: " + ", ".join(self.cfg.agencies))
        unknown = [a for a in wanted if a not in self.cfg.agencies]
        if unknown:
            raise BadRequest(f"unknown agencies {unknown}; configured: {sorted(self.cfg.agencies)}")
        async with self.writer.tx() as tx:
            s = tx.session
            now = self.clock()
            inc = await self._incident(s, incident_id)
            if inc.status == IncidentStatus.CLOSED:
                raise TransitionError("incident is closed")
            if inc.status == IncidentStatus.NEW:
                self._acknowledge(tx, inc, actor, now)
            existing = {d.agency for d in (await self._dispatches_for(s, [inc.id])).get(inc.id, [])}
            new_rows: list[Dispatch] = []
            for agency in wanted:
                if agency in existing:
                    continue
                d = Dispatch(incident_id=inc.id, agency=agency, status=DispatchStatus.PENDING,
                             idempotency_key=f"fl-{uuid.uuid4().hex}", created_at=now, created_by=actor.username)
                s.add(d)
                new_rows.append(d)
            if not new_rows:
                return await self._emit_incident(tx, inc)
            await s.flush()
            if inc.status == IncidentStatus.ACKNOWLEDGED:
                inc.status = IncidentStatus.DISPATCHED
            if inc.dispatched_at is None:
                inc.dispatched_at = now
            for d in new_rows:
                self._record(tx, inc.id, rec.DISPATCH_CREATED, actor, now, {"agency": d.agency, "dispatch_id": d.id})
                self._queue_dispatch(s, inc, d, now)
                tx.events.append(Event(ev.DISPATCH_UPDATED, {"dispatch": dispatch_view(d),
                                                             "incident_id": inc.id, "unit_id": inc.unit_id}))
            tx.events.append(Event(ev.OUTBOX_PENDING, {}))
            return await self._emit_incident(tx, inc)

    def _queue_dispatch(self, s: AsyncSession, inc: Incident, d: Dispatch, now: datetime) -> None:
        base = self.cfg.public_url().rstrip("/")
        unit = self.units[inc.unit_id]
        payload = {
            "dispatch_id": d.id, "idempotency_key": d.idempotency_key, "agency": d.agency,
            "incident_id": inc.id, "kind": inc.kind, "alarm_count": inc.alarm_count,
            "station": {"id": self.cfg.station.id, "name": self.cfg.station.name},
            "unit": unit_view(unit),
            "alarm_at": inc.opened_at.isoformat(),
            "acknowledged_at": inc.acknowledged_at.isoformat() if inc.acknowledged_at else None,
            "dispatched_at": now.isoformat(),
            "console_url": f"{base}/#incident/{inc.id}",
            "agency_url": f"{base}/agency.html",
            "ack_url": f"{base}/api/dispatches/{d.id}/ack",
            "on_scene_url": f"{base}/api/dispatches/{d.id}/on_scene",
        }
        targets = outbound.for_agency(self.cfg, d.agency)
        s.add_all(_outbox_row(o, payload, d.idempotency_key, now, d.id) for o in targets)
        d.channels = [channels.new(o.key, o.channel) for o in targets]

    async def on_scene(self, incident_id: int, actor: Actor) -> dict[str, Any]:
        async with self.writer.tx() as tx:
            inc = await self._incident(tx.session, incident_id)
            check_incident(inc.status, IncidentStatus.ON_SCENE)
            now = self.clock()
            inc.status = IncidentStatus.ON_SCENE
            inc.on_scene_at = now
            self._record(tx, inc.id, rec.ON_SCENE, actor, now)
            return await self._emit_incident(tx, inc)

    async def close(self, incident_id: int, outcome: str, note: str, actor: Actor) -> dict[str, Any]:
        try:
            result = Outcome(outcome)
        except ValueError:
            raise BadRequest("outcome must be resolved or false_alarm") from None
        async with self.writer.tx() as tx:
            inc = await self._incident(tx.session, incident_id)
            now = self.clock()
            if inc.status == IncidentStatus.NEW:
                self._acknowledge(tx, inc, actor, now)
            check_incident(inc.status, IncidentStatus.CLOSED)
            inc.status = IncidentStatus.CLOSED
            inc.closed_at = now
            inc.closed_by = actor.username
            inc.outcome = result.value
            inc.close_note = note
            self._record(tx, inc.id, rec.CLOSED, actor, now, {"outcome": result.value, "note": note})
            unit_id, inc_id = inc.unit_id, inc.id

            def forget() -> None:
                current = self.open_by_unit.get(unit_id)
                if current is not None and current.incident_id == inc_id:
                    del self.open_by_unit[unit_id]
                self.unacked.pop(inc_id, None)

            tx.after_commit.append(forget)
            return await self._emit_incident(tx, inc)

    async def escalate(self, incident_id: int, level: int) -> dict[str, Any] | None:
        """Re-alerts an unacknowledged incident and tells the station leader. None if acked meanwhile."""
        async with self.writer.tx() as tx:
            inc = await self._incident(tx.session, incident_id)
            if inc.status != IncidentStatus.NEW or inc.escalation_level >= level:
                return None
            now = self.clock()
            inc.escalation_level = level
            inc.escalated_at = now
            waited = round((now - inc.opened_at).total_seconds(), 1)
            self._record(tx, inc.id, rec.ESCALATED, SYSTEM, now, {"level": level, "unacknowledged_s": waited})
            view = await self._emit_incident(tx, inc)
            tx.events.append(Event(ev.INCIDENT_ESCALATED, {"incident": view, "level": level}))
            payload = {"type": ev.INCIDENT_ESCALATED, "level": level, "unacknowledged_s": waited,
                       "station": {"id": self.cfg.station.id, "name": self.cfg.station.name},
                       "incident": {k: view[k] for k in ("id", "kind", "opened_at", "unit")},
                       "console_url": f"{self.cfg.public_url().rstrip('/')}/#incident/{inc.id}"}
            key = f"esc-{inc.id}-{level}"
            tx.session.add_all(_outbox_row(o, payload, key, now) for o in outbound.for_leader(self.cfg))
            tx.events.append(Event(ev.OUTBOX_PENDING, {}))
            tx.after_commit.append(lambda: self._set_unacked_level(incident_id, level))
            return view

    def _set_unacked_level(self, incident_id: int, level: int) -> None:
        cur = self.unacked.get(incident_id)
        if cur is not None:
            self.unacked[incident_id] = Unacked(cur.opened_at, level)

    async def add_message(self, incident_id: int, text: str, actor: Actor) -> dict[str, Any]:
        text = text.strip()
        if not text or len(text) > MAX_MESSAGE_CHARS:
            raise BadRequest(f"message text must be 1–{MAX_MESSAGE_CHARS} characters")
        async with self.writer.tx() as tx:
            inc = await self._incident(tx.session, incident_id)
            self._check_visible(actor, inc.unit_id, agencies=None)
            if inc.status == IncidentStatus.CLOSED:
                raise TransitionError("incident is closed: instructions and replies can no longer be sent")
            now = self.clock()
            msg = Message(incident_id=inc.id, sender=actor.username, sender_role=actor.role, text=text, at=now)
            tx.session.add(msg)
            await tx.session.flush()
            self._record(tx, inc.id, rec.MESSAGE, actor, now, {"text": text, "message_id": msg.id})
            view = message_view(msg)
            tx.events.append(Event(ev.INCIDENT_MESSAGE, {"message": view, "unit_id": inc.unit_id}))
            return view

    # ------------------------------------------------------- agency responses

    async def agency_update(self, dispatch_id: int, status: str, actor: Actor, via: str = "http") -> dict[str, Any]:
        """An agency acknowledges a dispatch or reports arrival (web page, token API, or MQTT with via="mqtt")."""
        try:
            target = DispatchStatus(status)
        except ValueError:
            raise BadRequest("status must be acknowledged or on_scene") from None
        if target not in (DispatchStatus.ACKNOWLEDGED, DispatchStatus.ON_SCENE):
            raise BadRequest("status must be acknowledged or on_scene")
        async with self.writer.tx() as tx:
            s = tx.session
            d = await s.get(Dispatch, dispatch_id)
            if d is None:
                raise NotFound(f"dispatch {dispatch_id} not found")
            if actor.role == "agency" and actor.agency != d.agency:
                raise Forbidden("this dispatch was sent to another agency")
            inc = await self._incident(s, d.incident_id)
            now = self.clock()
            confirmed = via == "mqtt" and await self._confirm_mqtt(tx, d, now)
            if not dispatch_advances(d.status, target):
                return await self._emit_dispatch(tx, d) if confirmed else dispatch_view(d)
            if d.delivered_at is None:
                d.delivered_at = now
            if target == DispatchStatus.ACKNOWLEDGED or d.acknowledged_at is None:
                d.acknowledged_at, d.acknowledged_by = now, actor.username
                self._record(tx, inc.id, rec.DISPATCH_ACKNOWLEDGED, actor, now,
                             {"agency": d.agency, "dispatch_id": d.id, "via": via})
            if target == DispatchStatus.ON_SCENE:
                d.on_scene_at = now
                self._record(tx, inc.id, rec.DISPATCH_ON_SCENE, actor, now,
                             {"agency": d.agency, "dispatch_id": d.id, "via": via})
                if inc.status in (IncidentStatus.ACKNOWLEDGED, IncidentStatus.DISPATCHED):
                    inc.status = IncidentStatus.ON_SCENE
                    inc.on_scene_at = now
                    self._record(tx, inc.id, rec.ON_SCENE, actor, now, {"agency": d.agency})
            d.status = target
            return await self._emit_dispatch(tx, d)

    # ------------------------------------------------------ outbox bookkeeping

    async def outbox_result(self, outbox_id: int, attempted_at: datetime, error: str | None,
                            next_attempt_at: datetime | None = None, *, confirmed: bool) -> None:
        """Called by the notify worker after each delivery attempt; records it on the dispatch.

        `confirmed` is what the channel's success means (notify.channels): a webhook's 2xx is the agency's side
        confirming, so the channel is delivered. The MQTT broker's PUBACK only says the broker has the message:
        the channel is sent, and becomes delivered when the agency acknowledges over MQTT (agency_update with
        via="mqtt").
        """
        async with self.writer.tx() as tx:
            s = tx.session
            msg = await s.get(OutboxMessage, outbox_id)
            if msg is None or msg.status != "pending":
                return
            now = self.clock()
            msg.attempts += 1
            d = await s.get(Dispatch, msg.dispatch_id) if msg.dispatch_id is not None else None
            key = msg.channel_key
            if error is not None:
                msg.last_error = error[:400]
                msg.next_attempt_at = next_attempt_at or now
                if d is not None:
                    d.channels = channels.updated(d.channels, key, msg.channel, attempts=msg.attempts, error=error)
                    self._record(tx, d.incident_id, rec.DISPATCH_FAILED, SYSTEM, attempted_at,
                                 {"agency": d.agency, "dispatch_id": d.id, "channel": msg.channel,
                                  "attempt": msg.attempts, "error": error[:200]})
            else:
                msg.status, msg.delivered_at, msg.last_error = ("delivered" if confirmed else "sent"), now, ""
                if d is not None:
                    status = channels.DELIVERED if confirmed else channels.SENT
                    d.channels = channels.updated(d.channels, key, msg.channel, status=status, at=now,
                                                  attempts=msg.attempts, error="")
                    self._dispatch_sent(tx, d, attempted_at, msg.channel)
                    if confirmed:
                        self._dispatch_delivered(tx, d, now, msg.channel, msg.attempts)
            if d is not None:
                await self._emit_dispatch(tx, d)

    def _dispatch_sent(self, tx: Tx, d: Dispatch, at: datetime, channel: str) -> None:
        """The first time any transport accepted the dispatch."""
        if d.sent_at is not None:
            return
        d.sent_at = at
        if dispatch_advances(d.status, DispatchStatus.SENT):
            d.status = DispatchStatus.SENT
        self._record(tx, d.incident_id, rec.DISPATCH_SENT, SYSTEM, at,
                     {"agency": d.agency, "dispatch_id": d.id, "channel": channel})

    def _dispatch_delivered(self, tx: Tx, d: Dispatch, at: datetime, channel: str, attempts: int | None) -> None:
        """The agency's side confirmed on `channel` (recorded once per channel)."""
        if d.delivered_at is None:
            d.delivered_at = at
        if dispatch_advances(d.status, DispatchStatus.DELIVERED):
            d.status = DispatchStatus.DELIVERED
        data: dict[str, Any] = {"agency": d.agency, "dispatch_id": d.id, "channel": channel}
        if attempts is not None:
            data["attempts"] = attempts
        self._record(tx, d.incident_id, rec.DISPATCH_DELIVERED, SYSTEM, at, data)

    async def _emit_dispatch(self, tx: Tx, d: Dispatch) -> dict[str, Any]:
        inc = await self._incident(tx.session, d.incident_id)
        view = dispatch_view(d)
        tx.events.append(Event(ev.DISPATCH_UPDATED, {"dispatch": view, "incident_id": inc.id, "unit_id": inc.unit_id}))
        await self._emit_incident(tx, inc)
        return view

    async def _confirm_mqtt(self, tx: Tx, d: Dispatch, now: datetime) -> bool:
        """An acknowledgement arrived over MQTT: the MQTT channel reached the agency. True if that is news."""
        if channels.status_of(d.channels, outbound.MQTT_KEY) == channels.DELIVERED:
            return False
        d.channels = channels.updated(d.channels, outbound.MQTT_KEY, outbound.MQTT, status=channels.DELIVERED, at=now)
        rows = await tx.session.scalars(select(OutboxMessage).where(
            OutboxMessage.dispatch_id == d.id, OutboxMessage.channel == outbound.MQTT,
            OutboxMessage.status != "delivered"))
        for row in rows:  # nothing left to publish to an agency that answered on this channel
            row.status, row.delivered_at = "delivered", now
        self._record(tx, d.incident_id, rec.DISPATCH_DELIVERED, SYSTEM, now,
                     {"agency": d.agency, "dispatch_id": d.id, "channel": outbound.MQTT, "via": "ack"})
        return True

    # ---------------------------------------------------------------- devices

    async def set_device_status(self, device_id: str, status: str, detail: str, at: datetime,
                                last_seen: datetime | None) -> dict[str, Any] | None:
        """Persists a device status change (online/offline/fault) with a record entry."""
        async with self.writer.tx() as tx:
            dev = await tx.session.get(Device, device_id)
            if dev is None:
                return None
            if last_seen is not None:
                dev.last_seen = last_seen
            if dev.status == status and dev.detail == detail:
                return device_view(dev)
            dev.status, dev.detail, dev.status_since = status, detail[:400], at
            self._record(tx, None, f"device.{status}", SYSTEM, at,
                         {"device_id": dev.id, "unit_id": dev.unit_id, "detail": detail[:200]})
            view = device_view(dev)
            tx.events.append(Event(ev.DEVICE_UPDATED, {"device": view, "unit_id": dev.unit_id}))
            return view

    # ----------------------------------------------------------------- queries

    def _check_visible(self, actor: Actor, unit_id: str, agencies: set[str] | None) -> None:
        if actor.role == "unit" and actor.unit_id != unit_id:
            raise Forbidden("units see only their own incidents")
        if actor.role == "agency" and (agencies is None or actor.agency not in agencies):
            raise Forbidden("agencies see only incidents dispatched to them")

    async def list_incidents(self, actor: Actor, state: str | IncidentFilter = "open",
                             limit: int = 200) -> list[dict[str, Any]]:
        """Open incidents in urgency order, or the history (closed / all) newest first, filtered."""
        f = state if isinstance(state, IncidentFilter) else IncidentFilter(state=state, limit=limit)
        if f.state not in STATES:
            raise BadRequest("state must be open, closed or all")
        async with self.db.session() as s:
            rows = await incident_rows(s, actor, f)
            disp = await self._dispatches_for(s, [r.id for r in rows])
            return [incident_view(r, self.units[r.unit_id], disp.get(r.id, [])) for r in rows]

    async def incident_detail(self, incident_id: int, actor: Actor) -> dict[str, Any]:
        async with self.db.session() as s:
            inc = await self._incident(s, incident_id)
            dispatches = (await self._dispatches_for(s, [inc.id])).get(inc.id, [])
            self._check_visible(actor, inc.unit_id, {d.agency for d in dispatches})
            alarms = (await s.scalars(select(Alarm).where(Alarm.incident_id == inc.id).order_by(Alarm.id))).all()
            entries = (await s.scalars(select(RecordEntry).where(RecordEntry.incident_id == inc.id)
                                       .order_by(RecordEntry.id))).all()
            messages = (await s.scalars(select(Message).where(Message.incident_id == inc.id)
                                        .order_by(Message.id))).all()
            # the unit's incidents before this one (a later one is not this alarm's history)
            history = await s.scalar(select(func.count(Incident.id)).where(Incident.unit_id == inc.unit_id,
                                                                            Incident.id < inc.id))
            view = incident_view(inc, self.units[inc.unit_id], dispatches)
            view.update(
                alarms=[alarm_view(a) for a in alarms],
                timeline=[record_view(e) for e in entries],
                messages=[message_view(m) for m in messages],
                response_times=rec.response_times(entries),
                unit_incident_count=history or 0,
            )
            if actor.role == "agency":
                view["dispatches"] = [d for d in view["dispatches"] if d["agency"] == actor.agency]
            return view

    async def list_units(self, actor: Actor) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            devices = (await s.scalars(select(Device).order_by(Device.id))).all()
        by_unit: dict[str, list[dict[str, Any]]] = {}
        for d in devices:
            by_unit.setdefault(d.unit_id, []).append(device_view(d))
        out = []
        for unit in self.units.values():
            if actor.role == "unit" and unit.id != actor.unit_id:
                continue
            view = unit_view(unit)
            view["devices"] = by_unit.get(unit.id, [])
            open_inc = self.open_by_unit.get(unit.id)
            view["open_incident_id"] = open_inc.incident_id if open_inc else None
            out.append(view)
        return out

    async def list_dispatches(self, actor: Actor, state: str = "open") -> list[dict[str, Any]]:
        async with self.db.session() as s:
            q = select(Dispatch, Incident).join(Incident, Incident.id == Dispatch.incident_id)
            q = q.order_by(Dispatch.id.desc()).limit(500)
            if actor.role == "agency":
                q = q.where(Dispatch.agency == actor.agency)
            if state == "open":
                q = q.where(Incident.status != IncidentStatus.CLOSED)
            elif state != "all":
                raise BadRequest("state must be open or all")
            out = []
            for d, inc in (await s.execute(q)).all():
                view = dispatch_view(d)
                view["incident"] = {"id": inc.id, "kind": inc.kind, "status": inc.status,
                                    "opened_at": inc.opened_at.isoformat(),
                                    "unit": unit_view(self.units[inc.unit_id])}
                out.append(view)
            return out

    async def list_rejections(self, limit: int = 100) -> dict[str, Any]:
        async with self.db.session() as s:
            rows = (await s.scalars(select(RejectedMessage).order_by(RejectedMessage.id.desc())
                                    .limit(max(1, min(limit, 1000))))).all()
            total = await s.scalar(select(func.count(RejectedMessage.id)))
        return {"total": total or 0, "counters": dict(self.counters), "items": [rejection_view(r) for r in rows]}
