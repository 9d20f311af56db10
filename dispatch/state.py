"""Incident and dispatch state machines: which step may follow which."""

from __future__ import annotations

from enum import StrEnum


class IncidentStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    ON_SCENE = "on_scene"
    CLOSED = "closed"


class HazardStatus(StrEnum):
    """A hazard's case: found → notice with a deadline → proof → recheck (due) → penalty → closed."""

    OPEN = "open"
    NOTICE_ISSUED = "notice_issued"
    PROOF_SUBMITTED = "proof_submitted"
    RECHECK_DUE = "recheck_due"
    PENALTY = "penalty"
    CLOSED = "closed"


# A notice runs (the unit may still send proof) / the case is in rectification (proof may still be sent).
UNDER_NOTICE = frozenset({HazardStatus.NOTICE_ISSUED, HazardStatus.PROOF_SUBMITTED})
IN_RECTIFICATION = UNDER_NOTICE | {HazardStatus.RECHECK_DUE, HazardStatus.PENALTY}


class PenaltyStatus(StrEnum):
    """A penalty decision: proposed by the system → confirmed by an officer → approved by the leader → closed."""

    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    APPROVED = "approved"
    REFERRED = "referred"  # beyond the station's authority: referred (移送), not decided here
    CLOSED = "closed"


class ReferralStatus(StrEnum):
    """A 案件移送书: drafted by an officer → approved (sealed) by a supervisor who is not that officer."""

    PROPOSED = "proposed"
    APPROVED = "approved"


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
