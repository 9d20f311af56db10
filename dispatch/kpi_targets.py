"""Volume targets of the evaluation (一键考评): how much work a month is expected to hold, set by the station.

Targets are data: an admin sets one per month for an officer (by login), for every officer without one of their
own (`officer = "*"`), or for the station in total (`scope = station`). Every change is one `kpi.target_set` record
entry in the hash chain (data: month, scope, officer, metric, target — `null` removes it — and the previous value),
written with the `kpi_targets` row in one transaction; the KPIs read the record entries only (dispatch.kpi_facts
folds them with `TargetLog`), the row is the current value for the pages.

Which target counts (docs/kpi.md, "Volume"): for each month, the last change recorded before that month ends.
A change for a month that has ended is refused, and an entry dated after the month's end (none can be written
through `KpiTargets`) is ignored, so a month's score cannot be moved afterwards by lowering its target. A period of
several whole months (a quarter, a year) adds up its months' targets; a metric lacking a target in any of its
months has no target in that period, and a period that is not whole months has none at all — the answer says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from dispatch.actor import Actor
from dispatch.db import Database
from dispatch.errors import BadRequest
from dispatch.hazard_models import KpiTarget
from dispatch.hazards import CHINA_TZ
from dispatch.views import iso
from dispatch.writer import Writer
from ingest.contract import utcnow

TARGET_SET = "kpi.target_set"
METRICS = ("inspections", "notices_issued", "rechecks_done")  # count KPIs of an officer/station row
SCOPES = ("officer", "station")
EVERY_OFFICER = "*"
MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")

Subject = tuple[str, str, str, str]  # month, scope, officer, metric


def month_start(month: str) -> datetime:
    m = MONTH.fullmatch(month)
    if m is None:
        raise ValueError("month must look like 2026-11")
    return datetime(int(m[1]), int(m[2]), 1, tzinfo=CHINA_TZ)


def month_end(month: str) -> datetime:
    s = month_start(month)
    nxt = date(s.year + 1, 1, 1) if s.month == 12 else date(s.year, s.month + 1, 1)
    return datetime(nxt.year, nxt.month, 1, tzinfo=CHINA_TZ)


def months_of(start: datetime, end: datetime) -> list[str] | None:
    """The local months [start, end) is made of, or None when it is not whole months."""
    s = start.astimezone(CHINA_TZ)
    if (s.day, s.hour, s.minute, s.second, s.microsecond) != (1, 0, 0, 0, 0):
        return None
    months: list[str] = []
    cur = f"{s.year:04d}-{s.month:02d}"
    while month_start(cur) < end and len(months) < 1200:
        months.append(cur)
        nxt = month_end(cur)
        cur = f"{nxt.year:04d}-{nxt.month:02d}"
    return months if months and month_start(cur) == end else None


@dataclass(frozen=True, slots=True)
class Volume:
    """The volume term of one row: Σ over metrics with a target of min(1, done/target), ÷ their number."""

    volume: float | None
    targets: dict[str, dict[str, Any]]
    note: str | None


class TargetLog:
    """The `kpi.target_set` entries folded: per subject its changes, in record order."""

    def __init__(self) -> None:
        self.changes: dict[Subject, list[tuple[datetime, int | None]]] = {}

    def add(self, at: datetime, data: dict[str, Any]) -> None:
        month, scope, officer, metric = (data.get(k) for k in ("month", "scope", "officer", "metric"))
        target = data.get("target")
        if not (isinstance(month, str) and MONTH.fullmatch(month) and scope in SCOPES and isinstance(officer, str)
                and metric in METRICS and (target is None or (isinstance(target, int) and target > 0))):
            return  # not a target this code can read: no target (said so in the answer), never a guess
        self.changes.setdefault((month, str(scope), officer, str(metric)), []).append((at, target))

    def in_force(self, month: str, scope: str, officer: str, metric: str) -> int | None:
        """The last change recorded before the month ends (None: never set, or removed)."""
        cut = month_end(month)
        value = None
        for at, target in self.changes.get((month, scope, officer, metric), ()):
            if at < cut:
                value = target
        return value

    def target(self, months: list[str], scope: str, officer: str, metric: str) -> tuple[int | None, list[str]]:
        """The period's target (the sum over its months) and the months lacking one."""
        total, missing = 0, []
        for m in months:
            t = self.in_force(m, scope, officer, metric)
            if t is None and scope == "officer":
                t = self.in_force(m, scope, EVERY_OFFICER, metric)
            if t is None:
                missing.append(m)
            else:
                total += t
        return (None if missing else total), missing

    def volume(self, months: list[str] | None, scope: str, officer: str, done: dict[str, Any]) -> Volume:
        if months is None:
            return Volume(None, {}, "targets are set per month; this period is not whole months: no volume term")
        targets: dict[str, dict[str, Any]] = {}
        parts, lacking = [], []
        for metric in METRICS:
            t, missing = self.target(months, scope, officer, metric)
            if t is None:
                if len(missing) < len(months):
                    lacking.append(f"{metric} (no target for {', '.join(missing)})")
                continue
            d = int(done.get(metric) or 0)
            part = min(1.0, d / t)
            parts.append(part)
            targets[metric] = {"target": t, "done": d, "met": round(part, 4)}
        if not parts:
            return Volume(None, {}, f"no target set for {', '.join(months)}: score is quality only")
        note = f"left out: {'; '.join(lacking)}" if lacking else None
        return Volume(round(sum(parts) / len(parts), 4), targets, note)


def combined(quality: float | None, volume: float | None) -> float | None:
    """score = quality × volume; quality alone without a target, 100 × volume without quality data."""
    if volume is None:
        return quality
    if quality is None:
        return round(100 * volume, 1)
    return round(quality * volume, 1)


class KpiTargets:
    """Setting targets (admin) and reading them: each change a row and a `kpi.target_set` entry, one transaction."""

    def __init__(self, writer: Writer, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.writer = writer
        self.db = db
        self.clock = clock

    async def set_target(self, month: str, scope: str, officer: str, metric: str, target: int | None,
                         actor: Actor) -> dict[str, Any]:
        if metric not in METRICS:
            raise BadRequest(f"metric must be one of {', '.join(METRICS)}")
        if scope not in SCOPES:
            raise BadRequest("scope must be officer or station")
        if scope == "station" and officer:
            raise BadRequest("a station target names no officer")
        if scope == "officer" and not officer:
            raise BadRequest(f"an officer target names the officer's login (or {EVERY_OFFICER!r} for every officer)")
        if target is not None and target < 1:
            raise BadRequest("a target is at least 1 (send null to remove it)")
        try:
            end = month_end(month)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        async with self.writer.tx() as tx:
            now = self.clock()
            if end <= now:
                raise BadRequest(f"{month} has ended: its targets can no longer be changed")
            s = tx.session
            row = await s.scalar(select(KpiTarget).where(KpiTarget.month == month, KpiTarget.scope == scope,
                                                         KpiTarget.officer == officer, KpiTarget.metric == metric))
            previous = row.target if row is not None else None
            if target is None:
                if row is None:
                    raise BadRequest("no such target to remove")
                await s.delete(row)
            elif row is None:
                row = KpiTarget(month=month, scope=scope, officer=officer, metric=metric, target=target, set_at=now,
                                set_by=actor.username)
                s.add(row)
            else:
                row.target, row.set_at, row.set_by = target, now, actor.username
            self.writer.record(tx, TARGET_SET, actor, now, {"month": month, "scope": scope, "officer": officer,
                                                            "metric": metric, "target": target,
                                                            "previous": previous})
        return {"month": month, "scope": scope, "officer": officer, "metric": metric, "target": target,
                "previous": previous, "set_at": iso(now), "set_by": actor.username}

    async def list_targets(self, month: str | None = None) -> list[dict[str, Any]]:
        query = select(KpiTarget).order_by(KpiTarget.month, KpiTarget.scope, KpiTarget.officer, KpiTarget.metric)
        if month:
            query = query.where(KpiTarget.month == month)
        async with self.db.session() as s:
            rows = (await s.scalars(query)).all()
        return [{"month": r.month, "scope": r.scope, "officer": r.officer, "metric": r.metric, "target": r.target,
                 "set_at": iso(r.set_at), "set_by": r.set_by} for r in rows]
