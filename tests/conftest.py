from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import (
    PG_ADMIN_DSN,
    Api,
    Broker,
    WebhookReceiver,
    pg_available,
    pg_database,
    shared_or_own_broker,
    start_own_postgres,
)


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """The machine's Mosquitto on 127.0.0.1:1883, or one started for the tests on a free port."""
    yield from shared_or_own_broker()


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str | None]:
    """The machine's PostgreSQL (127.0.0.1:5432, trust) or a throw-away cluster started for the tests."""
    if asyncio.run(pg_available(PG_ADMIN_DSN)):
        yield PG_ADMIN_DSN
        return
    own = start_own_postgres()
    if own is None:
        yield None
        return
    dsn, stop = own
    try:
        yield dsn
    finally:
        stop()


@pytest.fixture
async def pg_url(pg_admin_dsn: str | None) -> AsyncIterator[str]:
    """A throw-away PostgreSQL database (for what only PostgreSQL has: a server that can go away, cluster mode)."""
    if pg_admin_dsn is None:
        pytest.skip("no PostgreSQL here and none installed to start (scripts/sysdeps.sh installs it)")
    async with pg_database(pg_admin_dsn) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_admin_dsn: str | None) -> AsyncIterator[str]:
    """Each core test runs against SQLite and against PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/firelink.db"
        return
    if pg_admin_dsn is None:
        pytest.skip("no PostgreSQL here and none installed to start (scripts/sysdeps.sh installs it)")
    async with pg_database(pg_admin_dsn) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/firelink.db"


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def users() -> AsyncIterator[dict[str, Api]]:
    """Logged-in API clients by user name (filled by the tests' `login`), closed after the test."""
    made: dict[str, Api] = {}
    yield made
    for api in made.values():
        await api.close()
