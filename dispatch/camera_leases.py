"""Cluster mode: which node watches which camera (capture, detectors, evidence), one lease row per camera.

A node watches a camera only while it holds the row `camera:{id}` in core_lease (taken, renewed and released by
dispatch.lease's atomic conditional UPDATE/INSERT, so a row has one holder at a time). Every third of
`cluster.camera_lease_s` each node:

1. renews the rows it holds; a row it cannot renew is given up (the camera stopped here) before it can expire,
   so the node that takes it over never watches it together with this one;
2. gives a camera back to its preferred node (`cluster.cameras`) when that node asks for it: the preferred node,
   alive and not holding its camera, holds the row `want:{id}`; the holder stops the camera, then releases its row
   (marked expired; a clean stop does the same for all its rows, so the others take them at once);
3. takes the cameras it may watch whose row is free: its preferred cameras at once; a camera preferred by no node
   at once; another node's preferred camera only when its row expired (the holder died or stalled), or has been
   missing for a whole lease period (its node never came), and never while that node asks for it (`want:`).

A camera is therefore left unwatched at most `camera_lease_s` after its holder's last renewal plus one attempt
period (at once when the dead holder ran on this host: its process is gone), and on a hand-back for at most two
attempt periods. Starting and stopping a camera is the `CameraSwitch`'s (ingest.cameras.assignment; the camera hub
of a core or of a `firelink detect` worker: capture, and with it detection and evidence, which only take frames
from the cameras being watched).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from config.schema import FirelinkConfig
from dispatch.db import Database
from dispatch.lease import CoreLeaseHolder, LeaseHeld, pid_alive
from dispatch.models import CoreLease
from ingest.cameras.assignment import CameraAssignment, CameraSwitch
from ingest.contract import utcnow

log = logging.getLogger(__name__)

NAME_MAX = 32  # core_lease.name
CAMERA = "camera"
WANT = "want"


def lease_name(camera_id: str, kind: str = CAMERA) -> str:
    """`camera:{id}` (or `want:{id}`); an id too long for the 32-character row name keeps its first characters
    and a hash of the whole id."""
    name = f"{kind}:{camera_id}"
    if len(name) <= NAME_MAX:
        return name
    digest = hashlib.blake2s(camera_id.encode(), digest_size=4).hexdigest()
    return f"{kind}:{camera_id[:NAME_MAX - len(kind) - 10]}#{digest}"


@dataclass(frozen=True, slots=True)
class Row:
    holder: str
    host: str
    pid: int
    expires_at: datetime


@dataclass(slots=True)
class Held:
    lease: CoreLeaseHolder
    valid_until: datetime


class CameraLeases:
    """Holds this node's camera leases and starts/stops its cameras accordingly (`run` until cancelled)."""

    def __init__(self, db: Database, node: str, cameras: Sequence[str], preferred: Mapping[str, Sequence[str]],
                 switch: CameraSwitch, ttl_s: float, clock: Callable[[], datetime] = utcnow, *,
                 host: str | None = None, pid: int | None = None) -> None:
        self.db = db
        self.node = node
        self.cameras = list(cameras)
        self.preferred = {cid: n for n, ids in preferred.items() for cid in ids}  # camera → its preferred node
        self.switch = switch
        self.ttl = timedelta(seconds=ttl_s)
        self.period = ttl_s / 3
        self.clock = clock
        self.host, self.pid = host, pid
        self.held: dict[str, Held] = {}
        self.wants: dict[str, CoreLeaseHolder] = {}
        self.missing_since: dict[str, datetime] = {}
        self.holder = f"{node}/{uuid.uuid4().hex}"
        self.my_host = self._holder(CAMERA).host
        self.steps = 0
        self.stepped = asyncio.Event()  # set after each step (tests wait on it)

    def _holder(self, name: str) -> CoreLeaseHolder:
        lease = CoreLeaseHolder(self.db, self.ttl.total_seconds(), self.clock, host=self.host, pid=self.pid,
                                name=name)
        lease.holder = self.holder  # one id for all of this node's rows (renewed together), naming the node
        return lease

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.step()
                except Exception:  # the database is away: held cameras stop when their lease may expire
                    log.exception("camera leases: step failed")
                    await self._expire_unrenewed("the database did not answer")
                await asyncio.sleep(self.period)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stops every camera watched here and releases the rows (expired: a clean stop hands them over at once)."""
        for cid in list(self.held):
            await self._give_up(cid, release=True)
        for cid in list(self.wants):
            await self._drop_want(cid)

    async def _rows(self) -> dict[str, Row]:
        async with self.db.session() as s:
            rows = (await s.execute(select(CoreLease.name, CoreLease.holder, CoreLease.host, CoreLease.pid,
                                           CoreLease.expires_at).where(
                or_(CoreLease.name.like(f"{CAMERA}:%"), CoreLease.name.like(f"{WANT}:%"))))).all()
        return {r[0]: Row(r[1], r[2], r[3], r[4]) for r in rows}

    async def step(self) -> None:
        await self._renew()
        rows = await self._rows()
        now = self.clock()
        for cid in self.cameras:
            name, want = lease_name(cid), lease_name(cid, WANT)
            mine = self.preferred.get(cid)
            if cid in self.held:
                if mine is not None and mine != self.node and _fresh(rows.get(want), now):
                    log.info("camera %s: handing it back to its preferred node %s", cid, mine)
                    await self._give_up(cid, release=True)
                continue
            row = rows.get(name)
            self.switch.watched_by(cid, _node(row.holder) if _fresh(row, now) and row is not None else None)
            if row is not None:
                self.missing_since.pop(cid, None)
            if mine == self.node:
                if _fresh(row, now) and not self._dead_here(row):
                    await self._want(cid)  # held by another node: ask for it back
                    continue
            else:
                if mine is not None and _fresh(rows.get(want), now):
                    continue  # its preferred node is asking for it
                if row is None:
                    if mine is not None and now - self.missing_since.setdefault(cid, now) < self.ttl:
                        continue  # its preferred node has a lease period to come and take it
                elif _fresh(row, now) and not self._dead_here(row):
                    continue
            await self._take(cid)
        self.steps += 1
        self.stepped.set()
        self.stepped = asyncio.Event()

    def _dead_here(self, row: Row | None) -> bool:
        """Whether the holder ran on this host and its process is gone (its row can be taken before it expires)."""
        return row is not None and row.host == self.my_host and not pid_alive(row.pid)

    async def _take(self, cid: str) -> None:
        lease = self._holder(lease_name(cid))
        started = self.clock()
        try:
            await lease.acquire()
        except LeaseHeld:
            return
        self.missing_since.pop(cid, None)
        self.held[cid] = Held(lease, started + self.ttl)
        try:
            await self.switch.watch(cid)
        except Exception:
            log.exception("camera %s: could not start watching it; releasing its lease", cid)
            await self._give_up(cid, release=True)
            return
        self.switch.watched_by(cid, self.node)
        log.warning("camera %s: watched by this node (%s) now", cid, self.node)
        await self._drop_want(cid)

    async def _renew(self) -> None:
        """Renews every held row in one statement, given at most half a period (a database that hangs must not
        keep a camera here past its lease)."""
        if not self.held:
            return
        started = self.clock()
        names = {lease_name(cid): cid for cid in self.held}
        try:
            async with asyncio.timeout(self.period / 2):
                async with self.db.session() as s:
                    kept = set((await s.scalars(update(CoreLease).where(
                        CoreLease.name.in_(list(names)), CoreLease.holder == self.holder).values(
                        renewed_at=started, expires_at=started + self.ttl).returning(CoreLease.name))).all())
                    await s.commit()
        except Exception as exc:
            await self._expire_unrenewed(f"lease not renewed ({exc!r})")
            return
        for name, cid in names.items():
            if name in kept:
                self.held[cid].valid_until = started + self.ttl
            else:
                log.critical("camera %s: its lease was taken by another node; stopping it here", cid)
                await self._give_up(cid, release=False)

    async def _expire_unrenewed(self, why: str) -> None:
        """Stops the cameras whose lease may expire before the next attempt (they are another node's then)."""
        now = self.clock()
        for cid, held in list(self.held.items()):
            if now + timedelta(seconds=self.period) >= held.valid_until:
                log.critical("camera %s: %s and may expire: stopping it here", cid, why)
                await self._give_up(cid, release=False)

    async def _give_up(self, cid: str, *, release: bool) -> None:
        """Stops watching first, then (on a hand-back or a clean stop) deletes the row: never two watchers."""
        held = self.held.pop(cid)
        try:
            await self.switch.unwatch(cid)
        finally:
            self.switch.watched_by(cid, None)
            if release:
                with contextlib.suppress(Exception):  # it expires by itself
                    await self._expire(held.lease)

    async def _expire(self, lease: CoreLeaseHolder) -> None:
        """Releases a camera row by marking it expired, not deleting it: to the other nodes an expired row is a
        holder gone (taken at once), a missing one a node that has not come yet (given a lease period)."""
        now = self.clock()
        async with self.db.session() as s:
            await s.execute(update(CoreLease).where(CoreLease.name == lease.name, CoreLease.holder == self.holder)
                            .values(expires_at=now - timedelta(seconds=1)))
            await s.commit()

    async def _want(self, cid: str) -> None:
        lease = self.wants.get(cid)
        if lease is None:
            lease = self.wants[cid] = self._holder(lease_name(cid, WANT))
            with contextlib.suppress(LeaseHeld):
                await lease.acquire()
            return
        if not await lease.renew():
            with contextlib.suppress(LeaseHeld):
                await lease.acquire()

    async def _drop_want(self, cid: str) -> None:
        lease = self.wants.pop(cid, None)
        if lease is not None:
            with contextlib.suppress(Exception):
                await lease.release()


def _fresh(row: Row | None, now: datetime) -> bool:
    return row is not None and row.expires_at >= now


def _node(holder: str) -> str | None:
    node, sep, _ = holder.partition("/")
    return node if sep else None


def worker_assignment(cfg: FirelinkConfig, node: str, cameras: Sequence[str]) -> CameraAssignment:
    """A `firelink detect` worker's cameras by lease (cluster mode): the worker is node `node` among the cores, and
    watches those of `cameras` whose lease it holds, by the same rules (preference from `cluster.cameras`, takeover,
    hand-back). Its database connection lives as long as the assignment runs."""

    async def run(switch: CameraSwitch) -> None:
        db = Database(cfg.database.url, cfg.database.echo)
        try:
            await CameraLeases(db, node, cameras, cfg.cluster.cameras, switch, cfg.cluster.camera_lease_s).run()
        finally:
            await db.dispose()

    return run
