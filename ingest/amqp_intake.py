"""The cores' shared intake from a RabbitMQ cluster (AMQP 0-9-1, aio-pika): alarms in, nothing out.

Devices keep publishing MQTT 3.1.1 QoS 1 to any broker node. The broker's MQTT plugin publishes each message to
the topic exchange (amq.topic; topic `firelink/units/u-1/alarm` becomes routing key `firelink.units.u-1.alarm`) and
answers the device's PUBLISH with a PUBACK only once the queues it was routed to have confirmed it (a quorum queue
confirms after a majority of its replicas wrote it to disk). Every core consumes the one durable quorum queue bound
to the intake topics as a competing consumer: a message goes to one core, which acknowledges it only after its
database commit (the same contract as ingest.mqtt_link, through the shared ingest.intake_pump). If the core dies
first, its unacknowledged messages go back to the queue and another core gets them; the duplicate of a message a
core committed but could not acknowledge is absorbed by alarm_id.

When the node this core is connected to dies, the intake connects to the next configured node at once; deliveries
of the lost channel are never acknowledged (the broker redelivers them). `status()` tells /healthz the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from config.broker import AmqpConfig, split_endpoint
from ingest.contract import AlarmDetection, AlarmIn, DetectionIn, utcnow
from ingest.intake_pump import AttemptJournal, Handler, IntakePump, _Delivery
from ingest.mqtt_link import IntakeStatus, MqttLink, subscriptions
from ingest.payloads import EXCERPT_BYTES, parse_message

log = logging.getLogger(__name__)

RECONNECT_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 5.0)  # per round over every node; the first node after a loss at once
HEARTBEAT_S = 5  # a node that stops answering (not merely dies: that closes the socket at once) is left within ~2x
_SWAP = str.maketrans({".": "/", "/": "."})  # the MQTT plugin swaps '.' and '/' between topics and routing keys


def topic_of(routing_key: str) -> str:
    """The MQTT topic a routing key came from (the plugin maps '/' to '.' and '.' to '/')."""
    return routing_key.translate(_SWAP)


def binding_keys(prefix: str) -> list[str]:
    """The intake's MQTT topic filters as AMQP topic-exchange binding keys ('+' is '*', '#' stays)."""
    return [f.translate(_SWAP).replace("+", "*") for f, _ in subscriptions(prefix)]


def quorum_queue_arguments() -> dict[str, Any]:
    return {"x-queue-type": "quorum"}


async def declare(channel: AbstractChannel, cfg: AmqpConfig, prefix: str) -> AbstractQueue:
    """The durable quorum intake queue, bound to every intake topic (idempotent: the same again is a no-op)."""
    queue = await channel.declare_queue(cfg.queue, durable=True, arguments=quorum_queue_arguments())
    for key in binding_keys(prefix):
        await queue.bind(cfg.exchange, key)
    return queue


async def declare_intake(cfg: AmqpConfig, prefix: str) -> str:
    """Declares the intake queue and its bindings on the first node that answers; returns that node.

    Run it before devices publish: a message no queue is bound for is dropped by the broker, and still
    acknowledged to the device (there was no queue to confirm it)."""
    errors = []
    for node in cfg.nodes:
        host, port = split_endpoint(node)
        try:
            conn = await aio_pika.connect(host=host, port=port, login=cfg.username,
                                          password=cfg.password.get_secret_value(), virtualhost=cfg.vhost,
                                          timeout=cfg.connect_timeout_s)
        except Exception as exc:
            errors.append(f"{node}: {type(exc).__name__}: {exc}")
            continue
        try:
            await declare(await conn.channel(), cfg, prefix)
            return node
        finally:
            await conn.close()
    raise ConnectionError("no AMQP node answered: " + "; ".join(errors))


class AmqpIntake(IntakePump):
    def __init__(self, cfg: AmqpConfig, topic_prefix: str, max_payload_bytes: int, max_detection_bytes: int,
                 handler: Handler, store_ok: Callable[[], Awaitable[bool]] | None = None,
                 journal: AttemptJournal | None = None, *, agencies: Collection[str] = ()) -> None:
        super().__init__(handler, store_ok, journal)
        self.cfg = cfg
        self.prefix = topic_prefix
        self.max_payload_bytes = max_payload_bytes
        self.max_detection_bytes = max_detection_bytes
        self.agencies = frozenset(agencies)
        self.connected = asyncio.Event()
        self.restarts = 0  # connections lost and made again
        self.on_change: Callable[[], None] | None = None
        self._node = 0
        self._generation = 0
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_real_in: float | None = None
        self._problem: str | None = "not connected to the broker"

    def endpoint(self) -> tuple[str, int]:
        return split_endpoint(self.cfg.nodes[self._node % len(self.cfg.nodes)])

    # --- lifecycle --------------------------------------------------------------

    async def start(self, wait_s: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._pump(), name="amqp-pump"),
                       asyncio.create_task(self._keep_connected(), name="amqp-connection")]
        try:
            async with asyncio.timeout(wait_s):
                await self.connected.wait()
        except TimeoutError:
            log.error("no AMQP node of %s reachable yet; retrying in the background", ", ".join(self.cfg.nodes))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()

    async def _close(self) -> None:
        conn, self._connection, self._channel = self._connection, None, None
        if conn is not None and not conn.is_closed:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:
                log.debug("AMQP connection did not close cleanly", exc_info=True)

    async def _keep_connected(self) -> None:
        """Connects to a node, consumes, and on loss moves on to the next node; forever."""
        failures = 0  # consecutive nodes that could not be reached
        while True:
            host, port = self.endpoint()
            try:
                closed = await self._connect(host, port)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.counters["connect_errors"] += 1
                log.warning("AMQP node %s:%s not usable: %s: %s", host, port, type(exc).__name__, exc)
                await self._close()
                self._node += 1
                rounds = failures // len(self.cfg.nodes)
                if failures % len(self.cfg.nodes) == 0:  # every node tried once: wait before the next round
                    await asyncio.sleep(RECONNECT_BACKOFF_S[min(rounds, len(RECONNECT_BACKOFF_S) - 1)])
                continue
            failures = 0
            self._set_problem(None)
            log.info("AMQP intake consuming %r on %s:%s", self.cfg.queue, host, port)
            await closed.wait()
            self._generation += 1  # acknowledgements of the lost channel's deliveries are void: they come again
            self.connected.clear()
            self.restarts += 1
            self._set_problem("not connected to the broker")
            log.error("AMQP connection to %s:%s lost; moving to the next node", host, port)
            await self._close()
            self._node += 1

    async def _connect(self, host: str, port: int) -> asyncio.Event:
        conn = await aio_pika.connect(
            host=host, port=port, login=self.cfg.username, password=self.cfg.password.get_secret_value(),
            virtualhost=self.cfg.vhost, timeout=self.cfg.connect_timeout_s,
            client_properties={"connection_name": f"firelink-intake-{host}:{port}"}, heartbeat=HEARTBEAT_S)
        self._connection = conn
        closed = asyncio.Event()
        conn.close_callbacks.add(lambda *_: closed.set())
        channel = await conn.channel()
        channel.close_callbacks.add(lambda *_: closed.set())
        await channel.set_qos(prefetch_count=self.cfg.prefetch)
        queue = await declare(channel, self.cfg, self.prefix)
        self._channel = channel
        generation = self._generation

        async def on_message(message: AbstractIncomingMessage) -> None:
            self._take(message, generation)

        await queue.consume(on_message, no_ack=False)
        self.connected.set()
        return closed

    # --- inbound ----------------------------------------------------------------

    def _take(self, message: AbstractIncomingMessage, generation: int) -> None:
        now = time.monotonic()
        self._last_real_in = now
        topic = topic_of(message.routing_key or "")
        payload = message.body
        try:
            item = parse_message(self.prefix, topic, payload, self.max_payload_bytes, utcnow(),
                                 self.max_detection_bytes, agencies=self.agencies)
        except Exception as exc:  # parse_message promises not to raise; should it ever, the message is refused
            item = self._refused(topic, payload, f"parser error: {type(exc).__name__}")
        redelivered = bool(message.redelivered)
        key = hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest() if redelivered else None
        alarm = isinstance(item, AlarmIn) or (isinstance(item, DetectionIn) and isinstance(item.event, AlarmDetection))
        delivery = _Delivery(item, message.delivery_tag or 0, 1, generation, topic, payload[:EXCERPT_BYTES],
                             len(payload), now, key)
        delivery.handle = message
        self._enqueue(delivery, alarm)

    async def _acknowledge_all(self, batch: list[_Delivery]) -> None:
        for d in batch:
            message, d.handle = d.handle, None
            if message is None or d.generation != self._generation or self._channel is None:
                continue  # from a lost channel: the broker gives it to a consumer again
            try:
                await message.ack()
            except Exception:
                self.counters["ack_errors"] += 1
                log.warning("AMQP acknowledgement failed (the broker will redeliver)", exc_info=True)

    # --- health -----------------------------------------------------------------

    def _set_problem(self, problem: str | None) -> None:
        if problem != self._problem:
            self._problem = problem
            if self.on_change is not None:
                try:
                    self.on_change()
                except Exception:
                    log.exception("intake status listener failed")

    def status(self) -> IntakeStatus:
        now = time.monotonic()
        connected = self.connected.is_set() and self._connection is not None and not self._connection.is_closed
        problem = None if connected else (self._problem or "not connected to the broker")
        running = bool(self._tasks) and not any(t.done() for t in self._tasks)
        if not running:
            problem = "intake tasks not running"
        age = None if self._last_real_in is None else now - self._last_real_in
        return IntakeStatus(problem is None, connected, running, age, self.backlog(), self.restarts, problem,
                            dict(self.counters))


def intake_status(link: MqttLink, intake: AmqpIntake | None) -> IntakeStatus:
    """What /healthz reports: the MQTT link alone, or the AMQP intake with the MQTT link (which then only publishes
    dispatch copies) as a problem of its own."""
    if intake is None:
        return link.status()
    status, publisher = intake.status(), link.status()
    if status.ok and not publisher.ok:
        return dataclasses.replace(status, ok=False, problem=f"MQTT publisher: {publisher.problem}")
    return status
