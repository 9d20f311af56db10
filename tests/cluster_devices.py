"""Simulated alarm devices for a broker cluster: MQTT 3.1.1 QoS 1 publishers spread over the nodes.

Each gateway is one paho client connected to one node; when that node dies it reconnects to the next one and
publishes again what the dead node never acknowledged (the same alarm_id: the core absorbs the duplicate), as a
real device does. An alarm counts as acknowledged only when its PUBACK arrived: those are the ones the cluster
promised to keep, and the ones `lost` is counted against.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from config.broker import split_endpoint

POLL_S = 0.02  # how often a gateway looks for PUBACKs and a lost connection (paho has no awaitable for either)


@dataclass
class _Sent:
    alarm_id: str
    topic: str
    body: bytes
    info: mqtt.MQTTMessageInfo


@dataclass
class Gateway:
    """One device gateway: a QoS-1 publisher that moves to the next node when its node dies."""

    nodes: Sequence[str]
    first: int
    name: str = field(default_factory=lambda: f"gw-{uuid.uuid4().hex[:8]}")
    acked: set[str] = field(default_factory=set)
    acked_at: dict[str, float] = field(default_factory=dict)
    reconnects: int = 0
    _node: int = 0
    _client: mqtt.Client | None = None
    _pending: list[_Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._node = self.first

    def node(self) -> str:
        return self.nodes[self._node % len(self.nodes)]

    def _connect(self, deadline: float) -> None:
        """A fresh client on the current node, or the next one, until one accepts (or the deadline passes)."""
        while True:
            host, port = split_endpoint(self.node())
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.name}-{self.reconnects}",
                                 clean_session=True, protocol=mqtt.MQTTv311)
            client.max_inflight_messages_set(2000)
            client.max_queued_messages_set(0)
            connected = threading.Event()
            client.on_connect = lambda *_a, ev=connected: ev.set()
            try:
                client.connect(host, port, keepalive=10)
                client.loop_start()
                if connected.wait(5.0):
                    self._client = client
                    return
                client.loop_stop()
            except OSError:
                pass
            self._node += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no broker node accepts a connection")
            time.sleep(0.2)  # the whole cluster may be restarting: try the next node shortly

    def start(self) -> None:
        self._connect(time.monotonic() + 60)

    def _healthy(self) -> bool:
        return self._client is not None and self._client.is_connected()

    def _failover(self) -> None:
        """The node died: a client on the next node, and everything not acknowledged published again there."""
        old = self._client
        if old is not None:
            old.loop_stop()
        self._harvest()
        self.reconnects += 1
        self._node += 1
        self._connect(time.monotonic() + 120)
        again, self._pending = self._pending, []
        for s in again:
            self._send(s.alarm_id, s.topic, s.body)

    def _send(self, alarm_id: str, topic: str, body: bytes) -> None:
        assert self._client is not None
        info = self._client.publish(topic, body, qos=1)
        self._pending.append(_Sent(alarm_id, topic, body, info))

    def _harvest(self) -> None:
        now = time.monotonic()
        still = []
        for s in self._pending:
            if s.info.is_published():
                self.acked.add(s.alarm_id)
                self.acked_at[s.alarm_id] = now
            else:
                still.append(s)
        self._pending = still

    def publish(self, alarm_id: str, topic: str, body: bytes) -> None:
        with self._lock:
            if not self._healthy():
                self._failover()
            self._send(alarm_id, topic, body)

    def tick(self) -> None:
        with self._lock:
            self._harvest()
            if not self._healthy():
                self._failover()

    def unacked(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.disconnect()
                self._client.loop_stop()


class Fleet:
    """Gateways spread over the nodes, streaming alarms at a fixed rate from one thread."""

    def __init__(self, nodes: Sequence[str], prefix: str, units: Sequence[str], gateways: int | None = None) -> None:
        self.prefix = prefix
        self.units = list(units)
        self.gateways = [Gateway(nodes, i) for i in range(gateways or len(nodes))]
        self.published: list[str] = []
        self.sent_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        for g in self.gateways:
            g.start()
        self._ticker = threading.Thread(target=self._tick, name="fleet-acks", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(POLL_S):
            for g in self.gateways:
                try:
                    g.tick()
                except Exception as exc:  # reported by join()
                    self.error = exc

    def alarms(self, tag: str) -> Iterator[tuple[str, str, bytes]]:
        for n in itertools.count():
            unit = self.units[n % len(self.units)]
            alarm_id = f"{tag}-{n}"
            body = json.dumps({"alarm_id": alarm_id, "kind": "smoke", "device_id": None}).encode()
            yield alarm_id, f"{self.prefix}/units/{unit}/alarm", body

    def stream(self, rate: float, count: int, tag: str | None = None) -> None:
        """Publishes `count` alarms at `rate`/s in the background (round-robin over the gateways)."""
        tag = tag or uuid.uuid4().hex[:6]

        def run() -> None:
            t0 = time.monotonic()
            try:
                for n, (alarm_id, topic, body) in enumerate(itertools.islice(self.alarms(tag), count)):
                    if self._stop.is_set():
                        return
                    delay = t0 + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # pacing the stream: a rate, not a synchronisation
                    self.sent_at[alarm_id] = time.monotonic()
                    self.published.append(alarm_id)
                    self.gateways[n % len(self.gateways)].publish(alarm_id, topic, body)
            except BaseException as exc:
                self.error = exc

        self._thread = threading.Thread(target=run, name="fleet-stream", daemon=True)
        self._thread.start()

    def streaming(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout_s: float) -> None:
        """Waits until the stream is sent and every alarm acknowledged (re-sent after a failover as needed)."""
        deadline = time.monotonic() + timeout_s
        if self._thread is not None:
            self._thread.join(timeout_s)
        while any(g.unacked() for g in self.gateways):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(g.unacked() for g in self.gateways)} alarms never acknowledged")
            time.sleep(POLL_S)
        if self.error is not None:
            raise self.error

    def acked(self) -> set[str]:
        out: set[str] = set()
        for g in self.gateways:
            out |= g.acked
        return out

    def reconnects(self) -> int:
        return sum(g.reconnects for g in self.gateways)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._ticker is not None:
            self._ticker.join(5)
        for g in self.gateways:
            g.close()
