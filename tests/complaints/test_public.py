"""Reporting without an account (docs/complaints.md): a receipt only once stored, a status that says where the
report stands and nothing else, bad input refused with nothing stored, size and rate limits, the photo's metadata
gone from the stored bytes, and no way to use it cross-site or as a logged-in officer."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import aiohttp
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from console.appkeys import DB
from dispatch.complaint_models import Complaint, ComplaintPhoto
from dispatch.models import RecordEntry
from tests.complaints.conftest import config, jpeg_with_gps, login, post_form
from tests.support import Api, RunningApp, running_app

RECEIPT = re.compile(r"[23456789ABCDEFGHJKMNPQRSTVWXYZ]{5}-[23456789ABCDEFGHJKMNPQRSTVWXYZ]{5}")


def anonymous() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def count(app: RunningApp, model: type[Any] = Complaint) -> int:
    async with app.app[DB].session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_anonymous_report_gets_a_receipt_and_its_status_follows_triage_and_nothing_else(
        app: RunningApp, users: dict[str, Api]) -> None:
    async with anonymous() as http:
        status, body, headers = await post_form(http, app.url + "/api/public/complaints",
                                                {"description": "安全出口被杂物堵住了", "unit_id": "school-1",
                                                 "contact_phone": "13912345678"}, jpeg_with_gps())
        assert status == 201, body
        assert set(body) == {"receipt"} and RECEIPT.fullmatch(body["receipt"]), body
        assert headers["Cache-Control"] == "no-store"
        receipt = body["receipt"]
        async with http.get(f"{app.url}/api/public/complaints/{receipt}") as resp:
            assert resp.status == 200
            seen = await resp.json()
        assert seen == {"receipt": receipt, "status": "received", "received_at": seen["received_at"]}
        typed = receipt.replace("-", "").lower()  # as a person may type it
        async with http.get(f"{app.url}/api/public/complaints/{typed}") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "received"

        officer = await login(app, users, "officer")
        queue = await officer.get("/api/complaints")
        assert [c["receipt"] for c in queue] == [receipt]
        c = queue[0]
        assert (c["station_id"], c["routed_by"], c["source"], c["unit_name"]) == \
            ("st-test", "unit", "public", "第一小学")
        assert c["contact_phone"] == "13912345678" and c["photo"] == f"/api/complaints/{c['id']}/photo"
        done = await officer.post(f"/api/complaints/{c['id']}/accept", {"category": "corridor_storage"})
        hazard = done["hazard"]
        assert (hazard["unit_id"], hazard["source"], hazard["status"]) == ("school-1", "complaint", "open")
        assert done["complaint"]["status"] == "accepted" and done["complaint"]["hazard_id"] == hazard["id"]
        detail = await officer.get(f"/api/hazards/{hazard['id']}")
        assert [e["stage"] for e in detail["evidence"]] == ["before"]  # the report's photo

        async with http.get(f"{app.url}/api/public/complaints/{receipt}") as resp:
            text = await resp.text()
        after = json.loads(text)
        assert after == {"receipt": receipt, "status": "accepted", "received_at": seen["received_at"]}
        for secret in ("officer", "13912345678", "school-1", "第一小学", "corridor", "hazard"):
            assert secret not in text, secret  # no officer, phone, unit, category or hazard leaks

        await officer.post(f"/api/hazards/{hazard['id']}/notice", {"days": 3})
        async with http.get(f"{app.url}/api/public/complaints/{receipt}") as resp:
            assert (await resp.json())["status"] == "rectifying"  # it follows the hazard's progress

        async with http.get(f"{app.url}/api/public/complaints/23456-78923") as resp:
            assert resp.status == 404
        async with http.get(f"{app.url}/api/public/complaints/OOOOO-IIIII") as resp:
            assert resp.status == 400  # letters a receipt never has


async def test_bad_input_is_a_400_and_stores_nothing(app: RunningApp) -> None:
    url = app.url + "/api/public/complaints"
    ok = {"description": "楼道里堆满了电动车"}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("no description", {"address": "城北路"}),
        ("too short", {"description": "火"}),
        ("unknown unit", {**ok, "unit_id": "no-such-unit"}),
        ("bad unit id", {**ok, "unit_id": "../etc"}),
        ("half a position", {**ok, "lat": 24.8}),
        ("latitude out of range", {**ok, "lat": 124.8, "lon": 108.2}),
        ("control characters", {"description": "堵塞\u0000了"}),
        ("unknown field", {**ok, "officer": "me"}),
        ("facility without unit", {**ok, "facility": "ext-1"}),
        ("bad phone", {**ok, "contact_phone": "<script>"}),
        ("too long", {"description": "长" * 1001}),
    ]
    async with anonymous() as http:
        for name, body in cases:
            async with http.post(url, json=body) as resp:
                assert resp.status == 400, (name, resp.status, await resp.text())
                assert "error" in await resp.json()
            fields = {k: str(v) for k, v in body.items()}
            status, answer, _ = await post_form(http, url, fields)
            assert status == 400, (name, "multipart", status, answer)
        for name, photo in [("not an image", b"GIF89a" + b"\0" * 200), ("a script named .jpg", b"<script>x</script>"),
                            ("truncated jpeg", jpeg_with_gps()[:300]), ("empty", b"")]:
            status, answer, _ = await post_form(http, url, ok, photo)
            assert status == 400, (name, status, answer)
        async with http.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400
    assert await count(app) == 0 and await count(app, ComplaintPhoto) == 0


async def test_oversize_body_or_photo_is_a_413_and_stores_nothing(db_url: str) -> None:
    cfg = config(db_url, complaints={"max_photo_bytes": 65536})
    async with running_app(cfg, mqtt=False) as app, anonymous() as http:
        big = jpeg_with_gps(trailer=b"x" * 70_000)
        status, body, _ = await post_form(http, app.url + "/api/public/complaints", {"description": "仓库堵了通道"},
                                          big)
        assert status == 413, body
        async with http.post(app.url + "/api/public/complaints",
                             json={"description": "堵" * 40_000}) as resp:  # > 64 KiB of JSON
            assert resp.status == 413
        huge_pixels = io.BytesIO()
        Image.new("1", (20_000, 20_000)).save(huge_pixels, "PNG")  # a few KB that decode to 400 MP
        status, body, _ = await post_form(http, app.url + "/api/public/complaints", {"description": "仓库堵了通道"},
                                          huge_pixels.getvalue())
        assert status == 400 and "pixels" in body["error"], body
        assert await count(app) == 0


async def test_reports_are_rate_limited_per_address_and_per_device(db_url: str) -> None:
    cfg = config(db_url, complaints={"per_address_per_hour": 3, "per_device_per_hour": 2,
                                     "lookups_per_address_per_hour": 4})
    url_path = "/api/public/complaints"
    async with running_app(cfg, mqtt=False) as app:
        url = app.url + url_path

        async def report(http: aiohttp.ClientSession, address: str) -> tuple[int, Any, Any]:
            async with http.post(url, json={"description": "消防通道被占用"},
                                 headers={"X-Forwarded-For": address}) as resp:  # the app trusts its loopback proxy
                return resp.status, await resp.json(), resp.headers

        # per address: a new browser (no cookie) each time from one address
        for n in range(3):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
                assert (await report(http, "10.0.0.1"))[0] == 201, n
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            status, body, headers = await report(http, "10.0.0.1")
            assert status == 429 and int(headers["Retry-After"]) > 0 and body["retry_after"] > 0, body
            assert (await report(http, "10.0.0.2"))[0] == 201  # another address is not affected
        # per device: one browser (its cookie) from ever new addresses
        async with anonymous() as http:
            assert (await report(http, "10.1.0.1"))[0] == 201  # first visit: the cookie is set
            assert (await report(http, "10.1.0.2"))[0] == 201  # device 1
            assert (await report(http, "10.1.0.3"))[0] == 201  # device 2
            status, _, headers = await report(http, "10.1.0.4")
            assert status == 429 and "Retry-After" in headers
        assert await count(app) == 3 + 1 + 3
        # receipt lookups: per address too (codes cannot be enumerated)
        async with anonymous() as http:
            for _ in range(4):
                async with http.get(app.url + "/api/public/complaints/23456-78923",
                                    headers={"X-Forwarded-For": "10.2.0.1"}) as resp:
                    assert resp.status == 404
            async with http.get(app.url + "/api/public/complaints/23456-78923",
                                headers={"X-Forwarded-For": "10.2.0.1"}) as resp:
                assert resp.status == 429


async def test_the_stored_photo_has_no_exif_gps_comment_or_trailing_payload(app: RunningApp,
                                                                             users: dict[str, Api]) -> None:
    payload = b"<?php system($_GET['c']); ?>PAYLOAD-AFTER-THE-IMAGE"
    original = jpeg_with_gps((1600, 1200), trailer=payload)
    assert b"Exif" in original and b"SecretPhone" in original and payload in original
    async with anonymous() as http:
        status, body, _ = await post_form(http, app.url + "/api/public/complaints",
                                          {"description": "配电箱旁边堆了纸箱", "lat": "24.8201", "lon": "108.2502"},
                                          original)
        assert status == 201, body
    async with app.app[DB].session() as s:
        row = await s.scalar(select(ComplaintPhoto).options(undefer(ComplaintPhoto.data)))
        assert row is not None
        stored = row.data
        received = await s.scalar(select(RecordEntry).where(RecordEntry.action == "complaint.received"))
    for marker in (b"Exif", b"SecretPhone", b"shot at home", b"PAYLOAD", b"<?php", b"GPS"):
        assert marker not in stored, marker
    assert stored.startswith(b"\xff\xd8") and stored.endswith(b"\xff\xd9")  # nothing after the image
    with Image.open(io.BytesIO(stored)) as im:
        assert im.format == "JPEG" and not im.getexif() and "exif" not in im.info and "comment" not in im.info
        assert im.size == (1600, 1200)
    assert received is not None and received.data["photo_sha256"] == row.sha256
    officer = await login(app, users, "officer")
    async with officer.http.get(app.url + f"/api/complaints/{row.complaint_id}/photo") as resp:
        assert resp.status == 200 and await resp.read() == stored
        assert resp.headers["X-Content-SHA256"] == row.sha256


async def test_it_acts_as_nobody_and_refuses_other_sites(app: RunningApp, users: dict[str, Api]) -> None:
    url = app.url + "/api/public/complaints"
    body = {"description": "商场安全出口上锁"}
    async with anonymous() as http:
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
            async with http.post(url, json=body, headers=headers) as resp:
                assert resp.status == 403, headers
        async with http.post(url, json=body, headers={"Origin": app.url, "Sec-Fetch-Site": "same-origin"}) as resp:
            assert resp.status == 201
    assert await count(app) == 1
    # a logged-in officer's session (cookie, no CSRF header) sent along is ignored: the report is anonymous
    officer = await login(app, users, "officer")
    status, _ = await officer.request("POST", "/api/public/complaints", body, csrf=False)
    assert status == 201
    async with app.app[DB].session() as s:
        rows = (await s.scalars(select(Complaint).order_by(Complaint.id))).all()
        actors = (await s.scalars(select(RecordEntry.actor).where(RecordEntry.action == "complaint.received"))).all()
    assert [(c.source, c.reporter) for c in rows] == [("public", ""), ("public", "")]
    assert actors == ["public", "public"]


async def test_the_report_page_learns_a_units_name_and_nothing_more(app: RunningApp) -> None:
    async with anonymous() as http:
        async with http.get(app.url + "/api/public/units/school-1") as resp:
            assert resp.status == 200 and await resp.json() == {"id": "school-1", "name": "第一小学"}
        async with http.get(app.url + "/api/public/units/nope") as resp:
            assert resp.status == 404
