"""Rows of hazard supervision as the API shows them, looked up by id, and who may see them.

Shared by the commands (which return and push these views) and the read side (`hazard_views.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config.hazards import HazardsConfig
from dispatch.actor import Actor
from dispatch.db import locks_rows
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.hazard_models import (
    CaseReferral,
    Hazard,
    HazardEvidence,
    PenaltyDecision,
    PenaltyNotice,
    Recheck,
    RecheckOpinion,
    RectificationNotice,
)
from dispatch.hazards import NOTICE_TITLES
from dispatch.models import Unit
from dispatch.views import iso, unit_view

EVIDENCE_STAGES = {"before": "现场照片及视频截图", "proof": "单位整改材料照片", "recheck": "复查照片",
                   "after": "整改后照片"}


def evidence_list(notice: RectificationNotice | None, stages: list[str], rechecks: list[Recheck],
                  opinions: Sequence[str] = ()) -> list[str]:
    """The evidence a document lists: only what the case really holds (documents, photos by stage, rechecks)."""
    out = [f"《{NOTICE_TITLES[notice.kind]}》（{notice.number}）"] if notice is not None else []
    out += [f"《复查意见书》（{number}）" for number in opinions]
    for stage, name in EVIDENCE_STAGES.items():
        if n := stages.count(stage):
            out.append(f"{name}{n}张")
    if rechecks:
        failed = sum(1 for r in rechecks if not r.rectified)
        out.append(f"复查记录{len(rechecks)}份（其中未整改{failed}份）" if failed else f"复查记录{len(rechecks)}份")
    return out


def unit_of(units: Mapping[str, Unit], unit_id: str) -> Unit:
    unit = units.get(unit_id)
    if unit is None:
        raise BadRequest(f"unknown unit {unit_id!r}")
    return unit


def check_visible(actor: Actor, unit_id: str, station_id: str | None) -> None:
    """Units see only their own hazards; officers, assessors and supervisors those of their organisation's
    stations; an agency only with oversight (the fire-rescue brigade), of the stations it oversees."""
    if actor.role == "unit" and actor.unit_id != unit_id:
        raise Forbidden("units see only their own hazards")
    if actor.role == "agency" and not actor.stations:
        raise Forbidden("this agency does not oversee stations' supervision work")
    if not actor.sees_unit(unit_id, station_id):
        raise Forbidden("this unit belongs to a station outside your organisation")


async def get_hazard(s: AsyncSession, hazard_id: int, actor: Actor | None = None) -> Hazard:
    """The hazard; with `actor`, only one in its scope (403 otherwise)."""
    h = await s.get(Hazard, hazard_id, with_for_update=locks_rows(s))
    if h is None:
        raise NotFound(f"hazard {hazard_id} not found")
    if actor is not None:
        unit = await s.get(Unit, h.unit_id)
        check_visible(actor, h.unit_id, unit.station_id if unit else None)
    return h


async def get_penalty(s: AsyncSession, penalty_id: int,
                      actor: Actor | None = None) -> tuple[PenaltyDecision, Hazard]:
    p = await s.get(PenaltyDecision, penalty_id)
    if p is None:
        raise NotFound(f"penalty decision {penalty_id} not found")
    h = await get_hazard(s, p.hazard_id, actor)
    if locks_rows(s):  # the hazard's lock first (as every hazard command takes it), then the decision's, read again
        p = await s.get(PenaltyDecision, penalty_id, with_for_update=True, populate_existing=True) or p
    return p, h


def hazard_view(h: Hazard, hcfg: HazardsConfig, units: Mapping[str, Unit]) -> dict[str, Any]:
    cat = hcfg.category(h.category)
    return {"id": h.id, "unit_id": h.unit_id, "unit": unit_view(unit_of(units, h.unit_id)),
            "category": h.category, "category_name": cat.name if cat else h.category,
            "severity": h.severity, "source": h.source, "status": h.status, "description": h.description,
            "lat": h.lat, "lon": h.lon, "camera_id": h.camera_id, "zone": h.zone,
            "camera_visible": h.camera_visible, "found_at": iso(h.found_at), "found_by": h.found_by,
            "deadline": iso(h.deadline), "closed_at": iso(h.closed_at), "closed_by": h.closed_by,
            "outcome": h.outcome, "clauses": [_clause_ref(hcfg, k) for k in h.clauses or []],
            "inspection_id": h.inspection_id}


def _clause_ref(hcfg: HazardsConfig, key: str) -> dict[str, str]:
    """A clause a hazard names (an inspection item's): its key and citation."""
    c = hcfg.clause(key)
    return {"key": key, "citation": c.citation() if c is not None else key}


def evidence_view(e: HazardEvidence) -> dict[str, Any]:
    return {"id": e.id, "hazard_id": e.hazard_id, "stage": e.stage, "content_type": e.content_type,
            "filename": e.filename, "size": e.size, "sha256": e.sha256, "note": e.note,
            "uploaded_at": iso(e.uploaded_at), "uploaded_by": e.uploaded_by, "url": f"/api/evidence/{e.id}"}


def notice_view(n: RectificationNotice) -> dict[str, Any]:
    """A notice: kind "deadline" (责令限期改正通知书) or "immediate" (责令立即改正通知书, with the order's `basis`)."""
    return {"id": n.id, "hazard_id": n.hazard_id, "number": n.number, "issued_at": iso(n.issued_at),
            "issued_by": n.issued_by, "issued_by_name": n.issued_by_name, "deadline": iso(n.deadline),
            "requirement": n.requirement, "kind": n.kind, "title": NOTICE_TITLES[n.kind], "basis": n.basis,
            "clauses": n.clauses, "pdf": f"/api/notices/{n.id}/pdf"}


def opinion_view(o: RecheckOpinion) -> dict[str, Any]:
    """A 复查意见书 (issued with an officer's recheck)."""
    return {"id": o.id, "recheck_id": o.recheck_id, "hazard_id": o.hazard_id, "number": o.number,
            "issued_at": iso(o.issued_at), "issued_by": o.issued_by, "issued_by_name": o.issued_by_name,
            "notice_id": o.notice_id, "notice_number": o.notice_number, "deadline": iso(o.deadline),
            "rectified": o.rectified, "note": o.note, "pdf": f"/api/recheck-opinions/{o.id}/pdf"}


def referral_view(r: CaseReferral) -> dict[str, Any]:
    """A 案件移送书: drafted (proposed) by an officer, approved (sealed) by a supervisor."""
    return {"id": r.id, "penalty_id": r.penalty_id, "hazard_id": r.hazard_id, "number": r.number,
            "status": r.status, "receiving_authority": r.receiving_authority, "target": r.target,
            "person_name": r.person_name, "person_id": r.person_id, "kind": r.kind, "amount_yuan": r.amount_yuan,
            "clauses": r.clauses, "reason": r.reason, "evidence": r.evidence, "issued_at": iso(r.issued_at),
            "issued_by": r.issued_by, "issued_by_name": r.issued_by_name, "approved_at": iso(r.approved_at),
            "approved_by": r.approved_by, "approved_by_name": r.approved_by_name,
            "pdf": f"/api/referrals/{r.id}/pdf"}


def recheck_view(r: Recheck) -> dict[str, Any]:
    return {"id": r.id, "hazard_id": r.hazard_id, "method": r.method, "rectified": r.rectified, "note": r.note,
            "at": iso(r.at), "by": r.by, "evidence_id": r.evidence_id}


def inform_view(i: PenaltyNotice) -> dict[str, Any]:
    return {"id": i.id, "penalty_id": i.penalty_id, "number": i.number, "issued_at": iso(i.issued_at),
            "issued_by": i.issued_by, "issued_by_name": i.issued_by_name, "hearing": i.hearing,
            "reply_by": iso(i.reply_by), "statement": i.statement, "statement_note": i.statement_note,
            "statement_at": iso(i.statement_at), "statement_by": i.statement_by,
            "pdf": f"/api/penalty-notices/{i.id}/pdf"}


def penalty_view(p: PenaltyDecision, inform: PenaltyNotice | None = None) -> dict[str, Any]:
    """`inform`: its 行政处罚告知书, once served (None before confirmation)."""
    return {"inform": inform_view(inform) if inform is not None else None,
            "id": p.id, "hazard_id": p.hazard_id, "status": p.status, "target": p.target,
            "person_name": p.person_name, "person_id": p.person_id, "kind": p.kind, "amount_yuan": p.amount_yuan,
            "facts": p.facts,
            "clauses": p.clauses, "number": p.number, "proposed_at": iso(p.proposed_at),
            "proposed_by": p.proposed_by, "confirmed_at": iso(p.confirmed_at), "confirmed_by": p.confirmed_by,
            "confirmed_by_name": p.confirmed_by_name, "approved_at": iso(p.approved_at), "approved_by": p.approved_by,
            "approved_by_name": p.approved_by_name, "closed_at": iso(p.closed_at),
            "closed_by": p.closed_by, "closure": p.closure, "closure_note": p.closure_note,
            "pdf": f"/api/penalties/{p.id}/pdf" if p.number else None}
