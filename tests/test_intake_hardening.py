"""Deafness is impossible or loud (issue 10 §1).

- every hostile payload class on every subscribed topic is a cheap rejection, never an exception, and a valid
  alarm published right after a fuzz burst is committed within 1 s;
- a message that takes the core down is counted across restarts and quarantined, and the next alarm is stored;
- killing the MQTT network thread turns /healthz red (and every console is told) until the watchdog has
  restarted the client on the same session by itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from config.schema import FirelinkConfig
from console.appkeys import BUS, DB, MQTT
from dispatch import events as ev
from dispatch.events import Subscription
from dispatch.inbox import CoreInbox
from dispatch.models import Alarm, IntakeAttempt, RejectedMessage
from ingest import mqtt_link
from ingest.contract import AlarmIn, CoreInput, Rejection
from ingest.mqtt_link import MqttLink
from ingest.payloads import parse_message
from tests.fuzz import HOSTILE, detection_payload, fuzz_messages, publish_many, topics
from tests.support import ROOT, Api, Broker, base_config, publish, running_app, start_mosquitto, ws_client

pytestmark = pytest.mark.timeout(180)

NOW = datetime(2026, 1, 15, 8, 30, tzinfo=UTC)


# ---------------------------------------------------------------- hostile payloads (tests/fuzz.py)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_hostile_payload_on_every_topic_is_a_rejection_with_a_reason(name: str) -> None:
    for where, topic in topics("fl").items():
        result = parse_message("fl", topic, HOSTILE[name], 65_536, NOW)
        assert isinstance(result, Rejection), (name, where, result)
        assert result.reason and result.size == len(HOSTILE[name]) and len(result.excerpt) <= 800


def test_parser_limits_are_the_ones_documented() -> None:
    assert "recursion limit" in parse_message("fl", "fl/units/u/alarm", HOSTILE["deep arrays"], 65_536, NOW).reason
    assert "number out of range" in parse_message("fl", "fl/units/u/alarm", HOSTILE["huge int alone"], 65_536,
                                                  NOW).reason
    ack = parse_message("fl", "fl/dispatch/fire/ack", HOSTILE["id 2^31"], 65_536, NOW, agencies=["fire"])
    assert isinstance(ack, Rejection) and "less than or equal to 2147483647" in ack.reason
    nan = parse_message("fl", "fl/cameras/cam-1/detections", HOSTILE["detection nan"], 65_536, NOW)
    assert isinstance(nan, Rejection) and "finite number" in nan.reason
    # what is valid still parses: the largest dispatch id, a naive device time (read as UTC), a worker's detection
    top = parse_message("fl", "fl/dispatch/fire/ack", b'{"dispatch_id":2147483647}', 65_536, NOW, agencies=["fire"])
    assert not isinstance(top, Rejection) and top.dispatch_id == 2**31 - 1  # type: ignore[union-attr]
    alarm = parse_message("fl", "fl/units/u-1/alarm", b'{"alarm_id":"a","kind":"smoke","ts":"2026-01-15T08:00:00"}',
                          65_536, NOW)
    assert isinstance(alarm, AlarmIn) and alarm.device_ts == datetime(2026, 1, 15, 8, tzinfo=UTC)
    det = parse_message("fl", "fl/cameras/cam-1/detections", detection_payload(unit_id="hotel-1"), 65_536, NOW)
    assert not isinstance(det, Rejection), det


@pytest.fixture(scope="module")
def production_broker() -> Any:
    """Mosquitto with the shipped config (large queues): the default one drops what exceeds 1,000 queued."""
    broker = start_mosquitto((ROOT / "deploy" / "mosquitto" / "firelink.conf").read_text())
    yield broker
    broker.stop()


async def next_event(sub: Subscription, pred: Callable[[ev.Event], bool], timeout: float) -> ev.Event:
    async def go() -> ev.Event:
        while True:
            event = await sub.get()
            if pred(event):
                return event
    return await asyncio.wait_for(go(), timeout)


async def test_fuzz_burst_on_every_topic_then_a_valid_alarm_is_committed_within_a_second(
        production_broker: Broker, db_url: str) -> None:
    cfg = base_config(db_url, production_broker)
    fuzz = fuzz_messages(cfg.mqtt.topic_prefix, random_count=500)
    async with running_app(cfg) as app:
        link = app.app[MQTT]
        assert link is not None
        with app.app[BUS].subscribe([ev.ALARM_REJECTED, ev.ALARM_RECEIVED], maxsize=50_000) as sub:
            started = time.monotonic()
            await asyncio.to_thread(publish_many, production_broker, fuzz)
            published = time.monotonic()
            good = f"after-fuzz-{uuid.uuid4().hex}"
            sent = time.monotonic()
            await publish(production_broker, f"{cfg.mqtt.topic_prefix}/units/school-1/alarm",
                          {"alarm_id": good, "kind": "one_key"})
            rejected = 0

            def counted(e: ev.Event) -> bool:
                nonlocal rejected
                rejected += e.type == ev.ALARM_REJECTED
                return e.type == ev.ALARM_RECEIVED and e.data["alarm"]["alarm_id"] == good

            await next_event(sub, counted, 1.0)  # committed within 1 s of being published, fuzz backlog included
            committed = time.monotonic()
            if rejected < len(fuzz):
                await next_event(sub, lambda e: counted(e) or rejected >= len(fuzz), 30)
            done = time.monotonic()
        print(f"\nfuzz: {len(fuzz)} messages published in {published - started:.2f}s; valid alarm committed "
              f"{(committed - sent) * 1000:.0f} ms after its publish; all rejected {done - started:.2f}s after start")
        async with app.app[DB].session() as s:
            total = await s.scalar(select(func.count(RejectedMessage.id)))
            stored = await s.scalar(select(func.count(Alarm.id)))
        assert total == len(fuzz) and stored == 1
        counters = link.status().counters
        # rejected cheaply: nothing failed in the core, nothing needed quarantine, no callback error
        assert not any(counters.get(k) for k in ("failures", "quarantined", "on_message_errors", "store_down_retries"))
        assert link.status().ok and link.status().thread_alive


async def test_poison_that_takes_the_core_down_is_quarantined_after_restarts_and_the_next_alarm_is_stored(
        broker: Broker, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = base_config(db_url, broker)
    original = CoreInbox.handle
    reached = asyncio.Event()

    async def handle(self: CoreInbox, items: list[CoreInput]) -> dict[int, Exception]:
        if any(isinstance(i, AlarmIn) and i.alarm_id == "poison" for i in items):
            reached.set()
            await asyncio.Event().wait()  # the core never gets past it: as good as dead (nothing acknowledged)
        return await original(self, items)

    monkeypatch.setattr(CoreInbox, "handle", handle)
    topic = f"{cfg.mqtt.topic_prefix}/units/school-1/alarm"
    crashes = 0
    async with running_app(cfg):
        await publish(broker, topic, {"alarm_id": "poison", "kind": "one_key"})
        await asyncio.wait_for(reached.wait(), 10)
        await publish(broker, topic, {"alarm_id": "behind-poison", "kind": "smoke"})
    crashes += 1
    alarms: set[str] = set()  # alarms seen committed in the current run

    def note(wanted: str, e: ev.Event) -> bool:
        if e.type == ev.ALARM_RECEIVED:
            alarms.add(e.data["alarm"]["alarm_id"])
        return e.type == wanted

    for _ in range(5):  # restart after restart, as a service manager would
        reached.clear()
        alarms.clear()
        async with running_app(cfg) as app:
            with app.app[BUS].subscribe([ev.ALARM_REJECTED, ev.ALARM_RECEIVED]) as sub:
                # The broker may redeliver before this subscription exists: what committed earlier is in the table.
                async with app.app[DB].session() as s:
                    reason = await s.scalar(select(RejectedMessage.reason))
                if reason is None:
                    quarantined = asyncio.create_task(
                        next_event(sub, functools.partial(note, ev.ALARM_REJECTED), 15))
                    crashed = asyncio.create_task(reached.wait())
                    await asyncio.wait([quarantined, crashed], return_when=asyncio.FIRST_COMPLETED)
                    crashed.cancel()
                    if reached.is_set():
                        quarantined.cancel()
                        crashes += 1
                        continue
                    reason = (await quarantined).data["rejection"]["reason"]
                assert reason.startswith("quarantined: the core stopped 2 times")
                async with app.app[DB].session() as s:
                    alarms.update((await s.scalars(select(Alarm.alarm_id))).all())
                next_id = f"next-{uuid.uuid4().hex}"
                await publish(broker, topic, {"alarm_id": next_id, "kind": "one_key"})
                while not {next_id, "behind-poison"} <= alarms:  # the one behind the poison may still be settling
                    await next_event(sub, functools.partial(note, ev.ALARM_RECEIVED), 10)
                await publish(broker, topic, {"alarm_id": "last", "kind": "one_key"})  # in a later batch than both
                while "last" not in alarms:
                    await next_event(sub, functools.partial(note, ev.ALARM_RECEIVED), 10)
                async with app.app[DB].session() as s:
                    stored = set((await s.scalars(select(Alarm.alarm_id))).all())
                    reasons = (await s.scalars(select(RejectedMessage.reason))).all()
                    journal = await s.scalar(select(func.count()).select_from(IntakeAttempt))
                assert stored == {"behind-poison", next_id, "last"} and len(reasons) == 1
                assert journal == 0  # settled messages leave no journal rows
                break
    else:
        raise AssertionError("the poison was never quarantined")
    assert crashes == 4  # first delivery, redelivered in a batch, then alone twice


async def test_a_failing_message_is_split_out_of_its_batch_in_few_tries(broker: Broker) -> None:
    prefix = f"fltest-{uuid.uuid4().hex[:10]}"
    cfg = base_config("sqlite+aiosqlite:///:memory:", broker).mqtt.model_copy(
        update={"topic_prefix": prefix, "client_id": f"core-{prefix}"})
    stored: list[str] = []
    with_poison = 0
    everything = asyncio.Event()

    async def handler(items: list[CoreInput]) -> None:
        nonlocal with_poison
        names = [i.alarm_id if isinstance(i, AlarmIn) else "rejection" for i in items]
        if "poison" in names:
            with_poison += 1
            raise RuntimeError("this row breaks the transaction")
        stored.extend(names)
        if len(stored) >= 301:  # 300 alarms and the poison's rejection
            everything.set()

    async def healthy() -> bool:
        return True

    link = MqttLink(cfg, handler, healthy)
    await link.start()
    msgs = [(f"{prefix}/units/u1/alarm", json.dumps({"alarm_id": f"a{n}", "kind": "one_key"}).encode())
            for n in range(300)]
    msgs.insert(150, (f"{prefix}/units/u1/alarm", b'{"alarm_id":"poison","kind":"one_key"}'))
    await asyncio.to_thread(publish_many, broker, msgs)
    await asyncio.wait_for(everything.wait(), 20)
    await link.stop()
    assert sorted(n for n in stored if n != "rejection") == sorted(f"a{n}" for n in range(300))
    assert stored.count("rejection") == 1
    # halving to the poison (≤ log2(500) = 9 splits) plus POISON_AFTER tries alone: not one try per message
    assert with_poison <= 9 + mqtt_link.POISON_AFTER + 1
    assert link.status().counters["quarantined"] == 1


# ---------------------------------------------------------------- watchdog and /healthz


async def test_killing_the_network_thread_turns_healthz_red_and_intake_recovers_by_itself(
        broker: Broker, db_url: str) -> None:
    cfg = base_config(db_url, broker)
    async with running_app(cfg) as app:
        link = app.app[MQTT]
        assert link is not None
        anon = Api(app.url)
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        status, body = await anon.request("GET", "/healthz")
        assert status == 200 and body["status"] == "ok" and body["down"] == [] and body["mqtt"] is True
        assert body["intake"]["thread_alive"] and body["intake"]["connected"] and body["intake"]["restarts"] == 0
        assert body["database"]["ok"] and body["database"]["latency_ms"] >= 0
        assert body["outbox"] == {"ok": True, "pending": 0, "oldest_pending_age_s": None}
        async with ws_client(officer) as ws:
            killed = time.monotonic()
            await link.kill_network_thread()
            red = await ws.next_matching(lambda e: e["type"] == "health.updated", timeout=5)
            assert "mqtt_intake" in red["data"]["down"] and red["data"]["status"] == "degraded"
            status, body = await anon.request("GET", "/healthz")
            assert status == 503 and "mqtt_intake" in body["down"]
            assert body["intake"]["thread_alive"] is False and body["mqtt"] is False
            went_red = time.monotonic() - killed
            green = await ws.next_matching(lambda e: e["type"] == "health.updated", timeout=15)
            assert green["data"]["status"] == "ok" and green["data"]["down"] == []
            recovered = time.monotonic() - killed
            alarm_id = f"after-restart-{uuid.uuid4().hex}"
            await publish(broker, f"{cfg.mqtt.topic_prefix}/units/school-1/alarm",
                          {"alarm_id": alarm_id, "kind": "one_key"})
            created = await ws.next_matching(lambda e: e["type"] == "alarm.received", timeout=10)
            assert created["alarm"]["alarm_id"] == alarm_id
        print(f"\nthread killed: /healthz red after {went_red:.2f}s, intake back after {recovered:.2f}s")
        status, body = await anon.request("GET", "/healthz")
        assert status == 200 and body["intake"]["restarts"] == 1
        await anon.close()
        await officer.close()


async def test_a_probe_that_does_not_come_back_marks_intake_down_and_restarts_the_client(
        broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thread alive and connected, yet nothing arrives (here: the probe's subscription is gone)."""
    monkeypatch.setattr(mqtt_link, "PROBE_IDLE_S", 0.5)
    monkeypatch.setattr(mqtt_link, "PROBE_TIMEOUT_S", 1.0)
    prefix = f"fltest-{uuid.uuid4().hex[:10]}"
    cfg = base_config("sqlite+aiosqlite:///:memory:", broker).mqtt.model_copy(
        update={"topic_prefix": prefix, "client_id": f"core-{prefix}"})
    stored: asyncio.Queue[CoreInput] = asyncio.Queue()

    async def handler(items: list[CoreInput]) -> None:
        for i in items:
            stored.put_nowait(i)

    link = MqttLink(cfg, handler)
    seen: list[tuple[bool, int, str | None]] = []
    changed = asyncio.Event()

    def on_change() -> None:
        status = link.status()
        seen.append((status.ok, status.restarts, status.problem))
        changed.set()

    link.on_change = on_change
    await link.start()
    assert link.status().ok
    link.client.unsubscribe(f"{prefix}/_health/core-{prefix}")

    async def until(pred: Callable[[], bool]) -> None:
        while not pred():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(until(lambda: any(not ok and p and "probe" in p for ok, _, p in seen)), 10)
    await asyncio.wait_for(until(lambda: any(ok and restarts == 1 for ok, restarts, _ in seen)), 15)
    await publish(broker, f"{prefix}/units/u1/alarm", {"alarm_id": "after-probe-restart", "kind": "one_key"})
    item = await asyncio.wait_for(stored.get(), 10)
    assert isinstance(item, AlarmIn) and item.alarm_id == "after-probe-restart"
    await link.stop()


async def test_healthz_without_mqtt_and_with_a_stale_outbox(db_url: str) -> None:
    start = datetime.now(UTC)
    clock_now = [start]
    cfg: FirelinkConfig = base_config(db_url, None, webhook_url="http://127.0.0.1:9/closed")
    async with running_app(cfg, mqtt=False, clock=lambda: clock_now[0]) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        status, body = await officer.request("GET", "/healthz")
        assert status == 200 and body["status"] == "ok" and body["intake"]["enabled"] is False
        pressed = await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
        await officer.post(f"/api/incidents/{pressed['incident_id']}/dispatch", {"agencies": ["fire"]})
        status, body = await officer.request("GET", "/healthz")
        assert status == 200 and body["outbox"]["pending"] >= 1 and body["outbox"]["ok"]
        clock_now[0] = start + timedelta(seconds=120)
        status, body = await officer.request("GET", "/healthz")
        # an outbox that cannot deliver is reported, but it is not the alarm path: degraded, still 200
        assert status == 200 and body["status"] == "degraded" and body["down"] == ["outbox"]
        assert body["outbox"]["oldest_pending_age_s"] >= 120
        await officer.close()
