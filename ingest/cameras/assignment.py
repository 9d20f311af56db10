"""Which cameras a process watches: the switch that starts and stops them, and the hook that drives it.

A single box watches every camera it is given. In cluster mode something outside the camera side decides
(dispatch.camera_leases: a lease per camera), so the processes that capture (a core's camera hub, a
`firelink detect` worker) take that decision as an injected `CameraAssignment` and never import it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class CameraSwitch(Protocol):
    """Starts and stops watching a camera in this process (the camera hub)."""

    async def watch(self, camera_id: str) -> None: ...

    async def unwatch(self, camera_id: str) -> None: ...

    def watched_by(self, camera_id: str, node: str | None) -> None:
        """Which node watches a camera this process does not (None: none known)."""


CameraAssignment = Callable[[CameraSwitch], Awaitable[None]]
"""Drives a switch (`watch`/`unwatch` as cameras are assigned to this process and taken away) until cancelled;
on cancellation it stops every camera it started and lets the others take them."""
