"""Device liveness: heartbeats, last-will 'offline' messages, and silence → offline fault."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from config.schema import FirelinkConfig
from dispatch import events as ev
from dispatch.actor import SYSTEM
from dispatch.intake import Intake
from dispatch.models import Device
from dispatch.writer import Writer
from ingest.contract import DeviceStatusIn, Rejection, utcnow

log = logging.getLogger(__name__)


class DeviceMonitor:
    """Heartbeats stay in memory; only status changes are written (and recorded)."""

    def __init__(self, intake: Intake, cfg: FirelinkConfig, clock: Callable[[], datetime] = utcnow) -> None:
        self.intake = intake
        self.clock = clock
        self.intervals = {d.id: timedelta(seconds=d.heartbeat_interval_s) for u in cfg.units for d in u.devices}
        self.last_seen: dict[str, datetime] = {}
        self.status: dict[str, str] = {}
        self.heard_before: set[str] = set()  # devices heard from before this start (last_seen in the database)
        self.started_at = clock()

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
        while True:
            try:
                await self.check_silence()
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
