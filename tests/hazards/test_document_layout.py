"""Documents name officers by real name and badge number (警号), and keep the seal block with the text:
a one-clause notice is one page, and the seal ("（印章）" inside it) and the date sit on the last page."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from config.schema import FirelinkConfig
from tests.hazards.conftest import config, hazard_app, login
from tests.hazards.test_documents import overdue_case
from tests.support import Api

NAMES = {"officer": ("韦明", "451203"), "admin": ("蒙华", "451001")}


def named_config(db_url: str) -> FirelinkConfig:
    cfg = config(db_url)
    users = [u.model_copy(update={"real_name": NAMES[u.username][0], "badge": NAMES[u.username][1]})
             if u.username in NAMES else u for u in cfg.users]
    return cfg.model_copy(update={"users": users})


async def pdf_pages(api: Api, path: str) -> list[str]:
    """The text of each page, whitespace removed (CJK lines wrap anywhere)."""
    from pypdf import PdfReader

    async with api.http.get(api.base + path) as resp:
        assert resp.status == 200, await resp.text()
        data = await resp.read()
    return ["".join((page.extract_text() or "").split()) for page in PdfReader(io.BytesIO(data)).pages]


async def seal_pixels(api: Api, path: str) -> list[int]:
    """Per page of the PDF rendered to an image (pypdfium2, 144 dpi): how many pixels are the seal's red (#c00).
    The draft note's darker red (#a00) and anti-aliased edges do not count."""
    import numpy as np
    import pypdfium2 as pdfium

    async with api.http.get(api.base + path) as resp:
        assert resp.status == 200, await resp.text()
        data = await resp.read()
    counts = []
    for page in pdfium.PdfDocument(data):
        rgb = np.asarray(page.render(scale=2).to_pil().convert("RGB")).astype(int)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        counts.append(int(((abs(r - 204) <= 12) & (g <= 25) & (b <= 25)).sum()))
    return counts


def cn_day(iso: str) -> str:
    local = datetime.fromisoformat(iso).astimezone(UTC) + timedelta(hours=8)
    return f"{local.year}年{local.month}月{local.day}日"


async def test_me_shows_real_name_and_badge(sqlite_url: str) -> None:
    async with hazard_app(named_config(sqlite_url)) as running:
        officer, school = await login(running.url, "officer"), await login(running.url, "school")
        try:
            me = (await officer.get("/api/me"))["user"]
            assert (me["username"], me["real_name"], me["badge"]) == ("officer", "韦明", "451203")
            me = (await school.get("/api/me"))["user"]
            assert (me["real_name"], me["badge"]) == ("", "")
        finally:
            await officer.close()
            await school.close()


async def test_one_clause_notice_is_one_page_with_seal_and_real_name(sqlite_url: str) -> None:
    async with hazard_app(named_config(sqlite_url)) as running:
        officer = await login(running.url, "officer")
        try:
            h = await officer.post("/api/hazards", {"unit_id": "school-1", "category": "corridor_storage",
                                                    "source": "patrol", "description": "视频巡查发现"})
            h = await officer.post(f"/api/hazards/{h['id']}/notice", {"days": 3})
            notice = h["notice"]
            assert len(notice["clauses"]) == 1 and notice["issued_by_name"] == "韦明（警号 451203）"
            pages = await pdf_pages(officer, notice["pdf"])
            assert len(pages) == 1, pages
            last = pages[-1]
            # the seal block (the authority, "（印章）" and the date) and the receipt on the page with the text
            assert "（印章）" in last and cn_day(notice["issued_at"]) in last and "签收" in last
            assert "责令限期改正通知书" in last and notice["number"] in last
            assert "承办民警：韦明（警号451203）" in last and "承办民警：officer" not in last
        finally:
            await officer.close()


async def test_decision_prints_real_names_and_falls_back_to_login_name(sqlite_url: str) -> None:
    cfg = named_config(sqlite_url)
    cfg = cfg.model_copy(update={"users": [u.model_copy(update={"real_name": "", "badge": ""})
                                           if u.username == "admin" else u for u in cfg.users]})
    async with hazard_app(cfg) as running:
        officer, admin = await login(running.url, "officer"), await login(running.url, "admin")
        try:
            pen: dict[str, Any] = await overdue_case(officer, "hotel-1", "blocked_exit")
            pen = await officer.post(f"/api/penalties/{pen['id']}/confirm", {
                "target": "individual", "kind": "fine", "amount_yuan": 200, "person_name": "韦某"})
            told = await pdf_pages(officer, pen["inform"]["pdf"])  # 行政处罚告知书: served sealed, by the real name
            assert len(told) == 1 and "（印章）" in told[-1] and "承办民警：韦明（警号451203）" in told[-1], told
            assert (await seal_pixels(officer, pen["inform"]["pdf"]))[-1] > 300
            # rendered as the unit will print it: the draft decision carries no seal on any page
            assert not any(await seal_pixels(officer, pen["pdf"]))
            await officer.post(f"/api/penalties/{pen['id']}/statement", {"statement": "waived"})
            pen = await admin.post(f"/api/penalties/{pen['id']}/approve")
            assert (pen["confirmed_by_name"], pen["approved_by_name"]) == ("韦明（警号 451203）", "admin")
            seal = await seal_pixels(officer, pen["pdf"])  # approved: the red seal, on the last page only
            assert seal[-1] > 300 and not any(seal[:-1]), seal
            pages = await pdf_pages(officer, pen["pdf"])
            assert len(pages) == len(seal)
            last = pages[-1]
            assert "（印章）" in last and cn_day(pen["approved_at"]) in last
            assert "承办民警：韦明（警号451203）" in last and "审批：admin" in last  # no real name: the login name
        finally:
            await officer.close()
            await admin.close()
