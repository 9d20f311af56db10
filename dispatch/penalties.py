"""Penalty decisions (行政处罚决定书) on hazards not rectified after their deadline.

    overdue (a failed recheck at or after the deadline — 到期复查; never the deadline alone)
    → proposed (system, from the configured rules)
    → confirmed (an officer; numbered here; the 行政处罚告知书 is served in the same step: facts, basis, intended
      penalty, the right to state and defend within `statement_days`, or to request a hearing within `hearing_days`
      for a large fine — Administrative Penalty Law arts. 44, 45, 63, 64)
    → approved (a supervisor who is not that officer; only once the 告知书 was served and the party's statement was
      heard or waived, or its period has run out)
    → closed (paid / warned; the hazard's case closes with it).

    A penalty beyond the station's authority (config `hazards.station_authority`) is not confirmed: the proposal is
    referred (移送) instead — a 案件移送书 drafted by an officer (penalty → referred), approved by another user (sealed;
    the penalty and the hazard's case close as referred).

Every step is one transaction through the core's Writer, recorded on the hazard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.actor import SYSTEM, Actor
from dispatch.db import locks_rows
from dispatch.document_content import content_hash, inform_fields, penalty_fields, referral_fields
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.hazard_context import HazardContext
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
from dispatch.hazard_rows import evidence_list, get_hazard, get_penalty, penalty_view, referral_view
from dispatch.hazards import (
    CHINA_TZ,
    HAZARD_CLOSED,
    OVERDUE,
    PENALTY_APPROVED,
    PENALTY_CLOSED,
    PENALTY_CONFIRMED,
    PENALTY_INFORMED,
    PENALTY_PROPOSED,
    PENALTY_REFERRED,
    PENALTY_STATEMENT,
    REFERRAL_APPROVED,
    clause_snapshot,
    deadline_wording,
)
from dispatch.legal_basis import beyond_authority, penalty_basis, referral_authority
from dispatch.state import IN_RECTIFICATION, HazardStatus, PenaltyStatus, ReferralStatus, TransitionError
from dispatch.views import iso
from dispatch.writer import Tx


def cn_date(dt: datetime) -> str:
    local = dt.astimezone(CHINA_TZ)
    return f"{local.year}年{local.month}月{local.day}日"


async def inform_of(s: AsyncSession, penalty_id: int) -> PenaltyNotice | None:
    found: PenaltyNotice | None = await s.scalar(select(PenaltyNotice).where(PenaltyNotice.penalty_id == penalty_id))
    return found


@dataclass(frozen=True, slots=True)
class Intended:
    """A penalty as the officer intends it, checked; `beyond`: why the station may not decide it (None: it may)."""

    target: str
    kind: str
    amount_yuan: int
    person_name: str
    person_id: str
    clauses: list[dict[str, str]]
    beyond: str | None


class Penalties:
    def __init__(self, ctx: HazardContext) -> None:
        self.ctx = ctx

    async def overdue(self, tx: Tx, h: Hazard, actor: Actor, now: datetime, reason: str) -> None:
        """Inside a command's transaction: `h` is past its deadline unrectified → penalty, a decision proposed."""
        self.ctx.record(tx, h, OVERDUE, actor, now, {"deadline": iso(h.deadline), "reason": reason})
        h.status = HazardStatus.PENALTY
        await self._propose(tx, h, now)

    async def _propose(self, tx: Tx, h: Hazard, now: datetime) -> PenaltyDecision:
        hcfg = self.ctx.hcfg
        rules = hcfg.rules_for(hcfg.default_penalty_target)
        rule = next((r for r in rules if r.kind == "fine"), rules[0])
        cat = hcfg.category(h.category)
        try:
            keys = [c.key for c in penalty_basis(hcfg, h.category, rule.target, rule.kind, rule.proposed_yuan)]
        except BadRequest:  # nothing in the clause database fits: the officer picks the basis when confirming
            keys = []
        notice = await tx.session.scalar(select(RectificationNotice).where(RectificationNotice.hazard_id == h.id)
                                         .order_by(RectificationNotice.id.desc()).limit(1))
        unit = self.ctx.unit(h.unit_id)
        facts = f"经查，{unit.name}（{unit.address}）存在“{cat.name if cat else h.category}”的火灾隐患"
        if notice is not None:
            violated = "、".join(c["citation"] for c in notice.clauses)
            if violated:
                facts += f"，违反了{violated}的规定"
            facts += (f"。{self.ctx.cfg.station.name}于{cn_date(notice.issued_at)}以《责令限期改正通知书》"
                      f"（{notice.number}）责令其{deadline_wording(notice.deadline)}，到期复查仍未改正")
        facts += "。"
        p = PenaltyDecision(hazard_id=h.id, status=PenaltyStatus.PROPOSED, target=rule.target, person_name="",
                            kind=rule.kind,
                            amount_yuan=rule.proposed_yuan, facts=facts,
                            clauses=[clause_snapshot(c) for k in keys if (c := hcfg.clause(k))],
                            proposed_at=now, proposed_by=SYSTEM.username, closure_note="")
        tx.session.add(p)
        await tx.session.flush()
        self.ctx.record(tx, h, PENALTY_PROPOSED, SYSTEM, now,
                        {"penalty_id": p.id, "target": p.target, "kind": p.kind, "amount_yuan": p.amount_yuan,
                         "clauses": keys})
        return p

    async def propose_penalty(self, hazard_id: int, actor: Actor) -> dict[str, Any]:
        """An officer proposes a penalty on a hazard still not rectified after its deadline (normally automatic)."""
        async with self.ctx.writer.tx() as tx:
            h = await get_hazard(tx.session, hazard_id, actor)
            now = self.ctx.clock()
            if h.status not in IN_RECTIFICATION - {HazardStatus.PENALTY} or h.deadline is None or now < h.deadline:
                raise TransitionError("a penalty is proposed only for a hazard past its deadline")
            failed = await tx.session.scalar(select(func.count(Recheck.id)).where(
                Recheck.hazard_id == h.id, Recheck.rectified.is_(False), Recheck.at >= h.deadline))
            if not failed:
                raise TransitionError("no penalty without a failed recheck at the deadline (到期复查): recheck first")
            await self.overdue(tx, h, actor, now, "officer: not rectified after the deadline")
            return self.ctx.emit(tx, h)

    def _intended(self, p: PenaltyDecision, h: Hazard, target: str | None, kind: str | None,
                  amount_yuan: int | None, person_name: str | None, person_id: str | None,
                  clauses: list[str] | None) -> Intended:
        """The penalty an officer intends (the proposal, adjusted), checked against the rules and the clause
        database (dispatch.legal_basis). Raises BadRequest; nothing is written."""
        hcfg = self.ctx.hcfg
        target, kind = target or p.target, kind or p.kind
        rule = next((r for r in hcfg.rules_for(target) if r.kind == kind), None)
        if rule is None:
            raise BadRequest(f"no penalty rule for {target}/{kind}")
        amount = (amount_yuan if amount_yuan is not None else
                  (p.amount_yuan if (p.target, p.kind) == (target, kind) else rule.proposed_yuan))
        if kind == "warning":
            amount = 0
        elif not rule.min_yuan <= amount <= rule.max_yuan:
            raise BadRequest(f"amount must be {rule.min_yuan}–{rule.max_yuan} yuan for {target}/{kind}")
        if target == "individual" and not (person_name or p.person_name):
            raise BadRequest("a penalty on an individual needs the person's name")
        keys = clauses or ([c["key"] for c in p.clauses] if (target, kind) == (p.target, p.kind) else None)
        cited = penalty_basis(hcfg, h.category, target, kind, amount, keys)
        individual = target == "individual"
        return Intended(target, kind, amount, (person_name or p.person_name) if individual else "",
                        (person_id or p.person_id) if individual else "", [clause_snapshot(c) for c in cited],
                        beyond_authority(hcfg, target, kind, amount))

    def _receiving(self) -> str:
        fire = self.ctx.cfg.agencies.get("fire")
        return referral_authority(self.ctx.hcfg, fire.name if fire else None)

    async def confirm_penalty(self, penalty_id: int, actor: Actor, *, target: str | None = None,
                              kind: str | None = None, amount_yuan: int | None = None,
                              person_name: str | None = None, person_id: str | None = None,
                              clauses: list[str] | None = None) -> dict[str, Any]:
        """One action: the officer confirms (optionally adjusting target, kind, amount and the cited clauses, all
        checked against the clause database: dispatch.legal_basis); numbered here. A penalty beyond the station's
        authority is refused: the case is referred instead (`refer_case`)."""
        hcfg = self.ctx.hcfg
        async with self.ctx.writer.tx() as tx:
            s = tx.session
            p, h = await get_penalty(s, penalty_id, actor)
            if p.status != PenaltyStatus.PROPOSED:
                raise TransitionError(f"penalty is {p.status}")
            it = self._intended(p, h, target, kind, amount_yuan, person_name, person_id, clauses)
            if it.beyond is not None:
                raise BadRequest(f"a penalty {it.target}/{it.kind} of {it.amount_yuan} yuan is beyond the station's "
                                 f"authority ({it.beyond}): the station does not decide it; refer the case (移送) to "
                                 f"{self._receiving()} instead")
            now = self.ctx.clock()
            p.clauses = it.clauses
            p.target, p.kind, p.amount_yuan = it.target, it.kind, it.amount_yuan
            p.person_name, p.person_id = it.person_name, it.person_id
            p.year = now.year
            p.seq, p.number = await self.ctx.next_number(s, PenaltyDecision, hcfg.penalty_number_format, now.year)
            p.status, p.confirmed_at, p.confirmed_by = PenaltyStatus.CONFIRMED, now, actor.username
            p.confirmed_by_name = actor.signature
            self.ctx.record(tx, h, PENALTY_CONFIRMED, actor, now,
                            {"penalty_id": p.id, "number": p.number, "target": it.target, "kind": it.kind,
                             "amount_yuan": it.amount_yuan, "person_name": p.person_name,
                             "clauses": [c["key"] for c in p.clauses], "content_hash": content_hash(penalty_fields(p))})
            inform = await self._inform(tx, h, p, actor, now)
            self.ctx.emit(tx, h)
            return penalty_view(p, inform)

    async def refer_case(self, penalty_id: int, actor: Actor, *, target: str | None = None, kind: str | None = None,
                         amount_yuan: int | None = None, person_name: str | None = None,
                         person_id: str | None = None, clauses: list[str] | None = None) -> dict[str, Any]:
        """A proposed penalty beyond the station's authority: instead of a decision, a numbered 案件移送书 draft to the
        fire-rescue authority (the case, the intended penalty and its clause, the evidence list, why), for a
        supervisor to approve. A penalty the station may decide itself is refused here: it is confirmed."""
        hcfg = self.ctx.hcfg
        async with self.ctx.writer.tx() as tx:
            s = tx.session
            p, h = await get_penalty(s, penalty_id, actor)
            if p.status != PenaltyStatus.PROPOSED:
                raise TransitionError(f"penalty is {p.status}; only a proposed penalty is referred")
            it = self._intended(p, h, target, kind, amount_yuan, person_name, person_id, clauses)
            if it.beyond is None:
                raise BadRequest(f"a penalty {it.target}/{it.kind} of {it.amount_yuan} yuan is within the station's "
                                 "authority: confirm it (the station decides it) instead of referring the case")
            now = self.ctx.clock()
            seq, number = await self.ctx.next_number(s, CaseReferral, hcfg.referral_number_format, now.year)
            notice = await s.scalar(select(RectificationNotice).where(
                RectificationNotice.hazard_id == h.id, RectificationNotice.kind == "deadline")
                .order_by(RectificationNotice.id.desc()).limit(1))
            stages = (await s.scalars(select(HazardEvidence.stage).where(HazardEvidence.hazard_id == h.id))).all()
            rechecks = (await s.scalars(select(Recheck).where(Recheck.hazard_id == h.id).order_by(Recheck.id))).all()
            opinions = (await s.scalars(select(RecheckOpinion.number).where(RecheckOpinion.hazard_id == h.id)
                                        .order_by(RecheckOpinion.id))).all()
            r = CaseReferral(penalty_id=p.id, hazard_id=h.id, number=number, year=now.year, seq=seq,
                             status=ReferralStatus.PROPOSED, receiving_authority=self._receiving(), target=it.target,
                             person_name=it.person_name, person_id=it.person_id, kind=it.kind,
                             amount_yuan=it.amount_yuan, facts=p.facts, clauses=it.clauses, reason=it.beyond,
                             evidence=evidence_list(notice, list(stages), list(rechecks), list(opinions)),
                             issued_at=now, issued_by=actor.username, issued_by_name=actor.signature,
                             approved_by_name="")
            s.add(r)
            await s.flush()
            p.status = PenaltyStatus.REFERRED
            self.ctx.record(tx, h, PENALTY_REFERRED, actor, now,
                            {"penalty_id": p.id, "referral_id": r.id, "number": number, "target": it.target,
                             "kind": it.kind, "amount_yuan": it.amount_yuan, "reason": it.beyond,
                             "receiving_authority": r.receiving_authority,
                             "clauses": [c["key"] for c in it.clauses],
                             "content_hash": content_hash(referral_fields(r))})
            self.ctx.emit(tx, h)
            return referral_view(r)

    async def approve_referral(self, referral_id: int, actor: Actor) -> dict[str, Any]:
        """A supervisor who did not draft it approves the 案件移送书 (sealed and dated now): the case is handed over;
        the station's penalty proposal and the hazard's case close as referred."""
        async with self.ctx.writer.tx() as tx:
            s = tx.session
            r = await s.get(CaseReferral, referral_id)
            if r is None:
                raise NotFound(f"case referral {referral_id} not found")
            p, h = await get_penalty(s, r.penalty_id, actor)
            if locks_rows(s):  # under the hazard's lock: the referral as it is now
                r = await s.get(CaseReferral, referral_id, with_for_update=True, populate_existing=True) or r
            if r.status != ReferralStatus.PROPOSED:
                raise TransitionError(f"case referral is {r.status}")
            if r.issued_by == actor.username:
                raise Forbidden("the supervisor approving must not be the officer who drafted the referral")
            now = self.ctx.clock()
            r.status, r.approved_at, r.approved_by = ReferralStatus.APPROVED, now, actor.username
            r.approved_by_name = actor.signature
            self.ctx.record(tx, h, REFERRAL_APPROVED, actor, now,
                            {"penalty_id": p.id, "referral_id": r.id, "number": r.number,
                             "receiving_authority": r.receiving_authority,
                             "content_hash": content_hash(referral_fields(r))})
            p.status, p.closed_at, p.closed_by, p.closure = PenaltyStatus.CLOSED, now, actor.username, "referred"
            h.status, h.closed_at, h.closed_by, h.outcome = HazardStatus.CLOSED, now, actor.username, "referred"
            self.ctx.record(tx, h, HAZARD_CLOSED, actor, now,
                            {"outcome": "referred", "penalty_id": p.id, "referral_id": r.id})
            self.ctx.emit(tx, h)
            return referral_view(r)

    async def _inform(self, tx: Tx, h: Hazard, p: PenaltyDecision, actor: Actor, now: datetime) -> PenaltyNotice:
        """Serves the 行政处罚告知书 for the decision just confirmed: a numbered snapshot of what is intended."""
        hcfg = self.ctx.hcfg
        hearing = p.kind == "fine" and p.amount_yuan >= hcfg.hearing_min_yuan.get(p.target, 1 << 62)
        days = hcfg.hearing_days if hearing else hcfg.statement_days
        seq, number = await self.ctx.next_number(tx.session, PenaltyNotice, hcfg.inform_number_format, now.year)
        i = PenaltyNotice(penalty_id=p.id, hazard_id=h.id, number=number, year=now.year, seq=seq, issued_at=now,
                          issued_by=actor.username, issued_by_name=actor.signature, target=p.target,
                          person_name=p.person_name, person_id=p.person_id, kind=p.kind, amount_yuan=p.amount_yuan,
                          facts=p.facts, clauses=p.clauses, hearing=hearing, reply_by=now + timedelta(days=days),
                          statement="", statement_note="")
        tx.session.add(i)
        await tx.session.flush()
        self.ctx.record(tx, h, PENALTY_INFORMED, actor, now,
                        {"penalty_id": p.id, "inform_id": i.id, "number": number, "hearing": hearing,
                         "reply_by": iso(i.reply_by), "content_hash": content_hash(inform_fields(i))})
        return i

    async def record_statement(self, penalty_id: int, actor: Actor, statement: str, note: str) -> dict[str, Any]:
        """The party's statement and defence heard (stated) or its right waived (waived), on the 告知书."""
        if statement not in ("stated", "waived"):
            raise BadRequest("statement must be stated or waived")
        if statement == "stated" and not note.strip():
            raise BadRequest("record what the party stated")
        async with self.ctx.writer.tx() as tx:
            p, h = await get_penalty(tx.session, penalty_id, actor)
            i = await inform_of(tx.session, p.id)
            if p.status != PenaltyStatus.CONFIRMED or i is None:
                raise TransitionError("a statement is recorded on a served 行政处罚告知书 before approval")
            if i.statement:
                raise TransitionError(f"the party's statement is already recorded ({i.statement})")
            now = self.ctx.clock()
            i.statement, i.statement_note, i.statement_at, i.statement_by = statement, note, now, actor.username
            self.ctx.record(tx, h, PENALTY_STATEMENT, actor, now,
                            {"penalty_id": p.id, "inform_id": i.id, "statement": statement, "note": note})
            self.ctx.emit(tx, h)
            return penalty_view(p, i)

    async def approve_penalty(self, penalty_id: int, actor: Actor) -> dict[str, Any]:
        async with self.ctx.writer.tx() as tx:
            p, h = await get_penalty(tx.session, penalty_id, actor)
            if p.status != PenaltyStatus.CONFIRMED:
                raise TransitionError(f"penalty is {p.status}; an officer confirms it first")
            if p.confirmed_by == actor.username:
                raise Forbidden("the supervisor approving must not be the officer who confirmed")
            now = self.ctx.clock()
            inform = await inform_of(tx.session, p.id)
            if inform is None:
                raise TransitionError("no 行政处罚告知书 was served for this decision: it cannot be approved")
            if not inform.statement and now < inform.reply_by:
                raise TransitionError(f"the party may state and defend until {iso(inform.reply_by)}: record the "
                                      "statement (or its waiver) first, or approve after that")
            p.status, p.approved_at, p.approved_by = PenaltyStatus.APPROVED, now, actor.username
            p.approved_by_name = actor.signature
            self.ctx.record(tx, h, PENALTY_APPROVED, actor, now, {"penalty_id": p.id, "number": p.number,
                                                                  "content_hash": content_hash(penalty_fields(p))})
            self.ctx.emit(tx, h)
            return penalty_view(p, inform)

    async def close_penalty(self, penalty_id: int, actor: Actor, note: str = "") -> dict[str, Any]:
        """Payment (fine) or delivery (warning) recorded; the hazard's case closes."""
        async with self.ctx.writer.tx() as tx:
            p, h = await get_penalty(tx.session, penalty_id, actor)
            if p.status != PenaltyStatus.APPROVED:
                raise TransitionError(f"penalty is {p.status}; it must be approved first")
            now = self.ctx.clock()
            closure = "paid" if p.kind == "fine" else "warned"
            p.status, p.closed_at, p.closed_by = PenaltyStatus.CLOSED, now, actor.username
            p.closure, p.closure_note = closure, note
            self.ctx.record(tx, h, PENALTY_CLOSED, actor, now,
                            {"penalty_id": p.id, "closure": closure, "amount_yuan": p.amount_yuan, "note": note})
            rectified = await tx.session.scalar(select(func.count(Recheck.id)).where(
                Recheck.hazard_id == h.id, Recheck.rectified.is_(True)))
            h.status, h.closed_at, h.closed_by = HazardStatus.CLOSED, now, actor.username
            h.outcome = "rectified_after_penalty" if rectified else "penalized"
            self.ctx.record(tx, h, HAZARD_CLOSED, actor, now, {"outcome": h.outcome, "penalty_id": p.id})
            self.ctx.emit(tx, h)
            return penalty_view(p, await inform_of(tx.session, p.id))
