"""One-key evaluation (一键考评): KPIs computed only from the hash-chained record.

Nothing here is typed in by a person: every figure derives from record entries (action, actor, at,
data). `compute()` is a pure function over entries, so each KPI has a unit test with hand-computed
values; `load_entries()` fetches what a period needs.

Definitions (period = [start, end), local dates in Asia/Shanghai):
* An incident belongs to the period of its first alarm (`incident.created`). Its officer is the one who
  acknowledged it. alarm→ack = first `incident.acknowledged` − first `alarm.received`; alarm→dispatch =
  first `dispatch.created` − first alarm; handled = first of dispatch or close.
* ack_within_target_share: incidents acknowledged within targets.ack_s / incidents (unacknowledged ones
  count as misses). dispatch_within_target_share: dispatched within targets.dispatch_s / dispatched
  incidents. handled_within_2min_share: handled within targets.response_s / incidents.
* Percentiles: linear interpolation between closest ranks (numpy's default, R type 7).
* Hazards: found / notices / penalties (confirmed) / rechecks count the entries dated in the period by
  their actor. A notice belongs to the period of its deadline: rectified on time when a passing recheck
  is dated ≤ deadline, or the unit's proof is dated ≤ deadline and a later recheck passes. A recheck is
  on time when dated ≤ deadline + targets.recheck_within_h.
* Units: alarms, incidents, false-alarm rate (false_alarm closes / closes), device and camera faults
  (`device.offline|fault`, `camera.offline|fault` entries), hazards found, rectification compliance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select

from config.hazards import HazardsConfig, KpiTargets, ScoreRule
from dispatch import hazards as hz
from dispatch import records as rec
from dispatch.db import Database
from dispatch.hazards import CHINA_TZ
from dispatch.models import RecordEntry

FAULT_ACTIONS = frozenset({"device.offline", "device.fault", "camera.offline", "camera.fault"})
SYSTEM_ACTORS = frozenset({"system", "camera"})


class Entry(Protocol):
    incident_id: int | None
    hazard_id: int | None
    action: str
    actor: str
    at: datetime
    data: dict[str, Any]


# ---------------------------------------------------------------- periods

@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime
    label: str


def _local_midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=CHINA_TZ)


def _parse_point(value: str, *, end: bool) -> datetime:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        d = date.fromisoformat(value)
        return _local_midnight(d + timedelta(days=1) if end else d)  # a `to` date is inclusive
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=CHINA_TZ)


def parse_period(period: str | None = None, start: str | None = None, end: str | None = None,
                 now: datetime | None = None) -> Period:
    """`period` = 2026-11 | 2026-Q4 | 2026, or `start`/`end` dates (end inclusive) or ISO datetimes."""
    if period:
        p = period.strip().upper()
        if m := re.fullmatch(r"(\d{4})-(\d{2})", p):
            y, mo = int(m[1]), int(m[2])
            if not 1 <= mo <= 12:
                raise ValueError("month must be 01–12")
            nxt = date(y + 1, 1, 1) if mo == 12 else date(y, mo + 1, 1)
            return Period(_local_midnight(date(y, mo, 1)), _local_midnight(nxt), f"{y}年{mo}月")
        if m := re.fullmatch(r"(\d{4})-Q([1-4])", p):
            y, q = int(m[1]), int(m[2])
            first = date(y, 3 * q - 2, 1)
            nxt = date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)
            return Period(_local_midnight(first), _local_midnight(nxt), f"{y}年第{q}季度")
        if m := re.fullmatch(r"(\d{4})", p):
            y = int(m[1])
            return Period(_local_midnight(date(y, 1, 1)), _local_midnight(date(y + 1, 1, 1)), f"{y}年")
        raise ValueError("period must look like 2026-11, 2026-Q4 or 2026")
    now = now or datetime.now(UTC)
    try:
        s = _parse_point(start, end=False) if start else None
        e = _parse_point(end, end=True) if end else None
    except ValueError:
        raise ValueError("from/to must be dates (YYYY-MM-DD) or ISO datetimes") from None
    if s is None and e is None:
        local = now.astimezone(CHINA_TZ).date()
        return parse_period(f"{local.year}-{local.month:02d}")
    e = e or now
    s = s or e - timedelta(days=30)
    if e <= s:
        raise ValueError("`to` must be after `from`")
    if e - s > timedelta(days=3700):
        raise ValueError("period longer than ten years")
    fmt = "%Y-%m-%d"
    return Period(s, e, f"{s.astimezone(CHINA_TZ):{fmt}} — {(e - timedelta(seconds=1)).astimezone(CHINA_TZ):{fmt}}")


# ---------------------------------------------------------------- statistics

def quantile(values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (R type 7 / numpy default)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * p
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo), 3)


def share(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


# ---------------------------------------------------------------- facts from the record

@dataclass
class IncidentFacts:
    id: int
    unit_id: str = ""
    created_at: datetime | None = None
    alarm_at: datetime | None = None
    alarms: int = 0
    ack_at: datetime | None = None
    ack_by: str | None = None
    dispatch_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: str | None = None
    escalations: int = 0

    def span(self, later: datetime | None) -> float | None:
        return None if later is None or self.alarm_at is None else (later - self.alarm_at).total_seconds()

    @property
    def handled_at(self) -> datetime | None:
        done = [t for t in (self.dispatch_at, self.closed_at) if t is not None]
        return min(done) if done else None


@dataclass
class NoticeFacts:
    hazard_id: int
    unit_id: str
    issued_by: str
    issued_at: datetime
    deadline: datetime
    proofs: list[datetime] = field(default_factory=list)
    rechecks: list[tuple[datetime, bool, str]] = field(default_factory=list)  # at, rectified, actor

    def rectified_on_time(self) -> bool:
        passing = [at for at, ok, _ in self.rechecks if ok]
        if not passing:
            return False
        if min(passing) <= self.deadline:
            return True
        return any(p <= self.deadline for p in self.proofs)


def _incidents(entries: Iterable[Entry]) -> dict[int, IncidentFacts]:
    out: dict[int, IncidentFacts] = {}
    for e in entries:
        if e.incident_id is None:
            continue
        f = out.setdefault(e.incident_id, IncidentFacts(e.incident_id))
        if e.action == rec.ALARM_RECEIVED:
            f.alarms += 1
            if f.alarm_at is None or e.at < f.alarm_at:
                f.alarm_at = e.at
        elif e.action == rec.INCIDENT_CREATED:
            f.created_at = e.at
            f.unit_id = str(e.data.get("unit_id", ""))
        elif e.action == rec.ACKNOWLEDGED and f.ack_at is None:
            f.ack_at, f.ack_by = e.at, e.actor
        elif e.action == rec.DISPATCH_CREATED and f.dispatch_at is None:
            f.dispatch_at = e.at
        elif e.action == rec.CLOSED:
            f.closed_at, f.outcome = e.at, e.data.get("outcome")
        elif e.action == rec.ESCALATED:
            f.escalations += 1
    return {k: v for k, v in out.items() if v.created_at is not None}


def _notices(entries: Iterable[Entry]) -> dict[int, NoticeFacts]:
    out: dict[int, NoticeFacts] = {}
    for e in entries:
        if e.hazard_id is None:
            continue
        if e.action == hz.NOTICE_ISSUED:
            out[e.hazard_id] = NoticeFacts(e.hazard_id, str(e.data.get("unit_id", "")), e.actor, e.at,
                                           datetime.fromisoformat(e.data["deadline"]))
        elif e.action == hz.PROOF_SUBMITTED and e.hazard_id in out:
            out[e.hazard_id].proofs.append(e.at)
        elif e.action == hz.RECHECKED and e.hazard_id in out:
            out[e.hazard_id].rechecks.append((e.at, bool(e.data.get("rectified")), e.actor))
    return out


# ---------------------------------------------------------------- KPI blocks

def _response_block(incs: Sequence[IncidentFacts], t: KpiTargets) -> dict[str, Any]:
    ack = [s for i in incs if (s := i.span(i.ack_at)) is not None]
    disp = [s for i in incs if (s := i.span(i.dispatch_at)) is not None]
    handled = [s for i in incs if (s := i.span(i.handled_at)) is not None]
    return {
        "alarms_handled": len(incs),
        "ack_median_s": quantile(ack, 0.5),
        "ack_p90_s": quantile(ack, 0.9),
        "dispatch_median_s": quantile(disp, 0.5),
        "dispatch_p90_s": quantile(disp, 0.9),
        "ack_within_target_share": share(sum(1 for s in ack if s <= t.ack_s), len(incs)),
        "dispatch_within_target_share": share(sum(1 for s in disp if s <= t.dispatch_s), len(disp)),
        "handled_within_2min_share": share(sum(1 for s in handled if s <= t.response_s), len(incs)),
        "escalations": sum(i.escalations for i in incs),
    }


def _hazard_block(entries: Sequence[Entry], notices: Sequence[NoticeFacts], t: KpiTargets,
                  actor: str | None) -> dict[str, Any]:
    def mine(e: Entry) -> bool:
        return actor is None or e.actor == actor

    window = timedelta(hours=t.recheck_within_h)
    deadlines = {n.hazard_id: n.deadline for n in notices}
    rechecks = [e for e in entries if e.action == hz.RECHECKED and mine(e)]
    on_time = 0
    for e in rechecks:
        dl = deadlines.get(e.hazard_id or 0)
        if dl is None and e.data.get("deadline"):
            dl = datetime.fromisoformat(e.data["deadline"])
        if dl is not None and e.at <= dl + window:
            on_time += 1
    mine_notices = [n for n in notices if actor is None or n.issued_by == actor]
    rect = sum(1 for n in mine_notices if n.rectified_on_time())
    return {
        "hazards_found": sum(1 for e in entries if e.action == hz.HAZARD_CREATED and mine(e)),
        "notices_issued": sum(1 for e in entries if e.action == hz.NOTICE_ISSUED and mine(e)),
        "notices_due": len(mine_notices),
        "rectified_on_time": rect,
        "rectified_on_time_share": share(rect, len(mine_notices)),
        "rechecks_done": len(rechecks),
        "rechecks_on_time": on_time,
        "rechecks_on_time_share": share(on_time, len(rechecks)),
        "penalties": sum(1 for e in entries if e.action == hz.PENALTY_CONFIRMED and mine(e)),
    }


def score(kpis: dict[str, Any], rules: Sequence[ScoreRule]) -> float | None:
    """0–100: Σ weight·min(1, value/target) (or target/value when lower is better) over rules with data,
    divided by the weights of those rules. None when no rule has data."""
    total = got = 0.0
    for r in rules:
        v = kpis.get(r.metric)
        if v is None:
            continue
        if r.better == "higher":
            part = min(1.0, v / r.target)
        else:
            part = 1.0 if v <= r.target else r.target / v
        total += r.weight
        got += r.weight * part
    return None if total == 0 else round(100 * got / total, 1)


def compute(entries: Sequence[Entry], start: datetime, end: datetime, cfg: HazardsConfig,
            units: dict[str, str] | None = None) -> dict[str, Any]:
    """All KPIs of a period from record entries. `units`: unit id → name (for labels)."""
    t = cfg.targets
    units = units or {}
    # detections are created by the detector layer (actor role "system"); their actor names are not officers
    detectors = {e.actor for e in entries if e.action == hz.HAZARD_CREATED and e.data.get("source") == "detection"}

    def inside(at: datetime) -> bool:
        return start <= at < end

    incs = [i for i in _incidents(entries).values() if i.created_at and inside(i.created_at)]
    dated = [e for e in entries if inside(e.at)]
    notices = [n for n in _notices(entries).values() if inside(n.deadline)]

    # officers: anyone who acted as an officer in the period
    acting = ({i.ack_by for i in incs if i.ack_by}
              | {e.actor for e in dated if e.action in (hz.HAZARD_CREATED, hz.NOTICE_ISSUED, hz.RECHECKED,
                                                        hz.PENALTY_CONFIRMED)}
              | {n.issued_by for n in notices})
    officers = sorted(o for o in acting if o not in SYSTEM_ACTORS and o not in detectors)
    officer_rows = []
    for o in officers:
        row: dict[str, Any] = {"officer": o, **_response_block([i for i in incs if i.ack_by == o], t),
                               **_hazard_block(dated, notices, t, o)}
        row["score"] = score(row, cfg.scoring)
        officer_rows.append(row)
    officer_rows.sort(key=lambda r: (-(r["score"] if r["score"] is not None else -1), r["officer"]))
    for rank, r in enumerate(officer_rows, 1):
        r["rank"] = rank

    station: dict[str, Any] = {**_response_block(incs, t), **_hazard_block(dated, notices, t, None)}
    station["score"] = score(station, cfg.scoring)

    # units
    unit_ids = sorted({i.unit_id for i in incs} | {str(e.data.get("unit_id")) for e in dated
                                                    if e.data.get("unit_id") is not None} | set(units))
    unit_rows = []
    for uid in unit_ids:
        mine = [i for i in incs if i.unit_id == uid]
        closed = [i for i in mine if i.outcome is not None]
        false = sum(1 for i in closed if i.outcome == "false_alarm")
        notes = [n for n in notices if n.unit_id == uid]
        ok = sum(1 for n in notes if n.rectified_on_time())
        unit_rows.append({
            "unit_id": uid, "name": units.get(uid, uid),
            "alarms": sum(i.alarms for i in mine), "incidents": len(mine),
            "false_alarms": false, "false_alarm_rate": share(false, len(closed)),
            "device_faults": sum(1 for e in dated if e.action in FAULT_ACTIONS and e.data.get("unit_id") == uid),
            "hazards": sum(1 for e in dated if e.action == hz.HAZARD_CREATED and e.data.get("unit_id") == uid),
            "notices_due": len(notes), "rectified_on_time": ok, "rectification_compliance": share(ok, len(notes)),
        })

    inspected = {str(e.data.get("unit_id")) for e in dated
                 if e.action == hz.INSPECTION or (e.action == hz.HAZARD_CREATED
                                                  and e.data.get("source") in ("inspection", "patrol"))}
    headline = {
        "units_inspected": len(inspected),
        "hazards_found": station["hazards_found"],
        "notices_issued": station["notices_issued"],
        "penalty_cases": station["penalties"],
        "fires_handled": sum(1 for i in incs if i.outcome == "resolved"),
        "alarms": sum(i.alarms for i in incs),
        "incidents": len(incs),
        "false_alarms": sum(1 for i in incs if i.outcome == "false_alarm"),
    }
    by_category: dict[str, int] = {}
    for e in dated:
        if e.action == hz.HAZARD_CREATED:
            c = str(e.data.get("category"))
            by_category[c] = by_category.get(c, 0) + 1
    return {
        "from": start.isoformat(), "to": end.isoformat(),
        "targets": t.model_dump(), "headline": headline, "station": station,
        "officers": officer_rows, "units": unit_rows, "hazards_by_category": by_category,
        "trend": _trend(incs, dated, start, end),
    }


def _trend(incs: Sequence[IncidentFacts], dated: Sequence[Entry], start: datetime, end: datetime) -> dict[str, Any]:
    """Per day (≤ 62 days) or per month: alarms, median alarm→ack and alarm→dispatch, hazards found."""
    daily = end - start <= timedelta(days=62)

    def key(at: datetime) -> str:
        local = at.astimezone(CHINA_TZ)
        return f"{local:%Y-%m-%d}" if daily else f"{local:%Y-%m}"

    buckets: list[str] = []
    cur = start
    while cur < end and len(buckets) < 400:
        k = key(cur)
        if not buckets or buckets[-1] != k:
            buckets.append(k)
        cur += timedelta(days=1)
    alarms = dict.fromkeys(buckets, 0)
    hazards = dict.fromkeys(buckets, 0)
    ack: dict[str, list[float]] = {k: [] for k in buckets}
    disp: dict[str, list[float]] = {k: [] for k in buckets}
    for i in incs:
        k = key(i.created_at) if i.created_at else ""
        if k not in alarms:
            continue
        alarms[k] += 1
        if (s := i.span(i.ack_at)) is not None:
            ack[k].append(s)
        if (s := i.span(i.dispatch_at)) is not None:
            disp[k].append(s)
    for e in dated:
        if e.action == hz.HAZARD_CREATED and (k := key(e.at)) in hazards:
            hazards[k] += 1
    out = [{"bucket": k, "alarms": alarms[k], "hazards": hazards[k], "ack_median_s": quantile(ack[k], 0.5),
            "dispatch_median_s": quantile(disp[k], 0.5)} for k in buckets]
    return {"granularity": "day" if daily else "month", "points": out}


# ---------------------------------------------------------------- loading

async def load_entries(db: Database, start: datetime, end: datetime) -> list[RecordEntry]:
    """Every entry a period's KPIs need: whole incidents opened in it, whole hazards active around it,
    and the other entries dated in it."""
    async with db.session() as s:
        inc_ids = select(RecordEntry.incident_id).where(
            RecordEntry.action == rec.INCIDENT_CREATED, RecordEntry.at >= start, RecordEntry.at < end)
        haz_ids = select(RecordEntry.hazard_id).where(
            RecordEntry.hazard_id.is_not(None), RecordEntry.at >= start - timedelta(days=366),
            RecordEntry.at < end + timedelta(days=366)).distinct()
        q = select(RecordEntry).where(or_(
            RecordEntry.incident_id.in_(inc_ids), RecordEntry.hazard_id.in_(haz_ids),
            (RecordEntry.at >= start) & (RecordEntry.at < end))).order_by(RecordEntry.id)
        return list((await s.scalars(q)).all())


async def kpis(db: Database, cfg: HazardsConfig, period: Period, units: dict[str, str]) -> dict[str, Any]:
    entries = await load_entries(db, period.start, period.end)
    out = compute(entries, period.start, period.end, cfg, units)
    out["period"] = period.label
    return out


CSV_COLUMNS = {
    "officers": ["rank", "officer", "score", "alarms_handled", "ack_median_s", "ack_p90_s", "dispatch_median_s",
                 "dispatch_p90_s", "ack_within_target_share", "dispatch_within_target_share",
                 "handled_within_2min_share", "escalations", "hazards_found", "notices_issued", "notices_due",
                 "rectified_on_time", "rectified_on_time_share", "rechecks_done", "rechecks_on_time",
                 "rechecks_on_time_share", "penalties"],
    "units": ["unit_id", "name", "alarms", "incidents", "false_alarms", "false_alarm_rate", "device_faults",
              "hazards", "notices_due", "rectified_on_time", "rectification_compliance"],
}


def to_csv(result: dict[str, Any]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["period", result.get("period", ""), result["from"], result["to"]])
    w.writerow([])
    w.writerow(["headline", *result["headline"].keys()])
    w.writerow(["", *result["headline"].values()])
    w.writerow([])
    cols = CSV_COLUMNS["officers"]
    w.writerow(["section", *cols])
    w.writerow(["station", *[("" if c in ("rank", "officer") else result["station"].get(c, "")) for c in cols]])
    for r in result["officers"]:
        w.writerow(["officer", *[r.get(c, "") for c in cols]])
    w.writerow([])
    cols = CSV_COLUMNS["units"]
    w.writerow(["section", *cols])
    for r in result["units"]:
        w.writerow(["unit", *[r.get(c, "") for c in cols]])
    return buf.getvalue()
