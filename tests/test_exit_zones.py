"""Exit zones drawn in the console: stored per camera, recorded in the hash chain, role-checked, refused whole on bad
input, and applied live to a running DetectorService (and again at its next start).

The camera is a real demo camera (OpenCV's vtest.avi from var/clips, or an ffmpeg test clip) opened by the real app.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from config.detectors import ExitAnalysis, ExitZoneConfig
from config.schema import FirelinkConfig
from console.appkeys import BUS, CAMERAS, DB, DETECTORS
from detectors.exits import ExitWatcher
from dispatch import events as ev
from dispatch.events import Subscription
from dispatch.models import RecordEntry
from dispatch.records import verify
from ingest.contract import ExitHazard
from tests.support import ROOT, Api, RunningApp, base_config, running_app

CAM = "cam-exit"
CAM_USER, CAM_SECRET = "camuser", "s3cret-cam-pw"
ZONES = f"/api/cameras/{CAM}/exit-zones"
SQUARE = [[0.1, 0.2], [0.5, 0.2], [0.5, 0.8], [0.1, 0.8]]
YAML_ZONE = {"id": "north", "name": "北门", "polygon": [[0.6, 0.1], [0.9, 0.1], [0.9, 0.5], [0.6, 0.5]],
             "dwell_s": 300}
PASSWORDS = {"admin": "admin-pw", "officer": "officer-pw", "hotel": "hotel-pw", "brigade": "brigade-pw",
             "assessor": "assessor-pw"}


def demo_clip(tmp_path: Path) -> str:
    clip = ROOT / "var" / "clips" / "vtest.avi"
    if clip.exists():
        return str(clip)
    out = tmp_path / "exit.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=320x240:rate=10", "-t", "3", "-pix_fmt", "yuv420p", str(out)], check=True)
    return str(out)


def zone_config(db_url: str, tmp_path: Path, *, detectors: bool = False) -> FirelinkConfig:
    """One camera (with credentials that must never show) and one exit zone in the config file."""
    return base_config(
        db_url, None,
        cameras=[{"id": CAM, "unit_id": "hotel-1", "name": "安全出口", "url": demo_clip(tmp_path), "loop": True,
                  "username": CAM_USER, "password": CAM_SECRET}],
        video={"evidence_dir": str(tmp_path / "evidence")},
        detectors={"enabled": detectors, "all_cameras": False, "exits": {"person_weights": None},
                   "cameras": [{"camera_id": CAM, "smoke_fire": False, "exits": [YAML_ZONE]}]})


async def login(app: RunningApp, users: dict[str, Api], name: str) -> Api:
    api = users[name] = Api(app.url)
    await api.login(name, PASSWORDS[name])
    return api


async def first_frame(app: RunningApp) -> tuple[int, int]:
    """Waits for the camera's first decoded frame; its (height, width)."""
    got = await asyncio.wait_for(app.app[CAMERAS].get(CAM).frames.wait_newer(0), 20)
    assert got is not None
    return got[1].image.shape[:2]


async def records_of(app: RunningApp, prefix: str = "exit_zone.") -> list[RecordEntry]:
    """Record entries whose action starts with `prefix`, oldest first."""
    async with app.app[DB].session() as s:
        return list((await s.scalars(select(RecordEntry).where(RecordEntry.action.like(f"{prefix}%"))
                                     .order_by(RecordEntry.id))).all())


async def next_event(sub: Subscription, camera_id: str = CAM) -> dict[str, Any]:
    while True:
        event = await asyncio.wait_for(sub.get(), 20)
        if event.data["camera_id"] == camera_id:
            return event.data


def by_id(listed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {z["id"]: z for z in listed["zones"]}


# ------------------------------------------------------------------ API

async def test_zone_lifecycle_is_stored_recorded_and_published(db_url: str, tmp_path: Path,
                                                               users: dict[str, Api],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_app(zone_config(db_url, tmp_path), mqtt=False) as app:
        officer = await login(app, users, "officer")
        assessor = await login(app, users, "assessor")
        bodies: list[Any] = []
        with app.app[BUS].subscribe([ev.EXIT_ZONE_CHANGED]) as sub:
            listed = await assessor.get(ZONES)
            assert [(z["id"], z["source"], z["read_only"]) for z in listed["zones"]] == [("north", "config", True)]

            made = await officer.request("PUT", f"{ZONES}/exit-1", {"name": "北侧安全出口", "polygon": SQUARE,
                                                                    "dwell_s": 120, "min_fraction": 0.3})
            assert made[0] == 200, made
            bodies.append(made[1])
            assert made[1] | {"created_at": None, "updated_at": None} == {
                "id": "exit-1", "name": "北侧安全出口", "polygon": SQUARE, "dwell_s": 120, "min_fraction": 0.3,
                "clear_s": 30, "source": "console", "read_only": False, "overrides_config": False,
                "reference": None, "created_at": None, "created_by": "officer", "updated_at": None,
                "updated_by": "officer"}
            assert sub.get_nowait() is not None

            moved = [[0.2, 0.2], [0.6, 0.2], [0.4, 0.9]]
            bodies.append(await put(officer, "exit-1", {"name": "北侧安全出口", "polygon": moved, "dwell_s": 60}))
            bodies.append(await put(officer, "north", {"name": "北门（改）", "polygon": SQUARE}))
            listed = await assessor.get(ZONES)
            bodies.append(listed)
            zones = by_id(listed)
            assert list(zones) == ["exit-1", "north"]
            assert zones["exit-1"]["polygon"] == moved and zones["exit-1"]["dwell_s"] == 60
            assert zones["north"]["source"] == "console" and zones["north"]["overrides_config"] is True

            height, width = await first_frame(app)
            status, captured = await officer.request("POST", f"{ZONES}/exit-1/reference", {"confirm_clear": True})
            assert status == 200, captured
            bodies.append(captured)
            ref = captured["reference"]
            assert (ref["width"], ref["height"]) == (width, height) and ref["captured_by"] == "officer"
            async with assessor.http.get(assessor.base + ref["url"]) as resp:
                assert resp.status == 200 and resp.content_type == "image/jpeg"
                jpeg = await resp.read()
            assert hashlib.sha256(jpeg).hexdigest() == ref["sha256"] == resp.headers["X-Content-SHA256"]
            assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (height, width)

            bodies.append(await officer.request("DELETE", f"{ZONES}/north"))
            assert bodies[-1][0] == 200
            zones = by_id(await assessor.get(ZONES))
            assert zones["north"]["source"] == "config" and zones["exit-1"]["reference"]["sha256"] == ref["sha256"]
            changes = [e.data["change"] for e in iter(sub.get_nowait, None)]
            assert changes == ["updated", "created", "reference_captured", "deleted"]

        records = await records_of(app)
        assert [(r.action, r.actor, r.data["zone_id"]) for r in records] == [
            ("exit_zone.created", "officer", "exit-1"), ("exit_zone.updated", "officer", "exit-1"),
            ("exit_zone.created", "officer", "north"), ("exit_zone.reference_captured", "officer", "exit-1"),
            ("exit_zone.deleted", "officer", "north")]
        assert records[1].data["previous"]["polygon"] == SQUARE and records[1].data["polygon"] == moved
        assert records[3].data["sha256"] == ref["sha256"]
        async with app.app[DB].session() as s:
            assert verify((await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()) is None
    text = json.dumps(bodies, ensure_ascii=False) + caplog.text
    assert CAM_SECRET not in text and CAM_USER not in text


async def put(api: Api, zone_id: str, body: dict[str, Any]) -> Any:
    status, result = await api.request("PUT", f"{ZONES}/{zone_id}", body)
    assert status == 200, result
    return result


BAD_BODIES: list[Any] = [
    {"polygon": SQUARE[:2]},  # two points
    {"polygon": [[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]},  # outside the picture
    {"polygon": [[0.1, -0.1], [0.5, 0.1], [0.5, 0.5]]},
    {"polygon": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]},  # no area
    {"polygon": "0.1,0.1 0.5,0.1 0.5,0.5"},
    {"polygon": SQUARE, "dwell_s": 0},
    {"polygon": SQUARE, "dwell_s": -5},
    {"polygon": SQUARE, "min_fraction": 0},
    {"polygon": SQUARE, "min_fraction": 1.5},
    {"polygon": SQUARE, "clear_s": -1},
    {"polygon": SQUARE, "name": "a\x00b"},
    {"polygon": SQUARE, "reference": "/etc/passwd"},  # unknown field (a path on the server)
    {"name": "no outline"},
]


async def test_bad_input_and_wrong_roles_change_nothing(db_url: str, tmp_path: Path, users: dict[str, Api]) -> None:
    async with running_app(zone_config(db_url, tmp_path), mqtt=False) as app:
        officer = await login(app, users, "officer")
        for body in BAD_BODIES:
            status, answer = await officer.request("PUT", f"{ZONES}/exit-1", body)
            assert status == 400 and answer["error"], (body, status, answer)
        for raw in (b'{"polygon": [[NaN, 0.1], [0.5, 0.1], [0.5, 0.5]]}', b'{"polygon": [[0.1, 0.1]', b"\xff"):
            assert (await officer.request("PUT", f"{ZONES}/exit-1", raw=raw))[0] == 400, raw
        for zone_id in ("bad%20id", "-leading", "x" * 65):
            status, answer = await officer.request("PUT", f"{ZONES}/{zone_id}", {"polygon": SQUARE})
            assert status == 400 and "id" in answer["error"], (zone_id, answer)
        assert (await officer.request("PUT", "/api/cameras/nope/exit-zones/exit-1", {"polygon": SQUARE}))[0] == 404
        assert (await officer.request("GET", "/api/cameras/nope/exit-zones"))[0] == 404
        assert (await officer.request("DELETE", f"{ZONES}/exit-9"))[0] == 404
        assert (await officer.request("POST", f"{ZONES}/exit-9/reference", {"confirm_clear": True}))[0] == 404
        assert (await officer.request("GET", f"{ZONES}/exit-9/reference.jpg"))[0] == 404
        status, answer = await officer.request("DELETE", f"{ZONES}/north")
        assert status == 409 and "configuration file" in answer["error"]
        assert (await officer.request("POST", f"{ZONES}/north/reference", {"confirm_clear": True}))[0] == 409
        for body in ({}, {"confirm_clear": False}):
            assert (await officer.request("POST", f"{ZONES}/north/reference", body))[0] == 400

        # Roles: officers edit, the assessor reads, units and agencies see nothing; CSRF on every change.
        anon = users["anon"] = Api(app.url)
        assert (await anon.request("GET", ZONES))[0] == 401
        for name in ("hotel", "brigade"):  # hotel-1 owns the camera, still no access to its zones
            other = await login(app, users, name)
            assert (await other.request("GET", ZONES))[0] == 403
            assert (await other.request("PUT", f"{ZONES}/exit-1", {"polygon": SQUARE}))[0] == 403
        assessor = await login(app, users, "assessor")
        assert (await assessor.request("PUT", f"{ZONES}/exit-1", {"polygon": SQUARE}))[0] == 403
        assert (await assessor.request("POST", f"{ZONES}/north/reference", {"confirm_clear": True}))[0] == 403
        assert (await officer.request("PUT", f"{ZONES}/exit-1", {"polygon": SQUARE}, csrf=False))[0] == 403

        assert [z["id"] for z in (await assessor.get(ZONES))["zones"]] == ["north"]
        assert await records_of(app) == []

        admin = await login(app, users, "admin")
        await put(admin, "exit-1", {"polygon": SQUARE})
        assert (await assessor.request("DELETE", f"{ZONES}/exit-1"))[0] == 403
        assert (await officer.request("DELETE", f"{ZONES}/exit-1"))[0] == 200
        assert [(r.action, r.actor) for r in await records_of(app)] == [
            ("exit_zone.created", "admin"), ("exit_zone.deleted", "officer")]
        spec = await anon.get("/api/openapi.json")
        assert {"get"} <= set(spec["paths"]["/api/cameras/{camera_id}/exit-zones"])
        assert {"put", "delete"} <= set(spec["paths"]["/api/cameras/{camera_id}/exit-zones/{zone_id}"])


# ------------------------------------------------------------------ detectors follow the zones

def watched(app: RunningApp) -> ExitWatcher:
    exits = app.app[DETECTORS].pipelines[CAM].exits
    assert exits is not None
    return exits


async def test_saved_zone_reaches_the_running_detectors_and_their_next_start(
        sqlite_url: str, tmp_path: Path, users: dict[str, Api]) -> None:
    cfg = zone_config(sqlite_url, tmp_path, detectors=True)
    async with running_app(cfg, mqtt=False) as app:
        assert [z.id for z in watched(app).zone_cfgs] == ["north"]
        officer = await login(app, users, "officer")
        with app.app[BUS].subscribe([ev.EXIT_ZONE_APPLIED]) as applied:
            await put(officer, "exit-1", {"name": "北侧安全出口", "polygon": SQUARE, "dwell_s": 90})
            done = await next_event(applied)
            assert done["zone_ids"] == ["north", "exit-1"] and done["watched"] is True
            zone = next(z for z in watched(app).zone_cfgs if z.id == "exit-1")
            assert (zone.dwell_s, [list(p) for p in zone.polygon]) == (90, SQUARE)

            height, width = await first_frame(app)
            await officer.post(f"{ZONES}/exit-1/reference", {"confirm_clear": True})
            assert (await next_event(applied))["references"] == ["exit-1"]
            assert watched(app).zone_refs["exit-1"].shape[:2] == (height, width)
            assert {"zone_id": "exit-1", "own_reference": True}.items() <= next(
                s for s in watched(app).state() if s["zone_id"] == "exit-1").items()

            await put(officer, "north", {"name": "北门（改）", "polygon": SQUARE, "min_fraction": 0.5})
            await next_event(applied)
            north = next(z for z in watched(app).zone_cfgs if z.id == "north")
            assert (north.name, north.min_fraction) == ("北门（改）", 0.5)

    async with running_app(cfg, mqtt=False) as app:  # `firelink run` again: the stored zones apply at start
        exits = watched(app)
        assert sorted(z.id for z in exits.zone_cfgs) == ["exit-1", "north"]
        assert exits.zone_refs["exit-1"].shape[:2] == (height, width)
        officer = await login(app, users, "officer")
        with app.app[BUS].subscribe([ev.EXIT_ZONE_APPLIED]) as applied:
            assert (await officer.request("DELETE", f"{ZONES}/exit-1"))[0] == 200
            assert (await next_event(applied))["zone_ids"] == ["north"]
            assert [z.id for z in watched(app).zone_cfgs] == ["north"] and watched(app).zone_refs == {}


# ------------------------------------------------------------------ per-zone references (the watcher alone)

LEFT = [(0.05, 0.2), (0.45, 0.2), (0.45, 0.8), (0.05, 0.8)]
RIGHT = [(0.55, 0.2), (0.95, 0.2), (0.95, 0.8), (0.55, 0.8)]


def scene() -> np.ndarray:
    """A textured, lit view (no zone, no object): blurred noise in 60..140."""
    rng = np.random.default_rng(7)
    img = cv2.GaussianBlur(rng.uniform(60, 140, (240, 320)).astype(np.uint8), (0, 0), 3)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def with_box(img: np.ndarray, poly: list[tuple[float, float]]) -> np.ndarray:
    """A bright object over most of the zone's box."""
    out = img.copy()
    h, w = out.shape[:2]
    x0, y0, x1, y1 = poly[0][0] * w, poly[0][1] * h, poly[2][0] * w, poly[2][1] * h
    out[round(y0 + 5):round(y1 - 5), round(x0 + 5):round(x1 - 5)] = 235
    return out


def feed(w: ExitWatcher, frame: np.ndarray, t0: float, seconds: int) -> list[tuple[float, Any]]:
    return [(t, e) for t in range(int(t0), int(t0) + seconds) for e in w.update(float(t), frame)]


def exit_watcher() -> ExitWatcher:
    zones = [ExitZoneConfig(id=i, polygon=p, dwell_s=4, clear_s=1) for i, p in (("left", LEFT), ("right", RIGHT))]
    w = ExitWatcher("cam", zones, ExitAnalysis(fps=1), persons=None)
    w.set_reference(scene())
    return w


def test_a_zone_is_judged_against_its_own_clear_reference() -> None:
    fixed = with_box(scene(), LEFT)  # e.g. a cabinet that was there when the left exit was declared clear
    plain = exit_watcher()
    assert {e.zone_id for _, e in feed(plain, fixed, 0, 12) if isinstance(e, ExitHazard)} == {"left"}

    w = exit_watcher()
    w.set_zone_reference("left", fixed)
    assert feed(w, fixed, 0, 12) == []
    blocked = with_box(fixed, RIGHT)
    events = feed(w, blocked, 12, 8)
    assert [e.zone_id for _, e in events if isinstance(e, ExitHazard)] == ["right"]


def test_replacing_zones_keeps_the_state_of_unchanged_ones() -> None:
    w = exit_watcher()
    blocked = with_box(scene(), RIGHT)
    assert feed(w, scene(), 0, 2) + feed(w, blocked, 2, 5) == []  # placed at 2 s: moving for 3 s, then timed
    since = next(z.blocked_since for z in w.zones if z.cfg.id == "right")
    assert since == 5
    extra = ExitZoneConfig(id="door", polygon=[(0.05, 0.85), (0.4, 0.85), (0.4, 0.98)], dwell_s=4)
    w.set_zones([*w.zone_cfgs, extra])
    assert [z.cfg.id for z in w.zones] == ["left", "right", "door"]
    assert next(z.blocked_since for z in w.zones if z.cfg.id == "right") == since
    hazards = [(t, e.zone_id) for t, e in feed(w, blocked, 7, 4) if isinstance(e, ExitHazard)]
    assert hazards == [(since + 4, "right")]
    w.set_zones([z for z in w.zone_cfgs if z.id != "right"], {"left": scene()})
    assert [z.cfg.id for z in w.zones] == ["left", "door"] and w.zones[0].ref is not None
