"""What the agencies' side confirms: per-channel delivery of the outbox (webhook 2xx, MQTT PUBACK) and the
agency's own acknowledgement / arrival (web page, token API, MQTT)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from config import outbound
from dispatch import channels
from dispatch import events as ev
from dispatch import records as rec
from dispatch.actor import SYSTEM, Actor
from dispatch.core import Core
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.events import Event
from dispatch.models import (
    Dispatch,
    OutboxMessage,
)
from dispatch.state import (
    DispatchStatus,
    IncidentStatus,
    dispatch_advances,
)
from dispatch.views import (
    dispatch_view,
)
from dispatch.writer import Tx


class Deliveries:
    """Delivery results and agency responses on dispatches, each one transaction."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def agency_update(self, dispatch_id: int, status: str, actor: Actor, via: str = "http") -> dict[str, Any]:
        """An agency acknowledges a dispatch or reports arrival (web page, token API, or MQTT with via="mqtt")."""
        try:
            target = DispatchStatus(status)
        except ValueError:
            raise BadRequest("status must be acknowledged or on_scene") from None
        if target not in (DispatchStatus.ACKNOWLEDGED, DispatchStatus.ON_SCENE):
            raise BadRequest("status must be acknowledged or on_scene")
        async with self.core.writer.tx() as tx:
            s = tx.session
            d = await s.get(Dispatch, dispatch_id)
            if d is None:
                raise NotFound(f"dispatch {dispatch_id} not found")
            if actor.role == "agency" and actor.agency != d.agency:
                raise Forbidden("this dispatch was sent to another agency")
            inc = await self.core.incident(s, d.incident_id, lock=True)  # the incident's lock, then its dispatch's
            if self.core.cluster:
                d = await s.get(Dispatch, dispatch_id, with_for_update=True, populate_existing=True) or d
            now = self.core.clock()
            confirmed = via == "mqtt" and await self._confirm_mqtt(tx, d, now)
            if not dispatch_advances(d.status, target):
                return await self._emit_dispatch(tx, d) if confirmed else dispatch_view(d)
            if d.delivered_at is None:
                d.delivered_at = now
            if target == DispatchStatus.ACKNOWLEDGED or d.acknowledged_at is None:
                d.acknowledged_at, d.acknowledged_by = now, actor.username
                self.core.record(tx, inc.id, rec.DISPATCH_ACKNOWLEDGED, actor, now,
                             {"agency": d.agency, "dispatch_id": d.id, "via": via})
            if target == DispatchStatus.ON_SCENE:
                d.on_scene_at = now
                self.core.record(tx, inc.id, rec.DISPATCH_ON_SCENE, actor, now,
                             {"agency": d.agency, "dispatch_id": d.id, "via": via})
                if inc.status in (IncidentStatus.ACKNOWLEDGED, IncidentStatus.DISPATCHED):
                    inc.status = IncidentStatus.ON_SCENE
                    inc.on_scene_at = now
                    self.core.record(tx, inc.id, rec.ON_SCENE, actor, now, {"agency": d.agency})
            d.status = target
            return await self._emit_dispatch(tx, d)

    async def outbox_result(self, outbox_id: int, attempted_at: datetime, error: str | None,
                            next_attempt_at: datetime | None = None, *, confirmed: bool) -> None:
        """Called by the notify worker after each delivery attempt; records it on the dispatch.

        `confirmed` is what the channel's success means (notify.channels): a webhook's 2xx is the agency's side
        confirming, so the channel is delivered. The MQTT broker's PUBACK only says the broker has the message:
        the channel is sent, and becomes delivered when the agency acknowledges over MQTT (agency_update with
        via="mqtt").
        """
        async with self.core.writer.tx() as tx:
            s = tx.session
            msg = await s.get(OutboxMessage, outbox_id)
            if msg is None or msg.status != "pending":
                return
            d = await s.get(Dispatch, msg.dispatch_id) if msg.dispatch_id is not None else None
            if self.core.cluster:  # the same lock order as agency_update: incident, dispatch, outbox row
                if d is not None:
                    await self.core.incident(s, d.incident_id, lock=True)
                    d = await s.get(Dispatch, d.id, with_for_update=True, populate_existing=True)
                msg = await s.get(OutboxMessage, outbox_id, with_for_update=True, populate_existing=True)
                if msg is None or msg.status != "pending":
                    return
                msg.claimed_by = msg.claimed_until = None
            now = self.core.clock()
            msg.attempts += 1
            key = msg.channel_key
            if error is not None:
                msg.last_error = error[:400]
                msg.next_attempt_at = next_attempt_at or now
                if d is not None:
                    d.channels = channels.updated(d.channels, key, msg.channel, attempts=msg.attempts, error=error)
                    self.core.record(tx, d.incident_id, rec.DISPATCH_FAILED, SYSTEM, attempted_at,
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
        self.core.record(tx, d.incident_id, rec.DISPATCH_SENT, SYSTEM, at,
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
        self.core.record(tx, d.incident_id, rec.DISPATCH_DELIVERED, SYSTEM, at, data)

    async def _emit_dispatch(self, tx: Tx, d: Dispatch) -> dict[str, Any]:
        inc = await self.core.incident(tx.session, d.incident_id)
        view = dispatch_view(d)
        tx.events.append(Event(ev.DISPATCH_UPDATED, {"dispatch": view, "incident_id": inc.id, "unit_id": inc.unit_id}))
        await self.core.emit_incident(tx, inc)
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
        self.core.record(tx, d.incident_id, rec.DISPATCH_DELIVERED, SYSTEM, now,
                     {"agency": d.agency, "dispatch_id": d.id, "channel": outbound.MQTT, "via": "ack"})
        return True
