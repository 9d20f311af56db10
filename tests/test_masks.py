"""Smoke/fire detection masks drawn in the console: stored per camera, recorded in the hash chain, role-checked,
refused whole on bad input, listed with the config file's masks (read-only), and applied live to a running
DetectorService, whose FireDetector then drops a box inside the mask (and again at its next start).

Same camera and helpers as tests/test_exit_zones.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from config.schema import FirelinkConfig
from console.appkeys import BUS, DB, DETECTORS
from detectors.model import Box
from dispatch import events as ev
from dispatch.models import RecordEntry
from dispatch.records import verify
from tests.support import Api, base_config, running_app
from tests.test_exit_zones import CAM, CAM_SECRET, CAM_USER, SQUARE, YAML_ZONE, demo_clip, login, next_event, records_of

MASKS = f"/api/cameras/{CAM}/masks"
YAML_MASK = [[0.7, 0.6], [1.0, 0.6], [1.0, 1.0], [0.7, 1.0]]  # e.g. a lit sign, bottom right


def mask_config(db_url: str, tmp_path: Path, *, detectors: bool = False) -> FirelinkConfig:
    """One camera with one mask and one exit zone in the config file. With detectors: smoke/fire runs (real weights,
    sampled slowly) without the verifier, so what a mask does is all that decides a plain grey box."""
    return base_config(
        db_url, None,
        cameras=[{"id": CAM, "unit_id": "hotel-1", "name": "厨房", "url": demo_clip(tmp_path), "loop": True,
                  "username": CAM_USER, "password": CAM_SECRET}],
        video={"evidence_dir": str(tmp_path / "evidence")},
        detectors={"enabled": detectors, "all_cameras": False, "exits": {"person_weights": None},
                   "evidence_dir": str(tmp_path / "detections"),
                   "second_stage": {"verifier": None, "learn_hard_negatives": False},
                   "cameras": [{"camera_id": CAM, "smoke_fire": detectors, "fps": 0.5, "masks": [YAML_MASK],
                                "exits": [] if detectors else [YAML_ZONE]}]})


async def put(api: Api, mask_id: str, body: dict[str, Any]) -> Any:
    status, result = await api.request("PUT", f"{MASKS}/{mask_id}", body)
    assert status == 200, result
    return result


def listed(body: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(m["id"], m["source"], m["read_only"]) for m in body["masks"]]


# ------------------------------------------------------------------ API

async def test_mask_lifecycle_is_stored_recorded_and_published(db_url: str, tmp_path: Path,
                                                               users: dict[str, Api]) -> None:
    async with running_app(mask_config(db_url, tmp_path), mqtt=False) as app:
        officer = await login(app, users, "officer")
        assessor = await login(app, users, "assessor")
        bodies: list[Any] = []
        with app.app[BUS].subscribe([ev.DETECTOR_MASK_CHANGED]) as sub:
            first = await assessor.get(MASKS)
            assert listed(first) == [("config:1", "config", True)] and first["masks"][0]["polygon"] == YAML_MASK

            made = await put(officer, "stove", {"name": "厨房灶台", "polygon": SQUARE})
            assert made | {"created_at": None, "updated_at": None} == {
                "id": "stove", "name": "厨房灶台", "polygon": SQUARE, "source": "console", "read_only": False,
                "created_at": None, "created_by": "officer", "updated_at": None, "updated_by": "officer"}
            moved = [[0.2, 0.2], [0.6, 0.2], [0.4, 0.9]]
            bodies += [made, await put(officer, "stove", {"name": "灶台", "polygon": moved})]
            bodies.append(await assessor.get(MASKS))
            assert listed(bodies[-1]) == [("stove", "console", False), ("config:1", "config", True)]
            assert bodies[-1]["masks"][0]["polygon"] == moved

            for method in ("PUT", "DELETE"):  # the config file's masks are changed there
                status, answer = await officer.request(method, f"{MASKS}/config:1", {"polygon": SQUARE})
                assert status == 409 and "configuration file" in answer["error"], (method, answer)
            bodies.append(await officer.request("DELETE", f"{MASKS}/stove"))
            assert bodies[-1][0] == 200
            assert listed(await assessor.get(MASKS)) == [("config:1", "config", True)]
            assert [(e.data["mask_id"], e.data["change"]) for e in iter(sub.get_nowait, None)] == [
                ("stove", "created"), ("stove", "updated"), ("stove", "deleted")]

        assert [z["id"] for z in (await assessor.get(f"/api/cameras/{CAM}/exit-zones"))["zones"]] == ["north"]
        records = await records_of(app, "detector_mask.")
        assert [(r.action, r.actor, r.data["mask_id"]) for r in records] == [
            ("detector_mask.created", "officer", "stove"), ("detector_mask.updated", "officer", "stove"),
            ("detector_mask.deleted", "officer", "stove")]
        assert records[1].data["previous"] == {"name": "厨房灶台", "polygon": SQUARE}
        assert records[1].data["polygon"] == moved and records[2].data["polygon"] == moved
        assert await records_of(app, "exit_zone.") == []
        async with app.app[DB].session() as s:
            assert verify((await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()) is None
    text = json.dumps(bodies, ensure_ascii=False)
    assert CAM_SECRET not in text and CAM_USER not in text


BAD_BODIES: list[Any] = [
    {"polygon": SQUARE[:2]},  # two points
    {"polygon": [[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]},  # outside the picture
    {"polygon": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]},  # no area
    {"polygon": "0.1,0.1 0.5,0.1 0.5,0.5"},
    {"polygon": SQUARE, "name": "a\x00b"},
    {"polygon": SQUARE, "name": "长" * 101},
    {"polygon": SQUARE, "dwell_s": 60},  # an exit zone's field
    {"name": "no outline"},
]


async def test_bad_input_and_wrong_roles_change_nothing(db_url: str, tmp_path: Path, users: dict[str, Api]) -> None:
    async with running_app(mask_config(db_url, tmp_path), mqtt=False) as app:
        officer = await login(app, users, "officer")
        for body in BAD_BODIES:
            status, answer = await officer.request("PUT", f"{MASKS}/stove", body)
            assert status == 400 and answer["error"], (body, status, answer)
        for raw in (b'{"polygon": [[NaN, 0.1], [0.5, 0.1], [0.5, 0.5]]}', b'{"polygon": [[0.1, 0.1]', b"\xff"):
            assert (await officer.request("PUT", f"{MASKS}/stove", raw=raw))[0] == 400, raw
        for mask_id in ("bad%20id", "-leading", "x" * 65, "config:7"):
            status, answer = await officer.request("PUT", f"{MASKS}/{mask_id}", {"polygon": SQUARE})
            assert status == 400 and "id" in answer["error"], (mask_id, answer)
        assert (await officer.request("PUT", "/api/cameras/nope/masks/stove", {"polygon": SQUARE}))[0] == 404
        assert (await officer.request("GET", "/api/cameras/nope/masks"))[0] == 404
        assert (await officer.request("DELETE", f"{MASKS}/stove"))[0] == 404

        anon = users["anon"] = Api(app.url)
        assert (await anon.request("GET", MASKS))[0] == 401
        for name in ("hotel", "brigade"):  # hotel-1 owns the camera, still no access to its masks
            other = await login(app, users, name)
            assert (await other.request("GET", MASKS))[0] == 403
            assert (await other.request("PUT", f"{MASKS}/stove", {"polygon": SQUARE}))[0] == 403
        assessor = await login(app, users, "assessor")
        assert (await assessor.request("PUT", f"{MASKS}/stove", {"polygon": SQUARE}))[0] == 403
        assert (await officer.request("PUT", f"{MASKS}/stove", {"polygon": SQUARE}, csrf=False))[0] == 403

        assert listed(await assessor.get(MASKS)) == [("config:1", "config", True)]
        assert await records_of(app, "detector_mask.") == []

        admin = await login(app, users, "admin")
        await put(admin, "stove", {"polygon": SQUARE})
        assert (await assessor.request("DELETE", f"{MASKS}/stove"))[0] == 403
        assert (await officer.request("DELETE", f"{MASKS}/stove", csrf=False))[0] == 403
        assert (await officer.request("DELETE", f"{MASKS}/stove"))[0] == 200
        assert [(r.action, r.actor) for r in await records_of(app, "detector_mask.")] == [
            ("detector_mask.created", "admin"), ("detector_mask.deleted", "officer")]
        spec = await anon.get("/api/openapi.json")
        assert {"get"} <= set(spec["paths"]["/api/cameras/{camera_id}/masks"])
        assert {"put", "delete"} <= set(spec["paths"]["/api/cameras/{camera_id}/masks/{mask_id}"])


# ------------------------------------------------------------------ detectors follow the masks

GREY = np.full((400, 400, 3), 128, np.uint8)  # passes the colour rules as smoke; no verifier in this config
SMOKE = Box(0, 0.9, (50.0, 50.0, 150.0, 150.0))  # inside QUARTER
QUARTER = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]


async def test_saved_mask_makes_the_running_detectors_drop_a_box_inside_it(
        sqlite_url: str, tmp_path: Path, users: dict[str, Api]) -> None:
    cfg = mask_config(sqlite_url, tmp_path, detectors=True)
    async with running_app(cfg, mqtt=False) as app:
        pipeline = app.app[DETECTORS].pipelines[CAM]
        fire = pipeline.fire
        assert fire is not None and [list(map(list, m)) for m in pipeline.cam.masks] == [YAML_MASK]
        assert fire.keep(GREY, [SMOKE], pipeline.cam) != []

        officer = await login(app, users, "officer")
        with app.app[BUS].subscribe([ev.DETECTOR_MASK_APPLIED]) as applied:
            await put(officer, "stove", {"name": "厨房灶台", "polygon": QUARTER})
            done = await next_event(applied)
            assert done["mask_ids"] == ["config:1", "stove"] and done["watched"] is True
            assert fire.keep(GREY, [SMOKE], pipeline.cam) == []
            assert pipeline.cam.smoke_fire and pipeline.cam.fps == 0.5  # only the masks were replaced

    async with running_app(cfg, mqtt=False) as app:  # `firelink run` again: the stored mask applies at start
        pipeline = app.app[DETECTORS].pipelines[CAM]
        assert pipeline.fire is not None and pipeline.fire.keep(GREY, [SMOKE], pipeline.cam) == []
        officer = await login(app, users, "officer")
        with app.app[BUS].subscribe([ev.DETECTOR_MASK_APPLIED]) as applied:
            assert (await officer.request("DELETE", f"{MASKS}/stove"))[0] == 200
            assert (await next_event(applied))["mask_ids"] == ["config:1"]
            assert pipeline.fire.keep(GREY, [SMOKE], pipeline.cam) != []
