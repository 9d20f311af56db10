"""The incident core assembled: its shared state and the four parts that act on it, under one typed object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from config.schema import FirelinkConfig
from dispatch.core import Core
from dispatch.deliveries import Deliveries
from dispatch.incident_commands import IncidentCommands
from dispatch.incident_views import IncidentViews
from dispatch.intake import Intake
from dispatch.writer import Writer
from ingest.contract import utcnow


@dataclass(frozen=True, slots=True)
class Incidents:
    core: Core  # writer, config, units, each unit's open incident, the unacknowledged ones
    intake: Intake  # alarms, refusals, device status (the hot path)
    commands: IncidentCommands  # acknowledge, dispatch, on scene, close, escalate, messages
    deliveries: Deliveries  # outbox results, agency acknowledgements
    views: IncidentViews  # queue, detail, units, dispatch queue, refusals

    @classmethod
    async def start(cls, writer: Writer, cfg: FirelinkConfig,
                    clock: Callable[[], datetime] = utcnow) -> Incidents:
        """Loads the record chain, syncs units/devices from the config and the indexes from the database."""
        core = Core(writer, cfg, clock)
        await core.start()
        return cls(core, Intake(core), IncidentCommands(core), Deliveries(core), IncidentViews(core))
