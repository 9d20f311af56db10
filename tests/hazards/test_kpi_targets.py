"""Volume targets in the score (docs/kpi.md "Scores", "Volume targets"), against hand-computed values.

Two officers do equally well (every notice rectified on time, every recheck on time: quality 100): li issues one
notice, wang four. With a station target of 4 notices per officer, wang's score is 100 × min(1, 4/4) = 100 and li's
100 × min(1, 1/4) = 25. The same record is then scored without a target, with a target changed in the middle of
the month, with one recorded after the month ended, and over a quarter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.hazards import HazardsConfig
from dispatch import kpi
from dispatch.kpi_targets import TARGET_SET, months_of
from tests.hazards.test_kpi import E
from tests.hazards.test_kpi_edges import notice, recheck, row

NOV, Q4 = kpi.parse_period("2026-11"), kpi.parse_period("2026-Q4")
T = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # the deadlines: 20 Nov 10:00 China
AFTER = datetime(2027, 1, 20, tzinfo=UTC)
H = timedelta(hours=1)


def work() -> list[E]:
    """li: 1 notice + its recheck; wang: 4 notices + their rechecks, all passing before the deadline."""
    out: list[E] = []
    for hid, who in enumerate(["li", "wang", "wang", "wang", "wang"], 1):
        out += [*notice(hid, "school-1", who, T, T - 72 * H), recheck(hid, "school-1", who, T - 2 * H, True, T)]
    return out


def target(at: datetime, month: str, metric: str, value: int | None, officer: str = "*",
           scope: str = "officer") -> E:
    return E(TARGET_SET, "admin", at, {"month": month, "scope": scope, "officer": officer, "metric": metric,
                                       "target": value, "previous": None})


def run(entries: list[E], period: kpi.Period = NOV) -> dict[str, Any]:
    return kpi.compute(entries, period.start, period.end, HazardsConfig(), {"school-1": "第一小学"}, now=AFTER)


NOV_1 = datetime(2026, 11, 1, 2, tzinfo=UTC)


def test_target_met_and_not_met() -> None:
    r = run([target(NOV_1, "2026-11", "notices_issued", 4), *work()])
    li, wang = row(r, "li"), row(r, "wang")
    assert (li["quality_score"], wang["quality_score"]) == (100.0, 100.0)  # equally good work
    assert wang["volume"] == 1.0 and wang["score"] == 100.0  # 100 × min(1, 4/4)
    assert li["volume"] == 0.25 and li["score"] == 25.0  # 100 × min(1, 1/4): no longer outranks wang
    assert li["volume_targets"] == {"notices_issued": {"target": 4, "done": 1, "met": 0.25}}
    assert [o["officer"] for o in r["officers"]] == ["wang", "li"] and li["target_note"] is None
    # two metrics: the mean of their parts. li: notices 1/4, rechecks min(1, 1/2) → (0.25 + 0.5) / 2 = 0.375
    r = run([target(NOV_1, "2026-11", "notices_issued", 4), target(NOV_1, "2026-11", "rechecks_done", 2), *work()])
    assert (row(r, "li")["volume"], row(r, "li")["score"]) == (0.375, 37.5)
    assert (row(r, "wang")["volume"], row(r, "wang")["score"]) == (1.0, 100.0)  # more than the target: full marks
    # an officer's own target overrides the `*` one: li's is 1 → li meets it
    r = run([target(NOV_1, "2026-11", "notices_issued", 4), target(NOV_1, "2026-11", "notices_issued", 1, "li"),
             *work()])
    assert (row(r, "li")["volume"], row(r, "li")["score"], row(r, "wang")["score"]) == (1.0, 100.0, 100.0)


def test_no_target_is_said_in_the_answer() -> None:
    r = run(work())
    li = row(r, "li")
    assert (li["volume"], li["volume_targets"], li["score"], li["quality_score"]) == (None, {}, 100.0, 100.0)
    assert li["target_note"] == "no target set for 2026-11: score is quality only"
    assert r["station"]["target_note"] == "no target set for 2026-11: score is quality only"
    # a target of the officers is not the station's: the station has none of its own
    r = run([target(NOV_1, "2026-11", "notices_issued", 4), *work()])
    assert r["station"]["volume"] is None and r["station"]["notices_issued"] == 5
    # the station's own: 5 notices against 10 → 0.5; quality 100 → 50
    r = run([target(NOV_1, "2026-11", "notices_issued", 10, "", "station"), *work()])
    assert (r["station"]["volume"], r["station"]["score"]) == (0.5, 50.0)
    # a removed target is no target
    r = run([target(NOV_1, "2026-11", "notices_issued", 4), target(NOV_1 + H, "2026-11", "notices_issued", None),
             *work()])
    assert row(r, "li")["volume"] is None and row(r, "li")["score"] == 100.0


def test_target_changed_mid_period_the_last_before_the_month_ends_counts() -> None:
    mid = datetime(2026, 11, 15, 2, tzinfo=UTC)
    r = run([target(NOV_1, "2026-11", "notices_issued", 4), *work(), target(mid, "2026-11", "notices_issued", 2)])
    assert row(r, "li")["volume_targets"]["notices_issued"]["target"] == 2  # for the whole month
    assert (row(r, "li")["volume"], row(r, "li")["score"]) == (0.5, 50.0)
    # a change dated after the month ended (the API refuses it; an entry in the record anyway) is ignored
    late = datetime(2026, 12, 2, 2, tzinfo=UTC)
    r = run([target(NOV_1, "2026-11", "notices_issued", 4), *work(), target(late, "2026-11", "notices_issued", 1)])
    assert (row(r, "li")["volume"], row(r, "li")["score"]) == (0.25, 25.0)
    # 30 Nov 23:59 China is still November: it counts
    last_minute = datetime(2026, 11, 30, 15, 59, tzinfo=UTC)
    r = run([target(NOV_1, "2026-11", "notices_issued", 4), *work(),
             target(last_minute, "2026-11", "notices_issued", 1)])
    assert row(r, "li")["volume"] == 1.0


def test_a_quarter_adds_up_its_months_and_names_the_missing_ones() -> None:
    oct1 = datetime(2026, 10, 1, 2, tzinfo=UTC)
    months = [target(oct1, m, "notices_issued", 2) for m in ("2026-10", "2026-11", "2026-12")]
    r = run([*months, *work()], Q4)
    assert r["volume_months"] == ["2026-10", "2026-11", "2026-12"]
    assert row(r, "wang")["volume_targets"]["notices_issued"] == {"target": 6, "done": 4, "met": 0.6667}
    assert (row(r, "wang")["volume"], row(r, "wang")["score"]) == (0.6667, 66.7)
    # December's rechecks target is missing: that metric has no target in Q4, and the answer says which month
    r = run([*months, target(oct1, "2026-10", "rechecks_done", 1), target(oct1, "2026-11", "rechecks_done", 1),
             *work()], Q4)
    wang = row(r, "wang")
    assert set(wang["volume_targets"]) == {"notices_issued"}
    assert wang["target_note"] == "left out: rechecks_done (no target for 2026-12)"


def test_a_period_that_is_not_whole_months_has_no_volume_term() -> None:
    p = kpi.parse_period(start="2026-11-03", end="2026-11-20")
    r = run([target(NOV_1, "2026-11", "notices_issued", 4), *work()], p)
    assert r["volume_months"] is None and row(r, "li")["volume"] is None
    assert "not whole months" in row(r, "li")["target_note"]
    assert months_of(kpi.parse_period(start="2026-10-01", end="2026-11-30").start,
                     kpi.parse_period(start="2026-10-01", end="2026-11-30").end) == ["2026-10", "2026-11"]


@pytest.mark.parametrize("bad", [{"target": 0}, {"target": -1}, {"target": "4"}, {"metric": "alarms"},
                                 {"month": "2026-13"}, {"scope": "unit"}])
def test_an_unreadable_target_entry_is_no_target(bad: dict[str, Any]) -> None:
    e = target(NOV_1, "2026-11", "notices_issued", 4)
    e.data.update(bad)
    assert row(run([e, *work()]), "li")["volume"] is None


async def test_targets_are_set_by_an_admin_recorded_and_scored(sqlite_url: str) -> None:
    from sqlalchemy import select

    from console.appkeys import DB
    from dispatch.models import RecordEntry
    from dispatch.records import verify
    from tests.hazards.conftest import config, hazard_app, login
    from tests.inspections.support import inspect
    from tests.support import StepClock

    clock = StepClock(datetime(2026, 11, 2, 2, tzinfo=UTC))  # 2 Nov 2026 10:00 China
    # kpi_max_age_s 0: each answer computed afresh (the default reuses one for 2 s while the record grows)
    cfg = config(sqlite_url, console={"kpi_max_age_s": 0, "session_hours": 2000})
    async with hazard_app(cfg, clock=clock) as running:
        admin, officer, assessor = [await login(running.url, n) for n in ("admin", "officer", "assessor")]

        async def put(body: dict[str, Any]) -> dict[str, Any]:
            status, answer = await admin.request("PUT", "/api/kpi/targets", body)
            assert status == 200, answer
            return dict(answer)
        try:
            body = {"month": "2026-11", "scope": "officer", "officer": "*", "metric": "inspections", "target": 4}
            for api in (officer, assessor):  # only an admin sets targets; nothing changes
                status, _ = await api.request("PUT", "/api/kpi/targets", body)
                assert status == 403
            assert await assessor.get("/api/kpi/targets?month=2026-11") == []
            for bad, why in (({"target": 0}, None), ({"metric": "alarms"}, None), ({"month": "2026-10"}, "ended"),
                             ({"scope": "station"}, "names no officer"), ({"officer": ""}, "login")):
                status, answer = await admin.request("PUT", "/api/kpi/targets", {**body, **bad})
                assert status == 400 and (why is None or why in answer["error"]), (bad, answer)
            got = await put(body)
            assert (got["target"], got["previous"], got["set_by"]) == (4, None, "admin")
            await inspect(officer, "school-1")  # a typed inspection (消防监督检查) counts as one
            clock.advance(3600)
            k = await assessor.get("/api/kpi?period=2026-11")
            row = next(o for o in k["officers"] if o["officer"] == "officer")
            assert (row["inspections"], row["volume"], row["score"]) == (1, 0.25, 25.0)  # no quality data: 100 × 1/4
            clock.advance(3600)
            got = await put({**body, "target": 2})  # changed mid-month
            assert (got["target"], got["previous"]) == (2, 4)
            clock.advance(3600)
            k = await assessor.get("/api/kpi?period=2026-11")
            assert next(o for o in k["officers"] if o["officer"] == "officer")["score"] == 50.0
            listed = await assessor.get("/api/kpi/targets?month=2026-11")
            assert [(t["officer"], t["metric"], t["target"]) for t in listed] == [("*", "inspections", 2)]
            clock.set(datetime(2026, 12, 1, 2, tzinfo=UTC))  # November has ended: its targets are fixed
            status, answer = await admin.request("PUT", "/api/kpi/targets", {**body, "target": 1})
            assert status == 400 and "ended" in answer["error"]
            async with running.app[DB].session() as s:
                entries = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
            assert verify(entries) is None
            changes = [(e.actor, e.data["target"], e.data["previous"]) for e in entries if e.action == TARGET_SET]
            assert changes == [("admin", 4, None), ("admin", 2, 4)]
        finally:
            for api in (admin, officer, assessor):
                await api.close()
