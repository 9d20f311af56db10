"""An aiosqlite connection whose statements run on the event loop itself: the writer's SQLite connection.

aiosqlite runs every call (cursor, execute, fetch, commit) on its own thread and hands the result back through the
event loop: two thread switches per call, some twenty per intake transaction — most of an alarm's time from the
broker to the console on a quiet machine (bench/README.md, issue 10). The writer's statements are short and bounded
(one transaction at a time, dispatch.writer), so they run inline instead: no hand-off, the same sqlite3 calls.
A long transaction (a large intake batch, a unit import) still runs on aiosqlite's thread (`OFFLOADED`): its SQL
then uses the other core while the loop serves the consoles.

What must never happen is the loop blocking on another connection's lock (that connection may need the loop to
finish its own transaction): this connection has no busy timeout, and a statement refused with SQLITE_BUSY is
retried after an asyncio sleep, so the loop keeps running meanwhile, for up to `busy_timeout_s`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import aiosqlite

OFFLOADED: ContextVar[bool] = ContextVar("firelink_sqlite_offloaded", default=False)
"""Set for the task running a long transaction (dispatch.writer.Writer.tx): its statements go to aiosqlite's thread."""

BUSY_RETRY_FIRST_S = 0.001
BUSY_RETRY_MAX_S = 0.05
# Plain "database is locked" and its recovery variant can be retried; SQLITE_BUSY_SNAPSHOT (517) cannot (the
# transaction read a snapshot another writer has since moved past) and fails like any other error.
RETRYABLE_BUSY = frozenset({sqlite3.SQLITE_BUSY, 261})  # 261: SQLITE_BUSY_RECOVERY


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection with `_execute` run on the calling (event loop) thread.

    The worker thread aiosqlite starts still opens and closes the sqlite3 connection (and runs the rare calls
    SQLAlchemy queues to it directly); it sits idle otherwise."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], busy_timeout_s: float) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._busy_timeout_s = busy_timeout_s

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if OFFLOADED.get():
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        deadline = time.monotonic() + self._busy_timeout_s
        pause = BUSY_RETRY_FIRST_S
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode not in RETRYABLE_BUSY or time.monotonic() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, BUSY_RETRY_MAX_S)


def inline_connector(path: str, busy_timeout_s: float) -> Callable[[], Any]:
    """An `async_creator` for SQLAlchemy's aiosqlite dialect: a file database opened for inline use."""

    async def connect() -> InlineConnection:
        def open_db() -> sqlite3.Connection:
            # used from the loop's thread, opened and closed on aiosqlite's; one user at a time (the pool's);
            # timeout 0: never wait on the loop (see above)
            return sqlite3.connect(path, timeout=0, check_same_thread=False)

        conn = InlineConnection(open_db, busy_timeout_s)
        conn._thread.daemon = True  # as SQLAlchemy's aiosqlite dialect does
        await conn  # starts aiosqlite's thread, opens the database on it
        return conn

    return connect
