"""Device liveness: heartbeats, last-will 'offline' messages, and silence → offline fault."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update

from config.schema import FirelinkConfig
from dispatch import events as ev
from dispatch.actor import SYSTEM
from dispatch.intake import Intake
from dispatch.models import Device, table_of
from dispatch.writer import Writer
from ingest.contract import DeviceStatusIn, Rejection, utcnow

log = logging.getLogger(__name__)


LAST_SEEN = update(table_of(Device)).where(
    table_of(Device).c.id == bindparam("dev"),
    or_(table_of(Device).c.last_seen.is_(None), table_of(Device).c.last_seen < bindparam("seen"))).values(
    last_seen=bindparam("seen"))


class DeviceMonitor:
    """Heartbeats stay in memory; only status changes are written (and recorded).

    Cluster mode (docs/cluster.md): a device's heartbeats reach whichever core consumed them, so each core writes
    the newest heartbeat time of its devices to the database once a second (`flush`), the watchdog runs on the
    scheduler node only and judges silence from the database (`check_silence_shared`), and each core's status cache
    follows the others' device events (`follow`)."""

    def __init__(self, intake: Intake, cfg: FirelinkConfig, clock: Callable[[], datetime] = utcnow) -> None:
        self.intake = intake
        self.clock = clock
        self.intervals = {d.id: timedelta(seconds=d.heartbeat_interval_s) for u in cfg.units for d in u.devices}
        self.last_seen: dict[str, datetime] = {}
        self.status: dict[str, str] = {}
        self.heard_before: set[str] = set()  # devices heard from before this start (last_seen in the database)
        self.started_at = clock()
        self.cluster = cfg.cluster.enabled
        self._unflushed: dict[str, datetime] = {}  # cluster mode: newest heartbeat per device, not yet written

    async def load(self) -> None:
        async with self.intake.core.db.session() as s:
            for dev in (await s.scalars(select(Device))).all():
                self.status[dev.id] = dev.status
                if dev.last_seen is not None:
                    self.heard_before.add(dev.id)

    async def handle(self, msg: DeviceStatusIn) -> Rejection | None:
        if msg.device_id not in self.intervals:
            return Rejection("mqtt", f"devices/{msg.device_id}/status", f"unknown device {msg.device_id!r}", "", 0,
                             msg.received_at)
        self.last_seen[msg.device_id] = msg.received_at
        self._heard(msg.device_id, msg.received_at)
        if self.status.get(msg.device_id) != msg.status or msg.status == "fault":
            await self.intake.set_device_status(msg.device_id, msg.status, msg.detail, msg.received_at,
                                                 msg.received_at)
            self.status[msg.device_id] = msg.status
        return None

    async def alarm_from(self, device_id: str | None, at: datetime) -> None:
        """An alarm sent by a configured device shows it is alive: it counts as a heartbeat.

        A device never heard from (or silent, offline) becomes online; a reported fault stays until
        the device reports otherwise.
        """
        if device_id is None or device_id not in self.intervals:
            return
        self.last_seen[device_id] = max(at, self.last_seen.get(device_id, at))
        self._heard(device_id, at)
        if self.status.get(device_id) in (None, "unknown", "offline"):
            await self.intake.set_device_status(device_id, "online", "alarm received", at, at)
            self.status[device_id] = "online"

    async def check_silence(self) -> None:
        """Devices silent longer than their interval go offline. One never heard from stays 'unknown':
        silence from a device that never spoke says nothing about it, so it is not shown as a failure."""
        now = self.clock()
        for dev_id, interval in self.intervals.items():
            if dev_id not in self.last_seen and dev_id not in self.heard_before:
                continue
            last = self.last_seen.get(dev_id, self.started_at)
            if now - last > interval and self.status.get(dev_id) != "offline":
                secs = int((now - last).total_seconds())
                await self.intake.set_device_status(dev_id, "offline", f"no heartbeat for {secs}s", now, None)
                self.status[dev_id] = "offline"

    async def run(self, period_s: float = 1.0) -> None:
        """The watchdog (a single box; in cluster mode `flush_loop` on every core, `run_shared` on one)."""
        while True:
            try:
                await self.check_silence()
            except Exception:
                log.exception("device watchdog pass failed")
            await asyncio.sleep(period_s)

    def _heard(self, device_id: str, at: datetime) -> None:
        if self.cluster and at > self._unflushed.get(device_id, at - timedelta(seconds=1)):
            self._unflushed[device_id] = at

    async def flush(self) -> None:
        """Cluster mode: the heartbeats heard here since the last flush, written (newest wins) in one statement."""
        if not self._unflushed:
            return
        rows, self._unflushed = [{"dev": d, "seen": t} for d, t in self._unflushed.items()], {}
        async with self.intake.core.db.session() as s:
            await s.execute(LAST_SEEN, rows)
            await s.commit()

    async def flush_loop(self, period_s: float = 1.0) -> None:
        while True:
            try:
                await self.flush()
            except Exception as exc:  # the database is away: these heartbeats are superseded by the next ones
                log.warning("device heartbeats not written: %s", exc)
            await asyncio.sleep(period_s)

    def follow(self, event: ev.Event) -> None:
        """Cluster mode: another core's device status change, into this core's status cache."""
        device = event.data.get("device") if event.type == ev.DEVICE_UPDATED else None
        if isinstance(device, dict) and device.get("id") in self.intervals:
            self.status[str(device["id"])] = str(device.get("status"))

    async def check_silence_shared(self, since: datetime) -> None:
        """Cluster mode, on the scheduler node: silence judged from the heartbeat times every core wrote (a device
        not heard from since this node took the watchdog over counts from then: a backlog may still arrive)."""
        now = self.clock()
        async with self.intake.core.db.session() as s:
            rows = (await s.execute(select(Device.id, Device.last_seen, Device.status))).all()
        for dev_id, last_seen, status in rows:
            interval = self.intervals.get(dev_id)
            if interval is None or last_seen is None or status == "offline":
                continue
            last = max(last_seen, since)
            if now - last > interval:
                secs = int((now - last).total_seconds())
                await self.intake.set_device_status(dev_id, "offline", f"no heartbeat for {secs}s", now, None)
                self.status[dev_id] = "offline"

    async def run_shared(self, period_s: float = 1.0) -> None:
        since = self.clock()
        while True:
            try:
                await self.check_silence_shared(since)
            except Exception:
                log.exception("device watchdog pass failed")
            await asyncio.sleep(period_s)


CAMERA_ACTIONS = {"offline": "camera.offline", "frozen": "camera.fault", "dark": "camera.fault",
                  "online": "camera.online"}


async def record_camera_health(writer: Writer, clock: Callable[[], datetime] = utcnow) -> None:
    """Camera faults and recoveries (published by the camera layer) go into the record, for KPIs and audits."""
    with writer.bus.subscribe([ev.DEVICE_UPDATED]) as sub:
        async for event in sub:
            if event.remote or event.data.get("kind") != "camera":  # another core records its own cameras
                continue
            cam = event.data["camera"]
            action = CAMERA_ACTIONS.get(str(cam.get("status")))
            if action is None:
                continue
            try:
                await writer.note(action, SYSTEM, clock(), {"camera_id": cam.get("id"), "unit_id": cam.get("unit_id"),
                                                             "detail": str(cam.get("fault") or "")[:200]})
            except Exception:
                log.exception("could not record camera status of %s", cam.get("id"))
