"""Issued documents as PDF, and the SHA-256 of each sealed PDF in the hash-chained record.

`PDF_KINDS` names, for every kind of dispatch.document_content.DOCUMENT_KINDS (by key), how its PDF is rendered and
when it is sealed (issued with the seal: a notice once issued, a 告知书 once served, a decision once approved). A
sealed document's PDF bytes are hashed once, when it is sealed (the console calls `DocumentSeals.seal` after the
command that seals it, and again on any download that finds it missing), into a `document.pdf_sealed` record entry
of its own: data `kind`, `<kind>_id`, `number`, `pdf_sha256`, `bytes`.

The code base renders PDFs from their rows on demand (nothing stores the bytes), and WeasyPrint's output is
byte-for-byte repeatable, so `verify_pdfs` (`firelink audit verify`) renders each sealed document again and names the
first whose PDF no longer matches what was recorded: a row, a photo it lists, the station's configuration or the
templates changed after it was issued. A document lists the evidence the case held when it was issued (see
HazardViews), so later photos and rechecks do not change it.

A sealed document is served on the unit (电子送达) when the unit's own account first opens its PDF here: a
`document.received` entry (by that account, with the SHA-256 of the bytes it received). `unit_documents` lists a
unit's sealed documents of every kind with those two dates and the recheck results and notes of their cases.

The 消防监督检查记录 (kind `inspection`) is a document of the unit, not of a case (`per_hazard=False`): it is sealed
when the inspection is submitted (`seal_one`), its entries carry no hazard id but the unit's, and the unit's
document list includes it.

A new kind of document adds its DocumentKind and its PdfKind here (tests check that every kind has one).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from dispatch import documents
from dispatch.actor import SYSTEM, Actor
from dispatch.db import Database
from dispatch.document_content import DOCUMENT_KINDS
from dispatch.hazard_models import Hazard, Recheck
from dispatch.hazard_rows import check_visible, unit_of
from dispatch.hazard_views import HazardViews
from dispatch.hazards import NOTICE_TITLES
from dispatch.inspection_views import KIND_NAMES, inspection_document
from dispatch.models import RecordEntry
from dispatch.records import ChainBreak
from dispatch.views import iso
from dispatch.writer import Writer
from ingest.contract import utcnow

PDF_SEALED = "document.pdf_sealed"
# the unit's own account opened the sealed document in Firelink for the first time: served on it (电子送达)
RECEIVED = "document.received"

RenderPdf = Callable[[str], Awaitable[bytes]]  # HTML → PDF bytes (the console: in its heavy-work limiter)


@dataclass(frozen=True, slots=True)
class Printable:
    """A document ready to print: its HTML, the file name it is served under, its row and hazard (None: a document
    of the unit, not of a case — the inspection record)."""

    html: str
    filename: str
    row: Any
    hazard_id: int | None
    unit_id: str


@dataclass(frozen=True, slots=True)
class PdfKind:
    printable: Callable[[HazardViews, int, Actor], Awaitable[Printable]]
    sealed: Callable[[Any], bool]  # does this row print with the seal (an issued document)?
    url: str  # where its PDF is served, with {id}
    per_hazard: bool = True  # rows of a case (model.hazard_id); else rows of a unit (model.unit_id), sealed one by one


async def _notice(views: HazardViews, notice_id: int, actor: Actor) -> Printable:
    doc = await views.notice_document(notice_id, actor)
    n = doc["notice"]
    detail = await views.detail(n.hazard_id, actor)
    issued = n.issued_at
    # the photos it lists: those taken before it was issued (a photo added later does not change it); an
    # immediate-correction notice also lists the photos of the correction made on the spot
    stages = ("before",) if n.kind == "deadline" else ("before", "after")
    shown = [e for e in detail["evidence"] if e["stage"] in stages
             and datetime.fromisoformat(e["uploaded_at"]) <= issued]
    return Printable(await asyncio.to_thread(documents.notice_html, doc, shown),
                     f"{NOTICE_TITLES[n.kind]}-{n.number}.pdf", n, n.hazard_id, doc["hazard"]["unit_id"])


async def _opinion(views: HazardViews, opinion_id: int, actor: Actor) -> Printable:
    doc = await views.opinion_document(opinion_id, actor)
    o = doc["opinion"]
    return Printable(await asyncio.to_thread(documents.opinion_html, doc), f"复查意见书-{o.number}.pdf", o,
                     o.hazard_id, doc["hazard"]["unit_id"])


async def _referral(views: HazardViews, referral_id: int, actor: Actor) -> Printable:
    doc = await views.referral_document(referral_id, actor)
    r = doc["referral"]
    return Printable(await asyncio.to_thread(documents.referral_html, doc), f"案件移送书-{r.number}.pdf", r,
                     r.hazard_id, doc["hazard"]["unit_id"])


async def _penalty(views: HazardViews, penalty_id: int, actor: Actor) -> Printable:
    doc = await views.penalty_document(penalty_id, actor)
    p = doc["penalty"]
    return Printable(await asyncio.to_thread(documents.penalty_html, doc), f"行政处罚决定书-{p.number}.pdf", p,
                     p.hazard_id, doc["hazard"]["unit_id"])


async def _inform(views: HazardViews, inform_id: int, actor: Actor) -> Printable:
    doc = await views.inform_document(inform_id, actor)
    i = doc["inform"]
    return Printable(await asyncio.to_thread(documents.inform_html, doc), f"行政处罚告知书-{i.number}.pdf", i,
                     i.hazard_id, doc["hazard"]["unit_id"])


async def _inspection(views: HazardViews, inspection_id: int, actor: Actor) -> Printable:
    authority = views.hcfg.issuing_authority or views.cfg.station.name
    doc = await inspection_document(views.db, views.hcfg, views.units, authority, inspection_id, actor)
    i = doc["inspection"]
    return Printable(await asyncio.to_thread(documents.inspection_html, doc), f"消防监督检查记录-{i.number}.pdf", i,
                     None, i.unit_id)


PDF_KINDS: dict[str, PdfKind] = {
    # both notice kinds live in one table and print from one route; each kind's `sealed` takes only its own rows
    "notice": PdfKind(_notice, lambda n: n.kind == "deadline", "/api/notices/{id}/pdf"),
    "immediate": PdfKind(_notice, lambda n: n.kind == "immediate", "/api/notices/{id}/pdf"),
    "opinion": PdfKind(_opinion, lambda _o: True, "/api/recheck-opinions/{id}/pdf"),
    "referral": PdfKind(_referral, lambda r: r.approved_at is not None, "/api/referrals/{id}/pdf"),
    "penalty": PdfKind(_penalty, lambda p: p.approved_at is not None, "/api/penalties/{id}/pdf"),
    "inform": PdfKind(_inform, lambda _i: True, "/api/penalty-notices/{id}/pdf"),
    "inspection": PdfKind(_inspection, lambda _i: True, "/api/inspections/{id}/pdf", per_hazard=False),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def render_in_thread(html: str) -> bytes:
    return await asyncio.to_thread(documents.html_to_pdf, html)


async def _sealed_entries(db: Database, hazard_id: int | None = None,
                          action: str = PDF_SEALED, *, unit_level: bool = False) -> list[RecordEntry]:
    """The entries of `action`: all, those of one case (`hazard_id`), or those of no case (`unit_level`)."""
    query = select(RecordEntry).where(RecordEntry.action == action).order_by(RecordEntry.id)
    if hazard_id is not None:
        query = query.where(RecordEntry.hazard_id == hazard_id)
    elif unit_level:
        query = query.where(RecordEntry.hazard_id.is_(None))
    async with db.session() as s:
        return list((await s.scalars(query)).all())


def _recorded(entries: list[RecordEntry]) -> dict[tuple[str, int], datetime]:
    """(kind, row id) → when first recorded."""
    out: dict[tuple[str, int], datetime] = {}
    for e in entries:
        kind = e.data.get("kind") if isinstance(e.data, dict) else None
        row_id = e.data.get(f"{kind}_id") if isinstance(kind, str) else None
        if isinstance(kind, str) and isinstance(row_id, int):
            out.setdefault((kind, row_id), e.at)
    return out


class DocumentSeals:
    """Renders documents for download and records the SHA-256 of each sealed one's PDF, once."""

    def __init__(self, writer: Writer, views: HazardViews, clock: Callable[[], datetime] = utcnow) -> None:
        self.writer = writer
        self.views = views
        self.clock = clock
        self._lock = asyncio.Lock()  # one sealing at a time: each document's hash is recorded once

    async def pdf(self, kind: str, row_id: int, actor: Actor,
                  render: RenderPdf = render_in_thread) -> tuple[bytes, str]:
        """The document's PDF for `actor` (who must be allowed to see it), and its file name. A sealed document
        whose hash is not yet recorded gets it recorded now."""
        pk = PDF_KINDS[kind]
        doc = await pk.printable(self.views, row_id, actor)
        data = await render(doc.html)
        # a route shared by kinds of one table (the notices): the row's own kind
        kind = next((k for k, other in PDF_KINDS.items() if other.printable is pk.printable and other.sealed(doc.row)),
                    kind)
        if PDF_KINDS[kind].sealed(doc.row):
            unit_level = doc.hazard_id is None
            async with self._lock:
                if (kind, row_id) not in _recorded(await _sealed_entries(self.views.db, doc.hazard_id,
                                                                         unit_level=unit_level)):
                    await self._record(kind, doc, data)
                if actor.role == "unit" and (kind, row_id) not in _recorded(
                        await _sealed_entries(self.views.db, doc.hazard_id, RECEIVED, unit_level=unit_level)):
                    await self.writer.note(RECEIVED, actor, self.clock(), {
                        "unit_id": doc.unit_id, "kind": kind, f"{kind}_id": row_id, "number": doc.row.number,
                        "pdf_sha256": sha256(data)}, hazard_id=doc.hazard_id)
        return data, doc.filename

    async def unit_documents(self, unit_id: str, actor: Actor) -> list[dict[str, Any]]:
        """Every sealed document addressed to the unit (of every kind), newest first: when it was issued (sealed),
        when it was served (the unit first opened it here; null: not yet), and the recheck results and notes of its
        case. A unit sees only its own."""
        check_visible(actor, unit_id, unit_of(self.views.units, unit_id).station_id)
        hcfg = self.views.hcfg
        async with self.views.db.session() as s:
            hazards = {h.id: h for h in (await s.scalars(select(Hazard).where(Hazard.unit_id == unit_id))).all()}
            ids = list(hazards)
            rows = {k.key: (await s.scalars(select(k.model).where(k.model.hazard_id.in_(ids)))).all()
                    for k in DOCUMENT_KINDS if k.key in PDF_KINDS and PDF_KINDS[k.key].per_hazard} if ids else {}
            rows.update({k.key: (await s.scalars(select(k.model).where(k.model.unit_id == unit_id))).all()
                         for k in DOCUMENT_KINDS if k.key in PDF_KINDS and not PDF_KINDS[k.key].per_hazard})
            rechecks = (await s.scalars(select(Recheck).where(Recheck.hazard_id.in_(ids))
                                        .order_by(Recheck.at, Recheck.id))).all() if ids else []
            entries = list((await s.scalars(select(RecordEntry).where(
                RecordEntry.hazard_id.in_(ids), RecordEntry.action.in_([PDF_SEALED, RECEIVED]))
                .order_by(RecordEntry.id))).all()) if ids else []
            # the unit's own documents (no case): their entries name the unit
            entries += [e for e in (await s.scalars(select(RecordEntry).where(
                RecordEntry.hazard_id.is_(None), RecordEntry.action.in_([PDF_SEALED, RECEIVED]))
                .order_by(RecordEntry.id))).all() if isinstance(e.data, dict) and e.data.get("unit_id") == unit_id]
        sealed_at = _recorded([e for e in entries if e.action == PDF_SEALED])
        served_at = _recorded([e for e in entries if e.action == RECEIVED])
        by_hazard: dict[int, list[dict[str, Any]]] = {}
        for r in rechecks:
            by_hazard.setdefault(r.hazard_id, []).append(
                {"at": iso(r.at), "rectified": r.rectified, "note": r.note, "method": r.method})
        names = {k.key: k.name for k in DOCUMENT_KINDS}
        out = []
        for kind, kind_rows in rows.items():
            for row in kind_rows:
                if not PDF_KINDS[kind].sealed(row):
                    continue  # a draft is addressed to no one yet
                if not PDF_KINDS[kind].per_hazard:
                    out.append({"kind": kind, "kind_name": names[kind], "id": row.id, "number": row.number,
                                "hazard_id": None, "category_name": KIND_NAMES.get(row.kind, row.kind),
                                "issued_at": iso(sealed_at.get((kind, row.id))),
                                "served_at": iso(served_at.get((kind, row.id))),
                                "pdf": PDF_KINDS[kind].url.format(id=row.id), "rechecks": []})
                    continue
                h = hazards[row.hazard_id]
                cat = hcfg.category(h.category)
                out.append({"kind": kind, "kind_name": names[kind], "id": row.id, "number": row.number,
                            "hazard_id": h.id, "category_name": cat.name if cat else h.category,
                            "issued_at": iso(sealed_at.get((kind, row.id))),
                            "served_at": iso(served_at.get((kind, row.id))),
                            "pdf": PDF_KINDS[kind].url.format(id=row.id), "rechecks": by_hazard.get(h.id, [])})
        out.sort(key=lambda d: (d["issued_at"] or "", d["kind"], d["id"]), reverse=True)
        return out

    async def seal(self, hazard_id: int, render: RenderPdf = render_in_thread) -> int:
        """Records the PDF hash of every sealed document of the hazard that has none yet; how many were recorded."""
        n = 0
        async with self._lock:
            done = _recorded(await _sealed_entries(self.views.db, hazard_id))  # (kind, id) → at
            for k in DOCUMENT_KINDS:
                pk = PDF_KINDS.get(k.key)
                if pk is None or not pk.per_hazard:
                    continue
                async with self.views.db.session() as s:
                    rows = (await s.scalars(select(k.model).where(k.model.hazard_id == hazard_id)
                                            .order_by(k.model.id))).all()
                for row in rows:
                    if (k.key, row.id) in done or not pk.sealed(row):
                        continue
                    doc = await pk.printable(self.views, row.id, SYSTEM)
                    await self._record(k.key, doc, await render(doc.html))
                    n += 1
        return n

    async def seal_one(self, kind: str, row_id: int, render: RenderPdf = render_in_thread) -> bool:
        """Records the PDF hash of one sealed document of a unit (not of a case) unless recorded; whether it was."""
        pk = PDF_KINDS[kind]
        async with self._lock:
            if (kind, row_id) in _recorded(await _sealed_entries(self.views.db, unit_level=True)):
                return False
            doc = await pk.printable(self.views, row_id, SYSTEM)
            if not pk.sealed(doc.row):
                return False
            await self._record(kind, doc, await render(doc.html))
            return True

    async def _record(self, kind: str, doc: Printable, data: bytes) -> None:
        await self.writer.note(PDF_SEALED, SYSTEM, self.clock(), {
            "unit_id": doc.unit_id, "kind": kind, f"{kind}_id": doc.row.id, "number": doc.row.number,
            "pdf_sha256": sha256(data), "bytes": len(data)}, hazard_id=doc.hazard_id)


async def verify_pdfs(views: HazardViews, render: RenderPdf = render_in_thread) -> tuple[int, ChainBreak | None]:
    """(sealed PDFs checked, the first that renders differently now than the SHA-256 recorded when it was sealed)."""
    names = {k.key: k.name for k in DOCUMENT_KINDS}
    checked = 0
    for e in await _sealed_entries(views.db):
        data = e.data if isinstance(e.data, dict) else {}
        kind, recorded = data.get("kind"), data.get("pdf_sha256")
        row_id = data.get(f"{kind}_id") if isinstance(kind, str) else None
        if kind not in PDF_KINDS or not isinstance(row_id, int):
            return checked, ChainBreak(e.id, f"sealed PDF entry names no known document ({kind!r})")
        try:
            doc = await PDF_KINDS[kind].printable(views, row_id, SYSTEM)
        except Exception as exc:  # the row (or its hazard) is gone or unreadable
            return checked, ChainBreak(e.id, f"{names.get(kind, kind)} {row_id} sealed here cannot be rendered: {exc}")
        digest = sha256(await render(doc.html))
        if digest != recorded:
            name = f"{names.get(kind, kind)} {row_id} ({data.get('number')})"
            return checked, ChainBreak(e.id, f"{name} altered: its PDF renders now as SHA-256 {digest[:16]}…, not "
                                             f"the {str(recorded)[:16]}… recorded when it was sealed")
        checked += 1
    return checked, None
