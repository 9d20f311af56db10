"""What every hazard command shares: the writer, the configuration, the units and the clock, and the three
things each command does inside its transaction — record an entry on the hazard, push the hazard's new view,
number a document."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.hazards import HazardsConfig
from config.schema import FirelinkConfig
from dispatch import events as ev
from dispatch.actor import Actor
from dispatch.events import Event
from dispatch.hazard_models import (
    CaseReferral,
    Hazard,
    PenaltyDecision,
    PenaltyNotice,
    RecheckOpinion,
    RectificationNotice,
)
from dispatch.hazard_rows import hazard_view, unit_of
from dispatch.hazards import hazards_config
from dispatch.models import Unit
from dispatch.writer import Tx, Writer
from ingest.contract import utcnow


@dataclass(frozen=True, slots=True)
class HazardContext:
    writer: Writer
    cfg: FirelinkConfig
    units: Mapping[str, Unit]  # the core's units (a live mapping: units added later are seen)
    clock: Callable[[], datetime] = utcnow
    hcfg: HazardsConfig = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hcfg", hazards_config(self.cfg))

    def unit(self, unit_id: str) -> Unit:
        return unit_of(self.units, unit_id)

    def view(self, h: Hazard) -> dict[str, Any]:
        return hazard_view(h, self.hcfg, self.units)

    def emit(self, tx: Tx, h: Hazard) -> dict[str, Any]:
        """The hazard's view, pushed as `hazard.updated` once the transaction commits."""
        view = self.view(h)
        tx.events.append(Event(ev.HAZARD_UPDATED, {"hazard": view, "unit_id": h.unit_id}))
        return view

    def record(self, tx: Tx, h: Hazard, action: str, actor: Actor, at: datetime,
               data: dict[str, Any] | None = None) -> None:
        self.writer.record(tx, action, actor, at, {"unit_id": h.unit_id, **(data or {})}, hazard_id=h.id)

    async def next_number(self, s: AsyncSession,
                          model: type[RectificationNotice] | type[PenaltyDecision] | type[PenaltyNotice]
                          | type[RecheckOpinion] | type[CaseReferral],
                          fmt: str, year: int, *where: ColumnElement[bool]) -> tuple[int, str]:
        """The next sequence number of `model`'s documents in `year` (among the rows `where` selects: one table may
        hold two numbered series), and the document number it gives."""
        cur = await s.scalar(select(func.max(model.seq)).where(model.year == year, *where))
        seq = int(cur or 0) + 1
        return seq, fmt.format(station=self.cfg.station.name, year=year, seq=seq)
