"""Nothing lost, across real process deaths: `firelink run` as a subprocess, killed with SIGKILL.

- kill -9 the core in the middle of a QoS-1 burst, keep publishing while it is down, restart it:
  every alarm is in the database exactly once and the API shows it (duplicates absorbed);
- restart the broker (Mosquitto with deploy/mosquitto/firelink.conf) while the core runs, and again
  while the core is down with more queued alarms than Mosquitto's default limit of 1,000: nothing lost;
- a dispatch whose agency is unreachable survives kill -9 in the outbox and reaches the agency once
  per idempotency key after the restart.

Across processes there is no event to await: waits are bounded polls with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import ROOT, Broker, WebhookReceiver, free_port, restart_mosquitto, start_mosquitto

BROKER_CONF = ROOT / "deploy" / "mosquitto" / "firelink.conf"
SECRET = "no-loss-webhook-secret"
UNITS = [f"unit-{i}" for i in range(5)]
POLL_S = 0.05  # polling interval for cross-process conditions (no event to await)

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- broker


def production_broker() -> Broker:
    return start_mosquitto(BROKER_CONF.read_text())


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_S)


@pytest.fixture
def prod_broker() -> Iterator[Broker]:
    broker = production_broker()
    try:
        yield broker
    finally:
        broker.stop()


def test_production_broker_config_is_safe() -> None:
    """The shipped config sets every option whose default loses alarms."""
    opts: dict[str, str] = {}
    for line in BROKER_CONF.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            opts.setdefault(key, value.strip())
    assert opts["persistence"] == "true"
    assert int(opts["autosave_interval"]) <= 5
    assert opts["max_queued_messages"] == "0" or int(opts["max_queued_messages"]) >= 100_000
    assert opts["max_queued_bytes"] == "0"
    assert opts["max_inflight_messages"] == "0" or int(opts["max_inflight_messages"]) >= 100
    assert opts["persistent_client_expiration"]


# ---------------------------------------------------------------- the core as a real process


def core_config(tmp: Path, broker: Broker, webhook_url: str | None = None) -> dict[str, Any]:
    prefix = f"flnoloss-{uuid.uuid4().hex[:8]}"
    fire: dict[str, Any] = {"name": "消防救援大队", "phone": "119", "mqtt": True}
    medical: dict[str, Any] = {"name": "120急救中心", "phone": "120", "mqtt": False}
    if webhook_url:
        fire["webhooks"] = [{"url": webhook_url, "secret": SECRET, "timeout_s": 2}]
        medical["webhooks"] = [{"url": webhook_url, "secret": SECRET, "timeout_s": 2}]
    return {
        "database": {"url": f"sqlite+aiosqlite:///{tmp}/firelink.db"},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix, "client_id": f"core-{prefix}",
                 "embedded_broker": "never", "keepalive_s": 5},
        "console": {"host": "127.0.0.1", "port": free_port()},
        "station": {"id": "st-noloss", "name": "测试派出所"},
        "escalation": {"ack_timeout_s": 600, "merge_window_s": 3600},
        "delivery": {"initial_backoff_s": 0.05, "max_backoff_s": 0.3},
        "agencies": {"fire": fire, "medical": medical},
        "units": [{"id": u, "name": f"单位{u}", "address": f"测试路{i}号", "contact_name": "值班员",
                   "contact_phone": f"1380000{i:04d}"} for i, u in enumerate(UNITS)],
        "users": [{"username": "officer", "password": "officer-pw", "role": "duty_officer"}],
        "log_level": "WARNING",
    }


@dataclass
class Core:
    """`firelink run --config FILE` in a subprocess; SIGKILL when told to."""

    tmp: Path
    cfg: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.config_path = self.tmp / "firelink.yaml"
        self.config_path.write_text(yaml.safe_dump(self.cfg, allow_unicode=True))
        self.db_path = self.tmp / "firelink.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cfg['console']['port']}"

    @property
    def prefix(self) -> str:
        return str(self.cfg["mqtt"]["topic_prefix"])

    def start(self, timeout: float = 30) -> None:
        self.starts += 1
        log = (self.tmp / f"core-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "firelink.cli", "--config", str(self.config_path), "run"],
                                     cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self._healthy() or self.proc.poll() is not None, timeout, "core /healthz ok")
        assert self.proc.poll() is None, f"core exited: {self.log_tail()}"

    def _healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                return bool(json.loads(resp.read())["status"] == "ok")
        except OSError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self) -> str:
        logs = sorted(self.tmp.glob("core-*.log"))
        return logs[-1].read_text(errors="replace")[-3000:] if logs else ""

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # schema not created yet
            return []
        finally:
            conn.close()

    def alarm_count(self) -> int:
        rows = self.query("SELECT count(*) FROM alarms")
        return int(rows[0][0]) if rows else 0


@pytest.fixture
def make_core(tmp_path: Path) -> Iterator[Callable[..., Core]]:
    cores: list[Core] = []

    def make(broker: Broker, webhook_url: str | None = None) -> Core:
        core = Core(tmp_path, core_config(tmp_path, broker, webhook_url))
        cores.append(core)
        return core

    yield make
    for c in cores:
        c.stop()


# ---------------------------------------------------------------- a device gateway that never gives up


class Publisher:
    """A persistent-session QoS-1 publisher (like a fire-panel gateway): it keeps every alarm until
    the broker's PUBACK, across broker restarts, and paces the burst in a thread."""

    def __init__(self, broker: Broker, prefix: str) -> None:
        self.prefix = prefix
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid.uuid4().hex[:8]}",
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.acked: set[int] = set()
        # Counted from PUBACKs: a publish made while the broker restarts returns "not connected"
        # but stays queued in the client and goes out on reconnect.
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.add(mid)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def burst(self, alarms: list[tuple[str, str]], rate: float) -> None:
        """Publishes (unit_id, alarm_id) pairs at `rate` per second in a background thread."""
        def run() -> None:
            t0 = time.monotonic()
            for n, (unit, alarm_id) in enumerate(alarms):
                due = t0 + n / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing a load generator, not waiting for an event
                body = json.dumps({"alarm_id": alarm_id, "kind": "smoke", "note": f"burst {n}"})
                self.infos.append(self.client.publish(f"{self.prefix}/units/{unit}/alarm", body, qos=1))
                self.sent += 1

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self, timeout: float = 60) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher did not finish"

    def wait_all_acked(self, timeout: float = 30) -> None:
        wait_until(lambda: all(i.mid in self.acked for i in self.infos), timeout, "broker PUBACK for every alarm")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_alarms(count: int, repeats: int, tag: str) -> tuple[list[tuple[str, str]], set[str]]:
    """`count` unique alarms spread over the units, with `repeats` re-sends of earlier alarm ids mixed in."""
    alarms = [(UNITS[n % len(UNITS)], f"{tag}-{n:05d}") for n in range(count)]
    step = max(1, count // max(1, repeats))
    out: list[tuple[str, str]] = []
    for n, a in enumerate(alarms):
        out.append(a)
        if n % step == step - 1 and n >= step:
            out.append(alarms[n - step // 2])  # same unit, same alarm_id: a gateway's duplicate
    return out, {a for _, a in alarms}


def assert_exactly_once(core: Core, expected: set[str], timeout: float = 40) -> None:
    wait_until(lambda: core.alarm_count() >= len(expected), timeout,
               f"{len(expected)} alarms in the database (have {core.alarm_count()})")
    rows = core.query("SELECT alarm_id FROM alarms")
    ids = Counter(r[0] for r in rows)
    assert set(ids) == expected, (f"missing {len(expected - set(ids))}: {sorted(expected - set(ids))[:5]}, "
                                  f"unexpected {sorted(set(ids) - expected)[:5]}")
    assert max(ids.values()) == 1


async def api_incidents(core: Core) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(core.url + "/api/login", json={"username": "officer", "password": "officer-pw"}) as r:
            assert r.status == 200, await r.text()
        async with http.get(core.url + "/api/incidents?state=all") as r:
            assert r.status == 200, await r.text()
            return list(await r.json())


def assert_shown(core: Core, expected: set[str]) -> None:
    incidents = asyncio.run(api_incidents(core))
    assert {i["unit_id"] for i in incidents} == set(UNITS)
    assert sum(i["alarm_count"] for i in incidents) == len(expected)
    assert all(i["unit"]["name"].startswith("单位") for i in incidents)


# ---------------------------------------------------------------- the tests


def test_core_kill9_mid_burst_loses_nothing(prod_broker: Broker, make_core: Callable[..., Core]) -> None:
    core = make_core(prod_broker)
    core.start()
    alarms, expected = make_alarms(3000, 150, "k9")
    pub = Publisher(prod_broker, core.prefix)
    try:
        pub.burst(alarms, rate=1500)
        # Kill once the core has committed some of the burst but not all of it.
        wait_until(lambda: core.alarm_count() >= 300, 20, "the core committing part of the burst")
        core.kill9()
        committed_at_kill = core.alarm_count()
        assert committed_at_kill < len(expected), "the burst finished before the kill; raise the rate"
        pub.join()  # the rest was published while the core was dead
        pub.wait_all_acked()
        core.start()
        assert_exactly_once(core, expected)
        assert_shown(core, expected)
        assert core.query("SELECT count(*) FROM rejected_messages")[0][0] == 0
    finally:
        pub.close()


def test_broker_restarts_lose_nothing(prod_broker: Broker, make_core: Callable[..., Core]) -> None:
    core = make_core(prod_broker)
    core.start()
    first, expected_first = make_alarms(1000, 50, "br1")
    pub = Publisher(prod_broker, core.prefix)
    try:
        # 1. The broker restarts under the running core in the middle of a burst.
        pub.burst(first, rate=1000)
        wait_until(lambda: core.alarm_count() >= 200, 20, "part of the burst committed")
        restart_mosquitto(prod_broker)
        pub.join()
        pub.wait_all_acked()
        assert_exactly_once(core, expected_first)

        # 2. The core is down while 2,500 more alarms arrive (more than Mosquitto's default queue
        #    limit of 1,000 for an offline session), then the broker restarts before the core returns:
        #    the queue must survive on disk.
        core.kill9()
        second, expected_second = make_alarms(2500, 50, "br2")
        pub.burst(second, rate=5000)
        pub.join()
        pub.wait_all_acked()
        restart_mosquitto(prod_broker)
        core.start()
        expected = expected_first | expected_second
        assert_exactly_once(core, expected)
        assert_shown(core, expected)
    finally:
        pub.close()


async def test_outbox_survives_kill9_and_delivers_once_per_key(prod_broker: Broker,
                                                                make_core: Callable[..., Core]) -> None:
    agency = WebhookReceiver(port=free_port(), secret=SECRET)  # not listening yet: the brigade's server is down
    core = make_core(prod_broker, webhook_url=agency.url)
    await asyncio.to_thread(core.start)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(core.url + "/api/login", json={"username": "officer", "password": "officer-pw"}) as r:
            csrf = (await r.json())["csrf_token"]
        pub = Publisher(prod_broker, core.prefix)
        try:
            pub.burst([(UNITS[0], f"ob-{uuid.uuid4().hex}")], rate=100)
            await asyncio.to_thread(pub.join)
        finally:
            await asyncio.to_thread(pub.close)
        await asyncio.to_thread(wait_until, lambda: core.alarm_count() == 1, 10, "the alarm committed")
        incident_id = core.query("SELECT incident_id FROM alarms")[0][0]
        async with http.post(f"{core.url}/api/incidents/{incident_id}/dispatch", json={"agencies": ["fire", "medical"]},
                             headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200, await r.text()
            assert {d["agency"] for d in (await r.json())["dispatches"]} == {"fire", "medical"}
    keys = {r[0] for r in core.query("SELECT idempotency_key FROM dispatches")}
    assert len(keys) == 2

    def failed_attempts() -> int:
        rows = core.query("SELECT sum(attempts) FROM outbox WHERE channel = 'webhook'")
        return int(rows[0][0] or 0) if rows else 0

    # The agency is unreachable: the worker retries with backoff; then the core dies mid-retry.
    await asyncio.to_thread(wait_until, lambda: failed_attempts() >= 4, 15, "failed delivery attempts")
    await asyncio.to_thread(core.kill9)
    pending = core.query("SELECT count(*) FROM outbox WHERE channel = 'webhook' AND status = 'pending'")[0][0]
    assert pending == 2

    await agency.start()
    try:
        await asyncio.to_thread(core.start)
        await asyncio.to_thread(
            wait_until, lambda: core.query("SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0] == 0,
            20, "every outbox message delivered")
        assert agency.unique_keys() == keys
        assert all(agency.signature_ok), "bad signature"
        per_key = Counter(agency.keys())
        assert set(per_key.values()) == {1}, per_key  # nothing failed after the restart: exactly once
        bodies = {k: r.json for k, r in zip(agency.keys(), agency.received, strict=True)}
        assert {b["agency"] for b in bodies.values()} == {"fire", "medical"}
        assert all(b["incident_id"] == incident_id and b["idempotency_key"] == k for k, b in bodies.items())
        statuses = {r[0] for r in core.query("SELECT status FROM dispatches")}
        assert statuses == {"delivered"}, statuses
    finally:
        await agency.stop()
