"""The KPI definitions' edges (docs/kpi.md), each against hand-computed values from a small hand-made record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.hazards import HazardsConfig
from dispatch import kpi
from tests.hazards.test_kpi import E, incident

NOV, DEC = kpi.parse_period("2026-11"), kpi.parse_period("2026-12")
T = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # a deadline: 20 Nov 10:00 China
AFTER = datetime(2026, 12, 20, tzinfo=UTC)  # asked long after November
H = timedelta(hours=1)


def notice(hid: int, unit: str, by: str, deadline: datetime, issued: datetime) -> list[E]:
    return [E("hazard.created", by, issued - H, {"unit_id": unit, "source": "inspection", "category": "other"},
              hazard_id=hid),
            E("hazard.notice_issued", by, issued, {"unit_id": unit, "deadline": deadline.isoformat()}, hazard_id=hid)]


def recheck(hid: int, unit: str, by: str, at: datetime, ok: bool, deadline: datetime) -> E:
    return E("hazard.rechecked", by, at, {"unit_id": unit, "rectified": ok, "deadline": deadline.isoformat()},
             hazard_id=hid)


def run(entries: list[E], period: kpi.Period = NOV, now: datetime = AFTER) -> dict[str, Any]:
    return kpi.compute(entries, period.start, period.end, HazardsConfig(), {"school-1": "第一小学"}, now=now)


def row(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in result["officers"] if r["officer"] == name)


def unit(result: dict[str, Any], uid: str) -> dict[str, Any]:
    return next(u for u in result["units"] if u["unit_id"] == uid)


def test_penalised_then_rectified_is_not_rectified_on_time() -> None:
    # proof before T; a recheck after T fails → overdue, penalty; a later recheck passes; the penalty closes
    entries = [*notice(1, "school-1", "li", T, T - 72 * H),
               E("hazard.proof_submitted", "school", T - 2 * H, {"unit_id": "school-1"}, hazard_id=1),
               recheck(1, "school-1", "li", T + 2 * H, False, T),
               E("hazard.overdue", "li", T + 2 * H, {"unit_id": "school-1"}, hazard_id=1),
               E("penalty.proposed", "system", T + 2 * H, {"unit_id": "school-1"}, hazard_id=1),
               E("penalty.confirmed", "li", T + 3 * H, {"unit_id": "school-1"}, hazard_id=1),
               recheck(1, "school-1", "li", T + 48 * H, True, T),
               E("penalty.closed", "li", T + 50 * H, {"unit_id": "school-1"}, hazard_id=1),
               E("hazard.closed", "li", T + 50 * H, {"unit_id": "school-1", "outcome": "rectified_after_penalty"},
                 hazard_id=1)]
    r = run(entries)
    li = row(r, "li")
    assert (li["notices_due"], li["rectified_on_time"], li["rectified_on_time_share"]) == (1, 0, 0.0)
    assert (unit(r, "school-1")["rectified_on_time"], unit(r, "school-1")["rectification_compliance"]) == (0, 0.0)
    # both rechecks by li: +2 h on time, +48 h on time (window 72 h)
    assert (li["rechecks_done"], li["rechecks_on_time"]) == (2, 2)


def test_first_recheck_after_the_deadline_decides() -> None:
    # proof before T but the first recheck after T fails (no overdue entry recorded: an old record) → not on time
    entries = [*notice(1, "school-1", "li", T, T - 72 * H),
               E("hazard.proof_submitted", "school", T - 2 * H, {"unit_id": "school-1"}, hazard_id=1),
               recheck(1, "school-1", "li", T + 1 * H, False, T), recheck(1, "school-1", "li", T + 5 * H, True, T)]
    assert row(run(entries), "li")["rectified_on_time"] == 0
    # a failed recheck before T, then a passing one before T → on time
    entries = [*notice(2, "school-1", "li", T, T - 72 * H),
               recheck(2, "school-1", "li", T - 30 * H, False, T), recheck(2, "school-1", "li", T - 3 * H, True, T)]
    assert (row(run(entries), "li")["rectified_on_time"], row(run(entries), "li")["notices_due"]) == (1, 1)


def test_notices_not_yet_due_are_not_counted() -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # 30 Nov 18:00 China
    later = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # 30 Nov 20:00 China: still in November, not yet due
    entries = [*notice(1, "school-1", "li", T, T - 72 * H), recheck(1, "school-1", "li", T - H, True, T),
               *notice(2, "school-1", "li", later, now - 24 * H)]
    li = row(run(entries, now=now), "li")
    assert (li["notices_issued"], li["notices_due"], li["rectified_on_time"], li["rectified_on_time_share"]) \
        == (2, 1, 1, 1.0)  # notice 2 is no failure while its deadline is ahead
    li = row(run(entries, now=later + H), "li")
    assert (li["notices_due"], li["rectified_on_time"], li["rectified_on_time_share"]) == (2, 1, 0.5)


def test_a_period_that_has_not_started_is_refused() -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    entries = notice(1, "school-1", "li", datetime(2026, 12, 3, 2, tzinfo=UTC), now - H)
    with pytest.raises(ValueError, match="not started"):
        run(entries, DEC, now=now)
    assert row(run(entries, DEC, now=datetime(2026, 12, 4, tzinfo=UTC)), "li")["notices_due"] == 1


def test_reassignment_between_officers() -> None:
    # li issues the notice; wang does the recheck: the notice's outcome is li's, the recheck wang's
    entries = [*notice(1, "school-1", "li", T, T - 72 * H), recheck(1, "school-1", "wang", T - H, True, T)]
    r = run(entries)
    li, wang = row(r, "li"), row(r, "wang")
    assert (li["notices_issued"], li["notices_due"], li["rectified_on_time"], li["rechecks_done"]) == (1, 1, 1, 0)
    assert (wang["notices_issued"], wang["notices_due"], wang["rechecks_done"], wang["rechecks_on_time"]) \
        == (0, 0, 1, 1)
    assert wang["rectified_on_time_share"] is None  # no notice of wang's was due: no data, not a failure


def test_withdrawn_cases_are_not_found_hazards() -> None:
    entries = [E("hazard.created", "li", T, {"unit_id": "school-1", "source": "patrol", "category": "other"},
                 hazard_id=1),
               E("hazard.closed", "li", T + H, {"unit_id": "school-1", "outcome": "withdrawn"}, hazard_id=1),
               E("hazard.created", "li", T, {"unit_id": "school-1", "source": "patrol", "category": "other"},
                 hazard_id=2)]
    r = run(entries)
    assert row(r, "li")["hazards_found"] == 1 and r["headline"]["hazards_found"] == 1
    assert unit(r, "school-1")["hazards"] == 1 and r["hazards_by_category"] == {"other": 1}


def test_escalations_across_a_period_boundary_count_with_their_incident() -> None:
    created = datetime(2026, 11, 30, 15, 59, 30, tzinfo=UTC)  # 30 Nov 23:59:30 China
    entries = incident(1, "school-1", created, ack=("li", 40), escalations=(35,))  # both in December (China)
    nov, dec = run(entries), run(entries, DEC)
    assert (row(nov, "li")["alarms_handled"], row(nov, "li")["escalations"], nov["station"]["escalations"]) == (1, 1, 1)
    assert dec["officers"] == [] and (dec["station"]["alarms_handled"], dec["station"]["escalations"]) == (0, 0)


LABELS = {"officers": {"officer", "rank"}, "units": {"unit_id", "name"}}


def test_docs_kpi_table_names_exactly_what_the_code_computes() -> None:
    import re
    from pathlib import Path

    from dispatch.kpi_facts import KPI_DEFINITIONS_VERSION

    text = (Path(__file__).resolve().parents[2] / "docs" / "kpi.md").read_text(encoding="utf-8")
    assert f"**Definitions version: {KPI_DEFINITIONS_VERSION}**" in text
    documented: dict[str, set[str]] = {"officer": set(), "station": set(), "unit": set(), "headline": set()}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[a-z0-9_]+", cells[0]) and cells[0] != "name":
            for scope in cells[1].split(","):
                documented[scope.strip()].add(cells[0])
    r = run([*notice(1, "school-1", "li", T, T - 72 * H)])
    computed = {"officer": set(r["officers"][0]) - LABELS["officers"], "station": set(r["station"]),
                "unit": set(r["units"][0]) - LABELS["units"], "headline": set(r["headline"])}
    assert documented == computed
    assert r["definitions"] == KPI_DEFINITIONS_VERSION
    # the volume term's columns and metrics: each metric a count KPI of officer and station rows, as documented
    from dispatch.kpi_targets import METRICS

    assert {"quality_score", "volume", "volume_targets", "target_note", "score"} <= documented["officer"]
    assert {"quality_score", "volume", "volume_targets", "target_note", "score"} <= documented["station"]
    listed = re.search(r"^Volume metrics: (.*)\.$", text, re.M)
    assert listed is not None and re.findall(r"`([a-z_]+)`", listed[1]) == list(METRICS)
    assert set(METRICS) <= documented["officer"] & documented["station"]
    assert "volume_months" in r and "`volume_months`" in text


async def test_api_refuses_a_period_that_has_not_started(sqlite_url: str) -> None:
    from dispatch.kpi_facts import KPI_DEFINITIONS_VERSION
    from tests.hazards.conftest import config, hazard_app
    from tests.support import Api, StepClock

    clock = StepClock(datetime(2026, 11, 15, 2, tzinfo=UTC))  # 15 Nov 2026 10:00 China
    async with hazard_app(config(sqlite_url), clock=clock) as running:
        api = Api(running.url)
        await api.login("assessor", "assessor-pw")
        try:
            for path in ("/api/kpi?period=2026-12", "/api/kpi.csv?period=2026-12", "/api/kpi?period=2027"):
                status, body = await api.request("GET", path)
                assert status == 400 and "not started" in body["error"], (path, body)
            status, body = await api.request("GET", "/api/kpi?period=2026-11")
            assert status == 200 and body["definitions"] == KPI_DEFINITIONS_VERSION
        finally:
            await api.close()
