"""Cluster mode: each camera is watched by one node at a time (dispatch.camera_leases, docs/cluster.md).

Real PostgreSQL (a throw-away database), real camera sources (looping video files and the RTSP test camera), two
nodes: `node-a` in its own process (killed with SIGKILL, restarted), `node-b` in this one. Every start and stop of a
capture on either node goes into one timeline, checked for overlaps: a camera is never watched by both at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from config.cameras import CameraConfig
from config.schema import FirelinkConfig
from console.appkeys import CAMERA_LEASES
from dispatch.camera_leases import CameraLeases, lease_name
from dispatch.db import Database
from dispatch.models import CoreLease
from ingest.cameras.capture import Status
from ingest.cameras.hub import CameraHub
from tests.cameras.conftest import CAMERAS, ROOT, RtspCamera, camera
from tests.support import Api, StepClock, base_config, pg_database, running_app

T0 = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
TTL = 3.0  # the shortest camera lease allowed: the test's takeovers take seconds




@dataclass
class Timeline:
    """Who watches which camera, from both nodes' capture starts and stops (monotonic time, one per host)."""

    events: list[tuple[float, str, str, bool]] = field(default_factory=list)  # (t, node, camera, on)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, t: float, node: str, cid: str, on: bool) -> None:
        self.events.append((t, node, cid, on))
        self.changed.set()

    def killed(self, node: str, t: float) -> None:
        """A killed node stopped watching everything at the moment it died."""
        for cid in [c for c, n in self.watchers().items() if node in n]:
            self.add(t, node, cid, False)

    def watchers(self) -> dict[str, set[str]]:
        now: dict[str, set[str]] = {}
        for _, node, cid, on in sorted(self.events):
            (now.setdefault(cid, set()).add if on else now.setdefault(cid, set()).discard)(node)
        return now

    def overlaps(self) -> list[str]:
        now: dict[str, set[str]] = {}
        bad = []
        for t, node, cid, on in sorted(self.events):
            watching = now.setdefault(cid, set())
            if on:
                watching.add(node)
                if len(watching) > 1:
                    bad.append(f"{cid} watched by {sorted(watching)} at {t:.3f}")
            else:
                watching.discard(node)
        return bad

    async def until(self, want: dict[str, str], within: float) -> float:
        """Waits until each camera is watched by exactly the node given; returns when (monotonic)."""
        async with asyncio.timeout(within):
            while True:
                got = self.watchers()
                if all(got.get(cid) == {node} for cid, node in want.items()):
                    return time.monotonic()
                self.changed.clear()
                await self.changed.wait()


class NodeProcess:
    """`node-a`: tests/cameras/cluster_node.py in its own process, its capture starts/stops fed to the timeline."""

    def __init__(self, url: str, cams: list[CameraConfig], preferred: dict[str, list[str]], timeline: Timeline):
        self.args = [url, "node-a", "host-a", str(TTL), json.dumps([c.model_dump(mode="json") for c in cams]),
                     json.dumps(preferred)]
        self.timeline = timeline
        self.online: set[str] = set()
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.online = set()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.cameras.cluster_node", *self.args, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            parts = line.decode().split()
            if parts[:1] == ["watch"]:
                self.timeline.add(float(parts[3]), "node-a", parts[1], parts[2] == "1")
            elif parts[:1] == ["online"]:
                self.online.add(parts[1])
                self.timeline.changed.set()

    async def kill(self) -> float:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        t = time.monotonic()
        self.timeline.killed("node-a", t)
        return t


def cameras(clip: Path, rtsp: RtspCamera) -> list[CameraConfig]:
    files = [camera(f"c{i}", str(clip), loop=True, fps=5) for i in (1, 2, 4)]
    return [files[0], files[1], camera("c3", rtsp.url), files[2]]


async def rows(db: Database) -> dict[str, str]:
    async with db.session() as s:
        got = (await s.execute(select(CoreLease.name, CoreLease.holder).where(CoreLease.name.like("camera:%")))).all()
    return {name: holder.split("/")[0] for name, holder in got}


async def test_two_nodes_watch_disjoint_cameras_take_over_a_dead_ones_and_give_them_back(
        pg_url: str, clip: Path, shared_rtsp: RtspCamera) -> None:
    cams = cameras(clip, shared_rtsp)
    preferred = {"node-a": ["c1", "c2"], "node-b": ["c3"]}  # c4: any node
    db = Database(pg_url)
    await db.upgrade()
    timeline = Timeline()
    hub = CameraHub(cams)
    hub.on_watch.append(lambda cid, on: timeline.add(time.monotonic(), "node-b", cid, on))
    frames: dict[str, int] = {}
    stray: list[str] = []

    async def analysed(cid: str) -> None:  # what a detector gets: frames only while this node watches the camera
        async for _ in hub.subscribe_frames(cid):
            if not hub.get(cid).watching:
                stray.append(cid)
            frames[cid] = frames.get(cid, 0) + 1

    a = NodeProcess(pg_url, cams, preferred, timeline)
    b = CameraLeases(db, "node-b", [c.id for c in cams], preferred, hub, TTL, host="host-b")
    await hub.start(())
    consumers = [asyncio.create_task(analysed(c.id)) for c in cams]
    await a.start()
    task = asyncio.create_task(b.run())
    try:
        # Both up: each watches its preferred cameras; c4 goes to one of them.
        await timeline.until({"c1": "node-a", "c2": "node-a", "c3": "node-b"}, within=30)
        await asyncio.wait_for(_wait(lambda: len(timeline.watchers().get("c4", set())) == 1, timeline), 30)
        await hub.wait_status("c3", Status.ONLINE, within=20)
        await asyncio.wait_for(_wait(lambda: {"c1", "c2"} <= a.online, timeline), 30)
        for _ in range(2):  # a whole step of node-b's after node-a took c1: it has seen the row
            await asyncio.wait_for(b.stepped.wait(), TTL)
        assert hub.get("c1").health.status is Status.STANDBY and hub.get("c1").watcher == "node-a"
        held = await rows(db)
        assert held[lease_name("c1")] == held[lease_name("c2")] == "node-a" and held[lease_name("c3")] == "node-b"
        assert frames.get("c1", 0) == 0 and frames.get("c3", 0) > 0

        # node-a dies (SIGKILL, on "another host": its rows must expire): node-b takes its cameras.
        killed = await a.kill()
        taken = await timeline.until({"c1": "node-b", "c2": "node-b", "c3": "node-b", "c4": "node-b"},
                                     within=TTL * 3)
        assert taken - killed <= TTL + b.period + 1.5, taken - killed  # the lease period, plus one attempt
        await hub.wait_status("c1", Status.ONLINE, within=15)
        assert frames.get("c1", 0) > 0

        # node-a back: it asks for its cameras; node-b stops them, then releases; node-a takes them.
        restarted = time.monotonic()
        await a.start()
        returned = await timeline.until({"c1": "node-a", "c2": "node-a", "c3": "node-b"}, within=TTL * 4 + 10)
        assert hub.get("c1").health.status is Status.STANDBY
        assert (await rows(db))[lease_name("c1")] == "node-a"
        print(f"takeover after kill: {taken - killed:.1f} s; cameras back {returned - restarted:.1f} s after the "
              f"restart (process start included)")
        assert timeline.overlaps() == [] and stray == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if a.proc is not None and a.proc.returncode is None:
            await a.kill()
        for t in consumers:
            t.cancel()
        await hub.stop()
        await db.dispose()
    assert timeline.overlaps() == []
    assert await _no_live_rows_of("node-b", pg_url)  # a clean stop released node-b's rows


async def test_a_node_that_cannot_renew_stops_its_camera_before_the_lease_can_expire(
        pg_admin_dsn: str | None, clip: Path) -> None:
    if pg_admin_dsn is None:
        pytest.skip("no PostgreSQL here")
    clock = StepClock(T0)
    hub = CameraHub([camera("c1", str(clip), loop=True, fps=5)])
    await hub.start(())
    async with pg_database(pg_admin_dsn) as url:
        db = Database(url)
        await db.upgrade()
        leases = CameraLeases(db, "node-a", ["c1"], {}, hub, TTL, clock)
        try:
            await leases.step()
            assert hub.get("c1").watching
            admin = await asyncpg.connect(pg_admin_dsn)  # the database goes away under the node
            try:
                await admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
            finally:
                await admin.close()
            clock.advance(TTL / 3)
            with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises for a missing database
                await leases.step()
            assert hub.get("c1").watching  # renewed at T0, valid until T0 + TTL: still its own
            clock.advance(TTL / 3 + 0.1)
            with pytest.raises(Exception):  # noqa: B017
                await leases.step()
            assert not hub.get("c1").watching  # the next attempt would come after expiry: stopped now
            assert hub.get("c1").health.status is Status.STANDBY
        finally:
            await hub.stop()
            await db.dispose()


async def test_a_console_asking_another_node_for_live_video_is_told_which_node_shows_it(
        make_video_app: Any, clip: Path) -> None:
    va = await make_video_app([camera("c1", str(clip), loop=True, fps=5)])
    hub = va.app[CAMERAS]
    await hub.unwatch("c1")
    hub.watched_by("c1", "core-2")
    r = await va.client.get("/api/cameras/c1/live.mjpeg")
    assert r.status == 503 and "node core-2" in (await r.json())["error"]
    listed = (await (await va.client.get("/api/cameras")).json())["cameras"]
    assert listed[0]["status"] == "standby" and listed[0]["watched_by"] == "core-2"


async def _no_live_rows_of(node: str, url: str) -> bool:
    """Whether every camera row of a node has expired (a clean stop marks them so: taken over at once)."""
    db = Database(url)
    try:
        async with db.session() as s:
            got = (await s.execute(select(CoreLease.holder, CoreLease.expires_at).where(
                CoreLease.name.like("camera:%")))).all()
    finally:
        await db.dispose()
    now = datetime.now(UTC).replace(tzinfo=None) if got and got[0][1].tzinfo is None else datetime.now(UTC)
    return all(expires < now for holder, expires in got if holder.startswith(f"{node}/"))


async def _wait(cond: Any, timeline: Timeline) -> None:
    while not cond():
        timeline.changed.clear()
        await timeline.changed.wait()


def test_camera_assignment_names_known_cameras_once() -> None:
    base: dict[str, Any] = {"units": [{"id": "u1", "name": "u1"}],
                            "cameras": [{"id": "c1", "unit_id": "u1", "name": "c1", "url": "x.mp4"},
                                        {"id": "c2", "unit_id": "u1", "name": "c2", "url": "x.mp4"}]}
    ok = FirelinkConfig.model_validate({**base, "cluster": {"cameras": {"core-1": ["c1"], "core-2": ["c2"]}}})
    assert ok.cluster.camera_lease_s == 20
    with pytest.raises(ValidationError, match=r"cluster\.cameras\.core-1: unknown camera id\(s\) nope"):
        FirelinkConfig.model_validate({**base, "cluster": {"cameras": {"core-1": ["c1", "nope"]}}})
    with pytest.raises(ValidationError, match="assigned to two nodes"):
        FirelinkConfig.model_validate({**base, "cluster": {"cameras": {"core-1": ["c1"], "core-2": ["c1"]}}})
    with pytest.raises(ValidationError, match="pattern"):
        FirelinkConfig.model_validate({**base, "cluster": {"cameras": {"bad node!": ["c1"]}}})
    with pytest.raises(ValidationError, match="camera_lease_s"):
        FirelinkConfig.model_validate({**base, "cluster": {"camera_lease_s": 60}})


def test_lease_names_fit_the_row() -> None:
    assert lease_name("cam-1") == "camera:cam-1"
    long = "a" * 64
    assert len(lease_name(long)) <= 32 and lease_name(long) != lease_name("a" * 63 + "b")
    assert lease_name(long, "want").startswith("want:")


async def test_two_running_cores_split_the_cameras_and_the_survivor_takes_the_other_ones_at_its_clean_stop(
        pg_url: str, clip: Path, tmp_path: Path) -> None:
    """`firelink run` wiring: the camera leases start after the detectors' step, the console tells where a camera
    is shown, and a core that stops hands its cameras over at once (its rows released)."""
    cams = [dict(camera(cid, str(clip), unit="school-1", loop=True, fps=5).model_dump(mode="json")) for cid in
            ("c1", "c2")]

    def node_cfg(node: str) -> FirelinkConfig:
        return base_config(pg_url, None, cameras=cams, video={"evidence_dir": str(tmp_path / node)},
                           cluster={"enabled": True, "node_id": node, "head_key": "k", "camera_lease_s": 3,
                                    "scheduler_lease_s": 3, "cameras": {"app-a": ["c1"], "app-b": ["c2"]}})

    async def shown(api: Api, cid: str) -> dict[str, Any]:
        cams = (await api.get("/api/cameras"))["cameras"]
        return next(c for c in cams if c["id"] == cid)

    async with running_app(node_cfg("app-b"), mqtt=False) as b:
        on_b = Api(b.url)
        try:
            await on_b.login("officer", "officer-pw")
            async with running_app(node_cfg("app-a"), mqtt=False) as a:
                await a.app[CAMERAS].wait_status("c1", Status.ONLINE, within=20)
                await b.app[CAMERAS].wait_status("c2", Status.ONLINE, within=20)
                for _ in range(2):  # a whole step of node-b's after app-a took c1: it has seen the row
                    await asyncio.wait_for(b.app[CAMERA_LEASES].stepped.wait(), TTL)
                assert (await shown(on_b, "c1"))["watched_by"] == "app-a"
                assert (await shown(on_b, "c1"))["status"] == "standby"
                status, body = await on_b.request("GET", "/api/cameras/c1/snapshot.jpg")
                assert status == 503 and "node app-a" in body["error"]
                t0 = time.monotonic()
            await b.app[CAMERAS].wait_status("c1", Status.ONLINE, within=TTL + 10)  # app-a stopped cleanly
            print(f"camera watched by the survivor {time.monotonic() - t0:.1f} s after the other core's stop began")
            assert (await shown(on_b, "c1"))["watched_by"] == "app-b"
        finally:
            await on_b.close()
