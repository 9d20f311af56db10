"""Delivers the transactional outbox through the registered channels (notify.channels), with backoff, until accepted.

Each row names its channel; the worker looks it up by that name and delivers through it. What success means is
the channel's: a webhook's 2xx is the agency confirming (delivered); the MQTT broker's PUBACK is only "sent" (the
core marks the MQTT channel delivered when the agency acknowledges on firelink/dispatch/{agency}/ack).

Rows are written by the core in the same transaction as the dispatch, so
a crash never loses one; after a restart this worker resumes where it
was. Every attempt is reported back to the core, which records it. The
same idempotency key goes with every retry, so an agency that got a
message whose confirmation was lost can discard the repeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config import outbound
from config.schema import FirelinkConfig
from dispatch import events as ev
from dispatch.deadlines import run_deadlines
from dispatch.deliveries import Deliveries
from dispatch.events import EventBus
from dispatch.models import OutboxMessage
from ingest.contract import utcnow
from ingest.mqtt_link import MqttLink
from notify.channels import CHANNELS, Channel, ChannelRegistry, DeliveryContext, DeliveryError, Outgoing

log = logging.getLogger(__name__)
BATCH = 100
EXPECTED = (DeliveryError, aiohttp.ClientError, TimeoutError, OSError)


class OutboxWorker:
    def __init__(self, deliveries: Deliveries, bus: EventBus, cfg: FirelinkConfig, mqtt: MqttLink | None,
                 clock: Callable[[], datetime] = utcnow, channels: ChannelRegistry = CHANNELS) -> None:
        """Raises ChannelConfigError when the configuration names a channel no registered one delivers."""
        channels.check(cfg)
        self.deliveries = deliveries
        self.bus = bus
        self.cfg = cfg
        self.mqtt = mqtt
        self.clock = clock
        self.channels = channels
        self.configured = outbound.by_ref(cfg)
        self._inflight: set[int] = set()

    def backoff(self, attempts: int) -> timedelta:
        base = self.cfg.delivery.initial_backoff_s * (2 ** min(attempts, 20))
        delay = min(base, self.cfg.delivery.max_backoff_s) * random.uniform(0.8, 1.0)
        return timedelta(seconds=delay)

    async def _due(self) -> tuple[list[OutboxMessage], float]:
        now = self.clock()
        async with self.deliveries.core.db.session() as s:
            if self.cfg.cluster.enabled:
                rows = await self._claim(s, now)
            else:
                rows = list((await s.scalars(
                    select(OutboxMessage).where(OutboxMessage.status == "pending",
                                                OutboxMessage.next_attempt_at <= now)
                    .order_by(OutboxMessage.id).limit(BATCH))).all())
            nxt = await s.scalar(select(func.min(OutboxMessage.next_attempt_at))
                                 .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at > now))
        wait = (nxt - now).total_seconds() if nxt is not None else 3600.0
        if self.cfg.cluster.enabled:  # a row claimed by a node that died becomes due when its claim runs out
            wait = min(wait, self.cfg.cluster.outbox_claim_s / 2)
        return [r for r in rows if r.id not in self._inflight], max(0.01, wait)

    async def _claim(self, s: AsyncSession, now: datetime) -> list[OutboxMessage]:
        """Cluster mode: the due rows no live claim holds, claimed for this node in one committed statement
        (rows another transaction is claiming are skipped, not waited for). A node that took the scheduler over
        retries a row the dead one claimed only after that claim ran out, with the same idempotency key."""
        due = (select(OutboxMessage.id).where(
            OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now))
            .order_by(OutboxMessage.id).limit(BATCH).with_for_update(skip_locked=True))
        claim = (update(OutboxMessage).where(OutboxMessage.id.in_(due.scalar_subquery()))
                 .values(claimed_by=self.cfg.cluster.node(),
                         claimed_until=now + timedelta(seconds=self.cfg.cluster.outbox_claim_s))
                 .returning(OutboxMessage).execution_options(synchronize_session=False))
        rows = sorted((await s.scalars(claim)).all(), key=lambda r: r.id)
        await s.commit()
        return rows

    def _outgoing(self, msg: OutboxMessage) -> Outgoing:
        found = self.configured.get(msg.secret_ref)
        return Outgoing(msg.id, msg.channel, msg.channel_key, msg.target, msg.secret_ref, msg.payload,
                        msg.idempotency_key, found.settings if found is not None else None)

    async def _send(self, channel: Channel | None, msg: OutboxMessage, ctx: DeliveryContext) -> None:
        if channel is None:
            raise DeliveryError(f"no outbound channel {msg.channel!r} is registered")
        await channel.deliver(self._outgoing(msg), ctx)

    async def _deliver(self, ctx: DeliveryContext, msg: OutboxMessage) -> None:
        self._inflight.add(msg.id)
        attempted_at = self.clock()
        channel = self.channels.get(msg.channel)
        try:
            try:
                await self._send(channel, msg, ctx)
                error: str | None = None
            except Exception as exc:  # a plug-in's unexpected error is an attempt that failed, not a stuck row
                error = str(exc) or type(exc).__name__
                where = channel.describe(msg.target) if channel is not None else msg.channel_key
                if isinstance(exc, EXPECTED):
                    log.warning("delivery of outbox %s via %s to %s failed (attempt %s): %s", msg.id, msg.channel,
                                where, msg.attempts + 1, error)
                else:
                    log.exception("delivery of outbox %s via %s to %s raised (attempt %s)", msg.id, msg.channel,
                                  where, msg.attempts + 1)
            next_at = None if error is None else self.clock() + self.backoff(msg.attempts)
            await self.deliveries.outbox_result(msg.id, attempted_at, error, next_at,
                                             confirmed=channel is not None and channel.confirms)
        finally:
            self._inflight.discard(msg.id)

    async def run(self) -> None:
        with self.bus.subscribe([ev.OUTBOX_PENDING]) as wake:
            async with aiohttp.ClientSession() as http:
                ctx = DeliveryContext(self.cfg, http, self.mqtt)

                async def tick() -> float:
                    due, wait = await self._due()
                    if not due:
                        return wait
                    await asyncio.gather(*(self._deliver(ctx, m) for m in due))
                    return 0.0  # more may be due already

                await run_deadlines(wake, tick, "outbox")
