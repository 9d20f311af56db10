"""Who acts on the core: a logged-in user, an agency's system, or the system itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an action: a logged-in user, an agency's system, or the system itself."""

    username: str
    role: str  # admin | duty_officer | unit | agency | assessor | system
    unit_id: str | None = None
    agency: str | None = None


SYSTEM = Actor("system", "system")
