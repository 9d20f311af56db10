"""Triage response time in the KPIs (docs/kpi.md: complaints_triaged, triage_median_s, triage_p90_s,
complaints_received), against hand-computed values: from a hand-made record, and through the API with the app's
clock injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from config.hazards import HazardsConfig
from dispatch import kpi
from tests.complaints.conftest import config, login
from tests.hazards.test_kpi import E
from tests.support import Api, StepClock, running_app

NOV = kpi.parse_period("2026-11")
T = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)  # 10 Nov 10:00 China
M = timedelta(minutes=1)


def received(cid: int, at: datetime, station: str = "st-test") -> E:
    return E("complaint.received", "public", at, {"complaint_id": cid, "station_id": station, "source": "public"})


def triaged(cid: int, by: str, at: datetime, accepted: bool = True) -> E:
    return E("complaint.accepted" if accepted else "complaint.rejected", by, at,
             {"complaint_id": cid, "station_id": "st-test"})


def row(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in result["officers"] if r["officer"] == name)


def test_triage_times_by_officer_and_station_hand_computed() -> None:
    entries = [
        received(1, T), triaged(1, "li", T + 10 * M),  # 600 s
        received(2, T + 60 * M), triaged(2, "li", T + 90 * M, accepted=False),  # 1800 s
        received(3, T + 120 * M), triaged(3, "wang", T + 240 * M),  # 7200 s
        received(4, T + 300 * M),  # not triaged yet: received only
        received(5, datetime(2026, 11, 30, 15, 50, tzinfo=UTC)),  # 30 Nov 23:50 China
        triaged(5, "wang", datetime(2026, 11, 30, 16, 20, tzinfo=UTC)),  # 1 Dec 00:20 China: December's
        received(6, datetime(2026, 10, 31, 15, 0, tzinfo=UTC)),  # 31 Oct 23:00 China: October's
        triaged(6, "li", datetime(2026, 10, 31, 16, 30, tzinfo=UTC)),  # 1 Nov 00:30 China: November's, 5400 s
    ]
    r = kpi.compute(entries, NOV.start, NOV.end, HazardsConfig(), now=datetime(2026, 12, 20, tzinfo=UTC))
    li, wang = row(r, "li"), row(r, "wang")
    # li: spans 600, 1800, 5400 → median 1800; p90 = 1800 + 0.8·(5400 − 1800) = 4680
    assert (li["complaints_triaged"], li["triage_median_s"], li["triage_p90_s"]) == (3, 1800.0, 4680.0)
    # wang: 7200 alone (the December triage is not November's)
    assert (wang["complaints_triaged"], wang["triage_median_s"], wang["triage_p90_s"]) == (1, 7200.0, 7200.0)
    # station: 600, 1800, 5400, 7200 → median (1800 + 5400)/2 = 3600; p90 at rank 2.7: 5400 + 0.7·1800 = 6660
    st = r["station"]
    assert (st["complaints_triaged"], st["triage_median_s"], st["triage_p90_s"]) == (4, 3600.0, 6660.0)
    # received in November (China time): 1, 2, 3, 4, 5 (not 6, received on 31 Oct)
    assert st["complaints_received"] == 5
    december = kpi.parse_period("2026-12")
    dec = kpi.compute(entries, december.start, december.end, HazardsConfig(), now=datetime(2026, 12, 20, tzinfo=UTC))
    assert (row(dec, "wang")["complaints_triaged"], row(dec, "wang")["triage_median_s"]) == (1, 1800.0)
    assert dec["station"]["complaints_received"] == 0
    header = next(line for line in kpi.to_csv({**r, "period": "2026-11"}).splitlines() if line.startswith("section"))
    assert header.endswith("complaints_triaged,triage_median_s,triage_p90_s")


async def test_the_kpi_answer_counts_triage_from_the_record_with_the_apps_clock(sqlite_url: str,
                                                                               users: dict[str, Api]) -> None:
    clock = StepClock(datetime(2026, 11, 12, 1, 0, tzinfo=UTC))  # 12 Nov 09:00 China
    async with running_app(config(sqlite_url), mqtt=False, clock=clock) as app:
        async with aiohttp.ClientSession() as http:
            for text in ("小区车库堆放轮胎", "楼道电动车充电"):
                async with http.post(app.url + "/api/public/complaints", json={"description": text}) as resp:
                    assert resp.status == 201
        officer = await login(app, users, "officer")
        first, second = await officer.get("/api/complaints")
        clock.advance(90)
        await officer.post(f"/api/complaints/{first['id']}/reject", {"reason": "已核实为误报"})
        clock.advance(210)  # the second was waiting 300 s
        await officer.post(f"/api/complaints/{second['id']}/accept", {"category": "corridor_storage",
                                                                     "unit_id": "hotel-1"})
        assessor = await login(app, users, "assessor")
        r = await assessor.get("/api/kpi?period=2026-11")
        me = row(r, "officer")  # spans 90 s and 300 s: median 195; p90 = 90 + 0.9·210 = 279
        assert (me["complaints_triaged"], me["triage_median_s"], me["triage_p90_s"]) == (2, 195.0, 279.0)
        assert (r["station"]["complaints_triaged"], r["station"]["complaints_received"]) == (2, 2)
        assert r["definitions"] == "4"
