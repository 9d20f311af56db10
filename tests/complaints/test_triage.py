"""Triage (docs/complaints.md): every report lands in its station's queue (by unit, else by the nearest unit within
the routing distance, else the default station), is accepted into a hazard of that station or rejected with a
reason, each step a record entry; another station's officer neither sees nor triages it; assistants see only their
own reports and get 403 on every route not theirs; a new report is pushed live to the station's consoles only."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import aiohttp
from sqlalchemy import select

from console.appkeys import DB
from console.web import console_routes
from console.ws import frame, visible
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.events import Event
from dispatch.models import RecordEntry
from tests.complaints.conftest import jpeg_with_gps, login, post_form
from tests.support import Api, RunningApp, ws_client

PATH_VALUES = {"id": "1", "incident_id": "1", "unit_id": "school-1", "camera_id": "c1", "zone_id": "z1",
               "mask_id": "m1", "folder": "incident-1", "name": "a.jpg", "receipt": "23456-78923",
               "unit_type": "school"}


async def report(app: RunningApp, **body: Any) -> str:
    async with aiohttp.ClientSession() as http, http.post(app.url + "/api/public/complaints", json=body) as resp:
        assert resp.status == 201, await resp.text()
        receipt: str = (await resp.json())["receipt"]
        return receipt


async def status_of(app: RunningApp, receipt: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{app.url}/api/public/complaints/{receipt}") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


def find(queue: list[dict[str, Any]], receipt: str) -> dict[str, Any]:
    return next(c for c in queue if c["receipt"] == receipt)


async def test_reports_route_to_the_station_by_unit_then_location_then_default(app: RunningApp,
                                                                               users: dict[str, Api]) -> None:
    by_unit = await report(app, description="市场消防栓被遮挡", unit_id="east-market")
    near_east = await report(app, description="东兴街有人堵了通道", lat=24.9004, lon=108.4005)  # ≈ 50 m from it
    far = await report(app, description="山里仓库堆放柴油", lat=24.70, lon=108.10)  # no unit within 1 km
    no_position = await report(app, description="某小区楼道堆放杂物", address="思恩镇某小区")
    near_school = await report(app, description="学校旁边电线乱拉", lat=24.8205, lon=108.2502)
    east = await login(app, users, "east")
    officer = await login(app, users, "officer")
    east_queue = await east.get("/api/complaints")
    test_queue = await officer.get("/api/complaints")
    assert {c["receipt"] for c in east_queue} == {by_unit, near_east}
    assert {c["receipt"] for c in test_queue} == {far, no_position, near_school}
    routed = {c["receipt"]: (c["station_id"], c["routed_by"]) for c in [*east_queue, *test_queue]}
    assert routed == {by_unit: ("st-east", "unit"), near_east: ("st-east", "location"),
                      far: ("st-test", "default"), no_position: ("st-test", "default"),
                      near_school: ("st-test", "location")}
    assert find(test_queue, near_school)["unit_id"] is None  # routed by place: the report still names no unit


async def test_accept_makes_a_hazard_of_the_station_and_reject_needs_a_reason(app: RunningApp,
                                                                              users: dict[str, Api]) -> None:
    first = await report(app, description="安全出口被锁", unit_id="school-1")
    second = await report(app, description="疑似恶作剧举报内容", lat=24.70, lon=108.10)
    third = await report(app, description="无单位的位置举报", lat=24.70, lon=108.10)
    officer = await login(app, users, "officer")
    queue = await officer.get("/api/complaints")
    a, b, c = (find(queue, r)["id"] for r in (first, second, third))

    done = await officer.post(f"/api/complaints/{a}/accept", {"category": "blocked_exit", "severity": "major"})
    hazard = await officer.get(f"/api/hazards/{done['hazard']['id']}")
    assert (hazard["unit_id"], hazard["category"], hazard["severity"], hazard["source"], hazard["found_by"]) == \
        ("school-1", "blocked_exit", "major", "complaint", "officer")
    assert hazard["description"] == "安全出口被锁"
    status, body = await officer.request("POST", f"/api/complaints/{a}/accept", {"category": "blocked_exit"})
    assert status == 409, body  # triaged once
    status, body = await officer.request("POST", f"/api/complaints/{a}/reject", {"reason": "重复"})
    assert status == 409, body

    for reason in ("", " ", "x"):
        status, body = await officer.request("POST", f"/api/complaints/{b}/reject", {"reason": reason})
        assert status == 400, (reason, body)
    status, body = await officer.request("POST", f"/api/complaints/{b}/reject", {})
    assert status == 400
    assert (await status_of(app, second))["status"] == "received"  # nothing changed
    await officer.post(f"/api/complaints/{b}/reject", {"reason": "现场核查无此情况"})
    assert await status_of(app, second) == {"receipt": second, "status": "rejected",
                                            "received_at": (await status_of(app, second))["received_at"],
                                            "reason": "现场核查无此情况"}

    # a report without a unit: the officer names the unit; a category or unit that does not exist is a 400
    status, body = await officer.request("POST", f"/api/complaints/{c}/accept", {"category": "blocked_exit"})
    assert status == 400 and "unit" in body["error"], body
    status, body = await officer.request("POST", f"/api/complaints/{c}/accept",
                                         {"category": "no-such", "unit_id": "hotel-1"})
    assert status == 400, body
    assert (await status_of(app, third))["status"] == "received"  # the failed accept left nothing behind
    hazards_before = len(await officer.get("/api/hazards?status=all"))
    assert hazards_before == 1
    done = await officer.post(f"/api/complaints/{c}/accept", {"category": "corridor_storage", "unit_id": "hotel-1",
                                                             "description": "宾馆走道堆放杂物"})
    assert (done["hazard"]["unit_id"], done["hazard"]["description"]) == ("hotel-1", "宾馆走道堆放杂物")

    async with app.app[DB].session() as s:
        entries = (await s.scalars(select(RecordEntry).where(RecordEntry.action.like("complaint.%"))
                                   .order_by(RecordEntry.id))).all()
    assert [(e.action, e.actor, e.data["complaint_id"]) for e in entries] == [
        ("complaint.received", "public", a), ("complaint.received", "public", b), ("complaint.received", "public", c),
        ("complaint.accepted", "officer", a), ("complaint.rejected", "officer", b),
        ("complaint.accepted", "officer", c)]
    assert all(e.hazard_id is None and e.incident_id is None for e in entries)  # not on the hazard's timeline
    assert entries[3].data["hazard_id"] == hazard["id"] and entries[4].data["reason"] == "现场核查无此情况"


async def test_another_stations_officer_neither_sees_nor_triages_it(app: RunningApp, users: dict[str, Api]) -> None:
    async with aiohttp.ClientSession() as http:
        status, body, _ = await post_form(http, app.url + "/api/public/complaints",
                                          {"description": "市场通道堆满货物", "unit_id": "east-market"},
                                          jpeg_with_gps())
        assert status == 201
    receipt = body["receipt"]
    east = await login(app, users, "east")
    officer = await login(app, users, "officer")
    cid = find(await east.get("/api/complaints"), receipt)["id"]
    for state in ("new", "all"):
        assert await officer.get(f"/api/complaints?state={state}") == []
    for method, path, payload in [("GET", f"/api/complaints/{cid}", None),
                                  ("GET", f"/api/complaints/{cid}/photo", None),
                                  ("POST", f"/api/complaints/{cid}/accept", {"category": "corridor_storage"}),
                                  ("POST", f"/api/complaints/{cid}/reject", {"reason": "不归我管"})]:
        status, answer = await officer.request(method, path, payload)
        assert status == 403, (method, path, status, answer)
    # nor can it put the hazard on a unit of its own station through another's report, or the other way round
    mine = await report(app, description="学校消防门损坏", unit_id="school-1")
    mine_id = find(await officer.get("/api/complaints"), mine)["id"]
    status, answer = await officer.request("POST", f"/api/complaints/{mine_id}/accept",
                                           {"category": "corridor_storage", "unit_id": "east-market"})
    assert status == 403, answer
    done = await east.post(f"/api/complaints/{cid}/accept", {"category": "corridor_storage"})
    assert done["hazard"]["unit_id"] == "east-market"
    assert (await status_of(app, receipt))["status"] == "accepted"


async def test_assistants_file_and_see_only_their_own_reports_and_get_403_elsewhere(
        app: RunningApp, users: dict[str, Api]) -> None:
    grid = await login(app, users, "grid")
    grid2 = await login(app, users, "grid2")
    status, mine = await grid.request("POST", "/api/complaints", {"description": "村里柴房靠近灶台",
                                                                  "lat": 24.8202, "lon": 108.2503})
    assert status == 201 and RE_RECEIPT.fullmatch(mine["receipt"]), mine
    async with grid2.http.post(app.url + "/api/complaints", data=_form("邻村仓库私拉电线"),
                               headers={"X-CSRF-Token": grid2.csrf or ""}) as resp:
        assert resp.status == 201, await resp.text()
        theirs = await resp.json()
    status, _ = await grid.request("POST", "/api/complaints", {"description": "无令牌提交"}, csrf=False)
    assert status == 403  # a logged-in filing needs the CSRF token
    await report(app, description="匿名群众举报")

    own = await grid.get("/api/complaints")
    assert [c["receipt"] for c in own] == [mine["receipt"]]
    assert set(own[0]) == {"receipt", "status", "received_at", "id", "description", "address", "lat", "lon",
                           "unit_id", "unit_name", "facility"}  # no officer, phone or routing details
    assert own[0]["status"] == "received"
    assert (await grid.get(f"/api/complaints/{mine['id']}"))["receipt"] == mine["receipt"]
    status, _ = await grid.request("GET", f"/api/complaints/{theirs['id']}")
    assert status == 403

    officer = await login(app, users, "officer")
    queue = await officer.get("/api/complaints")
    filed = find(queue, mine["receipt"])
    assert (filed["source"], filed["reporter"]) == ("assistant", "grid")
    await officer.post(f"/api/complaints/{filed['id']}/reject", {"reason": "已由村委会处理"})
    assert (await grid.get("/api/complaints"))[0]["status"] == "rejected"
    assert (await grid.get("/api/complaints"))[0]["reason"] == "已由村委会处理"

    # every route of the table that is not the assistant's answers 403 (none 200, none 404 first)
    checked = 0
    for route in console_routes():
        if route.roles is None or "assistant" in route.roles:
            continue
        path = re.sub(r"\{([a-z_]+)(?::[^}]*)?\}", lambda m: PATH_VALUES[m[1]], route.path)
        status, answer = await grid.request(route.method, path, {} if route.method != "GET" else None)
        assert status == 403, (route.method, route.path, status, answer)
        checked += 1
    assert checked > 50
    for method, path in [("POST", f"/api/complaints/{theirs['id']}/accept"),
                         ("POST", f"/api/complaints/{theirs['id']}/reject")]:
        assert (await grid.request(method, path, {"category": "x", "reason": "yy"}))[0] == 403


RE_RECEIPT = re.compile(r"[2-9A-Z]{5}-[2-9A-Z]{5}")


def _form(description: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("description", description)
    form.add_field("photo", jpeg_with_gps(), filename="a.jpg", content_type="image/jpeg")
    return form


async def test_a_new_report_is_pushed_live_to_its_stations_consoles_only(app: RunningApp,
                                                                        users: dict[str, Api]) -> None:
    officer = await login(app, users, "officer")
    east = await login(app, users, "east")
    async with ws_client(officer) as test_ws, ws_client(east) as east_ws:
        receipt = await report(app, description="学校操场堆放易燃物", unit_id="school-1")
        event = await test_ws.next_matching(lambda e: e["type"] == "complaint.received")
        assert (event["complaint"]["receipt"], event["station_id"]) == (receipt, "st-test")
        east_receipt = await report(app, description="市场里乱拉电线", unit_id="east-market")
        # the first report event the east station's console gets is its own: the other one was never sent to it
        first = await east_ws.next_matching(lambda e: e["type"].startswith("complaint."))
        assert first["complaint"]["receipt"] == east_receipt
        await officer.post(f"/api/complaints/{event['complaint']['id']}/reject", {"reason": "已整改"})
        updated = await test_ws.next_matching(lambda e: e["type"] == "complaint.updated")
        assert (updated["complaint"]["status"], updated["complaint"]["reject_reason"]) == ("rejected", "已整改")
        assert all(e["complaint"]["receipt"] != east_receipt for e in test_ws.seen if "complaint" in e)


def test_a_report_event_is_shown_only_within_the_station_scope() -> None:
    event = Event.of(ev.ComplaintReceived(complaint={"id": 1, "receipt": "23456-78923"}, station_id="st-east"))
    east, test, both = frozenset({"st-east"}), frozenset({"st-test"}), frozenset({"st-east", "st-test"})
    officer, assessor = Actor("o", "duty_officer"), Actor("a", "assessor")
    assert visible(event, replace(officer, stations=east)) == {"type": "complaint.received", **event.data}
    assert visible(event, replace(assessor, stations=both)) is not None
    assert frame(event, replace(officer, stations=both)) is not None
    assert visible(event, replace(officer, stations=test)) is None
    assert frame(event, replace(officer, stations=test)) is None
    assert visible(event, officer) is None  # no stations on the caller: nobody is told
    for who in (Actor("u", "unit", unit_id="school-1"), Actor("f", "agency", agency="fire"),
                Actor("g", "assistant")):
        assert visible(event, replace(who, stations=east)) is None
