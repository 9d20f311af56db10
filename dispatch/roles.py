"""The roles users log in with, what each may do, and at which level of the command tree it usually works.

One table: the console's route role sets (console.routing), the accounts the CLI and config accept (dispatch.auth)
and the pages' buttons (`GET /api/me` → `user.can`) are all derived from it, so a role is added in one place.
Who sees which stations' work is not a role's business but its organisation's (dispatch.scope).
"""

from __future__ import annotations

from dataclasses import dataclass

# Powers: act = officer work (take alarms, link out, hazards, notices, inspections, triage); read = the station's
# records, KPIs and documents; approve = approve penalty decisions and case referrals (a leader); targets = set
# the evaluation's volume targets; review = review the documents stations filed (大队审核); admin = system
# administration (refused input, accounts).
POWERS = ("act", "read", "approve", "targets", "review", "admin")


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    zh: str
    en: str
    level: str | None  # the level it usually works at: station | brigade | city; None: outside the tree
    powers: frozenset[str]


def _role(name: str, zh: str, en: str, level: str | None, *powers: str) -> Role:
    return Role(name, zh, en, level, frozenset(powers))


ROLE_TABLE: dict[str, Role] = {r.name: r for r in (
    _role("admin", "系统管理员", "Administrator", None, *POWERS),
    _role("station_chief", "所长", "Station chief", "station", "act", "read", "approve", "targets"),
    _role("deputy_chief", "分管副所长", "Deputy chief", "station", "act", "read", "approve"),
    _role("duty_officer", "值班民警", "Duty officer", "station", "act", "read"),
    _role("community_officer", "社区民警", "Community officer", "station", "act", "read"),
    _role("assessor", "考评员", "Assessor", None, "read"),
    _role("brigade_reviewer", "大队审核员", "Brigade reviewer", "brigade", "read", "review"),
    _role("city_supervisor", "市局督导", "City supervisor", "city", "read", "review"),
    _role("unit", "单位", "Unit", None),
    _role("agency", "联动单位", "Agency", None),
    _role("assistant", "村级消防员/网格员", "Fire assistant", "station"),  # files reports, sees only its own
)}
ROLES: tuple[str, ...] = tuple(ROLE_TABLE)


def with_power(power: str) -> frozenset[str]:
    """The roles that have `power`."""
    if power not in POWERS:
        raise ValueError(f"unknown power {power!r}")
    return frozenset(r.name for r in ROLE_TABLE.values() if power in r.powers)


def powers_of(role: str) -> list[str]:
    found = ROLE_TABLE.get(role)
    return sorted(found.powers) if found else []
