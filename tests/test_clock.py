"""The app runs on its injected clock, not the calendar: a month's last evening and New Year's Eve.

The server answers "now" from the clock it was given (pages compute "today" and default periods from it), and a KPI
request without a period means the current month *of that clock* in the station's time zone (UTC+8).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.hazards.conftest import config, hazard_app
from tests.support import Api, RunningClock

# UTC instants five minutes before local (UTC+8) midnight at a month end and at the year end.
EDGES = [
    (datetime(2026, 11, 30, 15, 55, 0, tzinfo=UTC), "2026年11月", "2026年12月"),
    (datetime(2026, 12, 31, 15, 55, 0, tzinfo=UTC), "2026年12月", "2027年1月"),
    (datetime(2027, 2, 28, 15, 55, 0, tzinfo=UTC), "2027年2月", "2027年3月"),
]


@pytest.mark.parametrize(("start", "before", "after"), EDGES, ids=["30-nov", "31-dec", "28-feb"])
async def test_now_and_current_period_follow_the_injected_clock(sqlite_url: str, start: datetime, before: str,
                                                                after: str) -> None:
    clock = RunningClock(start)
    async with hazard_app(config(sqlite_url), clock=clock) as app:
        api = Api(app.url)
        try:
            await api.login("assessor", "assessor-pw")
            me = await api.get("/api/me")
            said = datetime.fromisoformat(me["now"])
            assert abs(said - clock()) < timedelta(seconds=5)
            assert (await api.get("/api/kpi"))["period"] == before
            clock.offset = timedelta(minutes=5)  # past local midnight
            assert (await api.get("/api/kpi"))["period"] == after
        finally:
            await api.close()
