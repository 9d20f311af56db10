"""HTTP API of the outlines drawn in the console (exit zones, smoke/fire detection masks): `routes`, served by
console.web with the console's others.

Officers (admin, duty officer) draw, replace and delete zones and masks, and capture a zone's clear reference from
the camera's current frame; the assessor reads. Outlines of the config file are listed read-only. Responses name
cameras by id only: a camera's source URL and credentials never appear.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, field_validator

from console.api import _Body, actor
from console.appkeys import CAMERAS, EXIT_ZONES, MASKS
from console.routing import OFFICERS, STAFF, RouteTable, error
from dispatch.exit_zones import ExitZoneService, zone_spec
from dispatch.masks import MaskService, mask_spec
from dispatch.state import TransitionError
from ingest.integrity import IntegrityError

routes = RouteTable()
MAX_POINTS = 64
TAG = "exit-zones"
ZONES = "/api/cameras/{camera_id}/exit-zones"
ZONE = ZONES + "/{zone_id}"
MASK_TAG = "masks"
MASKS_PATH = "/api/cameras/{camera_id}/masks"
MASK_PATH = MASKS_PATH + "/{mask_id}"


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class OutlineBody(_Body):
    name: str = Field("", max_length=100, description="Shown to officers, e.g. 北侧安全出口, 厨房灶台.")
    polygon: list[tuple[Fraction, Fraction]] = Field(
        ..., min_length=3, max_length=MAX_POINTS,
        description="Outline as normalised [x, y] points: fractions (0..1) of the picture's width and height.")

    @field_validator("polygon")
    @classmethod
    def _inside_picture(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for x, y in v:
            if not (math.isfinite(x) and math.isfinite(y) and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point ({x}, {y}) is outside the picture (coordinates are fractions 0..1)")
        return v


class MaskBody(OutlineBody):
    """A smoke/fire detection mask: detections at least half inside it are ignored."""


class ZoneBody(OutlineBody):
    dwell_s: float = Field(600.0, gt=0, le=7 * 86400, allow_inf_nan=False,
                           description="Seconds an obstruction must last before a hazard is raised.")
    min_fraction: float = Field(0.25, gt=0, le=1, allow_inf_nan=False,
                                description="Share of the zone that must be occupied to count as blocked.")
    clear_s: float = Field(30.0, ge=0, le=86400, allow_inf_nan=False,
                           description="Seconds below half that share that clear a raised hazard.")


class CaptureBody(_Body):
    confirm_clear: Literal[True] = Field(
        ..., description="The officer confirms the exit is clear now (the frame becomes what 'clear' looks like).")


def zones(request: web.Request) -> ExitZoneService:
    return request.app[EXIT_ZONES]


def _ids(request: web.Request) -> tuple[str, str]:
    return request.match_info["camera_id"], request.match_info["zone_id"]


@routes.route("GET", ZONES, "List a camera's exit zones", roles=STAFF, tag=TAG)
async def get_zones(request: web.Request, _: None) -> dict[str, Any]:
    return await zones(request).list_zones(request.match_info["camera_id"])


@routes.route("PUT", ZONE, "Create or replace an exit zone", roles=OFFICERS, body=ZoneBody, tag=TAG)
async def put_zone(request: web.Request, body: ZoneBody) -> dict[str, Any]:
    camera_id, zone_id = _ids(request)
    zones(request).camera(camera_id)  # 404 for an unknown camera before anything about the zone
    return await zones(request).put(camera_id, zone_spec(zone_id, body.model_dump()), actor(request))


@routes.route("DELETE", ZONE, "Delete an exit zone", roles=OFFICERS, tag=TAG)
async def delete_zone(request: web.Request, _: None) -> dict[str, Any]:
    return await zones(request).delete(*_ids(request), actor(request))


@routes.route("POST", ZONE + "/reference", "Capture the zone's clear reference from the live picture now",
              roles=OFFICERS, body=CaptureBody, tag=TAG)
async def post_reference(request: web.Request, _: CaptureBody) -> dict[str, Any]:
    camera_id, zone_id = _ids(request)
    svc = zones(request)
    await svc.check_editable(camera_id, zone_id)
    frame = await request.app[CAMERAS].snapshot(camera_id)
    if frame is None:
        raise TransitionError(f"camera {camera_id} has no picture right now; cannot capture the reference")
    return await svc.set_reference(camera_id, zone_id, frame.data, frame.ts, frame.width, frame.height,
                                   actor(request))


@routes.route("GET", ZONE + "/reference.jpg", "The zone's clear reference image", roles=STAFF, tag=TAG,
              produces=("image/jpeg",), statuses=(409,))
async def get_reference(request: web.Request, _: None) -> web.StreamResponse:
    try:
        data, digest = await zones(request).reference(*_ids(request))
    except IntegrityError as exc:
        return error(409, str(exc))
    return web.Response(body=data, content_type="image/jpeg", headers={
        "Cache-Control": "private, max-age=60", "X-Content-SHA256": digest,
        "Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff"})


# ------------------------------------------------------------------ smoke/fire detection masks

def masks(request: web.Request) -> MaskService:
    return request.app[MASKS]


@routes.route("GET", MASKS_PATH, "List a camera's detection masks", roles=STAFF, tag=MASK_TAG)
async def get_masks(request: web.Request, _: None) -> dict[str, Any]:
    return await masks(request).list_masks(request.match_info["camera_id"])


@routes.route("PUT", MASK_PATH, "Create or replace a detection mask", roles=OFFICERS, body=MaskBody, tag=MASK_TAG)
async def put_mask(request: web.Request, body: MaskBody) -> dict[str, Any]:
    camera_id, mask_id = request.match_info["camera_id"], request.match_info["mask_id"]
    svc = masks(request)
    svc.check_writable(camera_id, mask_id)  # 404 unknown camera, 409 a config-file mask, before judging the body
    return await svc.put(camera_id, mask_spec(mask_id, body.model_dump()), actor(request))


@routes.route("DELETE", MASK_PATH, "Delete a detection mask", roles=OFFICERS, tag=MASK_TAG)
async def delete_mask(request: web.Request, _: None) -> dict[str, Any]:
    return await masks(request).delete(request.match_info["camera_id"], request.match_info["mask_id"],
                                       actor(request))
