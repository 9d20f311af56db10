"""Hazard case commands: a hazard is found, gets evidence, a rectification notice, the unit's proof and a recheck
(or is withdrawn); on-site inspections are recorded. Each command is one transaction through the core's Writer.

What happens at a deadline is `hazard_deadlines.py`; penalties are `penalties.py`; reads are `hazard_views.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from dispatch.actor import Actor
from dispatch.document_content import content_hash, notice_fields, opinion_fields
from dispatch.errors import BadRequest
from dispatch.hazard_context import HazardContext
from dispatch.hazard_models import Hazard, HazardEvidence, Recheck, RecheckOpinion, RectificationNotice
from dispatch.hazard_rows import evidence_view, get_hazard, notice_view
from dispatch.hazard_uploads import EvidenceGroup, Upload, check_images, store_evidence
from dispatch.hazards import (
    HAZARD_CLOSED,
    HAZARD_CREATED,
    NOTICE_IMMEDIATE,
    NOTICE_ISSUED,
    OBSTRUCTION_CLEARED,
    PROOF_SUBMITTED,
    RECHECKED,
    SOURCES,
    STAGES,
    clause_snapshot,
)
from dispatch.legal_basis import order_basis
from dispatch.penalties import Penalties
from dispatch.state import IN_RECTIFICATION, HazardStatus, TransitionError
from dispatch.views import iso
from dispatch.writer import Tx


class HazardCases:
    def __init__(self, ctx: HazardContext, penalties: Penalties) -> None:
        self.ctx = ctx
        self.penalties = penalties  # a failed recheck after the deadline proposes a penalty

    # ------------------------------------------------------------ creating

    async def create(self, *, unit_id: str, category: str, source: str, actor: Actor, description: str = "",
                     severity: str | None = None, lat: float | None = None, lon: float | None = None,
                     camera_id: str | None = None, zone: str | None = None, camera_visible: bool | None = None,
                     photos: Sequence[Upload] = (), found_at: datetime | None = None,
                     evidence: Sequence[EvidenceGroup] = (), join_open: bool = False) -> dict[str, Any]:
        """A hazard from a detection, an officer's video patrol or an on-site inspection.

        One transaction: the hazard, `photos` ("before" evidence) and any further `evidence` groups. With `join_open`
        an open hazard of the same unit, camera, zone and category is returned as it is instead (nothing written)."""
        new = self._new(unit_id, category, source, severity, camera_id, camera_visible, photos, evidence)
        async with self.ctx.writer.tx() as tx:
            if join_open:
                existing = await tx.session.scalar(select(Hazard).where(
                    Hazard.unit_id == unit_id, Hazard.camera_id == camera_id, Hazard.zone == zone,
                    Hazard.category == category, Hazard.status != HazardStatus.CLOSED).limit(1))
                if existing is not None:
                    return self.ctx.view(existing)
            h = await self._insert(tx, new, actor, description, lat, lon, zone, found_at, photos, evidence)
            return self.ctx.emit(tx, h)

    async def create_in(self, tx: Tx, *, unit_id: str, category: str, source: str, actor: Actor,
                        description: str = "", severity: str | None = None, lat: float | None = None,
                        lon: float | None = None, photos: Sequence[Upload] = (),
                        found_at: datetime | None = None) -> tuple[Hazard, dict[str, Any]]:
        """`create` inside the caller's transaction (a complaint accepted into a hazard commits both or neither):
        the hazard row and its view."""
        new = self._new(unit_id, category, source, severity, None, None, photos, ())
        h = await self._insert(tx, new, actor, description, lat, lon, None, found_at, photos, ())
        return h, self.ctx.emit(tx, h)

    def _new(self, unit_id: str, category: str, source: str, severity: str | None, camera_id: str | None,
             camera_visible: bool | None, photos: Sequence[Upload],
             evidence: Sequence[EvidenceGroup]) -> Hazard:
        """The new hazard's checked fields (BadRequest for an unknown unit, category or source, a bad severity or
        photo), not yet added anywhere."""
        ctx = self.ctx
        ctx.unit(unit_id)
        cat = ctx.hcfg.category(category)
        if cat is None:
            raise BadRequest(f"unknown category {category!r}; configured: {[c.key for c in ctx.hcfg.categories]}")
        if source not in SOURCES:
            raise BadRequest(f"source must be one of {SOURCES}")
        if severity is not None and severity not in ("general", "major"):
            raise BadRequest("severity must be general or major")
        check_images(photos, ctx.hcfg)
        for group in evidence:
            check_images(group.files, ctx.hcfg)
        visible = cat.camera_visible and camera_id is not None if camera_visible is None else camera_visible
        return Hazard(unit_id=unit_id, category=category, severity=severity or cat.severity, source=source,
                      status=HazardStatus.OPEN, camera_id=camera_id, camera_visible=bool(visible))

    async def _insert(self, tx: Tx, h: Hazard, actor: Actor, description: str, lat: float | None,
                      lon: float | None, zone: str | None, found_at: datetime | None, photos: Sequence[Upload],
                      evidence: Sequence[EvidenceGroup]) -> Hazard:
        """`_new`'s hazard added (`add_hazard`) with its evidence."""
        ctx = self.ctx
        now = ctx.clock()
        added = await self.add_hazard(tx, unit_id=h.unit_id, category=h.category, source=h.source, actor=actor,
                                      description=description, severity=h.severity, lat=lat, lon=lon,
                                      camera_id=h.camera_id, zone=zone, camera_visible=h.camera_visible,
                                      found_at=found_at, now=now)
        await store_evidence(ctx, tx, added, photos, "before", "", actor, now)
        for group in evidence:
            await store_evidence(ctx, tx, added, group.files, group.stage, group.note, actor, now)
        return added

    async def add_hazard(self, tx: Tx, *, unit_id: str, category: str, source: str, actor: Actor, description: str,
                         severity: str, lat: float | None = None, lon: float | None = None,
                         camera_id: str | None = None, zone: str | None = None, camera_visible: bool = False,
                         found_at: datetime | None = None, clauses: Sequence[str] = (),
                         inspection_id: int | None = None, data: dict[str, Any] | None = None,
                         now: datetime | None = None) -> Hazard:
        """Inside a transaction: a new open hazard and its `hazard.created` entry (`data` added to the entry's).
        `clauses`: the law clauses it violates as found (an inspection item's), cited first on its notice."""
        ctx = self.ctx
        now = now or ctx.clock()
        h = Hazard(unit_id=unit_id, category=category, severity=severity, source=source, status=HazardStatus.OPEN,
                   description=description, lat=lat, lon=lon, camera_id=camera_id, zone=zone,
                   camera_visible=camera_visible, found_at=found_at or now, found_by=actor.username,
                   clauses=list(clauses), inspection_id=inspection_id)
        tx.session.add(h)
        await tx.session.flush()
        ctx.record(tx, h, HAZARD_CREATED, actor, now,
                   {"category": category, "severity": h.severity, "source": source, "camera_id": camera_id,
                    "zone": zone, "lat": lat, "lon": lon, "description": description, "found_at": iso(h.found_at),
                    **({"clauses": list(clauses)} if clauses else {}), **(data or {})})
        return h

    async def create_from_detection(self, *, unit_id: str, camera_id: str, zone: str | None, category: str,
                                    snapshot_jpeg: bytes | None, detected_at: datetime | None = None,
                                    detector: str = "detector", note: str = "",
                                    reference_jpeg: bytes | None = None) -> dict[str, Any]:
        """For the detector layer: a blocked-exit (or similar) detection becomes a hazard with its snapshot and, when
        given, the clear reference it was judged against (both "before" evidence), in one transaction.

        An open hazard of the same unit, camera, zone and category absorbs repeated detections (returned as is).
        """
        photos = [Upload(f"{camera_id}-snapshot.jpg", "image/jpeg", snapshot_jpeg)] if snapshot_jpeg else []
        reference = [EvidenceGroup("before", [Upload(f"{camera_id}-{zone}-clear-reference.jpg", "image/jpeg",
                                                     reference_jpeg)], "clear reference (before)")] \
            if reference_jpeg else []
        return await self.create(unit_id=unit_id, category=category, source="detection",
                                 actor=Actor(detector, "system"), description=note, camera_id=camera_id, zone=zone,
                                 camera_visible=True, photos=photos, found_at=detected_at, evidence=reference,
                                 join_open=True)

    async def obstruction_cleared(self, *, unit_id: str, camera_id: str, zone: str, cleared_at: datetime,
                                  data: dict[str, Any], category: str = "blocked_exit",
                                  detector: str = "detector") -> int | None:
        """A detector saw an obstructed exit clear again: recorded on the exit's open hazard, in one transaction.
        Returns the hazard's id; None when none is open (nothing is written)."""
        async with self.ctx.writer.tx() as tx:
            h = await tx.session.scalar(select(Hazard).where(
                Hazard.unit_id == unit_id, Hazard.camera_id == camera_id, Hazard.zone == zone,
                Hazard.category == category, Hazard.status != HazardStatus.CLOSED).limit(1))
            if h is None:
                return None
            self.ctx.record(tx, h, OBSTRUCTION_CLEARED, Actor(detector, "system"), cleared_at, data)
            return h.id

    async def add_evidence(self, hazard_id: int, stage: str, files: Sequence[Upload], note: str,
                           actor: Actor) -> list[dict[str, Any]]:
        if stage not in STAGES:
            raise BadRequest(f"stage must be one of {STAGES}")
        if not files:
            raise BadRequest("no file uploaded")
        async with self.ctx.writer.tx() as tx:
            h = await get_hazard(tx.session, hazard_id, actor)
            rows = await store_evidence(self.ctx, tx, h, files, stage, note, actor, self.ctx.clock())
            self.ctx.emit(tx, h)
            return [evidence_view(r) for r in rows]

    async def withdraw(self, hazard_id: int, note: str, actor: Actor) -> dict[str, Any]:
        """An open hazard found to be none (e.g. a false detection) is closed without a notice."""
        async with self.ctx.writer.tx() as tx:
            h = await get_hazard(tx.session, hazard_id, actor)
            if h.status != HazardStatus.OPEN:
                raise TransitionError("only a hazard without a notice can be withdrawn")
            now = self.ctx.clock()
            h.status, h.outcome, h.closed_at, h.closed_by = HazardStatus.CLOSED, "withdrawn", now, actor.username
            self.ctx.record(tx, h, HAZARD_CLOSED, actor, now, {"outcome": "withdrawn", "note": note})
            return self.ctx.emit(tx, h)

    # ------------------------------------------------------------ notice

    async def issue_notice(self, hazard_id: int, actor: Actor, *, deadline: datetime | None = None,
                           days: int | None = None, clauses: Sequence[str] | None = None,
                           requirement: str | None = None, immediate: bool = False,
                           basis: Sequence[str] | None = None) -> dict[str, Any]:
        """责令限期改正通知书 with a number, a deadline and the cited law clauses; or, `immediate`, a 责令立即改正通知书
        for a violation corrected on the spot: its own number series, the order's item-level `basis` from the clause
        database (checked to cover the violation), and the case closes as rectified in the same transaction."""
        ctx = self.ctx
        if immediate and (deadline is not None or days is not None):
            raise BadRequest("an order to correct at once (immediate) takes no deadline or days")
        if not immediate and basis:
            raise BadRequest("basis is the clause of an order to correct at once (immediate)")
        async with ctx.writer.tx() as tx:
            s = tx.session
            h = await get_hazard(s, hazard_id, actor)
            if h.status != HazardStatus.OPEN:
                raise TransitionError(f"hazard is {h.status}; a notice is issued once, on an open hazard")
            cat = ctx.hcfg.category(h.category)
            now = ctx.clock()
            if immediate:
                deadline = now
            elif deadline is None:
                deadline = now + timedelta(days=days if days is not None else (cat.default_days if cat else 3))
            if deadline.tzinfo is None:
                raise BadRequest("deadline needs a time zone")
            if not immediate and deadline <= now:
                raise BadRequest("deadline must be in the future")
            # the clauses the finding named (an inspection item's) first, then the category's
            keys = list(clauses) if clauses else list(dict.fromkeys([*h.clauses, *(cat.clauses if cat else [])]))
            cited = []
            for k in keys:
                c = ctx.hcfg.clause(k)
                if c is None:
                    raise BadRequest(f"unknown law clause {k!r}")
                cited.append(clause_snapshot(c))
            grounds = [clause_snapshot(c) for c in order_basis(ctx.hcfg, h.category, basis)] if immediate else []
            kind = "immediate" if immediate else "deadline"
            fmt = ctx.hcfg.immediate_number_format if immediate else ctx.hcfg.notice_number_format
            year = now.year
            seq, number = await ctx.next_number(s, RectificationNotice, fmt, year, RectificationNotice.kind == kind)
            n = RectificationNotice(hazard_id=h.id, number=number, year=year, seq=seq, issued_at=now,
                                    issued_by=actor.username, issued_by_name=actor.signature, deadline=deadline,
                                    requirement=requirement or (cat.requirement if cat else ""), clauses=cited,
                                    kind=kind, basis=grounds)
            s.add(n)
            await s.flush()
            data = {"notice_id": n.id, "number": n.number, "clauses": [c["key"] for c in cited]}
            if immediate:
                ctx.record(tx, h, NOTICE_IMMEDIATE, actor, now,
                           {**data, "immediate_id": n.id, "basis": [c["key"] for c in grounds],
                            "content_hash": content_hash(notice_fields(n))})
                await self._close_rectified(tx, h, actor, now, {"on_the_spot": True, "notice_id": n.id})
            else:
                h.status, h.deadline = HazardStatus.NOTICE_ISSUED, deadline
                ctx.record(tx, h, NOTICE_ISSUED, actor, now,
                           {**data, "deadline": iso(deadline), "content_hash": content_hash(notice_fields(n))})
            view = ctx.emit(tx, h)
            view["notice"] = notice_view(n)
            return view

    # ------------------------------------------------------------ proof and recheck

    async def submit_proof(self, hazard_id: int, note: str, files: Sequence[Upload], actor: Actor) -> dict[str, Any]:
        """The unit's rectification proof (photos and a note)."""
        if not files and not note.strip():
            raise BadRequest("send at least a photo or a note")
        async with self.ctx.writer.tx() as tx:
            h = await get_hazard(tx.session, hazard_id, actor)
            if h.status not in IN_RECTIFICATION:
                raise TransitionError(f"hazard is {h.status}; proof is for a hazard under a notice")
            now = self.ctx.clock()
            rows = await store_evidence(self.ctx, tx, h, files, "proof", note, actor, now)
            self.ctx.record(tx, h, PROOF_SUBMITTED, actor, now,
                            {"note": note, "evidence_ids": [r.id for r in rows], "deadline": iso(h.deadline)})
            if h.status == HazardStatus.NOTICE_ISSUED:
                h.status = HazardStatus.PROOF_SUBMITTED
            return self.ctx.emit(tx, h)

    async def recheck(self, hazard_id: int, rectified: bool, note: str, actor: Actor,
                      photos: Sequence[Upload] = ()) -> dict[str, Any]:
        """An officer's recheck (复查), with optional after-photos."""
        async with self.ctx.writer.tx() as tx:
            h = await get_hazard(tx.session, hazard_id, actor)
            return await self.apply_recheck(tx, h, "officer", rectified, note, actor, photos)

    async def apply_recheck(self, tx: Tx, h: Hazard, method: str, rectified: bool, note: str, actor: Actor,
                            photos: Sequence[Upload]) -> dict[str, Any]:
        """Inside a transaction: an officer's or a camera's recheck; closes, returns to the unit, or → penalty."""
        if h.status not in IN_RECTIFICATION:
            raise TransitionError(f"hazard is {h.status}; nothing to recheck")
        now = self.ctx.clock()
        rows = await store_evidence(self.ctx, tx, h, photos, "recheck", note, actor, now)
        r = Recheck(hazard_id=h.id, method=method, rectified=rectified, note=note, at=now, by=actor.username,
                    evidence_id=rows[0].id if rows else None)
        tx.session.add(r)
        await tx.session.flush()
        opinion = await self._opinion(tx, h, r, actor) if method == "officer" else None
        self.ctx.record(tx, h, RECHECKED, actor, now,
                        {"recheck_id": r.id, "method": method, "rectified": rectified, "note": note,
                         "deadline": iso(h.deadline), "evidence_ids": [e.id for e in rows],
                         **({"opinion_id": opinion.id, "number": opinion.number,
                             "content_hash": content_hash(opinion_fields(opinion))} if opinion else {})})
        if rectified and h.status != HazardStatus.PENALTY:
            await self._close_rectified(tx, h, actor, now)
        elif not rectified and h.status != HazardStatus.PENALTY:
            if h.deadline is not None and now >= h.deadline:
                await self.penalties.overdue(tx, h, actor, now, "recheck: not rectified after the deadline")
            else:
                h.status = HazardStatus.NOTICE_ISSUED  # before the deadline: the unit still has time
        return self.ctx.emit(tx, h)

    async def _opinion(self, tx: Tx, h: Hazard, r: Recheck, actor: Actor) -> RecheckOpinion | None:
        """The 复查意见书 of an officer's recheck: a numbered snapshot citing the notice rechecked (None: none)."""
        s = tx.session
        notice = await s.scalar(select(RectificationNotice).where(
            RectificationNotice.hazard_id == h.id, RectificationNotice.kind == "deadline")
            .order_by(RectificationNotice.id.desc()).limit(1))
        if notice is None:
            return None
        hcfg = self.ctx.hcfg
        seq, number = await self.ctx.next_number(s, RecheckOpinion, hcfg.opinion_number_format, r.at.year)
        o = RecheckOpinion(recheck_id=r.id, hazard_id=h.id, notice_id=notice.id, number=number, year=r.at.year,
                           seq=seq, issued_at=r.at, issued_by=actor.username, issued_by_name=actor.signature,
                           notice_number=notice.number, notice_issued_at=notice.issued_at,
                           deadline=notice.deadline, rectified=r.rectified, note=r.note)
        s.add(o)
        await s.flush()
        return o

    async def _close_rectified(self, tx: Tx, h: Hazard, actor: Actor, now: datetime,
                               extra: dict[str, Any] | None = None) -> None:
        ev_rows = (await tx.session.scalars(select(HazardEvidence).where(HazardEvidence.hazard_id == h.id))).all()
        before = [e.id for e in ev_rows if e.stage == "before"]
        after = [e.id for e in ev_rows if e.stage in ("proof", "recheck", "after")]
        h.status, h.outcome, h.closed_at, h.closed_by = HazardStatus.CLOSED, "rectified", now, actor.username
        self.ctx.record(tx, h, HAZARD_CLOSED, actor, now,
                        {"outcome": "rectified", "before_evidence": before, "after_evidence": after, **(extra or {})})
