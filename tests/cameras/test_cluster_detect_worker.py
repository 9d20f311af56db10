"""Cluster mode: a `firelink detect` worker takes part in the camera leases as a node of its own (docs/cluster.md).

Real PostgreSQL (a throw-away database), a real camera source (a looping video file), the real command line: the
worker is `python -m firelink.cli detect` in its own process, preferred for camera c1 by `cluster.cameras`; a core's
camera side (its hub and its `CameraLeases`, as `firelink run` wires them) runs in this process as node `core-1` on
"another host" (so it must wait for the worker's lease to expire). The worker watches c1 and the core leaves it
alone; SIGKILL the worker and the core takes c1 within the lease period, never while the worker watched it; the
worker restarted gets c1 back (the core stops it first); its SIGTERM hands c1 to the core at once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from dispatch.camera_leases import CameraLeases, lease_name
from dispatch.db import Database
from dispatch.models import CoreLease
from ingest.cameras.capture import Status
from ingest.cameras.hub import CameraHub
from tests.cameras.conftest import ROOT, camera
from tests.support import Broker, base_config, config_yaml

TTL = 3.0  # the shortest camera lease allowed




class Worker:
    """`firelink detect` in its own process; its log lines, and when each awaited one came (monotonic)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self.changed.set()

    async def logged(self, text: str, within: float) -> float:
        """Waits for a log line containing `text`; when it was read."""
        async with asyncio.timeout(within):
            while not any(text in line for line in self.lines):
                if self.proc is not None and self.proc.returncode is not None:
                    raise AssertionError(f"worker exited {self.proc.returncode}:\n" + "\n".join(self.lines[-30:]))
                self.changed.clear()
                await self.changed.wait()
        return self.seen.setdefault(text, time.monotonic())

    def logged_at(self, text: str) -> float:
        """The wall-clock time (UNIX seconds) in the first log line containing `text` (logged just after the act)."""
        line = next(line for line in self.lines if text in line)
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, as logged

    async def kill(self) -> float:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        return time.monotonic()


async def holders(db: Database) -> dict[str, str]:
    async with db.session() as s:
        got = (await s.execute(select(CoreLease.name, CoreLease.holder).where(CoreLease.name.like("camera:%")))).all()
    return {name: holder.split("/")[0] for name, holder in got}


async def test_a_detect_worker_watches_its_leased_camera_and_a_core_takes_it_when_the_worker_is_killed(
        pg_url: str, broker: Broker, clip: Path, tmp_path: Path) -> None:
    cams = [camera(cid, str(clip), unit="school-1", loop=True, fps=5) for cid in ("c1", "c2")]
    preferred = {"worker-1": ["c1"], "core-1": ["c2"]}
    cfg = base_config(pg_url, broker, cameras=[c.model_dump(mode="json") for c in cams],
                      video={"evidence_dir": str(tmp_path / "evidence")},
                      detectors={"all_cameras": False, "evidence_dir": str(tmp_path / "detections"),
                                 "cameras": [{"camera_id": "c1", "smoke_fire": False}]},
                      cluster={"enabled": True, "head_key": "k", "camera_lease_s": TTL, "cameras": preferred})
    db = Database(pg_url)
    await db.upgrade()  # the schema, as the first core creates it
    watches: list[tuple[float, str, bool, float]] = []  # the core's capture starts and stops (monotonic, …, wall)
    changed = asyncio.Event()
    hub = CameraHub(cams)

    def on_watch(cid: str, on: bool) -> None:
        watches.append((time.monotonic(), cid, on, time.time()))
        changed.set()

    hub.on_watch.append(on_watch)
    core = CameraLeases(db, "core-1", [c.id for c in cams], preferred, hub, TTL, host="host-core")
    argv = [sys.executable, "-m", "firelink.cli", "--config", str(config_yaml(cfg, tmp_path / "worker.yaml")),
            "detect", "--camera", "c1", "--node-id", "worker-1"]
    worker, again = Worker(argv), Worker(argv)

    async def core_watches(cid: str, on: bool, count: int) -> tuple[float, float]:
        """Waits for the core's `count`-th start (or stop) of a camera; when (monotonic, wall)."""
        async with asyncio.timeout(TTL * 4):
            while len(got := [(t, w) for t, c, o, w in watches if c == cid and o == on]) < count:
                changed.clear()
                await changed.wait()
        return got[count - 1]

    await hub.start(())
    task = asyncio.create_task(core.run())
    try:
        await worker.start()
        await worker.logged("camera c1: watched by this node (worker-1) now", within=20)
        await worker.logged("camera c1: online", within=15)  # opened, its frames going to the detectors
        await hub.wait_status("c2", Status.ONLINE, within=15)  # the core watches its own camera
        for _ in range(2):  # a whole step of the core's after the worker took c1: it has seen the row
            await asyncio.wait_for(core.stepped.wait(), TTL)
        assert not hub.get("c1").watching and hub.get("c1").watcher == "worker-1"
        assert (await holders(db)) == {lease_name("c1"): "worker-1", lease_name("c2"): "core-1"}

        killed = await worker.kill()
        taken, _ = await core_watches("c1", True, 1)
        assert taken - killed <= TTL + core.period + 1.5, taken - killed  # the lease period, plus one attempt
        await hub.wait_status("c1", Status.ONLINE, within=15)
        assert (await holders(db))[lease_name("c1")] == "core-1"
        assert [(cid, on) for _, cid, on, _ in watches] == [("c2", True), ("c1", True)]  # c1 only after the kill

        # The worker back: it asks for c1; the core stops it, then lets it go; the worker takes it.
        await again.start()
        await again.logged("camera c1: watched by this node (worker-1) now", within=TTL * 4 + 10)
        _, core_off = await core_watches("c1", False, 1)
        assert core_off < again.logged_at("camera c1: watched here")
        await again.logged("camera c1: online", within=15)

        # A clean stop (SIGTERM): the worker stops c1 and releases its row; the core takes it at its next attempt.
        assert again.proc is not None
        stopping = time.monotonic()
        again.proc.terminate()
        assert await asyncio.wait_for(again.proc.wait(), 15) == 0
        back, core_on = await core_watches("c1", True, 2)
        assert core_on > again.logged_at("camera c1: no longer watched here")
        assert back - stopping <= core.period + 1.5, back - stopping
        print(f"the core took c1 {taken - killed:.1f} s after the worker's SIGKILL and {back - stopping:.1f} s after "
              f"its SIGTERM")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for w in (worker, again):
            if w.proc is not None and w.proc.returncode is None:
                await w.kill()
        await hub.stop()
        await db.dispose()


def test_a_node_id_needs_cluster_mode_and_a_valid_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from firelink.cli import main

    single = config_yaml(base_config("sqlite+aiosqlite:///unused.db", None), tmp_path / "single.yaml")
    assert main(["--config", str(single), "detect", "--node-id", "worker-1"]) == 2
    assert "--node-id applies in cluster mode only" in capsys.readouterr().err
    cluster = config_yaml(base_config("postgresql+asyncpg://127.0.0.1:1/unused", None,
                                      cluster={"enabled": True, "head_key": "k"}), tmp_path / "cluster.yaml")
    assert main(["--config", str(cluster), "detect", "--node-id", "bad node!"]) == 2
    assert "does not match" in capsys.readouterr().err
