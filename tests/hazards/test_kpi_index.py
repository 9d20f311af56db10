"""The KPI index follows the real record in the database and answers exactly what a full pass over it gives."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from config.hazards import HazardsConfig
from dispatch import kpi
from dispatch.actor import Actor
from dispatch.db import Database
from dispatch.events import EventBus
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


def generated_record(seed: int, incidents: int = 150) -> list[E]:
    """A varied record: merged alarms, late and missing acknowledgements, re-issued notices, entries out of order."""
    import random
    from datetime import timedelta

    r = random.Random(seed)
    out: list[E] = []
    base = START - timedelta(days=20)
    for iid in range(1, incidents + 1):
        t = base + timedelta(seconds=r.uniform(0, 60 * 86400))
        unit = r.choice(["school-1", "hotel-1", "u3"])
        out += [E("alarm.received", "btn", t, {}, iid), E("incident.created", "system", t, {"unit_id": unit}, iid)]
        out += [E("alarm.received", "btn", t + timedelta(seconds=r.uniform(-5, 90)), {}, iid)
                for _ in range(r.randint(0, 2))]
        if r.random() < 0.8:
            who = r.choice(["li", "wang"])
            out.append(E("incident.acknowledged", who, t + timedelta(seconds=r.uniform(1, 80)), {}, iid))
            if r.random() < 0.5:
                out.append(E("dispatch.created", who, t + timedelta(seconds=r.uniform(5, 150)), {}, iid))
            if r.random() < 0.7:
                out.append(E("incident.closed", who, t + timedelta(seconds=r.uniform(30, 900)),
                             {"outcome": r.choice(["resolved", "false_alarm"])}, iid))
        if r.random() < 0.2:
            out.append(E("device.offline", "system", t, {"unit_id": unit}))
        if r.random() < 0.15:
            hid = iid
            dl = t + timedelta(days=r.uniform(1, 15))
            out += [E("hazard.created", r.choice(["li", "detector"]), t, {"unit_id": unit, "category": "c",
                                                                          "source": r.choice(["patrol", "detection"])},
                      hazard_id=hid),
                    E("hazard.notice_issued", "li", t, {"unit_id": unit, "deadline": dl.isoformat()}, hazard_id=hid),
                    E("hazard.rechecked", "wang", dl + timedelta(hours=r.uniform(-20, 80)),
                      {"unit_id": unit, "rectified": r.random() < 0.6, "deadline": dl.isoformat()}, hazard_id=hid)]
    return out


def test_folding_step_by_step_gives_what_one_pass_gives() -> None:
    """Evaluating between additions (columns rewritten, caches kept) never drifts from a fresh fold."""
    from dispatch.kpi_facts import KpiFacts

    for seed in range(3):
        entries = generated_record(seed)
        facts = KpiFacts()
        for i, e in enumerate(entries):
            facts.add_entry(e)
            if i % 97 == 0:
                facts.evaluate(START, END, HazardsConfig(), UNITS)
        october, december = kpi.parse_period("2026-10"), kpi.parse_period("2026-12")
        for start, end in ((START, END), (october.start, END), (START, december.end)):
            assert same(facts.evaluate(start, end, HazardsConfig(), UNITS),
                        kpi.compute(entries, start, end, HazardsConfig(), UNITS))
