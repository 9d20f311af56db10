"""What a document is printed from, and its content hash: the SHA-256 of the canonical JSON of the printed fields.

Issuing a notice, confirming and approving a penalty decision record this hash in the hash-chained record;
`verify_documents` recomputes it from the rows as they are now and names the first document whose row was altered
(`firelink audit verify`). Times are normalised to UTC, so a row read back from any database hashes the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.hazard_models import PenaltyDecision, RectificationNotice
from dispatch.hazards import NOTICE_ISSUED, PENALTY_APPROVED, PENALTY_CONFIRMED
from dispatch.models import RecordEntry
from dispatch.records import ChainBreak


def _utc(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat()


def _printed_names(**names: str) -> dict[str, str]:
    """The officers' printed names (real name and badge), only where set: rows issued before users had real names
    carry none, and their recorded hashes stay valid."""
    return {k: v for k, v in names.items() if v}


def notice_fields(n: RectificationNotice) -> dict[str, Any]:
    return {"number": n.number, "hazard_id": n.hazard_id, "issued_at": _utc(n.issued_at), "issued_by": n.issued_by,
            "deadline": _utc(n.deadline), "requirement": n.requirement, "clauses": n.clauses,
            **_printed_names(issued_by_name=n.issued_by_name)}


def penalty_fields(p: PenaltyDecision) -> dict[str, Any]:
    return {"number": p.number, "hazard_id": p.hazard_id, "target": p.target, "person_name": p.person_name,
            "person_id": p.person_id, "kind": p.kind, "amount_yuan": p.amount_yuan, "facts": p.facts,
            "clauses": p.clauses, "confirmed_at": _utc(p.confirmed_at), "confirmed_by": p.confirmed_by,
            "approved_at": _utc(p.approved_at), "approved_by": p.approved_by,
            **_printed_names(confirmed_by_name=p.confirmed_by_name, approved_by_name=p.approved_by_name)}


def content_hash(fields: dict[str, Any]) -> str:
    body = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def latest_hashes(entries: Sequence[RecordEntry], action_key: dict[str, str]) -> dict[tuple[str, int], RecordEntry]:
    """(kind, row id) → the latest entry recording that document's content hash."""
    out: dict[tuple[str, int], RecordEntry] = {}
    for e in entries:
        key = action_key.get(e.action)
        data = e.data if isinstance(e.data, dict) else {}
        if key is None or "content_hash" not in data:
            continue  # entries written before documents were hashed carry none
        row_id = data.get(f"{key}_id")
        if isinstance(row_id, int):
            out[key, row_id] = e
    return out


async def verify_documents(s: AsyncSession) -> tuple[int, ChainBreak | None]:
    """(documents checked, the first whose row no longer matches its recorded content hash, or None)."""
    entries = (await s.scalars(select(RecordEntry).where(RecordEntry.action.in_(
        [NOTICE_ISSUED, PENALTY_CONFIRMED, PENALTY_APPROVED])).order_by(RecordEntry.id))).all()
    recorded = latest_hashes(entries, {NOTICE_ISSUED: "notice", PENALTY_CONFIRMED: "penalty",
                                       PENALTY_APPROVED: "penalty"})
    notices = {n.id: n for n in (await s.scalars(select(RectificationNotice))).all()}
    penalties = {p.id: p for p in (await s.scalars(select(PenaltyDecision))).all()}
    checked = 0
    for (kind, row_id), e in sorted(recorded.items(), key=lambda kv: kv[1].id):
        row: RectificationNotice | PenaltyDecision | None = (notices if kind == "notice" else penalties).get(row_id)
        name = "rectification notice" if kind == "notice" else "penalty decision"
        if row is None:
            return checked, ChainBreak(e.id, f"{name} {row_id} recorded here is missing from the database")
        fields = notice_fields(row) if isinstance(row, RectificationNotice) else penalty_fields(row)
        if content_hash(fields) != e.data["content_hash"]:
            return checked, ChainBreak(e.id, f"{name} {row_id} ({row.number}) altered: its printed content no longer "
                                             "matches the content hash recorded when it was issued")
        checked += 1
    return checked, None
