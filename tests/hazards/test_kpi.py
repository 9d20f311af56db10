"""Every KPI against hand-computed values, from a small hand-made record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.hazards import HazardsConfig, ScoreRule
from dispatch import kpi
from dispatch.documents import yuan_upper

T0 = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)  # 10:00 in China
START, END = kpi.parse_period("2026-11").start, kpi.parse_period("2026-11").end


@dataclass
class E:
    action: str
    actor: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    incident_id: int | None = None
    hazard_id: int | None = None


def s(seconds: float, base: datetime = T0) -> datetime:
    return base + timedelta(seconds=seconds)


def incident(iid: int, unit: str, base: datetime, *, ack: tuple[str, float] | None, dispatch: float | None = None,
             close: tuple[str, float] | None = None, extra_alarms: tuple[float, ...] = (),
             escalations: tuple[float, ...] = ()) -> list[E]:
    out = [E("alarm.received", "btn", base, {"kind": "one_key"}, iid),
           E("incident.created", "system", base, {"unit_id": unit}, iid)]
    out += [E("alarm.received", "btn", s(t, base), {}, iid) for t in extra_alarms]
    out += [E("incident.escalated", "system", s(t, base), {"level": 1}, iid) for t in escalations]
    if ack:
        out.append(E("incident.acknowledged", ack[0], s(ack[1], base), {}, iid))
    if dispatch is not None:
        out.append(E("dispatch.created", ack[0] if ack else "x", s(dispatch, base), {"agency": "fire"}, iid))
    if close:
        out.append(E("incident.closed", ack[0] if ack else "x", s(close[1], base), {"outcome": close[0]}, iid))
    return out


D1 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
D2 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
H = 3600


def record() -> list[E]:
    ents: list[E] = []
    ents += incident(1, "school-1", T0, ack=("li", 8), dispatch=30, close=("resolved", 600), extra_alarms=(20,))
    ents += incident(2, "school-1", s(H), ack=("li", 12), close=("false_alarm", 50))
    ents += incident(3, "hotel-1", s(2 * H), ack=("wang", 5), dispatch=100, close=("resolved", 900))
    ents += incident(4, "hotel-1", s(3 * H), ack=("wang", 40), dispatch=70, escalations=(30,))
    # outside the period (December): ignored
    ents += incident(5, "hotel-1", datetime(2026, 12, 2, 2, tzinfo=UTC), ack=("li", 1), dispatch=2)
    # H1: found on inspection by li, notice, proof before the deadline, recheck after it (on time) → rectified on time
    ents += [E("hazard.created", "li", s(4 * H), {"unit_id": "school-1", "source": "inspection",
                                                   "category": "missing_extinguisher"}, hazard_id=1),
             E("hazard.notice_issued", "li", s(5 * H), {"unit_id": "school-1", "deadline": D1.isoformat()},
               hazard_id=1),
             E("hazard.proof_submitted", "school", D1 - timedelta(hours=1), {"unit_id": "school-1"}, hazard_id=1),
             E("hazard.rechecked", "li", D1 + timedelta(hours=2), {"unit_id": "school-1", "rectified": True,
                                                                    "deadline": D1.isoformat()}, hazard_id=1)]
    # H2: video patrol by wang, notice, no proof, overdue, penalty, a late failed recheck
    ents += [E("hazard.created", "wang", s(6 * H), {"unit_id": "hotel-1", "source": "patrol",
                                                     "category": "blocked_exit"}, hazard_id=2),
             E("hazard.notice_issued", "wang", s(7 * H), {"unit_id": "hotel-1", "deadline": D2.isoformat()},
               hazard_id=2),
             E("hazard.overdue", "system", D2, {"unit_id": "hotel-1"}, hazard_id=2),
             E("penalty.proposed", "system", D2, {"unit_id": "hotel-1"}, hazard_id=2),
             E("penalty.confirmed", "wang", D2 + timedelta(hours=1), {"unit_id": "hotel-1"}, hazard_id=2),
             E("hazard.rechecked", "wang", D2 + timedelta(hours=100), {"unit_id": "hotel-1", "rectified": False,
                                                                       "deadline": D2.isoformat()}, hazard_id=2)]
    # H3: a detection (no notice); an inspection with nothing found; device/camera faults
    ents += [E("hazard.created", "detector", s(8 * H), {"unit_id": "hotel-1", "source": "detection",
                                                         "category": "blocked_exit"}, hazard_id=3),
             E("inspection.recorded", "li", s(9 * H), {"unit_id": "hotel-1"}),
             E("device.offline", "system", s(10 * H), {"unit_id": "school-1", "device_id": "btn-1"}),
             E("device.online", "system", s(11 * H), {"unit_id": "school-1", "device_id": "btn-1"}),
             E("camera.fault", "system", s(12 * H), {"unit_id": "hotel-1", "camera_id": "cam-2"})]
    return ents


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return kpi.compute(record(), START, END, HazardsConfig(), {"school-1": "第一小学", "hotel-1": "环江宾馆"})


def officer(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in result["officers"] if r["officer"] == name)


def test_response_times_per_officer(result: dict[str, Any]) -> None:
    li, wang = officer(result, "li"), officer(result, "wang")
    # li: ack 8, 12 s; dispatch 30 s
    assert (li["alarms_handled"], li["ack_median_s"], li["ack_p90_s"]) == (2, 10.0, 11.6)
    assert (li["dispatch_median_s"], li["dispatch_p90_s"]) == (30.0, 30.0)
    # wang: ack 5, 40 s; dispatch 100, 70 s
    assert (wang["alarms_handled"], wang["ack_median_s"], wang["ack_p90_s"]) == (2, 22.5, 36.5)
    assert (wang["dispatch_median_s"], wang["dispatch_p90_s"]) == (85.0, 97.0)


def test_target_shares_and_escalations(result: dict[str, Any]) -> None:
    li, wang = officer(result, "li"), officer(result, "wang")
    assert li["ack_within_target_share"] == 0.5  # 8 ≤ 10, 12 > 10
    assert li["dispatch_within_target_share"] == 1.0  # 30 ≤ 60
    assert li["handled_within_2min_share"] == 1.0  # dispatched at 30 s; false alarm closed at 50 s
    assert wang["ack_within_target_share"] == 0.5
    assert wang["dispatch_within_target_share"] == 0.0  # 100 and 70 > 60
    assert wang["handled_within_2min_share"] == 1.0
    assert (li["escalations"], wang["escalations"]) == (0, 1)


def test_station(result: dict[str, Any]) -> None:
    st = result["station"]
    assert st["alarms_handled"] == 4  # December incident excluded
    assert (st["ack_median_s"], st["ack_p90_s"]) == (10.0, 31.6)  # [5, 8, 12, 40]
    assert (st["dispatch_median_s"], st["dispatch_p90_s"]) == (70.0, 94.0)  # [30, 70, 100]
    assert st["ack_within_target_share"] == 0.5
    assert st["dispatch_within_target_share"] == 0.3333
    assert st["handled_within_2min_share"] == 1.0
    assert st["escalations"] == 1
    assert (st["hazards_found"], st["notices_issued"], st["penalties"]) == (3, 2, 1)
    assert (st["notices_due"], st["rectified_on_time"], st["rectified_on_time_share"]) == (2, 1, 0.5)
    assert (st["rechecks_done"], st["rechecks_on_time"], st["rechecks_on_time_share"]) == (2, 1, 0.5)


def test_hazard_kpis_per_officer(result: dict[str, Any]) -> None:
    li, wang = officer(result, "li"), officer(result, "wang")
    assert (li["hazards_found"], li["notices_issued"], li["penalties"]) == (1, 1, 0)
    assert (li["rectified_on_time"], li["rectified_on_time_share"]) == (1, 1.0)  # proof 1 h before the deadline
    assert (li["rechecks_done"], li["rechecks_on_time"], li["rechecks_on_time_share"]) == (1, 1, 1.0)  # +2 h
    assert (wang["hazards_found"], wang["notices_issued"], wang["penalties"]) == (1, 1, 1)
    assert (wang["rectified_on_time"], wang["rectified_on_time_share"]) == (0, 0.0)
    assert (wang["rechecks_done"], wang["rechecks_on_time"], wang["rechecks_on_time_share"]) == (1, 0, 0.0)  # +100 h
    assert [r["officer"] for r in result["officers"]] == ["li", "wang"]  # system, camera, detector are not officers


def test_scores_and_ranking(result: dict[str, Any]) -> None:
    # li: 25·(0.5/0.9) + 25·1 + 20·1 + 15·1 + 15·1 = 88.889 → 88.9
    # wang: 25·(0.5/0.9) + 25·0 + 20·1 + 15·0 + 15·0 = 33.889 → 33.9
    li, wang = officer(result, "li"), officer(result, "wang")
    assert (li["score"], li["rank"]) == (88.9, 1)
    assert (wang["score"], wang["rank"]) == (33.9, 2)


def test_units(result: dict[str, Any]) -> None:
    units = {u["unit_id"]: u for u in result["units"]}
    school, hotel = units["school-1"], units["hotel-1"]
    assert school["name"] == "第一小学"
    assert (school["alarms"], school["incidents"], school["false_alarms"], school["false_alarm_rate"]) == (3, 2, 1, 0.5)
    assert (school["device_faults"], school["hazards"]) == (1, 1)  # device.online is no fault
    assert (school["notices_due"], school["rectified_on_time"], school["rectification_compliance"]) == (1, 1, 1.0)
    assert (hotel["alarms"], hotel["incidents"], hotel["false_alarms"], hotel["false_alarm_rate"]) == (2, 2, 0, 0.0)
    assert (hotel["device_faults"], hotel["hazards"]) == (1, 2)
    assert (hotel["notices_due"], hotel["rectified_on_time"], hotel["rectification_compliance"]) == (1, 0, 0.0)


def test_headline_and_categories(result: dict[str, Any]) -> None:
    assert result["headline"] == {"units_inspected": 2, "hazards_found": 3, "notices_issued": 2, "penalty_cases": 1,
                                  "fires_handled": 2, "alarms": 5, "incidents": 4, "false_alarms": 1}
    assert result["hazards_by_category"] == {"missing_extinguisher": 1, "blocked_exit": 2}


def test_trend_per_day(result: dict[str, Any]) -> None:
    assert result["trend"]["granularity"] == "day"
    points = {p["bucket"]: p for p in result["trend"]["points"]}
    assert len(points) == 30
    nov10 = points["2026-11-10"]
    assert (nov10["alarms"], nov10["hazards"], nov10["ack_median_s"], nov10["dispatch_median_s"]) == (4, 3, 10.0, 70.0)
    assert points["2026-11-11"]["alarms"] == 0 and points["2026-11-11"]["ack_median_s"] is None


def test_configurable_targets_and_scoring() -> None:
    cfg = HazardsConfig(targets={"ack_s": 15, "dispatch_s": 100},
                        scoring=[ScoreRule(metric="ack_p90_s", weight=1, target=20, better="lower"),
                                 ScoreRule(metric="penalties", weight=1, target=2)])
    r = kpi.compute(record(), START, END, cfg)
    wang = officer(r, "wang")
    assert wang["ack_within_target_share"] == 0.5  # 5 ≤ 15, 40 > 15
    assert wang["dispatch_within_target_share"] == 1.0  # 100 and 70 ≤ 100
    # lower is better: 20/36.5 = 0.5479; penalties 1/2 = 0.5 → (0.5479 + 0.5)/2 = 52.4
    assert wang["score"] == 52.4
    assert kpi.score({}, cfg.scoring) is None


def test_quantile_and_share() -> None:
    assert kpi.quantile([], 0.5) is None
    assert kpi.quantile([7], 0.9) == 7
    assert kpi.quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == 9.1
    assert kpi.quantile([3, 1, 2], 0.5) == 2
    assert kpi.share(1, 3) == 0.3333 and kpi.share(0, 0) is None


def test_periods() -> None:
    m = kpi.parse_period("2026-11")
    assert (m.start.isoformat(), m.end.isoformat()) == ("2026-11-01T00:00:00+08:00", "2026-12-01T00:00:00+08:00")
    q = kpi.parse_period("2026-q4")
    assert (q.start.month, q.end.year, q.end.month, q.label) == (10, 2027, 1, "2026年第4季度")
    y = kpi.parse_period("2026")
    assert (y.start.isoformat(), y.end.isoformat()) == ("2026-01-01T00:00:00+08:00", "2027-01-01T00:00:00+08:00")
    r = kpi.parse_period(None, "2026-11-03", "2026-11-05")  # `to` date inclusive
    assert (r.start.isoformat(), r.end.isoformat()) == ("2026-11-03T00:00:00+08:00", "2026-11-06T00:00:00+08:00")
    for bad in ("2026-13", "26-Q1", "nope"):
        with pytest.raises(ValueError):
            kpi.parse_period(bad)
    with pytest.raises(ValueError):
        kpi.parse_period(None, "2026-11-05", "2026-11-01")


def test_csv_has_every_section(result: dict[str, Any]) -> None:
    text = kpi.to_csv({**result, "period": "2026年11月"})
    lines = text.splitlines()
    assert lines[0].startswith("period,2026年11月")
    assert sum(1 for line in lines if line.startswith("officer,")) == 2
    assert any(line.startswith("unit,hotel-1,环江宾馆,2,2,0,0.0,1,2,1,0,0.0") for line in lines)


def test_amount_in_chinese_capitals() -> None:
    assert yuan_upper(5000) == "伍仟元整"
    assert yuan_upper(50000) == "伍万元整"
    assert yuan_upper(12050) == "壹万贰仟零伍拾元整"
    assert yuan_upper(500) == "伍佰元整"
    assert yuan_upper(10005) == "壹万零伍元整"
