"""Typed inspections through the API on SQLite and PostgreSQL: a failed item becomes one hazard with its clause and
photo, a resend (one after the other, or at once) stores nothing twice, a bad submission stores nothing, photos are
re-encoded without their metadata, and a recheck inspection rechecks through the case flow."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from console.appkeys import DB, INCIDENTS
from dispatch.hazard_models import Hazard, HazardEvidence
from dispatch.hazards import INSPECTION
from dispatch.inspection_models import Inspection, InspectionPhoto
from dispatch.models import RecordEntry
from dispatch.records import verify
from tests.hazards.conftest import config, hazard_app, login
from tests.inspections.support import body, checklist, inspect, phone_jpeg, send_photo
from tests.support import RunningApp, StepClock

T0 = datetime(2026, 11, 10, 2, tzinfo=UTC)


async def counts(running: RunningApp) -> tuple[int, int, int]:
    """(inspections, hazards, inspection.recorded entries)."""
    async with running.app[DB].session() as s:
        return (int(await s.scalar(select(func.count(Inspection.id))) or 0),
                int(await s.scalar(select(func.count(Hazard.id))) or 0),
                int(await s.scalar(select(func.count(RecordEntry.id)).where(RecordEntry.action == INSPECTION)) or 0))


async def test_checklist_of_a_unit_type(db_url: str) -> None:
    async with hazard_app(config(db_url)) as running:
        officer = await login(running.url, "officer")
        try:
            school = await officer.get("/api/checklists/school")
            assert school["version"] >= 1 and school["name"] == "学校、幼儿园" and school["unit_type_name"] == "学校"
            ids = [i["id"] for i in school["items"]]
            assert ids[0] == "exits_clear" and "school.dorm_power" in ids and len(ids) == len(set(ids))
            first = school["items"][0]
            assert first["clause"]["citation"].startswith("《机关、团体、企业、事业单位消防安全管理规定》")
            assert first["category"] == "blocked_exit" and first["clause"]["text"]
            generic = await officer.get("/api/checklists/religious")  # no list of its own: the base list
            assert generic["name"] == "通用检查项目" and all("." not in i["id"] for i in generic["items"])
            pre = await officer.get("/api/checklists/hotel?kind=pre_opening")
            assert "pre_facilities_ready" in [i["id"] for i in pre["items"]]
            assert "hotel.permit" not in [i["id"] for i in pre["items"]]
            status, answer = await officer.request("GET", "/api/checklists/no_such_type")
            assert status == 404 and "unknown unit type" in answer["error"]
            start = await officer.get("/api/units/hotel-1/inspection?kind=daily")
            assert start["unit"]["unit_type"] == "hotel" and start["checklist"]["name"] == "宾馆、旅馆"
            assert start["hazards_under_notice"] == []
        finally:
            await officer.close()


async def test_one_failure_becomes_one_hazard_with_its_clause_and_photo(db_url: str) -> None:
    clock = StepClock(T0)
    async with hazard_app(config(db_url, console={"session_hours": 240}), clock=clock) as running:
        officer = await login(running.url, "officer")
        try:
            # the photo first (the phone sends it when it has signal): metadata stripped, stamped, hashed
            client_id = uuid.uuid4().hex
            status, photo = await send_photo(officer, "school-1", phone_jpeg(), client_id=client_id)
            assert status == 201, photo
            status, again = await send_photo(officer, "school-1", phone_jpeg(), client_id=client_id)
            assert (status, again["id"], again["sha256"]) == (200, photo["id"], photo["sha256"])
            status, clash = await send_photo(officer, "school-1", phone_jpeg((0, 90, 0)), client_id=client_id)
            assert status == 409, clash
            async with officer.http.get(officer.base + photo["url"]) as resp:
                assert resp.status == 200 and resp.headers["X-Content-SHA256"] == photo["sha256"]
                stored = await resp.read()
            from PIL import Image

            with Image.open(io.BytesIO(stored)) as im:
                assert im.format == "JPEG" and not im.getexif() and "comment" not in im.info
            assert b"PhoneModel-X" not in stored and b"secret comment" not in stored

            cl = await checklist(officer, "school-1")
            clock.advance(600)
            answer = await inspect(officer, "school-1", fails={"exits_clear": "东侧安全出口被货架堵塞"},
                                   photos=[{"photo_id": photo["id"], "item_id": "exits_clear"}])
            assert answer["number"].endswith("第0001号") and "消检字" in answer["number"]
            assert answer["failed"] == 1 and len(answer["items"]) == len(cl["items"])
            [hz] = answer["hazards"]
            assert (hz["category"], hz["source"], hz["status"], hz["inspection_id"]) == \
                ("blocked_exit", "inspection", "open", answer["id"])
            assert [c["key"] for c in hz["clauses"]] == ["mps61_21"]
            assert "东侧安全出口被货架堵塞" in hz["description"]
            failed = next(i for i in answer["items"] if i["result"] == "fail")
            assert failed["hazard_id"] == hz["id"] and failed["clause"]["key"] == "mps61_21"
            assert [p["id"] for p in answer["photos"]] == [photo["id"]]
            # the item's photo is the hazard's "before" evidence
            detail = await officer.get(f"/api/hazards/{hz['id']}")
            assert [e["stage"] for e in detail["evidence"]] == ["before"]
            # the notice cites the clause the item checked first, then the category's
            notice = (await officer.post(f"/api/hazards/{hz['id']}/notice", {"days": 3}))["notice"]
            assert [c["key"] for c in notice["clauses"]] == ["mps61_21", "fire_law_28", "fire_law_16"]
            # the record: one inspection.recorded with the results' and the document's hashes; the chain holds
            async with running.app[DB].session() as s:
                entries = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
            recorded = [e for e in entries if e.action == INSPECTION]
            assert len(recorded) == 1 and recorded[0].actor == "officer"
            data = recorded[0].data
            assert data["inspection_id"] == answer["id"] and data["failed"] == ["exits_clear"]
            assert data["hazard_ids"] == [hz["id"]] and data["results_sha256"] == answer["results_sha256"]
            assert len(data["content_hash"]) == 64 and data["photos"] == [{"photo_id": photo["id"],
                                                                            "sha256": photo["sha256"]}]
            created = [e for e in entries if e.action == "hazard.created"]
            assert created[0].data["inspection_id"] == answer["id"] and created[0].data["clauses"] == ["mps61_21"]
            assert verify(entries) is None
            # read back: the list of the unit, the detail
            listed = await officer.get("/api/inspections?unit_id=school-1")
            assert [i["id"] for i in listed] == [answer["id"]]
            assert (await officer.get(f"/api/inspections/{answer['id']}"))["hazards"][0]["id"] == hz["id"]
            # a photo is part of one inspection only
            status, reused = await officer.request("POST", "/api/inspections", body(
                cl, "school-1", photos=[{"photo_id": photo["id"], "item_id": "exits_clear"}]))
            assert status == 400 and "another inspection" in reused["error"]
        finally:
            await officer.close()


async def test_a_resend_stores_nothing_twice_one_after_the_other_or_at_once(db_url: str) -> None:
    async with hazard_app(config(db_url)) as running:
        officer = await login(running.url, "officer")
        try:
            cl = await checklist(officer, "hotel-1")
            sent = body(cl, "hotel-1", fails={"hotel.control_room": "值班仅1人"})
            status, first = await officer.request("POST", "/api/inspections", sent)
            assert status == 201, first
            status, second = await officer.request("POST", "/api/inspections", sent)
            assert status == 200 and second == first
            assert await counts(running) == (1, 1, 1)
            # the same key with other answers is refused, not stored
            other = {**sent, "items": [{**i, "result": "pass", "note": ""} for i in sent["items"]]}
            status, answer = await officer.request("POST", "/api/inspections", other)
            assert status == 409 and "idempotency key" in answer["error"]
            # at once: a phone that lost the answer of its first try sends again while it is still running
            burst = body(cl, "hotel-1", fails={"hotel.control_room": "值班人员无证"})
            results = await asyncio.gather(*(officer.request("POST", "/api/inspections", burst) for _ in range(6)))
            statuses = sorted(st for st, _ in results)
            assert statuses == [200] * 5 + [201], results
            assert len({a["id"] for _, a in results}) == 1
            assert len({tuple(h["id"] for h in a["hazards"]) for _, a in results}) == 1
            assert await counts(running) == (2, 2, 2)
        finally:
            await officer.close()


async def test_an_incomplete_or_wrong_submission_stores_nothing(db_url: str) -> None:
    async with hazard_app(config(db_url)) as running:
        officer = await login(running.url, "officer")
        try:
            cl = await checklist(officer, "school-1")
            good = body(cl, "school-1", fails={"wiring": "私拉电线"})
            items = good["items"]
            cases: list[tuple[dict[str, Any], str]] = [
                ({**good, "items": items[1:]}, "not answered"),
                ({**good, "items": [*items, items[0]]}, "answered twice"),
                ({**good, "items": [*items, {"item_id": "hotel.control_room", "result": "pass"}]},
                 "not on the daily checklist"),
                ({**good, "items": [{**i, "note": ""} for i in items]}, "say what was found"),
                ({**good, "checklist_version": cl["version"] + 1}, "checklist changed"),
                ({**good, "kind": "recheck"}, "hazards it rechecks"),
                ({**good, "rechecks": [{"hazard_id": 1, "rectified": True}]}, "only a recheck inspection"),
                ({**good, "signature": "data:image/png;base64,aGVsbG8="}, "not a PNG"),
                ({**good, "signature": "data:image/jpeg;base64,aGVsbG8="}, "PNG data URL"),
                ({**good, "unit_id": "no-such-unit"}, "unknown unit"),
                ({**good, "photos": [{"photo_id": 12345}]}, "not received from you"),
                ({**good, "co_officers": ["school"]}, "not an officer"),
                ({**good, "items": [{**items[0], "result": "maybe"}, *items[1:]]}, "invalid request body"),
            ]
            for sent, why in cases:
                status, answer = await officer.request("POST", "/api/inspections", sent)
                assert status == 400 and why in answer["error"] + str(answer.get("details", "")), (why, answer)
            assert await counts(running) == (0, 0, 0)
            school = await login(running.url, "school")  # a unit does not inspect
            status, _ = await school.request("POST", "/api/inspections", good)
            assert status == 403
            await school.close()
            status, first = await officer.request("POST", "/api/inspections", good)
            assert status == 201
            # a unit retired from the registry is no longer inspected (a resend is still answered)
            running.app[INCIDENTS].core.units["school-1"].retired_at = datetime(2026, 11, 11, tzinfo=UTC)
            status, answer = await officer.request("POST", "/api/inspections", body(cl, "school-1"))
            assert status == 400 and "retired" in answer["error"]
            status, again = await officer.request("POST", "/api/inspections", good)
            assert status == 200 and again["id"] == first["id"]
        finally:
            await officer.close()


async def test_a_recheck_inspection_rechecks_through_the_case_flow(db_url: str) -> None:
    clock = StepClock(T0)
    async with hazard_app(config(db_url, console={"session_hours": 240}), clock=clock) as running:
        officer = await login(running.url, "officer")
        try:
            first = await inspect(officer, "hotel-1", fails={"exits_clear": "通道堆放布草车",
                                                             "wiring": "客房走廊私拉电线"})
            exits, wiring = sorted(first["hazards"], key=lambda h: h["category"])
            assert (exits["category"], wiring["category"]) == ("blocked_exit", "illegal_wiring")
            for h in (exits, wiring):
                await officer.post(f"/api/hazards/{h['id']}/notice", {"days": 3})
            clock.advance(24 * 3600)
            start = await officer.get("/api/units/hotel-1/inspection?kind=recheck")
            assert {h["id"] for h in start["hazards_under_notice"]} == {exits["id"], wiring["id"]}
            # the exits are clear, the wiring is not: the failed item names the rechecked hazard, no new one
            answer = await inspect(officer, "hotel-1", kind="recheck", fails={"wiring": "仍有私拉电线"},
                                   rechecks=[{"hazard_id": exits["id"], "rectified": True, "note": "已清理"},
                                             {"hazard_id": wiring["id"], "rectified": False, "note": "未整改"}])
            assert answer["hazards"] == [] and {h["id"] for h in answer["rechecked"]} == {exits["id"], wiring["id"]}
            assert next(i for i in answer["items"] if i["item_id"] == "wiring")["hazard_id"] == wiring["id"]
            closed = await officer.get(f"/api/hazards/{exits['id']}")
            assert (closed["status"], closed["outcome"]) == ("closed", "rectified")
            assert closed["rechecks"][0]["note"] == "已清理" and closed["opinions"][0]["rectified"] is True
            still = await officer.get(f"/api/hazards/{wiring['id']}")
            assert still["status"] == "notice_issued" and still["opinions"][0]["rectified"] is False
            # a closed hazard is not rechecked again
            status, again = await officer.request("POST", "/api/inspections", body(
                await checklist(officer, "hotel-1", "recheck"), "hotel-1", kind="recheck",
                rechecks=[{"hazard_id": exits["id"], "rectified": True}]))
            assert status == 400 and "under a notice" in again["error"]
            async with running.app[DB].session() as s:
                photos = int(await s.scalar(select(func.count(InspectionPhoto.id))) or 0)
                evidence = int(await s.scalar(select(func.count(HazardEvidence.id))) or 0)
            assert (photos, evidence) == (0, 0)
        finally:
            await officer.close()
