"""Exit zones drawn in the console: stored per camera, recorded, and applied live to the detectors.

A zone is a polygon (normalised 0..1 points) on one camera's view with its dwell / fraction / clear settings,
plus a clear reference frame captured when the exit was known to be clear. Zones of the config file
(`detectors.cameras[].exits`) are read-only here; a console zone with the same id replaces one (the database wins).

Storage, record entries (`exit_zone.created|updated|deleted`, plus `exit_zone.reference_captured` here), the
`exit_zone.changed` event after commit and the follower that applies zones to the running detectors
(`exit_zone.applied`) are shared with detection masks: dispatch/regions.py.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import undefer

from config.detectors import ExitZoneConfig
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.errors import BadRequest, NotFound
from dispatch.models import ExitZone
from dispatch.regions import RegionStore, RegionTarget, check_area, console_view, rounded, validated
from dispatch.views import iso
from ingest.integrity import IntegrityError, sha256_bytes

log = logging.getLogger(__name__)

REFERENCE_CAPTURED = "exit_zone.reference_captured"  # record action (the others: RegionStore)


def zone_spec(zone_id: str, fields: dict[str, Any]) -> ExitZoneConfig:
    """An ExitZoneConfig from an id and settings, with the detectors' own rules (id pattern, polygon in 0..1)."""
    zone = validated(ExitZoneConfig, {"id": zone_id, **fields})
    check_area(zone.polygon)
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
    return {**console_view(z), "dwell_s": z.dwell_s, "min_fraction": z.min_fraction, "clear_s": z.clear_s,
            "overrides_config": overrides_config, "reference": ref}


def as_config(z: ExitZone) -> ExitZoneConfig:
    return ExitZoneConfig(id=z.zone_id, name=z.name, polygon=[(x, y) for x, y in z.polygon], dwell_s=z.dwell_s,
                          min_fraction=z.min_fraction, clear_s=z.clear_s)


def _settings(z: ExitZoneConfig) -> dict[str, Any]:
    return {"name": z.name, "polygon": rounded(z.polygon), "dwell_s": z.dwell_s, "min_fraction": z.min_fraction,
            "clear_s": z.clear_s}


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


class ExitZoneService(RegionStore[ExitZone]):
    """Console exit zones of every camera; config-file zones are read from the config, never written."""

    model = ExitZone
    kind = "exit_zone"
    noun = "exit zone"
    key = "zone"
    changed = ev.EXIT_ZONE_CHANGED
    applied = ev.EXIT_ZONE_APPLIED

    # ------------------------------------------------------------ reading

    def configured(self, camera_id: str) -> list[ExitZoneConfig]:
        """The camera's zones from the config file (`detectors.cameras[].exits`)."""
        entry = self.detector_entry(camera_id)
        return list(entry.exits) if entry is not None else []

    def view(self, row: ExitZone) -> dict[str, Any]:
        return zone_view(row, overrides_config=any(z.id == row.zone_id for z in self.configured(row.camera_id)))

    def read_only_reason(self, camera_id: str, region_id: str) -> str | None:
        if any(z.id == region_id for z in self.configured(camera_id)):
            return (f"exit zone {region_id!r} comes from the configuration file; change it there "
                    "(or save a zone with this id in the console to replace it)")
        return None

    async def list_zones(self, camera_id: str) -> dict[str, Any]:
        """Console zones, then the config file's zones not replaced by one (marked read-only)."""
        self.camera(camera_id)
        configured = self.configured(camera_id)
        rows = await self.rows(camera_id)
        mine = {r.zone_id for r in rows}
        zones = [self.view(r) for r in rows] + [config_view(z) for z in configured if z.id not in mine]
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

    async def apply_to(self, target: RegionTarget, camera_id: str) -> dict[str, Any]:
        zones, jpegs = await self.effective(camera_id)
        refs = await asyncio.to_thread(decode_references, jpegs)
        watched = await target.set_exit_zones(camera_id, zones, refs)
        return {"zone_ids": [z.id for z in zones], "references": sorted(refs), "watched": watched}

    async def reference(self, camera_id: str, zone_id: str) -> tuple[bytes, str]:
        """The clear reference JPEG of a console zone and its SHA-256."""
        self.camera(camera_id)
        async with self.db.session() as s:
            row = await s.scalar(select(ExitZone).where(ExitZone.camera_id == camera_id, ExitZone.zone_id == zone_id)
                                 .options(undefer(ExitZone.reference_jpeg)))
        if row is None or row.reference_jpeg is None or row.reference_sha256 is None:
            raise NotFound(f"exit zone {zone_id!r} of camera {camera_id!r} has no clear reference")
        if await asyncio.to_thread(sha256_bytes, row.reference_jpeg) != row.reference_sha256:
            log.error("clear reference of exit zone %r (camera %r) fails its SHA-256: refused", zone_id, camera_id)
            raise IntegrityError(f"the clear reference of exit zone {zone_id!r} was altered: it no longer matches "
                                 "its recorded SHA-256; not served")
        return row.reference_jpeg, row.reference_sha256

    # ------------------------------------------------------------ writing

    async def check_editable(self, camera_id: str, zone_id: str) -> None:
        """Raises what capturing a reference would (before a snapshot is taken for nothing)."""
        self.camera(camera_id)
        async with self.db.session() as s:
            await self._editable(s, camera_id, zone_id)

    async def put(self, camera_id: str, zone: ExitZoneConfig, actor: Actor) -> dict[str, Any]:
        """Creates or replaces a console zone (its clear reference, if any, is kept)."""
        return await self._put(camera_id, zone.id, _settings(zone), actor)

    async def set_reference(self, camera_id: str, zone_id: str, jpeg: bytes, frame_time: float, width: int,
                            height: int, actor: Actor) -> dict[str, Any]:
        """Stores a frame (JPEG) as the zone's clear reference; the officer confirmed the exit is clear now."""
        self.camera(camera_id)
        if not jpeg.startswith(b"\xff\xd8"):
            raise BadRequest("the reference must be a JPEG frame")
        digest = sha256_bytes(jpeg)
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
            view = self.view(row)
            tx.events.append(self._event(camera_id, zone_id, "reference_captured", view))
            return view
