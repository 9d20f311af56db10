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
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from config.schema import MqttConfig
from ingest.contract import AlarmDetection, AlarmIn, CoreInput, DetectionIn, Rejection, printable, utcnow
from ingest.payloads import EXCERPT_BYTES, HOTLINE_TOPIC, MAX_TOPIC_CHARS, excerpt, parse_message

log = logging.getLogger(__name__)

Handler = Callable[[list[CoreInput]], Awaitable[Mapping[int, Exception] | None]]
"""Commits a batch. Raises when nothing of it can be trusted to be committed; otherwise returns the positions
of the items that failed on their own (with why), everything else being committed."""

MAX_BATCH = 500  # alarms per transaction
MAX_OTHER_BATCH = 50  # anything else (rejections, device status, agency acks): an alarm never waits for more
OTHERS_MAX_WAIT_S = 0.5  # during an alarm flood, other messages still get a batch once they waited this long
POISON_AFTER = 3  # failures of one message alone, while the database is healthy, before it is quarantined
CRASHES_BEFORE_QUARANTINE = 2  # restarts that died while handling one redelivered message alone
WATCHDOG_PERIOD_S = 0.5
PROBE_IDLE_S = 5.0  # with no message for this long, the watchdog sends a probe through the broker
PROBE_TIMEOUT_S = 5.0  # ... which must come back within this
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_S = 60.0  # healthy this long: the restart backoff starts over


class PublishError(Exception):
    """The broker did not confirm a publish in time."""


class AttemptJournal(Protocol):
    """Persistent counts of how often a redelivered message was tried (dispatch.inbox.IntakeJournal)."""

    async def attempt(self, keys: Sequence[str], solo: bool) -> dict[str, tuple[int, int]]:
        """Counts one more try of each key; returns (tries, tries alone) before this one."""
        ...

    async def forget(self, keys: Sequence[str]) -> None: ...


@dataclass(slots=True)
class _Delivery:
    item: CoreInput
    mid: int
    qos: int
    generation: int
    topic: str
    head: bytes  # the payload's first bytes, for a quarantine record
    size: int
    at: float = 0.0  # monotonic arrival time
    key: str | None = None  # redelivered (DUP): its key in the attempt journal
    failures: int = 0
    alone: bool = False


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
        (f"{prefix}/{HOTLINE_TOPIC}", 1),
    ]


def _thread_of(client: mqtt.Client) -> threading.Thread | None:
    thread: threading.Thread | None = getattr(client, "_thread", None)
    return thread


class MqttLink:
    def __init__(self, cfg: MqttConfig, handler: Handler,
                 store_ok: Callable[[], Awaitable[bool]] | None = None,
                 journal: AttemptJournal | None = None, *, agencies: Collection[str] = ()) -> None:
        """`agencies`: the configured agency keys, whose firelink/dispatch/{agency}/ack topics are taken in."""
        self.cfg = cfg
        self.agencies = frozenset(agencies)
        self._handler = handler
        self._store_ok = store_ok or _never
        self._journal = journal
        self._loop: asyncio.AbstractEventLoop | None = None
        # Filled by paho's thread (deque.append is thread-safe); the loop is woken once per
        # burst, not once per message (each call_soon_threadsafe costs a self-pipe write+read).
        # Alarms have their own lane: a flood of garbage, heartbeats or acks never queues ahead of them.
        self._alarms: deque[_Delivery] = deque()
        self._inbox: deque[_Delivery] = deque()
        self._inbox_ready = asyncio.Event()
        self._wake_scheduled = False
        self._in_progress = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._generation = 0
        self._pending_pubs: dict[int, asyncio.Future[None]] = {}
        self.connected = asyncio.Event()
        self.counters: Counter[str] = Counter()
        self.restarts = 0
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
            log.error("MQTT broker %s:%s not reachable yet; retrying in the background",
                      self.cfg.host, self.cfg.port)

    def _start_client(self, client: mqtt.Client) -> None:
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
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
        client.subscribe([*subscriptions(self.cfg.topic_prefix), (self._probe_topic, 0)])
        log.info("MQTT connected to %s:%s", self.cfg.host, self.cfg.port)

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

    @staticmethod
    def _refused(topic: str, payload: bytes, reason: str) -> Rejection:
        return Rejection("mqtt", printable(topic[:MAX_TOPIC_CHARS]), reason, excerpt(payload), len(payload), utcnow())

    def _enqueue(self, delivery: _Delivery, alarm: bool = False) -> None:
        (self._alarms if alarm else self._inbox).append(delivery)
        if not self._wake_scheduled:  # one loop wake-up per burst, not per message
            self._wake_scheduled = True
            self._call(self._wake)

    def _wake(self) -> None:
        # Runs on the loop. Cleared first: anything appended from now on schedules another wake-up,
        # and anything appended before is already in the inbox when the pump looks.
        self._wake_scheduled = False
        self._inbox_ready.set()

    def _on_publish(self, client: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        # Called with paho's own locks held: only hand over to the loop here.
        if client is self.client:
            self._call(self._published, mid)

    def _published(self, mid: int) -> None:
        fut = self._pending_pubs.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    # --- health and the watchdog ------------------------------------------------------

    def status(self) -> IntakeStatus:
        now = time.monotonic()
        thread = _thread_of(self.client)
        alive = thread is not None and thread.is_alive()
        connected = self.connected.is_set() and self.client.is_connected()
        problem = self._diagnose(now)
        age = None if self._last_real_in is None else now - self._last_real_in
        return IntakeStatus(problem is None, connected, alive, age,
                            len(self._alarms) + len(self._inbox) + self._in_progress,
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
        if problem == "not connected to the broker":
            delay = max(delay, 3.0 * self.cfg.keepalive_s)  # paho reconnects by itself; restart only if it cannot
        if now - self._problem_since >= delay:
            await self._restart(problem)

    async def _restart(self, why: str) -> None:
        """A new client on the same persistent session; the old one is abandoned (its messages come again)."""
        self.restarts += 1
        self._backoff_step += 1
        log.error("MQTT intake: %s; restarting the client on the same session (restart %d)", why, self.restarts)
        old = self.client
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

    # --- inbound: commit, then acknowledge ------------------------------------------

    def _next_batch(self) -> list[_Delivery]:
        others = self._inbox
        if self._alarms and not (others and time.monotonic() - others[0].at > OTHERS_MAX_WAIT_S):
            return [self._alarms.popleft() for _ in range(min(MAX_BATCH, len(self._alarms)))]
        return [others.popleft() for _ in range(min(MAX_OTHER_BATCH, len(others)))]

    async def _pump(self) -> None:
        while True:
            if not (self._alarms or self._inbox):
                self._inbox_ready.clear()  # then re-check: a message appended after this sets it again
                if not (self._alarms or self._inbox):
                    await self._inbox_ready.wait()
                continue
            batch = self._next_batch()
            self._in_progress = len(batch)
            try:
                await self._settle(batch)
            finally:
                self._in_progress = 0
            for d in batch:
                # A PUBACK for a message from an earlier connection would be meaningless: the
                # broker redelivers those, and the core absorbs them as duplicates.
                if d.qos > 0 and d.generation == self._generation:
                    try:
                        self.client.ack(d.mid, d.qos)
                    except Exception:
                        self.counters["ack_errors"] += 1
                        log.exception("MQTT acknowledgement failed (the broker will redeliver)")

    async def _settle(self, batch: list[_Delivery]) -> None:
        """Commits the batch; poison ends up as rejections. Returns when every message is settled."""
        redelivered = [d for d in batch if d.key is not None]
        if redelivered and self._journal is not None:
            await self._note_attempts(redelivered, solo=False)
        await self._commit([d for d in batch if not d.alone])
        for d in batch:
            if d.alone:  # a redelivered message tried before: alone, so a crash can be pinned on it
                await self._note_attempts([d], solo=True)
                await self._commit([d])
        if redelivered and self._journal is not None:
            try:
                await self._journal.forget([d.key for d in redelivered if d.key is not None])
            except Exception:
                log.warning("could not clear the intake attempt journal", exc_info=True)

    async def _note_attempts(self, ds: list[_Delivery], solo: bool) -> None:
        """Counts the attempt durably before it is made; quarantines what already took the core down."""
        assert self._journal is not None
        keys = [d.key for d in ds if d.key is not None]
        backoff = 0.2
        while True:
            try:
                before = await self._journal.attempt(keys, solo)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: nothing can be committed either; wait
                self.counters["journal_errors"] += 1
                log.warning("intake attempt journal unavailable (%s); waiting", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        for d in ds:
            tries, alone = before.get(d.key or "", (0, 0))
            log.info("redelivered MQTT message on %r (mid %d): tried %d times before, %d of them alone%s", d.topic,
                     d.mid, tries, alone, "; this try alone" if solo else "")
            if alone >= CRASHES_BEFORE_QUARANTINE and not isinstance(d.item, Rejection):
                self._quarantine(d, f"the core stopped {alone} times while handling it")
            elif tries >= 1 and not solo:
                d.alone = True

    def _quarantine(self, d: _Delivery, why: str) -> None:
        self.counters["quarantined"] += 1
        log.error("quarantining the MQTT message on %r (mid %d): %s", d.topic, d.mid, why)
        d.item = Rejection("mqtt", printable(d.topic[:MAX_TOPIC_CHARS]), f"quarantined: {why}"[:400],
                           excerpt(d.head), d.size, utcnow())

    async def _commit(self, ds: list[_Delivery]) -> None:
        """Settles every delivery in ds: committed, or stored as a rejection if it fails alone while the
        database is healthy. While the database is down it waits; nothing is acknowledged meanwhile."""
        backoff = 0.2
        while ds:
            failed: Mapping[int, Exception]
            try:
                failed = await self._handler([d.item for d in ds]) or {}
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed = dict.fromkeys(range(len(ds)), exc)
            if not failed:
                return
            pending = [ds[i] for i in sorted(failed)]
            first = failed[min(failed)]
            if not await self._store_ok():
                self.counters["store_down_retries"] += 1
                log.warning("database unavailable; %d MQTT messages wait (%s)", len(pending), type(first).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                ds = pending
                continue
            if len(pending) > 1:  # split until the failing message is alone; the rest commits in few transactions
                half = len(pending) // 2
                await self._commit(pending[:half])
                await self._commit(pending[half:])
                return
            d = pending[0]
            d.failures += 1
            self.counters["failures"] += 1
            if isinstance(d.item, Rejection):  # even its rejection cannot be stored: keep it and wait
                log.error("cannot store a rejection for %r: %s", d.topic, first)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            elif d.failures >= POISON_AFTER:
                self._quarantine(d, f"failed {d.failures} times: {type(first).__name__}: {first}".splitlines()[0])
            else:
                log.warning("MQTT message on %r failed (%s); trying it again", _topic_of(d.item), type(first).__name__)
            ds = [d]

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
