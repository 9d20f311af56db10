"""One core per database: a lease row that the running core renews; a second core refuses to start.

Two cores on one database would interleave their hash chains and fight over the MQTT session. At start the
core takes the `core_lease` row with one conditional UPDATE (free, expired, or already its own) or INSERT
(no row yet); both are atomic on SQLite and PostgreSQL, so of two cores starting together exactly one wins.
The holder renews it every third of `database.lease_s`; a clean stop deletes it. A core that died without
stopping leaves a row that expires `lease_s` after its last renewal, or at once when it ran on this same host
and its process is gone (a restart after kill -9 does not wait).

Times come from the injected clock (the hosts' clocks are assumed NTP-synchronised; the lease period covers
small skew).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from dispatch.db import Database
from dispatch.models import CoreLease
from ingest.contract import utcnow

log = logging.getLogger(__name__)
NAME = "core"


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    holder: str
    host: str
    pid: int
    renewed_at: datetime
    expires_at: datetime


class LeaseHeld(Exception):
    """Another core holds this database's lease."""

    def __init__(self, other: LeaseInfo, url: str, name: str = NAME) -> None:
        self.other = other
        who = "another Firelink core is" if name == NAME else f"another holder of lease {name!r} is"
        rule = ("Only one core may run per database" if name == NAME else
                "Two processes may not share a cluster node id" if name.startswith("node:") else
                "This job runs in one process at a time")
        super().__init__(
            f"{who} running against this database ({url}): host {other.host}, pid {other.pid}, "
            f"lease renewed at {other.renewed_at.isoformat(timespec='seconds')}, valid until "
            f"{other.expires_at.isoformat(timespec='seconds')}. {rule}. Stop that "
            f"core first (on {other.host}: `systemctl stop firelink` or `kill {other.pid}`); if it has died, "
            f"this one can start once the lease expires (at {other.expires_at.isoformat(timespec='seconds')}).")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _count(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


class CoreLeaseHolder:
    def __init__(self, db: Database, ttl_s: float = 30.0, clock: Callable[[], datetime] = utcnow, *,
                 host: str | None = None, pid: int | None = None,
                 is_alive: Callable[[int], bool] = pid_alive, name: str = NAME) -> None:
        """`name`: the lease row (`core` on a single box; `node:{id}` and `job:{name}` in cluster mode)."""
        self.db = db
        self.name = name
        self.ttl = timedelta(seconds=ttl_s)
        self.clock = clock
        self.holder = uuid.uuid4().hex
        self.host = (host or socket.gethostname())[:255]
        self.pid = os.getpid() if pid is None else pid
        self.is_alive = is_alive

    def _values(self, now: datetime) -> dict[str, Any]:
        return {"holder": self.holder, "host": self.host, "pid": self.pid, "acquired_at": now, "renewed_at": now,
                "expires_at": now + self.ttl}

    async def acquire(self) -> None:
        """Takes the lease, or raises LeaseHeld naming the core that holds it."""
        for _ in range(3):
            now = self.clock()
            async with self.db.session() as s:
                taken = _count(await s.execute(update(CoreLease).where(
                    CoreLease.name == self.name,
                    or_(CoreLease.holder == self.holder, CoreLease.expires_at < now)).values(**self._values(now))))
                if taken:
                    await s.commit()
                    log.info("%s lease taken (host %s, pid %s)", self.name, self.host, self.pid)
                    return
                row = (await s.execute(select(CoreLease.holder, CoreLease.host, CoreLease.pid, CoreLease.renewed_at,
                                              CoreLease.expires_at).where(CoreLease.name == self.name))).first()
                if row is None:
                    try:
                        await s.execute(insert(CoreLease).values(name=self.name, **self._values(now)))
                        await s.commit()
                    except IntegrityError:  # another core inserted it first: look again
                        await s.rollback()
                        continue
                    log.info("%s lease created (host %s, pid %s)", self.name, self.host, self.pid)
                    return
                other = LeaseInfo(*row)
                if other.host == self.host and not self.is_alive(other.pid):
                    # Its process is gone from this host (killed): compare-and-swap on the dead holder's id.
                    if _count(await s.execute(update(CoreLease).where(
                            CoreLease.name == self.name, CoreLease.holder == other.holder)
                            .values(**self._values(now)))):
                        await s.commit()
                        log.warning("%s lease taken over from pid %s on this host, which is no longer running",
                                    self.name, other.pid)
                        return
                    await s.rollback()
                    continue
            raise LeaseHeld(other, self.db.engine.url.render_as_string(hide_password=True), self.name)
        raise RuntimeError("could not settle the core lease (the row kept changing)")

    async def renew(self) -> bool:
        """Extends the lease; False when another core has taken it (this one must stop writing)."""
        now = self.clock()
        async with self.db.session() as s:
            kept = _count(await s.execute(update(CoreLease).where(
                CoreLease.name == self.name, CoreLease.holder == self.holder).values(
                renewed_at=now, expires_at=now + self.ttl)))
            await s.commit()
        return kept == 1

    async def release(self) -> None:
        async with self.db.session() as s:
            await s.execute(delete(CoreLease).where(CoreLease.name == self.name, CoreLease.holder == self.holder))
            await s.commit()

    async def keep(self, on_lost: Callable[[], None]) -> None:
        """Renews every third of the lease period until cancelled; calls `on_lost` if the lease was taken."""
        period = self.ttl.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            try:
                if await self.renew():
                    continue
            except Exception as exc:  # database unreachable: keep trying; the lease may outlive a short outage
                log.warning("core lease renewal failed: %s", exc)
                continue
            log.critical("core lease lost: another core took this database over; this core must stop")
            on_lost()
            return
