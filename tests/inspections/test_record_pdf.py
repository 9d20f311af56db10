"""The 消防监督检查记录: rendered from the stored inspection (read back with pypdf and in pixels with pypdfium2), sealed
when submitted (its PDF's SHA-256 in the record), listed among the unit's documents, and re-checked by
`firelink audit verify`, which names the record when a result row or a photo's hash is altered afterwards."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from console.appkeys import DB
from dispatch.document_content import DOCUMENT_KINDS
from dispatch.document_pdf import PDF_KINDS, PDF_SEALED
from dispatch.models import RecordEntry
from tests.hazards.conftest import hazard_app, login
from tests.hazards.test_document_layout import named_config, pdf_pages, seal_pixels
from tests.inspections.support import inspect, phone_jpeg, send_photo
from tests.support import StepClock, config_yaml, run_cli


def test_the_inspection_record_is_a_document_kind_with_a_pdf() -> None:
    assert "inspection" in {k.key for k in DOCUMENT_KINDS} and not PDF_KINDS["inspection"].per_hazard


async def test_record_pdf_is_sealed_listed_and_verified(sqlite_url: str, tmp_path: Path) -> None:
    clock = StepClock(datetime(2026, 11, 10, 2, tzinfo=UTC))
    cfg = named_config(sqlite_url)
    async with hazard_app(cfg, clock=clock) as running:
        officer, admin, school = [await login(running.url, n) for n in ("officer", "admin", "school")]
        try:
            status, photo = await send_photo(officer, "school-1", phone_jpeg())
            assert status == 201
            made = await inspect(officer, "school-1", fails={"exits_clear": "东侧安全出口被货架堵塞"},
                                 photos=[{"photo_id": photo["id"], "item_id": "exits_clear"}],
                                 co_officers=["admin"], note="已当场责令清理")
            hazard = made["hazards"][0]
            pages = await pdf_pages(officer, made["pdf"])
            text = "".join(pages)
            for expected in ("消防监督检查记录", made["number"], "第一小学", "城北路18号", "日常消防监督检查",
                             "韦明（警号451203）", "蒙华（警号451001）", "东侧安全出口被货架堵塞", "不合格",
                             "《机关、团体、企业、事业单位消防安全管理规定》（公安部令第61号）第二十一条",
                             "占用、堵塞、封闭疏散通道或安全出口", photo["sha256"][:32], "韦保安", "已当场责令清理",
                             "24.82000°N，108.25000°E"):
                assert expected in text, expected
            assert f"{hazard['id']}第1项" in text  # the hazard found, with the item it came from
            red = await seal_pixels(officer, made["pdf"])
            assert red[-1] > 0 and not any(red[:-1]), red  # the seal and the date on the last page only
            # sealed when submitted: its PDF's SHA-256 is in the record (once), and the download matches it
            async with running.app[DB].session() as s:
                sealed = [e.data for e in (await s.scalars(select(RecordEntry).where(
                    RecordEntry.action == PDF_SEALED))).all()]
            assert [(d["kind"], d["inspection_id"]) for d in sealed] == [("inspection", made["id"])]
            async with officer.http.get(officer.base + made["pdf"]) as resp:
                assert hashlib.sha256(await resp.read()).hexdigest() == sealed[0]["pdf_sha256"]
            # part of the unit's archive: listed among its documents, served when the unit opens it
            docs = await school.get("/api/units/school-1/documents")
            assert [(d["kind"], d["number"], d["served_at"]) for d in docs] == [("inspection", made["number"], None)]
            async with school.http.get(school.base + docs[0]["pdf"]) as resp:
                assert resp.status == 200
            assert (await school.get("/api/units/school-1/documents"))[0]["served_at"] is not None
        finally:
            for api in (officer, admin, school):
                await api.close()
    path = config_yaml(cfg, tmp_path / "firelink.yaml")
    db_file = sqlite_url.split("///", 1)[1]
    with sqlite3.connect(db_file) as conn:  # a later registry edit: the record prints the unit as inspected
        conn.execute("UPDATE units SET address = '新地址1号' WHERE id = 'school-1'")
    code, out, err = await run_cli("--config", str(path), "audit", "verify")
    assert code == 0 and "1 documents match" in out and "1 sealed PDFs match" in out, (out, err)
    with sqlite3.connect(db_file) as conn:  # a failed item turned into a pass after the fact
        conn.execute("UPDATE inspection_items SET result = 'pass', note = '' WHERE result = 'fail'")
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 1 and "document BROKEN" in out and "inspection record" in out and made["number"] in out, out
    with sqlite3.connect(db_file) as conn:
        conn.execute("UPDATE inspection_items SET result = 'fail', note = '东侧安全出口被货架堵塞' "
                     "WHERE item_id = 'exits_clear'")
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 0, out
    with sqlite3.connect(db_file) as conn:  # the photo's hash in its row swapped for another
        conn.execute("UPDATE inspection_photos SET sha256 = ?", ("0" * 64,))
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 1 and "inspection record" in out, out
