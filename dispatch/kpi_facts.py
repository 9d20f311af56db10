"""The record folded into KPI facts, entry by entry, and the KPIs of any period computed from those facts.

`KpiFacts.add()` takes record entries in id order and keeps only what the KPI definitions (dispatch/kpi.py) read:
per incident its first alarm, acknowledgement, dispatch, close and escalations; per hazard its notice, proofs
and rechecks; the officers' hazard-side actions; device/camera faults and unit mentions as sorted times. Folding
is incremental, so a long-lived index (dispatch/kpi_index.py) only adds what was committed since its last look,
and `evaluate()` costs what the period holds (its incidents and actions), never a pass over the whole record.

`evaluate()` gives exactly what a pass over the period's record entries gave (`kpi.compute` is `add` over the
entries, then `evaluate`), including its edge rules: an incident counts in the period of its `incident.created`,
a notice in the period of its deadline, hazards from about a year around the period.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from config.hazards import HazardsConfig, KpiTargets, ScoreRule
from dispatch import hazards as hz
from dispatch import records as rec
from dispatch.complaint_rows import COMPLAINT_RECEIVED, TRIAGE_ACTIONS
from dispatch.hazards import CHINA_TZ
from dispatch.kpi_columns import OUTCOMES, IncidentColumns, Selection, micros, trend_points
from dispatch.kpi_targets import TARGET_SET, TargetLog, combined, months_of

KPI_DEFINITIONS_VERSION = "4"  # docs/kpi.md: bump with any change of a definition
FAULT_ACTIONS = frozenset({"device.offline", "device.fault", "camera.offline", "camera.fault"})
SYSTEM_ACTORS = frozenset({"system", "camera"})
INCIDENT_ACTIONS = frozenset({rec.ALARM_RECEIVED, rec.INCIDENT_CREATED, rec.ACKNOWLEDGED, rec.DISPATCH_CREATED,
                              rec.CLOSED, rec.ESCALATED})
OFFICER_ACTIONS = frozenset({hz.HAZARD_CREATED, hz.NOTICE_ISSUED, hz.RECHECKED, hz.PENALTY_CONFIRMED})
ACT_ACTIONS = OFFICER_ACTIONS | {hz.INSPECTION}
# entries whose `data` the fold reads beyond `unit_id` (a reader may skip loading the others' data)
DATA_ACTIONS = frozenset({rec.INCIDENT_CREATED, rec.CLOSED, hz.NOTICE_ISSUED, hz.RECHECKED, hz.HAZARD_CREATED,
                          hz.HAZARD_CLOSED, TARGET_SET, COMPLAINT_RECEIVED, *TRIAGE_ACTIONS})
HAZARD_WINDOW = timedelta(days=366)  # hazards with entries this close to the period take part

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)


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


# ---------------------------------------------------------------- facts

@dataclass(slots=True)
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


@dataclass(slots=True)
class NoticeFacts:
    hazard_id: int
    unit_id: str
    issued_by: str
    issued_at: datetime
    deadline: datetime
    proofs: list[datetime] = field(default_factory=list)
    rechecks: list[tuple[datetime, bool, str]] = field(default_factory=list)  # at, rectified, actor
    overdue: bool = False  # a `hazard.overdue` entry: the case went to a penalty

    def rectified_on_time(self) -> bool:
        """docs/kpi.md `rectified_on_time`: never once the case went to a penalty (even if rectified later);
        else a passing recheck dated ≤ deadline, or proof dated ≤ deadline and the first recheck after the
        deadline passes."""
        if self.overdue:
            return False
        rechecks = sorted(self.rechecks)
        if any(ok and at <= self.deadline for at, ok, _ in rechecks):
            return True
        after = [ok for at, ok, _ in rechecks if at > self.deadline]
        return bool(after) and after[0] and any(p <= self.deadline for p in self.proofs)


@dataclass(frozen=True, slots=True)
class Act:
    """An officer-side hazard action or an inspection, with the data fields the KPIs read."""

    at: datetime
    action: str
    actor: str
    hazard_id: int | None
    unit: Any  # data.unit_id as recorded (compared as is, labelled with str())
    source: Any = None  # hazard.created: data.source
    category: Any = None  # hazard.created: data.category
    deadline: datetime | None = None  # hazard.rechecked: data.deadline


@dataclass(frozen=True, slots=True)
class Triage:
    """A report accepted or rejected: by whom, and how long after its `complaint.received` (None when that entry
    is not in the record)."""

    at: datetime
    actor: str
    span_s: float | None


class _Times:
    """Instants (µs since 1970) kept sorted lazily (the record is nearly in time order): counts in [start, end)
    by bisection over ints."""

    __slots__ = ("items", "ordered")

    def __init__(self) -> None:
        self.items: list[int] = []
        self.ordered = True

    def add(self, at: datetime) -> None:
        us = micros(at)
        if self.items and us < self.items[-1]:
            self.ordered = False
        self.items.append(us)

    def count(self, start_us: int, end_us: int) -> int:
        if not self.ordered:
            self.items.sort()
            self.ordered = True
        return bisect_left(self.items, end_us) - bisect_left(self.items, start_us)

    def indices(self, start_us: int, end_us: int) -> list[int]:
        """Positions (in the order added) of the instants in [start, end), without reordering the list."""
        items = self.items
        if self.ordered:
            return list(range(bisect_left(items, start_us), bisect_left(items, end_us)))
        return [i for i, us in enumerate(items) if start_us <= us < end_us]


def _deadline(value: Any) -> datetime | None:
    """A recorded deadline (ISO-8601; one without a zone is China time), None when absent or unreadable."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=CHINA_TZ)


class KpiFacts:
    """Not thread-safe: one owner adds and evaluates (dispatch.kpi_index runs both on one thread)."""

    def __init__(self) -> None:
        self.incidents: dict[int, IncidentFacts] = {}
        self.columns = IncidentColumns()  # what evaluate() reads, rewritten for incidents in _dirty
        self._dirty: set[int] = set()
        self.notices: dict[int, NoticeFacts] = {}
        self.hazard_span: dict[int, list[datetime]] = {}  # hazard id → [first entry at, last entry at]
        self.detections: list[tuple[int | None, str, datetime]] = []  # hazards created by detectors
        self.acts: list[Act] = []
        self.withdrawn: set[int] = set()  # hazards closed as withdrawn (no hazard after all): not counted as found
        self._act_times = _Times()  # the acts' times, same order: a period's acts by bisection
        self._deadlines: list[tuple[int, int]] | None = []  # (deadline µs, hazard id) sorted; None: rebuild
        self.faults: defaultdict[str, _Times] = defaultdict(_Times)
        self.mentions: defaultdict[str, _Times] = defaultdict(_Times)  # str(data.unit_id) → entry times
        self.targets = TargetLog()  # the station's volume targets (`kpi.target_set` entries)
        self.received: dict[int, datetime] = {}  # complaint id → its `complaint.received` time
        self._received_times = _Times()  # those times, for a period's count
        self.triages: list[Triage] = []
        self._triage_times = _Times()  # the triages' times, same order
        self.entries = 0

    # ------------------------------------------------------------ folding

    def add(self, incident_id: int | None, hazard_id: int | None, action: str, actor: str, at: datetime,
            unit: Any, data: dict[str, Any] | None) -> None:
        """One record entry, in id order. `unit` is data.unit_id (None when absent); `data` may be None for
        actions outside DATA_ACTIONS."""
        self.entries += 1
        if unit is not None:
            self.mentions[str(unit)].add(at)
        if incident_id is not None and action in INCIDENT_ACTIONS:
            self._incident(incident_id, action, actor, at, data or {})
        if hazard_id is not None:
            self._hazard(hazard_id, action, actor, at, unit, data or {})
        if action in ACT_ACTIONS:
            d = data or {}
            self._act_times.add(at)
            self.acts.append(Act(at, action, actor, hazard_id, unit,
                                 d.get("source") if action == hz.HAZARD_CREATED else None,
                                 d.get("category") if action == hz.HAZARD_CREATED else None,
                                 _deadline(d.get("deadline")) if action == hz.RECHECKED else None))
            if action == hz.HAZARD_CREATED and d.get("source") == "detection":
                self.detections.append((hazard_id, actor, at))
        elif action in FAULT_ACTIONS and isinstance(unit, str):
            self.faults[unit].add(at)
        elif action == TARGET_SET:
            self.targets.add(at, data or {})
        elif action == COMPLAINT_RECEIVED or action in TRIAGE_ACTIONS:
            self._complaint(action, actor, at, data or {})

    def add_entry(self, e: Any) -> None:
        """A RecordEntry (or anything with its fields)."""
        data = e.data or {}
        self.add(e.incident_id, e.hazard_id, e.action, e.actor, e.at, data.get("unit_id"), data)

    def _complaint(self, action: str, actor: str, at: datetime, data: dict[str, Any]) -> None:
        cid = data.get("complaint_id")
        if not isinstance(cid, int) or isinstance(cid, bool):
            return
        if action == COMPLAINT_RECEIVED:
            self.received[cid] = at
            self._received_times.add(at)
            return
        received = self.received.get(cid)
        self.triages.append(Triage(at, actor, None if received is None else (at - received).total_seconds()))
        self._triage_times.add(at)

    def _incident(self, incident_id: int, action: str, actor: str, at: datetime, data: dict[str, Any]) -> None:
        f = self.incidents.get(incident_id)
        if f is None:
            f = self.incidents[incident_id] = IncidentFacts(incident_id)
        self._dirty.add(incident_id)
        if action == rec.ALARM_RECEIVED:
            f.alarms += 1
            if f.alarm_at is None or at < f.alarm_at:
                f.alarm_at = at
        elif action == rec.INCIDENT_CREATED:
            f.created_at = at
            f.unit_id = str(data.get("unit_id", ""))
        elif action == rec.ACKNOWLEDGED and f.ack_at is None:
            f.ack_at, f.ack_by = at, actor
        elif action == rec.DISPATCH_CREATED and f.dispatch_at is None:
            f.dispatch_at = at
        elif action == rec.CLOSED:
            f.closed_at, f.outcome = at, data.get("outcome")
        elif action == rec.ESCALATED:
            f.escalations += 1

    def _hazard(self, hazard_id: int, action: str, actor: str, at: datetime, unit: Any,
                data: dict[str, Any]) -> None:
        span = self.hazard_span.get(hazard_id)
        if span is None:
            self.hazard_span[hazard_id] = [at, at]
        else:
            span[0], span[1] = min(span[0], at), max(span[1], at)
        if action == hz.NOTICE_ISSUED:
            deadline = _deadline(data.get("deadline"))
            if deadline is not None:
                self.notices[hazard_id] = NoticeFacts(hazard_id, str(data.get("unit_id", "")), actor, at, deadline)
                self._deadlines = None
        elif action == hz.PROOF_SUBMITTED and hazard_id in self.notices:
            self.notices[hazard_id].proofs.append(at)
        elif action == hz.RECHECKED and hazard_id in self.notices:
            self.notices[hazard_id].rechecks.append((at, bool(data.get("rectified")), actor))
        elif action == hz.OVERDUE and hazard_id in self.notices:
            self.notices[hazard_id].overdue = True
        elif action == hz.HAZARD_CLOSED and data.get("outcome") == "withdrawn":
            self.withdrawn.add(hazard_id)

    # ------------------------------------------------------------ evaluating

    def flush(self) -> None:
        """Rewrites the columns of incidents whose facts changed since the last call."""
        put, incidents = self.columns.put, self.incidents
        for iid in self._dirty:
            put(incidents[iid])
        self._dirty.clear()

    def evaluate(self, start: datetime, end: datetime, cfg: HazardsConfig,
                 units: dict[str, str] | None = None, now: datetime | None = None,
                 only_units: Collection[str] | None = None) -> dict[str, Any]:
        """All KPIs of the period [start, end) as of `now` (default: the real clock). `units`: unit id → name.
        `only_units`: count only these units' incidents, hazards and notices (a station's or brigade's KPIs; the
        officers are those who acted on them).

        A period that has not started (start > now) is refused (ValueError): nothing of it can be scored. Notices
        whose deadline is after `now` are not yet due and are left out of every notice KPI."""
        now = now or datetime.now(UTC)
        if start > now:
            raise ValueError("the period has not started yet; it cannot be evaluated")
        t = cfg.targets
        units = units or {}
        win_start, win_end = start - HAZARD_WINDOW, end + HAZARD_WINDOW

        def in_window(hazard_id: int | None) -> bool:
            span = self.hazard_span.get(hazard_id) if hazard_id is not None else None
            return span is not None and span[1] >= win_start and span[0] < win_end

        detectors = {actor for hid, actor, at in self.detections if in_window(hid) or start <= at < end}
        self.flush()
        cols = self.columns
        sel = cols.select(start, end)
        start_us, end_us = micros(start), micros(end)
        dated = [a for i in self._act_times.indices(start_us, end_us)
                 if not ((a := self.acts[i]).action == hz.HAZARD_CREATED and a.hazard_id in self.withdrawn)]
        only = None if only_units is None else frozenset(only_units)
        if only is not None:
            sel = sel.of_units([code for u in only if (code := cols.find_unit(u)) is not None])
            dated = [a for a in dated if isinstance(a.unit, str) and a.unit in only]
        if self._deadlines is None:
            self._deadlines = sorted((micros(n.deadline), hid) for hid, n in self.notices.items())
        lo = bisect_left(self._deadlines, (start_us, -1))
        hi = bisect_left(self._deadlines, (end_us, -1))
        due_us = micros(now)
        notices = [self.notices[hid] for dl, hid in self._deadlines[lo:hi] if dl <= due_us and in_window(hid)]
        if only is not None:
            notices = [n for n in notices if n.unit_id in only]
        hazard_block = _HazardBlocks(dated, notices, t)
        triages = [self.triages[i] for i in self._triage_times.indices(start_us, end_us)]
        triages_of: defaultdict[str, list[Triage]] = defaultdict(list)
        for tr in triages:
            triages_of[tr.actor].append(tr)

        acknowledgers = {cols.officers[c] for c in np.unique(sel.officer).tolist() if c >= 0}
        acting = ({o for o in acknowledgers if o} | {a.actor for a in dated if a.action in ACT_ACTIONS}
                  | {n.issued_by for n in notices} | {tr.actor for tr in triages})
        months = months_of(start, end)
        officers = sorted(o for o in acting if o not in SYSTEM_ACTORS and o not in detectors)
        by_officer = sel.by_officer()
        officer_rows = []
        for o in officers:
            code = cols.officer_code(o)
            acked = by_officer.get(code) if code is not None else None
            officer: dict[str, Any] = {"officer": o, **(acked or sel.none()).response_block(t), **hazard_block.of(o),
                                       **_triage_block(triages_of.get(o, []))}
            self._score(officer, cfg, months, "officer", o)
            officer_rows.append(officer)
        officer_rows.sort(key=lambda o: (-(o["score"] if o["score"] is not None else -1), o["officer"]))
        for rank, ranked in enumerate(officer_rows, 1):
            ranked["rank"] = rank

        received = self._received_times.count(start_us, end_us)
        station: dict[str, Any] = {**sel.response_block(t), **hazard_block.of(None), **_triage_block(triages),
                                   "complaints_received": received}
        self._score(station, cfg, months, "station", "")

        mentioned = {u for u, times in self.mentions.items()
                     if times.count(start_us, end_us) and (only is None or u in only)}
        hazards_per_unit = Counter(a.unit for a in dated if a.action == hz.HAZARD_CREATED and isinstance(a.unit, str))
        notices_per_unit: defaultdict[str, list[NoticeFacts]] = defaultdict(list)
        for n in notices:
            notices_per_unit[n.unit_id].append(n)
        size = len(cols.units)
        incidents_of = np.bincount(sel.unit, minlength=size)
        alarms_of = np.bincount(sel.unit, weights=sel.alarms, minlength=size)
        closed_of = np.bincount(sel.unit[sel.outcome != 0], minlength=size)
        false_of = np.bincount(sel.unit[sel.outcome == OUTCOMES["false_alarm"]], minlength=size)
        with_incidents = {cols.units[c] for c in np.unique(sel.unit).tolist()}
        unit_rows = []
        for uid in sorted(with_incidents | mentioned | set(units)):
            u = cols.find_unit(uid)
            incidents, closed, false = (int(x[u]) if u is not None else 0 for x in (incidents_of, closed_of, false_of))
            notes = notices_per_unit.get(uid, [])
            ok = sum(1 for n in notes if hazard_block.on_time[id(n)])
            faults = self.faults.get(uid)
            unit_rows.append({
                "unit_id": uid, "name": units.get(uid, uid),
                "alarms": int(alarms_of[u]) if u is not None else 0, "incidents": incidents,
                "false_alarms": false, "false_alarm_rate": share(false, closed),
                "device_faults": faults.count(start_us, end_us) if faults is not None else 0,
                "hazards": hazards_per_unit.get(uid, 0),
                "notices_due": len(notes), "rectified_on_time": ok, "rectification_compliance": share(ok, len(notes)),
            })

        inspected = {str(a.unit) for a in dated
                     if a.action == hz.INSPECTION or (a.action == hz.HAZARD_CREATED
                                                      and a.source in ("inspection", "patrol"))}
        headline = {
            "units_inspected": len(inspected),
            "hazards_found": station["hazards_found"],
            "notices_issued": station["notices_issued"],
            "penalty_cases": station["penalties"],
            "fires_handled": int(np.count_nonzero(sel.outcome == OUTCOMES["resolved"])),
            "alarms": int(sel.alarms.sum()),
            "incidents": len(sel),
            "false_alarms": int(np.count_nonzero(sel.outcome == OUTCOMES["false_alarm"])),
        }
        by_category: dict[str, int] = {}
        for a in dated:
            if a.action == hz.HAZARD_CREATED:
                c = str(a.category)
                by_category[c] = by_category.get(c, 0) + 1
        return {
            "definitions": KPI_DEFINITIONS_VERSION,
            "from": start.isoformat(), "to": end.isoformat(),
            "targets": t.model_dump(), "volume_months": months, "headline": headline, "station": station,
            "officers": officer_rows, "units": unit_rows, "hazards_by_category": by_category,
            "trend": _trend(sel, [a.at for a in dated if a.action == hz.HAZARD_CREATED], start, end),
        }


    def _score(self, row: dict[str, Any], cfg: HazardsConfig, months: list[str] | None, scope: str,
               who: str) -> None:
        """docs/kpi.md "Scores": quality (the configured rules) × volume (the station's targets)."""
        quality = score(row, cfg.scoring)
        vol = self.targets.volume(months, scope, who, row)
        row.update(quality_score=quality, volume=vol.volume, volume_targets=vol.targets, target_note=vol.note,
                   score=combined(quality, vol.volume))


# ---------------------------------------------------------------- KPI blocks

class _HazardBlocks:
    """The hazard-side KPIs of a period, per acting officer (grouped once) and for the station (None)."""

    def __init__(self, dated: Sequence[Act], notices: Sequence[NoticeFacts], t: KpiTargets) -> None:
        window = timedelta(hours=t.recheck_within_h)
        deadlines = {n.hazard_id: n.deadline for n in notices}
        self.counts: dict[tuple[str | None, str], int] = {}
        counts = self.counts
        for a in dated:
            if a.action not in ACT_ACTIONS:
                continue
            keys = [a.action]
            if a.action == hz.RECHECKED:
                dl = deadlines.get(a.hazard_id or 0)
                if dl is None:
                    dl = a.deadline
                if dl is not None and a.at <= dl + window:
                    keys.append("on_time")
            for k in keys:
                for who in (a.actor, None):
                    counts[who, k] = counts.get((who, k), 0) + 1
        self.on_time = {id(n): n.rectified_on_time() for n in notices}
        self.notices: defaultdict[str | None, list[bool]] = defaultdict(list)  # rectified on time, per notice
        for n in notices:
            ok = self.on_time[id(n)]
            self.notices[n.issued_by].append(ok)
            self.notices[None].append(ok)

    def of(self, actor: str | None) -> dict[str, Any]:
        def c(key: str) -> int:
            return self.counts.get((actor, key), 0)

        mine = self.notices.get(actor, [])
        rect = sum(mine)
        rechecks, on_time = c(hz.RECHECKED), c("on_time")
        return {
            "hazards_found": c(hz.HAZARD_CREATED),
            "inspections": c(hz.INSPECTION),
            "notices_issued": c(hz.NOTICE_ISSUED),
            "notices_due": len(mine),
            "rectified_on_time": rect,
            "rectified_on_time_share": share(rect, len(mine)),
            "rechecks_done": rechecks,
            "rechecks_on_time": on_time,
            "rechecks_on_time_share": share(on_time, rechecks),
            "penalties": c(hz.PENALTY_CONFIRMED),
        }


def _triage_block(triages: Sequence[Triage]) -> dict[str, Any]:
    """docs/kpi.md: reports triaged (accepted or rejected) and the time from receipt to triage."""
    spans = [tr.span_s for tr in triages if tr.span_s is not None]
    return {"complaints_triaged": len(triages), "triage_median_s": quantile(spans, 0.5),
            "triage_p90_s": quantile(spans, 0.9)}


def _trend(sel: Selection, hazards: Sequence[datetime], start: datetime, end: datetime) -> dict[str, Any]:
    """Per day (≤ 62 days) or per month: alarms, median alarm→ack and alarm→dispatch, hazards found."""
    daily = end - start <= timedelta(days=62)
    names: dict[int, str] = {}  # per UTC hour: China's offsets (+8, +9 in 1986–91) are whole hours

    def name(hour: int) -> str:
        n = names.get(hour)
        if n is None:
            local = (_EPOCH + hour * _HOUR).astimezone(CHINA_TZ)
            n = names[hour] = f"{local:%Y-%m-%d}" if daily else f"{local:%Y-%m}"
        return n

    def key(at: datetime) -> str:
        return name((at - _EPOCH) // _HOUR)

    buckets: list[str] = []
    cur = start
    while cur < end and len(buckets) < 400:
        k = key(cur)
        if not buckets or buckets[-1] != k:
            buckets.append(k)
        cur += timedelta(days=1)
    hazard_counts = dict.fromkeys(buckets, 0)
    for at in hazards:
        if (k := key(at)) in hazard_counts:
            hazard_counts[k] += 1
    points = trend_points(sel, buckets, name)
    out = [{"bucket": k, "alarms": p["alarms"], "hazards": hazard_counts[k], "ack_median_s": p["ack_median_s"],
            "dispatch_median_s": p["dispatch_median_s"]} for k, p in zip(buckets, points, strict=True)]
    return {"granularity": "day" if daily else "month", "points": out}
