"""The MQTT link against a real broker: PUBACK only after commit; a poison message cannot stall the rest."""

from __future__ import annotations

import asyncio
import uuid

from config.schema import MqttConfig
from ingest.contract import AlarmIn, CoreInput, Rejection
from ingest.mqtt_link import MqttLink
from tests.support import Broker, publish


def link_config(broker: Broker) -> MqttConfig:
    prefix = f"fltest-{uuid.uuid4().hex[:10]}"
    return MqttConfig(host=broker.host, port=broker.port, topic_prefix=prefix, client_id=f"core-{prefix}",
                      embedded_broker="never")


async def test_unacknowledged_messages_are_redelivered_after_reconnect(broker: Broker) -> None:
    cfg = link_config(broker)
    got: asyncio.Queue[CoreInput] = asyncio.Queue()
    release = asyncio.Event()

    async def stuck(items: list[CoreInput]) -> None:  # a core whose database never commits
        for i in items:
            got.put_nowait(i)
        await release.wait()

    first = MqttLink(cfg, stuck)
    await first.start()
    await publish(broker, f"{cfg.topic_prefix}/units/u1/alarm", {"alarm_id": "r-1", "kind": "one_key"})
    item = await asyncio.wait_for(got.get(), 10)
    assert isinstance(item, AlarmIn) and item.alarm_id == "r-1"
    await first.stop()  # never acknowledged

    stored: asyncio.Queue[CoreInput] = asyncio.Queue()

    async def commit(items: list[CoreInput]) -> None:
        for i in items:
            stored.put_nowait(i)

    second = MqttLink(cfg, commit)  # same client id: the broker kept the session
    await second.start()
    again = await asyncio.wait_for(stored.get(), 10)
    assert isinstance(again, AlarmIn) and again.alarm_id == "r-1"
    await second.stop()

    third = MqttLink(cfg, commit)  # acknowledged now: not delivered a third time
    await third.start()
    await publish(broker, f"{cfg.topic_prefix}/units/u1/alarm", {"alarm_id": "r-2", "kind": "one_key"})
    nxt = await asyncio.wait_for(stored.get(), 10)
    assert isinstance(nxt, AlarmIn) and nxt.alarm_id == "r-2"
    await third.stop()


async def test_poison_message_becomes_a_rejection_while_the_store_is_healthy(broker: Broker) -> None:
    cfg = link_config(broker)
    stored: asyncio.Queue[CoreInput] = asyncio.Queue()

    async def handler(items: list[CoreInput]) -> None:
        if any(isinstance(i, AlarmIn) and i.alarm_id == "poison" for i in items):
            raise RuntimeError("database refuses this row")
        for i in items:
            stored.put_nowait(i)

    async def healthy() -> bool:
        return True

    link = MqttLink(cfg, handler, healthy)
    await link.start()
    for alarm_id in ("before", "poison", "after"):
        await publish(broker, f"{cfg.topic_prefix}/units/u1/alarm", {"alarm_id": alarm_id, "kind": "one_key"})
    results = [await asyncio.wait_for(stored.get(), 15) for _ in range(3)]
    await link.stop()
    names = [r.alarm_id if isinstance(r, AlarmIn) else r.reason for r in results]
    assert names[0] == "before" and names[2] == "after"
    assert isinstance(results[1], Rejection) and "quarantined: failed 3 times: RuntimeError" in results[1].reason
