"""Cluster mode: jobs that must run in exactly one process at a time, with takeover when that process dies.

Each such group of jobs has a lease row (`job:{name}` in core_lease, taken and renewed by dispatch.lease's atomic
conditional UPDATE/INSERT). Every node tries to take it every third of the lease period; the holder starts the jobs
and renews; a node that cannot renew stops its jobs before its lease can have expired (so two holders never run
them together), and the others take the lease over once it expired (at once when the holder's process is gone
from the same host). `scheduler` covers escalation timers, hazard deadlines, the outbox and event pruning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from dispatch.db import Database
from dispatch.lease import CoreLeaseHolder, LeaseHeld
from ingest.contract import utcnow

log = logging.getLogger(__name__)
SCHEDULER = "scheduler"

Job = Callable[[], Coroutine[Any, Any, None]]


class Singleton:
    """Runs `jobs` only while this process holds the lease `job:{name}`; `on_gain` runs first on each gain."""

    def __init__(self, db: Database, name: str, jobs: list[Job], ttl_s: float,
                 clock: Callable[[], datetime] = utcnow, *, on_gain: Callable[[], Awaitable[None]] | None = None,
                 host: str | None = None, pid: int | None = None) -> None:
        self.lease = CoreLeaseHolder(db, ttl_s, clock, host=host, pid=pid, name=f"job:{name}")
        self.name = name
        self.jobs = jobs
        self.clock = clock
        self.on_gain = on_gain
        self.period = ttl_s / 3
        self.holding = asyncio.Event()  # set while this process runs the jobs
        self.gains = 0

    async def _try_acquire(self) -> bool:
        try:
            await self.lease.acquire()
        except LeaseHeld:
            return False
        except Exception as exc:  # the database is away: try again next period
            log.warning("%s lease: could not try to take it: %s", self.name, exc)
            return False
        return True

    async def run(self) -> None:
        try:
            while True:
                if not await self._try_acquire():
                    await asyncio.sleep(self.period)
                    continue
                await self._hold()
        finally:
            with contextlib.suppress(Exception):
                await self.lease.release()

    async def _hold(self) -> None:
        valid_until = self.clock() + self.lease.ttl
        self.gains += 1
        log.warning("this node now runs the %s jobs", self.name)
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.on_gain is not None:
                await self.on_gain()
            tasks = [asyncio.create_task(job(), name=f"{self.name}-{i}") for i, job in enumerate(self.jobs)]
            self.holding.set()
            while True:
                await asyncio.sleep(self.period)
                crashed = next((t for t in tasks if t.done()), None)
                if crashed is not None:
                    log.error("%s job %s ended: %r; giving the lease up", self.name, crashed.get_name(),
                              crashed.exception() if not crashed.cancelled() else "cancelled")
                    return
                started = self.clock()
                try:
                    if not await self.lease.renew():
                        log.critical("%s lease taken by another node; stopping its jobs here", self.name)
                        return
                    valid_until = started + self.lease.ttl
                except Exception as exc:
                    if self.clock() + timedelta(seconds=self.period) >= valid_until:
                        log.critical("%s lease could not be renewed (%s) and may expire: stopping its jobs",
                                     self.name, exc)
                        return
                    log.warning("%s lease renewal failed (%s); still valid until %s", self.name, exc, valid_until)
        finally:
            self.holding.clear()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
