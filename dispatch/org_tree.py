"""The command tree city → brigade → station, held in memory for scoping: who sees which stations' work."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

LEVELS = ("city", "brigade", "station")  # top to bottom


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    level: str
    parent_id: str | None


@dataclass(frozen=True)
class OrgTree:
    orgs: dict[str, Org]
    _children: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, orgs: Iterable[Org]) -> OrgTree:
        by_id = {o.id: o for o in orgs}
        children: dict[str, list[str]] = {}
        for o in by_id.values():
            if o.parent_id is not None:
                children.setdefault(o.parent_id, []).append(o.id)
        return cls(by_id, {k: tuple(sorted(v)) for k, v in children.items()})

    def subtree(self, org_id: str) -> frozenset[str]:
        """`org_id` and every organisation below it (empty for an unknown id)."""
        if org_id not in self.orgs:
            return frozenset()
        out, todo = set(), [org_id]
        while todo:
            o = todo.pop()
            out.add(o)
            todo.extend(self._children.get(o, ()))
        return frozenset(out)

    def stations_under(self, org_id: str) -> frozenset[str]:
        """The stations an organisation oversees (itself, when it is one)."""
        return frozenset(o for o in self.subtree(org_id) if self.orgs[o].level == "station")

    def ancestors(self, org_id: str) -> list[Org]:
        """`org_id` and the organisations above it, bottom up."""
        out = []
        cur = self.orgs.get(org_id)
        while cur is not None:
            out.append(cur)
            cur = self.orgs.get(cur.parent_id) if cur.parent_id else None
        return out

    def stations(self) -> list[Org]:
        return sorted((o for o in self.orgs.values() if o.level == "station"), key=lambda o: o.id)
