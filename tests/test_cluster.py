"""Cluster mode: several cores on one PostgreSQL database (docs/cluster.md).

Two cores in one test process, each with its own engine, bus, writer and indexes, write the same units at the
same time; one singleton lease is held by a separate process that is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from config.schema import FirelinkConfig
from console.appkeys import INCIDENTS
from dispatch import events as ev
from dispatch import records as rec
from dispatch.actor import Actor
from dispatch.auth import ensure_users
from dispatch.cluster import cluster_writing, startup_turn
from dispatch.db import Database
from dispatch.devices import DeviceMonitor
from dispatch.events import Event, EventBus
from dispatch.fanout import EventFanout
from dispatch.hazard_models import RectificationNotice
from dispatch.incidents import Incidents
from dispatch.lease import CoreLeaseHolder, LeaseHeld
from dispatch.models import Alarm, ChainHead, Device, Incident, OutboxMessage, RecordEntry, User
from dispatch.records import ChainForked, Head, verify_chains
from dispatch.singleton import Singleton
from dispatch.state import IncidentStatus, TransitionError
from dispatch.writer import ClusterWriting, Writer
from ingest.contract import AlarmIn, DeviceStatusIn, utcnow
from notify.worker import OutboxWorker
from tests.support import Api, StepClock, base_config, config_yaml, run_cli, running_app, ws_client

T0 = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
OFFICER = Actor("officer", "duty_officer")
KEY = "test-head-key"
UNITS = [{"id": f"u-{i:02d}", "name": f"单位{i}", "category": "学校", "address": "路1号",
          "devices": [{"id": f"btn-{i:02d}", "heartbeat_interval_s": 60}]} for i in range(12)]
UNIT_IDS = [f"u-{i:02d}" for i in range(12)]
ROOT = Path(__file__).resolve().parent.parent



def cluster_config(url: str, node: str, **overrides: Any) -> FirelinkConfig:
    return base_config(url, None, units=UNITS, users=[], cluster={"enabled": True, "node_id": node, "head_key": KEY},
                       escalation={"ack_timeout_s": 30, "merge_window_s": 300, "max_level": 2}, **overrides)


@dataclass
class CoreNode:
    cfg: FirelinkConfig
    db: Database
    bus: EventBus
    service: Incidents


async def start_node(url: str, node: str, clock: StepClock) -> CoreNode:
    cfg = cluster_config(url, node)
    db = Database(url)
    await db.upgrade()
    bus = EventBus()
    service = await Incidents.start(Writer(db, bus, cluster_writing(cfg), clock), cfg, clock)
    return CoreNode(cfg, db, bus, service)


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[CoreNode, CoreNode, StepClock]]:
    clock = StepClock(T0)
    a = await start_node(pg_url, "node-a", clock)
    b = await start_node(pg_url, "node-b", clock)
    yield a, b, clock
    await a.db.dispose()
    await b.db.dispose()


async def verified(db: Database) -> dict[str, int]:
    async with db.session() as s:
        rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
        heads = [Head(h.chain, h.seq, h.hash, h.signature) for h in (await s.scalars(select(ChainHead))).all()]
    counts, broken = verify_chains(rows, heads, KEY.encode())
    assert broken is None, broken
    return counts


def test_cluster_mode_needs_postgresql_and_a_head_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"cluster\.enabled needs PostgreSQL"):
        base_config(f"sqlite+aiosqlite:///{tmp_path}/x.db", None, cluster={"enabled": True, "head_key": KEY})
    with pytest.raises(ValidationError, match=r"cluster\.head_key"):
        base_config("postgresql+asyncpg://x@127.0.0.1/db", None, cluster={"enabled": True})
    cfg = base_config("postgresql+asyncpg://x@127.0.0.1/db", None, cluster={"enabled": True, "head_key": KEY})
    assert cfg.cluster.node()  # the host name when none is configured
    assert KEY not in repr(cfg.cluster)
    assert not base_config(f"sqlite+aiosqlite:///{tmp_path}/x.db", None).cluster.enabled


async def test_two_cores_hammering_the_same_units_keep_each_alarm_once_and_one_incident_per_unit(
        nodes: tuple[CoreNode, CoreNode, StepClock]) -> None:
    """Both cores get every alarm (a redelivery after a failover looks like this), in batches that interleave."""
    a, b, _ = nodes
    alarms = [AlarmIn(f"al-{n:04d}", UNIT_IDS[n % len(UNIT_IDS)], "one_key", "mqtt", T0 + timedelta(seconds=n // 40))
              for n in range(480)]
    batches = [alarms[i:i + 16] for i in range(0, len(alarms), 16)]
    outcomes = await asyncio.gather(*(a.service.intake.ingest(batch) for batch in batches),
                                    *(b.service.intake.ingest(batch) for batch in reversed(batches)))
    counted = Counter(o for out in outcomes for o in out)
    assert counted == {"accepted": 480, "duplicate": 480}
    async with a.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Alarm)) == 480
        incidents = (await s.scalars(select(Incident))).all()
    assert sorted(i.unit_id for i in incidents) == sorted(UNIT_IDS)  # one per unit
    assert all(i.merge_target and i.alarm_count == 40 for i in incidents)
    counts = await verified(a.db)
    assert set(counts) == {"node-a", "node-b"} and sum(counts.values()) == 480 + len(UNITS)


async def test_one_unit_never_gets_two_incidents_in_its_merge_window_across_cores(
        nodes: tuple[CoreNode, CoreNode, StepClock]) -> None:
    a, b, _ = nodes
    for round_ in range(10):
        unit = UNIT_IDS[round_]
        await asyncio.gather(*(node.service.intake.ingest([AlarmIn(f"r{round_}-{node_i}-{k}", unit, "one_key", "mqtt",
                                                                   T0)])
                               for k in range(6) for node_i, node in enumerate((a, b))))
    async with a.db.session() as s:
        per_unit = Counter((await s.scalars(select(Incident.unit_id))).all())
    assert set(per_unit.values()) == {1}
    # closed on one core, the other core's next alarm opens a new incident (the merge target moved with the close)
    first = a.service.core.open_by_unit[UNIT_IDS[0]].incident_id
    await b.service.commands.close(first, "false_alarm", "误报", OFFICER)
    await a.service.intake.ingest([AlarmIn("after-close", UNIT_IDS[0], "one_key", "mqtt", T0)])
    async with a.db.session() as s:
        targets = (await s.scalars(select(Incident).where(Incident.unit_id == UNIT_IDS[0]))).all()
    assert sorted((t.status, bool(t.merge_target)) for t in targets) == [("closed", False), ("new", True)]


async def test_concurrent_transitions_on_two_cores_apply_one_after_the_other(
        nodes: tuple[CoreNode, CoreNode, StepClock]) -> None:
    a, b, clock = nodes
    await a.service.intake.ingest([AlarmIn(f"t-{i}", UNIT_IDS[i], "one_key", "mqtt", T0) for i in range(8)])
    async with a.db.session() as s:
        ids = [i.id for i in (await s.scalars(select(Incident).order_by(Incident.id))).all()]
    clock.advance(31)

    async def ack(inc: int) -> str:
        try:
            await a.service.commands.acknowledge(inc, OFFICER)
        except TransitionError:
            return "refused"
        return "acknowledged"

    results = await asyncio.gather(*(op for inc in ids for op in (
        ack(inc), b.service.commands.close(inc, "resolved", "", OFFICER),
        a.service.commands.escalate(inc, 1), b.service.commands.escalate(inc, 1))))
    async with a.db.session() as s:
        entries = (await s.scalars(select(RecordEntry))).all()
        statuses = set((await s.scalars(select(Incident.status))).all())
    per_incident = Counter((e.incident_id, e.action) for e in entries)
    for inc in ids:
        assert per_incident[(inc, rec.ACKNOWLEDGED)] == 1  # by the acknowledgement or by the close, never both
        assert per_incident[(inc, rec.CLOSED)] == 1
        assert per_incident[(inc, rec.ESCALATED)] <= 1  # escalations fire once (or not: acknowledged first)
    assert statuses == {IncidentStatus.CLOSED}
    escalated = [r for i, r in enumerate(results) if i % 4 >= 2 and r is not None]  # escalate: a view or None
    assert len(escalated) == sum(per_incident[(inc, rec.ESCALATED)] for inc in ids)
    await verified(a.db)


async def test_an_older_device_status_does_not_overwrite_a_newer_one(
        nodes: tuple[CoreNode, CoreNode, StepClock]) -> None:
    a, b, _ = nodes
    await a.service.intake.set_device_status("btn-00", "offline", "no heartbeat", T0 + timedelta(seconds=10), None)
    await b.service.intake.set_device_status("btn-00", "online", "late heartbeat", T0 + timedelta(seconds=5),
                                             T0 + timedelta(seconds=5))
    async with a.db.session() as s:
        dev = await s.get(Device, "btn-00")
    assert dev is not None and (dev.status, dev.status_since) == ("offline", T0 + timedelta(seconds=10))
    assert dev.last_seen == T0 + timedelta(seconds=5)


async def test_a_second_writer_on_one_chain_fails_instead_of_forking_and_verify_sees_a_cut_end(
        nodes: tuple[CoreNode, CoreNode, StepClock]) -> None:
    a, _, _ = nodes
    twin = Writer(a.db, EventBus(), ClusterWriting("node-a", KEY.encode()), a.service.core.clock)
    await twin.load()
    await a.service.core.writer.note("test.note", OFFICER, T0)
    with pytest.raises(ChainForked):
        await twin.note("test.note", OFFICER, T0)  # its head is stale: nothing committed
    with pytest.raises(ChainForked):  # a restart on a chain whose head does not match its entries is refused
        async with a.db.session() as s:
            await s.execute(update(ChainHead).values(seq=ChainHead.seq + 1))
            await s.commit()
        await Writer(a.db, EventBus(), ClusterWriting("node-a", KEY.encode())).load()
    async with a.db.session() as s:
        rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
        heads = [Head(h.chain, h.seq, h.hash, h.signature) for h in (await s.scalars(select(ChainHead))).all()]
    assert [r.chain for r in rows] == ["node-a"]
    _, broken = verify_chains(rows, heads, KEY.encode())
    assert broken is not None and "head signature does not match" in str(broken)
    good = [Head(h.chain, h.seq - 1, h.hash, rec.head_signature(KEY.encode(), h.chain, h.seq - 1, h.hash))
            for h in heads]
    assert verify_chains(rows, good, KEY.encode())[1] is None
    _, cut = verify_chains([], good, KEY.encode())
    assert cut is not None and "entries removed from its end" in str(cut)
    _, unkeyed = verify_chains(rows, good, None)
    assert unkeyed is not None and "head_key" in str(unkeyed)


async def test_an_event_committed_on_one_core_arrives_on_the_others_bus(
        nodes: tuple[CoreNode, CoreNode, StepClock]) -> None:
    a, b, _ = nodes
    fan_b = EventFanout(b.db, b.bus, "node-b", on_remote=b.service.core.follow)
    fan_a = EventFanout(a.db, a.bus, "node-a", on_remote=a.service.core.follow)
    tasks = [asyncio.create_task(f.run()) for f in (fan_a, fan_b)]
    try:
        await asyncio.wait_for(asyncio.gather(fan_a.ready.wait(), fan_b.ready.wait()), 10)
        with b.bus.subscribe([ev.ALARM_RECEIVED, ev.INCIDENT_CREATED]) as on_b, a.bus.subscribe() as on_a:
            await a.service.intake.ingest([AlarmIn("fan-1", "u-03", "one_key", "mqtt", T0)])
            local = [on_a.get_nowait(), on_a.get_nowait()]
            assert [e.remote if e is not None else None for e in local] == [False, False]
            got = [await asyncio.wait_for(on_b.get(), 10) for _ in range(2)]
            assert {e.type for e in got} == {ev.ALARM_RECEIVED, ev.INCIDENT_CREATED} and all(e.remote for e in got)
            incident = next(e for e in got if e.type == ev.INCIDENT_CREATED).payload()
            assert isinstance(incident, ev.IncidentCreated)
            inc_id = int(incident.incident["id"])
            assert b.service.core.open_by_unit["u-03"].incident_id == inc_id  # b's indexes follow
            assert inc_id in b.service.core.unacked
            await b.service.commands.acknowledge(inc_id, OFFICER)
            back = await asyncio.wait_for(on_a.get(), 10)
            assert back.remote and back.data["incident"]["status"] == "acknowledged"
            assert inc_id not in a.service.core.unacked
            assert on_a.get_nowait() is None  # a's own events are not relayed back to it
        assert fan_a.relayed == 1 and fan_b.relayed == 2
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_two_processes_with_one_node_id_are_refused(pg_url: str) -> None:
    db = Database(pg_url)
    await db.upgrade()
    try:
        clock = StepClock(T0)
        await CoreLeaseHolder(db, 30, clock, host="h1", pid=1, name="node:node-a").acquire()
        await CoreLeaseHolder(db, 30, clock, host="h1", pid=1, name="node:node-b").acquire()  # another node
        with pytest.raises(LeaseHeld, match="may not share a cluster node id"):
            await CoreLeaseHolder(db, 30, clock, host="h2", pid=2, name="node:node-a").acquire()
    finally:
        await db.dispose()


HOLDER = """
import asyncio, sys
from dispatch.db import Database
from dispatch.singleton import Singleton

async def main() -> None:
    db = Database(sys.argv[1])
    async def job() -> None:
        print("holding", flush=True)
        await asyncio.Event().wait()
    await Singleton(db, "scheduler", [job], float(sys.argv[2])).run()

asyncio.run(main())
"""


async def test_the_scheduler_is_taken_over_when_its_holder_is_killed(pg_url: str) -> None:
    db = Database(pg_url)
    await db.upgrade()
    ttl = 3.0
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, pg_url, str(ttl), cwd=ROOT,
                                                env={**os.environ, "PYTHONPATH": str(ROOT)},
                                                stdout=subprocess.PIPE)
    started = asyncio.Event()

    async def job() -> None:
        started.set()
        await asyncio.Event().wait()

    here = Singleton(db, "scheduler", [job], ttl, host="another-host")  # no same-host shortcut: waits for expiry
    task: asyncio.Task[None] | None = None
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"holding"
        task = asyncio.create_task(here.run())
        await asyncio.sleep(ttl / 2)  # several of its attempts, all refused while the holder renews
        assert not started.is_set() and here.gains == 0
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed_at = asyncio.get_running_loop().time()
        await asyncio.wait_for(started.wait(), ttl * 3)
        took = asyncio.get_running_loop().time() - killed_at
        assert took <= ttl + here.period + 1  # within the lease period (plus one attempt)
        assert here.gains == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await db.dispose()


async def test_outbox_rows_are_claimed_by_one_node_and_retried_by_another_only_after_the_claim(
        nodes: tuple[CoreNode, CoreNode, StepClock]) -> None:
    a, b, clock = nodes
    await a.service.intake.ingest([AlarmIn(f"ob-{i}", UNIT_IDS[i], "one_key", "mqtt", T0) for i in range(6)])
    async with a.db.session() as s:
        ids = [i.id for i in (await s.scalars(select(Incident))).all()]
    for inc in ids:
        await a.service.commands.dispatch(inc, ["fire", "medical"], OFFICER)
    worker_a = OutboxWorker(a.service.deliveries, a.bus, a.cfg, None, clock)
    worker_b = OutboxWorker(b.service.deliveries, b.bus, b.cfg, None, clock)
    (got_a, _), (got_b, _) = await asyncio.gather(worker_a._due(), worker_b._due())
    claimed_a, claimed_b = {r.id for r in got_a}, {r.id for r in got_b}
    async with a.db.session() as s:
        pending = set((await s.scalars(select(OutboxMessage.id))).all())
    assert len(pending) == 12 and not claimed_a & claimed_b and claimed_a | claimed_b == pending
    assert (await worker_b._due())[0] == []  # every row is claimed: nothing to send twice
    clock.advance(a.cfg.cluster.outbox_claim_s + 1)  # the claimer died without a result: its claims run out
    again = {r.id for r in (await worker_b._due())[0]}
    assert again == pending
    row = next(iter(got_a or got_b))  # one node may have claimed them all: the other found them taken
    await (a if got_a else b).service.deliveries.outbox_result(row.id, clock(), None, confirmed=True)
    async with a.db.session() as s:
        done = await s.get(OutboxMessage, row.id)
    assert done is not None and done.status == "delivered" and done.claimed_by is None


async def test_cores_starting_together_migrate_one_after_the_other(pg_url: str) -> None:
    dbs = [Database(pg_url) for _ in range(3)]
    try:
        await asyncio.gather(*(db.upgrade() for db in dbs))
        async with dbs[0].session() as s:
            assert await s.scalar(select(func.count()).select_from(ChainHead)) == 0
    finally:
        for db in dbs:
            await db.dispose()


async def test_two_running_cores_a_console_on_one_sees_the_others_alarm_and_audit_verify_reads_both_chains(
        pg_url: str, tmp_path: Path) -> None:
    def node_cfg(node: str) -> FirelinkConfig:
        return base_config(pg_url, None, cluster={"enabled": True, "node_id": node, "head_key": KEY,
                                                  "scheduler_lease_s": 3})

    async with running_app(node_cfg("app-a"), mqtt=False) as a, running_app(node_cfg("app-b"), mqtt=False) as b:
        officer = Api(b.url)
        try:
            await officer.login("officer", "officer-pw")
            async with ws_client(officer) as ws:
                await a.app[INCIDENTS].intake.ingest([AlarmIn("app-1", "school-1", "one_key", "mqtt", utcnow())])
                created = await ws.next_matching(lambda e: e["type"] == ev.INCIDENT_CREATED)
                inc_id = created["incident"]["id"]
                await officer.post(f"/api/incidents/{inc_id}/ack")  # on b: its own change, seen on its console
                acked = await ws.next_matching(lambda e: e["type"] == ev.INCIDENT_UPDATED
                                               and e["incident"]["status"] == "acknowledged")
                assert acked["incident"]["id"] == inc_id
        finally:
            await officer.close()
    code, out, err = await run_cli("--config", str(config_yaml(node_cfg("app-a"), tmp_path / "a.yaml")),
                                   "audit", "verify")
    assert code == 0, out + err
    assert "in 2 chains with signed heads (app-a, app-b)" in out



async def test_one_hazard_transition_sent_to_two_cores_at_once_happens_once(pg_url: str) -> None:
    def node_cfg(node: str) -> FirelinkConfig:
        return base_config(pg_url, None, cluster={"enabled": True, "node_id": node, "head_key": KEY})

    async with running_app(node_cfg("hz-a"), mqtt=False) as a, running_app(node_cfg("hz-b"), mqtt=False) as b:
        on_a, on_b = Api(a.url), Api(b.url)
        try:
            for api in (on_a, on_b):
                await api.login("officer", "officer-pw")
            for round_ in range(5):
                h = await on_a.post("/api/hazards", {"unit_id": "school-1", "category": "missing_extinguisher",
                                                     "source": "inspection", "description": f"灭火器 {round_}"})
                answers = await asyncio.gather(*(api.request("POST", f"/api/hazards/{h['id']}/notice", {"days": d})
                                                 for api, d in ((on_a, 3), (on_b, 5))))
                assert sorted(status for status, _ in answers) == [200, 409], answers
        finally:
            await on_a.close()
            await on_b.close()
    db = Database(pg_url)
    try:
        async with db.session() as s:
            notices = Counter((await s.scalars(select(RectificationNotice.hazard_id))).all())
    finally:
        await db.dispose()
    assert len(notices) == 5 and set(notices.values()) == {1}


async def test_cores_starting_together_on_a_fresh_database_sync_the_configuration_in_turn(pg_url: str) -> None:
    dbs = [Database(pg_url) for _ in range(3)]
    await dbs[0].upgrade()

    async def start(i: int, db: Database) -> Incidents:
        cfg = base_config(pg_url, None, cluster={"enabled": True, "node_id": f"st-{i}", "head_key": KEY})
        writer = Writer(db, EventBus(), cluster_writing(cfg))
        async with startup_turn(db, cfg):
            service = await Incidents.start(writer, cfg)
            await ensure_users(writer, list(cfg.users), set(service.core.units), tuple(cfg.agencies),
                               default_org=cfg.station.id)
        return service

    try:
        started = await asyncio.gather(*(start(i, db) for i, db in enumerate(dbs)))
        assert all(set(s.core.units) == {"school-1", "hotel-1"} for s in started)
        async with dbs[0].session() as s:
            assert await s.scalar(select(func.count()).select_from(User)) == len(base_config(pg_url, None).users)
    finally:
        for db in dbs:
            await db.dispose()


async def test_device_silence_is_judged_from_heartbeats_any_core_heard(
        nodes: tuple[CoreNode, CoreNode, StepClock]) -> None:
    a, b, clock = nodes
    on_a, on_b = (DeviceMonitor(n.service.intake, n.cfg, clock) for n in (a, b))
    for monitor in (on_a, on_b):
        await monitor.load()
    since = clock()
    for _ in range(3):  # heartbeats reach core a only (its consumer got them); b runs the watchdog
        clock.advance(40)
        await on_a.handle(DeviceStatusIn("btn-00", "online", "", clock()))
        await on_a.flush()
        await on_b.check_silence_shared(since)
    async with a.db.session() as s:
        dev = await s.get(Device, "btn-00")
    assert dev is not None and dev.status == "online" and dev.last_seen == clock()
    clock.advance(61)  # silent for longer than its 60 s interval, wherever it would have been heard
    await on_b.check_silence_shared(since)
    async with a.db.session() as s:
        dev = await s.get(Device, "btn-00")
    assert dev is not None and dev.status == "offline"
    on_a.follow(Event(ev.DEVICE_UPDATED, {"device": {"id": "btn-00", "status": "offline"}, "unit_id": "u-00"},
                      remote=True))
    clock.advance(1)
    await on_a.handle(DeviceStatusIn("btn-00", "online", "", clock()))  # a knows it is offline: written again
    async with a.db.session() as s:
        dev = await s.get(Device, "btn-00")
    assert dev is not None and dev.status == "online"
