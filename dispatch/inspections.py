"""Typed inspections (消防监督检查): an officer answers the unit type's checklist, and each failed item becomes a
hazard with its clause, in the same transaction as the inspection itself.

Two commands, each one transaction through the core's Writer:

- `receive_photo`: a photo taken on the phone (already re-encoded and stamped, dispatch.inspection_images) is
  stored with the phone's time and place and the server's receipt time; `inspection.photo_received` records its
  SHA-256. The phone's `client_id` makes a resend the same photo (no duplicate).
- `submit`: the answered checklist with its idempotency key (the phone's), photos by id, the drawn signature and,
  for a recheck (复查), the hazards rechecked and their results. Every item of the unit type's current checklist
  must be answered exactly once, a failure needs a note; otherwise nothing is stored (400). A failed item creates
  an open hazard (category and clause from the item, the item's photos as its "before" evidence), or — in a
  recheck — names the rechecked hazard it confirms. `inspection.recorded` carries the results' hash and the content
  hash of the 消防监督检查记录 printed from these rows. A submission whose key is stored already answers the stored
  inspection (the unique key guards this even against two cores).

Reads are `inspection_views.py`; the checklist data `config/checklists.py`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from config.checklists import INSPECTION_KINDS, Checklist, ChecklistItem, Checklists
from dispatch.actor import Actor
from dispatch.document_content import content_hash, inspection_fields
from dispatch.errors import BadRequest, Forbidden
from dispatch.hazard_cases import HazardCases
from dispatch.hazard_context import HazardContext
from dispatch.hazard_models import Hazard, Recheck
from dispatch.hazard_uploads import Upload, store_evidence
from dispatch.hazards import INSPECTION, clause_snapshot
from dispatch.inspection_models import Inspection, InspectionItem, InspectionPhoto, InspectionRecheck
from dispatch.inspection_views import hazards_of, inspection_view, photo_view, unit_snapshot
from dispatch.models import Unit, User
from dispatch.state import IN_RECTIFICATION, TransitionError
from dispatch.views import iso
from dispatch.writer import Tx
from ingest.integrity import sha256_bytes

PHOTO_RECEIVED = "inspection.photo_received"
RESULTS = ("pass", "fail", "na")
MAX_PHOTOS = 30
OFFICER_ROLES = frozenset({"admin", "duty_officer"})


@dataclass(frozen=True, slots=True)
class Answer:
    item_id: str
    result: str  # pass | fail | na
    note: str = ""


@dataclass(frozen=True, slots=True)
class RecheckAnswer:
    hazard_id: int
    rectified: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class PhotoRef:
    photo_id: int
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    unit_id: str
    kind: str
    answers: Sequence[Answer]
    idempotency_key: str
    signature_png: bytes  # re-encoded (dispatch.inspection_images.signature_png)
    signer_name: str = ""
    note: str = ""
    lat: float | None = None
    lon: float | None = None
    started_at: datetime | None = None
    checklist_version: int | None = None
    photos: Sequence[PhotoRef] = ()
    rechecks: Sequence[RecheckAnswer] = ()
    co_officers: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class PhotoIn:
    client_id: str
    unit_id: str
    jpeg: bytes  # re-encoded and stamped (dispatch.inspection_images.reencode_photo)
    width: int
    height: int
    taken_at: datetime | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass
class _Stored:
    """What a new inspection made, for its answer."""

    row: Inspection
    hazards: dict[int, dict[str, Any]] = field(default_factory=dict)


def results_hash(answers: Sequence[Answer]) -> str:
    """SHA-256 of the answers, canonical: [[item_id, result, note], ...] ordered by item id."""
    rows = sorted([a.item_id, a.result, a.note] for a in answers)
    body = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class Inspections:
    def __init__(self, ctx: HazardContext, cases: HazardCases, checklists: Checklists,
                 scope: Callable[[Actor], Actor]) -> None:
        self.ctx = ctx
        self.cases = cases  # failed items become hazards; a recheck inspection rechecks through the case flow
        self.checklists = checklists
        self.scope = scope

    # ------------------------------------------------------------ reads that need no database

    def unit_for(self, unit_id: str, actor: Actor) -> Unit:
        """The unit, if `actor` may inspect or see it (BadRequest unknown, Forbidden out of scope)."""
        unit = self.ctx.unit(unit_id)
        if not self.scope(actor).sees_unit(unit.id, unit.station_id):
            raise Forbidden(f"unit {unit_id} is not in your area")
        return unit

    def _active(self, unit_id: str, actor: Actor) -> Unit:
        unit = self.unit_for(unit_id, actor)
        if unit.retired_at is not None:
            raise BadRequest(f"unit {unit_id} is retired from the registry; it is no longer inspected")
        return unit

    def checklist(self, unit_type: str, kind: str | None = None) -> Checklist:
        if kind is not None and kind not in INSPECTION_KINDS:
            raise BadRequest(f"kind must be one of {list(INSPECTION_KINDS)}")
        return self.checklists.for_type(unit_type, kind)

    # ------------------------------------------------------------ photos

    async def receive_photo(self, p: PhotoIn, actor: Actor) -> tuple[dict[str, Any], bool]:
        """Stores a photo for a coming submission: (its view, whether it is new). A resend with the same client id
        answers the stored photo; with other content it is refused (409)."""
        self._active(p.unit_id, actor)
        digest = sha256_bytes(p.jpeg)
        async with self.ctx.writer.tx() as tx:
            s = tx.session
            old = await s.scalar(select(InspectionPhoto).where(InspectionPhoto.uploaded_by == actor.username,
                                                               InspectionPhoto.client_id == p.client_id))
            if old is not None:
                if old.sha256 != digest or old.unit_id != p.unit_id:
                    raise TransitionError(f"photo {p.client_id} was received already with other content")
                return photo_view(old), False
            now = self.ctx.clock()
            row = InspectionPhoto(client_id=p.client_id, unit_id=p.unit_id, content_type="image/jpeg",
                                  size=len(p.jpeg), width=p.width, height=p.height, sha256=digest, data=p.jpeg,
                                  taken_at=_utc(p.taken_at), lat=p.lat, lon=p.lon, received_at=now,
                                  uploaded_by=actor.username)
            s.add(row)
            await s.flush()
            self.ctx.writer.record(tx, PHOTO_RECEIVED, actor, now, {
                "unit_id": p.unit_id, "photo_id": row.id, "client_id": p.client_id, "sha256": digest,
                "size": row.size, "width": p.width, "height": p.height, "taken_at": iso(row.taken_at), "lat": p.lat,
                "lon": p.lon})
            return photo_view(row), True

    # ------------------------------------------------------------ submission

    async def submit(self, sub: Submission, actor: Actor) -> tuple[dict[str, Any], bool]:
        """The inspection stored with its hazards: (its view, True), or the stored one for a known key (view,
        False). BadRequest/Forbidden/TransitionError change nothing."""
        self.unit_for(sub.unit_id, actor)  # 400 unknown, 403 out of scope: before anything is looked up
        if sub.kind not in INSPECTION_KINDS:
            raise BadRequest(f"kind must be one of {list(INSPECTION_KINDS)}")
        async with self.ctx.writer.db.session() as s:
            stored = await self._by_key(s, sub.idempotency_key)
            if stored is not None:
                return await self._replay(s, stored, sub, actor), False
        unit = self._active(sub.unit_id, actor)  # a resend is answered even after the unit was retired
        checklist = self.checklists.for_type(unit.unit_type, sub.kind)
        answers = _ordered_answers(checklist, sub)
        _check_refs(checklist, sub, self.ctx.hcfg.max_files_per_upload)
        try:
            async with self.ctx.writer.tx() as tx:
                stored = await self._by_key(tx.session, sub.idempotency_key)
                if stored is not None:  # sent twice at once: the first one's
                    return await self._replay(tx.session, stored, sub, actor), False
                made = await self._store(tx, unit, checklist, answers, sub, actor)
                view = inspection_view(made.row, self.ctx.units, made.hazards)
        except IntegrityError:
            async with self.ctx.writer.db.session() as s:  # another core stored this key in between
                stored = await self._by_key(s, sub.idempotency_key)
                if stored is None:
                    raise
                return await self._replay(s, stored, sub, actor), False
        return view, True

    async def _by_key(self, s: AsyncSession, key: str) -> Inspection | None:
        found: Inspection | None = await s.scalar(select(Inspection).where(Inspection.idempotency_key == key))
        return found

    async def _replay(self, s: AsyncSession, stored: Inspection, sub: Submission, actor: Actor) -> dict[str, Any]:
        same = (stored.unit_id, stored.kind, stored.officer) == (sub.unit_id, sub.kind, actor.username)
        if not same or stored.results_sha256 != results_hash(sub.answers):
            raise TransitionError(f"idempotency key {sub.idempotency_key!r} was used already for inspection "
                                  f"{stored.number}, with other content; a new inspection needs a new key")
        return inspection_view(stored, self.ctx.units, await hazards_of(s, stored, self.ctx.hcfg, self.ctx.units))

    async def _store(self, tx: Tx, unit: Unit, checklist: Checklist, answers: list[tuple[ChecklistItem, Answer]],
                     sub: Submission, actor: Actor) -> _Stored:
        ctx, s = self.ctx, tx.session
        co = await _co_officers(s, sub.co_officers, actor)
        photos = await _photos(s, sub, actor)
        targets = await _recheck_targets(s, sub)
        now = ctx.clock()
        year = now.year
        seq = int(await s.scalar(select(func.max(Inspection.seq)).where(Inspection.year == year)) or 0) + 1
        number = ctx.hcfg.inspection_number_format.format(station=ctx.cfg.station.name, year=year, seq=seq)
        row = Inspection(idempotency_key=sub.idempotency_key, number=number, year=year, seq=seq, unit_id=unit.id,
                         station_id=unit.station_id, unit_snapshot=unit_snapshot(unit), kind=sub.kind,
                         unit_type=unit.unit_type,
                         checklist_version=checklist.version, started_at=_utc(sub.started_at), submitted_at=now,
                         lat=sub.lat, lon=sub.lon, officer=actor.username, officer_name=actor.signature,
                         co_officers=co, note=sub.note, signer_name=sub.signer_name,
                         signature_png=sub.signature_png, signature_sha256=sha256_bytes(sub.signature_png),
                         results_sha256=results_hash([a for _, a in answers]), items=[], photos=[], rechecks=[])
        s.add(row)
        await s.flush()
        made = _Stored(row)
        still_there: dict[str, int] = {}  # category → a rechecked hazard found not rectified
        for h, r in targets:
            made.hazards[h.id] = await self.cases.apply_recheck(tx, h, "officer", r.rectified, r.note, actor, ())
            recheck_id = await s.scalar(select(func.max(Recheck.id)).where(Recheck.hazard_id == h.id))
            assert recheck_id is not None
            row.rechecks.append(InspectionRecheck(hazard_id=h.id, rectified=r.rectified, note=r.note,
                                                  recheck_id=recheck_id))
            if not r.rectified:
                still_there.setdefault(h.category, h.id)
        by_item: dict[str, list[InspectionPhoto]] = {}
        for p, ref in photos:
            p.item_id = ref.item_id
            row.photos.append(p)
            if ref.item_id is not None:
                by_item.setdefault(ref.item_id, []).append(p)
        for pos, (item, a) in enumerate(answers, start=1):
            hazard_id = None
            if a.result == "fail":
                hazard_id = still_there.get(item.category)
                if hazard_id is None:
                    h = await self._hazard(tx, row, pos, item, a, by_item.get(item.id, []), actor, now)
                    hazard_id = h.id
                    made.hazards[h.id] = ctx.emit(tx, h)
            clause = ctx.hcfg.clause(item.clause)
            assert clause is not None  # the checklists were validated against the clause database
            row.items.append(InspectionItem(position=pos, item_id=item.id, text=item.zh, clause_key=item.clause,
                                            clause=clause_snapshot(clause), category=item.category,
                                            result=a.result, note=a.note, hazard_id=hazard_id))
        await s.flush()
        fields = inspection_fields(row)
        items = fields["items"]
        ctx.writer.record(tx, INSPECTION, actor, now, {
            "unit_id": unit.id, "inspection_id": row.id, "number": number, "kind": sub.kind,
            "unit_type": unit.unit_type, "checklist_version": checklist.version, "items": len(items),
            "failed": [i["item_id"] for i in items if i["result"] == "fail"],
            "hazard_ids": sorted({i["hazard_id"] for i in items if i["hazard_id"] is not None}),
            "rechecked": [{"hazard_id": r.hazard_id, "rectified": r.rectified} for r in row.rechecks],
            "photos": [{"photo_id": p["id"], "sha256": p["sha256"]} for p in fields["photos"]],
            "results_sha256": row.results_sha256, "signature_sha256": row.signature_sha256,
            "content_hash": content_hash(fields)})
        return made

    async def _hazard(self, tx: Tx, row: Inspection, pos: int, item: ChecklistItem, a: Answer,
                      photos: list[InspectionPhoto], actor: Actor, now: datetime) -> Hazard:
        """The hazard a failed item creates: the item's category and clause, its note, its photos as evidence."""
        cat = self.ctx.hcfg.category(item.category)
        assert cat is not None  # validated with the checklists
        h = await self.cases.add_hazard(
            tx, unit_id=row.unit_id, category=item.category, source="inspection", actor=actor,
            description=f"{row.number}第{pos}项“{item.zh}”不符合：{a.note}", severity=cat.severity,
            lat=row.lat, lon=row.lon, found_at=now, clauses=[item.clause], inspection_id=row.id,
            data={"inspection_id": row.id, "item_id": item.id}, now=now)
        files = [Upload(f"inspection-{row.id}-photo-{p.id}.jpg", p.content_type, p.data) for p in photos]
        await store_evidence(self.ctx, tx, h, files, "before", f"{row.number}：{item.zh}", actor, now)
        return h


# ---------------------------------------------------------------- checks (nothing stored when one fails)

def _utc(at: datetime | None) -> datetime | None:
    """The phone's times in UTC, as they read back from any database."""
    return None if at is None else at.astimezone(UTC)


def _ordered_answers(checklist: Checklist, sub: Submission) -> list[tuple[ChecklistItem, Answer]]:
    """Each checklist item with its one answer, in checklist order; BadRequest names what is wrong."""
    if sub.checklist_version is not None and sub.checklist_version != checklist.version:
        raise BadRequest(f"the checklist changed (version {sub.checklist_version} → {checklist.version}): reload it "
                         "and answer the current items")
    known = {i.id for i in checklist.items}
    given: dict[str, Answer] = {}
    for a in sub.answers:
        if a.item_id not in known:
            raise BadRequest(f"item {a.item_id!r} is not on the {sub.kind} checklist of this unit type "
                             f"({checklist.unit_type}, version {checklist.version})")
        if a.item_id in given:
            raise BadRequest(f"item {a.item_id!r} answered twice")
        if a.result not in RESULTS:
            raise BadRequest(f"item {a.item_id!r}: result must be one of {list(RESULTS)}")
        if a.result == "fail" and not a.note.strip():
            raise BadRequest(f"item {a.item_id!r} failed: say what was found (note)")
        given[a.item_id] = a
    missing = [i.id for i in checklist.items if i.id not in given]
    if missing:
        raise BadRequest(f"{len(missing)} checklist items not answered: {missing}")
    return [(i, given[i.id]) for i in checklist.items]


def _check_refs(checklist: Checklist, sub: Submission, per_item: int) -> None:
    if sub.kind == "recheck" and not sub.rechecks:
        raise BadRequest("a recheck inspection names the hazards it rechecks (rechecks)")
    if sub.kind != "recheck" and sub.rechecks:
        raise BadRequest("only a recheck inspection rechecks hazards")
    ids = [r.hazard_id for r in sub.rechecks]
    if len(set(ids)) != len(ids):
        raise BadRequest("a hazard is rechecked once per inspection")
    if len(sub.photos) > MAX_PHOTOS:
        raise BadRequest(f"at most {MAX_PHOTOS} photos per inspection")
    if len({p.photo_id for p in sub.photos}) != len(sub.photos):
        raise BadRequest("a photo is listed twice")
    counts: dict[str, int] = {}
    for p in sub.photos:
        if p.item_id is not None:
            if checklist.item(p.item_id) is None:
                raise BadRequest(f"photo {p.photo_id} names item {p.item_id!r}, which is not on the checklist")
            counts[p.item_id] = counts.get(p.item_id, 0) + 1
    crowded = [k for k, n in counts.items() if n > per_item]
    if crowded:
        raise BadRequest(f"at most {per_item} photos per item ({crowded})")


async def _co_officers(s: AsyncSession, names: Sequence[str], actor: Actor) -> list[dict[str, str]]:
    """The other officers present, as printed (real name and badge)."""
    if len(set(names)) != len(names) or actor.username in names:
        raise BadRequest("co_officers lists each other officer once (not yourself)")
    out = []
    for name in names:
        u = await s.scalar(select(User).where(User.username == name))
        if u is None or u.role not in OFFICER_ROLES:
            raise BadRequest(f"co-officer {name!r} is not an officer")
        out.append({"username": u.username, "name": Actor(u.username, u.role, real_name=u.real_name,
                                                          badge=u.badge).signature})
    return out


async def _photos(s: AsyncSession, sub: Submission, actor: Actor) -> list[tuple[InspectionPhoto, PhotoRef]]:
    """The photos named, received from this officer for this unit and not yet part of an inspection."""
    out = []
    for ref in sub.photos:
        p = await s.scalar(select(InspectionPhoto).options(undefer(InspectionPhoto.data))
                           .where(InspectionPhoto.id == ref.photo_id))
        if p is None or p.uploaded_by != actor.username or p.unit_id != sub.unit_id:
            raise BadRequest(f"photo {ref.photo_id} was not received from you for this unit")
        if p.inspection_id is not None:
            raise BadRequest(f"photo {ref.photo_id} belongs to another inspection")
        out.append((p, ref))
    return out


async def _recheck_targets(s: AsyncSession, sub: Submission) -> list[tuple[Hazard, RecheckAnswer]]:
    out = []
    for r in sub.rechecks:
        h = await s.get(Hazard, r.hazard_id)
        if h is None or h.unit_id != sub.unit_id:
            raise BadRequest(f"hazard {r.hazard_id} is not a hazard of this unit")
        if h.status not in IN_RECTIFICATION:
            raise BadRequest(f"hazard {r.hazard_id} is {h.status}: only a hazard under a notice is rechecked")
        out.append((h, r))
    return out
