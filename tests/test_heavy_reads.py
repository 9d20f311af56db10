"""Heavy reads (KPIs, PDFs, exports) never hold up the alarm path, and are bounded: saturated → 503 + Retry-After."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from console.appkeys import HEAVY, KPI_INDEX, WRITER
from console.heavy import Busy, HeavyWork
from dispatch.actor import SYSTEM
from ingest.contract import utcnow
from tests.support import Api, Broker, base_config, publish, running_app, ws_client


async def until(cond: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Waits for state inside the app that has no event of its own (a request reaching the KPI thread)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_limiter_runs_some_queues_some_and_refuses_the_rest() -> None:
    heavy = HeavyWork(workers=1, queue=1, retry_after_s=7)
    release, entered = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with heavy.slot("test"):
            entered.set()
            await release.wait()

    running = asyncio.create_task(hold())
    await entered.wait()
    queued = asyncio.create_task(hold())
    await asyncio.sleep(0)  # one turn of the loop: the second request takes its place in the queue
    assert (heavy.running, heavy.waiting) == (1, 1)
    with pytest.raises(Busy) as refused:
        async with heavy.slot("test"):
            raise AssertionError("a third request must not run")
    assert refused.value.retry_after_s == 7 and heavy.refused == 1
    release.set()
    await asyncio.gather(running, queued)
    async with heavy.slot("test"):  # free again
        assert heavy.running == 1
    heavy.close()


async def test_saturated_heavy_reads_answer_503_with_retry_after(sqlite_url: str) -> None:
    cfg = base_config(sqlite_url, None, console={"heavy_workers": 1, "heavy_queue": 0})
    async with running_app(cfg, mqtt=False) as app:
        assessor = Api(app.url)
        await assessor.login("assessor", "assessor-pw")
        heavy = app.app[HEAVY]
        async with heavy.slot("someone else's report"):
            for path in ("/api/kpi", "/api/kpi.csv", "/api/kpi/report.pdf"):
                async with assessor.http.get(app.url + path) as resp:
                    assert resp.status == 503, path
                    assert resp.headers["Retry-After"] == str(heavy.retry_after_s)
                    assert "busy" in (await resp.json())["error"]
        assert heavy.refused == 3
        kpis = await assessor.get("/api/kpi")  # the turn is free again
        assert kpis["headline"]["incidents"] == 0

        # far behind the record (as after a restart on a big one): 503 while it catches up in the background
        index = app.app[KPI_INDEX]
        index.max_backlog = 0
        await app.app[WRITER].note("test.marker", SYSTEM, utcnow())
        async with assessor.http.get(app.url + "/api/kpi?period=2026-01") as resp:
            assert resp.status == 503 and int(resp.headers["Retry-After"]) >= 1
            assert "record entries to go" in (await resp.json())["error"]
        await index.follow()  # the catch-up that request started
        assert await index.backlog() == 0
        assert (await assessor.get("/api/kpi?period=2026-01"))["period"] == "2026年1月"
        await assessor.close()


async def test_an_alarm_is_committed_and_pushed_while_16_kpi_requests_run(broker: Broker, db_url: str) -> None:
    cfg = base_config(db_url, broker)
    async with running_app(cfg) as app:
        officer, assessor = Api(app.url), Api(app.url)
        await officer.login("officer", "officer-pw")
        await assessor.login("assessor", "assessor-pw")
        index = app.app[KPI_INDEX]
        gate = threading.Event()
        index._thread.submit(gate.wait)  # the KPI thread is busy (as with a huge record) until the test says
        try:
            async with ws_client(officer) as ws:
                kpi_requests = [asyncio.create_task(assessor.request("GET", "/api/kpi")) for _ in range(16)]
                await until(lambda: bool(index._inflight), "the KPI computation to start")
                alarm_id = f"kpi-{uuid.uuid4().hex}"
                await publish(broker, f"{cfg.mqtt.topic_prefix}/units/school-1/alarm",
                              {"alarm_id": alarm_id, "kind": "one_key"})
                pushed = await ws.next_matching(lambda e: e["type"] == "alarm.received"
                                                and e["alarm"]["alarm_id"] == alarm_id)
                assert not any(t.done() for t in kpi_requests), "the alarm waited for the KPIs"
                detail = await officer.get(f"/api/incidents/{pushed['alarm']['incident_id']}")
                assert [a["alarm_id"] for a in detail["alarms"]] == [alarm_id]  # committed, not only pushed
        finally:
            gate.set()
        answers = await asyncio.gather(*kpi_requests)
        assert [status for status, _ in answers] == [200] * 16  # identical requests share one computation
        assert all(body == answers[0][1] for _, body in answers)
        await officer.close()
        await assessor.close()
