"""The read side of hazard supervision: lists, a hazard's detail, evidence files (checked against the record),
the data of the notice and penalty documents, dashboard counts and the configuration the pages need.

Pure reads on their own sessions; nothing here writes. Commands are `hazard_cases.py` and `penalties.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from config.schema import FirelinkConfig
from dispatch.actor import Actor
from dispatch.db import Database
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
from dispatch.hazard_rows import (
    evidence_list,
    evidence_view,
    get_hazard,
    get_penalty,
    hazard_view,
    notice_view,
    opinion_view,
    penalty_view,
    recheck_view,
    referral_view,
    unit_of,
)
from dispatch.hazards import EVIDENCE_ADDED, STATUSES, hazards_config
from dispatch.models import RecordEntry, Unit
from dispatch.registry import UNIT_UPDATED
from dispatch.scope import in_scope
from dispatch.state import HazardStatus
from dispatch.views import record_view
from ingest.integrity import IntegrityError, sha256_bytes

log = logging.getLogger(__name__)


async def _case_evidence(s: Any, hazard_id: int, until: datetime | None) -> tuple[list[str], list[Recheck]]:
    """The stages of the case's photos and its rechecks, those dated ≤ `until` when given (what a document
    issued then listed)."""
    stages = select(HazardEvidence.stage).where(HazardEvidence.hazard_id == hazard_id)
    rechecks = select(Recheck).where(Recheck.hazard_id == hazard_id).order_by(Recheck.id)
    if until is not None:
        stages = stages.where(HazardEvidence.uploaded_at <= until)
        rechecks = rechecks.where(Recheck.at <= until)
    return list((await s.scalars(stages)).all()), list((await s.scalars(rechecks)).all())


class HazardViews:
    def __init__(self, db: Database, cfg: FirelinkConfig, units: Mapping[str, Unit]) -> None:
        self.db = db
        self.cfg = cfg
        self.hcfg = hazards_config(cfg)
        self.units = units  # the core's units (a live mapping)

    def _view(self, h: Hazard) -> dict[str, Any]:
        return hazard_view(h, self.hcfg, self.units)

    async def _unit_as_of(self, unit_id: str, at: datetime | None) -> Unit:
        """The unit as a document issued at `at` printed it: the registry row with every later change undone (the
        `unit.updated` entries after `at`, newest first), so an issued document prints, and `audit verify`
        re-renders, the same name and address after the registry is edited. Not yet issued (`at` None): as now."""
        live = unit_of(self.units, unit_id)
        if at is None:
            return live
        async with self.db.session() as s:
            later = (await s.scalars(select(RecordEntry.data).where(
                RecordEntry.unit_id == unit_id, RecordEntry.action == UNIT_UPDATED, RecordEntry.at > at)
                .order_by(RecordEntry.id.desc()))).all()
        if not later:
            return live
        fields = {c.key: getattr(live, c.key) for c in Unit.__table__.columns}
        for data in later:
            changes = data.get("changes") if isinstance(data, dict) else None
            for name, change in (changes or {}).items():
                if name in fields and isinstance(change, dict):
                    fields[name] = change.get("before")
        return Unit(**fields)  # a transient copy: never added to a session

    def _authority(self) -> str:
        return self.hcfg.issuing_authority or self.cfg.station.name

    async def list_hazards(self, actor: Actor, *, status: str = "open", unit_id: str | None = None,
                           category: str | None = None, severity: str | None = None, q: str | None = None,
                           start: datetime | None = None, end: datetime | None = None,
                           limit: int = 200) -> list[dict[str, Any]]:
        if actor.role == "agency" and not actor.stations:
            raise Forbidden("this agency does not oversee stations' supervision work")
        query = select(Hazard).order_by(Hazard.id.desc()).limit(max(1, min(limit, 1000)))
        if status == "open":
            query = query.where(Hazard.status != HazardStatus.CLOSED)
        elif status in STATUSES:
            query = query.where(Hazard.status == status)
        elif status != "all":
            raise BadRequest("status must be open, all or one of " + ", ".join(STATUSES))
        if (limited := in_scope(actor, Hazard.unit_id)) is not None:
            query = query.where(limited)
        if unit_id:
            query = query.where(Hazard.unit_id == unit_id)
        if category:
            query = query.where(Hazard.category == category)
        if severity:
            query = query.where(Hazard.severity == severity)
        # a period holds the cases active in it: found before its end and not closed before its start
        if start:
            query = query.where(or_(Hazard.closed_at.is_(None), Hazard.closed_at >= start))
        if end:
            query = query.where(Hazard.found_at < end)
        if q:
            like = f"%{q}%"
            ids = [u.id for u in self.units.values() if q in u.name or q in u.address]
            query = query.where(or_(Hazard.description.like(like), Hazard.unit_id.in_(ids)))
        async with self.db.session() as s:
            rows = (await s.scalars(query)).all()
            notices = {}
            if rows:
                for n in (await s.scalars(select(RectificationNotice).where(
                        RectificationNotice.hazard_id.in_([r.id for r in rows])))).all():
                    notices[n.hazard_id] = notice_view(n)
        out = []
        for r in rows:
            v = self._view(r)
            v["notice"] = notices.get(r.id)
            out.append(v)
        return out

    async def detail(self, hazard_id: int, actor: Actor) -> dict[str, Any]:
        async with self.db.session() as s:
            h = await get_hazard(s, hazard_id, actor)
            evidence = (await s.scalars(select(HazardEvidence).where(HazardEvidence.hazard_id == h.id)
                                        .order_by(HazardEvidence.id))).all()
            notices = (await s.scalars(select(RectificationNotice).where(RectificationNotice.hazard_id == h.id)
                                       .order_by(RectificationNotice.id))).all()
            rechecks = (await s.scalars(select(Recheck).where(Recheck.hazard_id == h.id).order_by(Recheck.id))).all()
            penalties = (await s.scalars(select(PenaltyDecision).where(PenaltyDecision.hazard_id == h.id)
                                         .order_by(PenaltyDecision.id))).all()
            informs = {i.penalty_id: i for i in (await s.scalars(
                select(PenaltyNotice).where(PenaltyNotice.hazard_id == h.id))).all()}
            opinions = (await s.scalars(select(RecheckOpinion).where(RecheckOpinion.hazard_id == h.id)
                                        .order_by(RecheckOpinion.id))).all()
            referrals = (await s.scalars(select(CaseReferral).where(CaseReferral.hazard_id == h.id)
                                         .order_by(CaseReferral.id))).all()
            entries = (await s.scalars(select(RecordEntry).where(RecordEntry.hazard_id == h.id)
                                       .order_by(RecordEntry.id))).all()
        view = self._view(h)
        view.update(evidence=[evidence_view(e) for e in evidence], notices=[notice_view(n) for n in notices],
                    rechecks=[recheck_view(r) for r in rechecks],
                    penalties=[penalty_view(p, informs.get(p.id)) for p in penalties],
                    opinions=[opinion_view(o) for o in opinions], referrals=[referral_view(r) for r in referrals],
                    timeline=[record_view(e) for e in entries])
        return view

    async def evidence(self, evidence_id: int, actor: Actor) -> tuple[HazardEvidence, str]:
        """A photo the caller may see, checked against the SHA-256 recorded when it was added.

        Raises IntegrityError when the stored bytes, the row's SHA-256 and the record do not all agree.
        """
        async with self.db.session() as s:
            e = await s.get(HazardEvidence, evidence_id)
            if e is None:
                raise NotFound(f"evidence {evidence_id} not found")
            h = await get_hazard(s, e.hazard_id, actor)
            added = (await s.scalars(select(RecordEntry.data).where(
                RecordEntry.hazard_id == h.id, RecordEntry.action == EVIDENCE_ADDED))).all()
        recorded = {f.get("evidence_id"): f.get("sha256") for d in added if isinstance(d, dict)
                    for f in d.get("files", []) if isinstance(f, dict)}
        digest = await asyncio.to_thread(sha256_bytes, e.data)
        if digest != e.sha256 or recorded.get(e.id) != e.sha256:
            log.error("hazard evidence %s failed its integrity check (row %s, record %s, content %s): refused",
                      e.id, e.sha256, recorded.get(e.id), digest)
            raise IntegrityError(f"evidence {e.id} altered: its content no longer matches the SHA-256 recorded "
                                 "when it was added; not served")
        return e, h.unit_id

    async def notice_document(self, notice_id: int, actor: Actor) -> dict[str, Any]:
        """A 责令限期改正通知书 or 责令立即改正通知书; the latter lists the evidence the case holds (photos)."""
        async with self.db.session() as s:
            n = await s.get(RectificationNotice, notice_id)
            if n is None:
                raise NotFound(f"notice {notice_id} not found")
            h = await get_hazard(s, n.hazard_id, actor)
            stages = (await s.scalars(select(HazardEvidence.stage).where(HazardEvidence.hazard_id == h.id))).all()
        return {"notice": n, "hazard": self._view(h), "unit": await self._unit_as_of(h.unit_id, n.issued_at),
                "authority": self._authority(), "evidence_list": evidence_list(None, list(stages), [])}

    async def _own_row(self, model: type[Any], row_id: int, what: str, actor: Actor) -> tuple[Any, Hazard]:
        """A document's row by id and its hazard, if `actor` may see the hazard's unit (NotFound, Forbidden)."""
        async with self.db.session() as s:
            row = await s.get(model, row_id)
            if row is None:
                raise NotFound(f"{what} {row_id} not found")
            h = await get_hazard(s, row.hazard_id, actor)
        return row, h

    async def opinion_document(self, opinion_id: int, actor: Actor) -> dict[str, Any]:
        """复查意见书: printed from its own row (a snapshot taken with the recheck)."""
        o, h = await self._own_row(RecheckOpinion, opinion_id, "recheck opinion", actor)
        return {"opinion": o, "hazard": self._view(h), "unit": await self._unit_as_of(h.unit_id, o.issued_at),
                "authority": self._authority()}

    async def referral_document(self, referral_id: int, actor: Actor) -> dict[str, Any]:
        """案件移送书: printed from its own row (the intended penalty, the reason and the evidence list as drafted)."""
        r, h = await self._own_row(CaseReferral, referral_id, "case referral", actor)
        return {"referral": r, "hazard": self._view(h), "unit": await self._unit_as_of(h.unit_id, r.approved_at),
                "authority": self._authority()}

    async def penalty_document(self, penalty_id: int, actor: Actor) -> dict[str, Any]:
        async with self.db.session() as s:
            p, h = await get_penalty(s, penalty_id, actor)
            notice = await s.scalar(select(RectificationNotice).where(RectificationNotice.hazard_id == h.id)
                                    .order_by(RectificationNotice.id.desc()).limit(1))
            # an approved decision lists the evidence the case held when it was approved, so it prints the same later
            stages, rechecks = await _case_evidence(s, h.id, p.approved_at)
        if p.number is None:
            raise BadRequest("the decision gets its number when an officer confirms it")
        return {"penalty": p, "hazard": self._view(h), "unit": await self._unit_as_of(h.unit_id, p.approved_at),
                "notice": notice,
                "authority": self._authority(), "evidence": evidence_list(notice, list(stages), list(rechecks))}

    async def inform_document(self, inform_id: int, actor: Actor) -> dict[str, Any]:
        """行政处罚告知书: printed from its own row (a snapshot of the intended decision when it was served)."""
        async with self.db.session() as s:
            i = await s.get(PenaltyNotice, inform_id)
            if i is None:
                raise NotFound(f"penalty notice {inform_id} not found")
            h = await get_hazard(s, i.hazard_id, actor)
            stages, rechecks = await _case_evidence(s, h.id, i.issued_at)  # as held when it was served
            notice = await s.scalar(select(RectificationNotice).where(RectificationNotice.hazard_id == h.id)
                                    .order_by(RectificationNotice.id.desc()).limit(1))
        return {"inform": i, "hazard": self._view(h), "unit": await self._unit_as_of(h.unit_id, i.issued_at),
                "authority": self._authority(), "evidence": evidence_list(notice, list(stages), list(rechecks))}

    async def counts(self, actor: Actor) -> dict[str, Any]:
        """Open hazards by category and by severity, and every unit's open and closed hazards with its position and
        station (the dashboard and the heat map), within the actor's scope."""
        limited = in_scope(actor, Hazard.unit_id)
        scoped: list[ColumnElement[bool]] = [] if limited is None else [limited]
        async with self.db.session() as s:
            rows = (await s.execute(select(Hazard.category, Hazard.severity, func.count(Hazard.id))
                                    .where(Hazard.status != HazardStatus.CLOSED, *scoped)
                                    .group_by(Hazard.category, Hazard.severity))).all()
            by_unit = (await s.execute(select(Hazard.unit_id, Hazard.status, func.count(Hazard.id))
                                       .where(*scoped).group_by(Hazard.unit_id, Hazard.status))).all()
        by_cat: dict[str, int] = {}
        by_sev: dict[str, int] = {}
        for cat, sev, n in rows:
            by_cat[cat] = by_cat.get(cat, 0) + n
            by_sev[sev] = by_sev.get(sev, 0) + n
        units: dict[str, dict[str, Any]] = {}
        for uid, st, n in by_unit:
            u = units.setdefault(uid, {"unit_id": uid, "open": 0, "closed": 0})
            u["closed" if st == HazardStatus.CLOSED else "open"] += n
        for uid, u in units.items():
            unit = self.units.get(uid)
            if unit is not None:
                u.update(name=unit.name, address=unit.address, category=unit.category, lat=unit.lat, lon=unit.lon,
                         station_id=unit.station_id)
        return {"open_total": sum(by_cat.values()), "by_category": by_cat, "by_severity": by_sev,
                "by_unit": sorted(units.values(), key=lambda u: (-u["open"], u["unit_id"]))}

    def config_view(self) -> dict[str, Any]:
        hcfg = self.hcfg
        return {"categories": [c.model_dump() for c in hcfg.categories],
                "law_clauses": [{**c.model_dump(), "citation": c.citation()} for c in hcfg.law_clauses],
                "penalty_rules": [r.model_dump() for r in hcfg.penalty_rules],
                "station_authority": [a.model_dump() for a in hcfg.station_authority],
                "targets": hcfg.targets.model_dump(), "scoring": [r.model_dump() for r in hcfg.scoring],
                "max_upload_bytes": hcfg.max_upload_bytes,
                "max_files_per_upload": hcfg.max_files_per_upload}
