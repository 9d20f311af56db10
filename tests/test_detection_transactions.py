"""A detection lands in ONE transaction: a fire detection's alarm (and its incident) with its frame record, a blocked
exit's hazard with both its snapshots, an exit cleared with its hazard's record. A failure inside that transaction
leaves nothing half done (no alarm without its frame, no hazard without its evidence).

The core's parts are built here without the app, so no background task commits while a detection is counted.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from dispatch.db import Database
from dispatch.detection_sink import DetectionSink
from dispatch.events import EventBus
from dispatch.evidence_record import DETECTION_FRAME
from dispatch.hazard_cases import HazardCases
from dispatch.hazard_context import HazardContext
from dispatch.hazard_models import Hazard, HazardEvidence
from dispatch.hazards import EVIDENCE_ADDED
from dispatch.incidents import Incidents
from dispatch.models import Alarm, Incident, RecordEntry
from dispatch.penalties import Penalties
from dispatch.records import verify
from dispatch.writer import Writer
from ingest.contract import AlarmDetection, AlarmIn, DetectionFrame, ExitCleared, ExitHazard
from tests.hazards.conftest import jpeg
from tests.support import base_config


@dataclass
class Core:
    db: Database
    writer: Writer
    service: Incidents
    hazards: HazardCases
    sink: DetectionSink
    frames: Path


@contextlib.asynccontextmanager
async def core(db_url: str, tmp_path: Path) -> AsyncIterator[Core]:
    cfg = base_config(db_url, None)
    db = Database(cfg.database.url)
    await db.upgrade()
    bus = EventBus()
    writer = Writer(db, bus)
    service = await Incidents.start(writer, cfg)
    ctx = HazardContext(writer, cfg, service.core.units)
    hazards = HazardCases(ctx, Penalties(ctx))
    sink = DetectionSink(service.intake, hazards, bus, tmp_path / "evidence", tmp_path / "negatives",
                         {"cam-1": "hotel-1"})
    try:
        yield Core(db, writer, service, hazards, sink, tmp_path / "evidence" / "detections")
    finally:
        await db.dispose()


@contextlib.contextmanager
def commits() -> Iterator[list[int]]:
    """Counts every database commit (any session) while the block runs."""
    seen: list[int] = []

    def count(_session: Session) -> None:
        seen.append(1)

    event.listen(Session, "after_commit", count)
    try:
        yield seen
    finally:
        event.remove(Session, "after_commit", count)


def fire(alarm_id: str, unit_id: str = "hotel-1") -> AlarmDetection:
    frame = jpeg((200, 60, 20))
    alarm = AlarmIn(alarm_id, unit_id, "video_fire", "video", datetime.now(UTC), device_id="cam-1")
    return AlarmDetection(alarm, DetectionFrame(1_700_000_000.0, 0.9, ({"class": "fire", "confidence": 0.9,
                                                                        "box": [1.0, 2.0, 30.0, 40.0]},),
                                                 64, 48, frame, raw_jpeg=jpeg((10, 10, 10))))


def blocked(zone: str = "exit-north") -> ExitHazard:
    started = datetime.now(UTC) - timedelta(minutes=11)
    return ExitHazard("cam-1", zone, started, started + timedelta(minutes=10), 0.6, jpeg((0, 200, 0)),
                      jpeg((0, 0, 200)), "北侧安全出口")


async def count(db: Database, model: Any) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def actions(db: Database, **where: Any) -> list[str]:
    async with db.session() as s:
        q = select(RecordEntry.action).order_by(RecordEntry.id)
        for column, value in where.items():
            q = q.where(getattr(RecordEntry, column) == value)
        return list((await s.scalars(q)).all())


async def chain_break(db: Database) -> object:
    """The record's hash chain stays one intact line through failed and retried transactions."""
    async with db.session() as s:
        return verify((await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all())


@contextlib.contextmanager
def failing_record(writer: Writer, monkeypatch: pytest.MonkeyPatch, action: str, nth: int = 1) -> Iterator[None]:
    """The writer fails at the `nth` record entry of `action`: a crash between the former two steps."""
    real = writer.record
    seen = [0]

    def record(tx: Any, act: str, *args: Any, **kwargs: Any) -> None:
        if act == action:
            seen[0] += 1
            if seen[0] == nth:
                raise RuntimeError(f"crash while recording {act}")
        real(tx, act, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(writer, "record", record)
        yield


async def test_a_fire_detection_is_one_commit_with_its_frame(db_url: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    async with core(db_url, tmp_path) as c:
        det = fire("video-cam-1-fire-1")
        with failing_record(c.writer, monkeypatch, DETECTION_FRAME), pytest.raises(RuntimeError, match="crash"):
            await c.sink.handle(det)
        # the alarm did not commit without its frame: no alarm, no incident, nothing in the record
        assert (await count(c.db, Alarm), await count(c.db, Incident), await actions(c.db)) == (0, 0, [])
        assert c.service.core.open_by_unit == {}

        with commits() as seen:  # the worker retries (MQTT redelivers): the frame file is already there
            await c.sink.handle(det)
        assert len(seen) == 1
        incident_id = c.service.core.open_by_unit["hotel-1"].incident_id
        assert await actions(c.db, incident_id=incident_id) == ["alarm.received", "incident.created", DETECTION_FRAME]
        [frame] = await c.service.intake.record_of(incident_id, DETECTION_FRAME)
        assert frame["sha256"] == hashlib.sha256(det.frame.jpeg).hexdigest()
        assert (c.frames / frame["file"]).read_bytes() == det.frame.jpeg
        assert (c.frames / frame["raw_file"]).read_bytes() == det.frame.raw_jpeg
        assert frame["boxes"] == [{"class": "fire", "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}]

        with commits() as seen:  # a duplicate: one commit that records nothing
            await c.sink.handle(det)
        assert len(seen) == 1 and await count(c.db, Alarm) == 1
        assert len(await c.service.intake.record_of(incident_id, DETECTION_FRAME)) == 1

        files = sorted(p.name for p in c.frames.iterdir())
        with commits() as seen:  # an unknown unit: a stored rejection, no frame file
            await c.sink.handle(fire("video-cam-9-fire-1", unit_id="no-such-unit"))
        assert len(seen) == 1 and sorted(p.name for p in c.frames.iterdir()) == files
        assert await chain_break(c.db) is None


async def test_a_blocked_exit_is_one_commit_with_both_snapshots(db_url: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async with core(db_url, tmp_path) as c:
        ev = blocked()
        # a crash after the snapshot was stored, before the clear reference: nothing of the hazard remains
        with failing_record(c.writer, monkeypatch, EVIDENCE_ADDED, nth=2), pytest.raises(RuntimeError):
            await c.sink.handle(ev)
        assert (await count(c.db, Hazard), await count(c.db, HazardEvidence), await actions(c.db)) == (0, 0, [])

        with commits() as seen:
            await c.sink.handle(ev)
        assert len(seen) == 1
        async with c.db.session() as s:
            hazard = (await s.scalars(select(Hazard))).one()
            evidence = (await s.scalars(select(HazardEvidence).order_by(HazardEvidence.id))).all()
        assert (hazard.unit_id, hazard.category, hazard.zone, hazard.source) == ("hotel-1", "blocked_exit",
                                                                                 "exit-north", "detection")
        assert [(e.stage, e.data, e.note) for e in evidence] == [("before", ev.after_jpeg, ""),
                                                                 ("before", ev.before_jpeg, "clear reference (before)")]
        assert await actions(c.db, hazard_id=hazard.id) == ["hazard.created", EVIDENCE_ADDED, EVIDENCE_ADDED]

        with commits() as seen:  # the same exit again: the open hazard absorbs it, nothing is written
            await c.sink.handle(blocked())
        assert len(seen) == 1 and await count(c.db, HazardEvidence) == 2

        cleared = ExitCleared("cam-1", "exit-north", ev.started_at, ev.confirmed_at, datetime.now(UTC), 0.02,
                              jpeg((0, 200, 0)), "北侧安全出口")
        with commits() as seen:
            await c.sink.handle(cleared)
        assert len(seen) == 1
        assert (await actions(c.db, hazard_id=hazard.id))[-1] == "hazard.obstruction_cleared"
        with commits() as seen:  # no open hazard on that exit: nothing recorded
            await c.sink.handle(ExitCleared("cam-1", "exit-south", ev.started_at, ev.confirmed_at,
                                            datetime.now(UTC), 0.0, jpeg(), ""))
        assert len(seen) == 1 and (await actions(c.db))[-1] == "hazard.obstruction_cleared"
        assert await chain_break(c.db) is None
