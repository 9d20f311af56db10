"""Unit registry at county/city scale: 10,000 units imported over HTTP, then search latency through the API.

    .venv/bin/python bench/registry.py                       # SQLite and PostgreSQL (when one answers)
    .venv/bin/python bench/registry.py --backends sqlite --units 10000 --searches 400
    .venv/bin/python bench/registry.py --pg-dsn postgresql://postgres@127.0.0.1:5432/postgres

For each backend: Mosquitto (deploy/mosquitto/firelink.conf) and `firelink run` as a subprocess with a fresh
database (PostgreSQL: a throw-away database on --pg-dsn, dropped afterwards, as the tests make), a duty officer's
session, and a generated CSV of --units realistic units (Chinese names, addresses, valid credit codes, every unit type):

  import bad   the file with 3 bad rows: POST /api/units/import → 400 naming exactly those 3 rows, nothing imported
  import       the good file: POST /api/units/import → 200 {"imported": N} (one transaction, every unit recorded)
  search       --searches GET /api/units?...&limit=50 one after another over varied queries (a name word, a street,
               part of a credit code, an id, a type, a class, a station, a word with a type, deep pages, no match),
               each with its X-Total-Count: p50 / p95 / max in ms
  list all     GET /api/units without a limit (the console's overview: every unit with its devices), once
  export       GET /api/units/export?format=csv|xlsx, once each

Target (issue 14): search p95 < 100 ms at 10,000 units on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.alarm_latency import core_config, launch_core, shut_down, start_broker, wait_healthy  # noqa: E402
from config.facilities import shipped_facilities  # noqa: E402
from config.taxonomy import shipped_taxonomy  # noqa: E402
from dispatch.credit_code import ALPHABET, make  # noqa: E402
from tests.support import pg_available, pg_database  # noqa: E402

TOWNS = "思恩镇 水源镇 洛阳镇 川山镇 明伦镇 东兴镇 大才乡 下南乡 大安乡 长美乡 龙岩乡 驯乐乡".split()
STREETS = ("中山路 解放路 城北路 河滨路 人民路 建设路 新华街 文化路 东门街 西环路 环江大道 民族路 胜利街 朝阳路 "
           "和平路").split()
BRANDS = "华联 鑫源 新世纪 金港 宏达 星空 阳光 万家 百姓 聚福 惠民 永安 恒通 富民 远航 明珠 天和 康乐 如家 锦江".split()
WORDS = "网吧 宾馆 学校 商店 仓库 医院".split()
HEADER = ["id", "name", "credit_code", "address", "lat", "lon", "unit_type", "contact_name", "contact_phone",
          "safety_manager_name", "safety_manager_phone", "floors", "area_m2", "occupancy", "facilities"]


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def units_csv(n: int, seed: int = 14, bad: bool = False) -> tuple[bytes, list[dict[str, str]]]:
    """n units as CSV (and the rows); `bad`: rows 101, 5002 and n+1 (the last) are made invalid (n > 5001)."""
    rnd = random.Random(seed)
    types = [t for c in shipped_taxonomy().classes for t in c.types]
    facilities = [f.zh for f in shipped_facilities().facilities]
    rows = []
    for i in range(n):
        kind = types[i % len(types)]
        town, street = rnd.choice(TOWNS), rnd.choice(STREETS)
        code17 = "9145" + "".join(rnd.choice(ALPHABET) for _ in range(8)) + f"{i:05d}"
        rows.append({
            "id": f"r{i:05d}", "name": f"{town}{rnd.choice(BRANDS)}{kind.zh.split('/')[0]}{i}",
            "credit_code": make(code17), "address": f"环江县{town}{street}{rnd.randint(1, 400)}号",
            "lat": f"{24.7 + rnd.random() * 0.4:.6f}", "lon": f"{108.0 + rnd.random() * 0.5:.6f}",
            "unit_type": kind.code, "contact_name": rnd.choice(["韦", "覃", "蒙", "谭", "莫"]) + "经理",
            "contact_phone": f"13{rnd.randint(100000000, 999999999)}", "safety_manager_name": "安全员",
            "safety_manager_phone": f"0778-{rnd.randint(1000000, 9999999)}", "floors": str(rnd.randint(1, 30)),
            "area_m2": str(rnd.randint(20, 50000)), "occupancy": str(rnd.randint(5, 3000)),
            "facilities": "、".join(rnd.sample(facilities, rnd.randint(1, 6)))})
    out = [dict(r) for r in rows]
    if bad:
        out[99]["credit_code"] = out[99]["credit_code"][:17] + ("0" if out[99]["credit_code"][17] != "0" else "1")
        out[5000]["unit_type"] = "spaceport"
        out[-1]["id"] = out[0]["id"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, HEADER)
    w.writeheader()
    w.writerows(out)
    return buf.getvalue().encode("utf-8"), rows


def queries(rows: list[dict[str, str]], n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    tax = shipped_taxonomy()
    makers = [
        lambda: f"q={rnd.choice(BRANDS)}",
        lambda: f"q={rnd.choice(STREETS)}",
        lambda: f"q={rnd.choice(TOWNS)}{rnd.choice(['', ' ' + rnd.choice(STREETS)])}",
        lambda: f"q={rnd.choice(rows)['credit_code'][rnd.randint(0, 6):][:8].lower()}",
        lambda: f"q={rnd.choice(rows)['id']}",
        lambda: f"q={rnd.choice(rows)['name']}",
        lambda: f"unit_type={rnd.choice(rows)['unit_type']}",
        lambda: f"unit_class={rnd.choice(tax.classes).code}",
        lambda: f"q={rnd.choice(WORDS)}&unit_class={rnd.choice(tax.classes).code}",
        lambda: "station_id=st-bench",
        lambda: f"offset={rnd.randint(0, 9000)}",
        lambda: f"q={rnd.choice(STREETS)}&offset={rnd.randint(0, 300)}",
        lambda: "q=没有这样的单位",
    ]
    return [makers[i % len(makers)]() + "&limit=50" for i in range(n)]


async def upload(http: aiohttp.ClientSession, base: str, csrf: str, data: bytes) -> tuple[float, int, Any]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="units.csv", content_type="text/csv")
    t = time.monotonic()
    async with http.post(base + "/api/units/import", data=form, headers={"X-CSRF-Token": csrf}) as r:
        body = await r.json()
        return time.monotonic() - t, r.status, body


async def run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    if backend == "postgresql":
        async with pg_database(args.pg_dsn) as url:  # a fresh database, dropped afterwards
            return await run_on(backend, url, args)
    return await run_on(backend, None, args)


async def run_on(backend: str, db_url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"flbench-registry-{backend}-"))
    broker, port = start_broker(workdir)
    cfg = core_config(workdir, port, 2, db_url, "http://127.0.0.1:9/unused")
    core, log = launch_core(workdir, cfg, None)
    base = f"http://127.0.0.1:{cfg['console']['port']}"
    out: dict[str, Any] = {"backend": backend}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await wait_healthy(http, base, core, workdir / "core.log")
            async with http.post(base + "/api/login", json={"username": "bench", "password": "bench-pw"}) as r:
                csrf = (await r.json())["csrf_token"]
            bad, _ = units_csv(args.units, bad=True)
            good, rows = units_csv(args.units)
            secs, status, body = await upload(http, base, csrf, bad)
            out["import_bad_s"] = secs
            out["import_bad"] = (status, [e["row"] for e in body.get("errors", [])])
            secs, status, body = await upload(http, base, csrf, good)
            assert status == 200 and body == {"imported": args.units}, (status, body)
            out["import_s"] = secs
            lat: list[float] = []
            totals: list[int] = []
            for q in queries(rows, args.searches):
                t = time.monotonic()
                async with http.get(f"{base}/api/units?{q}") as r:
                    await r.read()
                    assert r.status == 200, (q, r.status)
                    totals.append(int(r.headers["X-Total-Count"]))
                lat.append((time.monotonic() - t) * 1000)
            out["search_ms"] = lat
            kinds: dict[str, list[float]] = {}
            for q, ms in zip(queries(rows, args.searches), lat, strict=True):
                kind = "&".join(sorted(part.split("=")[0] for part in q.split("&") if not part.startswith("limit")))
                kinds.setdefault(kind, []).append(ms)
            out["by_kind"] = kinds
            out["matches_median"] = statistics.median(totals)
            t = time.monotonic()
            async with http.get(f"{base}/api/units") as r:
                everything = await r.json()
            out["list_all_s"] = time.monotonic() - t
            out["list_all_n"] = len(everything)
            for fmt in ("csv", "xlsx"):
                t = time.monotonic()
                async with http.get(f"{base}/api/units/export?format={fmt}") as r:
                    size = len(await r.read())
                    assert r.status == 200
                out[f"export_{fmt}"] = (time.monotonic() - t, size)
    finally:
        shut_down(core, log, broker, workdir, args.keep)
    return out


async def main_async(args: argparse.Namespace) -> int:
    missed = False
    for backend in args.backends.split(","):
        if backend == "postgresql" and not await pg_available(args.pg_dsn):
            print(f"postgresql: skipped (nothing answers at {args.pg_dsn})")
            continue
        r = await run(backend, args)
        lat = r["search_ms"]
        p95 = pct(lat, 95)
        missed |= p95 >= args.target_ms or r["import_bad"][1] != [101, 5002, args.units + 1]
        print(f"\n{backend}, {args.units:,} units")
        print(f"  import, 3 bad rows: {r['import_bad_s']:.2f} s → HTTP {r['import_bad'][0]}, rows {r['import_bad'][1]}")
        print(f"  import:             {r['import_s']:.2f} s ({args.units / r['import_s']:,.0f} units/s)")
        print(f"  search ({len(lat)} requests, limit 50, median {r['matches_median']:,.0f} matches): "
              f"p50 {pct(lat, 50):.1f} ms, p95 {p95:.1f} ms, max {max(lat):.1f} ms  (target p95 < {args.target_ms} ms)")
        if args.by_kind:
            for kind, values in sorted(r["by_kind"].items()):
                print(f"    {kind:<22} n={len(values):<4} p50 {pct(values, 50):6.1f} ms  max {max(values):6.1f} ms")
        print(f"  list all (console overview, {r['list_all_n']:,} units): {r['list_all_s'] * 1000:.0f} ms")
        for fmt in ("csv", "xlsx"):
            secs, size = r[f"export_{fmt}"]
            print(f"  export {fmt}: {secs * 1000:.0f} ms, {size / 1e6:.1f} MB")
    return 1 if missed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--units", type=int, default=10_000, help="more than 5,001")
    ap.add_argument("--searches", type=int, default=400)
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--by-kind", action="store_true", help="search latency by kind of query too")
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
