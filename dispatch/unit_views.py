"""Read side of the unit registry: search and lists (in SQL, one page at a time), a unit's page with its devices,
cameras and history (its record entries), the choices a unit form offers, the rows of an export. Pure reads.

Every read is filtered by the caller's scope (dispatch.scope): a unit's `station_id` among the stations the caller
sees, or the one unit of a unit's own login. Retired units stay in the registry and in every history; lists leave
them out unless asked (`include_retired`), except for a unit's own login, which always finds itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from config.facilities import shipped_facilities
from config.taxonomy import UnitClass, UnitType, shipped_taxonomy
from dispatch.actor import Actor
from dispatch.core import Core
from dispatch.errors import Forbidden, NotFound
from dispatch.models import Device, RecordEntry, Unit, User
from dispatch.scope import stations_seen
from dispatch.views import device_view, iso, record_view, unit_view

COMMUNITY_OFFICER_ROLES_EXCLUDED = frozenset({"unit", "agency", "assessor"})
"""Accounts that cannot be a unit's community officer (社区民警): every other role is a police officer's."""


@dataclass(frozen=True, slots=True)
class UnitFilter:
    q: str = ""  # words, each found in the name, address, credit code or id (case-insensitive)
    unit_type: str | None = None
    unit_class: str | None = None
    station_id: str | None = None
    include_retired: bool = False
    limit: int | None = None  # None: every match (the console's overview)
    offset: int = 0


@cache
def unit_types() -> dict[str, tuple[UnitClass, UnitType]]:
    """The shipped taxonomy's types by code, with their class."""
    return shipped_taxonomy().types()


def _like(text: str) -> str:
    """A LIKE pattern that finds `text` anywhere, with its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def in_scope(scope: Actor) -> ColumnElement[bool]:
    """The units a scoped actor (`Core.scope`) sees."""
    if scope.role == "unit":
        return Unit.id == (scope.unit_id or "")
    stations = stations_seen(scope)
    return Unit.station_id.in_(sorted(stations)) if stations else false()


def word_found(word: str, dialect: str) -> ColumnElement[bool]:
    """`word` in the name, address, credit code or id, ignoring case. Folding case costs (PostgreSQL's ILIKE is several
    times slower than LIKE), so only words with cased letters pay it: a Chinese word or a number matches the same
    either way, credit codes are stored upper case, and SQLite's LIKE ignores ASCII case by itself."""
    pattern = _like(word)
    fold = dialect != "sqlite" and word.lower() != word.upper()

    def found(col: InstrumentedAttribute[str]) -> ColumnElement[bool]:
        return col.ilike(pattern, escape="\\") if fold else col.like(pattern, escape="\\")

    return or_(found(Unit.name), found(Unit.address), found(Unit.id),
               Unit.credit_code.like(_like(word.upper()), escape="\\"))


def matching(scope: Actor, f: UnitFilter, dialect: str) -> list[ColumnElement[bool]]:
    """The conditions of the units in `scope` that match `f` (every word found)."""
    conds: list[ColumnElement[bool]] = [in_scope(scope)]
    if not f.include_retired and scope.role != "unit":  # a unit's own login always finds itself
        conds.append(Unit.retired_at.is_(None))
    conds.extend(word_found(word, dialect) for word in f.q.split())
    if f.unit_type:
        conds.append(Unit.unit_type == f.unit_type)
    if f.unit_class:
        found = next((c for c in shipped_taxonomy().classes if c.code == f.unit_class), None)
        conds.append(Unit.unit_type.in_([t.code for t in found.types]) if found else false())
    if f.station_id:
        conds.append(Unit.station_id == f.station_id)
    return conds


def page_query(scope: Actor, f: UnitFilter, dialect: str) -> Select[str, int]:
    """The ids of one page of matches by name, each with the number of all matches (one scan; narrow rows to sort:
    the units themselves come from the core's index)."""
    query = (select(Unit.id, func.count().over()).where(and_(*matching(scope, f, dialect)))
             .order_by(Unit.name, Unit.id))
    return query if f.limit is None else query.limit(f.limit).offset(f.offset)


class UnitViews:
    """What the registry shows; reads only."""

    def __init__(self, core: Core) -> None:
        self.core = core

    # ------------------------------------------------------------------ shapes

    def view(self, u: Unit) -> dict[str, Any]:
        """A unit's registry entry: the console's unit view plus the registry's fields and names."""
        found = unit_types().get(u.unit_type)
        station = self.core.orgs.orgs.get(u.station_id) if u.station_id else None
        out = unit_view(u)
        out.update(
            unit_type=u.unit_type, unit_type_name=found[1].zh if found else u.unit_type,
            unit_class=found[0].code if found else None, unit_class_name=found[0].zh if found else None,
            credit_code=u.credit_code, safety_manager_name=u.safety_manager_name,
            safety_manager_phone=u.safety_manager_phone, floors=u.floors, area_m2=u.area_m2, occupancy=u.occupancy,
            facilities=list(u.facilities or []), station_id=u.station_id,
            station_name=station.name if station else None, community_officer=u.community_officer,
            retired=u.retired_at is not None, retired_at=iso(u.retired_at),
            version=u.version)
        return out

    def _with_devices(self, units: Sequence[Unit], devices: Sequence[Device]) -> list[dict[str, Any]]:
        by_unit: dict[str, list[dict[str, Any]]] = {}
        for d in devices:
            by_unit.setdefault(d.unit_id, []).append(device_view(d))
        out = []
        for u in units:
            v = self.view(u)
            v["devices"] = by_unit.get(u.id, [])
            open_inc = self.core.open_by_unit.get(u.id)
            v["open_incident_id"] = open_inc.incident_id if open_inc else None
            out.append(v)
        return out

    # ------------------------------------------------------------------ reads

    def visible(self, actor: Actor, unit_id: str) -> Unit:
        """The unit, if `actor` may see it (404 unknown, 403 another subtree's)."""
        unit = self.core.units.get(unit_id)
        if unit is None:
            raise NotFound(f"no unit {unit_id!r}")
        if not self.core.scope(actor).sees_unit(unit.id, unit.station_id):
            raise Forbidden(f"unit {unit_id!r} is outside your scope")
        return unit

    async def search(self, actor: Actor, f: UnitFilter) -> tuple[int, list[dict[str, Any]]]:
        """(how many match, one page of them with their devices and open incident)."""
        scope = self.core.scope(actor)
        async with self.core.db.session() as s:
            rows = (await s.execute(page_query(scope, f, self.core.db.dialect))).all()
            total = int(rows[0][1]) if rows else 0
            if not rows and f.offset:  # a page beyond the last: how many there are
                total = await s.scalar(select(func.count(Unit.id)).where(
                    and_(*matching(scope, f, self.core.db.dialect)))) or 0
            units = await self._units(s, [str(r[0]) for r in rows])
            ids = [u.id for u in units]
            devices = (await s.scalars(select(Device).where(Device.unit_id.in_(ids)).order_by(Device.id))).all() \
                if len(ids) <= 1000 else (await s.scalars(select(Device).order_by(Device.id))).all()
        return total, self._with_devices(units, devices)

    async def _units(self, s: AsyncSession, ids: list[str]) -> list[Unit]:
        """The units by id, in that order, from the core's index (kept in step with every registry commit); any it
        lacks (none, unless a row was written past the registry) from the database."""
        known = self.core.units
        missing = [i for i in ids if i not in known]
        loaded = {u.id: u for u in (await s.scalars(select(Unit).where(Unit.id.in_(missing)))).all()} \
            if missing else {}
        return [u for i in ids if (u := known.get(i) or loaded.get(i)) is not None]

    async def units(self, actor: Actor, f: UnitFilter) -> list[Unit]:
        """Every unit matching `f` in `actor`'s scope, by name (exports)."""
        query = select(Unit).where(and_(*matching(self.core.scope(actor), f, self.core.db.dialect))) \
            .order_by(Unit.name, Unit.id)
        async with self.core.db.session() as s:
            return list((await s.scalars(query)).all())

    async def detail(self, unit_id: str, actor: Actor, cameras: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """The unit's page: its entry, devices, cameras (`cameras`: the configured ones watching it), open incident
        and history (every record entry about it, oldest first)."""
        self.visible(actor, unit_id)
        async with self.core.db.session() as s:
            unit = await s.get(Unit, unit_id)
            if unit is None:
                raise NotFound(f"no unit {unit_id!r}")
            devices = (await s.scalars(select(Device).where(Device.unit_id == unit_id).order_by(Device.id))).all()
            entries = (await s.scalars(select(RecordEntry).where(RecordEntry.unit_id == unit_id)
                                       .order_by(RecordEntry.id))).all()
        out = self._with_devices([unit], devices)[0]
        out["cameras"] = list(cameras)
        out["history"] = [record_view(e) for e in entries]
        return out

    async def officers(self, actor: Actor) -> list[dict[str, Any]]:
        """Police accounts the caller may name as a unit's community officer: those working in its scope."""
        scope = self.core.scope(actor)
        default = self.core.cfg.station.id
        async with self.core.db.session() as s:
            users = (await s.scalars(select(User).where(User.role.not_in(sorted(COMMUNITY_OFFICER_ROLES_EXCLUDED)))
                                     .order_by(User.username))).all()
        out = []
        for u in users:
            stations = self.core.orgs.stations_under(u.org_id or default)
            if stations & stations_seen(scope):
                out.append({"username": u.username, "real_name": u.real_name, "org_id": u.org_id or default})
        return out

    async def options(self, actor: Actor) -> dict[str, Any]:
        """What a unit form offers the caller: the stations in its scope and their community officers."""
        scope = self.core.scope(actor)
        stations = [{"id": o.id, "name": o.name, "parent_id": o.parent_id}
                    for o in self.core.orgs.stations() if o.id in stations_seen(scope)]
        return {"stations": stations, "officers": await self.officers(actor)}


def taxonomy_view() -> dict[str, Any]:
    """The unit taxonomy (class → types) and the facility list, as forms and imports use them."""
    tax = shipped_taxonomy()
    fac = shipped_facilities()
    return {
        "version": tax.version,
        "classes": [{"code": c.code, "zh": c.zh, "en": c.en,
                     "types": [{"code": t.code, "zh": t.zh, "en": t.en} for t in c.types]} for c in tax.classes],
        "facilities_version": fac.version,
        "facilities": [{"code": f.code, "zh": f.zh, "en": f.en, "qr": f.qr} for f in fac.facilities],
    }
