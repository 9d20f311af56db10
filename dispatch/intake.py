"""What arrives from the edge, committed: alarms (merged into incidents), refusals, device status.

The hot path: a batch of alarms is one transaction; the caller acknowledges the messages to the broker only after
it returns."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from log_rate_limit import RateLimit, StreamRateLimitFilter  # type: ignore[import-untyped]
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch import events as ev
from dispatch import records as rec
from dispatch.actor import SYSTEM, Actor
from dispatch.core import AlarmNote, Core, OpenIncident, Unacked
from dispatch.events import Event
from dispatch.evidence_record import entries as record_entries
from dispatch.models import (
    Alarm,
    Device,
    Incident,
    RejectedMessage,
    table_of,
)
from dispatch.state import (
    IncidentStatus,
)
from dispatch.views import (
    alarm_row_view,
    device_view,
    incident_view,
    rejection_view,
)
from dispatch.writer import Tx
from ingest.contract import AlarmIn, Rejection, printable

log = logging.getLogger(__name__)
# A flood of bad input is stored and counted in full, but logged at most 20 lines per 10 s (then a count of the rest).
log.addFilter(StreamRateLimitFilter(period_sec=10, allow_next_n=20, default_stream_id=None))
REJECTED_LOG = RateLimit(stream_id="rejected-input")

# The hot path's statements, built once (building an IN clause or an ORM insert costs more than running it).
KNOWN_ALARMS = select(Alarm.alarm_id).where(Alarm.alarm_id.in_(bindparam("ids", expanding=True)))
OPEN_INCIDENTS = select(Incident).where(Incident.id.in_(bindparam("ids", expanding=True)))
INSERT_ALARMS = insert(table_of(Alarm))
# One statement for a batch's new incidents; each row comes back with its unit, which is unique among them
# (else they are inserted one by one): RETURNING's row order is not promised.
INSERT_INCIDENTS = insert(table_of(Incident)).returning(table_of(Incident).c.id, table_of(Incident).c.unit_id)
# A batch's merged incidents, in one statement (they are read detached: no unit-of-work flush for them).
MERGE_ALARMS = update(table_of(Incident)).where(table_of(Incident).c.id == bindparam("b_id")).values(
    alarm_count=bindparam("b_count"), last_alarm_at=bindparam("b_last", type_=table_of(Incident).c.last_alarm_at.type))
CLEAR_TARGETS = update(table_of(Incident)).where(
    table_of(Incident).c.unit_id.in_(bindparam("units", expanding=True)),
    table_of(Incident).c.merge_target.is_(True)).values(merge_target=None)
# Cluster mode: the units' advisory locks, taken in key order (volatile calls run after the inner sort), and
# their merge targets locked for this transaction.
LOCK_UNITS = text("SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended('firelink.unit:' || u, 0) "
                  "AS k FROM unnest(CAST(:units AS text[])) AS u ORDER BY k) AS keys")
MERGE_TARGETS = select(Incident).where(Incident.unit_id.in_(bindparam("units", expanding=True)),
                                       Incident.merge_target.is_(True)).with_for_update()

# A batch of more items than this is a long transaction (dispatch.writer.Writer.tx): on SQLite its statements run on
# the database's thread, not the loop, which stays free for the consoles meanwhile. Below it the loop is the faster
# place (measured in-process, 2,000 units: 1 alarm 0.6 ms inline / 1.9 ms on the thread, 10 alarms 1.7 / 3.5 ms,
# 50 alarms 5.4 / 7.0 ms; bench/README.md, session 10); a batch of 64 holds the loop for about 7 ms.
LONG_BATCH = 64


class Intake:
    """Alarms, refusals and device status into the record, one transaction per batch."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def ingest(self, items: Sequence[AlarmIn | Rejection],
                     notes: Mapping[str, Sequence[AlarmNote]] | None = None) -> list[str]:
        """Commits a batch of alarms (and refusals) in one transaction.

        Returns one outcome per item: accepted | duplicate | rejected. The
        caller acknowledges the messages to the broker only after this returns.
        `notes` (by alarm id) are recorded on an accepted alarm's incident in the same transaction; a duplicate
        or rejected alarm records none.
        """
        if not items:
            return []
        async with self.core.writer.tx(long=len(items) > LONG_BATCH) as tx:
            return await self._ingest(tx, items, notes or {})

    async def record_of(self, incident_id: int, action: str) -> list[dict[str, Any]]:
        """The data of an incident's record entries of one action, oldest first (e.g. its detection frames)."""
        return await record_entries(self.core.db, incident_id, action)

    async def _ingest(self, tx: Tx, items: Sequence[AlarmIn | Rejection],
                      notes: Mapping[str, Sequence[AlarmNote]]) -> list[str]:
        s = tx.session
        window = timedelta(seconds=self.core.cfg.escalation.merge_window_s)
        alarms = [i for i in items if isinstance(i, AlarmIn)]
        known: set[str] = set()
        if self.core.cluster:
            # other cores write too: the batch's units are locked (until commit) before anything is decided,
            # then de-duplication and each unit's merge target are read from the database, not this process
            current = await self._lock_units(s, sorted({a.unit_id for a in alarms if a.unit_id in self.core.units}))
        else:
            current = {}
        open_by_unit = self.core.open_by_unit
        open_ids = [] if self.core.cluster else list(
            {open_by_unit[a.unit_id].incident_id for a in alarms if a.unit_id in open_by_unit})
        for start in range(0, max(len(alarms), len(open_ids)), 500):  # one round trip per 500, not per alarm
            ids = [a.alarm_id for a in alarms[start:start + 500]]
            if ids:
                known.update((await s.scalars(KNOWN_ALARMS, {"ids": ids})).all())
            chunk = open_ids[start:start + 500]
            if chunk:
                current.update((r.unit_id, r) for r in (await s.scalars(OPEN_INCIDENTS, {"ids": chunk})))
        stored = {held.id for held in current.values()}
        for held in current.values():  # merged into below, written by MERGE_ALARMS (no unit-of-work flush)
            s.expunge(held)

        outcomes: list[str] = []
        accepted: list[tuple[AlarmIn, Incident]] = []
        created: list[Incident] = []
        batch_open: dict[str, Incident] = {}
        rejections: list[RejectedMessage] = []

        for item in items:
            if isinstance(item, Rejection):
                rejections.append(self._rejection_row(item))
                outcomes.append("rejected")
                continue
            if item.alarm_id in known:
                outcomes.append("duplicate")
                self.core.counters["alarms_duplicate"] += 1
                continue
            if item.unit_id not in self.core.units:
                rejections.append(self._rejection_row(Rejection(
                    item.source, item.topic, f"unknown unit {item.unit_id!r}", "", 0, item.received_at)))
                outcomes.append("rejected")
                continue
            known.add(item.alarm_id)
            inc = batch_open.get(item.unit_id) or current.get(item.unit_id)
            if inc is not None and item.received_at - inc.last_alarm_at <= window:
                inc.alarm_count += 1
                inc.last_alarm_at = max(inc.last_alarm_at, item.received_at)
            else:
                inc = Incident(unit_id=item.unit_id, kind=item.kind, status=IncidentStatus.NEW,
                               opened_at=item.received_at, last_alarm_at=item.received_at, alarm_count=1,
                               escalation_level=0, close_note="", merge_target=True)
                created.append(inc)
            batch_open[item.unit_id] = inc
            accepted.append((item, inc))
            outcomes.append("accepted")

        await self._insert_incidents(tx, created)
        merged = {inc.id: inc for _, inc in accepted if inc.id in stored}  # (new incidents' ids are new)
        if merged:
            await s.execute(MERGE_ALARMS, [{"b_id": i, "b_count": inc.alarm_count, "b_last": inc.last_alarm_at}
                                           for i, inc in merged.items()])
        s.add_all(rejections)
        await s.flush()  # the rejections
        tx.events.extend(Event(ev.ALARM_REJECTED, {"rejection": rejection_view(r)}) for r in rejections)
        if not accepted:
            return outcomes

        new_ids = {inc.id for inc in created}
        first_alarm = set(new_ids)
        touched: dict[int, Incident] = {}
        alarm_rows: list[dict[str, Any]] = []
        for item, inc in accepted:
            alarm_rows.append({"alarm_id": item.alarm_id, "unit_id": item.unit_id, "incident_id": inc.id,
                               "kind": item.kind, "device_id": item.device_id, "device_ts": item.device_ts,
                               "received_at": item.received_at, "note": item.note, "source": item.source})
            touched[inc.id] = inc
            self.core.record(tx, inc.id, rec.ALARM_RECEIVED, Actor(item.device_id or item.source, "device"),
                         item.received_at, {"alarm_id": item.alarm_id, "kind": item.kind, "source": item.source,
                                            "device_id": item.device_id})
            if inc.id in first_alarm:
                self.core.record(tx, inc.id, rec.INCIDENT_CREATED, SYSTEM, item.received_at,
                             {"unit_id": inc.unit_id, "kind": inc.kind})
                first_alarm.discard(inc.id)
            for note in notes.get(item.alarm_id, ()):
                self.core.record(tx, inc.id, note.action, SYSTEM, item.received_at, note.data)
        await s.execute(INSERT_ALARMS, alarm_rows)

        dispatches = await self.core.dispatches_for(s, [i for i in touched if i not in new_ids])
        self.core.counters["alarms_accepted"] += len(alarm_rows)
        for row in alarm_rows:
            tx.events.append(Event(ev.ALARM_RECEIVED, {"alarm": alarm_row_view(row), "unit_id": row["unit_id"]}))
        for inc_id, inc in touched.items():
            view = incident_view(inc, self.core.units[inc.unit_id], dispatches.get(inc_id, []))
            kind = ev.INCIDENT_CREATED if inc_id in new_ids else ev.INCIDENT_UPDATED
            tx.events.append(Event(kind, {"incident": view}))

        def apply() -> None:
            for inc in touched.values():
                self.core.open_by_unit[inc.unit_id] = OpenIncident(inc.id)
            for inc in created:
                self.core.unacked[inc.id] = Unacked(inc.opened_at, 0)

        tx.after_commit.append(apply)
        return outcomes

    @staticmethod
    async def _lock_units(s: AsyncSession, units: list[str]) -> dict[str, Incident]:
        """Cluster mode: takes each unit's advisory lock (in one order on every core, so two never deadlock) and
        returns each unit's merge target, row-locked."""
        if not units:
            return {}
        await s.execute(LOCK_UNITS, {"units": units})
        return {r.unit_id: r for r in await s.scalars(MERGE_TARGETS, {"units": units})}

    @staticmethod
    async def _insert_incidents(tx: Tx, created: list[Incident]) -> None:
        """Inserts the batch's new incidents and sets their ids: in one statement when their units differ (always,
        but for a backlog spanning more than the merge window), else one by one through the session.

        Each new incident becomes its unit's merge target (the one before it no longer is)."""
        if not created:
            return
        await tx.session.execute(CLEAR_TARGETS, {"units": sorted({inc.unit_id for inc in created})})
        if len({inc.unit_id for inc in created}) < len(created):
            last = {inc.unit_id: inc for inc in created}
            for inc in created:
                inc.merge_target = True if last[inc.unit_id] is inc else None
            tx.session.add_all(created)
            await tx.session.flush()
            return
        rows = [{"unit_id": i.unit_id, "kind": i.kind, "status": i.status, "opened_at": i.opened_at,
                 "last_alarm_at": i.last_alarm_at, "alarm_count": i.alarm_count,
                 "escalation_level": i.escalation_level, "close_note": i.close_note, "merge_target": True}
                for i in created]
        ids = {unit_id: id_ for id_, unit_id in (await tx.session.execute(INSERT_INCIDENTS, rows)).all()}
        for inc in created:  # not in the session: views read them, nothing changes them in this transaction
            inc.id = ids[inc.unit_id]

    def _rejection_row(self, r: Rejection) -> RejectedMessage:
        self.core.counters["rejected"] += 1
        log.warning("rejected %s input on %r: %s", r.source, r.topic, r.reason, extra=REJECTED_LOG)
        return RejectedMessage(received_at=r.received_at, source=r.source, topic=printable(r.topic)[:400],
                               reason=r.reason[:400], excerpt=r.excerpt[:600], size=r.size)

    async def reject(self, rejection: Rejection) -> None:
        async with self.core.writer.tx() as tx:
            row = self._rejection_row(rejection)
            tx.session.add(row)
            await tx.session.flush()
            tx.events.append(Event(ev.ALARM_REJECTED, {"rejection": rejection_view(row)}))

    async def set_device_status(self, device_id: str, status: str, detail: str, at: datetime,
                                last_seen: datetime | None) -> dict[str, Any] | None:
        """Persists a device status change (online/offline/fault) with a record entry."""
        async with self.core.writer.tx() as tx:
            dev = await tx.session.get(Device, device_id, with_for_update=self.core.cluster)
            if dev is None:
                return None
            if self.core.cluster and dev.status_since is not None and at < dev.status_since:
                # cluster mode: another core stored a newer status of this device; this older one changes nothing
                if last_seen is not None and (dev.last_seen is None or last_seen > dev.last_seen):
                    dev.last_seen = last_seen
                return device_view(dev)
            if last_seen is not None:
                dev.last_seen = last_seen
            if dev.status == status and dev.detail == detail:
                return device_view(dev)
            dev.status, dev.detail, dev.status_since = status, detail[:400], at
            self.core.record(tx, None, f"device.{status}", SYSTEM, at,
                         {"device_id": dev.id, "unit_id": dev.unit_id, "detail": detail[:200]})
            view = device_view(dev)
            tx.events.append(Event(ev.DEVICE_UPDATED, {"device": view, "unit_id": dev.unit_id}))
            return view
