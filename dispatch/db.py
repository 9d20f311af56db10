"""Async engine and session factory; schema managed by Alembic."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from dispatch.sqlite_inline import inline_connector

BUSY_TIMEOUT_S = 5.0  # how long a statement waits for another connection's write lock before it fails


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cur.close()

    return on_connect


def _sqlite_file(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:" \
            and not parsed.query.get("uri"):
        return parsed.database
    return None


def make_engine(url: str, echo: bool = False, **kwargs: Any) -> AsyncEngine:
    if path := _sqlite_file(url):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, echo=echo, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(int(BUSY_TIMEOUT_S * 1000)))
    return engine


def make_write_engine(url: str, echo: bool = False) -> AsyncEngine | None:
    """The single writer's own engine where it pays: a SQLite file (its folder made by `make_engine`), its statements
    run on the event loop (dispatch.sqlite_inline). None elsewhere (PostgreSQL's driver is asynchronous already; an
    in-memory database must stay one connection)."""
    path = _sqlite_file(url)
    if path is None:
        return None
    engine = create_async_engine(url, echo=echo, async_creator=inline_connector(path, BUSY_TIMEOUT_S),
                                 pool_size=1, max_overflow=1)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas(0))  # never wait on the loop: sqlite_inline
    return engine


LOCK_ROWS = "firelink.lock_rows"


def locks_rows(session: AsyncSession) -> bool:
    """Whether rows read to be changed in this session are locked until commit (a cluster core's writer
    transactions: another core changing the same row waits, then sees this change)."""
    return bool(session.info.get(LOCK_ROWS))


class Database:
    """Engine plus session factory; `upgrade()` brings the schema to head."""

    def __init__(self, url: str, echo: bool = False, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, echo, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.write_engine = make_write_engine(url, echo)
        self.write_sessions = self.sessions if self.write_engine is None else async_sessionmaker(
            self.write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> AsyncSession:
        return self.sessions()

    def write_session(self) -> AsyncSession:
        """The single writer's session (dispatch.writer); everything else reads and writes through `session`."""
        return self.write_sessions()

    async def alive(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:
            return False
        return True

    async def upgrade(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_alembic_upgrade)

    async def dispose(self) -> None:
        if self.write_engine is not None:
            await self.write_engine.dispose()
        await self.engine.dispose()


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("dispatch") / "migrations"))
    return cfg


MIGRATION_LOCK = 0x46_4C_4D_49_47  # "FLMIG": cores starting together on one PostgreSQL database migrate in turn


def _run_alembic_upgrade(sync_conn: Any) -> None:
    if sync_conn.dialect.name == "postgresql":  # held until this transaction ends; the next one sees the new head
        sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


def upgrade_blocking(url: str) -> None:
    """For the CLI: `firelink db upgrade`."""

    async def _go() -> None:
        db = Database(url)
        try:
            await db.upgrade()
        finally:
            await db.dispose()

    asyncio.run(_go())
