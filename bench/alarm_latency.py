"""Alarm latency through the real system, side by side with the durable floor, in one run.

    .venv/bin/python bench/alarm_latency.py --rates 200,1000,5000 --duration 10
    .venv/bin/python bench/alarm_latency.py --rate 200 --duration 60
    .venv/bin/python bench/alarm_latency.py --rate 1000 --duration 20 --db-url postgresql+asyncpg://postgres@127.0.0.1/test

What runs, for each rate (all real, all on loopback, a fresh set per rate):
  Mosquitto started from deploy/mosquitto/firelink.conf on a free port;
  `firelink run` as a subprocess with a generated config (--units key units, SQLite by default);
  the durable floor: a PROCESS with a paho manual-ack subscriber (persistent session, QoS 1) on the
  same topics that inserts each burst into SQLite (WAL, synchronous=NORMAL, as the core) in one
  transaction, commits, then acknowledges: the least any durable pipeline pays;
  a publisher PROCESS (a device gateway: paho-mqtt, QoS 1) paced at the rate for --duration s; every
  alarm it publishes reaches both Firelink and the floor through the same broker;
  a logged-in console WebSocket client in this process, timing `alarm.received` per alarm_id;
  a loopback webhook receiver standing in for the brigade.

Measured:
  alarm:    publish (just before the gateway hands the message to paho) → `alarm.received` on the WebSocket;
            floor: publish → the commit that stored it;
            losses = alarms the broker accepted (PUBACK to the gateway) that were never stored (Firelink:
            never seen on the WebSocket and not in the database; an alarm in the database that the console
            did not see is reported separately as "ws_missed"); alarms the broker never acknowledged are
            counted apart ("unacked": the gateway would resend them);
  dispatch: POST /api/incidents/{id}/dispatch sent → the signed webhook arriving at the receiver, for
            --dispatches incidents, one at a time, after the alarm load.
Times come from CLOCK_MONOTONIC, which is system-wide on Linux, so they compare across processes.
Exit status 1 when a target is missed: zero loss, and Firelink's p99 within 3× the floor's at up to
1,000/s and within 10× above (issue 10), or --p99-target-ms when given.
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
import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import WebhookReceiver  # noqa: E402

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


def shut_down(core: subprocess.Popen[bytes], log: Any, broker: subprocess.Popen[bytes], workdir: Path, keep: bool,
              wait_s: float = 15) -> None:
    """Stops the core (SIGINT, then kill), its log, the broker, and removes the work dir unless kept."""
    core.send_signal(signal.SIGINT)
    try:
        core.wait(wait_s)
    except subprocess.TimeoutExpired:
        core.kill()
    log.close()
    broker.terminate()
    broker.wait(10)
    if keep:
        print(f"  work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


async def wait_healthy(http: aiohttp.ClientSession, base: str, core: subprocess.Popen[bytes], log: Path,
                       timeout_s: float = 120) -> None:
    """Until the core's /healthz answers 200 (another process starting: nothing to await but its answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(base + "/healthz") as r:
                if r.status == 200:
                    return
        if core.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"core did not become healthy; see {log}")
        await asyncio.sleep(0.1)


def launch_core(workdir: Path, cfg: dict[str, Any], preload: str | None) -> tuple[subprocess.Popen[bytes], Any]:
    """`firelink run` with the generated config; output to workdir/core.log."""
    (workdir / "firelink.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    log = (workdir / "core.log").open("wb")
    cmd = [sys.executable, "-m", "firelink.cli"]
    if preload:  # try a patch on the core without editing it
        cmd = [sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv.pop(1)); "
               "from firelink.cli import main; sys.exit(main())", str(Path(preload).resolve())]
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
              out: Any, wait_s: float = 30.0) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-gw-{uuid.uuid4().hex[:8]}",
                         clean_session=False, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    total = int(rate * duration)
    sent: list[tuple[str, float]] = []
    infos: list[Any] = []
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
        infos.append(info)
    elapsed = time.monotonic() - t0
    # A gateway keeps an alarm until the broker's PUBACK: wait for them all (an overloaded machine can
    # leave this process's own queue behind); what the broker never acknowledged is not the core's loss.
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all(i.is_published() for i in infos[-1000:]):
        time.sleep(0.05)
    while time.monotonic() < deadline and not all(i.is_published() for i in infos):
        time.sleep(0.2)
    unacked = [a for (a, _), i in zip(sent, infos, strict=True) if not i.is_published()]
    client.disconnect()
    client.loop_stop()
    out.send({"sent": sent, "elapsed": elapsed, "worst_lag": worst_lag, "unacked": unacked})
    out.close()


# ---------------------------------------------------------------- the durable floor (its own process)


def floor_consumer(port: int, prefix: str, db_path: str, conn: Any) -> None:
    """The least any durable pipeline does: a paho manual-ack subscriber (persistent session, QoS 1) that
    parses each alarm, inserts each burst into SQLite (WAL, synchronous=NORMAL like the core) in one
    transaction, commits, and only then acknowledges. Sends "ready" once subscribed; then receives
    (expected, drain_s), stops when it has committed `expected` alarms or after drain_s, and replies with
    {alarm_id: monotonic time of the commit that stored it}."""
    import sqlite3
    import threading
    from collections import deque

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE alarms (alarm_id TEXT PRIMARY KEY, unit_id TEXT NOT NULL, kind TEXT NOT NULL, "
               "device_id TEXT, received_at REAL NOT NULL)")
    inbox: deque[tuple[str, bytes, int, int]] = deque()
    wake = threading.Event()
    subscribed = threading.Event()
    stop = threading.Event()
    committed: dict[str, float] = {}

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        inbox.append((msg.topic, msg.payload, msg.mid, msg.qos))
        wake.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-floor-{uuid.uuid4().hex[:8]}",
                         clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
    client.max_inflight_messages_set(1000)
    client.on_message = on_message
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(f"{prefix}/units/+/alarm", qos=1)
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("floor consumer could not subscribe")
    conn.send("ready")

    expected: list[int] = []

    def control() -> None:
        n, drain_s = conn.recv()
        expected.append(n)
        wake.set()
        stop.wait(drain_s)
        stop.set()
        wake.set()

    threading.Thread(target=control, daemon=True).start()
    while not stop.is_set():
        if expected and len(committed) >= expected[0]:
            stop.set()
            break
        wake.wait()
        wake.clear()  # then drain: anything appended after this sets it again
        if not inbox:
            continue
        batch = [inbox.popleft() for _ in range(len(inbox))]
        rows = []
        for topic, payload, _mid, _qos in batch:
            data = json.loads(payload)
            rows.append((data["alarm_id"], topic.split("/")[2], data["kind"], data.get("device_id"), time.time()))
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO alarms VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
        t = time.monotonic()
        for (_topic, _payload, mid, qos), r in zip(batch, rows, strict=True):
            client.ack(mid, qos)
            committed.setdefault(r[0], t)
    client.disconnect()
    client.loop_stop()
    conn.send(committed)
    conn.close()


def floor_stored(db_path: str) -> set[str]:
    import sqlite3

    db = sqlite3.connect(db_path)
    try:
        return {r[0] for r in db.execute("SELECT alarm_id FROM alarms")}
    finally:
        db.close()


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


async def db_alarm_ids(db_url: str) -> set[str]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            return {r[0] for r in (await conn.execute(text("SELECT alarm_id FROM alarms"))).all()}
    finally:
        await engine.dispose()


def ratio_target(rate: float) -> float:
    """Issue 10: Firelink's p99 within 3× the floor's at up to 1,000/s, within 10× above."""
    return 3.0 if rate <= 1000 else 10.0


async def run(args: argparse.Namespace, rate: float, duration: float) -> dict[str, Any]:
    """One measurement at one rate: a fresh broker, core, database and floor consumer."""
    workdir = Path(tempfile.mkdtemp(prefix="firelink-bench-"))
    broker, broker_port = start_broker(workdir, Path(args.broker_conf))
    receiver = WebhookReceiver(secret=SECRET)
    await receiver.start()
    cfg = core_config(workdir, broker_port, args.units, args.db_url, receiver.url)
    db_url = cfg["database"]["url"]
    prefix = cfg["mqtt"]["topic_prefix"]
    base = f"http://127.0.0.1:{cfg['console']['port']}"
    core, log = launch_core(workdir, cfg, args.core_preload)
    pub_proc: mp.Process | None = None
    floor_proc: mp.Process | None = None
    floor_db = str(workdir / "floor.db")
    try:
        floor_ctl: Any = None
        if not args.no_floor:
            floor_ctl, floor_end = mp.Pipe()
            floor_proc = mp.Process(target=floor_consumer, args=(broker_port, prefix, floor_db, floor_end))
            floor_proc.start()
            if not await asyncio.to_thread(floor_ctl.poll, 20) or floor_ctl.recv() != "ready":
                raise RuntimeError("floor consumer did not start")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await wait_healthy(http, base, core, workdir / "core.log", 60)
            async with http.post(base + "/api/login", json={"username": "bench", "password": "bench-pw"}) as r:
                csrf = (await r.json())["csrf_token"]
            ws = await http.ws_connect(base.replace("http", "ws") + "/ws", max_msg_size=0)
            seen: dict[str, float] = {}
            created: list[int] = []
            resyncs = 0
            total = int(rate * duration)
            all_seen = asyncio.Event()

            def on_event(ev: dict[str, Any], t: float) -> None:
                nonlocal resyncs
                kind = ev.get("type")
                if kind == "alarm.received":
                    seen.setdefault(ev["alarm"]["alarm_id"], t)
                    if len(seen) >= total:
                        all_seen.set()
                elif kind == "incident.created":
                    created.append(ev["incident"]["id"])
                elif kind == "resync":
                    resyncs += 1

            async def read_ws() -> None:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    t = time.monotonic()
                    data = orjson.loads(msg.data)  # the console client should cost the machine little
                    for ev in data if isinstance(data, list) else [data]:  # a frame may carry several events
                        on_event(ev, t)

            reader = asyncio.create_task(read_ws())
            print(f"core pid {core.pid}, broker :{broker_port}, db {db_url.split(':')[0]}, units {args.units}; "
                  f"publishing {total} alarms at {rate:g}/s for {duration:g} s ...", flush=True)
            parent_end, child_end = mp.Pipe(duplex=False)
            start_at = time.monotonic() + 1.0
            pub_proc = mp.Process(target=publisher, args=(broker_port, prefix, args.units, rate, duration, start_at,
                                                          child_end, args.drain_s))
            cpu0 = cpu_seconds(core.pid)
            broker_cpu0 = cpu_seconds(broker.pid)
            floor_cpu0 = cpu_seconds(floor_proc.pid) if floor_proc and floor_proc.pid else 0.0
            load0 = os.getloadavg()[0]
            pub_proc.start()
            child_end.close()
            result = await asyncio.to_thread(parent_end.recv)
            await asyncio.to_thread(pub_proc.join, 10)
            sent: list[tuple[str, float]] = result["sent"]
            ids = {a for a, _ in sent}
            refused = set(result["unacked"])  # never acknowledged by the broker: the gateway would resend
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_seen.wait(), args.drain_s)
            cpu_load = cpu_seconds(core.pid) - cpu0
            broker_cpu = cpu_seconds(broker.pid) - broker_cpu0
            floor_cpu = (cpu_seconds(floor_proc.pid) - floor_cpu0) if floor_proc and floor_proc.pid else 0.0
            wall_load = time.monotonic() - start_at
            load1 = os.getloadavg()[0]
            latencies = [(seen[a] - t) * 1000 for a, t in sent if a in seen]
            not_seen = ids - seen.keys()
            in_db = await db_alarm_ids(db_url) if not_seen else set()
            lost = not_seen - in_db - refused
            ws_missed = not_seen & in_db
            # Latency over the steady part only (first second excluded) as a second view.
            t_first = sent[0][1] if sent else 0.0
            steady = [(seen[a] - t) * 1000 for a, t in sent if a in seen and t - t_first >= 1.0]

            # ---- the floor: it has had the same drain time; whatever it has not committed by now is lost
            floor_lat: list[float] = []
            floor_lost: set[str] = set()
            if floor_ctl is not None and floor_proc is not None:
                floor_ctl.send((len(ids), args.drain_s))
                committed: dict[str, float] = await asyncio.to_thread(floor_ctl.recv)
                await asyncio.to_thread(floor_proc.join, 10)
                floor_lat = [(committed[a] - t) * 1000 for a, t in sent if a in committed]
                floor_lost = ids - floor_stored(floor_db) - refused

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
                def arrival(inc: int = inc_id) -> float | None:
                    return next((r.at for r in receiver.received if r.json["incident_id"] == inc), None)

                with contextlib.suppress(TimeoutError):
                    await receiver.wait_until(lambda: arrival() is not None)
                if (at := arrival()) is not None:
                    dispatch_lat.append((at - t) * 1000)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()

        # ---- report
        print()
        print(f"Firelink alarm latency — rate {rate:g}/s, duration {duration:g} s, units {args.units}, "
              f"db {db_url.split('+')[0].split(':')[0]}, broker {Path(args.broker_conf).name}")
        print(f"  published {len(sent)} in {result['elapsed']:.2f} s "
              f"(achieved {len(sent) / result['elapsed']:.0f}/s, "
              f"worst pacing lag {result['worst_lag'] * 1000:.1f} ms, not acknowledged by the broker "
              f"{len(refused)})")
        share = 100 * cpu_load / max(wall_load, 1e-9)
        print(f"  core CPU {cpu_load:.1f} s over {wall_load:.1f} s ({share:.0f}% of one core), "
              f"floor CPU {floor_cpu:.1f} s, broker CPU {broker_cpu:.1f} s, incidents created {len(created)}, "
              f"ws resyncs {resyncs}; machine load average {load0:.1f} → {load1:.1f} on {os.cpu_count()} CPUs")
        print()
        print(f"  {'latency (ms)':<28} {'n':>8} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9} {'mean':>9}")
        print(row("publish → ws alarm.received", latencies))
        print(row("  (after the first second)", steady))
        if floor_ctl is not None:
            print(row("floor: publish → committed", floor_lat))
        print(row("dispatch POST → webhook", dispatch_lat))
        print(row("dispatch POST → API reply", api_lat))
        print()
        print(f"  alarms: sent {len(ids)}, seen on ws {len(ids) - len(not_seen)}, in db but not seen on ws "
              f"{len(ws_missed)}, LOST {len(lost)}" + (f"; floor LOST {len(floor_lost)}" if floor_ctl else ""))
        print(f"  webhooks: {len(dispatch_lat)}/{len(targets)} delivered, bad signatures "
              f"{receiver.signature_ok.count(False)}, "
              f"distinct idempotency keys {len(receiver.unique_keys())} of {len(receiver.received)} requests")
        p99 = pct(latencies, 99)
        floor_p99 = pct(floor_lat, 99)
        summary = {
            "rate": rate, "duration": duration, "units": args.units, "sent": len(ids), "broker_unacked": len(refused),
            "lost": len(lost), "ws_missed": len(ws_missed), "resyncs": resyncs, "p50_ms": pct(latencies, 50),
            "p95_ms": pct(latencies, 95), "p99_ms": p99, "max_ms": max(latencies, default=float("nan")),
            "floor_lost": len(floor_lost) if floor_ctl else None, "floor_p50_ms": pct(floor_lat, 50),
            "floor_p99_ms": floor_p99, "floor_max_ms": max(floor_lat, default=float("nan")),
            "ratio_p50": pct(latencies, 50) / pct(floor_lat, 50) if floor_lat else float("nan"),
            "ratio_p99": p99 / floor_p99 if floor_lat else float("nan"),
            "dispatch_p50_ms": pct(dispatch_lat, 50), "dispatch_p99_ms": pct(dispatch_lat, 99),
            "core_cpu_s": cpu_load, "floor_cpu_s": floor_cpu, "wall_s": wall_load, "load_avg": [load0, load1],
            "achieved_rate": len(sent) / result["elapsed"], "worst_pacing_lag_ms": result["worst_lag"] * 1000,
        }
        ok = not lost and not ws_missed and not floor_lost and not refused
        if args.p99_target_ms is not None:
            ok = ok and p99 <= args.p99_target_ms
            print(f"  target p99 ≤ {args.p99_target_ms:g} ms and zero loss: {'MET' if ok else 'MISSED'}")
        elif floor_lat:
            ok = ok and summary["ratio_p99"] <= ratio_target(rate)
            print(f"  target p99 ≤ {ratio_target(rate):g}× the floor's ({summary['ratio_p99']:.1f}×) and zero loss: "
                  f"{'MET' if ok else 'MISSED'}")
        summary["met"] = ok
        return summary
    finally:
        for proc in (pub_proc, floor_proc):
            if proc is not None and proc.is_alive():
                proc.kill()
        await receiver.stop()
        shut_down(core, log, broker, workdir, args.keep, wait_s=10)


def side_by_side(results: list[dict[str, Any]]) -> None:
    print()
    print("Firelink (publish → console alarm.received) vs the durable floor (publish → committed), same run, "
          "same broker and publisher")
    print("  (lost: accepted by the broker, never stored; Firelink's also counts stored alarms its console missed)")
    print(f"  {'rate/s':>7} {'sent':>7} {'unacked':>7} | {'Firelink p50':>12} {'p99':>9} {'lost':>5} | "
          f"{'floor p50':>9} {'p99':>9} {'lost':>5} | {'p50 ratio':>9} {'p99 ratio':>9} {'target':>6}  result")
    for r in results:
        floor_lost = "-" if r["floor_lost"] is None else str(r["floor_lost"])
        print(f"  {r['rate']:>7g} {r['sent']:>7} {r['broker_unacked']:>7} | {r['p50_ms']:>10.1f}ms "
              f"{r['p99_ms']:>7.1f}ms {r['lost'] + r['ws_missed']:>5} | {r['floor_p50_ms']:>7.1f}ms "
              f"{r['floor_p99_ms']:>7.1f}ms {floor_lost:>5} | {r['ratio_p50']:>8.1f}× {r['ratio_p99']:>8.1f}× "
              f"{ratio_target(r['rate']):>5g}×  {'MET' if r['met'] else 'MISSED'}")


async def run_all(args: argparse.Namespace) -> int:
    results = []
    for rate in args.rates:
        results.append(await run(args, rate, args.duration))
    side_by_side(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results if len(results) > 1 else results[0], indent=2))  # noqa: ASYNC240
    return 0 if all(r["met"] for r in results) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=None, help="alarms per second (default 200)")
    p.add_argument("--rates", help="several rates in turn, each with a fresh broker/core/floor, e.g. 200,1000,5000")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of publishing per rate (default 60 with --rate, 10 with --rates)")
    p.add_argument("--units", type=int, default=2000, help="key units in the generated config (default 2000)")
    p.add_argument("--db-url", help="SQLAlchemy async URL (default: SQLite in a temp dir), e.g. "
                                    "postgresql+asyncpg://postgres@127.0.0.1/test (its tables must be empty)")
    p.add_argument("--dispatches", type=int, default=50, help="incidents to dispatch after the load (default 50)")
    p.add_argument("--drain-s", type=float, default=30, help="wait this long after publishing for stragglers")
    p.add_argument("--p99-target-ms", type=float, default=None,
                   help="an absolute p99 target instead of the ratio to the floor (3× up to 1,000/s, else 10×)")
    p.add_argument("--no-floor", action="store_true", help="do not run the durable floor consumer")
    p.add_argument("--core-preload", metavar="FILE",
                   help="Python file the core runs before starting (to measure a patch without editing the core)")
    p.add_argument("--broker-conf", default=str(BROKER_CONF),
                   help="Mosquitto config to start the broker from (default deploy/mosquitto/firelink.conf; "
                        "its listener/persistence_location/log_dest lines are replaced)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp work dir (core.log, database)")
    args = p.parse_args()
    if args.rates:
        args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    else:
        args.rates = [args.rate if args.rate is not None else 200.0]
    if args.duration is None:
        args.duration = 10.0 if len(args.rates) > 1 else 60.0
    if args.no_floor and args.p99_target_ms is None:
        args.p99_target_ms = 100.0 if max(args.rates) <= 200 else 500.0
    return asyncio.run(run_all(args))


if __name__ == "__main__":
    sys.exit(main())
