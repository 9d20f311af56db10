"""Hazard supervision: found → rectification notice → proof → recheck → closed, or overdue → penalty.

Every step goes through the core's single Writer (one lock, one transaction, one hash chain) and is
recorded with `hazard_id`, the actor and the time, so the hazard's timeline and every KPI derive from
the record. Evidence bytes live in `hazard_evidence`; their SHA-256 is written into the record.

Status: open → notice_issued → (proof_submitted) → closed(rectified)
        notice_issued/proof_submitted at the deadline → camera recheck (if camera-visible and a camera
        callable is wired) → closed(rectified) or penalty; without a camera result: no proof → penalty,
        proof → recheck_due (an officer rechecks).
        penalty: proposed → confirmed (officer) → approved (admin) → closed (paid / warned).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.hazards import HazardsConfig, LawClause
from config.schema import FirelinkConfig
from dispatch import events as ev
from dispatch.actor import SYSTEM, Actor
from dispatch.deadlines import run_deadlines
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.events import Event, EventBus
from dispatch.hazard_models import Hazard, HazardEvidence, PenaltyDecision, Recheck, RectificationNotice
from dispatch.models import RecordEntry, Unit
from dispatch.state import IN_RECTIFICATION, UNDER_NOTICE, HazardStatus, PenaltyStatus, TransitionError
from dispatch.views import iso, record_view, unit_view
from dispatch.writer import Tx, Writer
from ingest.contract import utcnow
from ingest.integrity import IntegrityError, sha256_bytes

log = logging.getLogger(__name__)

# Record actions (the hazard timeline's vocabulary; KPIs read these).
HAZARD_CREATED = "hazard.created"
EVIDENCE_ADDED = "hazard.evidence_added"
NOTICE_ISSUED = "hazard.notice_issued"
PROOF_SUBMITTED = "hazard.proof_submitted"
RECHECKED = "hazard.rechecked"
RECHECK_DUE = "hazard.recheck_due"
OVERDUE = "hazard.overdue"
HAZARD_CLOSED = "hazard.closed"
PENALTY_PROPOSED = "penalty.proposed"
PENALTY_CONFIRMED = "penalty.confirmed"
PENALTY_APPROVED = "penalty.approved"
PENALTY_CLOSED = "penalty.closed"
INSPECTION = "inspection.recorded"
OBSTRUCTION_CLEARED = "hazard.obstruction_cleared"  # a detector saw the blocked exit clear again

STATUSES = tuple(HazardStatus)
SOURCES = ("detection", "patrol", "inspection")
STAGES = ("before", "proof", "recheck", "after")
CAMERA = Actor("camera", "system")

IMAGE_TYPES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n", "image/webp": b"RIFF"}

# recheck_by_camera(hazard view) -> (rectified, snapshot JPEG) or None (no camera result: an officer rechecks)
CameraRecheck = Callable[[dict[str, Any]], Awaitable[tuple[bool, bytes] | None]]


async def no_camera(_hazard: dict[str, Any]) -> tuple[bool, bytes] | None:
    return None


def hazards_config(cfg: FirelinkConfig) -> HazardsConfig:
    """The `hazards:` section of the config, or the defaults while FirelinkConfig has none."""
    h = getattr(cfg, "hazards", None)
    return h if isinstance(h, HazardsConfig) else HazardsConfig()


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class EvidenceGroup:
    """Files stored together as one evidence entry (one stage, one note)."""

    stage: str
    files: Sequence[Upload]
    note: str = ""


def sniff_image(data: bytes) -> str | None:
    """The image type by its bytes (never by the name or the declared type), verified by Pillow."""
    kind = None
    for ctype, magic in IMAGE_TYPES.items():
        if data.startswith(magic) and (ctype != "image/webp" or data[8:12] == b"WEBP"):
            kind = ctype
    if kind is None:
        return None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except Exception:
        return None
    return kind


def clause_snapshot(c: LawClause) -> dict[str, str]:
    return {"key": c.key, "citation": c.citation(), "text": c.text}


# ------------------------------------------------------------------ views

def evidence_view(e: HazardEvidence) -> dict[str, Any]:
    return {"id": e.id, "hazard_id": e.hazard_id, "stage": e.stage, "content_type": e.content_type,
            "filename": e.filename, "size": e.size, "sha256": e.sha256, "note": e.note,
            "uploaded_at": iso(e.uploaded_at), "uploaded_by": e.uploaded_by, "url": f"/api/evidence/{e.id}"}


def notice_view(n: RectificationNotice) -> dict[str, Any]:
    return {"id": n.id, "hazard_id": n.hazard_id, "number": n.number, "issued_at": iso(n.issued_at),
            "issued_by": n.issued_by, "deadline": iso(n.deadline), "requirement": n.requirement,
            "clauses": n.clauses, "pdf": f"/api/notices/{n.id}/pdf"}


def recheck_view(r: Recheck) -> dict[str, Any]:
    return {"id": r.id, "hazard_id": r.hazard_id, "method": r.method, "rectified": r.rectified, "note": r.note,
            "at": iso(r.at), "by": r.by, "evidence_id": r.evidence_id}


def penalty_view(p: PenaltyDecision) -> dict[str, Any]:
    return {"id": p.id, "hazard_id": p.hazard_id, "status": p.status, "target": p.target,
            "person_name": p.person_name, "kind": p.kind, "amount_yuan": p.amount_yuan, "facts": p.facts,
            "clauses": p.clauses, "number": p.number, "proposed_at": iso(p.proposed_at),
            "proposed_by": p.proposed_by, "confirmed_at": iso(p.confirmed_at), "confirmed_by": p.confirmed_by,
            "approved_at": iso(p.approved_at), "approved_by": p.approved_by, "closed_at": iso(p.closed_at),
            "closed_by": p.closed_by, "closure": p.closure, "closure_note": p.closure_note,
            "pdf": f"/api/penalties/{p.id}/pdf" if p.number else None}


class HazardService:
    def __init__(self, writer: Writer, cfg: FirelinkConfig, units: dict[str, Unit],
                 clock: Callable[[], datetime] = utcnow, recheck_by_camera: CameraRecheck = no_camera) -> None:
        self.writer = writer
        self.db = writer.db
        self.bus: EventBus = writer.bus
        self.cfg = cfg
        self.hcfg = hazards_config(cfg)
        self.units = units
        self.clock = clock
        self.recheck_by_camera = recheck_by_camera

    # ------------------------------------------------------------ helpers

    def _unit(self, unit_id: str) -> Unit:
        unit = self.units.get(unit_id)
        if unit is None:
            raise BadRequest(f"unknown unit {unit_id!r}")
        return unit

    def view(self, h: Hazard) -> dict[str, Any]:
        cat = self.hcfg.category(h.category)
        return {"id": h.id, "unit_id": h.unit_id, "unit": unit_view(self._unit(h.unit_id)),
                "category": h.category, "category_name": cat.name if cat else h.category,
                "severity": h.severity, "source": h.source, "status": h.status, "description": h.description,
                "lat": h.lat, "lon": h.lon, "camera_id": h.camera_id, "zone": h.zone,
                "camera_visible": h.camera_visible, "found_at": iso(h.found_at), "found_by": h.found_by,
                "deadline": iso(h.deadline), "closed_at": iso(h.closed_at), "closed_by": h.closed_by,
                "outcome": h.outcome}

    def _emit(self, tx: Tx, h: Hazard) -> dict[str, Any]:
        view = self.view(h)
        tx.events.append(Event(ev.HAZARD_UPDATED, {"hazard": view, "unit_id": h.unit_id}))
        return view

    def _record(self, tx: Tx, h: Hazard, action: str, actor: Actor, at: datetime,
                data: dict[str, Any] | None = None) -> None:
        self.writer.record(tx, action, actor, at, {"unit_id": h.unit_id, **(data or {})}, hazard_id=h.id)

    async def _hazard(self, s: AsyncSession, hazard_id: int) -> Hazard:
        h = await s.get(Hazard, hazard_id)
        if h is None:
            raise NotFound(f"hazard {hazard_id} not found")
        return h

    @staticmethod
    def _check_visible(actor: Actor, unit_id: str) -> None:
        if actor.role == "unit" and actor.unit_id != unit_id:
            raise Forbidden("units see only their own hazards")
        if actor.role == "agency":
            raise Forbidden("agencies do not see hazards")

    def _check_images(self, files: Sequence[Upload]) -> list[tuple[Upload, str]]:
        if len(files) > self.hcfg.max_files_per_upload:
            raise BadRequest(f"at most {self.hcfg.max_files_per_upload} files per upload")
        out = []
        for f in files:
            if len(f.data) > self.hcfg.max_upload_bytes:
                raise BadRequest(f"{f.filename or 'file'} is larger than {self.hcfg.max_upload_bytes} bytes")
            if not f.data:
                raise BadRequest(f"{f.filename or 'file'} is empty")
            kind = sniff_image(f.data)
            if kind is None:
                raise BadRequest(f"{f.filename or 'file'} is not a JPEG, PNG or WebP image")
            out.append((f, kind))
        return out

    async def _store(self, tx: Tx, h: Hazard, files: Sequence[Upload], stage: str, note: str, actor: Actor,
                     now: datetime) -> list[HazardEvidence]:
        rows = []
        for f, kind in self._check_images(files):
            row = HazardEvidence(hazard_id=h.id, stage=stage, content_type=kind, filename=f.filename[:200],
                                 size=len(f.data), sha256=sha256_bytes(f.data), data=f.data,
                                 note=note, uploaded_at=now, uploaded_by=actor.username)
            tx.session.add(row)
            rows.append(row)
        if rows:
            await tx.session.flush()
            self._record(tx, h, EVIDENCE_ADDED, actor, now,
                         {"stage": stage, "files": [{"evidence_id": r.id, "sha256": r.sha256, "size": r.size,
                                                     "content_type": r.content_type} for r in rows]})
        return rows

    # ------------------------------------------------------------ creating

    async def create(self, *, unit_id: str, category: str, source: str, actor: Actor, description: str = "",
                     severity: str | None = None, lat: float | None = None, lon: float | None = None,
                     camera_id: str | None = None, zone: str | None = None, camera_visible: bool | None = None,
                     photos: Sequence[Upload] = (), found_at: datetime | None = None,
                     evidence: Sequence[EvidenceGroup] = (), join_open: bool = False) -> dict[str, Any]:
        """A hazard from a detection, an officer's video patrol or an on-site inspection.

        One transaction: the hazard, `photos` ("before" evidence) and any further `evidence` groups. With `join_open`
        an open hazard of the same unit, camera, zone and category is returned as it is instead (nothing written)."""
        self._unit(unit_id)
        cat = self.hcfg.category(category)
        if cat is None:
            raise BadRequest(f"unknown category {category!r}; configured: {[c.key for c in self.hcfg.categories]}")
        if source not in SOURCES:
            raise BadRequest(f"source must be one of {SOURCES}")
        if severity is not None and severity not in ("general", "major"):
            raise BadRequest("severity must be general or major")
        self._check_images(photos)
        for group in evidence:
            self._check_images(group.files)
        visible = cat.camera_visible and camera_id is not None if camera_visible is None else camera_visible
        async with self.writer.tx() as tx:
            if join_open:
                existing = await tx.session.scalar(select(Hazard).where(
                    Hazard.unit_id == unit_id, Hazard.camera_id == camera_id, Hazard.zone == zone,
                    Hazard.category == category, Hazard.status != HazardStatus.CLOSED).limit(1))
                if existing is not None:
                    return self.view(existing)
            now = self.clock()
            h = Hazard(unit_id=unit_id, category=category, severity=severity or cat.severity, source=source,
                       status=HazardStatus.OPEN, description=description, lat=lat, lon=lon, camera_id=camera_id,
                       zone=zone,
                       camera_visible=bool(visible), found_at=found_at or now, found_by=actor.username)
            tx.session.add(h)
            await tx.session.flush()
            self._record(tx, h, HAZARD_CREATED, actor, now,
                         {"category": category, "severity": h.severity, "source": source, "camera_id": camera_id,
                          "zone": zone, "lat": lat, "lon": lon, "description": description,
                          "found_at": iso(h.found_at)})
            await self._store(tx, h, photos, "before", "", actor, now)
            for group in evidence:
                await self._store(tx, h, group.files, group.stage, group.note, actor, now)
            return self._emit(tx, h)

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
        async with self.writer.tx() as tx:
            h = await tx.session.scalar(select(Hazard).where(
                Hazard.unit_id == unit_id, Hazard.camera_id == camera_id, Hazard.zone == zone,
                Hazard.category == category, Hazard.status != HazardStatus.CLOSED).limit(1))
            if h is None:
                return None
            self._record(tx, h, OBSTRUCTION_CLEARED, Actor(detector, "system"), cleared_at, data)
            return h.id

    async def add_evidence(self, hazard_id: int, stage: str, files: Sequence[Upload], note: str,
                           actor: Actor) -> list[dict[str, Any]]:
        if stage not in STAGES:
            raise BadRequest(f"stage must be one of {STAGES}")
        if not files:
            raise BadRequest("no file uploaded")
        async with self.writer.tx() as tx:
            h = await self._hazard(tx.session, hazard_id)
            self._check_visible(actor, h.unit_id)
            rows = await self._store(tx, h, files, stage, note, actor, self.clock())
            self._emit(tx, h)
            return [evidence_view(r) for r in rows]

    async def withdraw(self, hazard_id: int, note: str, actor: Actor) -> dict[str, Any]:
        """An open hazard found to be none (e.g. a false detection) is closed without a notice."""
        async with self.writer.tx() as tx:
            h = await self._hazard(tx.session, hazard_id)
            if h.status != HazardStatus.OPEN:
                raise TransitionError("only a hazard without a notice can be withdrawn")
            now = self.clock()
            h.status, h.outcome, h.closed_at, h.closed_by = HazardStatus.CLOSED, "withdrawn", now, actor.username
            self._record(tx, h, HAZARD_CLOSED, actor, now, {"outcome": "withdrawn", "note": note})
            return self._emit(tx, h)

    async def record_inspection(self, unit_id: str, note: str, actor: Actor) -> dict[str, Any]:
        """An on-site inspection (found hazards are created separately); counts as a unit inspected."""
        self._unit(unit_id)
        async with self.writer.tx() as tx:
            now = self.clock()
            self.writer.record(tx, INSPECTION, actor, now, {"unit_id": unit_id, "note": note})
            return {"unit_id": unit_id, "at": iso(now), "by": actor.username}

    # ------------------------------------------------------------ notice

    async def _next_seq(self, s: AsyncSession, model: type[RectificationNotice] | type[PenaltyDecision],
                        year: int) -> int:
        cur = await s.scalar(select(func.max(model.seq)).where(model.year == year))
        return int(cur or 0) + 1

    def _number(self, fmt: str, year: int, seq: int) -> str:
        return fmt.format(station=self.cfg.station.name, year=year, seq=seq)

    async def issue_notice(self, hazard_id: int, actor: Actor, *, deadline: datetime | None = None,
                           days: int | None = None, clauses: Sequence[str] | None = None,
                           requirement: str | None = None) -> dict[str, Any]:
        """责令限期改正通知书 with a number, a deadline and the cited law clauses."""
        async with self.writer.tx() as tx:
            s = tx.session
            h = await self._hazard(s, hazard_id)
            if h.status != HazardStatus.OPEN:
                raise TransitionError(f"hazard is {h.status}; a notice is issued once, on an open hazard")
            cat = self.hcfg.category(h.category)
            now = self.clock()
            if deadline is None:
                deadline = now + timedelta(days=days if days is not None else (cat.default_days if cat else 3))
            if deadline.tzinfo is None:
                raise BadRequest("deadline needs a time zone")
            if deadline <= now:
                raise BadRequest("deadline must be in the future")
            keys = list(clauses) if clauses else (cat.clauses if cat else [])
            cited = []
            for k in keys:
                c = self.hcfg.clause(k)
                if c is None:
                    raise BadRequest(f"unknown law clause {k!r}")
                cited.append(clause_snapshot(c))
            year = now.year
            seq = await self._next_seq(s, RectificationNotice, year)
            n = RectificationNotice(hazard_id=h.id, number=self._number(self.hcfg.notice_number_format, year, seq),
                                    year=year, seq=seq, issued_at=now, issued_by=actor.username, deadline=deadline,
                                    requirement=requirement or (cat.requirement if cat else ""), clauses=cited)
            s.add(n)
            await s.flush()
            h.status, h.deadline = HazardStatus.NOTICE_ISSUED, deadline
            self._record(tx, h, NOTICE_ISSUED, actor, now,
                         {"notice_id": n.id, "number": n.number, "deadline": iso(deadline),
                          "clauses": [c["key"] for c in cited]})
            view = self._emit(tx, h)
            view["notice"] = notice_view(n)
            return view

    # ------------------------------------------------------------ proof and recheck

    async def submit_proof(self, hazard_id: int, note: str, files: Sequence[Upload], actor: Actor) -> dict[str, Any]:
        """The unit's rectification proof (photos and a note)."""
        if not files and not note.strip():
            raise BadRequest("send at least a photo or a note")
        async with self.writer.tx() as tx:
            h = await self._hazard(tx.session, hazard_id)
            self._check_visible(actor, h.unit_id)
            if h.status not in IN_RECTIFICATION:
                raise TransitionError(f"hazard is {h.status}; proof is for a hazard under a notice")
            now = self.clock()
            rows = await self._store(tx, h, files, "proof", note, actor, now)
            self._record(tx, h, PROOF_SUBMITTED, actor, now,
                         {"note": note, "evidence_ids": [r.id for r in rows], "deadline": iso(h.deadline)})
            if h.status == HazardStatus.NOTICE_ISSUED:
                h.status = HazardStatus.PROOF_SUBMITTED
            return self._emit(tx, h)

    async def recheck(self, hazard_id: int, rectified: bool, note: str, actor: Actor,
                      photos: Sequence[Upload] = ()) -> dict[str, Any]:
        """An officer's recheck (复查), with optional after-photos."""
        async with self.writer.tx() as tx:
            h = await self._hazard(tx.session, hazard_id)
            return await self._apply_recheck(tx, h, "officer", rectified, note, actor, photos)

    async def _apply_recheck(self, tx: Tx, h: Hazard, method: str, rectified: bool, note: str, actor: Actor,
                             photos: Sequence[Upload]) -> dict[str, Any]:
        if h.status not in IN_RECTIFICATION:
            raise TransitionError(f"hazard is {h.status}; nothing to recheck")
        now = self.clock()
        rows = await self._store(tx, h, photos, "recheck", note, actor, now)
        r = Recheck(hazard_id=h.id, method=method, rectified=rectified, note=note, at=now, by=actor.username,
                    evidence_id=rows[0].id if rows else None)
        tx.session.add(r)
        await tx.session.flush()
        self._record(tx, h, RECHECKED, actor, now,
                     {"recheck_id": r.id, "method": method, "rectified": rectified, "note": note,
                      "deadline": iso(h.deadline), "evidence_ids": [e.id for e in rows]})
        if rectified and h.status != HazardStatus.PENALTY:
            await self._close_rectified(tx, h, actor, now)
        elif not rectified and h.status != HazardStatus.PENALTY:
            if h.deadline is not None and now >= h.deadline:
                await self._overdue(tx, h, actor, now, "recheck: not rectified after the deadline")
            else:
                h.status = HazardStatus.NOTICE_ISSUED  # before the deadline: the unit still has time
        return self._emit(tx, h)

    async def _close_rectified(self, tx: Tx, h: Hazard, actor: Actor, now: datetime) -> None:
        ev_rows = (await tx.session.scalars(select(HazardEvidence).where(HazardEvidence.hazard_id == h.id))).all()
        before = [e.id for e in ev_rows if e.stage == "before"]
        after = [e.id for e in ev_rows if e.stage in ("proof", "recheck", "after")]
        h.status, h.outcome, h.closed_at, h.closed_by = HazardStatus.CLOSED, "rectified", now, actor.username
        self._record(tx, h, HAZARD_CLOSED, actor, now,
                     {"outcome": "rectified", "before_evidence": before, "after_evidence": after})

    # ------------------------------------------------------------ deadlines

    async def due(self, now: datetime) -> tuple[list[int], datetime | None]:
        """Hazards whose deadline has passed and still wait for it to be handled; and the next deadline."""
        async with self.db.session() as s:
            rows = (await s.execute(select(Hazard.id, Hazard.deadline).where(
                Hazard.status.in_(UNDER_NOTICE), Hazard.deadline.is_not(None)))).all()
        due = [hid for hid, dl in rows if dl is not None and dl <= now]
        later: list[datetime] = [dl for _, dl in rows if dl is not None and dl > now]
        return due, min(later) if later else None

    async def process_deadline(self, hazard_id: int) -> dict[str, Any] | None:
        """At the deadline: camera recheck if possible; else no proof → penalty, proof → officer recheck."""
        async with self.db.session() as s:
            h0 = await self._hazard(s, hazard_id)
            if h0.status not in UNDER_NOTICE or h0.deadline is None or h0.deadline > self.clock():
                return None
            view0 = self.view(h0)
        result: tuple[bool, bytes] | None = None
        if h0.camera_visible:
            try:
                result = await self.recheck_by_camera(view0)  # outside the writer lock: may take seconds
            except Exception:
                log.exception("camera recheck of hazard %s failed", hazard_id)
                result = None
        async with self.writer.tx() as tx:
            h = await self._hazard(tx.session, hazard_id)
            if h.status not in UNDER_NOTICE:
                return None  # an officer acted meanwhile
            now = self.clock()
            if result is not None:
                rectified, jpeg = result
                photos = [Upload("camera-recheck.jpg", "image/jpeg", jpeg)] if jpeg else []
                return await self._apply_recheck(tx, h, "camera", rectified, "自动视频复查", CAMERA, photos)
            if h.status == HazardStatus.NOTICE_ISSUED:
                await self._overdue(tx, h, SYSTEM, now, "deadline passed without rectification proof")
            else:
                h.status = HazardStatus.RECHECK_DUE
                self._record(tx, h, RECHECK_DUE, SYSTEM, now, {"deadline": iso(h.deadline)})
            return self._emit(tx, h)

    async def _overdue(self, tx: Tx, h: Hazard, actor: Actor, now: datetime, reason: str) -> None:
        self._record(tx, h, OVERDUE, actor, now, {"deadline": iso(h.deadline), "reason": reason})
        h.status = HazardStatus.PENALTY
        await self._propose(tx, h, now)

    async def _propose(self, tx: Tx, h: Hazard, now: datetime) -> PenaltyDecision:
        rules = self.hcfg.rules_for(self.hcfg.default_penalty_target)
        rule = next((r for r in rules if r.kind == "fine"), rules[0])
        cat = self.hcfg.category(h.category)
        keys = list(dict.fromkeys([*(cat.penalty_clauses if cat else []), *rule.clauses]))
        notice = await tx.session.scalar(select(RectificationNotice).where(RectificationNotice.hazard_id == h.id)
                                         .order_by(RectificationNotice.id.desc()).limit(1))
        unit = self._unit(h.unit_id)
        facts = f"经查，{unit.name}（{unit.address}）存在“{cat.name if cat else h.category}”的火灾隐患"
        if notice is not None:
            facts += (f"，{self.cfg.station.name}于{_cn_date(notice.issued_at)}以《责令限期改正通知书》"
                      f"（{notice.number}）责令其于{_cn_date(notice.deadline)}前改正，逾期未改正")
        facts += "。"
        p = PenaltyDecision(hazard_id=h.id, status=PenaltyStatus.PROPOSED, target=rule.target, person_name="",
                            kind=rule.kind,
                            amount_yuan=rule.proposed_yuan, facts=facts,
                            clauses=[clause_snapshot(c) for k in keys if (c := self.hcfg.clause(k))],
                            proposed_at=now, proposed_by=SYSTEM.username, closure_note="")
        tx.session.add(p)
        await tx.session.flush()
        self._record(tx, h, PENALTY_PROPOSED, SYSTEM, now,
                     {"penalty_id": p.id, "target": p.target, "kind": p.kind, "amount_yuan": p.amount_yuan,
                      "clauses": keys})
        return p

    # ------------------------------------------------------------ penalty

    async def _penalty(self, s: AsyncSession, penalty_id: int) -> tuple[PenaltyDecision, Hazard]:
        p = await s.get(PenaltyDecision, penalty_id)
        if p is None:
            raise NotFound(f"penalty decision {penalty_id} not found")
        return p, await self._hazard(s, p.hazard_id)

    async def propose_penalty(self, hazard_id: int, actor: Actor) -> dict[str, Any]:
        """An officer proposes a penalty on a hazard still not rectified after its deadline (normally automatic)."""
        async with self.writer.tx() as tx:
            h = await self._hazard(tx.session, hazard_id)
            now = self.clock()
            if h.status not in IN_RECTIFICATION - {HazardStatus.PENALTY} or h.deadline is None or now < h.deadline:
                raise TransitionError("a penalty is proposed only for a hazard past its deadline")
            await self._overdue(tx, h, actor, now, "officer: not rectified after the deadline")
            return self._emit(tx, h)

    async def confirm_penalty(self, penalty_id: int, actor: Actor, *, target: str | None = None,
                              kind: str | None = None, amount_yuan: int | None = None,
                              person_name: str | None = None) -> dict[str, Any]:
        """One action: the officer confirms (optionally adjusting within the configured range); numbered here."""
        async with self.writer.tx() as tx:
            s = tx.session
            p, h = await self._penalty(s, penalty_id)
            if p.status != PenaltyStatus.PROPOSED:
                raise TransitionError(f"penalty is {p.status}")
            target, kind = target or p.target, kind or p.kind
            rule = next((r for r in self.hcfg.rules_for(target) if r.kind == kind), None)
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
            now = self.clock()
            if (target, kind) != (p.target, p.kind):
                keys = list(dict.fromkeys(rule.clauses))
                p.clauses = [clause_snapshot(c) for k in keys if (c := self.hcfg.clause(k))]
            p.target, p.kind, p.amount_yuan = target, kind, amount
            p.person_name = person_name or p.person_name
            p.year = now.year
            p.seq = await self._next_seq(s, PenaltyDecision, now.year)
            p.number = self._number(self.hcfg.penalty_number_format, now.year, p.seq)
            p.status, p.confirmed_at, p.confirmed_by = PenaltyStatus.CONFIRMED, now, actor.username
            self._record(tx, h, PENALTY_CONFIRMED, actor, now,
                         {"penalty_id": p.id, "number": p.number, "target": target, "kind": kind,
                          "amount_yuan": amount, "person_name": p.person_name})
            self._emit(tx, h)
            return penalty_view(p)

    async def approve_penalty(self, penalty_id: int, actor: Actor) -> dict[str, Any]:
        async with self.writer.tx() as tx:
            p, h = await self._penalty(tx.session, penalty_id)
            if p.status != PenaltyStatus.CONFIRMED:
                raise TransitionError(f"penalty is {p.status}; an officer confirms it first")
            if p.confirmed_by == actor.username:
                raise Forbidden("the supervisor approving must not be the officer who confirmed")
            now = self.clock()
            p.status, p.approved_at, p.approved_by = PenaltyStatus.APPROVED, now, actor.username
            self._record(tx, h, PENALTY_APPROVED, actor, now, {"penalty_id": p.id, "number": p.number})
            self._emit(tx, h)
            return penalty_view(p)

    async def close_penalty(self, penalty_id: int, actor: Actor, note: str = "") -> dict[str, Any]:
        """Payment (fine) or delivery (warning) recorded; the hazard's case closes."""
        async with self.writer.tx() as tx:
            p, h = await self._penalty(tx.session, penalty_id)
            if p.status != PenaltyStatus.APPROVED:
                raise TransitionError(f"penalty is {p.status}; it must be approved first")
            now = self.clock()
            closure = "paid" if p.kind == "fine" else "warned"
            p.status, p.closed_at, p.closed_by = PenaltyStatus.CLOSED, now, actor.username
            p.closure, p.closure_note = closure, note
            self._record(tx, h, PENALTY_CLOSED, actor, now,
                         {"penalty_id": p.id, "closure": closure, "amount_yuan": p.amount_yuan, "note": note})
            rectified = await tx.session.scalar(select(func.count(Recheck.id)).where(
                Recheck.hazard_id == h.id, Recheck.rectified.is_(True)))
            h.status, h.closed_at, h.closed_by = HazardStatus.CLOSED, now, actor.username
            h.outcome = "rectified_after_penalty" if rectified else "penalized"
            self._record(tx, h, HAZARD_CLOSED, actor, now, {"outcome": h.outcome, "penalty_id": p.id})
            self._emit(tx, h)
            return penalty_view(p)

    # ------------------------------------------------------------ queries

    async def list_hazards(self, actor: Actor, *, status: str = "open", unit_id: str | None = None,
                           category: str | None = None, severity: str | None = None, q: str | None = None,
                           start: datetime | None = None, end: datetime | None = None,
                           limit: int = 200) -> list[dict[str, Any]]:
        if actor.role == "agency":
            raise Forbidden("agencies do not see hazards")
        query = select(Hazard).order_by(Hazard.id.desc()).limit(max(1, min(limit, 1000)))
        if status == "open":
            query = query.where(Hazard.status != HazardStatus.CLOSED)
        elif status in STATUSES:
            query = query.where(Hazard.status == status)
        elif status != "all":
            raise BadRequest("status must be open, all or one of " + ", ".join(STATUSES))
        if actor.role == "unit":
            query = query.where(Hazard.unit_id == actor.unit_id)
        elif unit_id:
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
            v = self.view(r)
            v["notice"] = notices.get(r.id)
            out.append(v)
        return out

    async def detail(self, hazard_id: int, actor: Actor) -> dict[str, Any]:
        async with self.db.session() as s:
            h = await self._hazard(s, hazard_id)
            self._check_visible(actor, h.unit_id)
            evidence = (await s.scalars(select(HazardEvidence).where(HazardEvidence.hazard_id == h.id)
                                        .order_by(HazardEvidence.id))).all()
            notices = (await s.scalars(select(RectificationNotice).where(RectificationNotice.hazard_id == h.id)
                                       .order_by(RectificationNotice.id))).all()
            rechecks = (await s.scalars(select(Recheck).where(Recheck.hazard_id == h.id).order_by(Recheck.id))).all()
            penalties = (await s.scalars(select(PenaltyDecision).where(PenaltyDecision.hazard_id == h.id)
                                         .order_by(PenaltyDecision.id))).all()
            entries = (await s.scalars(select(RecordEntry).where(RecordEntry.hazard_id == h.id)
                                       .order_by(RecordEntry.id))).all()
        view = self.view(h)
        view.update(evidence=[evidence_view(e) for e in evidence], notices=[notice_view(n) for n in notices],
                    rechecks=[recheck_view(r) for r in rechecks], penalties=[penalty_view(p) for p in penalties],
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
            h = await self._hazard(s, e.hazard_id)
            added = (await s.scalars(select(RecordEntry.data).where(
                RecordEntry.hazard_id == h.id, RecordEntry.action == EVIDENCE_ADDED))).all()
        self._check_visible(actor, h.unit_id)
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
        async with self.db.session() as s:
            n = await s.get(RectificationNotice, notice_id)
            if n is None:
                raise NotFound(f"notice {notice_id} not found")
            h = await self._hazard(s, n.hazard_id)
        self._check_visible(actor, h.unit_id)
        return {"notice": n, "hazard": self.view(h), "unit": self._unit(h.unit_id),
                "authority": self.hcfg.issuing_authority or self.cfg.station.name}

    async def penalty_document(self, penalty_id: int, actor: Actor) -> dict[str, Any]:
        async with self.db.session() as s:
            p, h = await self._penalty(s, penalty_id)
            notice = await s.scalar(select(RectificationNotice).where(RectificationNotice.hazard_id == h.id)
                                    .order_by(RectificationNotice.id.desc()).limit(1))
        self._check_visible(actor, h.unit_id)
        if p.number is None:
            raise BadRequest("the decision gets its number when an officer confirms it")
        return {"penalty": p, "hazard": self.view(h), "unit": self._unit(h.unit_id), "notice": notice,
                "authority": self.hcfg.issuing_authority or self.cfg.station.name}

    async def counts(self) -> dict[str, Any]:
        """Open hazards by category and by severity (dashboard)."""
        async with self.db.session() as s:
            rows = (await s.execute(select(Hazard.category, Hazard.severity, func.count(Hazard.id))
                                    .where(Hazard.status != HazardStatus.CLOSED)
                                    .group_by(Hazard.category, Hazard.severity))).all()
            by_unit = (await s.execute(select(Hazard.unit_id, Hazard.status, func.count(Hazard.id))
                                       .group_by(Hazard.unit_id, Hazard.status))).all()
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
                u.update(name=unit.name, address=unit.address, category=unit.category, lat=unit.lat, lon=unit.lon)
        return {"open_total": sum(by_cat.values()), "by_category": by_cat, "by_severity": by_sev,
                "by_unit": sorted(units.values(), key=lambda u: (-u["open"], u["unit_id"]))}

    def config_view(self) -> dict[str, Any]:
        return {"categories": [c.model_dump() for c in self.hcfg.categories],
                "law_clauses": [{**c.model_dump(), "citation": c.citation()} for c in self.hcfg.law_clauses],
                "penalty_rules": [r.model_dump() for r in self.hcfg.penalty_rules],
                "targets": self.hcfg.targets.model_dump(), "scoring": [r.model_dump() for r in self.hcfg.scoring],
                "max_upload_bytes": self.hcfg.max_upload_bytes,
                "max_files_per_upload": self.hcfg.max_files_per_upload}


def _cn_date(dt: datetime) -> str:
    local = dt.astimezone(CHINA_TZ)
    return f"{local.year}年{local.month}月{local.day}日"


try:
    from zoneinfo import ZoneInfo

    CHINA_TZ: Any = ZoneInfo("Asia/Shanghai")
except Exception:  # pragma: no cover - no tzdata
    from datetime import timezone

    CHINA_TZ = timezone(timedelta(hours=8))


class HazardScheduler:
    """Sleeps until the next deadline (like dispatch.escalation); any hazard change wakes it to re-plan."""

    def __init__(self, service: HazardService, bus: EventBus) -> None:
        self.service = service
        self.bus = bus

    async def tick(self) -> float:
        now = self.service.clock()
        due, nxt = await self.service.due(now)
        for hid in due:
            try:
                await self.service.process_deadline(hid)
            except Exception:
                log.exception("deadline handling of hazard %s failed", hid)
        if nxt is None:
            return 3600.0
        return max(0.02, (nxt - self.service.clock()).total_seconds())

    async def run(self) -> None:
        with self.bus.subscribe([ev.HAZARD_UPDATED]) as wake:  # any change re-plans (one pass per burst)
            await run_deadlines(wake, self.tick, "hazard deadline")
