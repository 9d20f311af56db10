"""One-key evaluation (一键考评): KPIs computed only from the hash-chained record.

Nothing here is typed in by a person: every figure derives from record entries (action, actor, at,
data). `compute()` is a pure function over entries, so each KPI has a unit test with hand-computed
values. The server folds the record into facts incrementally (dispatch/kpi_facts.py, dispatch/kpi_index.py),
so a request costs what its period holds, not a pass over the whole record.

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
* Scores: quality (the configured rules) × volume (min(1, done/target) over the station's per-month targets, which
  are `kpi.target_set` record entries: dispatch/kpi_targets.py); without a target the answer says so.
* Triage of reports (complaints): accepted + rejected by their actor, and the time from `complaint.received` to
  that entry (median, 90th percentile); reports received in the period (station).
* Units: alarms, incidents, false-alarm rate (false_alarm closes / closes), device and camera faults
  (`device.offline|fault`, `camera.offline|fault` entries), hazards found, rectification compliance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from config.hazards import HazardsConfig
from dispatch.hazards import CHINA_TZ
from dispatch.kpi_facts import FAULT_ACTIONS, SYSTEM_ACTORS, KpiFacts, quantile, score, share

__all__ = ["FAULT_ACTIONS", "SYSTEM_ACTORS", "Period", "compute", "parse_period", "quantile", "score", "share",
           "to_csv"]


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


# ---------------------------------------------------------------- computing

def compute(entries: Sequence[Entry], start: datetime, end: datetime, cfg: HazardsConfig,
            units: dict[str, str] | None = None, now: datetime | None = None) -> dict[str, Any]:
    """All KPIs of a period from record entries (in id order). `units`: unit id → name (for labels).

    The same fold the server keeps current (dispatch.kpi_index), applied to the given entries at once.
    """
    facts = KpiFacts()
    for e in entries:
        facts.add_entry(e)
    return facts.evaluate(start, end, cfg, units, now)


CSV_COLUMNS = {
    "officers": ["rank", "officer", "score", "quality_score", "volume", "target_note", "alarms_handled",
                 "ack_median_s", "ack_p90_s", "dispatch_median_s", "dispatch_p90_s", "ack_within_target_share",
                 "dispatch_within_target_share", "handled_within_2min_share", "escalations", "hazards_found",
                 "inspections", "notices_issued", "notices_due", "rectified_on_time", "rectified_on_time_share",
                 "rechecks_done", "rechecks_on_time", "rechecks_on_time_share", "penalties", "complaints_triaged",
                 "triage_median_s", "triage_p90_s"],
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
