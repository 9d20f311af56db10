"""Service-level rules: camera recheck at the deadline, officer recheck fallback, tamper detection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from console.appkeys import DB, HAZARD_DEADLINES, HAZARD_VIEWS, HAZARDS, PENALTIES
from dispatch import hazards as hz
from dispatch.actor import Actor
from dispatch.errors import BadRequest
from dispatch.hazard_uploads import Upload
from dispatch.hazard_views import HazardViews
from dispatch.models import RecordEntry
from dispatch.records import verify
from dispatch.state import TransitionError
from tests.hazards.conftest import config, hazard_app, jpeg

OFFICER = Actor("officer", "duty_officer")
SCHOOL = Actor("school", "unit", unit_id="school-1")


async def until(views: HazardViews, hid: int, pred: Any, timeout: float = 6) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        while True:
            d = await views.detail(hid, OFFICER)
            if pred(d):
                return d
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(go(), timeout)


def soon(seconds: float = 0.6) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_camera_recheck_at_deadline(db_url: str) -> None:
    results: dict[int, tuple[bool, bytes]] = {}

    async def camera(h: dict[str, Any]) -> tuple[bool, bytes] | None:
        return results.get(h["id"])

    async with hazard_app(config(db_url)) as running:
        svc = running.app[HAZARDS]
        running.app[HAZARD_DEADLINES].recheck_by_camera = camera
        bad = await svc.create_from_detection(unit_id="school-1", camera_id="cam-1", zone="exit-1",
                                              category="blocked_exit", snapshot_jpeg=jpeg())
        good = await svc.create_from_detection(unit_id="hotel-1", camera_id="cam-2", zone="exit-2",
                                               category="locked_exit", snapshot_jpeg=jpeg())
        results[bad["id"]] = (False, jpeg((10, 10, 10)))
        results[good["id"]] = (True, jpeg((0, 255, 0)))
        await svc.issue_notice(bad["id"], OFFICER, deadline=soon())
        await svc.issue_notice(good["id"], OFFICER, deadline=soon())
        d = await until(running.app[HAZARD_VIEWS], bad["id"], lambda d: d["status"] == "penalty")
        check = d["rechecks"][0]
        assert (check["method"], check["rectified"], check["by"]) == ("camera", False, "camera")
        assert [e["stage"] for e in d["evidence"]] == ["before", "recheck"] and check["evidence_id"]
        assert d["penalties"][0]["status"] == "proposed"
        d = await until(running.app[HAZARD_VIEWS], good["id"], lambda d: d["status"] == "closed")
        assert d["outcome"] == "rectified" and d["rechecks"][0]["method"] == "camera"
        closed = d["timeline"][-1]["data"]
        assert closed["before_evidence"] and closed["after_evidence"]


async def test_proof_without_camera_waits_for_officer(sqlite_url: str) -> None:
    async with hazard_app(config(sqlite_url)) as running:
        svc = running.app[HAZARDS]
        h = await svc.create(unit_id="school-1", category="illegal_wiring", source="inspection", actor=OFFICER)
        with pytest.raises(BadRequest):
            await svc.issue_notice(h["id"], OFFICER, deadline=datetime.now(UTC) - timedelta(seconds=1))
        with pytest.raises(BadRequest):
            await svc.issue_notice(h["id"], OFFICER, clauses=["no_such_clause"])
        await svc.issue_notice(h["id"], OFFICER, deadline=soon(), clauses=["fire_law_27"])
        with pytest.raises(TransitionError):
            await svc.issue_notice(h["id"], OFFICER)
        await svc.submit_proof(h["id"], "已重新布线", [Upload("a.png", "image/png", _png())], SCHOOL)
        d = await until(running.app[HAZARD_VIEWS], h["id"], lambda d: d["status"] == "recheck_due")
        assert d["timeline"][-1]["action"] == hz.RECHECK_DUE
        d = await svc.recheck(h["id"], False, "仍有私拉电线", OFFICER)
        assert d["status"] == "penalty"  # failed recheck after the deadline → penalty proposed
        with pytest.raises(TransitionError):
            await running.app[PENALTIES].approve_penalty(1, Actor("admin", "admin"))  # not confirmed yet


async def test_altered_or_removed_hazard_entry_is_detected(sqlite_url: str) -> None:
    async with hazard_app(config(sqlite_url)) as running:
        svc = running.app[HAZARDS]
        h = await svc.create(unit_id="school-1", category="corridor_storage", source="patrol", actor=OFFICER,
                             photos=[Upload("p.jpg", "image/jpeg", jpeg())])
        await svc.issue_notice(h["id"], OFFICER, days=2)
        db = running.app[DB]
        async with db.session() as s:
            rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
            assert verify(rows) is None
            notice = next(r for r in rows if r.action == hz.NOTICE_ISSUED)
            forged = {**notice.data, "deadline": "2099-01-01T00:00:00+00:00"}  # someone extends the deadline
            await s.execute(update(RecordEntry).where(RecordEntry.id == notice.id).values(data=forged))
            await s.commit()
            rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
            broken = verify(rows)
            assert broken is not None and broken.entry_id == notice.id and "altered" in broken.reason
            await s.execute(update(RecordEntry).where(RecordEntry.id == notice.id).values(data=notice.data))
            first = rows[0].id
            await s.execute(delete(RecordEntry).where(RecordEntry.id == first))
            await s.commit()
            rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
            broken = verify(rows)
            assert broken is not None and broken.entry_id == rows[0].id and "removed" in broken.reason


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()
