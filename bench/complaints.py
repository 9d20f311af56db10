"""Complaint intake throughput and latency through the real system, on SQLite and on PostgreSQL.

    .venv/bin/python bench/complaints.py
    .venv/bin/python bench/complaints.py --json 2000 --photos 200 --mqtt 2000 --concurrency 16
    .venv/bin/python bench/complaints.py --backends sqlite

For each backend, a fresh set: Mosquitto from deploy/mosquitto/firelink.conf on a free port and `firelink run` as a
subprocess (a generated config: --units key units, the 96119 hotline's secret, report limits lifted so that the
limiter does not stand in the way of the figures); PostgreSQL gets a fresh database on --pg-admin-dsn (skipped
when none answers). Three intakes, one after the other:

  http json   POST /api/public/complaints, JSON, --concurrency clients at once
  http photo  POST /api/public/complaints, multipart with a 12-megapixel phone JPEG (EXIF and GPS included), which
              the core judges and re-encodes (Pillow, in the heavy-work limiter's threads)
  mqtt        the 96119 gateway publishing {prefix}/hotline/complaints at QoS 1 as fast as the broker takes them

Printed per intake: reports stored, wall time, throughput (stored/s) and latency p50/p95: HTTP from the request
sent to its 201; MQTT from the publish to the `complaint.received` event on an officer's console WebSocket (it is
pushed after the commit, so it is the stored-and-visible time). Other answers (429, 503 from a full heavy-work
queue) are counted, not retried.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.alarm_latency import core_config, launch_core, pct, shut_down, start_broker, wait_healthy  # noqa: E402

HOTLINE_SECRET = "bench-hotline-secret"
DESCRIPTIONS = ["安全出口被杂物堵塞", "消防通道停放车辆", "楼道电动车充电", "消防栓被遮挡", "私拉乱接电线",
                "灭火器过期", "防火门常开", "仓库违规住人"]


def phone_photo() -> bytes:
    """A 4000×3000 JPEG like a phone's: noise (so it does not compress to nothing), EXIF with GPS."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    pixels[::2] //= 2
    exif = Image.Exif()
    exif[0x0110] = "Phone"
    exif[0x8825] = {1: "N", 2: (24.0, 49.0, 43.0), 3: "E", 4: (108.0, 15.0, 30.0)}
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=80, exif=exif.tobytes())
    return buf.getvalue()


async def create_pg(admin_dsn: str) -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(admin_dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    name = f"firelink_bench_{uuid.uuid4().hex[:10]}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def drop_pg(admin_dsn: str, url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def http_intake(base: str, n: int, concurrency: int, photo: bytes | None) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    todo = iter(range(n))

    async def worker(http: aiohttp.ClientSession) -> None:
        for i in todo:
            body: Any
            if photo is None:
                kwargs: dict[str, Any] = {"json": {"description": DESCRIPTIONS[i % len(DESCRIPTIONS)],
                                                   "lat": 24.8 + (i % 500) * 1e-5, "lon": 108.2}}
            else:
                body = aiohttp.FormData()
                body.add_field("description", DESCRIPTIONS[i % len(DESCRIPTIONS)])
                body.add_field("address", f"思恩镇城北路{i}号")
                body.add_field("photo", photo, filename="IMG.jpg", content_type="image/jpeg")
                kwargs = {"data": body}
            t = time.monotonic()
            async with http.post(base + "/api/public/complaints", **kwargs) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status == 201:
                    latencies.append(time.monotonic() - t)

    started = time.monotonic()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return {"stored": len(latencies), "wall": time.monotonic() - started, "lat": latencies, "statuses": statuses}


def publish_hotline(port: int, topic: str, tickets: list[str], sent: dict[str, float]) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hotline-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = []
        for i, ticket in enumerate(tickets):
            payload = json.dumps({"ticket": ticket, "description": DESCRIPTIONS[i % len(DESCRIPTIONS)],
                                  "address": f"东兴街{i}号", "caller_phone": "13700000000"}, ensure_ascii=False)
            sent[ticket] = time.monotonic()
            infos.append(client.publish(topic, payload, qos=1))
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


async def mqtt_intake(base: str, port: int, prefix: str, n: int, http: aiohttp.ClientSession) -> dict[str, Any]:
    tickets = [f"96119-bench-{uuid.uuid4().hex[:8]}-{i}" for i in range(n)]
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    ws = await http.ws_connect(base.replace("http", "ws", 1) + "/ws")
    try:
        await ws.receive()  # hello
        started = time.monotonic()
        thread = threading.Thread(target=publish_hotline, args=(port, f"{prefix}/hotline/complaints", tickets, sent))
        thread.start()
        deadline = time.monotonic() + 120 + n / 20
        while len(seen) < n and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                msg = await ws.receive(timeout=5)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                event = json.loads(msg.data)
                if event.get("type") == "complaint.received":
                    ticket = event["complaint"].get("ticket")
                    if ticket in sent and ticket not in seen:
                        seen[ticket] = time.monotonic()
        wall = (max(seen.values()) if seen else time.monotonic()) - started
        await asyncio.to_thread(thread.join)
    finally:
        await ws.close()
    return {"stored": len(seen), "wall": wall, "lat": [seen[t] - sent[t] for t in seen], "statuses": {}}


def line(backend: str, what: str, n: int, r: dict[str, Any]) -> str:
    lat = [x * 1000 for x in r["lat"]]
    others = {k: v for k, v in r["statuses"].items() if k != 201}
    extra = f"  other answers: {others}" if others else ""
    rate = r["stored"] / r["wall"] if r["wall"] > 0 else float("nan")
    return (f"{backend:<10} {what:<11} {r['stored']:>5}/{n:<5} {r['wall']:>7.2f} s {rate:>8.1f}/s "
            f"{pct(lat, 50):>9.1f} {pct(lat, 95):>9.1f}{extra}")


async def run(args: argparse.Namespace, backend: str, photo: bytes) -> list[str]:
    workdir = Path(tempfile.mkdtemp(prefix=f"firelink-bench-complaints-{backend}-"))
    db_url = None
    if backend == "postgresql":
        db_url = await create_pg(args.pg_admin_dsn)
        if db_url is None:
            return [f"{backend:<10} skipped: no PostgreSQL answers at {args.pg_admin_dsn}"]
    broker, port = start_broker(workdir)
    cfg = core_config(workdir, port, args.units, db_url, "http://127.0.0.1:9/unused")
    cfg["complaints"] = {"per_address_per_hour": 100_000, "per_device_per_hour": 100_000,
                         "hotline": {"secret": HOTLINE_SECRET}}
    cfg["console"]["heavy_queue"] = max(8, args.concurrency)
    core, log = launch_core(workdir, cfg, None)
    base = f"http://127.0.0.1:{cfg['console']['port']}"
    out = []
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await wait_healthy(http, base, core, workdir / "core.log")
            async with http.post(base + "/api/login", json={"username": "bench", "password": "bench-pw"}) as r:
                assert r.status == 200, await r.text()
            r1 = await http_intake(base, args.json, args.concurrency, None)
            out.append(line(backend, "http json", args.json, r1))
            print(out[-1], flush=True)
            r2 = await http_intake(base, args.photos, min(args.concurrency, 8), photo)
            out.append(line(backend, "http photo", args.photos, r2))
            print(out[-1], flush=True)
            r3 = await mqtt_intake(base, port, cfg["mqtt"]["topic_prefix"], args.mqtt, http)
            out.append(line(backend, "mqtt", args.mqtt, r3))
            print(out[-1], flush=True)
    finally:
        shut_down(core, log, broker, workdir, args.keep)
        if db_url is not None:
            await drop_pg(args.pg_admin_dsn, db_url)
    return out


async def main_async(args: argparse.Namespace) -> int:
    photo = phone_photo()
    print(f"complaint intake: {args.units} units, JSON {args.json}, photos {args.photos} "
          f"({len(photo) / 1e6:.1f} MB, 4000×3000, EXIF+GPS), MQTT {args.mqtt}; concurrency {args.concurrency}")
    print(f"{'backend':<10} {'intake':<11} {'stored':>11} {'wall':>9} {'throughput':>10} {'p50 ms':>9} "
          f"{'p95 ms':>9}")
    lines = []
    for backend in args.backends.split(","):
        lines += await run(args, backend.strip(), photo)
    print("\nsummary")
    print("\n".join(lines))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=int, default=1000, help="public reports as JSON")
    p.add_argument("--photos", type=int, default=100, help="public reports with a phone photo (multipart)")
    p.add_argument("--mqtt", type=int, default=1000, help="hotline complaints over MQTT")
    p.add_argument("--concurrency", type=int, default=16, help="HTTP clients at once (photos: at most 8)")
    p.add_argument("--units", type=int, default=500, help="key units in the config (routing looks at them)")
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--pg-admin-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--keep", action="store_true", help="keep the work dirs (core logs)")
    args = p.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
