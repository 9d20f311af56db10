"""What a document is printed from, and its content hash: the SHA-256 of the canonical JSON of the printed fields.

Issuing a notice (责令限期改正 or 责令立即改正), an officer's recheck (复查意见书), confirming and approving a penalty
decision, serving a 行政处罚告知书, drafting and approving a 案件移送书, and submitting an inspection (消防监督检查记录)
record this hash in the hash-chained record;
`verify_documents` recomputes it from the rows as they are now and names the first document whose row was altered
(`firelink audit verify`). Times are normalised to UTC, so a row read back from any database hashes the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.hazard_models import CaseReferral, PenaltyDecision, PenaltyNotice, RecheckOpinion, RectificationNotice
from dispatch.hazards import (
    INSPECTION,
    NOTICE_IMMEDIATE,
    NOTICE_ISSUED,
    PENALTY_APPROVED,
    PENALTY_CONFIRMED,
    PENALTY_INFORMED,
    PENALTY_REFERRED,
    RECHECKED,
    REFERRAL_APPROVED,
)
from dispatch.inspection_models import Inspection
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
            **_printed_names(issued_by_name=n.issued_by_name),
            # an immediate-correction notice prints its kind and basis; a deadline notice's hash stays as it was
            **({"kind": n.kind, "basis": n.basis} if n.kind != "deadline" else {})}


def penalty_fields(p: PenaltyDecision) -> dict[str, Any]:
    return {"number": p.number, "hazard_id": p.hazard_id, "target": p.target, "person_name": p.person_name,
            "person_id": p.person_id, "kind": p.kind, "amount_yuan": p.amount_yuan, "facts": p.facts,
            "clauses": p.clauses, "confirmed_at": _utc(p.confirmed_at), "confirmed_by": p.confirmed_by,
            "approved_at": _utc(p.approved_at), "approved_by": p.approved_by,
            **_printed_names(confirmed_by_name=p.confirmed_by_name, approved_by_name=p.approved_by_name)}


def inform_fields(i: PenaltyNotice) -> dict[str, Any]:
    """What the 行政处罚告知书 prints (the party's later statement is recorded separately, not printed)."""
    return {"number": i.number, "penalty_id": i.penalty_id, "hazard_id": i.hazard_id, "issued_at": _utc(i.issued_at),
            "issued_by": i.issued_by, "issued_by_name": i.issued_by_name, "target": i.target,
            "person_name": i.person_name, "person_id": i.person_id, "kind": i.kind, "amount_yuan": i.amount_yuan,
            "facts": i.facts, "clauses": i.clauses, "hearing": i.hearing, "reply_by": _utc(i.reply_by)}


def opinion_fields(o: RecheckOpinion) -> dict[str, Any]:
    """What the 复查意见书 prints: the notice it cites, its deadline, the recheck's time, result, note, officer."""
    return {"number": o.number, "recheck_id": o.recheck_id, "hazard_id": o.hazard_id, "notice_id": o.notice_id,
            "issued_at": _utc(o.issued_at), "issued_by": o.issued_by, "issued_by_name": o.issued_by_name,
            "notice_number": o.notice_number, "notice_issued_at": _utc(o.notice_issued_at),
            "deadline": _utc(o.deadline), "rectified": o.rectified, "note": o.note}


def referral_fields(r: CaseReferral) -> dict[str, Any]:
    """What the 案件移送书 prints: the case, the intended penalty and its basis, why it is referred, the evidence
    transferred, the receiving authority, and who drafted and approved it."""
    return {"number": r.number, "penalty_id": r.penalty_id, "hazard_id": r.hazard_id,
            "receiving_authority": r.receiving_authority, "target": r.target, "person_name": r.person_name,
            "person_id": r.person_id, "kind": r.kind, "amount_yuan": r.amount_yuan, "facts": r.facts,
            "clauses": r.clauses, "reason": r.reason, "evidence": r.evidence, "issued_at": _utc(r.issued_at),
            "issued_by": r.issued_by, "issued_by_name": r.issued_by_name, "approved_at": _utc(r.approved_at),
            "approved_by": r.approved_by, "approved_by_name": r.approved_by_name}


def inspection_fields(i: Inspection) -> dict[str, Any]:
    """What the 消防监督检查记录 prints: the unit as it was, kind, checklist version, times, place, officers, every
    item with its clause, result, note and hazard, the photos' SHA-256 with their time and place, the hazards
    rechecked, the signature's SHA-256 and the signer."""
    return {"number": i.number, "unit_id": i.unit_id, "unit": i.unit_snapshot, "kind": i.kind,
            "unit_type": i.unit_type, "checklist_version": i.checklist_version, "started_at": _utc(i.started_at),
            "submitted_at": _utc(i.submitted_at), "lat": i.lat, "lon": i.lon, "officer": i.officer,
            "officer_name": i.officer_name, "co_officers": i.co_officers, "note": i.note,
            "signer_name": i.signer_name, "signature_sha256": i.signature_sha256,
            "results_sha256": i.results_sha256,
            "items": [{"position": t.position, "item_id": t.item_id, "text": t.text, "clause": t.clause,
                       "category": t.category, "result": t.result, "note": t.note, "hazard_id": t.hazard_id}
                      for t in sorted(i.items, key=lambda t: t.position)],
            "photos": [{"id": p.id, "sha256": p.sha256, "item_id": p.item_id, "taken_at": _utc(p.taken_at),
                        "lat": p.lat, "lon": p.lon, "received_at": _utc(p.received_at)}
                       for p in sorted(i.photos, key=lambda p: p.id)],
            "rechecks": [{"hazard_id": r.hazard_id, "rectified": r.rectified, "note": r.note,
                          "recheck_id": r.recheck_id} for r in sorted(i.rechecks, key=lambda r: r.hazard_id)]}


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


@dataclass(frozen=True, slots=True)
class DocumentKind:
    """A kind of printed document: its rows, the record actions carrying its hash, and what it prints."""

    key: str  # the record entry's data names the row as f"{key}_id"
    name: str
    model: type[Any]
    actions: tuple[str, ...]
    fields: Callable[[Any], dict[str, Any]]


DOCUMENT_KINDS = (
    DocumentKind("notice", "rectification notice", RectificationNotice, (NOTICE_ISSUED,), notice_fields),
    DocumentKind("penalty", "penalty decision", PenaltyDecision, (PENALTY_CONFIRMED, PENALTY_APPROVED),
                 penalty_fields),
    DocumentKind("inform", "penalty notice (行政处罚告知书)", PenaltyNotice, (PENALTY_INFORMED,), inform_fields),
    DocumentKind("immediate", "immediate-correction notice (责令立即改正通知书)", RectificationNotice,
                 (NOTICE_IMMEDIATE,), notice_fields),
    DocumentKind("opinion", "recheck opinion (复查意见书)", RecheckOpinion, (RECHECKED,), opinion_fields),
    DocumentKind("referral", "case referral (案件移送书)", CaseReferral, (PENALTY_REFERRED, REFERRAL_APPROVED),
                 referral_fields),
    DocumentKind("inspection", "inspection record (消防监督检查记录)", Inspection, (INSPECTION,), inspection_fields),
)


async def verify_documents(s: AsyncSession) -> tuple[int, ChainBreak | None]:
    """(documents checked, the first whose row no longer matches its recorded content hash, or None)."""
    action_key = {a: k.key for k in DOCUMENT_KINDS for a in k.actions}
    kinds = {k.key: k for k in DOCUMENT_KINDS}
    entries = (await s.scalars(select(RecordEntry).where(RecordEntry.action.in_(list(action_key)))
                               .order_by(RecordEntry.id))).all()
    recorded = latest_hashes(entries, action_key)
    rows = {k.key: {r.id: r for r in (await s.scalars(select(k.model))).all()} for k in DOCUMENT_KINDS}
    checked = 0
    for (key, row_id), e in sorted(recorded.items(), key=lambda kv: kv[1].id):
        kind = kinds[key]
        row = rows[key].get(row_id)
        if row is None:
            return checked, ChainBreak(e.id, f"{kind.name} {row_id} recorded here is missing from the database")
        if content_hash(kind.fields(row)) != e.data["content_hash"]:
            return checked, ChainBreak(e.id, f"{kind.name} {row_id} ({row.number}) altered: its printed content no "
                                             "longer matches the content hash recorded when it was issued")
        checked += 1
    return checked, None
