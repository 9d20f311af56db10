"""What an actor may see of the command tree: the stations whose units, cases and people it follows.

A user belongs to an organisation (users.org_id): a station sees its own work, a brigade all its stations', the
city everything. Units see only themselves; agencies follow the stations of their organisation (all when it has
none). `scoped()` puts the stations on the actor once per request (console.security), so every check below the
console reads them from the actor (`Actor.sees_unit`) and every list filters by them (`unit_ids_in_scope`): no
row of another subtree leaks.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import InstrumentedAttribute

from dispatch.actor import Actor
from dispatch.models import Unit
from dispatch.org_tree import OrgTree


def stations_of(actor: Actor, tree: OrgTree, default_station: str,
                oversight: Collection[str] = ()) -> frozenset[str]:
    """The stations an actor's organisation oversees. A user stored without an organisation works for the default
    station; an admin, an overseeing agency or the system without one sees the whole tree. An agency without
    oversight (medical) follows no station's supervision work."""
    if actor.role == "agency" and actor.agency not in oversight:
        return frozenset()
    if actor.org_id is None:
        if actor.role in ("admin", "agency", "system"):
            return frozenset(o.id for o in tree.stations())
        return frozenset({default_station})
    return tree.stations_under(actor.org_id)


def scoped(actor: Actor, tree: OrgTree, default_station: str, oversight: Collection[str] = ()) -> Actor:
    """The actor with its stations set (a unit's login is limited by its unit instead)."""
    if actor.role == "unit":
        return replace(actor, stations=frozenset())
    return replace(actor, stations=stations_of(actor, tree, default_station, oversight))


def scope_of(actor: Actor, tree: OrgTree, default_station: str) -> Actor:
    """The actor with its scope set: as the console put it on the request, else worked out here."""
    return actor if actor.stations is not None else scoped(actor, tree, default_station)


def stations_seen(actor: Actor) -> frozenset[str]:
    """The stations a scoped actor sees (`scope_of`); a unit's login sees none, only its own unit."""
    return actor.stations if actor.stations is not None and actor.role != "unit" else frozenset()


def unit_ids_in_scope(actor: Actor) -> Select[str] | None:
    """A subquery of the unit ids the actor sees, for `column.in_(...)`; None when nothing limits it."""
    if actor.role == "unit":
        return select(Unit.id).where(Unit.id == (actor.unit_id or ""))
    if actor.stations is None:
        return None
    return select(Unit.id).where(Unit.station_id.in_(sorted(actor.stations)))


def in_scope(actor: Actor, unit_column: ColumnElement[str] | InstrumentedAttribute[str]) -> ColumnElement[bool] | None:
    """A WHERE clause limiting a unit id column to the actor's scope; None when nothing limits it."""
    ids = unit_ids_in_scope(actor)
    return None if ids is None else unit_column.in_(ids)
