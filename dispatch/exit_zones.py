"""Exit zones drawn in the console: stored per camera, recorded, and applied live to the detectors.

A zone is a polygon (normalised 0..1 points) on one camera's view with its dwell / fraction / clear settings,
plus a clear reference frame captured when the exit was known to be clear. Zones of the config file
(`detectors.cameras[].exits`) are read-only here; a console zone with the same id replaces one (the database wins).

Every change goes through the core's single Writer (one transaction, one hash-chained record entry, actor and
time) and publishes `exit_zone.changed` after the commit. `ExitZoneFollower` (wired in the app's detectors context)
hands each changed camera's merged zones to `DetectorService.set_exit_zones` and publishes `exit_zone.applied`,
so a running `firelink run` picks zones up without a restart, and the console can show that it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import cv2
import numpy as np
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from config.cameras import CameraConfig
from config.detectors import ExitZoneConfig
from config.schema import FirelinkConfig
from dispatch import events as ev
from dispatch.appkeys import CONFIG, SERVICE, WRITER
from dispatch.events import Event, EventBus, Subscription
from dispatch.inputs import Actor, utcnow
from dispatch.models import ExitZone
from dispatch.service import BadRequest, NotFound
from dispatch.state import TransitionError
from dispatch.views import iso
from dispatch.writer import Tx, Writer

log = logging.getLogger(__name__)

# Record actions (no incident or hazard: the camera and zone are in the entry's data).
ZONE_CREATED = "exit_zone.created"
ZONE_UPDATED = "exit_zone.updated"
ZONE_DELETED = "exit_zone.deleted"
REFERENCE_CAPTURED = "exit_zone.reference_captured"

MAX_ZONES_PER_CAMERA = 32
MIN_AREA = 0.001  # of the frame: smaller outlines hold no analysis cell (a mis-click, not an exit)
SETTINGS = ("name", "polygon", "dwell_s", "min_fraction", "clear_s")


def polygon_area(points: list[tuple[float, float]]) -> float:
    """Shoelace area of a normalised polygon (fraction of the frame)."""
    n = len(points)
    twice = sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))
    return abs(twice) / 2


def zone_spec(zone_id: str, fields: dict[str, Any]) -> ExitZoneConfig:
    """An ExitZoneConfig from an id and settings, with the detectors' own rules (id pattern, polygon in 0..1)."""
    try:
        zone = ExitZoneConfig.model_validate({"id": zone_id, **fields})
    except ValidationError as exc:
        raise BadRequest("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'zone'}: {e['msg']}"
                                   for e in exc.errors())) from None
    if polygon_area(zone.polygon) < MIN_AREA:
        raise BadRequest(f"the polygon is too small (under {MIN_AREA:.1%} of the picture)")
    return zone


def config_view(z: ExitZoneConfig) -> dict[str, Any]:
    return {"id": z.id, "name": z.name, "polygon": [list(p) for p in z.polygon], "dwell_s": z.dwell_s,
            "min_fraction": z.min_fraction, "clear_s": z.clear_s, "source": "config", "read_only": True,
            "reference": {"configured": True} if z.reference else None}


def zone_view(z: ExitZone, *, overrides_config: bool = False) -> dict[str, Any]:
    ref = None
    if z.reference_sha256 is not None:
        ref = {"sha256": z.reference_sha256, "size": z.reference_size, "width": z.reference_width,
               "height": z.reference_height, "captured_at": iso(z.reference_at), "captured_by": z.reference_by,
               "url": f"/api/cameras/{z.camera_id}/exit-zones/{z.zone_id}/reference.jpg"}
    return {"id": z.zone_id, "name": z.name, "polygon": z.polygon, "dwell_s": z.dwell_s,
            "min_fraction": z.min_fraction, "clear_s": z.clear_s, "source": "console", "read_only": False,
            "overrides_config": overrides_config, "reference": ref, "created_at": iso(z.created_at),
            "created_by": z.created_by, "updated_at": iso(z.updated_at), "updated_by": z.updated_by}


def as_config(z: ExitZone) -> ExitZoneConfig:
    return ExitZoneConfig(id=z.zone_id, name=z.name, polygon=[(x, y) for x, y in z.polygon], dwell_s=z.dwell_s,
                          min_fraction=z.min_fraction, clear_s=z.clear_s)


def _settings(z: ExitZoneConfig) -> dict[str, Any]:
    return {"name": z.name, "polygon": [[round(x, 5), round(y, 5)] for x, y in z.polygon], "dwell_s": z.dwell_s,
            "min_fraction": z.min_fraction, "clear_s": z.clear_s}


class ExitZoneService:
    """Console exit zones of every camera; config-file zones are read from the config, never written."""

    def __init__(self, writer: Writer, cfg: FirelinkConfig, clock: Callable[[], datetime] = utcnow) -> None:
        self.writer = writer
        self.db = writer.db
        self.bus: EventBus = writer.bus
        self.cfg = cfg
        self.clock = clock

    # ------------------------------------------------------------ reading

    def camera(self, camera_id: str) -> CameraConfig:
        cam = next((c for c in self.cfg.cameras if c.id == camera_id), None)
        if cam is None:
            raise NotFound(f"unknown camera {camera_id!r}")
        return cam

    def configured(self, camera_id: str) -> list[ExitZoneConfig]:
        """The camera's zones from the config file (`detectors.cameras[].exits`)."""
        entry = next((c for c in self.cfg.detectors.cameras if c.camera_id == camera_id), None)
        return list(entry.exits) if entry is not None else []

    async def _rows(self, s: AsyncSession, camera_id: str) -> list[ExitZone]:
        rows = await s.scalars(select(ExitZone).where(ExitZone.camera_id == camera_id).order_by(ExitZone.id))
        return list(rows.all())

    async def list_zones(self, camera_id: str) -> dict[str, Any]:
        """Console zones, then the config file's zones not replaced by one (marked read-only)."""
        self.camera(camera_id)
        configured = self.configured(camera_id)
        async with self.db.session() as s:
            rows = await self._rows(s, camera_id)
        mine = {r.zone_id for r in rows}
        yaml_ids = {z.id for z in configured}
        zones = [zone_view(r, overrides_config=r.zone_id in yaml_ids) for r in rows]
        zones += [config_view(z) for z in configured if z.id not in mine]
        return {"camera_id": camera_id, "zones": zones}

    async def effective(self, camera_id: str) -> tuple[list[ExitZoneConfig], dict[str, bytes]]:
        """What the detectors watch on this camera: config zones merged with console zones (the console wins on
        the same id), and the console zones' clear reference JPEGs by zone id."""
        async with self.db.session() as s:
            rows = list((await s.scalars(select(ExitZone).where(ExitZone.camera_id == camera_id)
                                         .options(undefer(ExitZone.reference_jpeg)).order_by(ExitZone.id))).all())
        mine = {r.zone_id for r in rows}
        zones = [z for z in self.configured(camera_id) if z.id not in mine] + [as_config(r) for r in rows]
        return zones, {r.zone_id: r.reference_jpeg for r in rows if r.reference_jpeg}

    async def cameras_with_zones(self) -> list[str]:
        async with self.db.session() as s:
            return sorted(set((await s.scalars(select(ExitZone.camera_id))).all()))

    async def reference(self, camera_id: str, zone_id: str) -> tuple[bytes, str]:
        """The clear reference JPEG of a console zone and its SHA-256."""
        self.camera(camera_id)
        async with self.db.session() as s:
            row = await s.scalar(select(ExitZone).where(ExitZone.camera_id == camera_id, ExitZone.zone_id == zone_id)
                                 .options(undefer(ExitZone.reference_jpeg)))
        if row is None or row.reference_jpeg is None or row.reference_sha256 is None:
            raise NotFound(f"exit zone {zone_id!r} of camera {camera_id!r} has no clear reference")
        return row.reference_jpeg, row.reference_sha256

    # ------------------------------------------------------------ writing

    async def _editable(self, s: AsyncSession, camera_id: str, zone_id: str) -> ExitZone:
        """The console zone, or 404 (none) / 409 (only in the config file: edit it there)."""
        row = await s.scalar(select(ExitZone).where(ExitZone.camera_id == camera_id, ExitZone.zone_id == zone_id))
        if row is not None:
            return row
        if any(z.id == zone_id for z in self.configured(camera_id)):
            raise TransitionError(f"exit zone {zone_id!r} comes from the configuration file; change it there "
                                  "(or save a zone with this id in the console to replace it)")
        raise NotFound(f"camera {camera_id!r} has no exit zone {zone_id!r}")

    async def check_editable(self, camera_id: str, zone_id: str) -> None:
        """Raises what capturing a reference would (before a snapshot is taken for nothing)."""
        self.camera(camera_id)
        async with self.db.session() as s:
            await self._editable(s, camera_id, zone_id)

    def _changed(self, tx: Tx, camera_id: str, zone_id: str, change: str, view: dict[str, Any] | None) -> None:
        tx.events.append(Event(ev.EXIT_ZONE_CHANGED,
                               {"camera_id": camera_id, "zone_id": zone_id, "change": change, "zone": view}))

    async def put(self, camera_id: str, zone: ExitZoneConfig, actor: Actor) -> dict[str, Any]:
        """Creates or replaces a console zone (its clear reference, if any, is kept)."""
        self.camera(camera_id)
        settings = _settings(zone)
        async with self.writer.tx() as tx:
            s = tx.session
            now = self.clock()
            rows = await self._rows(s, camera_id)
            row = next((r for r in rows if r.zone_id == zone.id), None)
            if row is None:
                if len(rows) >= MAX_ZONES_PER_CAMERA:
                    raise BadRequest(f"at most {MAX_ZONES_PER_CAMERA} exit zones per camera")
                row = ExitZone(camera_id=camera_id, zone_id=zone.id, created_at=now, created_by=actor.username,
                               **settings)
                s.add(row)
                action, previous = ZONE_CREATED, None
            else:
                previous = {k: getattr(row, k) for k in SETTINGS}
                for k, v in settings.items():
                    setattr(row, k, v)
                action = ZONE_UPDATED
            row.updated_at, row.updated_by = now, actor.username
            await s.flush()
            data = {"camera_id": camera_id, "zone_id": zone.id, **settings}
            if previous is not None:
                data["previous"] = previous
            self.writer.record(tx, action, actor, now, data)
            view = zone_view(row, overrides_config=any(z.id == zone.id for z in self.configured(camera_id)))
            self._changed(tx, camera_id, zone.id, "created" if previous is None else "updated", view)
            return view

    async def delete(self, camera_id: str, zone_id: str, actor: Actor) -> dict[str, Any]:
        self.camera(camera_id)
        async with self.writer.tx() as tx:
            row = await self._editable(tx.session, camera_id, zone_id)
            now = self.clock()
            self.writer.record(tx, ZONE_DELETED, actor, now, {"camera_id": camera_id, "zone_id": zone_id,
                                                               "name": row.name, "polygon": row.polygon})
            await tx.session.delete(row)
            self._changed(tx, camera_id, zone_id, "deleted", None)
            return {"camera_id": camera_id, "zone_id": zone_id, "deleted": True}

    async def set_reference(self, camera_id: str, zone_id: str, jpeg: bytes, frame_time: float, width: int,
                            height: int, actor: Actor) -> dict[str, Any]:
        """Stores a frame (JPEG) as the zone's clear reference; the officer confirmed the exit is clear now."""
        self.camera(camera_id)
        if not jpeg.startswith(b"\xff\xd8"):
            raise BadRequest("the reference must be a JPEG frame")
        digest = hashlib.sha256(jpeg).hexdigest()
        async with self.writer.tx() as tx:
            row = await self._editable(tx.session, camera_id, zone_id)
            now = self.clock()
            row.reference_jpeg, row.reference_sha256, row.reference_size = jpeg, digest, len(jpeg)
            row.reference_width, row.reference_height = width, height
            row.reference_at, row.reference_by = now, actor.username
            row.updated_at, row.updated_by = now, actor.username
            self.writer.record(tx, REFERENCE_CAPTURED, actor, now, {
                "camera_id": camera_id, "zone_id": zone_id, "sha256": digest, "size": len(jpeg), "width": width,
                "height": height, "frame_time": datetime.fromtimestamp(frame_time, UTC).isoformat()})
            view = zone_view(row, overrides_config=any(z.id == zone_id for z in self.configured(camera_id)))
            self._changed(tx, camera_id, zone_id, "reference_captured", view)
            return view


# ---------------------------------------------------------------- the detectors follow the zones

class ZoneTarget(Protocol):
    """What follows the zones: detectors.pipeline.DetectorService."""

    async def set_exit_zones(self, camera_id: str, zones: list[ExitZoneConfig],
                             references: dict[str, np.ndarray]) -> bool: ...


def decode_references(jpegs: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Blocking: zone id → BGR frame; an undecodable image is left out (that zone uses the camera's reference)."""
    out = {}
    for zone_id, data in jpegs.items():
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("exit zone %s: stored clear reference is not a decodable image", zone_id)
            continue
        out[zone_id] = img
    return out


class ExitZoneFollower:
    """Applies the database's zones to the detectors at start and after every `exit_zone.changed`."""

    def __init__(self, zones: ExitZoneService, target: ZoneTarget) -> None:
        self.zones = zones
        self.target = target
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribes first, so a change made while the stored zones are being applied is not missed."""
        self._sub = self.zones.bus.subscribe([ev.EXIT_ZONE_CHANGED])
        for camera_id in await self.zones.cameras_with_zones():
            await self.apply(camera_id)
        self._task = asyncio.create_task(self._run(self._sub), name="exit-zones-follow")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            self._sub.close()

    async def _run(self, sub: Subscription) -> None:
        async for event in sub:
            await self.apply(str(event.data["camera_id"]))

    async def apply(self, camera_id: str) -> None:
        """Re-reads the camera's zones (the latest committed state, whatever order events came in) and applies them."""
        try:
            zones, jpegs = await self.zones.effective(camera_id)
            refs = await asyncio.to_thread(decode_references, jpegs)
            watched = await self.target.set_exit_zones(camera_id, zones, refs)
        except Exception:
            log.exception("camera %s: exit zones could not be applied to the detectors", camera_id)
            return
        if not watched:
            log.info("camera %s: exit zones saved, but no detector here watches this camera", camera_id)
        self.zones.bus.publish(Event(ev.EXIT_ZONE_APPLIED, {
            "camera_id": camera_id, "zone_ids": [z.id for z in zones], "references": sorted(refs),
            "watched": watched}))


EXIT_ZONES = web.AppKey("exit_zones", ExitZoneService)


async def exit_zones_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the core): the exit-zone service the console and the detectors share."""
    app[EXIT_ZONES] = ExitZoneService(app[WRITER], app[CONFIG], app[SERVICE].clock)
    yield
