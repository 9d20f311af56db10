"""The incident core's shared state: the single writer, the configured units and the in-memory indexes
(each unit's open incident, the unacknowledged ones) that the command, intake, delivery and view parts share.

Nothing here changes an incident; the parts do, each in one writer transaction. Errors are the core's own
(NotFound → 404, Forbidden → 403, BadRequest → 400 at the console's edge).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.schema import ORG_LEVELS, FirelinkConfig
from config.taxonomy import shipped_taxonomy
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.errors import Forbidden, NotFound
from dispatch.events import Event
from dispatch.models import (
    Device,
    Dispatch,
    Incident,
    Organisation,
    Unit,
)
from dispatch.org_tree import Org, OrgTree
from dispatch.scope import scope_of
from dispatch.state import (
    IncidentStatus,
)
from dispatch.views import (
    incident_view,
)
from dispatch.writer import Tx, Writer
from ingest.contract import utcnow

DISPATCHES_OF = select(Dispatch).where(Dispatch.incident_id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """The unit's open incident; the merge window is judged on its row's last_alarm_at."""

    incident_id: int


@dataclass(frozen=True, slots=True)
class AlarmNote:
    """A record entry written on an accepted alarm's incident in the alarm's own transaction (e.g. the detection
    frame that raised it): the alarm and its evidence are committed together or not at all."""

    action: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unacked:
    opened_at: datetime
    level: int


class Core:
    def __init__(self, writer: Writer, cfg: FirelinkConfig, clock: Callable[[], datetime] = utcnow) -> None:
        self.writer = writer
        self.db = writer.db
        self.bus = writer.bus
        self.cfg = cfg
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.units: dict[str, Unit] = {}
        self.orgs = OrgTree.of(())
        self.open_by_unit: dict[str, OpenIncident] = {}
        self.unacked: dict[int, Unacked] = {}
        # cluster mode (docs/cluster.md): other cores write too, so decisions read and row-lock the database;
        # the indexes above follow the other cores' events (follow_remote) for the views and the escalation timer
        self.cluster = cfg.cluster.enabled

    async def start(self) -> None:
        """Sync the command tree, seed missing units and sync devices from config, load the in-memory indexes."""
        await self.writer.load()
        taxonomy = shipped_taxonomy()
        async with self.db.session() as s:
            for o in sorted(self.cfg.orgs(), key=lambda o: ORG_LEVELS.index(o.level)):  # parents first
                await s.merge(Organisation(id=o.id, name=o.name, level=o.level, parent_id=o.parent))
                await s.flush()
            for u in self.cfg.units:  # config seeds the registry; edits made in the registry are kept
                row = await s.get(Unit, u.id)
                if row is None:
                    kind = taxonomy.resolve(u.unit_type or u.category) or taxonomy.resolve("other")
                    s.add(Unit(id=u.id, name=u.name, category=u.category, address=u.address, lat=u.lat, lon=u.lon,
                               contact_name=u.contact_name, contact_phone=u.contact_phone,
                               unit_type=kind.code if kind else "other", station_id=self.cfg.station_of(u),
                               facilities=[]))
                elif row.station_id is None:  # a unit stored before the command tree existed
                    row.station_id = self.cfg.station_of(u)
            await s.flush()
            for u in self.cfg.units:
                for d in u.devices:
                    dev = await s.get(Device, d.id)
                    if dev is None:
                        s.add(Device(id=d.id, unit_id=u.id, kind=d.kind, heartbeat_interval_s=d.heartbeat_interval_s,
                                     status="unknown", detail=""))
                    else:
                        dev.unit_id, dev.kind, dev.heartbeat_interval_s = u.id, d.kind, d.heartbeat_interval_s
            await s.commit()
            self.orgs = OrgTree.of(Org(o.id, o.name, o.level, o.parent_id)
                                   for o in (await s.scalars(select(Organisation))).all())
            self.units = {u.id: u for u in (await s.scalars(select(Unit))).all()}
            await self._load_indexes(s)

    async def _load_indexes(self, s: AsyncSession) -> None:
        rows = (await s.scalars(select(Incident).where(Incident.status != IncidentStatus.CLOSED)
                                .order_by(Incident.id))).all()
        for inc in rows:
            self.open_by_unit[inc.unit_id] = OpenIncident(inc.id)
            if inc.status == IncidentStatus.NEW:
                self.unacked[inc.id] = Unacked(inc.opened_at, inc.escalation_level)

    async def reload_indexes(self) -> None:
        """The indexes read again from the database (cluster mode: when this node takes the scheduler over)."""
        self.open_by_unit.clear()
        self.unacked.clear()
        async with self.db.session() as s:
            await self._load_indexes(s)

    def follow(self, event: Event) -> None:
        """Cluster mode: another core's committed incident change, applied to this core's indexes."""
        view = event.data.get("incident")
        if event.type not in (ev.INCIDENT_CREATED, ev.INCIDENT_UPDATED, ev.INCIDENT_ESCALATED) or not view:
            return
        inc_id, unit_id, status = int(view["id"]), str(view["unit_id"]), str(view["status"])
        current = self.open_by_unit.get(unit_id)
        if status == IncidentStatus.CLOSED:
            if current is not None and current.incident_id == inc_id:
                del self.open_by_unit[unit_id]
            self.unacked.pop(inc_id, None)
            return
        if current is None or current.incident_id <= inc_id:
            self.open_by_unit[unit_id] = OpenIncident(inc_id)
        if status == IncidentStatus.NEW:
            self.unacked[inc_id] = Unacked(datetime.fromisoformat(str(view["opened_at"])),
                                           int(view["escalation_level"]))
        else:
            self.unacked.pop(inc_id, None)

    def record(self, tx: Tx, incident_id: int | None, action: str, actor: Actor, at: datetime,
                data: dict[str, Any] | None = None) -> None:
        self.writer.record(tx, action, actor, at, data, incident_id=incident_id)

    async def incident(self, s: AsyncSession, incident_id: int, actor: Actor | None = None, *,
                       lock: bool = False) -> Incident:
        """The incident; with `actor`, only one in its scope (403 otherwise). `lock`: about to change it — in
        cluster mode its row is locked until commit, so a concurrent change on another core waits, then sees this
        one."""
        inc = await s.get(Incident, incident_id, with_for_update=lock and self.cluster)
        if inc is None:
            raise NotFound(f"incident {incident_id} not found")
        if actor is not None:
            self.check_station(actor, inc.unit_id)
        return inc

    async def dispatches_for(self, s: AsyncSession, incident_ids: Sequence[int]) -> dict[int, list[Dispatch]]:
        out: dict[int, list[Dispatch]] = {}
        if incident_ids:
            rows = await s.scalars(DISPATCHES_OF, {"ids": list(incident_ids)})
            for d in rows:
                out.setdefault(d.incident_id, []).append(d)
        return out

    async def emit_incident(self, tx: Tx, inc: Incident) -> dict[str, Any]:
        disp = (await self.dispatches_for(tx.session, [inc.id])).get(inc.id, [])
        view = incident_view(inc, self.units[inc.unit_id], disp)
        tx.events.append(Event(ev.INCIDENT_UPDATED, {"incident": view}))
        return view

    def scope(self, actor: Actor) -> Actor:
        """The stations (or the one unit) whose work `actor` sees (dispatch.scope)."""
        return scope_of(actor, self.orgs, self.cfg.station.id)

    def check_station(self, actor: Actor, unit_id: str) -> None:
        """403 unless the unit is in the actor's scope (its station, or the unit itself for a unit's login)."""
        unit = self.units.get(unit_id)
        if actor.role == "unit" and actor.unit_id != unit_id:
            raise Forbidden("units see only their own incidents")
        if actor.role != "agency" and not actor.sees_unit(unit_id, unit.station_id if unit else None):
            raise Forbidden("this unit belongs to a station outside your organisation")

    def check_visible(self, actor: Actor, unit_id: str, agencies: set[str] | None) -> None:
        self.check_station(actor, unit_id)
        if actor.role == "agency" and (agencies is None or actor.agency not in agencies):
            raise Forbidden("agencies see only incidents dispatched to them")
