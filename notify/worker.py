"""Delivers the transactional outbox: webhooks (signed) and MQTT, with backoff, until accepted.

A webhook's 2xx is the agency confirming (delivered); the MQTT broker's PUBACK is only "sent" (the core marks
the MQTT channel delivered when the agency acknowledges on firelink/dispatch/{agency}/ack).

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
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import func, select

from config.schema import FirelinkConfig, WebhookChannel
from dispatch import events as ev
from dispatch.events import EventBus
from dispatch.models import OutboxMessage
from dispatch.service import IncidentService
from ingest.contract import utcnow
from ingest.mqtt_link import MqttLink, PublishError
from notify.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, encode_body, sign

log = logging.getLogger(__name__)
BATCH = 100


def safe_target(url: str) -> str:
    """URL without credentials or query string, for logs and records."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def resolve_webhook(cfg: FirelinkConfig, ref: str) -> WebhookChannel | None:
    """secret_ref is 'agencies.<key>.webhooks.<i>' or 'station.leader.webhooks.<i>'."""
    parts = ref.split(".")
    try:
        if parts[0] == "agencies" and parts[2] == "webhooks":
            return cfg.agencies[parts[1]].webhooks[int(parts[3])]  # type: ignore[index]
        if parts[:3] == ["station", "leader", "webhooks"]:
            return cfg.station.leader.webhooks[int(parts[3])]
    except (IndexError, KeyError, ValueError):
        return None
    return None


class OutboxWorker:
    def __init__(self, service: IncidentService, bus: EventBus, cfg: FirelinkConfig, mqtt: MqttLink | None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.service = service
        self.bus = bus
        self.cfg = cfg
        self.mqtt = mqtt
        self.clock = clock
        self._inflight: set[int] = set()

    def backoff(self, attempts: int) -> timedelta:
        base = self.cfg.delivery.initial_backoff_s * (2 ** min(attempts, 20))
        delay = min(base, self.cfg.delivery.max_backoff_s) * random.uniform(0.8, 1.0)
        return timedelta(seconds=delay)

    async def _due(self) -> tuple[list[OutboxMessage], float]:
        now = self.clock()
        async with self.service.db.session() as s:
            rows = list((await s.scalars(
                select(OutboxMessage).where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.id).limit(BATCH))).all())
            nxt = await s.scalar(select(func.min(OutboxMessage.next_attempt_at))
                                 .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at > now))
        wait = (nxt - now).total_seconds() if nxt is not None else 3600.0
        return [r for r in rows if r.id not in self._inflight], max(0.01, wait)

    async def _send(self, http: aiohttp.ClientSession, msg: OutboxMessage) -> None:
        if msg.channel == "mqtt":
            if self.mqtt is None:
                raise PublishError("MQTT is not configured")
            await self.mqtt.publish(msg.target, msg.payload)
            return
        hook = resolve_webhook(self.cfg, msg.secret_ref)
        if hook is None:
            raise PublishError(f"webhook {msg.secret_ref} is no longer configured")
        body = encode_body(msg.payload)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   SIGNATURE_HEADER: sign(hook.secret.get_secret_value(), body),
                   IDEMPOTENCY_HEADER: msg.idempotency_key}
        timeout = aiohttp.ClientTimeout(total=hook.timeout_s)
        async with http.post(msg.target, data=body, headers=headers, timeout=timeout) as resp:
            if not 200 <= resp.status < 300:
                raise PublishError(f"HTTP {resp.status} from {safe_target(msg.target)}")

    async def _deliver(self, http: aiohttp.ClientSession, msg: OutboxMessage) -> None:
        self._inflight.add(msg.id)
        attempted_at = self.clock()
        try:
            try:
                await self._send(http, msg)
                error: str | None = None
            except (aiohttp.ClientError, PublishError, TimeoutError, OSError) as exc:
                error = str(exc) or type(exc).__name__
                log.warning("delivery of outbox %s via %s to %s failed (attempt %s): %s", msg.id, msg.channel,
                            safe_target(msg.target) if msg.channel == "webhook" else msg.target,
                            msg.attempts + 1, error)
            next_at = None if error is None else self.clock() + self.backoff(msg.attempts)
            await self.service.outbox_result(msg.id, attempted_at, error, next_at)
        finally:
            self._inflight.discard(msg.id)

    async def run(self) -> None:
        with self.bus.subscribe([ev.OUTBOX_PENDING]) as wake:
            async with aiohttp.ClientSession() as http:
                while True:
                    try:
                        due, wait = await self._due()
                        if due:
                            await asyncio.gather(*(self._deliver(http, m) for m in due))
                            continue
                    except Exception:
                        log.exception("outbox pass failed")
                        wait = 1.0
                    try:
                        await asyncio.wait_for(wake.get(), wait)
                    except TimeoutError:
                        pass
