"""End to end through the HTTP API: detection → notice → deadline → penalty → approval → paid; and
inspection → notice → proof → recheck → closed. The record stays verifiable throughout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from console.appkeys import DB, HAZARDS
from dispatch import hazards as hz
from dispatch.models import RecordEntry
from dispatch.records import verify
from tests.hazards.conftest import config, hazard_app, jpeg, login, upload, wait_status


async def chain_ok(app: Any) -> int:
    async with app[DB].session() as s:
        rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
    assert verify(rows) is None
    return len(rows)


async def test_detection_to_penalty(db_url: str) -> None:
    async with hazard_app(config(db_url)) as running:
        svc = running.app[HAZARDS]
        snapshot = jpeg()
        created = await svc.create_from_detection(unit_id="school-1", camera_id="cam-1", zone="exit-east",
                                                  category="blocked_exit", snapshot_jpeg=snapshot)
        again = await svc.create_from_detection(unit_id="school-1", camera_id="cam-1", zone="exit-east",
                                                category="blocked_exit", snapshot_jpeg=snapshot)
        assert again["id"] == created["id"]  # repeated detections join the open hazard
        hid = created["id"]
        officer, admin, school, hotel, assessor = [await login(running.url, n) for n in
                                                   ("officer", "admin", "school", "hotel", "assessor")]
        try:
            h = await officer.get(f"/api/hazards/{hid}")
            assert h["source"] == "detection" and h["camera_visible"] and h["severity"] == "major"
            assert [e["stage"] for e in h["evidence"]] == ["before"]
            ev_status, _ = await hotel.request("GET", f"/api/evidence/{h['evidence'][0]['id']}")
            assert ev_status == 403
            deadline = (datetime.now(UTC) + timedelta(seconds=1.2)).isoformat()
            status, _ = await assessor.request("POST", f"/api/hazards/{hid}/notice", {"deadline": deadline})
            assert status == 403  # read-only
            h = await officer.post(f"/api/hazards/{hid}/notice", {"deadline": deadline})
            notice = h["notice"]
            assert h["status"] == "notice_issued" and "消限字" in notice["number"]
            assert [c["key"] for c in notice["clauses"]] == ["fire_law_28", "fire_law_16"]
            # the unit sees its notice and can download the PDF; another unit cannot
            mine = await school.get("/api/hazards")
            assert [x["id"] for x in mine] == [hid] and mine[0]["notice"]["number"] == notice["number"]
            assert await hotel.get("/api/hazards") == []
            assert (await hotel.request("GET", f"/api/hazards/{hid}"))[0] == 403
            async with school.http.get(running.url + notice["pdf"]) as resp:
                assert resp.status == 200 and resp.content_type == "application/pdf"
                assert (await resp.read()).startswith(b"%PDF")
            # no proof by the deadline, no camera result: a recheck is due (到期复查), no penalty without it
            h = await wait_status(officer, hid, "recheck_due")
            assert hz.OVERDUE not in [e["action"] for e in h["timeline"]] and h["penalties"] == []
            status, body = await officer.request("POST", f"/api/hazards/{hid}/penalty")
            assert status == 409 and "recheck" in body["error"], body
            h = await officer.post(f"/api/hazards/{hid}/recheck", {"rectified": False, "note": "通道仍被堵塞"})
            assert h["status"] == "penalty"
            h = await officer.get(f"/api/hazards/{hid}")
            actions = [e["action"] for e in h["timeline"]]
            assert hz.OVERDUE in actions and hz.PENALTY_PROPOSED in actions
            pen = h["penalties"][0]
            assert (pen["status"], pen["target"], pen["kind"], pen["amount_yuan"]) == ("proposed", "unit", "fine", 5000)
            assert pen["clauses"][0]["key"] == "fire_law_60_1_3" and pen["number"] is None
            # officer confirms with one action (amount outside the law's range is refused)
            status, body = await officer.request("POST", f"/api/penalties/{pen['id']}/confirm", {"amount_yuan": 60000})
            assert status == 400, body
            pen = await officer.post(f"/api/penalties/{pen['id']}/confirm", {"amount_yuan": 10000})
            assert pen["status"] == "confirmed" and "消罚决字" in pen["number"]
            assert (await officer.request("POST", f"/api/penalties/{pen['id']}/approve"))[0] == 403
            await officer.post(f"/api/penalties/{pen['id']}/statement", {"statement": "waived"})
            pen = await admin.post(f"/api/penalties/{pen['id']}/approve")
            assert pen["status"] == "approved" and pen["approved_by"] == "admin"
            async with officer.http.get(running.url + pen["pdf"]) as resp:
                assert resp.status == 200 and (await resp.read()).startswith(b"%PDF")
            pen = await officer.post(f"/api/penalties/{pen['id']}/close", {"note": "已缴纳罚款，票据号 0001"})
            assert pen["closure"] == "paid"
            h = await officer.get(f"/api/hazards/{hid}")
            assert (h["status"], h["outcome"]) == ("closed", "penalized")
            documents = [(e["action"], e["data"]["kind"]) for e in h["timeline"] if e["action"].startswith("document.")]
            # each sealed document's PDF hashed once (the failed recheck's opinion too); the unit opened its notice
            assert documents == [("document.pdf_sealed", "notice"), ("document.received", "notice"),
                                 ("document.pdf_sealed", "opinion"), ("document.pdf_sealed", "inform"),
                                 ("document.pdf_sealed", "penalty")]
            h["timeline"] = [e for e in h["timeline"] if not e["action"].startswith("document.")]
            actions = [e["action"] for e in h["timeline"]]
            assert actions == [hz.HAZARD_CREATED, hz.EVIDENCE_ADDED, hz.NOTICE_ISSUED, hz.RECHECK_DUE, hz.RECHECKED,
                               hz.OVERDUE, hz.PENALTY_PROPOSED, hz.PENALTY_CONFIRMED, hz.PENALTY_INFORMED,
                               hz.PENALTY_STATEMENT, hz.PENALTY_APPROVED,
                               hz.PENALTY_CLOSED, hz.HAZARD_CLOSED]
            assert [e["actor"] for e in h["timeline"]][-4:] == ["officer", "admin", "officer", "officer"]
            assert h["timeline"][1]["data"]["files"][0]["sha256"] == h["evidence"][0]["sha256"]
            assert await chain_ok(running.app) >= len(actions) + len(documents)
            # KPIs see it, computed from the record
            # the days the case ran (from the day it was found to today: a run crossing midnight of a month's or a
            # year's last day counts every step of it)
            found = datetime.fromisoformat(h["found_at"]).astimezone(hz.CHINA_TZ).date()
            today = datetime.now(UTC).astimezone(hz.CHINA_TZ).date()
            k = await assessor.get(f"/api/kpi?from={found.isoformat()}&to={(today + timedelta(days=1)).isoformat()}")
            assert k["headline"]["hazards_found"] == 1 and k["headline"]["penalty_cases"] == 1
            assert k["headline"]["notices_issued"] == 1
            officer_row = next(r for r in k["officers"] if r["officer"] == "officer")
            assert officer_row["notices_issued"] == 1 and officer_row["penalties"] == 1
            assert officer_row["rectified_on_time"] == 0 and officer_row["notices_due"] == 1
        finally:
            for api in (officer, admin, school, hotel, assessor):
                await api.close()


async def test_inspection_proof_recheck_closed(db_url: str) -> None:
    async with hazard_app(config(db_url)) as running:
        officer, school, assessor = [await login(running.url, n) for n in ("officer", "school", "assessor")]
        try:
            h = await officer.post("/api/hazards", {"unit_id": "school-1", "category": "missing_extinguisher",
                                                     "source": "inspection", "description": "二楼走廊灭火器压力不足",
                                                     "lat": 24.82, "lon": 108.25})
            hid = h["id"]
            assert (h["severity"], h["camera_visible"]) == ("general", False)
            status, body = await upload(officer, f"/api/hazards/{hid}/evidence", [("p.jpg", jpeg(), "image/jpeg")],
                                        stage="before")
            assert status == 200, body
            # not an image (declared as one): refused by its bytes
            status, body = await upload(officer, f"/api/hazards/{hid}/evidence",
                                        [("x.jpg", b"<script>alert(1)</script>", "image/jpeg")])
            assert status == 400 and "not a JPEG" in body["error"]
            # proof before any notice is refused
            status, _ = await upload(school, f"/api/hazards/{hid}/proof", [("a.jpg", jpeg(), "image/jpeg")], note="x")
            assert status == 409
            await officer.post(f"/api/hazards/{hid}/notice", {"days": 3})
            # no CSRF header → refused
            status, _ = await school.request("POST", f"/api/hazards/{hid}/proof", csrf=False, raw=b"")
            assert status == 403
            status, body = await upload(school, f"/api/hazards/{hid}/proof",
                                        [("after.jpg", jpeg((30, 200, 30)), "image/jpeg")], note="已更换灭火器")
            assert status == 200 and body["status"] == "proof_submitted", body
            # over the size limit → 413
            big = b"\xff\xd8\xff" + b"0" * (5 * 1024 * 1024 + 10)
            status, _ = await upload(school, f"/api/hazards/{hid}/proof", [("big.jpg", big, "image/jpeg")], note="x")
            assert status == 413
            assert (await assessor.request("POST", f"/api/hazards/{hid}/recheck", {"rectified": True}))[0] == 403
            h = await officer.post(f"/api/hazards/{hid}/recheck", {"rectified": True, "note": "复查合格"})
            assert (h["status"], h["outcome"]) == ("closed", "rectified")
            h = await assessor.get(f"/api/hazards/{hid}")
            case = [e for e in h["timeline"] if not e["action"].startswith("document.")]  # the opinion's seal follows
            closed = case[-1]
            assert closed["action"] == hz.HAZARD_CLOSED
            before = [e["id"] for e in h["evidence"] if e["stage"] == "before"]
            after = [e["id"] for e in h["evidence"] if e["stage"] == "proof"]
            assert closed["data"]["before_evidence"] == before and closed["data"]["after_evidence"] == after
            async with assessor.http.get(running.url + f"/api/evidence/{after[0]}") as resp:
                assert resp.status == 200 and resp.content_type == "image/jpeg"
            today = datetime.now(UTC).astimezone(hz.CHINA_TZ).date()
            k = await assessor.get(f"/api/kpi?from={today - timedelta(days=1)}&to={today + timedelta(days=1)}")
            assert k["headline"]["units_inspected"] == 1
            d = await assessor.get("/api/dashboard")
            assert d["hazards"]["open_total"] == 0 and d["incidents"] == {"active": 0, "unacknowledged": 0}
            found = await assessor.get("/api/search?type=hazards&q=灭火器&status=all")
            assert [x["id"] for x in found["hazards"]] == [hid]
            await chain_ok(running.app)
        finally:
            for api in (officer, school, assessor):
                await api.close()
