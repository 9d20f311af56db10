"""GET /api/kpi latency against a record of 100,000 and 1,000,000 entries.

    .venv/bin/python bench/kpi.py                      # 100k and 1M entries, SQLite
    .venv/bin/python bench/kpi.py --entries 100000 --db-url postgresql+asyncpg://postgres@127.0.0.1:5432/EMPTY_DB

For each size: a fresh database filled with a realistic hash-chained record (bench/record_data.py: incidents
with alarms, acknowledgements, dispatches, closes; device faults; hazards with notices and rechecks), every
entry inside the current month — the worst case for the default GET /api/kpi, which answers this month —
then `firelink run` as a subprocess (real Mosquitto from deploy/mosquitto/firelink.conf, 504 key units) and an
assessor's session on the console:

  first      from the core answering /healthz to the first 200 of GET /api/kpi: until the background fold of the
             record that starts with the core is nearly done, requests get 503 + Retry-After (counted)
  warm       --repeat sequential GET /api/kpi (p50, max)
  new rows   a GET /api/kpi right after 5,000 more entries were committed (it folds them first)
  year       GET /api/kpi?period=YYYY (same record; a 12-month view)
  16 at once 16 concurrent GET /api/kpi: wall time and the status codes
  core RSS   resident memory of the core after the requests
Target (issue 10): < 1 s at both sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.alarm_latency import core_config, launch_core, shut_down, start_broker, wait_healthy  # noqa: E402
from bench.record_data import OFFICERS, fill, month_of, units  # noqa: E402


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def timed_get(http: aiohttp.ClientSession, url: str) -> tuple[float, int, Any]:
    t = time.monotonic()
    async with http.get(url) as r:
        body = await r.json()
        return time.monotonic() - t, r.status, body


async def add_entries(db_url: str, n: int, start: datetime, end: datetime) -> None:
    """n more chained entries behind the existing ones, committed while the core runs (as the core would)."""
    from sqlalchemy import insert, select

    from dispatch.db import Database
    from dispatch.models import RecordEntry
    from dispatch.records import RecordChain

    db = Database(db_url)
    try:
        chain = RecordChain()
        async with db.session() as s:
            await chain.load(s)
            last = await s.scalar(select(RecordEntry.at).order_by(RecordEntry.id.desc()).limit(1))
            at = min(max(last or start, start), end)
            rows = [chain.append("alarm.received", "bench-gw", at, {"alarm_id": f"late-{i}", "kind": "smoke"},
                                 incident_id=1) for i in range(n)]
            await s.execute(insert(RecordEntry), rows)
            await s.commit()
    finally:
        await db.dispose()


async def one_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="firelink-kpi-bench-"))
    db_url = args.db_url or f"sqlite+aiosqlite:///{workdir}/firelink.db"
    start, end = month_of(datetime.now(UTC))
    t = time.monotonic()
    await fill(db_url, n, start, end, args.units)
    fill_s = time.monotonic() - t
    broker, broker_port = start_broker(workdir)
    cfg = core_config(workdir, broker_port, 0, db_url, "http://127.0.0.1:9/unused")
    cfg["units"] = units(args.units)
    cfg["users"] = [{"username": "assessor", "password": "assessor-pw", "role": "assessor"}]
    cfg["log_level"] = "INFO"
    cfg["console"]["kpi_max_age_s"] = 0  # every request computes (the default reuses an answer for 2 s)
    base = f"http://127.0.0.1:{cfg['console']['port']}"
    core, log = launch_core(workdir, cfg, None)
    out: dict[str, Any] = {"entries": n, "fill_s": fill_s}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            t_start = time.monotonic()
            await wait_healthy(http, base, core, workdir / "core.log")
            out["healthy_after_s"] = time.monotonic() - t_start
            async with http.post(base + "/api/login", json={"username": "assessor", "password": "assessor-pw"}) as r:
                assert r.status == 200, await r.text()
            t_first, refused = time.monotonic(), 0
            while True:  # right after a start the record is being folded: 503 + Retry-After until it is done
                async with http.get(base + "/api/kpi") as r:
                    body = await r.json()
                    if r.status != 503:
                        assert r.status == 200, body
                        break
                    refused += 1
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            out["first_s"], out["first_503s"] = time.monotonic() - t_first, refused
            out["incidents"] = body["headline"]["incidents"]
            out["officers"] = len(body["officers"])
            assert {o["officer"] for o in body["officers"]} <= set(OFFICERS)
            warm = [(await timed_get(http, base + "/api/kpi"))[0] for _ in range(args.repeat)]
            out["warm_p50_s"], out["warm_max_s"] = statistics.median(warm), max(warm)
            await add_entries(db_url, 5000, start, end)
            out["after_5000_new_s"], status, _ = await timed_get(http, base + "/api/kpi")
            assert status == 200, status
            year = start.astimezone(start.tzinfo).year
            out["year_s"], status, _ = await timed_get(http, base + f"/api/kpi?period={year}")
            assert status == 200, status
            t = time.monotonic()
            results = await asyncio.gather(*(timed_get(http, base + "/api/kpi") for _ in range(16)))
            out["concurrent16_wall_s"] = time.monotonic() - t
            out["concurrent16_status"] = dict(Counter(s for _, s, _ in results))
            out["concurrent16_max_s"] = max(d for d, _, _ in results)
            out["core_rss_mb"] = rss_mb(core.pid)
    finally:
        shut_down(core, log, broker, workdir, args.keep)
    return out


async def run(args: argparse.Namespace) -> int:
    rows = []
    for n in args.entries:
        print(f"filling {n:,} record entries and starting the core ...", flush=True)
        r = await one_size(n, args)
        rows.append(r)
        print(f"  {r}", flush=True)
    db = (args.db_url or "sqlite").split("+")[0].split(":")[0]
    print()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"GET /api/kpi — {db}, {args.units} units, every entry in the current month (seconds); "
          f"load average now {load} on {os.cpu_count()} CPUs")
    print(f"  {'entries':>10} {'incidents':>9} {'first':>7} {'warm p50':>9} {'warm max':>9} {'+5000 new':>9} "
          f"{'year':>7} {'16 at once':>10} {'16 max':>7} {'RSS MB':>7}")
    ok = True
    for r in rows:
        print(f"  {r['entries']:>10,} {r['incidents']:>9,} {r['first_s']:>7.3f} {r['warm_p50_s']:>9.3f} "
              f"{r['warm_max_s']:>9.3f} {r['after_5000_new_s']:>9.3f} {r['year_s']:>7.3f} "
              f"{r['concurrent16_wall_s']:>10.3f} {r['concurrent16_max_s']:>7.3f} {r['core_rss_mb']:>7.0f}"
              f"   16 at once: {r['concurrent16_status']}; 503s before the first answer: {r['first_503s']}")
        ok = ok and r["warm_max_s"] < 1 and r["after_5000_new_s"] < 1
    print(f"  target < 1 s (warm and after new entries) at every size: {'MET' if ok else 'MISSED'}")
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, nargs="+", default=[100_000, 1_000_000], help="record sizes")
    p.add_argument("--units", type=int, default=504, help="key units (default 504, as in issue 10)")
    p.add_argument("--repeat", type=int, default=10, help="sequential warm requests (default 10)")
    p.add_argument("--db-url", help="an EMPTY database to use instead of SQLite in a temp dir (one size per run)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (core.log, database)")
    return asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
