"""A realistic hash-chained record of N entries for benchmarks (bench/kpi.py, bench/alarm_under_load.py).

Per incident, as the core writes them: alarms (some in bursts), incident.created, acknowledgement (sometimes after
an escalation), for about a third a dispatch with its sent/delivered/acknowledged/on-scene steps, messages, the
close (mostly false alarms); between incidents device offline/online pairs, camera faults, logins; and every
~40 incidents a hazard with its notice, proof, recheck and sometimes a penalty. About 7.8 entries per incident.
All entries fall inside [start, end); the chain is valid (`firelink audit verify` passes).

Written straight through the database driver (sqlite3 / asyncpg COPY) after `Database.upgrade()`, ~100,000
entries per few seconds.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatch.db import Database
from dispatch.records import GENESIS, entry_hash

OFFICERS = [f"officer{i:02d}" for i in range(20)]
Row = tuple[int | None, int | None, str, str, datetime, dict[str, Any]]


def units(n: int) -> list[dict[str, Any]]:
    """Key units for the core's config (ids match the generated record)."""
    return [{"id": f"u{i:05d}", "name": f"重点单位{i}", "category": "学校", "address": f"城北路{i}号",
             "contact_name": "值班员", "contact_phone": f"138{i:08d}"} for i in range(n)]


def entries(n: int, start: datetime, end: datetime, n_units: int, seed: int = 1) -> Iterator[Row]:
    r = random.Random(seed)
    incidents = max(1, int(n / 7.8))
    step = (end - start) / incidents
    made = 0
    iid = hid = 0

    def s(t: datetime, lo: float, hi: float) -> datetime:
        return t + timedelta(seconds=r.uniform(lo, hi))

    while made < n:
        iid += 1
        t0 = start + step * (iid - 1) + timedelta(seconds=r.uniform(0, step.total_seconds()))
        if t0 >= end:
            t0 = end - timedelta(seconds=1)
        unit = f"u{r.randrange(n_units):05d}"
        device = f"{unit}-btn1"
        kind = r.choice(["one_key", "smoke", "heat", "gas"])
        out: list[Row] = [
            (iid, None, "alarm.received", device, t0, {"alarm_id": f"a{iid}-0", "kind": kind, "source": "mqtt",
                                                       "device_id": device}),
            (iid, None, "incident.created", "system", t0, {"unit_id": unit, "kind": kind}),
        ]
        if r.random() < 0.2:
            out += [(iid, None, "alarm.received", device, s(t0, 1, 120),
                     {"alarm_id": f"a{iid}-{k}", "kind": kind, "source": "mqtt", "device_id": device})
                    for k in range(1, r.randint(2, 6))]
        officer = r.choice(OFFICERS)
        ack = s(t0, 3, 60) if r.random() < 0.92 else None
        if ack is None or ((ack - t0).total_seconds() > 30 and r.random() < 0.7):
            out.append((iid, None, "incident.escalated", "system", t0 + timedelta(seconds=30),
                        {"level": 1, "unacknowledged_s": 30.0}))
        if ack is not None:
            out.append((iid, None, "incident.acknowledged", officer, ack, {}))
            if r.random() < 0.35:
                d = s(ack, 2, 90)
                data = {"agency": "fire", "dispatch_id": iid}
                out += [(iid, None, "dispatch.created", officer, d, data),
                        (iid, None, "dispatch.sent", "system", s(d, 0.01, 0.2), {**data, "channel": "webhook"}),
                        (iid, None, "dispatch.delivered", "system", s(d, 0.2, 0.5), {**data, "channel": "webhook",
                                                                                      "attempts": 1}),
                        (iid, None, "dispatch.acknowledged", "brigade", s(d, 10, 60), {**data, "via": "http"})]
                if r.random() < 0.7:
                    arrive = s(d, 300, 900)
                    out += [(iid, None, "dispatch.on_scene", "brigade", arrive, {**data, "via": "http"}),
                            (iid, None, "incident.on_scene", "brigade", arrive, {"agency": "fire"})]
            if r.random() < 0.15:
                out += [(iid, None, "incident.message", officer, s(ack, 5, 120),
                         {"text": "请立即组织人员疏散", "message_id": iid * 10 + k}) for k in range(r.randint(1, 2))]
            if r.random() < 0.9:
                outcome = "false_alarm" if r.random() < 0.65 else "resolved"
                out.append((iid, None, "incident.closed", officer, s(ack, 60, 1800), {"outcome": outcome, "note": ""}))
        if r.random() < 0.5:
            off = s(t0, -600, 600)
            dev = {"device_id": f"{unit}-smoke1", "unit_id": unit}
            out += [(None, None, "device.offline", "system", off, {**dev, "detail": "no heartbeat for 180 s"}),
                    (None, None, "device.online", "system", s(off, 60, 600), {**dev, "detail": ""})]
        if r.random() < 0.05:
            out.append((None, None, "camera.fault", "camera", s(t0, -600, 600),
                        {"unit_id": unit, "camera_id": f"{unit}-cam1", "detail": "picture too dark"}))
        if r.random() < 0.02:
            out.append((None, None, "user.login", officer, s(t0, -60, 0), {"remote": "10.0.0.8"}))
        if r.random() < 1 / 40:
            hid += 1
            found = s(t0, 0, 3600)
            src = r.choice(["patrol", "inspection", "detection"])
            who = "detector" if src == "detection" else officer
            cat = r.choice(["blocked_exit", "missing_extinguisher", "locked_exit", "wiring"])
            out.append((None, hid, "hazard.created", who, found, {"unit_id": unit, "category": cat, "source": src}))
            if r.random() < 0.7:
                deadline = found + timedelta(days=r.randint(1, 7))
                dl = {"unit_id": unit, "deadline": deadline.isoformat()}
                out.append((None, hid, "hazard.notice_issued", officer, s(found, 60, 3600), dl))
                if r.random() < 0.6:
                    out.append((None, hid, "hazard.proof_submitted", unit, deadline - timedelta(hours=r.randint(1, 30)),
                                {"unit_id": unit}))
                out.append((None, hid, "hazard.rechecked", officer, deadline + timedelta(hours=r.randint(-20, 60)),
                            {**dl, "rectified": r.random() < 0.7}))
                if r.random() < 0.1:
                    out.append((None, hid, "penalty.confirmed", officer, deadline + timedelta(hours=30),
                                {"unit_id": unit, "penalty_id": hid}))
        for row in out:
            if made >= n:
                return
            if start <= row[4] < end:
                made += 1
                yield row


def chained(rows: Iterator[Row]) -> Iterator[tuple[int, int | None, int | None, str, str, datetime, str, str, str]]:
    prev = GENESIS
    for i, (incident_id, hazard_id, action, actor, at, data) in enumerate(rows, 1):
        digest = entry_hash(prev, incident_id, hazard_id, action, actor, at, data)
        yield (i, incident_id, hazard_id, action, actor, at, json.dumps(data, ensure_ascii=False), prev, digest)
        prev = digest


async def fill(db_url: str, n: int, start: datetime, end: datetime, n_units: int, batch: int = 20_000) -> None:
    """Creates the schema and writes n record entries (the records table must be empty)."""
    db = Database(db_url)
    await db.upgrade()
    await db.dispose()
    rows = chained(entries(n, start, end, n_units))
    if db_url.startswith("sqlite"):
        path = db_url.split("///", 1)[1]
        conn = sqlite3.connect(path)
        cols = "id, incident_id, hazard_id, action, actor, at, data, prev_hash, hash"
        while chunk := [(*r[:5], r[5].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"), *r[6:])
                        for _, r in zip(range(batch), rows, strict=False)]:
            conn.executemany(f"INSERT INTO records ({cols}) VALUES (?,?,?,?,?,?,?,?,?)", chunk)
        conn.commit()
        conn.close()
        return
    import asyncpg

    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        while chunk := [r for _, r in zip(range(batch), rows, strict=False)]:
            await conn.copy_records_to_table("records", records=chunk, columns=[
                "id", "incident_id", "hazard_id", "action", "actor", "at", "data", "prev_hash", "hash"])
        await conn.execute("SELECT setval(pg_get_serial_sequence('records', 'id'), (SELECT max(id) FROM records))")
    finally:
        await conn.close()


def month_of(now: datetime) -> tuple[datetime, datetime]:
    """This month in China time (what GET /api/kpi answers by default)."""
    from dispatch.kpi import parse_period

    local = now.astimezone(parse_period("2026-01").start.tzinfo)
    p = parse_period(f"{local.year}-{local.month:02d}")
    return p.start, p.end


if __name__ == "__main__":  # quick look: python bench/record_data.py 100000
    import sys
    from collections import Counter

    start, end = month_of(datetime.now(UTC))
    c = Counter(row[2] for row in entries(int(sys.argv[1]), start, end, 504))
    print(sum(c.values()), c.most_common())
