"""The core's MQTT connection (paho-mqtt 2.x): alarms in, dispatches out.

Nothing is lost: the session is persistent (fixed client id,
clean_session=False) and QoS 1 messages are acknowledged manually, only
after the core has committed them. If the process dies first, the broker
redelivers; the core absorbs the duplicate by alarm_id.

paho runs its network loop in its own thread; messages are parsed there
and handed to the event loop, where a pump commits them in batches (one
transaction per batch keeps up with bursts) and then sends the PUBACKs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from config.schema import MqttConfig
from dispatch.inputs import CoreInput, Rejection, utcnow
from ingest.payloads import parse_message

log = logging.getLogger(__name__)

Handler = Callable[[list[CoreInput]], Awaitable[None]]
MAX_BATCH = 500
POISON_AFTER = 3


class PublishError(Exception):
    """The broker did not confirm a publish in time."""


@dataclass(frozen=True, slots=True)
class _Delivery:
    item: CoreInput
    mid: int
    qos: int
    generation: int


async def _never() -> bool:
    return False


def _topic_of(item: CoreInput) -> str:
    return getattr(item, "topic", "") or type(item).__name__


def subscriptions(prefix: str) -> list[tuple[str, int]]:
    """Whole unit/device subtrees, so a device publishing to a wrong leaf is seen and rejected."""
    return [
        (f"{prefix}/units/#", 1),
        (f"{prefix}/devices/#", 1),
        (f"{prefix}/dispatch/+/ack", 1),
        (f"{prefix}/cameras/+/detections", 1),
    ]


class MqttLink:
    def __init__(self, cfg: MqttConfig, handler: Handler,
                 store_ok: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.cfg = cfg
        self._handler = handler
        self._store_ok = store_ok or _never
        self._loop: asyncio.AbstractEventLoop | None = None
        # Filled by paho's thread (deque.append is thread-safe); the loop is woken once per
        # burst, not once per message (each call_soon_threadsafe costs a self-pipe write+read).
        self._inbox: deque[_Delivery] = deque()
        self._inbox_ready = asyncio.Event()
        self._wake_scheduled = False
        self._pump_task: asyncio.Task[None] | None = None
        self._generation = 0
        self._pending_pubs: dict[int, asyncio.Future[None]] = {}
        self.connected = asyncio.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=cfg.client_id, clean_session=False,
            protocol=mqtt.MQTTv311, manual_ack=True,
        )
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    # --- lifecycle --------------------------------------------------------

    async def start(self, wait_s: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._pump_task = asyncio.create_task(self._pump(), name="mqtt-pump")
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        try:
            await asyncio.wait_for(self.connected.wait(), wait_s)
        except TimeoutError:
            log.error("MQTT broker %s:%s not reachable yet; retrying in the background",
                      self.cfg.host, self.cfg.port)

    async def stop(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            try:
                await self._pump_task
            except asyncio.CancelledError:
                pass
        await asyncio.to_thread(self._disconnect)

    def _disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho thread callbacks -------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        self._generation += 1
        client.subscribe(subscriptions(self.cfg.topic_prefix))
        log.info("MQTT connected to %s:%s", self.cfg.host, self.cfg.port)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        # "Connected" means subscribed: from here on every alarm published reaches this session.
        if any(getattr(r, "is_failure", False) for r in reasons):
            log.error("MQTT subscription refused: %s", reasons)
            return
        self._call(self.connected.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.warning("MQTT disconnected: %s", reason)
        self._call(self.connected.clear)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        item = parse_message(self.cfg.topic_prefix, msg.topic, bytes(msg.payload), self.cfg.max_payload_bytes, utcnow(),
                             self.cfg.max_detection_bytes)
        self._inbox.append(_Delivery(item, msg.mid, msg.qos, self._generation))
        if not self._wake_scheduled:  # one loop wake-up per burst, not per message
            self._wake_scheduled = True
            self._call(self._wake)

    def _wake(self) -> None:
        # Runs on the loop. Cleared first: anything appended from now on schedules another wake-up,
        # and anything appended before is already in the inbox when the pump looks.
        self._wake_scheduled = False
        self._inbox_ready.set()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        # Called with paho's own locks held: only hand over to the loop here.
        self._call(self._published, mid)

    def _published(self, mid: int) -> None:
        fut = self._pending_pubs.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    # --- inbound: commit, then acknowledge ------------------------------------------

    async def _pump(self) -> None:
        while True:
            if not self._inbox:
                self._inbox_ready.clear()  # then re-check: a message appended after this sets it again
                if not self._inbox:
                    await self._inbox_ready.wait()
                continue
            batch = [self._inbox.popleft() for _ in range(min(MAX_BATCH, len(self._inbox)))]
            try:
                await self._handler([d.item for d in batch])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("core could not commit %d MQTT messages; retrying one by one", len(batch))
                for d in batch:
                    await self._commit_alone(d)
            for d in batch:
                # A PUBACK for a message from an earlier connection would be meaningless: the
                # broker redelivers those, and the core absorbs them as duplicates.
                if d.qos > 0 and d.generation == self._generation:
                    self.client.ack(d.mid, d.qos)

    async def _commit_alone(self, d: _Delivery) -> None:
        """Retries one message until committed. A message that keeps failing while others commit
        while the store is healthy is stored as a rejection instead, so one poison message cannot
        stall the pipeline; while the database is down, nothing commits and nothing is acknowledged."""
        backoff, failures = 0.2, 0
        item = d.item
        while True:
            try:
                await self._handler([item])
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures >= POISON_AFTER and not isinstance(item, Rejection) and await self._store_ok():
                    log.error("storing MQTT message on %r as rejected after %d failures: %s",
                              _topic_of(item), failures, type(exc).__name__)
                    item = Rejection("mqtt", _topic_of(item), f"could not be stored: {type(exc).__name__}", "", 0,
                                     utcnow())
                    continue
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    # --- outbound -----------------------------------------------------------------

    async def publish(self, topic: str, payload: dict[str, Any] | bytes, qos: int = 1,
                      confirm_within_s: float = 5.0) -> None:
        """Publishes and waits for the broker's PUBACK (QoS 1) or raises PublishError."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
        if not self.connected.is_set():
            raise PublishError("not connected to the MQTT broker")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        info = self.client.publish(topic, body, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"publish failed: {mqtt.error_string(info.rc)}")
        if qos == 0:
            return
        # Registered before this coroutine yields, so before the loop can run _published(mid).
        self._pending_pubs[info.mid] = fut
        try:
            await asyncio.wait_for(fut, confirm_within_s)
        except TimeoutError:
            self._pending_pubs.pop(info.mid, None)
            raise PublishError(f"no PUBACK within {confirm_within_s}s") from None
