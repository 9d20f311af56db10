"""The unit registry's commands (单位档案): create, edit, retire and import units, each through the core's single
writer, each a record entry naming the unit (records.unit_id), so a unit's history is part of the hash chain:

    unit.created   {"unit_id", "fields": {...every field...}, "via": "api" | "import"}
    unit.updated   {"unit_id", "version", "changes": {field: {"before", "after"}}}   (only fields that changed)
    unit.retired   {"unit_id", "version", "reason"}
    units.imported {"count", "file_sha256", "file_name", "unit_ids_first", "unit_ids_last"}   (no unit: the batch)

Edits are optimistic: an edit names the version it was made on and is refused (409, StaleVersion) when the unit
changed since. A retired unit keeps its row, its history and its incidents; lists hide it; it can no longer be
edited. Alarms from a retired unit's devices are still accepted, stored and shown (the unit stays in `Core.units`):
a real alarm is never dropped because of a paperwork state.

Writes are checked against the caller's scope (dispatch.scope): the unit's station, before and after, must be one
the caller oversees. `Core.units`, the in-memory index intake and the views read, is updated after each commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.actor import Actor
from dispatch.core import Core
from dispatch.errors import BadRequest, Forbidden, NotFound
from dispatch.models import Unit, User, table_of
from dispatch.scope import stations_seen
from dispatch.state import TransitionError
from dispatch.unit_fields import FIELDS, RESERVED_IDS, RetireBody, UnitCreate, UnitFields, UnitPatch
from dispatch.unit_views import COMMUNITY_OFFICER_ROLES_EXCLUDED, UnitViews, unit_types

UNIT_CREATED = "unit.created"
UNIT_UPDATED = "unit.updated"
UNIT_RETIRED = "unit.retired"
UNITS_IMPORTED = "units.imported"
MAX_IMPORT_ROWS = 50_000
INSERT_UNITS = insert(table_of(Unit))


class StaleVersion(TransitionError):
    """The edit was made on an older version of the unit (HTTP 409 with the current version)."""

    def __init__(self, unit_id: str, sent: int, current: int) -> None:
        super().__init__(f"unit {unit_id!r} changed since (version {current}, the edit was made on {sent}): "
                         "reload it and edit again")
        self.current = current


class Duplicate(TransitionError):
    """An id or credit code another unit already has (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # the spreadsheet's row number (the header is row 1)
    message: str


class ImportRefused(BadRequest):
    """Rows that cannot be imported; nothing was (HTTP 400 with every row's error)."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        rows = sorted(errors, key=lambda e: e.row)
        super().__init__(f"{len(rows)} row(s) refused; nothing imported")
        self.errors = rows


@dataclass(frozen=True, slots=True)
class ImportRow:
    row: int
    unit_id: str
    fields: UnitFields


@dataclass(slots=True)
class CheckedRows:
    """An import file's rows after the checks that need no database: the good ones and the errors."""

    rows: list[ImportRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def new_unit_id() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def _explain(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def category_of(unit_type: str) -> str:
    found = unit_types().get(unit_type)
    return found[1].zh if found else unit_type


class Registry:
    """Commands on the registry; reads are UnitViews'."""

    def __init__(self, core: Core, views: UnitViews) -> None:
        self.core = core
        self.views = views

    # ------------------------------------------------------------------ checks

    def station_for(self, scope: Actor, station_id: str | None) -> str:
        """The unit's station: the one given (a station the caller oversees), or the caller's only station."""
        stations = stations_seen(scope)
        if station_id is None:
            if len(stations) == 1:
                return next(iter(stations))
            raise BadRequest("station_id is required (you oversee several stations, or none)")
        org = self.core.orgs.orgs.get(station_id)
        if org is None or org.level != "station":
            raise BadRequest(f"unknown station {station_id!r}")
        if station_id not in stations:
            raise Forbidden(f"station {station_id!r} is outside your scope")
        return station_id

    @staticmethod
    async def _officers(s: AsyncSession, names: Iterable[str]) -> set[str]:
        """Of `names`, the usernames of police accounts (possible community officers)."""
        wanted = sorted({n for n in names if n})
        if not wanted:
            return set()
        rows = await s.scalars(select(User.username).where(
            User.username.in_(wanted), User.role.not_in(sorted(COMMUNITY_OFFICER_ROLES_EXCLUDED))))
        return set(rows.all())

    async def _check_officer(self, s: AsyncSession, username: str) -> None:
        if username and username not in await self._officers(s, [username]):
            raise BadRequest(f"community_officer {username!r} is not a police officer's account")

    @staticmethod
    async def _check_credit_code(s: AsyncSession, code: str, unit_id: str) -> None:
        if not code:
            return
        other = await s.scalar(select(Unit.id).where(Unit.credit_code == code, Unit.id != unit_id).limit(1))
        if other is not None:
            raise Duplicate(f"credit code {code} is already registered for unit {other!r}")

    def _visible_row(self, actor: Actor, row: Unit | None, unit_id: str) -> Unit:
        if row is None:
            raise NotFound(f"no unit {unit_id!r}")
        if not self.core.scope(actor).sees_unit(row.id, row.station_id):
            raise Forbidden(f"unit {unit_id!r} is outside your scope")
        return row

    # ------------------------------------------------------------------ commands

    async def create(self, body: UnitCreate, actor: Actor) -> dict[str, Any]:
        station = self.station_for(self.core.scope(actor), body.station_id)
        values = {**body.stored(), "station_id": station}
        unit_id = body.id or new_unit_id()
        async with self.core.writer.tx() as tx:
            s = tx.session
            if await s.get(Unit, unit_id) is not None:
                raise Duplicate(f"unit id {unit_id!r} is taken")
            await self._check_credit_code(s, values["credit_code"], unit_id)
            await self._check_officer(s, values["community_officer"])
            row = Unit(id=unit_id, category=category_of(values["unit_type"]), retired_at=None, version=1, **values)
            s.add(row)
            await s.flush()
            self.core.writer.record(tx, UNIT_CREATED, actor, self.core.clock(),
                                    {"unit_id": unit_id, "fields": values, "via": "api"}, unit_id=unit_id)
            tx.after_commit.append(lambda: self.core.units.__setitem__(unit_id, row))
        return self.views.view(row)

    async def update(self, unit_id: str, patch: UnitPatch, actor: Actor) -> dict[str, Any]:
        scope = self.core.scope(actor)
        async with self.core.writer.tx() as tx:
            s = tx.session
            row = self._visible_row(actor, await s.get(Unit, unit_id), unit_id)
            if row.retired_at is not None:
                raise TransitionError(f"unit {unit_id!r} is retired: it can no longer be edited")
            if row.version != patch.version:
                raise StaleVersion(unit_id, patch.version, row.version)
            before = {f: getattr(row, f) for f in FIELDS}
            try:
                merged = UnitFields.model_validate({**before, **patch.changes()})
            except ValidationError as exc:
                raise BadRequest(_explain(exc)) from None
            after = merged.stored()
            if after["station_id"] != before["station_id"] or before["station_id"] is None:
                after["station_id"] = self.station_for(scope, after["station_id"])
            changes = {f: {"before": before[f], "after": after[f]} for f in FIELDS if before[f] != after[f]}
            if not changes:
                return self.views.view(row)
            if "credit_code" in changes:
                await self._check_credit_code(s, after["credit_code"], unit_id)
            if "community_officer" in changes:
                await self._check_officer(s, after["community_officer"])
            for f in changes:
                setattr(row, f, after[f])
            row.category = category_of(row.unit_type)
            row.version += 1
            await s.flush()
            self.core.writer.record(tx, UNIT_UPDATED, actor, self.core.clock(),
                                    {"unit_id": unit_id, "version": row.version, "changes": changes},
                                    unit_id=unit_id)
            tx.after_commit.append(lambda: self.core.units.__setitem__(unit_id, row))
        return self.views.view(row)

    async def retire(self, unit_id: str, body: RetireBody, actor: Actor) -> dict[str, Any]:
        async with self.core.writer.tx() as tx:
            s = tx.session
            row = self._visible_row(actor, await s.get(Unit, unit_id), unit_id)
            if row.retired_at is not None:
                raise TransitionError(f"unit {unit_id!r} is already retired")
            if body.version is not None and body.version != row.version:
                raise StaleVersion(unit_id, body.version, row.version)
            row.retired_at = self.core.clock()
            row.version += 1
            await s.flush()
            self.core.writer.record(tx, UNIT_RETIRED, actor, row.retired_at,
                                    {"unit_id": unit_id, "version": row.version, "reason": body.reason},
                                    unit_id=unit_id)
            tx.after_commit.append(lambda: self.core.units.__setitem__(unit_id, row))
        return self.views.view(row)

    # ------------------------------------------------------------------ import

    def check_rows(self, rows: Sequence[tuple[int, dict[str, Any]]], actor: Actor) -> CheckedRows:
        """The checks an import needs no database for (CPU only: the console runs it off the event loop): each row's
        fields, its station in the caller's scope, ids and credit codes repeated inside the file. `rows`: (row
        number, {field: cell value}) from dispatch.unit_sheets."""
        out = CheckedRows()
        if len(rows) > MAX_IMPORT_ROWS:
            out.errors.append(RowError(1, f"{len(rows)} rows: at most {MAX_IMPORT_ROWS} per file"))
            return out
        scope = self.core.scope(actor)
        stations = self.core.orgs.stations()
        by_name = {o.name: o.id for o in stations}
        seen_ids: dict[str, int] = {}
        seen_codes: dict[str, int] = {}
        for number, cells in rows:
            values = dict(cells)
            if values.pop("_extra", False):
                out.errors.append(RowError(number, "values beyond the last column of the header"))
                continue
            given_id = values.pop("id", None)
            station = values.get("station_id")
            if isinstance(station, str) and station in by_name and station not in self.core.orgs.orgs:
                values["station_id"] = by_name[station]
            try:
                fields = (UnitCreate if given_id else UnitFields).model_validate(
                    {**values, **({"id": given_id} if given_id else {})})
                station_id = self.station_for(scope, fields.station_id)
            except ValidationError as exc:
                out.errors.append(RowError(number, _explain(exc)))
                continue
            except (BadRequest, Forbidden) as exc:
                out.errors.append(RowError(number, str(exc)))
                continue
            unit_id = str(given_id) if given_id else new_unit_id()
            problems = []
            if unit_id in seen_ids:
                problems.append(f"id {unit_id!r} repeats row {seen_ids[unit_id]}")
            seen_ids.setdefault(unit_id, number)
            if fields.credit_code:
                if fields.credit_code in seen_codes:
                    problems.append(f"credit code {fields.credit_code} repeats row {seen_codes[fields.credit_code]}")
                seen_codes.setdefault(fields.credit_code, number)
            if problems:
                out.errors.append(RowError(number, "; ".join(problems)))
                continue
            out.rows.append(ImportRow(number, unit_id, fields.model_copy(update={"station_id": station_id})))
        return out

    async def import_units(self, checked: CheckedRows, actor: Actor, file_name: str = "",
                           file_sha256: str = "") -> int:
        """Imports every row in one transaction, or none: the rows' errors (`checked.errors` and those found against
        the database: ids and credit codes taken, unknown community officers) raise ImportRefused."""
        errors = list(checked.errors)
        if not checked.rows and not errors:
            raise ImportRefused([RowError(1, "no rows to import")])
        now = self.core.clock()
        values: list[dict[str, Any]] = []
        made: dict[str, Unit] = {}
        async with self.core.writer.tx(long=True) as tx:  # up to thousands of rows: off the loop
            s = tx.session
            ids = [r.unit_id for r in checked.rows]
            codes = [r.fields.credit_code for r in checked.rows if r.fields.credit_code]
            taken_ids: set[str] = set()
            taken_codes: dict[str, str] = {}
            for start in range(0, max(len(ids), len(codes)), 1000):
                if ids[start:start + 1000]:
                    taken_ids.update((await s.scalars(select(Unit.id).where(
                        Unit.id.in_(ids[start:start + 1000])))).all())
                if codes[start:start + 1000]:
                    taken_codes.update((c, i) for c, i in (await s.execute(select(Unit.credit_code, Unit.id).where(
                        Unit.credit_code.in_(codes[start:start + 1000])))).all())
            officers = await self._officers(s, (r.fields.community_officer for r in checked.rows))
            for r in checked.rows:
                f = r.fields
                problems = []
                if r.unit_id in taken_ids or r.unit_id.lower() in RESERVED_IDS:
                    problems.append(f"unit id {r.unit_id!r} is taken")
                if f.credit_code in taken_codes:
                    problems.append(f"credit code {f.credit_code} is already registered for unit "
                                    f"{taken_codes[f.credit_code]!r}")
                if f.community_officer and f.community_officer not in officers:
                    problems.append(f"community_officer {f.community_officer!r} is not a police officer's account")
                if problems:
                    errors.append(RowError(r.row, "; ".join(problems)))
            if errors:
                raise ImportRefused(errors)
            for r in checked.rows:
                stored = r.fields.stored()
                row = {"id": r.unit_id, "category": category_of(stored["unit_type"]), "retired_at": None,
                       "version": 1, **stored}
                values.append(row)
                made[r.unit_id] = Unit(**row)
                self.core.writer.record(tx, UNIT_CREATED, actor, now,
                                        {"unit_id": r.unit_id, "fields": stored, "via": "import"}, unit_id=r.unit_id)
            await s.execute(INSERT_UNITS, values)
            if self.core.db.dialect == "sqlite":
                # fresh statistics, so SQLite's planner scans instead of walking the station index when a station
                # holds most units (PostgreSQL's autovacuum analyzes by itself)
                await s.execute(text("ANALYZE units"))
            self.core.writer.record(tx, UNITS_IMPORTED, actor, now, {
                "count": len(values), "file_name": file_name[:200], "file_sha256": file_sha256,
                "unit_ids_first": values[0]["id"], "unit_ids_last": values[-1]["id"]})
            tx.after_commit.append(lambda: self.core.units.update(made))
        return len(values)
