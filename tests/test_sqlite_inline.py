"""The writer's SQLite connection runs statements on the event loop, and never blocks the loop on another lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from dispatch.db import Database
from dispatch.events import EventBus
from dispatch.sqlite_inline import InlineConnection, inline_connector
from dispatch.writer import Writer


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    async with database.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield database
    await database.dispose()


async def test_the_writer_session_runs_its_statements_on_the_loop_thread(db: Database) -> None:
    assert db.write_engine is not None
    async with db.write_session() as s:
        raw = await (await s.connection()).get_raw_connection()
        assert isinstance(raw.driver_connection, InlineConnection)
        await s.execute(text("INSERT INTO t VALUES (1)"))
        await s.commit()
    async with db.session() as s:  # the readers' engine sees it at once
        assert (await s.execute(text("SELECT n FROM t"))).scalars().all() == [1]


@pytest.mark.parametrize("long", [False, True])
async def test_a_long_transaction_runs_on_the_database_thread(db: Database, long: bool) -> None:
    writer = Writer(db, EventBus())
    async with writer.tx(long=long) as tx:
        raw = await (await tx.session.connection()).get_raw_connection()
        raw.driver_connection._conn.create_function("thread_id", 0, threading.get_ident)
        ran_on = (await tx.session.execute(text("SELECT thread_id()"))).scalar_one()
    assert (ran_on != threading.get_ident()) is long


async def test_a_locked_database_is_waited_for_without_blocking_the_loop(db: Database) -> None:
    """Another connection holds the write lock across an await (it needs the loop to finish): the writer's insert
    waits, the loop keeps running, and both commit."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    tick_task = asyncio.create_task(ticker())
    try:
        async with db.session() as other:
            await other.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock until its commit
            writer = asyncio.create_task(_insert_with_writer(db, 2))
            before = ticks
            await asyncio.sleep(0.2)  # the holder needs the loop for this: a blocked loop would never get here
            assert not writer.done()
            assert ticks - before >= 10
            await other.commit()
        await asyncio.wait_for(writer, 5)
    finally:
        stop.set()
        await tick_task
    async with db.session() as s:
        assert sorted((await s.execute(text("SELECT n FROM t"))).scalars()) == [1, 2]


async def _insert_with_writer(db: Database, n: int) -> None:
    async with db.write_session() as s:
        await s.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
        await s.commit()


async def test_a_lock_held_past_the_busy_timeout_fails_the_statement(tmp_path: Path) -> None:
    path = str(tmp_path / "held.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (n INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # the write lock, never released during the test
    conn = await inline_connector(path, busy_timeout_s=0.1)()
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await conn.execute("INSERT INTO t VALUES (1)")
    finally:
        await conn.close()
        holder.rollback()
        holder.close()
