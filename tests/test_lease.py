"""One core per database: the lease row, its takeover after expiry, and a second `firelink run` refused."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from console.appkeys import DB
from dispatch.db import Database
from dispatch.lease import CoreLeaseHolder, LeaseHeld
from dispatch.models import CoreLease
from tests.support import Api, StepClock, base_config, config_yaml, run_cli, running_app

T0 = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.upgrade()
    yield database
    await database.dispose()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_second_holder_is_refused_until_the_lease_expires(db: Database) -> None:
    clock = StepClock(T0)
    a = CoreLeaseHolder(db, 30, clock, host="host-a", pid=1111)
    b = CoreLeaseHolder(db, 30, clock, host="host-b", pid=2222)
    await a.acquire()
    with pytest.raises(LeaseHeld) as refused:
        await b.acquire()
    message = str(refused.value)
    assert "host host-a, pid 1111" in message and "Stop that core first" in message and "expires" in message
    clock.advance(20)
    assert await a.renew()  # renewed at +20: valid until +50
    clock.advance(29)
    with pytest.raises(LeaseHeld):
        await b.acquire()
    clock.advance(2)  # +51: a stopped renewing 31 s ago
    await b.acquire()
    assert not await a.renew()  # a learns it lost the lease
    async with db.session() as s:
        row = await s.scalar(select(CoreLease))
    assert row is not None and (row.host, row.pid, row.holder) == ("host-b", 2222, b.holder)
    await b.release()
    await a.acquire()  # released: free at once


async def test_a_dead_process_on_this_host_is_taken_over_at_once(db: Database) -> None:
    clock = StepClock(T0)
    host = socket.gethostname()
    await CoreLeaseHolder(db, 30, clock, host=host, pid=dead_pid()).acquire()  # killed without releasing
    await CoreLeaseHolder(db, 30, clock, host=host).acquire()
    with pytest.raises(LeaseHeld):  # this process is alive: no takeover
        await CoreLeaseHolder(db, 30, clock, host=host, pid=dead_pid()).acquire()


async def test_of_cores_starting_together_exactly_one_wins(db: Database) -> None:
    clock = StepClock(T0)
    holders = [CoreLeaseHolder(db, 30, clock, host=f"h{i}", pid=i + 10) for i in range(6)]
    results = await asyncio.gather(*(h.acquire() for h in holders), return_exceptions=True)
    assert sum(r is None for r in results) == 1, results
    assert all(isinstance(r, LeaseHeld) for r in results if r is not None)


async def test_second_core_exits_with_a_clear_message(db_url: str, tmp_path: Path) -> None:
    cfg = base_config(db_url, None)
    path = config_yaml(cfg, tmp_path / "firelink.yaml")
    async with running_app(cfg, mqtt=False) as app:
        code, out, err = await run_cli("--config", str(path), "run")
        assert code == 3, (out, err)
        assert "another Firelink core is running against this database" in err
        assert f"pid {os.getpid()}" in err and socket.gethostname() in err and "Stop that core first" in err
        api = Api(app.url)  # the running core is untouched
        await api.login("officer", "officer-pw")
        await api.post("/api/units/school-1/alarm", {"kind": "one_key"})
        await api.close()
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 0 and "intact" in out


async def test_a_core_whose_lease_was_taken_is_told_to_stop(db_url: str) -> None:
    lost = asyncio.Event()
    cfg = base_config(db_url, None, database={"url": db_url, "lease_s": 3})
    async with running_app(cfg, mqtt=False, on_lease_lost=lost.set) as app:
        async with app.app[DB].session() as s:
            await s.execute(update(CoreLease).values(holder="another-core"))
            await s.commit()
        await asyncio.wait_for(lost.wait(), 10)  # at the next renewal (every lease_s / 3)
