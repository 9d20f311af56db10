"""Alarm latency benchmark through the real system.

    .venv/bin/python bench/alarm_latency.py --rate 200 --duration 60
    .venv/bin/python bench/alarm_latency.py --rate 1000 --duration 20 --db-url postgresql+asyncpg://postgres@127.0.0.1/test

What runs (all real, all on loopback):
  Mosquitto started from deploy/mosquitto/firelink.conf on a free port;
  `firelink run` as a subprocess with a generated config (--units key units, SQLite by default);
  a publisher PROCESS (a device gateway: paho-mqtt, QoS 1) paced at --rate alarms/s for --duration s;
  a logged-in console WebSocket client in this process, timing `alarm.received` per alarm_id;
  a loopback webhook receiver standing in for the brigade.

Measured:
  alarm:    publish (just before the gateway hands the message to paho) → `alarm.received` on the WebSocket;
            losses = alarms never seen on the WebSocket AND not in the database (an alarm that is in the
            database but was not seen on the WebSocket is reported separately as "ws_missed");
  dispatch: POST /api/incidents/{id}/dispatch sent → the signed webhook arriving at the receiver, for
            --dispatches incidents, one at a time, after the alarm load.
Times come from CLOCK_MONOTONIC, which is system-wide on Linux, so they compare across processes.
Exit status 1 when a target is missed (--p99-target-ms, zero loss).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BROKER_CONF = ROOT / "deploy" / "mosquitto" / "firelink.conf"
SECRET = "bench-webhook-secret"
KINDS = ["one_key", "smoke", "heat", "manual_call_point", "gas"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def poll_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------- broker and core


def start_broker(workdir: Path, conf_path: Path = BROKER_CONF) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    lines = [ln for ln in conf_path.read_text().splitlines()
             if not ln.strip().startswith(("listener", "persistence_location", "log_dest", "allow_anonymous"))]
    lines += [f"listener {port} 127.0.0.1", "allow_anonymous true", f"persistence_location {workdir}/",
              "log_dest none"]
    if os.geteuid() == 0:
        lines.append("user root")  # root would drop to `mosquitto`, which cannot write the temp dir
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    poll_until(lambda: port_open(port) or proc.poll() is not None, 10, "mosquitto")
    if proc.poll() is not None:
        raise RuntimeError("mosquitto failed to start")
    return proc, port


def core_config(workdir: Path, broker_port: int, units: int, db_url: str | None, webhook_url: str) -> dict[str, Any]:
    prefix = f"flbench-{uuid.uuid4().hex[:8]}"
    return {
        "database": {"url": db_url or f"sqlite+aiosqlite:///{workdir}/firelink.db"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "topic_prefix": prefix, "client_id": f"core-{prefix}",
                 "embedded_broker": "never"},
        "console": {"host": "127.0.0.1", "port": free_port()},
        "station": {"id": "st-bench", "name": "基准测试派出所"},
        "escalation": {"ack_timeout_s": 3600, "merge_window_s": 300},
        "delivery": {"initial_backoff_s": 0.2, "max_backoff_s": 5},
        "agencies": {
            "fire": {"name": "消防救援大队", "phone": "119", "mqtt": False,
                     "webhooks": [{"url": webhook_url, "secret": SECRET}]},
            "medical": {"name": "120急救中心", "phone": "120", "mqtt": False,
                        "webhooks": [{"url": webhook_url, "secret": SECRET}]},
        },
        "units": [{"id": f"u{i:05d}", "name": f"重点单位{i}", "category": "学校", "address": f"城北路{i}号",
                   "lat": 24.8 + i * 1e-5, "lon": 108.2, "contact_name": "值班员",
                   "contact_phone": f"138{i:08d}"} for i in range(units)],
        "users": [{"username": "bench", "password": "bench-pw", "role": "duty_officer"}],
        "log_level": "WARNING",
    }


def launch_core(workdir: Path, cfg: dict[str, Any], preload: str | None) -> tuple[subprocess.Popen[bytes], Any]:
    """`firelink run` with the generated config; output to workdir/core.log."""
    (workdir / "firelink.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    log = (workdir / "core.log").open("wb")
    cmd = [sys.executable, "-m", "dispatch.cli"]
    if preload:  # try a patch on the core without editing it
        cmd = [sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv.pop(1)); "
               "from dispatch.cli import main; sys.exit(main())", str(Path(preload).resolve())]
    core = subprocess.Popen([*cmd, "--config", str(workdir / "firelink.yaml"), "run"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return core, log


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


# ---------------------------------------------------------------- the publisher (its own process)


def publisher(port: int, prefix: str, units: int, rate: float, duration: float, start_at: float,
              out: Any) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    acked: set[int] = set()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-gw-{uuid.uuid4().hex[:8]}",
                         clean_session=False, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = lambda _c, _u, mid, _rc, _p: acked.add(mid)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    total = int(rate * duration)
    sent: list[tuple[str, float]] = []
    mids: list[int] = []
    tag = uuid.uuid4().hex[:6]
    worst_lag = 0.0
    while time.monotonic() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.monotonic())))
    t0 = time.monotonic()
    for n in range(total):
        due = t0 + n / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        else:
            worst_lag = max(worst_lag, now - due)
        alarm_id = f"b{tag}-{n:07d}"
        unit = f"u{n % units:05d}"
        body = json.dumps({"alarm_id": alarm_id, "kind": KINDS[n % len(KINDS)], "device_id": f"gw-{unit}"})
        t = time.monotonic()
        info = client.publish(f"{prefix}/units/{unit}/alarm", body, qos=1)
        sent.append((alarm_id, t))
        mids.append(info.mid)
    elapsed = time.monotonic() - t0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(m in acked for m in mids[-1000:]):
        time.sleep(0.01)
    unacked = sum(1 for m in mids if m not in acked) if len(mids) < 65000 else -1
    client.disconnect()
    client.loop_stop()
    out.send({"sent": sent, "elapsed": elapsed, "worst_lag": worst_lag, "unacked": unacked})
    out.close()


# ---------------------------------------------------------------- measurement


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def row(name: str, values_ms: list[float]) -> str:
    if not values_ms:
        return f"  {name:<28} {'-':>8}"
    return (f"  {name:<28} {len(values_ms):>8} {pct(values_ms, 50):>9.1f} {pct(values_ms, 95):>9.1f} "
            f"{pct(values_ms, 99):>9.1f} {max(values_ms):>9.1f} {statistics.fmean(values_ms):>9.1f}")


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[int, float] = {}
        self.bad_signatures = 0
        self.keys: list[str] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dispatch"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/dispatch", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        t = time.monotonic()
        from notify.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify

        body = await request.read()
        if not verify(SECRET, body, request.headers.get(SIGNATURE_HEADER)):
            self.bad_signatures += 1
        self.keys.append(request.headers.get(IDEMPOTENCY_HEADER, ""))
        self.arrivals.setdefault(int(json.loads(body)["incident_id"]), t)
        self.arrived.set()
        return web.json_response({"ok": True})


async def db_alarm_ids(db_url: str) -> set[str]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            return {r[0] for r in (await conn.execute(text("SELECT alarm_id FROM alarms"))).all()}
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="firelink-bench-"))
    broker, broker_port = start_broker(workdir, Path(args.broker_conf))
    receiver = Receiver()
    await receiver.start()
    cfg = core_config(workdir, broker_port, args.units, args.db_url, receiver.url)
    db_url = cfg["database"]["url"]
    base = f"http://127.0.0.1:{cfg['console']['port']}"
    core, log = launch_core(workdir, cfg, args.core_preload)
    pub_proc: mp.Process | None = None
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(base + "/healthz") as r:
                        if (await r.json())["status"] == "ok":
                            break
                if core.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("core did not become healthy; see " + str(workdir / "core.log"))
                await asyncio.sleep(0.1)
            async with http.post(base + "/api/login", json={"username": "bench", "password": "bench-pw"}) as r:
                csrf = (await r.json())["csrf_token"]
            ws = await http.ws_connect(base.replace("http", "ws") + "/ws", max_msg_size=0)
            seen: dict[str, float] = {}
            created: list[int] = []
            resyncs = 0
            total = int(args.rate * args.duration)
            all_seen = asyncio.Event()

            async def read_ws() -> None:
                nonlocal resyncs
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    t = time.monotonic()
                    ev = json.loads(msg.data)
                    kind = ev.get("type")
                    if kind == "alarm.received":
                        seen.setdefault(ev["alarm"]["alarm_id"], t)
                        if len(seen) >= total:
                            all_seen.set()
                    elif kind == "incident.created":
                        created.append(ev["incident"]["id"])
                    elif kind == "resync":
                        resyncs += 1

            reader = asyncio.create_task(read_ws())
            print(f"core pid {core.pid}, broker :{broker_port}, db {db_url.split(':')[0]}, units {args.units}; "
                  f"publishing {total} alarms at {args.rate:g}/s for {args.duration:g} s ...", flush=True)
            parent_end, child_end = mp.Pipe(duplex=False)
            start_at = time.monotonic() + 1.0
            pub_proc = mp.Process(target=publisher, args=(broker_port, cfg["mqtt"]["topic_prefix"], args.units,
                                                          args.rate, args.duration, start_at, child_end))
            cpu0 = cpu_seconds(core.pid)
            broker_cpu0 = cpu_seconds(broker.pid)
            pub_proc.start()
            child_end.close()
            result = await asyncio.to_thread(parent_end.recv)
            await asyncio.to_thread(pub_proc.join, 10)
            sent: list[tuple[str, float]] = result["sent"]
            ids = {a for a, _ in sent}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_seen.wait(), args.drain_s)
            cpu_load = cpu_seconds(core.pid) - cpu0
            broker_cpu = cpu_seconds(broker.pid) - broker_cpu0
            wall_load = time.monotonic() - start_at
            latencies = [(seen[a] - t) * 1000 for a, t in sent if a in seen]
            not_seen = ids - seen.keys()
            in_db = await db_alarm_ids(db_url) if not_seen else set()
            lost = not_seen - in_db
            ws_missed = not_seen & in_db
            # Latency over the steady part only (first second excluded) as a second view.
            t_first = sent[0][1] if sent else 0.0
            steady = [(seen[a] - t) * 1000 for a, t in sent if a in seen and t - t_first >= 1.0]

            # ---- dispatch → webhook
            dispatch_lat: list[float] = []
            api_lat: list[float] = []
            targets = created[: args.dispatches]
            for inc_id in targets:
                t = time.monotonic()
                async with http.post(f"{base}/api/incidents/{inc_id}/dispatch", json={"agencies": ["fire"]},
                                     headers={"X-CSRF-Token": csrf}) as r:
                    await r.read()
                    ok = r.status == 200
                api_lat.append((time.monotonic() - t) * 1000)
                if not ok:
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        while inc_id not in receiver.arrivals:
                            receiver.arrived.clear()
                            await receiver.arrived.wait()
                if inc_id in receiver.arrivals:
                    dispatch_lat.append((receiver.arrivals[inc_id] - t) * 1000)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()

        # ---- report
        print()
        print(f"Firelink alarm latency — rate {args.rate:g}/s, duration {args.duration:g} s, units {args.units}, "
              f"db {db_url.split('+')[0].split(':')[0]}, broker deploy/mosquitto/firelink.conf")
        print(f"  published {len(sent)} in {result['elapsed']:.2f} s "
              f"(achieved {len(sent) / result['elapsed']:.0f}/s, "
              f"worst pacing lag {result['worst_lag'] * 1000:.1f} ms, broker-unacked {result['unacked']})")
        share = 100 * cpu_load / max(wall_load, 1e-9)
        print(f"  core CPU {cpu_load:.1f} s over {wall_load:.1f} s ({share:.0f}% of one core), "
              f"broker CPU {broker_cpu:.1f} s, incidents created {len(created)}, ws resyncs {resyncs}")
        print()
        print(f"  {'latency (ms)':<28} {'n':>8} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9} {'mean':>9}")
        print(row("publish → ws alarm.received", latencies))
        print(row("  (after the first second)", steady))
        print(row("dispatch POST → webhook", dispatch_lat))
        print(row("dispatch POST → API reply", api_lat))
        print()
        print(f"  alarms: sent {len(ids)}, seen on ws {len(ids) - len(not_seen)}, in db but not seen on ws "
              f"{len(ws_missed)}, LOST {len(lost)}")
        print(f"  webhooks: {len(dispatch_lat)}/{len(targets)} delivered, bad signatures {receiver.bad_signatures}, "
              f"distinct idempotency keys {len(set(receiver.keys))} of {len(receiver.keys)} requests")
        p99 = pct(latencies, 99)
        ok = not lost and not ws_missed and p99 <= args.p99_target_ms
        print(f"  target p99 ≤ {args.p99_target_ms:g} ms and zero loss: {'MET' if ok else 'MISSED'}")
        if args.json:
            Path(args.json).write_text(json.dumps({  # noqa: ASYNC240 (after the measurement)
                "rate": args.rate, "duration": args.duration, "units": args.units, "sent": len(ids),
                "lost": len(lost), "ws_missed": len(ws_missed), "p50_ms": pct(latencies, 50),
                "p95_ms": pct(latencies, 95), "p99_ms": p99, "max_ms": max(latencies, default=float("nan")),
                "dispatch_p50_ms": pct(dispatch_lat, 50), "dispatch_p99_ms": pct(dispatch_lat, 99),
                "core_cpu_s": cpu_load, "wall_s": wall_load}, indent=2))
        return 0 if ok else 1
    finally:
        if pub_proc is not None and pub_proc.is_alive():
            pub_proc.kill()
        core.send_signal(signal.SIGINT)
        try:
            core.wait(10)
        except subprocess.TimeoutExpired:
            core.kill()
        log.close()
        await receiver.stop()
        broker.terminate()
        broker.wait(10)
        if args.keep:
            print(f"  work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=200, help="alarms per second (default 200)")
    p.add_argument("--duration", type=float, default=60, help="seconds of publishing (default 60)")
    p.add_argument("--units", type=int, default=2000, help="key units in the generated config (default 2000)")
    p.add_argument("--db-url", help="SQLAlchemy async URL (default: SQLite in a temp dir), e.g. "
                                    "postgresql+asyncpg://postgres@127.0.0.1/test (its tables must be empty)")
    p.add_argument("--dispatches", type=int, default=50, help="incidents to dispatch after the load (default 50)")
    p.add_argument("--drain-s", type=float, default=30, help="wait this long after publishing for stragglers")
    p.add_argument("--p99-target-ms", type=float, default=None,
                   help="p99 target (default: 100 ms up to 200/s, else 500 ms)")
    p.add_argument("--core-preload", metavar="FILE",
                   help="Python file the core runs before starting (to measure a patch without editing the core)")
    p.add_argument("--broker-conf", default=str(BROKER_CONF),
                   help="Mosquitto config to start the broker from (default deploy/mosquitto/firelink.conf; "
                        "its listener/persistence_location/log_dest lines are replaced)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp work dir (core.log, database)")
    args = p.parse_args()
    if args.p99_target_ms is None:
        args.p99_target_ms = 100.0 if args.rate <= 200 else 500.0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
