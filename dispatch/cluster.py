"""Cluster mode's settings as the core's parts take them (docs/cluster.md): the node's lease, its record chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from config.schema import FirelinkConfig
from dispatch.db import Database
from dispatch.lease import NAME
from dispatch.writer import ClusterWriting

STARTUP_LOCK = 0x46_4C_53_54_41_52_54  # "FLSTART"


def lease_name(cfg: FirelinkConfig) -> str:
    """`core` on a single box (one core per database); `node:{id}` in a cluster (one process per node id)."""
    return f"node:{cfg.cluster.node()}" if cfg.cluster.enabled else NAME


@asynccontextmanager
async def startup_turn(db: Database, cfg: FirelinkConfig) -> AsyncIterator[None]:
    """Cluster mode: cores starting together sync the configuration into the database (organisations, units,
    devices, users) one at a time (a session advisory lock on its own connection); a single box: nothing."""
    if not cfg.cluster.enabled:
        yield
        return
    async with db.engine.connect() as conn:
        await conn.exec_driver_sql(f"SELECT pg_advisory_lock({STARTUP_LOCK})")
        await conn.commit()
        try:
            yield
        finally:
            await conn.exec_driver_sql(f"SELECT pg_advisory_unlock({STARTUP_LOCK})")
            await conn.commit()


def cluster_writing(cfg: FirelinkConfig) -> ClusterWriting | None:
    """How this core writes the record in a cluster (its own chain, a signed head); None on a single box."""
    if not cfg.cluster.enabled or cfg.cluster.head_key is None:
        return None
    return ClusterWriting(cfg.cluster.node(), cfg.cluster.head_key.get_secret_value().encode())
