"""The core's MQTT connection (paho-mqtt 2.x): alarms in, dispatches out.

Nothing is lost: the session is persistent (fixed client id,
clean_session=False) and QoS 1 messages are acknowledged manually, only
after the core has committed them. If the process dies first, the broker
redelivers; the core absorbs the duplicate by alarm_id.

paho runs its network loop in its own thread; messages are parsed there
and handed to the event loop, where a pump commits them in batches (one
transaction per batch keeps up with bursts) and then sends the PUBACKs.

Never deaf, or loudly so:

- no exception escapes a paho callback (each is guarded, logged and counted;
  a message that cannot even be parsed becomes a rejection);
- a watchdog checks that the network thread runs, the session is connected
  and subscribed, and that messages flow (when idle, a QoS 0 probe to itself
  must come back). On failure it restarts the client on the same persistent
  session, with backoff; `status()` reports the truth meanwhile and
  `on_change` tells the health monitor at once;
- poison cannot stall or loop: a batch that fails while the database is
  healthy is split until the failing message is alone, tried POISON_AFTER
  times, then stored as a rejection and acknowledged. A message the broker
  redelivers after a restart is counted in a persistent journal before it
  is handled, so one that keeps taking the whole process down is quarantined
  too instead of killing every restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from config.schema import MqttConfig
from ingest.contract import AlarmDetection, AlarmIn, DetectionIn, printable, utcnow
from ingest.intake_pump import (  # noqa: F401  (re-exported: the pump's limits and types were defined here)
    CRASHES_BEFORE_QUARANTINE,
    MAX_BATCH,
    POISON_AFTER,
    AttemptJournal,
    Handler,
    IntakePump,
    _Delivery,
)
from ingest.payloads import EXCERPT_BYTES, HOTLINE_TOPIC, MAX_TOPIC_CHARS, parse_message

log = logging.getLogger(__name__)

WATCHDOG_PERIOD_S = 0.5
PROBE_IDLE_S = 5.0  # with no message for this long, the watchdog sends a probe through the broker
PROBE_TIMEOUT_S = 5.0  # ... which must come back within this
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_S = 60.0  # healthy this long: the restart backoff starts over


class PublishError(Exception):
    """The broker did not confirm a publish in time."""


@dataclass(frozen=True, slots=True)
class IntakeStatus:
    """What /healthz reports about the MQTT intake."""

    ok: bool
    connected: bool
    thread_alive: bool
    last_message_age_s: float | None
    backlog: int
    restarts: int
    problem: str | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "connected": self.connected, "thread_alive": self.thread_alive,
                "last_message_age_s": None if self.last_message_age_s is None else round(self.last_message_age_s, 1),
                "backlog": self.backlog, "restarts": self.restarts, "problem": self.problem,
                "counters": dict(self.counters)}


def subscriptions(prefix: str) -> list[tuple[str, int]]:
    """Whole unit/device subtrees, so a device publishing to a wrong leaf is seen and rejected."""
    return [
        (f"{prefix}/units/#", 1),
        (f"{prefix}/devices/#", 1),
        (f"{prefix}/dispatch/+/ack", 1),
        (f"{prefix}/cameras/+/detections", 1),
        (f"{prefix}/{HOTLINE_TOPIC}", 1),
    ]


def problem_is_connection(why: str) -> bool:
    return why == "not connected to the broker" or why.startswith("no message and no probe back")


def _thread_of(client: mqtt.Client) -> threading.Thread | None:
    thread: threading.Thread | None = getattr(client, "_thread", None)
    return thread


class MqttLink(IntakePump):
    def __init__(self, cfg: MqttConfig, handler: Handler,
                 store_ok: Callable[[], Awaitable[bool]] | None = None,
                 journal: AttemptJournal | None = None, *, agencies: Collection[str] = ()) -> None:
        """`agencies`: the configured agency keys, whose firelink/dispatch/{agency}/ack topics are taken in."""
        super().__init__(handler, store_ok, journal)
        self.cfg = cfg
        self.agencies = frozenset(agencies)
        self._tasks: list[asyncio.Task[None]] = []
        self._generation = 0
        self._pending_pubs: dict[int, asyncio.Future[None]] = {}
        self.connected = asyncio.Event()
        self.restarts = 0
        self._node = 0  # index into cfg.nodes(): which broker node the client connects to
        self.on_change: Callable[[], None] | None = None  # told (on the loop) whenever the status may have changed
        # The core must be allowed to publish and subscribe {prefix}/_health/# (docs/mqtt.md, Broker).
        self._probe_topic = f"{cfg.topic_prefix}/_health/{re.sub(r'[^A-Za-z0-9_.-]', '_', cfg.client_id)}"
        self._last_in: float | None = None  # monotonic time of the last message (probes included)
        self._last_real_in: float | None = None  # ... of the last message from a device or agency
        self._probe_sent: float | None = None
        self._probing = True
        self._problem: str | None = None
        self._problem_since: float | None = None
        self._healthy_since = time.monotonic()
        self._backoff_step = 0
        self._kill: mqtt.Client | None = None
        self._stopping = False
        self.client = self._new_client()

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id, clean_session=False,
            protocol=mqtt.MQTTv311, manual_ack=True,
        )
        if self.cfg.username:
            client.username_pw_set(self.cfg.username,
                                   self.cfg.password.get_secret_value() if self.cfg.password else None)
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._guard("on_connect", self._on_connect)
        client.on_disconnect = self._guard("on_disconnect", self._on_disconnect)
        client.on_message = self._on_message  # guarded inside: a failure still yields a rejection to acknowledge
        client.on_publish = self._guard("on_publish", self._on_publish)
        client.on_subscribe = self._guard("on_subscribe", self._on_subscribe)
        return client

    def _guard(self, name: str, fn: Callable[..., None]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:  # an escaping exception would end paho's network thread: the intake would go deaf
                self.counters[f"{name}_errors"] += 1
                log.exception("MQTT %s callback failed (counted; the network thread carries on)", name)

        return guarded

    # --- lifecycle --------------------------------------------------------

    async def start(self, wait_s: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._pump(), name="mqtt-pump"),
                       asyncio.create_task(self._watchdog(), name="mqtt-watchdog")]
        self._start_client(self.client)
        try:
            async with asyncio.timeout(wait_s):
                await self.connected.wait()
        except TimeoutError:
            log.error("MQTT broker %s:%s not reachable yet; retrying in the background", *self.endpoint())

    def endpoint(self) -> tuple[str, int]:
        """The broker node this link uses now (the configured nodes in turn, one per restart)."""
        nodes = self.cfg.nodes()
        return nodes[self._node % len(nodes)]

    def _start_client(self, client: mqtt.Client) -> None:
        host, port = self.endpoint()
        client.connect_async(host, port, keepalive=self.cfg.keepalive_s)
        client.loop_start()

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        await asyncio.to_thread(self._abandon, self.client)

    # --- paho thread callbacks -------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if client is not self.client:
            return
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        self._generation += 1
        # With the AMQP intake the cores share the intake queues; this session only publishes (and probes).
        intake = subscriptions(self.cfg.topic_prefix) if self.cfg.intake == "mqtt" else []
        client.subscribe([*intake, (self._probe_topic, 0)])
        log.info("MQTT connected to %s:%s", *self.endpoint())

    def _on_subscribe(self, client: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        # "Connected" means subscribed: from here on every alarm published reaches this session.
        if client is not self.client:
            return
        failed = [getattr(r, "is_failure", False) for r in reasons]
        if any(failed[:-1]):
            log.error("MQTT subscription refused: %s", reasons)
            return
        if failed[-1:] == [True] and self._probing:  # the probe's topic (last) is not allowed by the broker's ACL
            log.warning("MQTT broker refused the watchdog probe topic %s: messages are not probed", self._probe_topic)
            self._probing = False
        self._call(self._subscribed)

    def _subscribed(self) -> None:
        self.connected.set()
        self._changed()

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if client is not self.client:
            return
        log.warning("MQTT disconnected: %s", reason)
        self._call(self._disconnected)

    def _disconnected(self) -> None:
        self.connected.clear()
        self._changed()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if client is not self.client:
            return  # an abandoned client: the broker redelivers its messages to the current one
        now = time.monotonic()
        self._last_in = now
        if self._kill is client:
            client.loop_stop()  # from inside the network thread: it ends after this message, nothing else happens
            return
        try:
            topic = msg.topic
            if topic == self._probe_topic:
                return
            self._last_real_in = now
            payload = bytes(msg.payload)
            try:
                item = parse_message(self.cfg.topic_prefix, topic, payload, self.cfg.max_payload_bytes, utcnow(),
                                     self.cfg.max_detection_bytes, agencies=self.agencies)
            except Exception as exc:  # parse_message promises not to raise; should it ever, the message is refused
                item = self._refused(topic, payload, f"parser error: {type(exc).__name__}")
            key = hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest() if msg.dup else None
            alarm = isinstance(item, AlarmIn) or (
                isinstance(item, DetectionIn) and isinstance(item.event, AlarmDetection))
            self._enqueue(_Delivery(item, msg.mid, msg.qos, self._generation, topic, payload[:EXCERPT_BYTES],
                                    len(payload), now, key), alarm)
        except Exception as exc:
            self.counters["on_message_errors"] += 1
            log.exception("MQTT message could not be taken in; storing it as a rejection")
            topic = printable(getattr(msg, "_topic", b"").decode("utf-8", "replace"))[:MAX_TOPIC_CHARS]
            payload = bytes(getattr(msg, "payload", b"") or b"")
            self._enqueue(_Delivery(self._refused(topic, payload, f"intake error: {type(exc).__name__}"), msg.mid,
                                    msg.qos, self._generation, topic, payload[:EXCERPT_BYTES], len(payload), now))

    def _on_publish(self, client: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        # Called with paho's own locks held: only hand over to the loop here.
        if client is self.client:
            self._call(self._published, mid)

    def _published(self, mid: int) -> None:
        fut = self._pending_pubs.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    # --- health and the watchdog ------------------------------------------------------

    def status(self) -> IntakeStatus:
        now = time.monotonic()
        thread = _thread_of(self.client)
        alive = thread is not None and thread.is_alive()
        connected = self.connected.is_set() and self.client.is_connected()
        problem = self._diagnose(now)
        age = None if self._last_real_in is None else now - self._last_real_in
        return IntakeStatus(problem is None, connected, alive, age,
                            self.backlog(),
                            self.restarts, problem, dict(self.counters))

    def _diagnose(self, now: float) -> str | None:
        thread = _thread_of(self.client)
        if thread is None or not thread.is_alive():
            return "network thread not running"
        if not (self.connected.is_set() and self.client.is_connected()):
            return "not connected to the broker"
        sent = self._probe_sent
        if sent is not None and (self._last_in is None or self._last_in < sent) and now - sent > PROBE_TIMEOUT_S:
            return f"no message and no probe back within {PROBE_TIMEOUT_S:g}s"  # constant: problems compare equal
        return None

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("intake status listener failed")

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD_S)  # a dead thread sends no event: it is looked at periodically
            try:
                await self._check()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters["watchdog_errors"] += 1
                log.exception("MQTT watchdog check failed")

    async def _check(self) -> None:
        now = time.monotonic()
        if self._probe_sent is not None and self._last_in is not None and self._last_in >= self._probe_sent:
            self._probe_sent = None  # something came back through the broker: the path works
        problem = self._diagnose(now)
        if problem != self._problem:
            if problem is not None:
                log.error("MQTT intake down: %s", problem)
            elif self._problem is not None:
                log.warning("MQTT intake up again")
            self._problem, self._problem_since = problem, (now if problem else None)
            if problem is None:
                self._healthy_since = now
            self._changed()
        if problem is None:
            if self._backoff_step and now - self._healthy_since > STABLE_S:
                self._backoff_step = 0
            idle_since = self._last_in if self._last_in is not None else self._healthy_since
            if self._probing and self._probe_sent is None and now - idle_since > PROBE_IDLE_S:
                self._probe_sent = now
                self.client.publish(self._probe_topic, b"probe", qos=0)
            return
        assert self._problem_since is not None
        delay = RESTART_BACKOFF_S[min(self._backoff_step, len(RESTART_BACKOFF_S) - 1)]
        if problem == "not connected to the broker" and len(self.cfg.nodes()) == 1:
            delay = max(delay, 3.0 * self.cfg.keepalive_s)  # paho reconnects by itself; restart only if it cannot
        if now - self._problem_since >= delay:
            await self._restart(problem)

    async def _restart(self, why: str) -> None:
        """A new client on the same persistent session; the old one is abandoned (its messages come again)."""
        self.restarts += 1
        self._backoff_step += 1
        log.error("MQTT intake: %s; restarting the client on the same session (restart %d)", why, self.restarts)
        old = self.client
        if problem_is_connection(why):
            self._node += 1  # a cluster: the next restart tries the next node
        self.client = self._new_client()
        self.connected.clear()
        self._probe_sent = None
        self._problem_since = time.monotonic()  # the next restart waits for the next backoff step
        for fut in self._pending_pubs.values():
            if not fut.done():
                fut.set_exception(PublishError("MQTT client restarted"))
        self._pending_pubs.clear()
        await asyncio.to_thread(self._abandon, old)
        if self._stopping:
            return
        try:
            self._start_client(self.client)
        except Exception:
            self.counters["restart_errors"] += 1
            log.exception("MQTT client restart failed; trying again")
        self._changed()

    @staticmethod
    def _abandon(old: mqtt.Client) -> None:
        """Disconnects (the session stays on the broker) and stops the network thread, waiting for it 2 s at most."""
        try:
            old.disconnect()
        except Exception:
            log.debug("abandoned MQTT client did not disconnect cleanly", exc_info=True)
        stopper = threading.Thread(target=old.loop_stop, daemon=True, name="mqtt-abandon")
        stopper.start()
        stopper.join(2.0)  # a wedged network thread is left behind, never waited for
        if not stopper.is_alive():
            close = getattr(old, "_sock_close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.debug("abandoned MQTT client socket did not close cleanly", exc_info=True)

    async def kill_network_thread(self, timeout_s: float = 10.0) -> None:
        """Test hook: ends paho's network thread (from inside it, on its next message) the way an uncaught error in
        a callback used to, and returns once it is dead. The connection is left as it is: the watchdog has to
        notice and recover by itself."""
        client = self.client
        thread = _thread_of(client)
        self._kill = client
        client.publish(self._probe_topic, b"die", qos=0)  # the thread stops on its next message
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout_s)
            if thread.is_alive():
                raise RuntimeError("the MQTT network thread did not end")

    # --- inbound: acknowledge what the pump committed -----------------------------------

    def _acknowledge(self, d: _Delivery) -> None:
        # A PUBACK for a message from an earlier connection would be meaningless: the
        # broker redelivers those, and the core absorbs them as duplicates.
        if d.qos > 0 and d.generation == self._generation:
            self.client.ack(d.mid, d.qos)

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
            async with asyncio.timeout(confirm_within_s):
                await fut
        except TimeoutError:
            self._pending_pubs.pop(info.mid, None)
            raise PublishError(f"no PUBACK within {confirm_within_s}s") from None
