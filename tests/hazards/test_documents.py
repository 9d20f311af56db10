"""Legal documents that hold up: the seeds' case end to end (video patrol → notice → deadline → failed recheck →
¥200 fine on the responsible person → approval by another user → paid), the clause database's checks, the seal
only after approval, and `firelink audit verify` over the rows documents are printed from."""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from console.appkeys import DB
from dispatch.document_content import verify_documents
from dispatch.hazard_models import PenaltyDecision, RectificationNotice
from tests.hazards.conftest import config, hazard_app, login, wait_status
from tests.support import Api, config_yaml, run_cli

ID_NUMBER = "450202198805061234"




async def pdf_text(api: Api, path: str) -> str:
    from pypdf import PdfReader

    async with api.http.get(api.base + path) as resp:
        assert resp.status == 200, await resp.text()
        data = await resp.read()
    text = "".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)
    return "".join(text.split())  # CJK lines wrap anywhere: compare without whitespace


async def overdue_case(officer: Api, unit_id: str, category: str) -> dict[str, Any]:
    """A hazard through notice → deadline → failed recheck: its proposed penalty is returned."""
    h = await officer.post("/api/hazards", {"unit_id": unit_id, "category": category, "source": "patrol",
                                            "description": "视频巡查发现"})
    # a deadline the server must still see as future on a loaded machine, then passing within wait_status's time
    deadline = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    await officer.post(f"/api/hazards/{h['id']}/notice", {"deadline": deadline})
    await wait_status(officer, h["id"], "recheck_due")
    h = await officer.post(f"/api/hazards/{h['id']}/recheck", {"rectified": False, "note": "到期复查：仍未整改"})
    assert h["status"] == "penalty"
    return (await officer.get(f"/api/hazards/{h['id']}"))["penalties"][0]


async def test_seeds_case_fine_on_the_responsible_person(sqlite_url: str, tmp_path: Path) -> None:
    cfg = config(sqlite_url)
    async with hazard_app(cfg) as running:
        officer, admin = await login(running.url, "officer"), await login(running.url, "admin")
        try:
            pen = await overdue_case(officer, "hotel-1", "blocked_exit")
            hid = pen["hazard_id"]
            # a fine above the clause's range for an individual (¶2: ≤ 500 yuan) is refused, nothing changes
            status, body = await officer.request("POST", f"/api/penalties/{pen['id']}/confirm", {
                "target": "individual", "kind": "fine", "amount_yuan": 600, "person_name": "韦某"})
            assert status == 400 and "1–500" in body["error"], body
            assert (await officer.get(f"/api/hazards/{hid}"))["penalties"][0]["status"] == "proposed"
            # a malformed identity number is refused at the edge
            status, _ = await officer.request("POST", f"/api/penalties/{pen['id']}/confirm", {
                "target": "individual", "kind": "fine", "amount_yuan": 200, "person_name": "韦某",
                "person_id": "12345"})
            assert status == 400
            pen = await officer.post(f"/api/penalties/{pen['id']}/confirm", {
                "target": "individual", "kind": "fine", "amount_yuan": 200, "person_name": "韦某",
                "person_id": ID_NUMBER})
            assert (pen["status"], pen["amount_yuan"], pen["person_id"]) == ("confirmed", 200, ID_NUMBER)
            assert [c["key"] for c in pen["clauses"]] == ["fire_law_60_2"]
            # before approval: a draft, watermarked, no seal and no date
            draft = await pdf_text(officer, pen["pdf"])
            assert "草稿" in draft and "（印章）" not in draft and "无印章" in draft
            # the 行政处罚告知书 was served with the confirmation: facts, basis, intended penalty, the party's rights
            inform = pen["inform"]
            assert "消罚告字" in inform["number"] and inform["hearing"] is False
            told = await pdf_text(officer, inform["pdf"])
            assert "行政处罚告知书" in told and "韦某" in told and "拟" in told and "¥200元" in told
            assert "第六十条第二款" in told and "陈述和申辩" in told and "听证" not in told
            reply_by = datetime.fromisoformat(inform["reply_by"])
            assert reply_by - datetime.fromisoformat(inform["issued_at"]) == timedelta(days=3)
            # no decision before the party was heard (or waived it), while its three days run
            status, body = await admin.request("POST", f"/api/penalties/{pen['id']}/approve")
            assert status == 409 and "state and defend" in body["error"], body
            status, body = await officer.request("POST", f"/api/penalties/{pen['id']}/statement",
                                                 {"statement": "stated"})
            assert status == 400 and "what the party stated" in body["error"], body
            pen = await officer.post(f"/api/penalties/{pen['id']}/statement",
                                     {"statement": "stated", "note": "当事人称已安排清理，请求从轻处罚"})
            assert pen["status"] == "confirmed" and pen["inform"]["statement"] == "stated"
            status, _ = await officer.request("POST", f"/api/penalties/{pen['id']}/statement", {"statement": "waived"})
            assert status == 409  # recorded once
            pen = await admin.post(f"/api/penalties/{pen['id']}/approve")
            final = await pdf_text(officer, pen["pdf"])
            assert "草稿" not in final and "（印章）" in final
            local = datetime.fromisoformat(pen["approved_at"]).astimezone(UTC) + timedelta(hours=8)
            assert f"{local.year}年{local.month}月{local.day}日" in final
            assert "韦某" in final and ID_NUMBER in final and "¥200元" in final and "贰佰元整" in final
            assert "第六十条第二款" in final and "第二十八条" in final  # the penalty clause and the provision violated
            assert "第六十条第一款" not in final
            # the evidence list is what the case holds: the notice and one failed recheck, no photos
            assert "复查记录1份（其中未整改1份）" in final and "照片" not in final.split("等证据证实")[0][-80:]
            # one deadline wording on both documents
            h = await officer.get(f"/api/hazards/{hid}")
            notice = await pdf_text(officer, h["notices"][0]["pdf"])
            wording = next(w for w in final.split("责令其")[1:2]).split("，")[0]
            assert wording.startswith("于") and wording.endswith("前改正") and "时" in wording
            assert wording in notice
            pen = await officer.post(f"/api/penalties/{pen['id']}/close", {"note": "已缴纳"})
            assert pen["closure"] == "paid"
            async with running.app[DB].session() as s:
                docs, broken = await verify_documents(s)
            assert (docs, broken) == (4, None)  # notice, 复查意见书, 告知书, decision
        finally:
            await officer.close()
            await admin.close()
    # audit verify: intact, then each tampering of a document's source row is found and named
    path = config_yaml(cfg, tmp_path / "firelink.yaml")
    code, out, err = await run_cli("--config", str(path), "audit", "verify")
    assert code == 0 and "intact" in out and "4 documents" in out, (out, err)
    db_file = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(db_file) as conn:
        deadline = conn.execute("SELECT deadline FROM rectification_notices").fetchone()[0]
        conn.execute("UPDATE penalty_decisions SET amount_yuan = 20")
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 1 and "document BROKEN" in out and "penalty decision" in out, out
    with sqlite3.connect(db_file) as conn:
        conn.execute("UPDATE penalty_decisions SET amount_yuan = 200")
        conn.execute("UPDATE rectification_notices SET deadline = '2099-01-01 00:00:00.000000'")
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 1 and "rectification notice" in out, out
    with sqlite3.connect(db_file) as conn:
        conn.execute("UPDATE rectification_notices SET deadline = ?", (deadline,))
        conn.execute("UPDATE penalty_notices SET amount_yuan = 20")
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 1 and "行政处罚告知书" in out, out
    with sqlite3.connect(db_file) as conn:
        conn.execute("UPDATE penalty_notices SET amount_yuan = 200")
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 0 and "4 documents" in out, out


async def test_document_rows_under_the_hash_chain(db_url: str) -> None:
    async with hazard_app(config(db_url)) as running:
        officer = await login(running.url, "officer")
        try:
            pen = await overdue_case(officer, "school-1", "corridor_storage")
            await officer.post(f"/api/penalties/{pen['id']}/confirm", {"amount_yuan": 8000})
            db = running.app[DB]
            async with db.session() as s:
                assert (await verify_documents(s))[1] is None
                await s.execute(update(PenaltyDecision).values(amount_yuan=20))
                await s.commit()
                _, broken = await verify_documents(s)
                assert broken is not None and "penalty decision" in broken.reason
                await s.execute(update(PenaltyDecision).values(amount_yuan=8000))
                await s.execute(update(RectificationNotice).values(deadline=datetime(2099, 1, 1, tzinfo=UTC)))
                await s.commit()
                _, broken = await verify_documents(s)
                assert broken is not None and "rectification notice" in broken.reason
        finally:
            await officer.close()


async def test_large_fine_gives_hearing_rights_and_approval_after_the_period(sqlite_url: str) -> None:
    """A unit fine of ¥10,000 (较大数额): the 告知书 offers a hearing within five days; with no statement recorded the
    decision may be approved once that period has run out, not before."""
    shift = timedelta(0)

    def clock() -> datetime:
        return datetime.now(UTC) + shift

    async with hazard_app(config(sqlite_url, console={"session_hours": 240}), clock=clock) as running:
        officer, admin = await login(running.url, "officer"), await login(running.url, "admin")
        try:
            h = await officer.post("/api/hazards", {"unit_id": "school-1", "category": "corridor_storage",
                                                    "source": "patrol"})
            await officer.post(f"/api/hazards/{h['id']}/notice", {"days": 1})
            shift = timedelta(days=1, minutes=1)
            h = await officer.post(f"/api/hazards/{h['id']}/recheck", {"rectified": False, "note": "未整改"})
            assert h["status"] == "penalty"
            pen = (await officer.get(f"/api/hazards/{h['id']}"))["penalties"][0]
            pen = await officer.post(f"/api/penalties/{pen['id']}/confirm", {"amount_yuan": 10000})
            inform = pen["inform"]
            assert inform["hearing"] is True
            assert datetime.fromisoformat(inform["reply_by"]) - datetime.fromisoformat(inform["issued_at"]) == \
                timedelta(days=5)
            told = await pdf_text(officer, inform["pdf"])
            assert "要求举行听证" in told and "五日内" in told and "壹万元整" in told
            shift += timedelta(days=4, hours=23)
            status, _ = await admin.request("POST", f"/api/penalties/{pen['id']}/approve")
            assert status == 409
            shift += timedelta(hours=2)
            pen = await admin.post(f"/api/penalties/{pen['id']}/approve")
            assert pen["status"] == "approved" and pen["inform"]["statement"] == ""
        finally:
            await officer.close()
            await admin.close()


async def test_citations_checked_against_the_clause_database(sqlite_url: str) -> None:
    async with hazard_app(config(sqlite_url)) as running:
        officer = await login(running.url, "officer")
        try:
            pen = await overdue_case(officer, "school-1", "missing_extinguisher")
            assert [c["key"] for c in pen["clauses"]] == ["fire_law_60_1_1"]  # ¶1 item 1, not all of ¶1
            url = f"/api/penalties/{pen['id']}/confirm"
            # a warning on an individual for a missing extinguisher: ¶2 covers items 2–5 only
            status, body = await officer.request("POST", url, {"target": "individual", "kind": "warning",
                                                               "person_name": "韦某"})
            assert status == 400 and "no clause" in body["error"], body
            status, body = await officer.request("POST", url, {"target": "individual", "kind": "warning",
                                                               "person_name": "韦某", "clauses": ["fire_law_60_2"]})
            assert status == 400 and "does not cover" in body["error"], body
            status, body = await officer.request("POST", url, {"clauses": ["fire_law_60_2"]})  # unit fine under ¶2
            assert status == 400, body
            status, body = await officer.request("POST", url, {"clauses": ["fire_law_28"]})  # not a penalty clause
            assert status == 400, body
            status, body = await officer.request("POST", url, {"amount_yuan": 60000})
            assert status == 400 and "5000–50000" in body["error"], body
            h = await officer.get(f"/api/hazards/{pen['hazard_id']}")
            assert h["penalties"][0]["status"] == "proposed" and h["penalties"][0]["number"] is None
            pen = await officer.post(url, {"amount_yuan": 5000})
            assert pen["status"] == "confirmed" and [c["citation"] for c in pen["clauses"]] == [
                "《中华人民共和国消防法》第六十条第一款第（一）项"]
        finally:
            await officer.close()
