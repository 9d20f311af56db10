"""Test helpers: real brokers, real databases, a real app on a real port, a real webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer

from config.schema import FirelinkConfig
from dispatch.auth import hash_password
from firelink.app import create_app
from notify.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("FIRELINK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
WEBHOOK_SECRET = "test-webhook-secret"
AGENCY_TOKEN = "test-agency-token"


class StepClock:
    """An injected clock that stands still until a test moves it (`advance`, `set`)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def set(self, at: datetime) -> None:
        self.now = at


class RunningClock:
    """An injected app clock that starts at a fixed instant and runs at real speed; `offset` jumps it.

    Tests that run the app live use it so that nothing depends on today's date (periods, deadlines, month ends).
    """

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.offset = timedelta()
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self._t0) + self.offset


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1, below the kernel's ephemeral range: a server a test kills and
    restarts on the same port must find it free, and an outgoing connection's source port (drawn from the
    ephemeral range, e.g. a client retrying the dead server) could otherwise be holding it. Held open together
    while choosing, so none is picked twice."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    pool = random.sample(range(15000, low), min(low - 15000, 2000)) if low > 16000 else []
    socks: list[socket.socket] = []
    try:
        for port in [*pool, *[0] * n]:  # port 0 (the kernel's choice) only if the range below is taken
            if len(socks) == n:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    conf: Path | None = None

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(10)


def start_mosquitto(conf_text: str | None = None, port: int | None = None) -> Broker:
    """Spawns a real Mosquitto on a free loopback port (optionally with the project's production config)."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="firelink-mosq-"))
    os.chmod(workdir, 0o777)  # started as root, Mosquitto drops to its own user before persisting
    owned = ("listener", "persistence_location", "log_dest", "pid_file", "allow_anonymous")
    body = "\n".join(line for line in (conf_text or "").splitlines() if not line.strip().startswith(owned))
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"{body}\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence_location {workdir}/\n"
                    "log_dest none\n")
    return _spawn_mosquitto(conf, port)


def _spawn_mosquitto(conf: Path, port: int) -> Broker:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port):
            return Broker("127.0.0.1", port, proc, conf)
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}")
        time.sleep(0.05)  # process start-up: there is no event to await across processes
    raise RuntimeError("mosquitto did not start")


def restart_mosquitto(broker: Broker) -> Broker:
    """Stops the broker (SIGTERM: it saves its persistence file) and starts it again on the same data."""
    assert broker.conf is not None
    broker.stop()
    broker.process = _spawn_mosquitto(broker.conf, broker.port).process
    return broker


def shared_or_own_broker() -> Iterator[Broker]:
    if port_open("127.0.0.1", 1883):
        yield Broker("127.0.0.1", 1883)
        return
    broker = start_mosquitto()
    try:
        yield broker
    finally:
        broker.stop()


async def pg_available(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def start_own_postgres() -> tuple[str, Callable[[], None]] | None:
    """Starts a throw-away PostgreSQL cluster (trust auth, free port) when none is running here."""
    initdbs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not initdbs:
        return None
    bindir = initdbs[-1].parent
    workdir = Path(tempfile.mkdtemp(prefix="firelink-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(workdir, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = workdir / "data"
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    opts = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "start"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop() -> None:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


@contextlib.asynccontextmanager
async def pg_database(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"firelink_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


TEST_USERS: dict[str, dict[str, str]] = {
    "admin": {"role": "admin"},
    "officer": {"role": "duty_officer"},
    "school": {"role": "unit", "unit_id": "school-1"},
    "hotel": {"role": "unit", "unit_id": "hotel-1"},
    "brigade": {"role": "agency", "agency": "fire"},
    "medic": {"role": "agency", "agency": "medical"},
    "assessor": {"role": "assessor"},
}


@functools.cache
def _hashed(password: str) -> str:
    """Hashed once per test session; each test's fresh database then stores hashes, not passwords."""
    return hash_password(password)


def base_config(db_url: str, broker: Broker | None, *, webhook_url: str | None = None,
                **overrides: Any) -> FirelinkConfig:
    """A small station with isolated MQTT topics, so tests can share one broker."""
    prefix = f"fltest-{uuid.uuid4().hex[:10]}"
    agencies: dict[str, Any] = {
        "fire": {"name": "消防救援大队", "phone": "119", "label": {"zh": "消防 119", "en": "Fire 119"}, "mqtt": True,
                 "ack_token": AGENCY_TOKEN},
        "medical": {"name": "120急救中心", "phone": "120", "label": {"zh": "120 急救", "en": "Medical 120"},
                    "mqtt": True},
    }
    if webhook_url:
        agencies["fire"]["webhooks"] = [{"url": webhook_url, "secret": WEBHOOK_SECRET}]
        agencies["medical"]["webhooks"] = [{"url": webhook_url, "secret": WEBHOOK_SECRET}]
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "mqtt": {"host": broker.host if broker else "127.0.0.1", "port": broker.port if broker else 1,
                 "topic_prefix": prefix, "client_id": f"core-{prefix}", "embedded_broker": "never"},
        "console": {"host": "127.0.0.1", "port": 0},
        "station": {"id": "st-test", "name": "测试派出所"},
        "escalation": {"ack_timeout_s": 30, "merge_window_s": 300},
        "delivery": {"initial_backoff_s": 0.05, "max_backoff_s": 0.5},
        "agencies": agencies,
        "units": [
            {"id": "school-1", "name": "第一小学", "category": "学校", "address": "城北路18号", "lat": 24.82,
             "lon": 108.25, "contact_name": "韦保安", "contact_phone": "13800000001",
             "devices": [{"id": "btn-1", "heartbeat_interval_s": 60}]},
            {"id": "hotel-1", "name": "环江宾馆", "category": "宾馆/旅馆", "address": "解放路66号",
             "contact_name": "蒙经理", "contact_phone": "13800000002"},
        ],
        "users": [
            {"username": name, "password_hash": _hashed(f"{name}-pw"), **extra}
            for name, extra in TEST_USERS.items()
        ],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return FirelinkConfig.model_validate(data)


@dataclass
class RunningApp:
    app: web.Application
    server: TestServer
    cfg: FirelinkConfig

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@contextlib.asynccontextmanager
async def running_app(cfg: FirelinkConfig, **kwargs: Any) -> AsyncIterator[RunningApp]:
    app = create_app(cfg, **kwargs)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield RunningApp(app, server, cfg)
    finally:
        await server.close()


class Api:
    """A browser-like API client: cookie session plus the CSRF header on state changes."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None

    async def login(self, username: str, password: str) -> dict[str, Any]:
        status, body = await self.request("POST", "/api/login", {"username": username, "password": password})
        assert status == 200, body
        self.csrf = body["csrf_token"]
        return body

    async def request(self, method: str, path: str, body: Any = None, *, csrf: bool = True,
                      headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if csrf and self.csrf and method != "GET":
            hdrs["X-CSRF-Token"] = self.csrf
        kwargs: dict[str, Any] = {"headers": hdrs}
        if raw is not None:
            kwargs["data"] = raw
            hdrs.setdefault("Content-Type", "application/json")
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except json.JSONDecodeError:
                return resp.status, text

    async def get(self, path: str) -> Any:
        status, body = await self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    async def post(self, path: str, body: Any = None) -> Any:
        status, result = await self.request("POST", path, body)
        assert status == 200, (path, status, result)
        return result

    async def close(self) -> None:
        await self.http.close()


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float = 0.0  # time.monotonic() of its arrival
    signature_ok: bool = True

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Stands in for a brigade's dispatch server: a real HTTP server on loopback (tests and benches).

    `port` 0 takes a free one at start(); a fixed port gives the URL before the server runs (a server that is down
    until `start()`). `fail_first` requests are answered 503."""

    fail_first: int = 0
    port: int = 0
    secret: str = WEBHOOK_SECRET
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        if self.port:
            self.url = f"http://127.0.0.1:{self.port}/dispatch"

    @property
    def signature_ok(self) -> list[bool]:
        return [r.signature_ok for r in self.received]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/dispatch", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.url = f"http://127.0.0.1:{self.port}/dispatch"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        body = await request.read()
        ok = verify(self.secret, body, request.headers.get(SIGNATURE_HEADER))
        self.received.append(Received(body, dict(request.headers), at, ok))
        self._event.set()
        if len(self.received) <= self.fail_first:
            return web.Response(status=503, text="busy")
        return web.json_response({"ok": True})

    def keys(self) -> list[str]:
        """Each request's idempotency key, in order of arrival."""
        return [r.headers.get(IDEMPOTENCY_HEADER, "") for r in self.received]

    def unique_keys(self) -> set[str]:
        return set(self.keys())

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        await self.wait_until(lambda: len(self.received) >= count, timeout)

    async def wait_until(self, check: Callable[[], bool], timeout: float = 10) -> None:
        async def go() -> None:
            while not check():
                self._event.clear()
                await self._event.wait()
        await asyncio.wait_for(go(), timeout)


def mqtt_publish(broker: Broker, topic: str, payload: bytes | str | dict[str, Any], qos: int = 1) -> None:
    """Publishes like a device does (blocking; call through asyncio.to_thread)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    body = json.dumps(payload) if isinstance(payload, dict) else payload
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, body, qos=qos).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


async def publish(broker: Broker, topic: str, payload: bytes | str | dict[str, Any]) -> None:
    await asyncio.to_thread(mqtt_publish, broker, topic, payload)


class WsClient:
    """Reads console WebSocket events and waits for a matching one."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def next_matching(self, pred: Any, timeout: float = 10) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            for event in self.seen:
                if pred(event):
                    self.seen.remove(event)
                    return event
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"websocket closed: {msg}")
                event = json.loads(msg.data)
                if pred(event):
                    return event
                self.seen.append(event)
        return await asyncio.wait_for(go(), timeout)


@contextlib.asynccontextmanager
async def ws_client(api: Api) -> AsyncIterator[WsClient]:
    ws = await api.http.ws_connect(api.base.replace("http", "ws", 1) + "/ws")
    try:
        client = WsClient(ws)
        hello = await client.next_matching(lambda e: e["type"] == "hello")
        assert hello["user"]["username"]
        yield client
    finally:
        await ws.close()


def config_yaml(cfg: FirelinkConfig, path: Path) -> Path:
    """Writes a config the CLI can read back, secrets included (test configs only)."""
    import yaml
    from pydantic import SecretStr

    def reveal(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return v.get_secret_value()
        if isinstance(v, dict):
            return {k: reveal(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [reveal(x) for x in v]
        return v

    path.write_text(yaml.safe_dump(reveal(cfg.model_dump(mode="python")), allow_unicode=True), encoding="utf-8")
    return path


async def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> tuple[int, str, str]:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "firelink.cli", *args, cwd=str(ROOT), env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()
