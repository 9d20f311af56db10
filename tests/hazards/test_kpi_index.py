"""The KPI index follows the real record in the database and answers exactly what a full pass over it gives."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from config.hazards import HazardsConfig
from dispatch import kpi
from dispatch.db import Database
from dispatch.events import EventBus
from dispatch.inputs import Actor
from dispatch.kpi_index import KpiIndex
from dispatch.models import RecordEntry
from dispatch.writer import Writer
from tests.hazards.test_kpi import END, START, E, record

UNITS = {"school-1": "第一小学", "hotel-1": "环江宾馆"}


async def write(writer: Writer, entries: list[E]) -> None:
    """Through the single writer, as the core records them."""
    async with writer.tx() as tx:
        for e in entries:
            writer.record(tx, e.action, Actor(e.actor, "system"), e.at, e.data, incident_id=e.incident_id,
                          hazard_id=e.hazard_id)


async def full_pass(db: Database, start: Any, end: Any) -> dict[str, Any]:
    async with db.session() as s:
        entries = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
    return kpi.compute(entries, start, end, HazardsConfig(), UNITS)


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.dumps({**a, "period": None}, sort_keys=True) == json.dumps({**b, "period": None}, sort_keys=True)


async def test_index_folds_new_entries_and_matches_a_full_pass(db_url: str) -> None:
    db = Database(db_url)
    await db.upgrade()
    writer = Writer(db, EventBus())
    await writer.load()
    index = KpiIndex(db, chunk=4, max_age_s=0)  # small reads: several chunks per catch-up; no reuse
    try:
        entries = record()
        await write(writer, entries[:10])  # incidents 1 and 2
        assert await index.catch_up() == 10
        first = (await index.kpis(START, END, "2026年11月", HazardsConfig(), UNITS)).result
        assert same(first, await full_pass(db, START, END))
        assert first["headline"]["incidents"] == 2

        await write(writer, entries[10:])
        result = (await index.kpis(START, END, "2026年11月", HazardsConfig(), UNITS)).result  # catches up itself
        assert index.watermark == len(entries)
        assert same(result, await full_pass(db, START, END))
        # the hand-computed figures of test_kpi, now read back from the database
        assert result["station"]["alarms_handled"] == 4
        assert (result["station"]["ack_median_s"], result["station"]["ack_p90_s"]) == (10.0, 31.6)
        assert result["headline"] == {"units_inspected": 2, "hazards_found": 3, "notices_issued": 2,
                                      "penalty_cases": 1, "fires_handled": 2, "alarms": 5, "incidents": 4,
                                      "false_alarms": 1}
        assert [(o["officer"], o["score"], o["rank"]) for o in result["officers"]] == [("li", 88.9, 1),
                                                                                      ("wang", 33.9, 2)]
        assert await index.catch_up() == 0
    finally:
        index.close()
        await db.dispose()
