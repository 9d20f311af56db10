"""What an actor may see of the command tree: the stations whose units, cases and people it follows.

A user belongs to an organisation (users.org_id): a station sees its own work, a brigade all its stations', the
city everything. Units see only themselves; agencies follow the stations of their organisation (all when it has
none). Queries filter by `Scope.stations` (a unit's `station_id`), so no row of another subtree leaks.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatch.actor import Actor
from dispatch.org_tree import OrgTree


@dataclass(frozen=True, slots=True)
class Scope:
    stations: frozenset[str]  # the stations whose work the actor sees
    unit_id: str | None = None  # set for a unit's own login: only this unit

    def sees_station(self, station_id: str | None) -> bool:
        return station_id is not None and station_id in self.stations

    def sees_unit(self, unit_id: str, station_id: str | None) -> bool:
        if self.unit_id is not None:
            return unit_id == self.unit_id
        return self.sees_station(station_id)


def scope_of(actor: Actor, tree: OrgTree, default_station: str) -> Scope:
    """The actor's scope. A user stored without an organisation works for the default station (an admin or the
    system: the whole tree)."""
    everything = frozenset(o.id for o in tree.stations())
    if actor.role == "system":
        return Scope(everything)
    if actor.role == "unit":
        return Scope(frozenset(), unit_id=actor.unit_id or "")
    org = actor.org_id
    if org is None:
        if actor.role in ("admin", "agency"):
            return Scope(everything)
        org = default_station
    return Scope(tree.stations_under(org))
