"""Core rules on a real database: merge window, state machine, escalation, devices, record chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from dispatch import events as ev
from dispatch.actor import SYSTEM, Actor
from dispatch.db import Database
from dispatch.devices import DeviceMonitor
from dispatch.escalation import Escalator
from dispatch.events import EventBus
from dispatch.incidents import Incidents
from dispatch.models import OutboxMessage, RecordEntry
from dispatch.records import response_times, verify
from dispatch.state import TransitionError
from dispatch.writer import Writer
from ingest.contract import AlarmIn, DeviceStatusIn
from tests.support import StepClock, base_config

T0 = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
OFFICER = Actor("officer", "duty_officer")


@pytest.fixture
async def core(db_url: str) -> AsyncIterator[tuple[Incidents, StepClock]]:
    cfg = base_config(db_url, None, escalation={"ack_timeout_s": 30, "merge_window_s": 300, "max_level": 2})
    db = Database(db_url)
    await db.upgrade()
    clock = StepClock(T0)
    service = await Incidents.start(Writer(db, EventBus()), cfg, clock)
    yield service, clock
    await db.dispose()


def alarm(alarm_id: str, at: datetime, unit: str = "school-1", kind: str = "one_key") -> AlarmIn:
    return AlarmIn(alarm_id, unit, kind, "mqtt", at)


async def test_alarms_within_the_window_join_and_after_it_open_a_new_incident(
        core: tuple[Incidents, StepClock]) -> None:
    service, _ = core
    outcomes = await service.intake.ingest([alarm("a1", T0), alarm("a2", T0 + timedelta(seconds=299)),
                                     alarm("b1", T0, unit="hotel-1"), alarm("a1", T0)])
    assert outcomes == ["accepted", "accepted", "accepted", "duplicate"]
    first = service.core.open_by_unit["school-1"].incident_id
    # 5 min after the *last* alarm (a2), not the first.
    await service.intake.ingest([alarm("a3", T0 + timedelta(seconds=299 + 300))])
    assert service.core.open_by_unit["school-1"].incident_id == first
    await service.intake.ingest([alarm("a4", T0 + timedelta(seconds=299 + 300 + 301))])
    second = service.core.open_by_unit["school-1"].incident_id
    assert second != first
    incidents = {i["id"]: i for i in await service.views.list_incidents(SYSTEM, "all")}
    assert incidents[first]["alarm_count"] == 3 and incidents[second]["alarm_count"] == 1
    assert len(incidents) == 3


async def test_one_batch_opening_several_incidents_gives_each_alarm_its_own_incident(
        core: tuple[Incidents, StepClock]) -> None:
    """New incidents of a batch are inserted together (one per unit) or, when one unit opens two (a backlog
    longer than the merge window), one by one: either way each alarm, event and record names its incident."""
    service, _ = core
    with service.core.writer.bus.subscribe([ev.ALARM_RECEIVED, ev.INCIDENT_CREATED]) as sub:
        for batch in ([alarm("m1", T0), alarm("m2", T0, unit="hotel-1")],  # two units: one statement
                      [alarm("m3", T0 + timedelta(hours=1)), alarm("m4", T0 + timedelta(hours=2)),
                       alarm("m5", T0 + timedelta(hours=2, seconds=1))]):  # one unit opens two
            assert await service.intake.ingest(batch) == ["accepted"] * len(batch)
        events = [e for e in iter(sub.get_nowait, None)]
    created = {e.data["incident"]["id"]: e.data["incident"] for e in events if e.type == ev.INCIDENT_CREATED}
    by_alarm = {e.data["alarm"]["alarm_id"]: e.data["alarm"]["incident_id"] for e in events
                if e.type == ev.ALARM_RECEIVED}
    assert len(created) == 4 and set(by_alarm.values()) == set(created)
    assert by_alarm["m4"] == by_alarm["m5"] and len({by_alarm[a] for a in ("m1", "m2", "m3", "m4")}) == 4
    assert {i: c["unit_id"] for i, c in created.items()} == {
        by_alarm["m1"]: "school-1", by_alarm["m2"]: "hotel-1", by_alarm["m3"]: "school-1", by_alarm["m4"]: "school-1"}
    assert created[by_alarm["m4"]]["alarm_count"] == 2
    for alarm_id, incident_id in by_alarm.items():
        detail = await service.views.incident_detail(incident_id, SYSTEM)
        assert alarm_id in [a["alarm_id"] for a in detail["alarms"]]
        assert {"alarm.received", "incident.created"} <= {e["action"] for e in detail["timeline"]}
    assert service.core.open_by_unit["school-1"].incident_id == by_alarm["m4"]
    async with service.core.db.session() as s:
        assert verify((await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()) is None


async def test_alarm_after_close_opens_a_new_incident(core: tuple[Incidents, StepClock]) -> None:
    service, clock = core
    await service.intake.ingest([alarm("c1", T0)])
    first = service.core.open_by_unit["school-1"].incident_id
    clock.advance(10)
    await service.commands.close(first, "false_alarm", "误按", OFFICER)
    await service.intake.ingest([alarm("c2", T0 + timedelta(seconds=20))])
    assert service.core.open_by_unit["school-1"].incident_id != first


async def test_state_machine_refuses_steps_out_of_order(core: tuple[Incidents, StepClock]) -> None:
    service, clock = core
    await service.intake.ingest([alarm("s1", T0)])
    inc = service.core.open_by_unit["school-1"].incident_id
    with pytest.raises(TransitionError):
        await service.commands.on_scene(inc, OFFICER)  # nobody acknowledged yet
    clock.advance(4)
    view = await service.commands.acknowledge(inc, OFFICER)
    again = await service.commands.acknowledge(inc, Actor("someone-else", "duty_officer"))
    assert again["acknowledged_by"] == "officer" and view["acknowledged_at"] == again["acknowledged_at"]
    clock.advance(20)
    await service.commands.dispatch(inc, ["fire"], OFFICER)
    view = await service.commands.dispatch(inc, ["fire", "medical"], OFFICER)  # fire not sent twice
    assert sorted(d["agency"] for d in view["dispatches"]) == ["fire", "medical"]
    clock.advance(100)
    await service.commands.close(inc, "resolved", "", OFFICER)
    with pytest.raises(TransitionError):
        await service.commands.acknowledge(inc, OFFICER)
    detail = await service.views.incident_detail(inc, SYSTEM)
    # Hand-computed from the clock: alarm T0, ack T0+4 s, first dispatch T0+24 s.
    assert detail["response_times"] == {"alarm_to_ack_s": 4.0, "ack_to_dispatch_s": 20.0, "alarm_to_dispatch_s": 24.0}


async def test_dispatch_writes_outbox_rows_per_channel_in_the_same_transaction(
        core: tuple[Incidents, StepClock]) -> None:
    service, _ = core
    await service.intake.ingest([alarm("o1", T0)])
    inc = service.core.open_by_unit["school-1"].incident_id
    await service.commands.dispatch(inc, ["fire", "medical"], OFFICER)
    async with service.core.db.session() as s:
        rows = (await s.scalars(select(OutboxMessage))).all()
    assert sorted(r.target.rsplit("/", 1)[-1] for r in rows) == ["fire", "medical"]  # MQTT channel each
    assert all(r.status == "pending" and r.payload["unit"]["name"] == "第一小学" for r in rows)


async def test_unacknowledged_incident_escalates_each_timeout_up_to_max_level(
        core: tuple[Incidents, StepClock]) -> None:
    service, clock = core
    escalator = Escalator(service.core, service.commands, service.core.bus, service.core.cfg.escalation)
    sub = service.core.bus.subscribe([ev.INCIDENT_ESCALATED])
    await service.intake.ingest([alarm("e1", T0)])
    inc = service.core.open_by_unit["school-1"].incident_id
    escalator.watch(inc)
    clock.advance(29)
    assert await escalator.tick() == pytest.approx(1.0)
    assert sub.get_nowait() is None
    clock.advance(1)
    await escalator.tick()
    first = sub.get_nowait()
    assert first is not None and first.data["level"] == 1 and first.data["incident"]["escalation_level"] == 1
    clock.advance(30)
    await escalator.tick()
    second = sub.get_nowait()
    assert second is not None and second.data["level"] == 2
    clock.advance(300)
    await escalator.tick()
    assert sub.get_nowait() is None  # max_level reached
    async with service.core.db.session() as s:
        leader = (await s.scalars(select(OutboxMessage).where(OutboxMessage.dispatch_id.is_(None)))).all()
    assert [m.payload["level"] for m in leader] == [1, 2]
    assert all(m.target.endswith("/leader/escalation") for m in leader)

    await service.intake.ingest([alarm("e2", T0 + timedelta(seconds=400), unit="hotel-1")])
    hotel = service.core.open_by_unit["hotel-1"].incident_id
    escalator.watch(hotel)
    clock.now = T0 + timedelta(seconds=410)
    await service.commands.acknowledge(hotel, OFFICER)
    clock.advance(600)
    await escalator.tick()
    assert sub.get_nowait() is None  # acknowledged incidents never escalate
    assert inc != hotel


async def test_escalator_task_wakes_on_new_incident_and_escalates_on_time(db_url: str) -> None:
    cfg = base_config(db_url, None, escalation={"ack_timeout_s": 0.2})
    db = Database(db_url)
    await db.upgrade()
    service = await Incidents.start(Writer(db, EventBus()), cfg)
    sub = service.core.bus.subscribe([ev.INCIDENT_ESCALATED])
    task = asyncio.create_task(Escalator(service.core, service.commands, service.core.bus, cfg.escalation).run())
    try:
        await service.intake.ingest([AlarmIn("live-1", "school-1", "one_key", "mqtt", datetime.now(UTC))])
        event = await asyncio.wait_for(sub.get(), 5)
        assert event.data["level"] == 1
    finally:
        task.cancel()
        await db.dispose()


async def test_device_heartbeat_fault_and_silence(core: tuple[Incidents, StepClock]) -> None:
    service, clock = core
    monitor = DeviceMonitor(service.intake, service.core.cfg, clock)
    await monitor.load()
    sub = service.core.bus.subscribe([ev.DEVICE_UPDATED])
    assert await monitor.handle(DeviceStatusIn("btn-1", "online", "", clock())) is None
    online = sub.get_nowait()
    assert online is not None and online.data["device"]["status"] == "online"
    clock.advance(30)
    await monitor.handle(DeviceStatusIn("btn-1", "online", "", clock()))
    assert sub.get_nowait() is None  # a heartbeat is not a change
    clock.advance(59)
    await monitor.check_silence()
    assert sub.get_nowait() is None
    clock.advance(2)  # 61 s since last heartbeat > 60 s interval
    await monitor.check_silence()
    offline = sub.get_nowait()
    assert offline is not None and offline.data["device"]["status"] == "offline"
    assert "no heartbeat" in offline.data["device"]["detail"]
    await monitor.handle(DeviceStatusIn("btn-1", "fault", "battery low", clock()))
    fault = sub.get_nowait()
    assert fault is not None and fault.data["device"]["detail"] == "battery low"
    refused = await monitor.handle(DeviceStatusIn("nope", "online", "", clock()))
    assert refused is not None and "unknown device" in refused.reason


async def test_record_chain_detects_an_altered_row(core: tuple[Incidents, StepClock]) -> None:
    service, clock = core
    await service.intake.ingest([alarm("r1", T0), alarm("r2", T0, unit="hotel-1")])
    inc = service.core.open_by_unit["school-1"].incident_id
    clock.advance(5)
    await service.commands.acknowledge(inc, OFFICER)
    async with service.core.db.session() as s:
        rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
    assert verify(rows) is None
    assert response_times(rows)["alarm_to_ack_s"] == 5.0
    victim = rows[2]
    async with service.core.db.session() as s:
        await s.execute(update(RecordEntry).where(RecordEntry.id == victim.id).values(actor="someone-else"))
        await s.commit()
        tampered = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
    broken = verify(tampered)
    assert broken is not None and broken.entry_id == victim.id and "altered" in broken.reason
    assert verify([r for r in rows if r.id != rows[1].id]) is not None  # a removed entry breaks the link too


async def test_restart_reloads_open_incidents_and_the_chain(db_url: str) -> None:
    cfg = base_config(db_url, None)
    db = Database(db_url)
    await db.upgrade()
    first = await Incidents.start(Writer(db, EventBus()), cfg)
    await first.intake.ingest([AlarmIn("x1", "school-1", "one_key", "mqtt", datetime.now(UTC))])
    second = await Incidents.start(Writer(db, EventBus()), cfg)
    assert second.core.open_by_unit == first.core.open_by_unit and set(second.core.unacked) == set(first.core.unacked)
    await second.intake.ingest([AlarmIn("x2", "school-1", "one_key", "mqtt", datetime.now(UTC))])
    async with db.session() as s:
        rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
    assert verify(rows) is None
    await db.dispose()
