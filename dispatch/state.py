"""Incident and dispatch state machines: which step may follow which."""

from __future__ import annotations

from enum import StrEnum


class IncidentStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    ON_SCENE = "on_scene"
    CLOSED = "closed"


class DispatchStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    ON_SCENE = "on_scene"


class Outcome(StrEnum):
    RESOLVED = "resolved"
    FALSE_ALARM = "false_alarm"


_INCIDENT_NEXT: dict[IncidentStatus, frozenset[IncidentStatus]] = {
    IncidentStatus.NEW: frozenset({IncidentStatus.ACKNOWLEDGED, IncidentStatus.DISPATCHED, IncidentStatus.CLOSED}),
    IncidentStatus.ACKNOWLEDGED: frozenset({IncidentStatus.DISPATCHED, IncidentStatus.ON_SCENE,
                                            IncidentStatus.CLOSED}),
    IncidentStatus.DISPATCHED: frozenset({IncidentStatus.ON_SCENE, IncidentStatus.CLOSED}),
    IncidentStatus.ON_SCENE: frozenset({IncidentStatus.CLOSED}),
    IncidentStatus.CLOSED: frozenset(),
}

_DISPATCH_ORDER = list(DispatchStatus)


class TransitionError(Exception):
    """A step that may not follow the current state (HTTP 409)."""


def check_incident(current: str, target: IncidentStatus) -> None:
    cur = IncidentStatus(current)
    if target not in _INCIDENT_NEXT[cur]:
        raise TransitionError(f"incident is {cur.value}; cannot go to {target.value}")


def dispatch_advances(current: str, target: DispatchStatus) -> bool:
    """Dispatch status only moves forward; a late 'delivered' after 'acknowledged' changes nothing."""
    return _DISPATCH_ORDER.index(target) > _DISPATCH_ORDER.index(DispatchStatus(current))
