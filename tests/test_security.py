"""Every role boundary: who may see and do what. Each check could fail if a route forgot its roles."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from console.appkeys import DB, INCIDENTS
from dispatch.actor import SYSTEM
from dispatch.models import User
from ingest.contract import AlarmIn, utcnow
from tests.support import AGENCY_TOKEN, Api, RunningApp, base_config, running_app

PASSWORDS = {"admin": "admin-pw", "officer": "officer-pw", "school": "school-pw", "hotel": "hotel-pw",
             "brigade": "brigade-pw", "medic": "medic-pw", "assessor": "assessor-pw"}


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[RunningApp]:
    async with running_app(base_config(db_url, None), mqtt=False) as running:
        yield running


async def as_user(app: RunningApp, name: str) -> Api:
    api = Api(app.url)
    await api.login(name, PASSWORDS[name])
    return api


async def open_incident(app: RunningApp, unit_id: str = "school-1") -> int:
    service = app.app[INCIDENTS]
    await service.intake.ingest([AlarmIn(f"t-{unit_id}-{utcnow().timestamp()}", unit_id, "one_key", "mqtt", utcnow())])
    return service.core.open_by_unit[unit_id].incident_id


PROTECTED = [
    ("GET", "/api/units"), ("GET", "/api/incidents"), ("GET", "/api/incidents/1"),
    ("POST", "/api/incidents/1/ack"), ("POST", "/api/incidents/1/dispatch"), ("POST", "/api/incidents/1/close"),
    ("POST", "/api/incidents/1/on_scene"), ("POST", "/api/incidents/1/messages"), ("GET", "/api/dispatches"),
    ("POST", "/api/dispatches/1/ack"), ("POST", "/api/units/school-1/alarm"), ("GET", "/api/admin/rejections"),
    ("GET", "/api/me"),
]


async def test_anonymous_gets_401_everywhere_but_login_health_and_openapi(app: RunningApp) -> None:
    anon = Api(app.url)
    for method, path in PROTECTED:
        status, body = await anon.request(method, path, {})
        assert status == 401, (method, path, status, body)
    assert (await anon.request("GET", "/healthz"))[0] == 200
    assert (await anon.request("GET", "/api/openapi.json"))[0] == 200
    ws_status, _ = await anon.request("GET", "/ws")
    assert ws_status == 401
    await anon.close()


async def test_wrong_password_and_unknown_user_are_refused_alike(app: RunningApp) -> None:
    anon = Api(app.url)
    s1, b1 = await anon.request("POST", "/api/login", {"username": "officer", "password": "nope"})
    s2, b2 = await anon.request("POST", "/api/login", {"username": "ghost", "password": "nope"})
    assert (s1, b1) == (s2, b2) == (401, {"error": "wrong username or password"})
    await anon.close()


async def test_passwords_are_stored_as_argon2_hashes(app: RunningApp) -> None:
    async with app.app[DB].session() as s:
        hashes = (await s.scalars(select(User.password_hash))).all()
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    assert not any("officer-pw" in h for h in hashes)


async def test_state_change_without_csrf_token_is_refused(app: RunningApp) -> None:
    inc = await open_incident(app)
    officer = await as_user(app, "officer")
    status, body = await officer.request("POST", f"/api/incidents/{inc}/ack", csrf=False)
    assert status == 403 and "X-CSRF-Token" in body["error"]
    status, _ = await officer.request("POST", f"/api/incidents/{inc}/ack", headers={"X-CSRF-Token": "forged"},
                                      csrf=False)
    assert status == 403
    detail = await officer.get(f"/api/incidents/{inc}")
    assert detail["status"] == "new"  # nothing changed
    assert (await officer.request("POST", f"/api/incidents/{inc}/ack"))[0] == 200
    await officer.close()


async def test_unit_sees_and_presses_only_its_own_unit(app: RunningApp) -> None:
    school_inc = await open_incident(app, "school-1")
    hotel_inc = await open_incident(app, "hotel-1")
    school = await as_user(app, "school")
    assert [i["id"] for i in await school.get("/api/incidents")] == [school_inc]
    assert [u["id"] for u in await school.get("/api/units")] == ["school-1"]
    assert (await school.request("GET", f"/api/incidents/{hotel_inc}"))[0] == 403
    assert (await school.request("POST", "/api/units/hotel-1/alarm", {}))[0] == 403
    assert (await school.request("POST", f"/api/incidents/{hotel_inc}/messages", {"text": "hi"}))[0] == 403
    assert (await school.request("POST", f"/api/incidents/{school_inc}/ack"))[0] == 403
    assert (await school.request("POST", f"/api/incidents/{school_inc}/dispatch", {"agencies": ["fire"]}))[0] == 403
    assert (await school.request("GET", "/api/dispatches"))[0] == 403
    pressed = await school.post("/api/units/school-1/alarm", {"kind": "one_key"})
    assert pressed["incident_id"] == school_inc  # joins the open incident
    reply = await school.post(f"/api/incidents/{school_inc}/messages", {"text": "已断电"})
    assert reply["sender_role"] == "unit"
    await school.close()


async def test_agency_sees_only_dispatches_sent_to_it(app: RunningApp) -> None:
    inc = await open_incident(app)
    other = await open_incident(app, "hotel-1")
    officer = await as_user(app, "officer")
    result = await officer.post(f"/api/incidents/{inc}/dispatch", {"agencies": ["fire", "medical"]})
    fire_id = next(d["id"] for d in result["dispatches"] if d["agency"] == "fire")
    medical_id = next(d["id"] for d in result["dispatches"] if d["agency"] == "medical")

    brigade = await as_user(app, "brigade")
    assert [d["agency"] for d in await brigade.get("/api/dispatches")] == ["fire"]
    assert [i["id"] for i in await brigade.get("/api/incidents")] == [inc]
    assert (await brigade.request("GET", f"/api/incidents/{other}"))[0] == 403
    assert (await brigade.request("GET", "/api/units"))[0] == 403
    assert (await brigade.request("POST", f"/api/dispatches/{medical_id}/ack"))[0] == 403
    assert (await brigade.request("POST", f"/api/incidents/{inc}/ack"))[0] == 403
    detail = await brigade.get(f"/api/incidents/{inc}")
    assert [d["agency"] for d in detail["dispatches"]] == ["fire"]
    assert (await brigade.post(f"/api/dispatches/{fire_id}/ack"))["status"] == "acknowledged"
    await brigade.close()
    await officer.close()


async def test_agency_system_acknowledges_with_bearer_token(app: RunningApp) -> None:
    inc = await open_incident(app)
    service = app.app[INCIDENTS]
    view = await service.commands.dispatch(inc, ["fire", "medical"], SYSTEM)
    fire_id = next(d["id"] for d in view["dispatches"] if d["agency"] == "fire")
    medical_id = next(d["id"] for d in view["dispatches"] if d["agency"] == "medical")
    system = Api(app.url)
    bad = await system.request("POST", f"/api/dispatches/{fire_id}/ack", headers={"Authorization": "Bearer wrong"})
    assert bad[0] == 401
    auth = {"Authorization": f"Bearer {AGENCY_TOKEN}"}
    status, body = await system.request("POST", f"/api/dispatches/{fire_id}/ack", headers=auth)
    assert status == 200 and body["status"] == "acknowledged" and body["acknowledged_by"] == "fire-system"
    # The fire brigade's token cannot answer for the medical centre.
    assert (await system.request("POST", f"/api/dispatches/{medical_id}/ack", headers=auth))[0] == 403
    await system.close()


async def test_assessor_reads_but_cannot_act(app: RunningApp) -> None:
    inc = await open_incident(app)
    assessor = await as_user(app, "assessor")
    assert [i["id"] for i in await assessor.get("/api/incidents")] == [inc]
    assert (await assessor.get(f"/api/incidents/{inc}"))["id"] == inc
    for path, body in ((f"/api/incidents/{inc}/ack", None), (f"/api/incidents/{inc}/close",
                                                              {"outcome": "resolved"}),
                       (f"/api/incidents/{inc}/messages", {"text": "x"}), ("/api/units/school-1/alarm", {})):
        assert (await assessor.request("POST", path, body))[0] == 403, path
    assert (await assessor.request("GET", "/api/admin/rejections"))[0] == 403
    await assessor.close()


async def test_only_admin_sees_rejected_input(app: RunningApp) -> None:
    officer = await as_user(app, "officer")
    admin = await as_user(app, "admin")
    assert (await officer.request("GET", "/api/admin/rejections"))[0] == 403
    body = await admin.get("/api/admin/rejections")
    assert body["total"] == 0
    await officer.close()
    await admin.close()


async def test_logout_ends_the_session(app: RunningApp) -> None:
    officer = await as_user(app, "officer")
    await officer.post("/api/logout")
    assert (await officer.request("GET", "/api/incidents"))[0] == 401
    await officer.close()


async def test_logins_and_logouts_are_recorded(app: RunningApp) -> None:
    from dispatch.models import RecordEntry

    officer = await as_user(app, "officer")
    await officer.post("/api/logout")
    await officer.close()
    async with app.app[DB].session() as s:
        rows = (await s.scalars(select(RecordEntry).where(RecordEntry.action.like("user.%"))
                                .order_by(RecordEntry.id))).all()
    assert [(r.action, r.actor) for r in rows] == [("user.login", "officer"), ("user.logout", "officer")]
