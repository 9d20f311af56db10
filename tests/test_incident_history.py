"""The incident list as the console reads it: queue order by urgency, the history search and its filters,
closed means closed (no more messages), the unit's earlier-incident count, device liveness, and the CLI
details the console depends on. Real app, SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from console.appkeys import INCIDENTS
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.db import Database
from dispatch.devices import DeviceMonitor
from dispatch.events import EventBus
from dispatch.incidents import Incidents
from dispatch.unit_views import UnitFilter, UnitViews
from dispatch.writer import Writer
from firelink.cli import parser
from ingest.contract import AlarmIn, DeviceStatusIn
from tests.support import Api, Broker, RunningApp, StepClock, base_config, config_yaml, run_cli, running_app, ws_client

T0 = datetime(2026, 12, 31, 23, 50, 0, tzinfo=UTC)  # a year's last day: nothing here depends on today
OFFICER = Actor("officer", "duty_officer")
EXTRA_UNITS = [
    {"id": "market-1", "name": "城东农贸市场", "category": "商场/市场", "lat": 24.83, "lon": 108.266},
    {"id": "shop-1", "name": "新兴木材加工厂", "category": "生产加工企业", "lat": 24.819, "lon": 108.272},
    {"id": "cafe-1", "name": "江边茶楼", "category": "娱乐场所"},
]


def five_units(db_url: str) -> Any:
    cfg = base_config(db_url, None)
    units = [u.model_dump() for u in cfg.units] + EXTRA_UNITS
    # escalation only where a test asks for it (the escalator follows the injected clock)
    return base_config(db_url, None, units=units, escalation={"ack_timeout_s": 3600, "merge_window_s": 300})


@pytest.fixture
def clock() -> StepClock:
    return StepClock(T0)


@pytest.fixture
async def app(db_url: str, clock: StepClock) -> AsyncIterator[RunningApp]:
    async with running_app(five_units(db_url), mqtt=False, clock=clock) as running:
        yield running


async def login(app: RunningApp, users: dict[str, Api], name: str) -> Api:
    api = Api(app.url)
    await api.login(name, f"{name}-pw")
    users[name] = api
    return api


async def raise_alarm(app: RunningApp, unit: str, at: datetime, kind: str = "one_key") -> int:
    service: Incidents = app.app[INCIDENTS]
    await service.intake.ingest([AlarmIn(f"h-{unit}-{at.timestamp()}", unit, kind, "mqtt", at)])
    return service.core.open_by_unit[unit].incident_id


async def test_open_incidents_come_in_urgency_order(app: RunningApp, clock: StepClock, users: dict[str, Api]) -> None:
    """Escalated unacknowledged first, then unacknowledged longest-waiting first, then acknowledged
    (not yet linked out), then dispatched/on scene; newest-first would put the escalated one last."""
    service: Incidents = app.app[INCIDENTS]
    market = await raise_alarm(app, "market-1", T0)
    shop = await raise_alarm(app, "shop-1", T0 + timedelta(seconds=5))
    hotel = await raise_alarm(app, "hotel-1", T0 + timedelta(seconds=10), "smoke")
    school = await raise_alarm(app, "school-1", T0 + timedelta(seconds=20))
    cafe = await raise_alarm(app, "cafe-1", T0 + timedelta(seconds=30), "gas")
    clock.set(T0 + timedelta(seconds=40))
    await service.commands.acknowledge(market, OFFICER)
    await service.commands.dispatch(shop, ["fire"], OFFICER)
    assert await service.commands.escalate(hotel, 1) is not None

    officer = await login(app, users, "officer")
    queue = await officer.get("/api/incidents")
    assert [i["id"] for i in queue] == [hotel, school, cafe, market, shop]
    assert [i["id"] for i in await officer.get("/api/incidents?state=open&limit=2")] == [hotel, school]


async def test_history_is_filtered_by_unit_kind_outcome_and_time(
        app: RunningApp, clock: StepClock, users: dict[str, Api]) -> None:
    service: Incidents = app.app[INCIDENTS]
    made: dict[str, int] = {}
    plan = [  # name, unit, kind, opened (minutes after T0 - 3 days), outcome
        ("s1", "school-1", "one_key", 0, "false_alarm"),
        ("h1", "hotel-1", "smoke", 10, "resolved"),
        ("s2", "school-1", "smoke", 60 * 24, "resolved"),
        ("s3", "school-1", "one_key", 60 * 48, "resolved"),
    ]
    start = T0 - timedelta(days=3)
    for name, unit, kind, minutes, outcome in plan:
        at = start + timedelta(minutes=minutes)
        made[name] = await raise_alarm(app, unit, at, kind)
        clock.set(at + timedelta(minutes=2))
        await service.commands.close(made[name], outcome, f"note {name}", OFFICER)
    still_open = await raise_alarm(app, "school-1", T0)

    officer = await login(app, users, "officer")

    async def ids(**params: Any) -> list[int]:
        return [i["id"] for i in await officer.get("/api/incidents?" + urlencode({"state": "closed", **params}))]

    assert await ids() == [made["s3"], made["s2"], made["h1"], made["s1"]]  # newest first, open ones not in it
    assert await ids(unit_id="school-1") == [made["s3"], made["s2"], made["s1"]]
    assert await ids(unit_id="school-1", kind="one_key") == [made["s3"], made["s1"]]
    assert await ids(outcome="false_alarm") == [made["s1"]]
    day2 = (start + timedelta(days=1)).isoformat()
    day3 = (start + timedelta(days=2)).isoformat()
    assert await ids(since=day2) == [made["s3"], made["s2"]]
    assert await ids(since=day2, until=day3) == [made["s2"]]
    assert await ids(until=day2.replace("+00:00", "Z")) == [made["h1"], made["s1"]]
    assert await ids(limit=1) == [made["s3"]]
    every = [i["id"] for i in await officer.get("/api/incidents?state=all&unit_id=school-1")]
    assert every == [still_open, made["s3"], made["s2"], made["s1"]]
    closed = (await officer.get("/api/incidents?state=closed&unit_id=hotel-1"))[0]
    assert (closed["outcome"], closed["close_note"], closed["unit"]["name"]) == ("resolved", "note h1", "环江宾馆")

    # Bad parameters: a clear 400 naming the field; nothing is listed.
    for query, field in [("kind=fire", "kind"), ("outcome=maybe", "outcome"), ("since=yesterday", "since"),
                         ("since=2026-12-01T00:00:00", "since"), ("limit=0", "limit"), ("limit=5000", "limit"),
                         ("state=sideways", "state"), ("color=red", "color")]:
        status, body = await officer.request("GET", f"/api/incidents?state=closed&{query}")
        assert status == 400, (query, body)
        assert any(d["field"] == field for d in body["details"]), (query, body)
    status, body = await officer.request("GET", "/api/incidents?state=closed&unit_id=ghost")
    assert status == 400 and "unknown unit" in body["error"]
    status, body = await officer.request("GET", "/api/incidents?" + urlencode({"since": day3, "until": day2}))
    assert status == 400 and "until" in body["error"]

    # A unit sees only its own history, whatever it asks for.
    school = await login(app, users, "school")
    assert [i["id"] for i in await school.get("/api/incidents?state=closed&unit_id=hotel-1")] == []
    assert [i["id"] for i in await school.get("/api/incidents?state=closed")] == [made["s3"], made["s2"], made["s1"]]


async def test_no_instructions_on_a_closed_incident(app: RunningApp, clock: StepClock, users: dict[str, Api]) -> None:
    service: Incidents = app.app[INCIDENTS]
    inc = await raise_alarm(app, "school-1", T0)
    officer = await login(app, users, "officer")
    school = await login(app, users, "school")
    await officer.post(f"/api/incidents/{inc}/messages", {"text": "立即疏散"})
    clock.set(T0 + timedelta(minutes=1))
    await service.commands.close(inc, "resolved", "", OFFICER)
    before = await officer.get(f"/api/incidents/{inc}")
    for api in (officer, school):
        status, body = await api.request("POST", f"/api/incidents/{inc}/messages", {"text": "还在吗"})
        assert status == 409 and "closed" in body["error"], body
    after = await officer.get(f"/api/incidents/{inc}")
    assert after["messages"] == before["messages"] and after["timeline"] == before["timeline"]


async def test_past_incidents_count_only_those_before(app: RunningApp, clock: StepClock, users: dict[str, Api]) -> None:
    service: Incidents = app.app[INCIDENTS]
    first = await raise_alarm(app, "school-1", T0)
    await service.commands.close(first, "false_alarm", "", OFFICER)
    await raise_alarm(app, "hotel-1", T0)
    second = await raise_alarm(app, "school-1", T0 + timedelta(minutes=1))
    await service.commands.close(second, "resolved", "", OFFICER)
    third = await raise_alarm(app, "school-1", T0 + timedelta(minutes=2))
    officer = await login(app, users, "officer")
    counts = [(await officer.get(f"/api/incidents/{i}"))["unit_incident_count"] for i in (first, second, third)]
    assert counts == [0, 1, 2]  # a later incident is not this one's history


async def test_a_device_never_heard_from_stays_unknown_and_an_alarm_counts_as_a_heartbeat(db_url: str) -> None:
    cfg = base_config(db_url, None)
    db = Database(db_url)
    await db.upgrade()
    clock = StepClock(T0)
    service = await Incidents.start(Writer(db, EventBus()), cfg, clock)
    monitor = DeviceMonitor(service.intake, cfg, clock)
    await monitor.load()
    sub = service.core.bus.subscribe([ev.DEVICE_UPDATED])
    try:
        clock.set(T0 + timedelta(seconds=600))  # ten heartbeat intervals, and btn-1 never spoke
        await monitor.check_silence()
        assert sub.get_nowait() is None
        _, units = await UnitViews(service.core).search(OFFICER, UnitFilter())
        school = next(u for u in units if u["id"] == "school-1")
        assert [d["status"] for d in school["devices"]] == ["unknown"]

        await monitor.alarm_from("btn-1", clock())  # the button pressed: it is alive
        online = sub.get_nowait()
        assert online is not None and online.data["device"]["status"] == "online"
        await monitor.alarm_from("school-1-cli", clock())  # not a configured device: nothing to say
        assert sub.get_nowait() is None
        clock.set(clock() + timedelta(seconds=61))  # heard once, then silent past its interval: offline
        await monitor.check_silence()
        offline = sub.get_nowait()
        assert offline is not None and offline.data["device"]["status"] == "offline"
        await monitor.handle(DeviceStatusIn("btn-1", "fault", "battery low", clock()))
        assert sub.get_nowait() is not None
        await monitor.alarm_from("btn-1", clock())  # an alarm does not clear a reported fault
        assert sub.get_nowait() is None and monitor.status["btn-1"] == "fault"

        restarted = DeviceMonitor(service.intake, cfg, clock)  # after a restart it still knows btn-1 was heard
        await restarted.load()
        assert "btn-1" in restarted.heard_before
    finally:
        sub.close()
        await db.dispose()


def test_config_is_accepted_before_and_after_the_command() -> None:
    def parse(*argv: str) -> argparse.Namespace:
        return parser().parse_args(list(argv))

    assert parse("run", "--config", "a.yaml").config == "a.yaml"
    assert parse("--config", "a.yaml", "run").config == "a.yaml"  # not overwritten by the command's default
    assert parse("run").config is None
    assert parse("db", "upgrade", "--config", "b.yaml").config == "b.yaml"
    assert parse("press", "school-1", "--config", "c.yaml", "--kind", "smoke").config == "c.yaml"
    assert parse("detect-image", "--config", "d.yaml", "x.jpg").config == "d.yaml"


async def test_cli_press_names_its_device_and_run_takes_config_after_the_command(
        broker: Broker, sqlite_url: str, tmp_path: Path) -> None:
    cfg = base_config(sqlite_url, broker)
    path = config_yaml(cfg, tmp_path / "firelink.yaml")
    async with running_app(cfg) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        try:
            async with ws_client(officer) as ws:
                code, out, err = await run_cli("press", "school-1", "--config", str(path))
                assert code == 0, err
                assert json.loads(out)["device_id"] == "school-1-cli"
                created = await ws.next_matching(lambda e: e["type"] == "incident.created")
            detail = await officer.get(f"/api/incidents/{created['incident']['id']}")
            assert detail["alarms"][0]["device_id"] == "school-1-cli"
        finally:
            await officer.close()
    bad = tmp_path / "missing.yaml"
    code, _out, err = await run_cli("run", "--config", str(bad))
    assert code == 2 and str(bad) in err  # `run --config FILE` reads FILE (here: reports it missing)
