"""The documents added to the case (issue 12): 责令立即改正通知书 (a violation corrected on the spot), 复查意见书 (every
officer's recheck of a notice) and 案件移送书 (a penalty beyond the station's authority is referred, not decided).
Each is printed from its own row under the hash chain (`audit verify` names the first altered one), laid out with the
seal block on its last page — and, for the referral, only once approved (a draft is watermarked 草稿)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from config.schema import FirelinkConfig
from console.appkeys import DB
from dispatch import hazards as hz
from dispatch.document_content import DOCUMENT_KINDS, verify_documents
from dispatch.hazard_models import CaseReferral, RecheckOpinion, RectificationNotice
from tests.hazards.conftest import config, hazard_app, jpeg, login, upload
from tests.hazards.test_document_layout import cn_day, named_config, pdf_pages
from tests.support import Api, RunningClock

# a station that decides only warnings and fines up to 500 yuan on individuals (a police station's usual authority)
SMALL_AUTHORITY: list[dict[str, Any]] = [{"target": "individual", "kind": "warning"},
                   {"target": "individual", "kind": "fine", "max_yuan": 500}]


START = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # the app's clock starts here; deadlines pass by moving it


def named(db_url: str, **overrides: Any) -> FirelinkConfig:
    """The test station, its officers with real names and badges, sessions that outlast the clock's moves."""
    cfg = config(db_url, console={"session_hours": 240}, **overrides)
    return cfg.model_copy(update={"users": named_config(db_url).users})


def small_station(db_url: str) -> FirelinkConfig:
    return named(db_url, hazards={"station_authority": SMALL_AUTHORITY})


def test_new_kinds_are_registered() -> None:
    """A generic reader of DOCUMENT_KINDS (audit verify, lists of documents) sees the new documents."""
    keys = {k.key: k for k in DOCUMENT_KINDS}
    assert {"immediate", "opinion", "referral"} <= set(keys)
    assert keys["immediate"].actions == (hz.NOTICE_IMMEDIATE,) and keys["opinion"].actions == (hz.RECHECKED,)
    assert keys["referral"].actions == (hz.PENALTY_REFERRED, hz.REFERRAL_APPROVED)


async def test_immediate_correction_notice(sqlite_url: str) -> None:
    async with hazard_app(named(sqlite_url), clock=RunningClock(START)) as running:
        officer, hotel = await login(running.url, "officer"), await login(running.url, "hotel")
        try:
            h = await officer.post("/api/hazards", {"unit_id": "hotel-1", "category": "blocked_exit",
                                                    "source": "inspection", "description": "二楼安全出口堆放纸箱"})
            for stage, color in (("before", (200, 30, 30)), ("after", (30, 200, 30))):
                status, _ = await upload(officer, f"/api/hazards/{h['id']}/evidence",
                                         [(f"{stage}.jpg", jpeg(color), "image/jpeg")], stage=stage)
                assert status == 200
            url = f"/api/hazards/{h['id']}/notice"
            # refused, nothing written: a deadline on an order to correct at once; a basis that does not cover it
            status, body = await officer.request("POST", url, {"immediate": True, "days": 1})
            assert status == 400 and "no deadline" in body["error"], body
            status, body = await officer.request("POST", url, {"immediate": True, "basis": ["fire_law_60_1_1"]})
            assert status == 400 and "does not cover" in body["error"], body
            status, body = await officer.request("POST", url, {"days": 1, "basis": ["fire_law_60_1_3"]})
            assert status == 400, body
            assert (await officer.get(f"/api/hazards/{h['id']}"))["status"] == "open"

            h = await officer.post(url, {"immediate": True})
            notice = h["notice"]
            assert (h["status"], h["outcome"], h["deadline"]) == ("closed", "rectified", None)
            assert notice["kind"] == "immediate" and notice["title"] == "责令立即改正通知书"
            assert "消立字" in notice["number"] and notice["number"].endswith("第0001号")
            assert [c["key"] for c in notice["basis"]] == ["fire_law_60_1_3"]  # item level, covering the violation
            detail = await officer.get(f"/api/hazards/{h['id']}")
            case = [e for e in detail["timeline"] if not e["action"].startswith("document.")]
            assert [e["action"] for e in case][-2:] == [hz.NOTICE_IMMEDIATE, hz.HAZARD_CLOSED]
            assert case[-1]["data"]["on_the_spot"] is True
            sealed = [e["data"] for e in detail["timeline"] if e["action"] == "document.pdf_sealed"]
            assert [(d["kind"], d["immediate_id"]) for d in sealed] == [("immediate", notice["id"])]

            pages = await pdf_pages(hotel, notice["pdf"])  # the unit gets it too
            text, last = "".join(pages), pages[-1]
            assert "责令立即改正通知书" in text and notice["number"] in text and "立即改正" in text
            assert "《中华人民共和国消防法》第六十条第一款第（三）项" in text and "第二十八条" in text
            assert "限期" not in text and "前改正" not in text
            assert "证据：现场照片及视频截图1张、整改后照片1张。" in text  # what the case holds, nothing else
            # issued, so sealed and dated: the seal block on the last page, with the text before it and the receipt
            assert "如不服本通知" in last, pages
            assert "（印章）" in last and cn_day(notice["issued_at"]) in last and "签收" in last
            assert "承办民警：韦明（警号451203）" in last and all("（印章）" not in p for p in pages[:-1])

            # the deadline notices keep their own number series
            h2 = await officer.post("/api/hazards", {"unit_id": "school-1", "category": "corridor_storage",
                                                     "source": "patrol"})
            h2 = await officer.post(f"/api/hazards/{h2['id']}/notice", {"days": 2})
            assert "消限字" in h2["notice"]["number"] and h2["notice"]["number"].endswith("第0001号")
            assert h2["notice"]["kind"] == "deadline" and h2["notice"]["basis"] == []

            async with running.app[DB].session() as s:
                assert await verify_documents(s) == (2, None)
                await s.execute(update(RectificationNotice).where(RectificationNotice.kind == "immediate")
                                .values(basis=[]))
                await s.commit()
                _, broken = await verify_documents(s)
            assert broken is not None and "immediate-correction notice" in broken.reason, broken
        finally:
            await officer.close()
            await hotel.close()


async def test_recheck_opinion_for_each_officer_recheck(sqlite_url: str) -> None:
    clock = RunningClock(START)
    async with hazard_app(named(sqlite_url), clock=clock) as running:
        officer, school = await login(running.url, "officer"), await login(running.url, "school")
        try:
            h = await officer.post("/api/hazards", {"unit_id": "school-1", "category": "corridor_storage",
                                                    "source": "patrol"})
            notice = (await officer.post(f"/api/hazards/{h['id']}/notice", {"days": 2}))["notice"]
            # before the deadline: not rectified yet, the unit still has time
            h = await officer.post(f"/api/hazards/{h['id']}/recheck", {"rectified": False, "note": "杂物仍未清理"})
            assert h["status"] == "notice_issued"
            clock.offset = timedelta(days=1)
            h = await officer.post(f"/api/hazards/{h['id']}/recheck", {"rectified": True, "note": "走道已清空"})
            assert (h["status"], h["outcome"]) == ("closed", "rectified")
            detail = await school.get(f"/api/hazards/{h['id']}")
            first, second = detail["opinions"]
            assert [o["recheck_id"] for o in detail["opinions"]] == [r["id"] for r in detail["rechecks"]]
            assert "消复字" in first["number"] and (first["rectified"], second["rectified"]) == (False, True)
            assert first["notice_number"] == notice["number"] and first["deadline"] == notice["deadline"]
            rechecked = [e for e in detail["timeline"] if e["action"] == hz.RECHECKED]
            assert [e["data"]["number"] for e in rechecked] == [first["number"], second["number"]]

            wording = hz.deadline_wording(datetime.fromisoformat(notice["deadline"]))
            for o, result, advice in ((first, "复查结果：未改正", "在改正期限届满前改正"),
                                      (second, "复查结果：已改正", "上述火灾隐患已经消除")):
                pages = await pdf_pages(school, o["pdf"])  # the unit sees why a recheck failed, in writing
                assert len(pages) == 1, pages
                text = pages[0]
                assert "复查意见书" in text and o["number"] in text and notice["number"] in text
                assert cn_day(notice["issued_at"]) in text and wording in text
                assert result in text and advice in text and o["note"] in text
                assert "复查民警：韦明（警号451203）" in text and "（印章）" in text and cn_day(o["issued_at"]) in text

            async with running.app[DB].session() as s:
                assert await verify_documents(s) == (3, None)  # the notice and two opinions
                await s.execute(update(RecheckOpinion).where(RecheckOpinion.id == first["id"])
                                .values(rectified=True))
                await s.commit()
                _, broken = await verify_documents(s)
            assert broken is not None and "recheck opinion" in broken.reason and first["number"] in broken.reason
        finally:
            await officer.close()
            await school.close()


async def overdue(officer: Api, clock: RunningClock, unit_id: str, category: str) -> dict[str, Any]:
    """notice → the deadline passes (the clock moves) → failed recheck: the proposed penalty."""
    h = await officer.post("/api/hazards", {"unit_id": unit_id, "category": category, "source": "patrol"})
    await officer.post(f"/api/hazards/{h['id']}/notice", {"days": 1})
    clock.offset += timedelta(days=1, minutes=1)
    h = await officer.post(f"/api/hazards/{h['id']}/recheck", {"rectified": False, "note": "到期复查：仍未整改"})
    assert h["status"] == "penalty"
    pen: dict[str, Any] = (await officer.get(f"/api/hazards/{h['id']}"))["penalties"][0]
    return pen


async def test_penalty_beyond_the_station_is_referred(sqlite_url: str) -> None:
    clock = RunningClock(START)
    async with hazard_app(small_station(sqlite_url), clock=clock) as running:
        officer, admin = await login(running.url, "officer"), await login(running.url, "admin")
        try:
            cfg = await officer.get("/api/hazards/config")
            assert cfg["station_authority"] == [{**a, "max_yuan": a.get("max_yuan", 0)} for a in SMALL_AUTHORITY]
            pen = await overdue(officer, clock, "hotel-1", "blocked_exit")
            hid = pen["hazard_id"]
            assert (pen["target"], pen["kind"], pen["amount_yuan"]) == ("unit", "fine", 5000)
            # the station may not decide a unit fine: refused as a station decision, nothing written
            status, body = await officer.request("POST", f"/api/penalties/{pen['id']}/confirm", {})
            assert status == 400 and "beyond the station's authority" in body["error"], body
            assert "消防救援大队" in body["error"]
            # a penalty within the authority is decided here, not referred
            status, body = await officer.request("POST", f"/api/penalties/{pen['id']}/refer", {
                "target": "individual", "kind": "fine", "amount_yuan": 200, "person_name": "韦某"})
            assert status == 400 and "within the station's authority" in body["error"], body
            h = await officer.get(f"/api/hazards/{hid}")
            assert h["penalties"][0]["status"] == "proposed" and h["referrals"] == []

            ref = await officer.post(f"/api/penalties/{pen['id']}/refer", {"amount_yuan": 8000})
            assert (ref["status"], ref["receiving_authority"], ref["amount_yuan"]) == ("proposed", "消防救援大队", 8000)
            assert "消移字" in ref["number"] and [c["key"] for c in ref["clauses"]] == ["fire_law_60_1_3"]
            assert ref["reason"] == "本所无权决定对单位罚款"
            h = await officer.get(f"/api/hazards/{hid}")
            assert h["penalties"][0]["status"] == "referred" and h["status"] == "penalty"
            status, _ = await officer.request("POST", f"/api/penalties/{pen['id']}/confirm", {})
            assert status == 409  # referred: no station decision any more
            notice, opinion = h["notices"][0], h["opinions"][0]
            assert ref["evidence"] == [f"《责令限期改正通知书》（{notice['number']}）",
                                       f"《复查意见书》（{opinion['number']}）", "复查记录1份（其中未整改1份）"]

            draft = await pdf_pages(officer, ref["pdf"])
            text = "".join(draft)
            assert "案件移送书" in text and ref["number"] in text and "消防救援大队：" in text
            assert f"环江宾馆“占用、堵塞、封闭疏散通道或安全出口”案（隐患编号{hid}）" in text
            assert "第六十条第一款第（三）项" in text and "第二十八条" in text and "捌仟元整" in text
            assert "本所无权决定对单位罚款" in text and "移送你单位依法处理" in text
            assert notice["number"] in text and opinion["number"] in text and "复查记录1份" in text
            assert "草稿" in text and "（印章）" not in text and "无印章" in text

            assert (await officer.request("POST", f"/api/referrals/{ref['id']}/approve"))[0] == 403
            ref = await admin.post(f"/api/referrals/{ref['id']}/approve")
            assert ref["status"] == "approved" and ref["approved_by_name"] == "蒙华（警号 451001）"
            assert (await admin.request("POST", f"/api/referrals/{ref['id']}/approve"))[0] == 409
            pages = await pdf_pages(officer, ref["pdf"])
            last = pages[-1]
            assert "草稿" not in "".join(pages) and "（印章）" in last and cn_day(ref["approved_at"]) in last
            assert "承办民警：韦明（警号451203）" in last and "审批：蒙华（警号451001）" in last
            assert "接收单位签收" in last
            assert all("（印章）" not in p for p in pages[:-1])

            h = await officer.get(f"/api/hazards/{hid}")
            assert (h["status"], h["outcome"]) == ("closed", "referred")
            assert (h["penalties"][0]["status"], h["penalties"][0]["closure"]) == ("closed", "referred")
            assert h["penalties"][0]["number"] is None  # the station decided nothing
            actions = [e["action"] for e in h["timeline"] if not e["action"].startswith("document.")]
            assert actions[-3:] == [hz.PENALTY_REFERRED, hz.REFERRAL_APPROVED, hz.HAZARD_CLOSED]
            sealed = [e["data"]["kind"] for e in h["timeline"] if e["action"] == "document.pdf_sealed"]
            assert sealed.count("referral") == 1  # sealed once, when approved (the draft was not)

            async with running.app[DB].session() as s:
                assert await verify_documents(s) == (3, None)  # notice, opinion, referral
                await s.execute(update(CaseReferral).values(amount_yuan=800))
                await s.commit()
                _, broken = await verify_documents(s)
            assert broken is not None and "case referral" in broken.reason, broken
        finally:
            await officer.close()
            await admin.close()


async def test_supervisor_does_not_approve_own_referral(db_url: str) -> None:
    clock = RunningClock(START)
    async with hazard_app(small_station(db_url), clock=clock) as running:
        admin = await login(running.url, "admin")
        try:
            pen = await overdue(admin, clock, "school-1", "corridor_storage")
            ref = await admin.post(f"/api/penalties/{pen['id']}/refer", {})
            status, body = await admin.request("POST", f"/api/referrals/{ref['id']}/approve")
            assert status == 403 and "drafted" in body["error"], body
            assert (await admin.get(f"/api/hazards/{pen['hazard_id']}"))["referrals"][0]["status"] == "proposed"
            async with running.app[DB].session() as s:
                assert await verify_documents(s) == (3, None)
        finally:
            await admin.close()
