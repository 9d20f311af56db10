"""Honest HTTP: the OpenAPI document lists what the server serves, undeclared methods get 405 with Allow, ids the
database cannot hold are refused (not 500), a database outage answers 503 with what is down, NaN is refused."""

from __future__ import annotations

import base64
import importlib
import json
import math
import pkgutil
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from sqlalchemy.engine import make_url

import console
from console.appkeys import INCIDENTS
from console.routing import ID_MAX, RouteTable, install
from console.web import PAGES, console_routes
from detectors.worker import parse_detection_message
from ingest.contract import AlarmIn, Rejection, utcnow
from ingest.payloads import parse_message
from tests.support import AGENCY_TOKEN, Api, RunningApp, base_config, running_app

DOWN = {"error": "database unavailable", "down": ["database"]}
NOT_API = {"/", "/{name}", "/static"}  # the console's HTML pages and static assets: not API operations


async def login(app: RunningApp, users: dict[str, Api], name: str = "officer") -> Api:
    api = Api(app.url)
    users[name] = api  # closed by the fixture, pass or fail
    await api.login(name, f"{name}-pw")
    return api


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[RunningApp]:
    async with running_app(base_config(db_url, None), mqtt=False) as running:
        yield running


async def test_openapi_lists_every_route_the_server_serves_with_its_statuses(sqlite_url: str) -> None:
    async with running_app(base_config(sqlite_url, None), mqtt=False) as app:
        anon = Api(app.url)
        doc = await anon.get("/api/openapi.json")
        await anon.close()
        served = {(r.method, r.resource.canonical) for r in app.app.router.routes()
                  if r.method != "HEAD" and r.resource is not None and r.resource.canonical not in PAGES}
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        assert served == documented, {"not documented": served - documented, "not served": documented - served}
        for extra in [("GET", "/ws"), ("GET", "/api/cameras/{camera_id}/live.mjpeg"),
                      ("GET", "/api/evidence/{folder}/{name}"), ("POST", "/api/incidents/{incident_id}/photos")]:
            assert extra in documented  # the hand-registered video, evidence and WebSocket routes are in the table

        ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
        assert len(ids) == len(set(ids))
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                where = f"{method.upper()} {path}"
                codes = set(op["responses"])
                params = op.get("parameters", [])
                if op["security"]:
                    assert {"401", "403", "503"} <= codes, where
                if params or "requestBody" in op:
                    assert "400" in codes, where
                if any(p["in"] == "path" for p in params):
                    assert "404" in codes, where
                if "requestBody" in op:
                    assert "413" in codes, where
                for p in params:
                    if p["in"] == "path" and p["schema"].get("type") == "integer":
                        assert (p["schema"]["minimum"], p["schema"]["maximum"]) == (1, ID_MAX), where
                for code, response in op["responses"].items():
                    if int(code) >= 400:
                        assert "$ref" in response["content"]["application/json"]["schema"], where
        uploads = {p for p, ops in doc["paths"].items() for op in ops.values()
                   if "multipart/form-data" in op.get("requestBody", {}).get("content", {})}
        assert uploads == {"/api/incidents/{incident_id}/photos", "/api/hazards/{id}/evidence",
                           "/api/hazards/{id}/proof", "/api/inspection-photos", "/api/public/complaints",
                           "/api/complaints", "/api/units/import"}
        report = doc["paths"]["/api/public/complaints"]["post"]  # JSON, or multipart with a photo
        assert set(report["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
        assert report["security"] == [] and {"201", "403", "413", "429"} <= set(report["responses"])
        assert doc["paths"]["/api/hotline/complaints"]["post"]["security"] == [{"signature": []}]
        photo = doc["paths"]["/api/incidents/{incident_id}/photos"]["post"]
        assert photo["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["photo"]["format"] \
            == "binary"
        assert "201" in photo["responses"]
        assert "429" in doc["paths"]["/api/login"]["post"]["responses"]


def test_every_console_modules_route_table_is_served() -> None:
    """Registration is explicit (console_routes lists the tables): a module whose table is not listed would serve
    nothing and be documented nowhere, which the served-equals-documented test above cannot notice."""
    tables = {}
    for info in pkgutil.iter_modules(console.__path__):
        module = importlib.import_module(f"console.{info.name}")
        tables.update({f"{info.name}.{name}": value for name, value in vars(module).items()
                       if isinstance(value, RouteTable)})
    assert {"api.routes", "ws.routes", "api_hazards.routes", "api_inspections.routes", "api_zones.routes",
            "video.routes", "api_complaints.routes", "api_units.routes"} <= set(tables)
    served = console_routes()
    for name, table in tables.items():
        assert all(r in served for r in table), f"console.{name} is not in console.web.console_routes()"


def test_a_route_declared_twice_is_refused() -> None:
    async def handler(request: web.Request, _: None) -> dict[str, str]:
        return {}

    first, second = RouteTable(), RouteTable()
    first.route("GET", "/api/things/{id}", "Get a thing", roles=None)(handler)
    second.route("GET", "/api/things/{id}", "Get a thing again", roles=None)(handler)
    app = web.Application()
    install(app, first)
    with pytest.raises(ValueError, match=re.escape("GET /api/things/{id} declared twice")):
        install(app, second)


async def test_undeclared_methods_answer_405_with_allow(sqlite_url: str, users: dict[str, Api]) -> None:
    async with running_app(base_config(sqlite_url, None), mqtt=False) as app:
        officer = await login(app, users)
        cases = [("TRACE", "/api/incidents", {"GET"}), ("TRACE", "/api/incidents/1", {"GET"}),
                 ("DELETE", "/api/incidents/1", {"GET"}), ("PUT", "/api/incidents/1/ack", {"POST"}),
                 ("TRACE", "/healthz", {"GET"}), ("TRACE", "/ws", {"GET"}), ("PATCH", "/api/cameras", {"GET"}),
                 ("TRACE", "/api/cameras/c1/exit-zones/z1", {"PUT", "DELETE"}),
                 ("TRACE", "/api/evidence/incident-1/a.jpg", {"GET"}), ("TRACE", "/api/openapi.json", {"GET"})]
        for method, path, allowed in cases:
            async with officer.http.request(method, officer.base + path) as resp:
                assert resp.status == 405, (method, path, resp.status)
                assert set(resp.headers["Allow"].split(",")) == allowed, (path, resp.headers.get("Allow"))
                body = await resp.json()
                assert method in body["error"] and set(body["allowed"]) == allowed


async def test_ids_beyond_what_the_database_holds_are_refused_not_500(app: RunningApp, users: dict[str, Api]) -> None:
    officer = await login(app, users)
    pressed = await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
    inc = pressed["incident_id"]
    huge = [str(ID_MAX + 1), str(2**63), str(2**64), "9" * 30, "9" * 5000, "-1", "0", "1.0", "1e3", "0x10", " 1"]
    routes = [("GET", "/api/incidents/{}", None, 404), ("POST", "/api/incidents/{}/ack", None, 404),
              ("POST", "/api/incidents/{}/close", {"outcome": "resolved"}, 404),
              ("POST", "/api/dispatches/{}/ack", None, 404), ("GET", "/api/hazards/{}", None, 404),
              ("POST", "/api/hazards/{}/penalty", None, 404), ("POST", "/api/penalties/{}/confirm", {}, 404),
              ("GET", "/api/notices/{}/pdf", None, 404), ("GET", "/api/evidence/{}", None, 404),
              ("GET", "/api/incidents/{}/evidence", None, 404),  # no such incident (its scope cannot be known)
              ("POST", "/api/incidents/{}/photos", None, 404)]
    for method, template, body, at_max in routes:
        for value in huge:
            status, result = await officer.request(method, template.format(value), body)
            assert status == 400, (method, template, value[:20], status, result)
            assert "invalid path parameter" in result["error"], result
        # the largest id the database holds is a valid id: simply not there
        status, result = await officer.request(method, template.format(ID_MAX), body)
        assert status == at_max, (method, template, status, result)
    status, _ = await officer.request("GET", f"/api/evidence/incident-{'9' * 40}/x.jpg")
    assert status == 400
    for query in (f"limit={2**63}", "limit=0", "limit=-5", f"limit={'9' * 5000}"):
        status, result = await officer.request("GET", f"/api/incidents?{query}")
        assert status == 400 and "limit" in result["error"], (query, status, result)
    assert (await officer.get(f"/api/incidents/{inc}"))["status"] == "new"  # nothing changed



async def test_database_outage_answers_503_with_what_is_down_everywhere(pg_admin_dsn: str, pg_url: str,
                                                                       users: dict[str, Api]) -> None:
    """A real outage: the app's database stops accepting connections and its sessions are terminated."""
    name = make_url(pg_url).database
    async with running_app(base_config(pg_url, None), mqtt=False) as app:
        officer = await login(app, users)
        pressed = await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
        inc = pressed["incident_id"]
        agency = aiohttp.ClientSession(headers={"Authorization": f"Bearer {AGENCY_TOKEN}"})
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            for method, path, body in [
                ("GET", "/api/me", None), ("GET", "/api/incidents", None), ("GET", f"/api/incidents/{inc}", None),
                ("POST", f"/api/incidents/{inc}/ack", None), ("POST", "/api/units/school-1/alarm", {}),
                ("GET", "/api/hazards", None), ("GET", "/api/kpi", None), ("GET", "/api/dashboard", None),
                ("GET", "/api/cameras", None), ("GET", f"/api/incidents/{inc}/evidence", None),
                ("GET", "/api/units?q=小学", None), ("GET", "/api/units/school-1", None),
                ("POST", "/api/logout", None), ("GET", "/ws", None),
            ]:
                status, result = await officer.request(method, path, body)
                assert (status, result) == (503, DOWN), (method, path, status, result)
            async with agency.get(app.url + "/api/dispatches") as resp:  # bearer token: no session lookup
                assert (resp.status, await resp.json()) == (503, DOWN)
            anon = Api(app.url)
            status, result = await anon.request("POST", "/api/login", {"username": "officer",
                                                                      "password": "officer-pw"})
            assert (status, result) == (503, DOWN)
            assert (await anon.request("GET", "/api/openapi.json"))[0] == 200  # needs no database
            await anon.close()
            status, health = await officer.request("GET", "/healthz")  # with a session cookie too
            assert status == 503 and health["status"] == "degraded", health
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()
            await agency.close()
        # back: the same session works again, nothing was lost
        assert (await officer.get("/api/me"))["user"]["username"] == "officer"
        assert (await officer.get(f"/api/incidents/{inc}"))["status"] == "new"


def _detection(**overrides: object) -> bytes:
    d = {"type": "video_fire", "alarm_id": "cam1-1", "camera_id": "cam1", "unit_id": "school-1",
         "ts": datetime(2026, 1, 1, tzinfo=UTC).isoformat(), "confidence": 0.9, "boxes": [], "width": 640,
         "height": 360, "jpeg_b64": base64.b64encode(b"\xff\xd8\xff").decode()}
    return json.dumps({**d, **overrides}, allow_nan=True).encode()


async def test_nan_and_infinity_are_refused_at_the_edge(app: RunningApp, users: dict[str, Api]) -> None:
    topic = "fl/cameras/cam1/detections"
    assert parse_detection_message(topic, _detection()) is not None  # the valid message is accepted
    for bad in [math.nan, math.inf, -math.inf, "nan", 1.5, -0.1, True, None]:
        assert parse_detection_message(topic, _detection(confidence=bad)) is None, bad
    assert parse_detection_message(topic, _detection().replace(b'"confidence": 0.9', b'"confidence": 1e999')) is None
    got = parse_message("fl", topic, _detection(confidence=math.nan), 65536, utcnow())
    assert isinstance(got, Rejection) and not isinstance(got, AlarmIn)

    officer = await login(app, users)
    service = app.app[INCIDENTS]
    before = len(service.core.open_by_unit)
    bodies = [
        ("POST", "/api/hazards", b'{"unit_id": "school-1", "category": "corridor_storage", "lat": NaN}'),
        ("POST", "/api/hazards", b'{"unit_id": "school-1", "category": "corridor_storage", "lon": Infinity}'),
        ("POST", "/api/hazards", b'{"unit_id": "school-1", "category": "corridor_storage", "lat": 1e999}'),
        ("PUT", "/api/cameras/c1/masks/m1", b'{"polygon": [[0, 0], [NaN, 0.5], [1, 1]]}'),
        ("POST", "/api/units/school-1/alarm", b'{"kind": "one_key", "note": -Infinity}'),
        ("POST", "/api/units/school-1/alarm", b"[" * 50_000),
    ]
    for method, path, raw in bodies:
        status, result = await officer.request(method, path, raw=raw)
        assert status == 400, (path, raw[:60], status, result)
        assert "JSON" in result["error"], result
    assert (await officer.get("/api/hazards?status=all")) == []
    assert len(service.core.open_by_unit) == before


async def test_video_and_evidence_errors_are_plain_json(app: RunningApp, users: dict[str, Api]) -> None:
    officer = await login(app, users)
    school = await login(app, users, "school")
    brigade = await login(app, users, "brigade")
    cases = [(officer, "/api/cameras/nope", 404, "no such camera"),
             (officer, "/api/cameras/nope/snapshot.jpg?w=abc", 400, "invalid query parameter w"),
             (officer, "/api/cameras/nope/live.mjpeg?fps=0", 400, "invalid query parameter fps"),
             (officer, "/api/evidence/incident-1/nope.jpg", 404, "no such evidence file"),
             (brigade, "/api/cameras", 403, "role agency may not list cameras"),
             (school, "/api/incidents/abc/evidence", 400, "invalid path parameter incident_id")]
    for who, path, status, message in cases:
        got, body = await who.request("GET", path)
        assert got == status and isinstance(body, dict), (path, got, body)
        assert body["error"].startswith(message), (path, body)  # a message, not JSON inside a JSON string
