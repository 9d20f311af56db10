"""Cluster mode's settings as the core's parts take them (docs/cluster.md): the node's lease, its record chain."""

from __future__ import annotations

from config.schema import FirelinkConfig
from dispatch.lease import NAME
from dispatch.writer import ClusterWriting


def lease_name(cfg: FirelinkConfig) -> str:
    """`core` on a single box (one core per database); `node:{id}` in a cluster (one process per node id)."""
    return f"node:{cfg.cluster.node()}" if cfg.cluster.enabled else NAME


def cluster_writing(cfg: FirelinkConfig) -> ClusterWriting | None:
    """How this core writes the record in a cluster (its own chain, a signed head); None on a single box."""
    if not cfg.cluster.enabled or cfg.cluster.head_key is None:
        return None
    return ClusterWriting(cfg.cluster.node(), cfg.cluster.head_key.get_secret_value().encode())
