"""The SHA-256 of every sealed PDF in the record (dispatch/document_pdf.py), and `firelink audit verify` rendering
each again: untampered passes; a change to what a PDF is printed from that the content hash does not cover (the
hazard's description) fails and names the document. Later photos and rechecks do not change an issued document."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from console.appkeys import DB
from dispatch.document_content import DOCUMENT_KINDS
from dispatch.document_pdf import PDF_KINDS, PDF_SEALED
from dispatch.models import RecordEntry
from tests.hazards.conftest import config, hazard_app, jpeg, login, upload
from tests.support import Api, StepClock, config_yaml, run_cli


def test_every_document_kind_has_a_pdf_kind() -> None:
    assert set(PDF_KINDS) == {k.key for k in DOCUMENT_KINDS}


async def pdf_bytes(api: Api, path: str) -> bytes:
    async with api.http.get(api.base + path) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def sealed(running: Any) -> dict[tuple[str, int], str]:
    async with running.app[DB].session() as s:
        entries = (await s.scalars(select(RecordEntry).where(RecordEntry.action == PDF_SEALED)
                                   .order_by(RecordEntry.id))).all()
    out = {}
    for e in entries:
        key = (e.data["kind"], e.data[f"{e.data['kind']}_id"])
        assert key not in out, "a document's PDF hash is recorded once"
        out[key] = e.data["pdf_sha256"]
    return out


async def test_sealed_pdfs_are_hashed_in_the_record_and_verified(sqlite_url: str, tmp_path: Path) -> None:
    clock = StepClock(datetime(2026, 11, 10, 2, tzinfo=UTC))
    cfg = config(sqlite_url, console={"session_hours": 240})
    async with hazard_app(cfg, clock=clock) as running:
        officer, admin = await login(running.url, "officer"), await login(running.url, "admin")
        try:
            h = await officer.post("/api/hazards", {"unit_id": "school-1", "category": "corridor_storage",
                                                    "source": "patrol", "description": "走廊堆放杂物"})
            await upload(officer, f"/api/hazards/{h['id']}/evidence", [("a.jpg", jpeg(), "image/jpeg")],
                         stage="before")
            h = await officer.post(f"/api/hazards/{h['id']}/notice", {"days": 1})
            notice = h["notice"] if h.get("notice") else (await officer.get(f"/api/hazards/{h['id']}"))["notices"][0]
            recorded = await sealed(running)
            assert list(recorded) == [("notice", notice["id"])]  # sealed when issued
            notice_pdf = await pdf_bytes(officer, notice["pdf"])
            assert hashlib.sha256(notice_pdf).hexdigest() == recorded["notice", notice["id"]]
            # a photo taken after the notice was issued is not on it: the issued PDF does not change
            clock.advance(3600)
            await upload(officer, f"/api/hazards/{h['id']}/evidence", [("b.jpg", jpeg((0, 90, 0)), "image/jpeg")],
                         stage="before")
            assert await pdf_bytes(officer, notice["pdf"]) == notice_pdf
            clock.advance(24 * 3600)
            await officer.post(f"/api/hazards/{h['id']}/recheck", {"rectified": False, "note": "到期复查：仍未整改"})
            pen = (await officer.get(f"/api/hazards/{h['id']}"))["penalties"][0]
            pen = await officer.post(f"/api/penalties/{pen['id']}/confirm", {"amount_yuan": 8000})
            recorded = await sealed(running)
            assert ("inform", pen["inform"]["id"]) in recorded and ("penalty", pen["id"]) not in recorded  # a draft
            await pdf_bytes(officer, pen["pdf"])  # downloading the draft seals nothing
            assert ("penalty", pen["id"]) not in await sealed(running)
            await officer.post(f"/api/penalties/{pen['id']}/statement", {"statement": "waived"})
            pen = await admin.post(f"/api/penalties/{pen['id']}/approve")
            recorded = await sealed(running)
            decision = await pdf_bytes(officer, pen["pdf"])
            assert hashlib.sha256(decision).hexdigest() == recorded["penalty", pen["id"]]
            # a recheck after the approval is not in the approved decision's evidence list
            clock.advance(3600)
            await officer.post(f"/api/hazards/{h['id']}/recheck", {"rectified": True, "note": "已整改"})
            assert await pdf_bytes(officer, pen["pdf"]) == decision
            # notice, its failed recheck's opinion, 告知书, decision, the passing recheck's opinion: each sealed once
            assert sorted(k for k, _ in await sealed(running)) == ["inform", "notice", "opinion", "opinion", "penalty"]
        finally:
            await officer.close()
            await admin.close()
    path = config_yaml(cfg, tmp_path / "firelink.yaml")
    code, out, err = await run_cli("--config", str(path), "audit", "verify")
    assert code == 0 and "5 sealed PDFs match" in out, (out, err)
    db_file = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(db_file) as conn:  # printed on the notice, not part of its content hash
        conn.execute("UPDATE hazards SET description = '无隐患'")
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 1 and "PDF BROKEN" in out and "rectification notice" in out, out
    with sqlite3.connect(db_file) as conn:
        conn.execute("UPDATE hazards SET description = '走廊堆放杂物'")
        conn.execute("UPDATE units SET contact_phone = '00000000' WHERE id = 'school-1'")  # on the decision only
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 1 and "PDF BROKEN" in out and "penalty decision" in out, out


async def test_unit_sees_its_documents_with_issued_and_served_dates_and_rechecks(sqlite_url: str) -> None:
    clock = StepClock(datetime(2026, 11, 10, 2, tzinfo=UTC))
    async with hazard_app(config(sqlite_url, console={"session_hours": 240}), clock=clock) as running:
        officer, school, hotel = [await login(running.url, n) for n in ("officer", "school", "hotel")]
        try:
            h = await officer.post("/api/hazards", {"unit_id": "school-1", "category": "corridor_storage",
                                                    "source": "inspection"})
            issued = clock()
            await officer.post(f"/api/hazards/{h['id']}/notice", {"days": 1})
            docs = await school.get("/api/units/school-1/documents")
            assert [(d["kind"], d["served_at"], d["rechecks"]) for d in docs] == [("notice", None, [])]
            assert datetime.fromisoformat(docs[0]["issued_at"]) == issued
            # another unit sees none of it; the officers see every unit's
            status, _ = await hotel.request("GET", "/api/units/school-1/documents")
            assert status == 403
            assert await hotel.get("/api/units/hotel-1/documents") == []
            assert len(await officer.get("/api/units/school-1/documents")) == 1
            # an officer opening it serves nothing; the unit opening it is the service (once)
            await pdf_bytes(officer, docs[0]["pdf"])
            assert (await school.get("/api/units/school-1/documents"))[0]["served_at"] is None
            clock.advance(600)
            opened = clock()
            await pdf_bytes(school, docs[0]["pdf"])
            clock.advance(600)
            await pdf_bytes(school, docs[0]["pdf"])
            docs = await school.get("/api/units/school-1/documents")
            assert datetime.fromisoformat(docs[0]["served_at"]) == opened
            # the recheck's result and note, with the confirmation's 告知书 (the draft decision is not listed)
            clock.advance(24 * 3600)
            await officer.post(f"/api/hazards/{h['id']}/recheck", {"rectified": False, "note": "通道仍被占用"})
            pen = (await officer.get(f"/api/hazards/{h['id']}"))["penalties"][0]
            await officer.post(f"/api/penalties/{pen['id']}/confirm", {"amount_yuan": 8000})
            docs = await school.get("/api/units/school-1/documents")
            # newest first (the recheck's opinion and the 告知书 were sealed at the same instant: by kind)
            assert [d["kind"] for d in docs] == ["opinion", "inform", "notice"]
            assert [(r["rectified"], r["note"]) for r in docs[2]["rechecks"]] == [(False, "通道仍被占用")]
            assert docs[1]["served_at"] is None and docs[1]["number"] and docs[1]["pdf"].endswith("/pdf")
        finally:
            for api in (officer, school, hotel):
                await api.close()
