"""Database side of cluster mode (issue 16): alarms/s committed by 1 vs 2 core processes sharing one PostgreSQL.

    .venv/bin/python bench/cluster_db.py                       # 20,000 alarms over 500 units, batches of 50
    .venv/bin/python bench/cluster_db.py --alarms 50000 --batch 100 --overlap 0.2

Each run starts on a fresh database: a single box (cluster off, 1 process), then cluster mode with 1 and with 2
core processes, each a real core (writer, record chain with its signed head, intake with the units' advisory
locks, events stored for the other nodes). The processes ingest their share of the alarms as fast as the database
takes them; with --overlap a fraction of the alarms goes to both processes (a redelivery after a failover). Prints
alarms/s per run and what was stored: alarms (each once), units with more than one incident (double_open), and
`firelink audit verify`'s verdict on the chains. No broker and no network hop: the core's database path only.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "bench-head-key"


def config(url: str, cluster: bool, node: str, units: int) -> Any:
    from config.schema import FirelinkConfig

    return FirelinkConfig.model_validate({
        "database": {"url": url}, "station": {"id": "st-bench", "name": "基准测试派出所"},
        "cluster": {"enabled": cluster, "node_id": node, "head_key": KEY},
        "escalation": {"ack_timeout_s": 3600, "merge_window_s": 3600},
        "units": [{"id": f"u{i:04d}", "name": f"单位{i}", "category": "学校", "address": "路1号"}
                  for i in range(units)]})


def worker(url: str, cluster: bool, node: str, units: int, ids: list[str], batch: int, ready: Any,
           go: MpEvent, done: Any) -> None:
    async def run() -> None:
        from dispatch.cluster import cluster_writing, startup_turn
        from dispatch.db import Database
        from dispatch.events import EventBus
        from dispatch.incidents import Incidents
        from dispatch.writer import Writer
        from ingest.contract import AlarmIn

        cfg = config(url, cluster, node, units)
        db = Database(url)
        async with startup_turn(db, cfg):
            service = await Incidents.start(Writer(db, EventBus(), cluster_writing(cfg)), cfg)
        ready.put(node)
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        t0 = time.perf_counter()
        outcomes: dict[str, int] = {}
        for start in range(0, len(ids), batch):
            now = datetime.now(UTC)
            chunk = [AlarmIn(a, f"u{int(a[3:]) % units:04d}", "one_key", "mqtt", now) for a in ids[start:start + batch]]
            for o in await service.intake.ingest(chunk):
                outcomes[o] = outcomes.get(o, 0) + 1
        done.put((node, time.perf_counter() - t0, outcomes))
        await db.dispose()

    asyncio.run(run())


async def fresh_db(admin: str) -> str:
    import asyncpg

    name = f"flbench_cluster_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    from dispatch.db import Database

    url = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    db = Database(url)
    await db.upgrade()
    await db.dispose()
    return url


async def drop_db(admin: str, url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    await conn.close()


async def stored(url: str, cluster: bool) -> tuple[int, int, str]:
    from sqlalchemy import func, select

    from dispatch.db import Database
    from dispatch.models import Alarm, ChainHead, Incident, RecordEntry
    from dispatch.records import Head, verify_chains

    db = Database(url)
    try:
        async with db.session() as s:
            alarms = await s.scalar(select(func.count()).select_from(Alarm)) or 0
            per_unit = (await s.execute(select(Incident.unit_id, func.count()).group_by(Incident.unit_id))).all()
            rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
            heads = [Head(h.chain, h.seq, h.hash, h.signature) for h in (await s.scalars(select(ChainHead))).all()]
    finally:
        await db.dispose()
    counts, broken = verify_chains(rows, heads, KEY.encode() if cluster else None)
    verdict = "intact" if broken is None else f"BROKEN: {broken}"
    chains = ", ".join(f"{k}={v}" for k, v in counts.items())
    return alarms, sum(1 for _, n in per_unit if n > 1), f"{verdict} ({chains})"


def one_run(admin: str, label: str, cluster: bool, procs: int, args: argparse.Namespace) -> None:
    url = asyncio.run(fresh_db(admin))
    try:
        ids = [f"al-{i:07d}" for i in range(args.alarms)]
        shares = [ids[i::procs] for i in range(procs)]
        extra = int(args.alarms * args.overlap) if procs > 1 else 0
        if extra:  # the first `extra` alarms of each share go to the next process too
            shares = [s + shares[(i - 1) % procs][:extra // procs] for i, s in enumerate(shares)]
        ctx = mp.get_context("spawn")
        ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        ps = [ctx.Process(target=worker, args=(url, cluster, f"bench-{i}", args.units, share, args.batch, ready,
                                               go, done)) for i, share in enumerate(shares)]
        for p in ps:
            p.start()
        for _ in ps:
            ready.get(timeout=120)
        t0 = time.perf_counter()
        go.set()
        results = [done.get(timeout=1800) for _ in ps]
        wall = time.perf_counter() - t0
        for p in ps:
            p.join()
        outcomes: dict[str, int] = {}
        for _, _, o in results:
            for k, v in o.items():
                outcomes[k] = outcomes.get(k, 0) + v
        alarms, double_open, verdict = asyncio.run(stored(url, cluster))
        sent = sum(len(s) for s in shares)
        print(f"{label:<22} {sent:>7} alarms sent in {wall:6.2f} s = {sent / wall:8.0f} alarms/s  "
              f"stored={alarms} lost={args.alarms - alarms} duplicates_refused={outcomes.get('duplicate', 0)} "
              f"double_open={double_open}  chains {verdict}", flush=True)
    finally:
        asyncio.run(drop_db(admin, url))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alarms", type=int, default=20_000)
    p.add_argument("--units", type=int, default=500)
    p.add_argument("--batch", type=int, default=50, help="alarms per intake transaction (the MQTT link's batch)")
    p.add_argument("--overlap", type=float, default=0.1, help="fraction also delivered to the other core")
    p.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="a PostgreSQL database to create the throw-away bench databases from")
    args = p.parse_args()
    print(f"{mp.cpu_count()} CPUs; {args.alarms:,} alarms over {args.units} units, batches of {args.batch}")
    one_run(args.admin_dsn, "single box (1 core)", False, 1, args)
    one_run(args.admin_dsn, "cluster, 1 core", True, 1, args)
    one_run(args.admin_dsn, "cluster, 2 cores", True, 2, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
