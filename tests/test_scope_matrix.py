"""Three levels of command: every role at every level against every readable endpoint of the route table.

A city with two brigades and three stations (b1: s1, s2; b2: s3), one unit in each station with an incident, a
hazard and a rectification notice. Each principal — the station's roles at s1, an officer of s3, brigade reviewers
of b1 and b2, the city supervisor, the admin, a unit, the overseeing fire brigade (org b1) and the medical centre —
asks every GET route of `console_routes()` about every unit's objects and every list: an object outside its
subtree is refused (403/404) and no list mentions a unit outside it. The routes come from the table, so a new
route is checked the day it is added (or must say here why it is not).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from pypdf import PdfReader

from console.appkeys import INCIDENTS
from console.web import console_routes
from ingest.contract import AlarmIn, utcnow
from tests.inspections.support import inspect
from tests.support import Api, RunningApp, base_config, running_app, ws_client

ORGS = [
    {"id": "city", "name": "市公安局", "level": "city"},
    {"id": "b1", "name": "一大队", "level": "brigade", "parent": "city"},
    {"id": "b2", "name": "二大队", "level": "brigade", "parent": "city"},
    {"id": "s1", "name": "一所", "level": "station", "parent": "b1"},
    {"id": "s2", "name": "二所", "level": "station", "parent": "b1"},
    {"id": "s3", "name": "三所", "level": "station", "parent": "b2"},
]
UNITS = {"zzunit-1": "s1", "zzunit-2": "s2", "zzunit-3": "s3"}
STATIONS_UNDER = {"city": {"s1", "s2", "s3"}, "b1": {"s1", "s2"}, "b2": {"s3"}, "s1": {"s1"}, "s2": {"s2"},
                  "s3": {"s3"}}


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    org: str | None = None
    unit_id: str | None = None
    agency: str | None = None

    def sees(self, unit_id: str) -> bool:
        """The expectation, written independently of dispatch.scope."""
        if self.role == "unit":
            return unit_id == self.unit_id
        if (self.role == "agency" and self.agency != "fire") or self.role == "assistant":
            return False  # the medical centre oversees nothing; an assistant sees only its own reports
        return UNITS[unit_id] in STATIONS_UNDER[self.org or "city"]


PRINCIPALS = [
    Principal("s1-officer", "duty_officer", "s1"),
    Principal("s1-chief", "station_chief", "s1"),
    Principal("s1-deputy", "deputy_chief", "s1"),
    Principal("s1-community", "community_officer", "s1"),
    Principal("s1-assessor", "assessor", "s1"),
    Principal("s3-officer", "duty_officer", "s3"),
    Principal("b1-reviewer", "brigade_reviewer", "b1"),
    Principal("b2-reviewer", "brigade_reviewer", "b2"),
    Principal("city-supervisor", "city_supervisor", "city"),
    Principal("city-admin", "admin", "city"),
    Principal("unit-1", "unit", unit_id="zzunit-1"),
    Principal("fire-b1", "agency", "b1", agency="fire"),
    Principal("medic", "agency", agency="medical"),
    Principal("grid-1", "assistant", "s1"),
]

# GET routes not asked about a unit's objects here, and why.
NOT_ASKED = {
    "/healthz": "public health", "/api/openapi.json": "public API document", "/ws": "tests/test_ws_events.py "
    "(scoped events: test_scoped_staff_get_only_their_stations_events below)",
    "/api/me": "the caller itself", "/api/hazards/config": "configuration, no unit data",
    "/api/taxonomy": "public configuration (unit classes and types, facilities)",
    "/api/checklists/{unit_type}": "configuration (a unit type's checklist), no unit data",
    "/api/public/units/{unit_id}": "public by design: the name of the unit a QR code names, for the report page",
    "/api/public/complaints/{receipt}": "public by design: a report's status by its receipt (tests/complaints)",
    "/api/admin/rejections": "admin only (refused input of any unit: the whole tree's admin)",
}
# Path parameters → which object of a unit fills them ("unit_id", or the key of an object made per unit).
PARAM_OBJECT = {
    "/api/incidents/{id}": "incident", "/api/incidents/{incident_id}": "incident", "/api/hazards/{id}": "hazard",
    "/api/notices/{id}": "notice", "/api/units/{unit_id}": "unit_id", "/api/inspections/{id}": "inspection",
    "/api/complaints/{id}": "complaint",
}
# Routes whose objects this test does not make (penalties, referrals, ...): they are asked with the id 1, which
# exists for no unit here, so they must answer 403/404 for everyone; their scope check is the hazard's
# (dispatch.hazard_rows.get_hazard with the actor), exercised through the notice and hazard routes.
NO_OBJECT_PREFIXES = ("/api/penalties/", "/api/referrals/", "/api/recheck-opinions/", "/api/penalty-notices/",
                      "/api/evidence/", "/api/cameras/", "/api/dispatches/", "/api/inspection-photos/")


@pytest.fixture
async def city(db_url: str) -> AsyncIterator[tuple[RunningApp, dict[str, dict[str, int]]]]:
    users = [{"username": p.name, "password": f"{p.name}-pw", "role": p.role,
              **({"org": p.org} if p.org else {}), **({"unit_id": p.unit_id} if p.unit_id else {}),
              **({"agency": p.agency} if p.agency else {})} for p in PRINCIPALS]
    units = [{"id": uid, "name": f"单位{uid[-1]}号ZZ", "category": "学校", "address": f"路{uid[-1]}号",
              "lat": 24.8 + int(uid[-1]) / 100, "lon": 108.2, "station": st} for uid, st in UNITS.items()]
    cfg = base_config(db_url, None, organisations=ORGS, station={"id": "s1", "name": "一所"}, units=units,
                      users=users)
    fire = cfg.agencies["fire"].model_copy(update={"oversight": True})  # the fire-rescue brigade oversees b1
    cfg = cfg.model_copy(update={"agencies": {**cfg.agencies, "fire": fire}})
    async with running_app(cfg, mqtt=False) as app:
        service = app.app[INCIDENTS]
        admin = Api(app.url)
        await admin.login("city-admin", "city-admin-pw")
        category = (await admin.get("/api/hazards/config"))["categories"][0]["key"]
        objects: dict[str, dict[str, int]] = {}
        public = Api(app.url)
        for uid in UNITS:  # a member of the public reports a hazard at each unit (from its QR code)
            status, answer = await public.request("POST", "/api/public/complaints",
                                                  {"description": f"消防通道被堵 {uid}", "unit_id": uid})
            assert status == 201, answer
        await public.close()
        complaints = {c["unit_id"]: c["id"] for c in await admin.get("/api/complaints")}
        for uid in UNITS:
            await service.intake.ingest([AlarmIn(f"m-{uid}", uid, "one_key", "mqtt", utcnow())])
            hazard = await admin.request("POST", "/api/hazards", {"unit_id": uid, "category": category,
                                                                  "description": f"隐患{uid}"})
            assert hazard[0] == 200, hazard
            notice = await admin.post(f"/api/hazards/{hazard[1]['id']}/notice", {"days": 7})
            inspection = await inspect(admin, uid)
            objects[uid] = {"incident": service.core.open_by_unit[uid].incident_id, "hazard": hazard[1]["id"],
                            "notice": notice["notice"]["id"] if "notice" in notice else notice["id"],
                            "inspection": inspection["id"], "complaint": complaints[uid]}
        await admin.close()
        yield app, objects


async def fetch(api: Api, path: str) -> tuple[int, Any]:
    """GET as the page would; a PDF's text (pypdf) or an image's absence of text stands for its body."""
    async with api.http.get(api.base + path) as resp:
        data = await resp.read()
        ctype = resp.headers.get("Content-Type", "")
    if ctype.startswith("application/pdf"):
        return resp.status, "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    if ctype.startswith(("image/", "video/", "multipart/")):
        return resp.status, ""
    text = data.decode("utf-8", errors="replace")
    try:
        return resp.status, json.loads(text)
    except json.JSONDecodeError:
        return resp.status, text


def _get_routes() -> list[Any]:
    return [r for r in console_routes() if r.method == "GET"]


def _leaks(body: Any, who: Principal, asked: str = "") -> list[str]:
    """The units outside `who`'s subtree the answer names (by id or name); an error may repeat the id asked."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return [uid for uid in UNITS if not who.sees(uid)
            and ((uid in text and uid != asked) or f"单位{uid[-1]}号ZZ" in text)]


async def test_no_route_shows_a_unit_outside_the_callers_subtree(
        city: tuple[RunningApp, dict[str, dict[str, int]]]) -> None:
    app, objects = city
    now = utcnow()
    period = f"?from={(now - timedelta(days=2)).date().isoformat()}&to={(now + timedelta(days=1)).date().isoformat()}"
    lists = {"/api/kpi": period, "/api/kpi.csv": period, "/api/kpi/report.pdf": period, "/api/kpi/stations": period,
             "/api/incidents": "?state=all", "/api/hazards": "?status=all", "/api/search": "?q=ZZ"}
    checked = 0
    for who in PRINCIPALS:
        api = Api(app.url)
        await api.login(who.name, f"{who.name}-pw")
        for route in _get_routes():
            path = route.path
            if path in NOT_ASKED:
                continue
            assert route.roles is not None, f"{path} is public: say why in NOT_ASKED"
            params = re.findall(r"\{([A-Za-z_]+)(?::[^}]*)?\}", path)
            allowed_role = who.role in route.roles
            if not params:
                status, body = await fetch(api, path + lists.get(path, ""))
                if not allowed_role:
                    assert status in (401, 403), (who.name, path, status)
                    continue
                assert status < 500, (who.name, path, status, body)
                assert not _leaks(body, who), (who.name, path, _leaks(body, who))
                checked += 1
                continue
            template = re.sub(r"\{([A-Za-z_]+)(?::[^}]*)?\}", "{}", path)
            kind = next((v for k, v in PARAM_OBJECT.items() if path.startswith(k)), None)
            if kind is None:
                assert path.startswith(NO_OBJECT_PREFIXES), f"{path}: say which object fills it (PARAM_OBJECT)"
                status, body = await fetch(api, template.format(*(["1"] * len(params))))
                assert status in (400, 401, 403, 404, 503), (who.name, path, status, body)
                continue
            for uid in UNITS:
                value = uid if kind == "unit_id" else str(objects[uid][kind])
                status, body = await fetch(api, template.format(value, *(["x"] * (len(params) - 1))))
                visible = allowed_role and who.sees(uid) and not (who.role == "agency" and kind == "incident")
                if visible:
                    assert status < 500 and status not in (401, 403), (who.name, path, uid, status, body)
                else:
                    assert status in (401, 403, 404), (who.name, path, uid, status, body)
                    assert not _leaks(body, who, uid), (who.name, path, uid, body)
                checked += 1
        await api.close()
    assert checked > 100


async def test_station_ranking_follows_the_level(city: tuple[RunningApp, dict[str, dict[str, int]]]) -> None:
    app, _ = city
    now = utcnow()
    period = f"?from={(now - timedelta(days=2)).date().isoformat()}&to={(now + timedelta(days=1)).date().isoformat()}"
    ranks = {}
    for name in ("city-supervisor", "b1-reviewer", "s1-chief"):
        api = Api(app.url)
        await api.login(name, f"{name}-pw")
        ranks[name] = await api.get("/api/kpi/stations" + period)
        await api.close()
    city_view = ranks["city-supervisor"]
    assert [s["id"] for s in sorted(city_view["stations"], key=lambda s: s["id"])] == ["s1", "s2", "s3"]
    assert sorted(r["rank"] for r in city_view["stations"]) == [1, 2, 3]
    assert {b["id"] for b in city_view["brigades"]} == {"b1", "b2"}
    assert {s["id"] for s in ranks["b1-reviewer"]["stations"]} == {"s1", "s2"}
    assert [b["id"] for b in ranks["b1-reviewer"]["brigades"]] == ["b1"]
    assert [s["id"] for s in ranks["s1-chief"]["stations"]] == ["s1"] and not ranks["s1-chief"]["brigades"]
    # each station's figures are its own unit's: one incident, one hazard, one notice each
    for row in city_view["stations"]:
        assert row["headline"]["incidents"] == 1 and row["headline"]["hazards_found"] == 1, row


async def test_heat_map_totals_by_level(city: tuple[RunningApp, dict[str, dict[str, int]]]) -> None:
    app, _ = city
    api = Api(app.url)
    await api.login("city-supervisor", "city-supervisor-pw")
    heat = await api.get("/api/hazards/map")
    await api.close()
    assert {u["unit_id"] for u in heat["units"]} == set(UNITS)
    assert all(u["lat"] is not None and u["open"] == 1 for u in heat["units"])
    totals = {o["id"]: o["open"] for o in heat["organisations"]}
    assert totals == {"city": 3, "b1": 2, "b2": 1, "s1": 1, "s2": 1, "s3": 1}


async def test_officers_cannot_act_on_another_stations_cases(
        city: tuple[RunningApp, dict[str, dict[str, int]]]) -> None:
    app, objects = city
    api = Api(app.url)
    await api.login("s1-officer", "s1-officer-pw")
    foreign = objects["zzunit-3"]
    for path, body in ((f"/api/incidents/{foreign['incident']}/ack", None),
                       (f"/api/incidents/{foreign['incident']}/close", {"outcome": "false_alarm", "note": "x"}),
                       (f"/api/incidents/{foreign['incident']}/messages", {"text": "切断电源"}),
                       (f"/api/hazards/{foreign['hazard']}/recheck", {"rectified": True, "note": "x"}),
                       (f"/api/hazards/{foreign['hazard']}/withdraw", {"note": "x"})):
        status, answer = await api.request("POST", path, body)
        assert status == 403, (path, status, answer)
    own = objects["zzunit-1"]
    assert (await api.request("POST", f"/api/incidents/{own['incident']}/ack"))[0] == 200
    # the brigade reviewer reads b1's work but acts on nothing
    reviewer = Api(app.url)
    await reviewer.login("b1-reviewer", "b1-reviewer-pw")
    assert (await reviewer.request("GET", f"/api/hazards/{objects['zzunit-2']['hazard']}"))[0] == 200
    assert (await reviewer.request("POST", f"/api/incidents/{objects['zzunit-2']['incident']}/ack"))[0] == 403
    await reviewer.close()
    await api.close()


async def test_scoped_staff_get_only_their_stations_events(
        city: tuple[RunningApp, dict[str, dict[str, int]]]) -> None:
    """A new alarm at s3 reaches the s3 officer's and the city supervisor's live feed, not s1's; the s1 officer's
    feed still carries s1's next alarm (so the silence is the scope, not a dead socket)."""
    app, _ = city
    service = app.app[INCIDENTS]
    apis = {}
    for name in ("s1-officer", "s3-officer", "city-supervisor"):
        apis[name] = Api(app.url)
        await apis[name].login(name, f"{name}-pw")
    async with ws_client(apis["s1-officer"]) as s1, ws_client(apis["s3-officer"]) as s3, \
            ws_client(apis["city-supervisor"]) as sup:
        await service.intake.ingest([AlarmIn("m-again-3", "zzunit-3", "smoke", "mqtt", utcnow())])
        about_3 = lambda e: e["type"] == "alarm.received" and e.get("unit_id") == "zzunit-3"  # noqa: E731
        await s3.next_matching(about_3)
        await sup.next_matching(about_3)
        await service.intake.ingest([AlarmIn("m-again-1", "zzunit-1", "smoke", "mqtt", utcnow())])
        first = await s1.next_matching(lambda e: e["type"] == "alarm.received")
        assert first["unit_id"] == "zzunit-1"
        assert not [e for e in s1.seen if "zzunit-3" in json.dumps(e)]
    for api in apis.values():
        await api.close()


async def test_brigade_reviews_its_stations_filed_documents(
        city: tuple[RunningApp, dict[str, dict[str, int]]]) -> None:
    from sqlalchemy import select

    from console.appkeys import DB
    from dispatch.models import RecordEntry
    from dispatch.records import verify

    app, objects = city
    b1 = Api(app.url)
    await b1.login("b1-reviewer", "b1-reviewer-pw")
    filed = await b1.get("/api/documents?pending=true")
    assert {d["unit_id"] for d in filed} == {"zzunit-1", "zzunit-2"}  # b1's stations' documents, not s3's
    assert {d["kind"] for d in filed} == {"notice", "inspection"}
    notice = next(d for d in filed if d["unit_id"] == "zzunit-1" and d["kind"] == "notice")
    assert notice["kind"] == "notice" and notice["pdf"] == f"/api/notices/{objects['zzunit-1']['notice']}/pdf"
    body = {"kind": "notice", "id": notice["id"], "verdict": "returned", "note": ""}
    status, answer = await b1.request("POST", "/api/documents/review", body)
    assert status == 400 and "note" in answer["error"]
    body["note"] = "整改期限过长，应为3日"
    status, answer = await b1.request("POST", "/api/documents/review", body)
    assert status == 200 and answer["verdict"] == "returned" and answer["pdf_sha256"] == notice["pdf_sha256"]
    left = await b1.get("/api/documents?pending=true")
    assert len(left) == len(filed) - 1 and notice["id"] not in [d["id"] for d in left if d["kind"] == "notice"]
    reviewed = next(d for d in await b1.get("/api/documents") if d["kind"] == "notice" and d["id"] == notice["id"])
    assert reviewed["review"]["note"] == "整改期限过长，应为3日" and reviewed["review"]["by"] == "b1-reviewer"
    for name in ("b2-reviewer", "s1-officer"):  # another brigade's reviewer; a station officer may not review
        other = Api(app.url)
        await other.login(name, f"{name}-pw")
        status, _ = await other.request("POST", "/api/documents/review", {**body, "verdict": "approved"})
        assert status == 403, name
        await other.close()
    await b1.close()
    async with app.app[DB].session() as s:
        entries = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
    assert [e.data["verdict"] for e in entries if e.action == "document.reviewed"] == ["returned"]
    assert verify(entries) is None
