"""Scale-out on a broker cluster (issue 16): nothing lost while a core, a broker node and PostgreSQL die in turn.

    .venv/bin/python bench/cluster.py --quick          # < 5 minutes
    .venv/bin/python bench/cluster.py                  # the full run (longer stream, larger throughput phase)
    .venv/bin/python bench/cluster.py --cores 1        # one core only (no cluster mode)

What runs (all real, on loopback, all of it this script's own: nothing of the machine's services is touched):
a 3-node RabbitMQ cluster (MQTT plugin, quorum intake queue; tests/rabbit_cluster.py), a PostgreSQL of its own,
K `firelink run` cores (mqtt.intake: amqp; with K > 1 each gets `cluster: {enabled: true, node_id: core-N}` and
its own console port), a fire brigade's webhook server counting deliveries per idempotency key, device gateways
publishing MQTT 3.1.1 QoS 1 alarms over 500 units spread over the three nodes (tests/cluster_devices.py), and a
console (duty officer) following the live WebSocket feed, moving to another core when its core dies, and
dispatching the brigade to an open incident every few seconds.

1. Throughput: with the cores stopped, a backlog of alarms is queued; then 1 core (and 2 with --cores 2) is
   started and the committed alarms/s measured from the first commit to the last.
2. Scenario: alarms streamed at --rate/s; in turn kill -9 of a core (restarted), kill -9 of a broker node
   (restarted), an immediate restart of PostgreSQL. Then everything settles and is counted from the database:
   lost (PUBACKed to a device, not stored), duplicates (stored twice), double_open (units with two open
   incidents), dispatch deliveries beyond one per key, escalations recorded twice at one level, and the longest
   gap in the console's live feed while alarms streamed.

The last line reads `lost=N duplicates=N double_open=N max_gap_s=X`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster_devices import Fleet  # noqa: E402
from tests.rabbit_cluster import RabbitCluster  # noqa: E402
from tests.support import WebhookReceiver, free_port  # noqa: E402

PREFIX = "firelink"
POLL_S = 0.1  # cross-process conditions are polled (there is no event to await across processes)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- PostgreSQL of its own


@dataclass
class OwnPostgres:
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="firelink-bench-pg-")))
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        initdbs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not initdbs:
            raise SystemExit("PostgreSQL is not installed (scripts/sysdeps.sh installs it)")
        self.bindir = initdbs[-1].parent
        self.data = self.workdir / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.workdir, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/firelink"

    @property
    def url(self) -> str:
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://")

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def init(self) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                        "-U", "postgres"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.start()
        subprocess.run([*self.prefix, str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "postgres", "firelink"], check=True)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._ctl("-o", opts, "-l", str(self.workdir / "pg.log"), "-w", "start")

    def restart(self) -> float:
        """An immediate stop (no checkpoint: recovery from the WAL at start, as after a crash) and a start."""
        t0 = time.monotonic()
        self._ctl("-m", "immediate", "stop")
        self.start()
        return time.monotonic() - t0

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("-m", "immediate", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------- the cores


def core_config(n: int, cores: int, pg: OwnPostgres, rabbit: RabbitCluster, units: list[str],
                agency_url: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "database": {"url": pg.url},
        "mqtt": {"topic_prefix": PREFIX, "client_id": f"firelink-core-{n}", "embedded_broker": "never",
                 "cluster_nodes": rabbit.mqtt_nodes()[n % 3:] + rabbit.mqtt_nodes()[:n % 3], "intake": "amqp",
                 "keepalive_s": 5},
        "amqp": {"nodes": rabbit.amqp_nodes()[n % 3:] + rabbit.amqp_nodes()[:n % 3], "prefetch": 1000},
        "console": {"host": "127.0.0.1", "port": free_port()},
        "station": {"id": "st-bench", "name": "测试派出所"},
        "escalation": {"ack_timeout_s": 20, "merge_window_s": 3600, "max_level": 3},
        "delivery": {"initial_backoff_s": 0.1, "max_backoff_s": 1.0},
        "agencies": {"fire": {"name": "消防救援大队", "phone": "119", "mqtt": False,
                              "webhooks": [{"url": agency_url, "secret": "bench-secret", "timeout_s": 2}]}},
        "units": [{"id": u, "name": f"单位{u}", "address": f"测试路{i}号", "contact_name": "值班员",
                   "contact_phone": f"1380000{i:04d}"} for i, u in enumerate(units)],
        "users": [{"username": "officer", "password": "officer-pw", "role": "duty_officer"}],
        "log_level": "WARNING",
    }
    if cores > 1:
        cfg["cluster"] = {"enabled": True, "node_id": f"core-{n}", "head_key": "bench-head-key"}
    return cfg


@dataclass
class Core:
    n: int
    cfg: dict[str, Any]
    tmp: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.config_path = self.tmp / f"core-{self.n}.yaml"
        self.config_path.write_text(yaml.safe_dump(self.cfg, allow_unicode=True))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cfg['console']['port']}"

    def spawn(self) -> None:
        self.starts += 1
        log = (self.tmp / f"core-{self.n}-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "firelink.cli", "--config", str(self.config_path), "run"],
                                     cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                return bool(json.loads(resp.read())["status"] == "ok")
        except (OSError, ValueError, KeyError):
            return False

    def wait_healthy(self, timeout_s: float = 60) -> float:
        t0 = time.monotonic()
        while not self.healthy():
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"core {self.n} exited:\n{self.log_tail()}")
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"core {self.n} not healthy within {timeout_s}s:\n{self.log_tail()}")
            time.sleep(POLL_S)
        return time.monotonic() - t0

    def start(self) -> float:
        self.spawn()
        return self.wait_healthy()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_tail(self) -> str:
        logs = sorted(self.tmp.glob(f"core-{self.n}-*.log"))
        return logs[-1].read_text(errors="replace")[-3000:] if logs else ""


# ---------------------------------------------------------------- the brigade's webhook server


# ---------------------------------------------------------------- the console: live feed and dispatching


class Console:
    """A duty officer's console: follows /ws, moves to the next core when its core dies, dispatches now and then."""

    def __init__(self, cores: list[Core], dsn: str) -> None:
        self.cores = cores
        self.dsn = dsn
        self.events = 0
        self.last: float | None = None
        self.max_gap = 0.0
        self.gap_ended_at = 0.0  # monotonic time the longest gap ended
        self.closed_by: Counter[str] = Counter()  # why the feed was lost, each time
        self.measuring = False
        self.reconnects = 0
        self.resyncs = 0
        self.lost_at: float | None = None  # monotonic time the feed was lost, until it is back (resynced)
        self.max_regain = 0.0  # longest time from losing the feed to having it back on another core
        self.dispatched = 0
        self.dispatch_errors = 0
        self._core = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.http: aiohttp.ClientSession | None = None
        self.csrf: str | None = None

    def base(self) -> str:
        return self.cores[self._core % len(self.cores)].url

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          timeout=aiohttp.ClientTimeout(total=5))
        await self._login()
        self._tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._dispatching())]

    async def _login(self) -> None:
        assert self.http is not None
        while True:
            try:
                async with self.http.post(self.base() + "/api/login",
                                          json={"username": "officer", "password": "officer-pw"}) as r:
                    if r.status == 200:
                        self.csrf = (await r.json())["csrf_token"]
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            self._core += 1
            await asyncio.sleep(POLL_S)

    def _seen(self) -> None:
        now = time.monotonic()
        if self.measuring and self.last is not None and now - self.last > self.max_gap:
            self.max_gap, self.gap_ended_at = now - self.last, now
        self.last = now
        self.events += 1

    async def _follow(self) -> None:
        assert self.http is not None
        while True:
            try:
                # No client heartbeat: a core that dies closes the socket at once (the kernel does), and a busy
                # core answering pings late is not a dead one.
                async with self.http.ws_connect(self.base().replace("http", "ws", 1) + "/ws",
                                                timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
                    await self._resync()
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self._seen()
                    self.closed_by[f"closed {ws.close_code}"] += 1
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.closed_by[type(exc).__name__] += 1
            self.reconnects += 1
            self.lost_at = self.lost_at or time.monotonic()
            self._core += 1  # another core: the session lives in the database, so the cookie is good there too
            await asyncio.sleep(0.05)

    async def _resync(self) -> None:
        """What a console does on (re)connecting: reads the open incidents again (anything missed meanwhile)."""
        assert self.http is not None
        async with self.http.get(self.base() + "/api/incidents") as r:
            if r.status == 200:
                await r.read()
                self.resyncs += 1
                self._seen()
                if self.lost_at is not None:
                    self.max_regain = max(self.max_regain, time.monotonic() - self.lost_at)
                    self.lost_at = None

    async def _dispatching(self, every_s: float = 3.0) -> None:
        """Every few seconds: the brigade to the oldest new incident (through whichever core answers)."""
        assert self.http is not None
        while True:
            await asyncio.sleep(every_s)
            try:
                conn = await asyncpg.connect(self.dsn, timeout=2)
                try:
                    row = await conn.fetchrow("SELECT id FROM incidents WHERE status = 'new' ORDER BY id LIMIT 1")
                finally:
                    await conn.close()
                if row is None:
                    continue
                async with self.http.post(f"{self.base()}/api/incidents/{row['id']}/dispatch",
                                          json={"agencies": ["fire"]}, headers={"X-CSRF-Token": self.csrf or ""}) as r:
                    if r.status == 200:
                        self.dispatched += 1
                    else:
                        self.dispatch_errors += 1
            except (aiohttp.ClientError, TimeoutError, OSError, asyncpg.PostgresError):
                self.dispatch_errors += 1

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.http is not None:
            await self.http.close()


# ---------------------------------------------------------------- counting


async def query(dsn: str, sql: str) -> list[asyncpg.Record]:
    for _ in range(100):  # PostgreSQL may be restarting
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
            try:
                return list(await conn.fetch(sql))
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.exceptions.CannotConnectNowError):
            await asyncio.sleep(POLL_S)
    raise RuntimeError("PostgreSQL does not answer")


async def stored_count(dsn: str) -> int:
    return int((await query(dsn, "SELECT count(*) AS n FROM alarms"))[0]["n"])


async def wait_stored(dsn: str, expected: set[str], stall_s: float) -> None:
    """Waits while the cores work through the backlog: until every expected alarm is stored, or nothing more was
    stored for `stall_s` (then what is missing counts as lost)."""
    progress_at, seen = time.monotonic(), -1
    while time.monotonic() - progress_at < stall_s:
        rows = await query(dsn, "SELECT alarm_id FROM alarms")
        if {r["alarm_id"] for r in rows} >= expected:
            return
        if len(rows) != seen:
            progress_at, seen = time.monotonic(), len(rows)
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------- where the CPU goes (from /proc)


def _proc_table() -> dict[int, tuple[int, int, float]]:
    """pid → (ppid, process group, CPU seconds used so far)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def cpu_by_part(cores: list[Core], pg: OwnPostgres, rabbit: RabbitCluster) -> dict[str, float]:
    """CPU seconds used so far by the cores, PostgreSQL and the broker nodes (each with its child processes)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)

    def tree(root: int) -> float:
        todo, total = [root], 0.0
        while todo:
            pid = todo.pop()
            total += table.get(pid, (0, 0, 0.0))[2]
            todo.extend(children.get(pid, []))
        return total

    parts = {"cores": sum(tree(c.proc.pid) for c in cores if c.proc is not None)}
    with contextlib.suppress(OSError, ValueError):
        parts["postgresql"] = tree(int((pg.data / "postmaster.pid").read_text().split()[0]))
    groups = {n.proc.pid for n in rabbit.nodes if n.proc is not None}
    parts["rabbitmq"] = sum(cpu for _, pgrp, cpu in table.values() if pgrp in groups)
    return parts


# ---------------------------------------------------------------- phases


async def throughput(cores: list[Core], k: int, rabbit: RabbitCluster, pg: OwnPostgres, units: list[str],
                     backlog: int) -> float:
    """Committed alarms/s of k cores on a queued backlog (the cores start after it is queued)."""
    for c in cores:
        await asyncio.to_thread(c.stop)
    before = await stored_count(pg.dsn)
    fleet = Fleet(rabbit.mqtt_nodes(), PREFIX, units)
    await asyncio.to_thread(fleet.start)
    try:
        fleet.stream(20_000, backlog, tag=f"tp{k}-{time.monotonic_ns()}")
        await asyncio.to_thread(fleet.join, 300)
    finally:
        await asyncio.to_thread(fleet.close)
    say(f"  {backlog} alarms queued; starting {k} core(s)")
    for c in cores[:k]:
        c.spawn()
    first: float | None = None
    first_n = last_n = before
    cpu_from: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        n = await stored_count(pg.dsn)
        now = time.monotonic()
        if first is None and n > before:
            first, first_n, cpu_from = now, n, cpu_by_part(cores, pg, rabbit)
        last_n = n
        if n >= before + backlog:
            break
        await asyncio.sleep(0.05)
    assert first is not None
    took = time.monotonic() - first
    rate = (last_n - first_n) / took if took > 0 else float("inf")
    cpu_to = cpu_by_part(cores, pg, rabbit)
    done = max(1, last_n - first_n)
    per = {part: (cpu_to.get(part, 0.0) - used) / done * 1000 for part, used in cpu_from.items()}
    say("  CPU per 1,000 alarms committed: " + ", ".join(f"{part} {sec:.2f} s" for part, sec in per.items())
        + " → one CPU would carry " + ", ".join(f"{part} {1000 / sec:.0f}/s" for part, sec in per.items() if sec > 0))
    for c in cores[:k]:
        await asyncio.to_thread(c.wait_healthy)
    return rate


async def scenario(args: argparse.Namespace, cores: list[Core], rabbit: RabbitCluster, pg: OwnPostgres,
                   agency: WebhookReceiver, units: list[str]) -> str:
    count = int(args.rate * args.duration)
    console = Console(cores, pg.dsn)
    await console.start()
    fleet = Fleet(rabbit.mqtt_nodes(), PREFIX, units)
    await asyncio.to_thread(fleet.start)
    events: list[str] = []

    async def at(fraction: float) -> None:
        await asyncio.sleep(max(0.0, t0 + fraction * args.duration - time.monotonic()))

    def background(fn: Any, *a: Any) -> threading.Thread:
        th = threading.Thread(target=fn, args=a, daemon=True)
        th.start()
        return th

    t0 = time.monotonic()
    console.measuring = True
    fleet.stream(args.rate, count, tag=f"sc-{time.monotonic_ns()}")
    say(f"streaming {count} alarms at {args.rate}/s over {len(units)} units and 3 broker nodes")
    await at(0.2)
    victim = cores[0]
    await asyncio.to_thread(victim.kill9)
    killed = time.monotonic()
    took = await asyncio.to_thread(victim.start)
    events.append(f"core-0 kill -9 → healthy again after {time.monotonic() - killed:.1f}s (start {took:.1f}s)")
    say(events[-1])
    await at(0.45)
    await asyncio.to_thread(rabbit.kill, 1)
    say("broker node 1 kill -9")
    restart_node = background(lambda: events.append(f"broker node 1 back in the cluster {rabbit.restart(1, 300):.1f}s "
                                                    "after its restart"))
    await at(0.7)
    events.append(f"PostgreSQL immediate restart took {await asyncio.to_thread(pg.restart):.1f}s")
    say(events[-1])
    await asyncio.to_thread(fleet.join, 600)
    sent_s = time.monotonic() - t0
    console.measuring = False
    await asyncio.to_thread(restart_node.join, 30)
    if restart_node.is_alive():
        events.append("broker node 1 not back 30 s after the stream ended (counted without it)")
    acked = fleet.acked()
    say(f"stream done in {sent_s:.0f}s; {len(acked)} alarms acknowledged by the broker; gateway failovers "
        f"{fleet.reconnects()}; waiting for the cores to store them")
    await wait_stored(pg.dsn, acked, args.stall_s)
    # the outbox drains (dispatches delivered), then the console stops
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = await query(pg.dsn, "SELECT count(*) AS n FROM outbox WHERE status = 'pending'")
        if rows[0]["n"] == 0:
            break
        await asyncio.sleep(0.5)
    await console.stop()
    await asyncio.to_thread(fleet.close)

    rows = await query(pg.dsn, "SELECT alarm_id FROM alarms")
    stored = [r["alarm_id"] for r in rows]
    stored_set = set(stored)
    lost = len(acked - stored_set)
    duplicates = len(stored) - len(stored_set)
    double_open = len(await query(pg.dsn, "SELECT unit_id FROM incidents WHERE status <> 'closed' "
                                          "GROUP BY unit_id HAVING count(*) > 1"))
    escal_twice = len(await query(pg.dsn, "SELECT incident_id, data->>'level' AS lvl FROM records "
                                          "WHERE action = 'incident.escalated' GROUP BY 1, 2 HAVING count(*) > 1"))
    escalations = len(await query(pg.dsn, "SELECT id FROM records WHERE action = 'incident.escalated'"))
    dispatch_keys = {r["idempotency_key"] for r in await query(pg.dsn, "SELECT idempotency_key FROM dispatches")}
    per_key = Counter(agency.keys())
    delivered_twice = sum(1 for n in per_key.values() if n > 1)
    undelivered = len(dispatch_keys - set(per_key))
    for e in events:
        say(e)
    say(f"console feed lost {dict(console.closed_by)}, back (resynced on another core) within "
        f"{console.max_regain:.2f}s at most; longest gap between live events {console.max_gap:.1f}s, ended "
        f"{console.gap_ended_at - t0:.0f}s into the stream (nothing commits while PostgreSQL restarts)")
    say(f"alarms: published {len(fleet.published)}, acknowledged {len(acked)}, stored {len(stored)} "
        f"(distinct {len(stored_set)}); console: {console.events} events, {console.reconnects} reconnects, "
        f"{console.resyncs} resyncs; "
        f"dispatches: {console.dispatched} made ({console.dispatch_errors} attempts refused/failed), "
        f"{len(dispatch_keys)} keys, {undelivered} undelivered, {delivered_twice} delivered again with the same "
        f"idempotency key (at-least-once: a delivery the core could not mark before it died; the agency "
        f"absorbs it); "
        f"escalations: {escalations}, {escal_twice} recorded twice at one level")
    return f"lost={lost} duplicates={duplicates} double_open={double_open} max_gap_s={console.max_gap:.1f}"


async def main_async(args: argparse.Namespace) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="firelink-bench-cluster-"))
    units = [f"u{i:03d}" for i in range(args.units)]
    rabbit = RabbitCluster(3)
    pg = OwnPostgres()
    agency = WebhookReceiver()
    cores: list[Core] = []
    try:
        took = await asyncio.to_thread(rabbit.start)
        say(f"3-node RabbitMQ cluster up in {took:.1f}s")
        await asyncio.to_thread(pg.init)
        say(f"PostgreSQL up on port {pg.port}")
        await agency.start()
        cores = [Core(n, core_config(n, args.cores, pg, rabbit, units, agency.url), tmp) for n in range(args.cores)]
        took = await asyncio.to_thread(cores[0].start)  # creates the schema and declares the intake queue
        say(f"core-0 healthy in {took:.1f}s")
        rates = {}
        for k in sorted({1, args.cores}):
            rates[k] = await throughput(cores, k, rabbit, pg, units, args.backlog)
            say(f"throughput with {k} core(s): {rates[k]:.0f} alarms/s committed")
        for c in cores:
            if c.proc is None or c.proc.poll() is not None:
                await asyncio.to_thread(c.start)
        line = await scenario(args, cores, rabbit, pg, agency, units)
        for k, r in rates.items():
            say(f"throughput {k} core(s): {r:.0f} alarms/s")
        return line
    finally:
        for c in cores:
            await asyncio.to_thread(c.stop)
        await agency.stop()
        await asyncio.to_thread(rabbit.stop, args.keep)
        await asyncio.to_thread(pg.stop)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"core logs kept in {tmp}, the broker nodes' in {rabbit.workdir}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a shorter stream and backlog (< 5 minutes)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--rate", type=float, default=1000.0, help="alarms per second streamed")
    ap.add_argument("--duration", type=float, default=None, help="seconds of streaming (quick 30, full 180)")
    ap.add_argument("--backlog", type=int, default=None, help="alarms queued for the throughput phase")
    ap.add_argument("--stall-s", type=float, default=60.0,
                    help="after the stream: how long the cores may store nothing more before the missing count as lost")
    ap.add_argument("--keep", action="store_true", help="keep the cores' logs")
    args = ap.parse_args()
    args.duration = args.duration or (30.0 if args.quick else 180.0)
    args.backlog = args.backlog or (5_000 if args.quick else 40_000)
    t0 = time.monotonic()
    line = asyncio.run(main_async(args))
    say(f"total {time.monotonic() - t0:.0f}s")
    print(line, flush=True)


if __name__ == "__main__":
    main()
