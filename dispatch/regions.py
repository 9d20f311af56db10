"""Outlines officers draw on a camera's picture (exit zones, smoke/fire detection masks): what both kinds share.

`RegionStore` keeps one kind's console outlines per camera. Every change goes through the core's single Writer (one
transaction, one hash-chained record entry `{kind}.created|updated|deleted` with actor and time) and publishes
`{kind}.changed` after the commit. Outlines of the config file are read-only; each kind says which ids those are.
`RegionFollower` hands a changed camera's merged outlines (config + console) to the running detectors and publishes
`{kind}.applied`, so `firelink run` picks changes up without a restart and the console can show that it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.cameras import CameraConfig
from config.detectors import CameraDetectors, ExitZoneConfig, Point
from config.schema import FirelinkConfig
from dispatch.actor import Actor
from dispatch.errors import BadRequest, NotFound
from dispatch.events import Event, EventBus, Subscription
from dispatch.models import CameraRegion
from dispatch.state import TransitionError
from dispatch.views import iso
from dispatch.writer import Writer
from ingest.contract import utcnow

log = logging.getLogger(__name__)

MIN_AREA = 0.001  # of the frame: smaller outlines hold no analysis cell / no pixel worth masking (a mis-click)
MAX_PER_CAMERA = 32

R = TypeVar("R", bound=CameraRegion)
S = TypeVar("S", bound=BaseModel)


def polygon_area(points: Sequence[tuple[float, float]]) -> float:
    """Shoelace area of a normalised polygon (fraction of the frame)."""
    n = len(points)
    twice = sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))
    return abs(twice) / 2


def validated(cls: type[S], fields: dict[str, Any]) -> S:
    """`cls` (a config model: the detectors' own rules) from a request's fields; any failure is one 400 naming the
    fields, and nothing is written."""
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        raise BadRequest("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'outline'}: {e['msg']}"
                                   for e in exc.errors())) from None


def check_area(polygon: Sequence[tuple[float, float]]) -> None:
    if polygon_area(polygon) < MIN_AREA:
        raise BadRequest(f"the polygon is too small (under {MIN_AREA:.1%} of the picture)")


def rounded(polygon: Sequence[tuple[float, float]]) -> list[list[float]]:
    """As stored: [x, y] lists at 5 decimals (0.01 px on a 1920-px picture)."""
    return [[round(x, 5), round(y, 5)] for x, y in polygon]


def console_view(row: CameraRegion) -> dict[str, Any]:
    """What every console outline shows, whatever its kind."""
    return {"id": row.zone_id, "name": row.name, "polygon": row.polygon, "source": "console", "read_only": False,
            "created_at": iso(row.created_at), "created_by": row.created_by, "updated_at": iso(row.updated_at),
            "updated_by": row.updated_by}


class RegionStore(ABC, Generic[R]):
    """Console outlines of one kind for every camera; the config file's outlines are read, never written."""

    model: type[R]
    kind: ClassVar[str]  # "exit_zone" | "detector_mask": record actions {kind}.created|updated|deleted
    noun: ClassVar[str]  # in messages: "exit zone" | "mask"
    key: ClassVar[str]  # events carry f"{key}_id" and the view under `key` ("zone" | "mask")
    changed: ClassVar[str]  # bus event after every commit
    applied: ClassVar[str]  # bus event once the detectors took a camera's outlines

    def __init__(self, writer: Writer, cfg: FirelinkConfig, clock: Callable[[], datetime] = utcnow) -> None:
        self.writer = writer
        self.db = writer.db
        self.bus: EventBus = writer.bus
        self.cfg = cfg
        self.clock = clock

    # ------------------------------------------------------------ what each kind says

    @abstractmethod
    def view(self, row: R) -> dict[str, Any]:
        """The outline as the API shows it."""

    @abstractmethod
    def read_only_reason(self, camera_id: str, region_id: str) -> str | None:
        """Why `region_id` cannot be changed here (it is the config file's), or None."""

    @abstractmethod
    async def apply_to(self, target: RegionTarget, camera_id: str) -> dict[str, Any]:
        """Hands the camera's merged outlines to the detectors; the `applied` event's data (with `watched`)."""

    # ------------------------------------------------------------ reading

    def camera(self, camera_id: str) -> CameraConfig:
        cam = next((c for c in self.cfg.cameras if c.id == camera_id), None)
        if cam is None:
            raise NotFound(f"unknown camera {camera_id!r}")
        return cam

    def detector_entry(self, camera_id: str) -> CameraDetectors | None:
        """The camera's `detectors.cameras[]` entry of the config file, if any."""
        return next((c for c in self.cfg.detectors.cameras if c.camera_id == camera_id), None)

    async def _rows(self, s: AsyncSession, camera_id: str) -> list[R]:
        m = self.model
        rows = await s.scalars(select(m).where(m.camera_id == camera_id).order_by(m.id))
        return list(rows.all())

    async def rows(self, camera_id: str) -> list[R]:
        async with self.db.session() as s:
            return await self._rows(s, camera_id)

    async def cameras_with_rows(self) -> list[str]:
        async with self.db.session() as s:
            return sorted(set((await s.scalars(select(self.model.camera_id))).all()))

    async def _editable(self, s: AsyncSession, camera_id: str, region_id: str) -> R:
        """The console outline, or 404 (none) / 409 (only in the config file: edit it there)."""
        m = self.model
        row = await s.scalar(select(m).where(m.camera_id == camera_id, m.zone_id == region_id))
        if row is not None:
            return row
        reason = self.read_only_reason(camera_id, region_id)
        if reason is not None:
            raise TransitionError(reason)
        raise NotFound(f"camera {camera_id!r} has no {self.noun} {region_id!r}")

    # ------------------------------------------------------------ writing

    def _event(self, camera_id: str, region_id: str, change: str, view: dict[str, Any] | None) -> Event:
        return Event(self.changed, {"camera_id": camera_id, f"{self.key}_id": region_id, "change": change,
                                    self.key: view})

    async def _put(self, camera_id: str, region_id: str, settings: dict[str, Any], actor: Actor) -> dict[str, Any]:
        """Creates or replaces a console outline with `settings` (column → value); the record of an update keeps
        the previous settings. Columns not in `settings` (an exit's clear reference) are kept."""
        self.camera(camera_id)
        async with self.writer.tx() as tx:
            s = tx.session
            now = self.clock()
            rows = await self._rows(s, camera_id)
            row = next((r for r in rows if r.zone_id == region_id), None)
            previous: dict[str, Any] | None = None
            if row is None:
                if len(rows) >= MAX_PER_CAMERA:
                    raise BadRequest(f"at most {MAX_PER_CAMERA} {self.noun}s per camera")
                row = self.model(camera_id=camera_id, zone_id=region_id, created_at=now, created_by=actor.username,
                                 **settings)
                s.add(row)
            else:
                previous = {k: getattr(row, k) for k in settings}
                for k, v in settings.items():
                    setattr(row, k, v)
            row.updated_at, row.updated_by = now, actor.username
            await s.flush()
            data = {"camera_id": camera_id, f"{self.key}_id": region_id, **settings}
            if previous is not None:
                data["previous"] = previous
            change = "created" if previous is None else "updated"
            self.writer.record(tx, f"{self.kind}.{change}", actor, now, data)
            view = self.view(row)
            tx.events.append(self._event(camera_id, region_id, change, view))
            return view

    async def delete(self, camera_id: str, region_id: str, actor: Actor) -> dict[str, Any]:
        self.camera(camera_id)
        async with self.writer.tx() as tx:
            row = await self._editable(tx.session, camera_id, region_id)
            now = self.clock()
            self.writer.record(tx, f"{self.kind}.deleted", actor, now, {
                "camera_id": camera_id, f"{self.key}_id": region_id, "name": row.name, "polygon": row.polygon})
            await tx.session.delete(row)
            tx.events.append(self._event(camera_id, region_id, "deleted", None))
            return {"camera_id": camera_id, f"{self.key}_id": region_id, "deleted": True}


# ---------------------------------------------------------------- the detectors follow the outlines

class RegionTarget(Protocol):
    """What follows the outlines: detectors.pipeline.DetectorService."""

    async def set_exit_zones(self, camera_id: str, zones: list[ExitZoneConfig],
                             references: dict[str, np.ndarray]) -> bool: ...

    async def set_masks(self, camera_id: str, masks: list[list[Point]]) -> bool: ...


class RegionFollower:
    """Applies the database's outlines of every kind to the detectors at start and after every `{kind}.changed`."""

    def __init__(self, stores: Sequence[RegionStore[Any]], target: RegionTarget) -> None:
        self.stores = {s.changed: s for s in stores}
        self.target = target
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribes first, so a change made while the stored outlines are being applied is not missed."""
        bus = next(iter(self.stores.values())).bus
        self._sub = bus.subscribe(list(self.stores))
        for store in self.stores.values():
            for camera_id in await store.cameras_with_rows():
                await self.apply(store, camera_id)
        self._task = asyncio.create_task(self._run(self._sub), name="regions-follow")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            self._sub.close()

    async def _run(self, sub: Subscription) -> None:
        async for event in sub:
            await self.apply(self.stores[event.type], str(event.data["camera_id"]))

    async def apply(self, store: RegionStore[Any], camera_id: str) -> None:
        """Re-reads the camera's outlines (the latest committed state, whatever order events came in) and applies
        them; a failure is logged and leaves the detectors as they were."""
        try:
            data = await store.apply_to(self.target, camera_id)
        except Exception:
            log.exception("camera %s: %ss could not be applied to the detectors", camera_id, store.noun)
            return
        if not data["watched"]:
            log.info("camera %s: %ss saved, but no detector here watches this camera", camera_id, store.noun)
        store.bus.publish(Event(store.applied, {"camera_id": camera_id, **data}))
