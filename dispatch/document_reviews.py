"""The brigade's review of the documents its stations filed (大队审核): the list of sealed documents of the caller's
subtree with their reviews, and a review (approved, or returned with the reviewer's note) recorded in the hash chain
against the SHA-256 of the sealed PDF it judged. A review changes no document: a returned one is the station's to
answer (a new notice, a withdrawn case); the record shows who reviewed what, when, and with which verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from dispatch.actor import Actor
from dispatch.document_pdf import PDF_KINDS, PDF_SEALED
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.models import RecordEntry, Unit
from dispatch.views import iso
from dispatch.writer import Writer

REVIEWED = "document.reviewed"
Verdict = Literal["approved", "returned"]
LISTED = 500  # newest sealed documents listed


class DocumentReviews:
    def __init__(self, writer: Writer, units: Mapping[str, Unit], clock: Callable[[], datetime]) -> None:
        self.writer = writer
        self.units = units  # the core's units (a live mapping)
        self.clock = clock

    def _in_scope(self, actor: Actor, data: Any) -> bool:
        uid = data.get("unit_id") if isinstance(data, dict) else None
        unit = self.units.get(uid) if isinstance(uid, str) else None
        return unit is not None and actor.sees_unit(unit.id, unit.station_id)

    async def filed(self, actor: Actor, pending_only: bool = False) -> list[dict[str, Any]]:
        """The sealed documents of the actor's subtree, newest first, each with its latest review (or none)."""
        async with self.writer.db.session() as s:
            entries = (await s.scalars(select(RecordEntry).where(RecordEntry.action.in_([PDF_SEALED, REVIEWED]))
                                       .order_by(RecordEntry.id))).all()
        reviews: dict[tuple[str, int], dict[str, Any]] = {}
        sealed: list[tuple[RecordEntry, str, int]] = []
        seen: set[tuple[str, int]] = set()
        for e in entries:
            d = e.data if isinstance(e.data, dict) else {}
            kind = d.get("kind")
            row_id = d.get(f"{kind}_id") if isinstance(kind, str) else None
            if not isinstance(kind, str) or not isinstance(row_id, int) or not self._in_scope(actor, d):
                continue
            if e.action == REVIEWED:
                reviews[(kind, row_id)] = {"verdict": d.get("verdict"), "note": d.get("note", ""), "by": e.actor,
                                           "at": iso(e.at), "pdf_sha256": d.get("pdf_sha256")}
            elif (kind, row_id) not in seen:
                seen.add((kind, row_id))
                sealed.append((e, kind, row_id))
        out = []
        for e, kind, row_id in reversed(sealed):
            review = reviews.get((kind, row_id))
            if pending_only and review is not None:
                continue
            d = e.data if isinstance(e.data, dict) else {}
            unit = self.units[d["unit_id"]]
            url = PDF_KINDS[kind].url.format(id=row_id) if kind in PDF_KINDS else None
            out.append({"kind": kind, "id": row_id, "number": d.get("number"), "hazard_id": e.hazard_id,
                        "unit_id": unit.id, "unit_name": unit.name, "station_id": unit.station_id,
                        "sealed_at": iso(e.at), "pdf_sha256": d.get("pdf_sha256"), "pdf": url, "review": review})
            if len(out) >= LISTED:
                break
        return out

    async def review(self, kind: str, row_id: int, verdict: Verdict, note: str, actor: Actor) -> dict[str, Any]:
        """Records the review of one sealed document of the actor's subtree (a returned one needs the reason)."""
        note = note.strip()
        if verdict == "returned" and not note:
            raise BadRequest("a returned document needs the reviewer's note (what is wrong)")
        async with self.writer.db.session() as s:
            entries = (await s.scalars(select(RecordEntry).where(RecordEntry.action == PDF_SEALED)
                                       .order_by(RecordEntry.id))).all()
        found = next((e for e in entries if isinstance(e.data, dict) and e.data.get("kind") == kind
                      and e.data.get(f"{kind}_id") == row_id), None)
        if found is None:
            raise NotFound(f"no sealed {kind} document {row_id}")
        data = found.data if isinstance(found.data, dict) else {}
        if not self._in_scope(actor, data):
            raise Forbidden("this document belongs to a station outside your organisation")
        review = {"unit_id": data["unit_id"], "kind": kind, f"{kind}_id": row_id, "number": data.get("number"),
                  "pdf_sha256": data.get("pdf_sha256"), "verdict": verdict, "note": note}
        await self.writer.note(REVIEWED, actor, self.clock(), review, hazard_id=found.hazard_id)
        return {**review, "by": actor.username}
