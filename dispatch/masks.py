"""Smoke/fire detection masks drawn in the console: regions that look like fire but are not (a kitchen stove, a lit
sign). A smoke/fire box at least half inside a camera's masks is dropped (detectors/fire.py `FireDetector.keep`).

Console masks are stored per camera (table `detector_masks`), recorded (`detector_mask.created|updated|deleted`),
announced with `detector_mask.changed` after commit and applied live (`detector_mask.applied`) by the same machinery
as exit zones (dispatch/regions.py). The config file's masks (`detectors.cameras[].masks`, polygons without ids)
are listed read-only as `config:1`, `config:2`, ... (a colon: no console id can take that form); the detectors get
both, config first.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.detectors import REGION_ID, Point, check_polygon
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.models import DetectorMask
from dispatch.regions import RegionStore, RegionTarget, check_area, console_view, rounded, validated
from dispatch.state import TransitionError

CONFIG_PREFIX = "config:"


class MaskSpec(BaseModel):
    """A console mask as the detectors take it (the config file's masks have no id or name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(..., pattern=REGION_ID, description="Stable id.")
    name: str = Field("", max_length=100, description="Shown to officers, e.g. 厨房灶台.")
    polygon: list[Point] = Field(..., min_length=3, description="Outline, normalised (x, y) points (0..1).")

    @field_validator("polygon")
    @classmethod
    def _inside(cls, v: list[Point]) -> list[Point]:
        return check_polygon(v)


def mask_spec(mask_id: str, fields: dict[str, Any]) -> MaskSpec:
    """The service's own check of a URL id and body (the API body model is only the first line): 400 on any fault."""
    spec = validated(MaskSpec, {"id": mask_id, **fields})
    check_area(spec.polygon)
    return spec


class MaskService(RegionStore[DetectorMask]):
    """Console detection masks of every camera; the config file's masks are read from the config, never written."""

    model = DetectorMask
    kind = "detector_mask"
    noun = "mask"
    key = "mask"
    changed = ev.DETECTOR_MASK_CHANGED
    applied = ev.DETECTOR_MASK_APPLIED

    def configured(self, camera_id: str) -> list[list[Point]]:
        """The camera's masks from the config file (`detectors.cameras[].masks`)."""
        entry = self.detector_entry(camera_id)
        return [list(p) for p in entry.masks] if entry is not None else []

    def view(self, row: DetectorMask) -> dict[str, Any]:
        return console_view(row)

    def read_only_reason(self, camera_id: str, region_id: str) -> str | None:
        n = len(self.configured(camera_id))
        if region_id in {f"{CONFIG_PREFIX}{i}" for i in range(1, n + 1)}:
            return f"mask {region_id!r} comes from the configuration file; change it there"
        return None

    async def list_masks(self, camera_id: str) -> dict[str, Any]:
        """Console masks, then the config file's (read-only)."""
        self.camera(camera_id)
        masks = [self.view(r) for r in await self.rows(camera_id)]
        masks += [{"id": f"{CONFIG_PREFIX}{i}", "name": "", "polygon": [list(p) for p in poly], "source": "config",
                   "read_only": True} for i, poly in enumerate(self.configured(camera_id), 1)]
        return {"camera_id": camera_id, "masks": masks}

    async def effective(self, camera_id: str) -> dict[str, list[Point]]:
        """What smoke/fire detection on this camera ignores, by id: the config file's masks, then the console's."""
        masks = {f"{CONFIG_PREFIX}{i}": poly for i, poly in enumerate(self.configured(camera_id), 1)}
        masks.update((r.zone_id, [(x, y) for x, y in r.polygon]) for r in await self.rows(camera_id))
        return masks

    async def apply_to(self, target: RegionTarget, camera_id: str) -> dict[str, Any]:
        masks = await self.effective(camera_id)
        return {"mask_ids": list(masks), "watched": await target.set_masks(camera_id, list(masks.values()))}

    async def put(self, camera_id: str, mask: MaskSpec, actor: Actor) -> dict[str, Any]:
        """Creates or replaces a console mask."""
        return await self._put(camera_id, mask.id, {"name": mask.name, "polygon": rounded(mask.polygon)}, actor)

    def check_writable(self, camera_id: str, mask_id: str) -> None:
        """409 for the config file's masks (before the body is judged: they cannot be replaced here)."""
        self.camera(camera_id)
        reason = self.read_only_reason(camera_id, mask_id)
        if reason is not None:
            raise TransitionError(reason)
