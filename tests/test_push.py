"""WebSocket push respects roles, and the OpenAPI document names every interface route."""

from __future__ import annotations

import asyncio

import pytest

from console.appkeys import INCIDENTS
from console.ws import visible
from dispatch import events as ev
from dispatch.actor import SYSTEM, Actor
from dispatch.events import Event
from ingest.contract import AlarmIn, utcnow
from tests.support import Api, base_config, running_app, ws_client


async def test_each_role_receives_only_what_it_may_see(sqlite_url: str) -> None:
    async with running_app(base_config(sqlite_url, None), mqtt=False) as app:
        clients = {}
        for name in ("officer", "school", "hotel", "brigade", "medic", "assessor", "admin"):
            api = Api(app.url)
            await api.login(name, f"{name}-pw")
            clients[name] = api
        service = app.app[INCIDENTS]
        async with ws_client(clients["officer"]) as officer, ws_client(clients["school"]) as school, \
                ws_client(clients["hotel"]) as hotel, ws_client(clients["brigade"]) as brigade, \
                ws_client(clients["medic"]) as medic, ws_client(clients["assessor"]) as assessor:
            await service.intake.ingest([AlarmIn("p1", "school-1", "one_key", "mqtt", utcnow())])
            inc = service.core.open_by_unit["school-1"].incident_id
            await service.commands.dispatch(inc, ["fire"], SYSTEM)
            await service.commands.add_message(inc, "请切断电源", Actor("officer", "duty_officer"))
            # A marker event at the end: everything before it has been delivered (per-connection order).
            await service.intake.ingest([AlarmIn("p2", "hotel-1", "smoke", "mqtt", utcnow())])

            def created_for(unit: str) -> object:
                return lambda e: e["type"] == "incident.created" and e["incident"]["unit_id"] == unit

            for ws in (officer, assessor):
                await ws.next_matching(created_for("hotel-1"))
                types = {e["type"] for e in ws.seen}
                assert {"incident.created", "dispatch.updated", "incident.message", "alarm.received"} <= types
            await hotel.next_matching(created_for("hotel-1"))
            assert all(e.get("unit_id", e.get("incident", {}).get("unit_id")) == "hotel-1" for e in hotel.seen)
            await school.next_matching(lambda e: e["type"] == "incident.message")
            await brigade.next_matching(lambda e: e["type"] == "dispatch.updated")
            # The medical centre was not dispatched: it must see nothing about this incident.
            with pytest.raises(asyncio.TimeoutError):
                await medic.next_matching(lambda e: True, timeout=0.5)
        for api in clients.values():
            await api.close()


def test_visibility_rules_on_single_events() -> None:
    rejection = Event(ev.ALARM_REJECTED, {"rejection": {"reason": "bad"}})
    assert visible(rejection, Actor("a", "admin")) is not None
    for role in ("duty_officer", "assessor", "unit", "agency"):
        assert visible(rejection, Actor("x", role, unit_id="u1", agency="fire")) is None
    incident = {"id": 1, "unit_id": "u1", "dispatches": [{"agency": "fire"}, {"agency": "medical"}]}
    updated = Event(ev.INCIDENT_UPDATED, {"incident": incident})
    fire_view = visible(updated, Actor("b", "agency", agency="fire"))
    assert fire_view is not None and fire_view["incident"]["dispatches"] == [{"agency": "fire"}]
    assert visible(updated, Actor("u", "unit", unit_id="u2")) is None
    assert visible(Event(ev.DEVICE_UPDATED, {"device": {}, "unit_id": "u1"}), Actor("b", "agency", agency="fire")) \
        is None


async def test_openapi_lists_the_interface(sqlite_url: str) -> None:
    async with running_app(base_config(sqlite_url, None), mqtt=False) as app:
        anon = Api(app.url)
        doc = await anon.get("/api/openapi.json")
        await anon.close()
    paths = doc["paths"]
    for path, method in [("/api/login", "post"), ("/api/units", "get"), ("/api/incidents", "get"),
                         ("/api/incidents/{id}", "get"), ("/api/incidents/{id}/ack", "post"),
                         ("/api/incidents/{id}/dispatch", "post"), ("/api/incidents/{id}/close", "post"),
                         ("/api/dispatches/{id}/ack", "post"), ("/healthz", "get")]:
        assert method in paths[path], path
    body = paths["/api/incidents/{id}/dispatch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"] == "#/components/schemas/DispatchBody"
    assert "agencies" in doc["components"]["schemas"]["DispatchBody"]["properties"]
    assert "duty_officer" in paths["/api/incidents/{id}/ack"]["post"]["description"]


async def test_logout_closes_that_sessions_websocket(sqlite_url: str) -> None:
    async with running_app(base_config(sqlite_url, None), mqtt=False) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        other = Api(app.url)
        await other.login("officer", "officer-pw")
        async with ws_client(officer) as mine, ws_client(other) as theirs:
            await officer.post("/api/logout")
            closed = await mine.ws.receive(timeout=5)
            assert closed.type.name in ("CLOSE", "CLOSED", "CLOSING")
            # Another session of the same user keeps its feed.
            await app.app[INCIDENTS].intake.ingest([AlarmIn("after-logout", "school-1", "one_key", "mqtt", utcnow())])
            await theirs.next_matching(lambda e: e["type"] == "incident.created")
        await officer.close()
        await other.close()
