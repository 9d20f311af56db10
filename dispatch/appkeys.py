"""Typed keys for what the app factory puts on the aiohttp Application.

Each part (database, core service, MQTT link, notify worker, cameras) is
created by its own cleanup context in dispatch/app.py and stored here,
so parts find each other by key instead of through a god object.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web

from config.schema import FirelinkConfig
from dispatch.events import EventBus

if TYPE_CHECKING:
    from dispatch.db import Database
    from dispatch.service import IncidentService
    from dispatch.writer import Writer
    from ingest.mqtt_link import MqttLink

CONFIG = web.AppKey("config", FirelinkConfig)
# The one clock of the app (injected by tests): record times, deadlines, periods, what pages call "now".
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
BUS = web.AppKey("bus", EventBus)
DB: web.AppKey[Database] = web.AppKey("db")
WRITER: web.AppKey[Writer] = web.AppKey("writer")
SERVICE: web.AppKey[IncidentService] = web.AppKey("service")
MQTT: web.AppKey[MqttLink | None] = web.AppKey("mqtt")
