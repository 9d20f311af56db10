"""App factory: small parts, each started and stopped by its own cleanup context.

Order (start; stop is the reverse): database → core lease (a second core on the same database stops
here) → core service → hazard service → exit zones → masks → detection sink → MQTT broker (embedded only
when none answers) → MQTT link → background workers (notify outbox, escalation, device watchdog,
false-alarm learning) → health monitor → cameras and evidence → detectors. Parts find each
other through typed app keys (dispatch.appkeys), not a god object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from config.schema import FirelinkConfig
from console.heavy import HEAVY, HeavyWork
from console.security import LOGIN_THROTTLE
from console.video import CAMERAS, setup_video
from console.web import setup_console
from dispatch.appkeys import BUS, CLOCK, CONFIG, DB, MQTT, SERVICE, WRITER
from dispatch.auth import ensure_first_admin, ensure_users
from dispatch.db import Database
from dispatch.detection_sink import DetectionSink
from dispatch.devices import DeviceMonitor, record_camera_health
from dispatch.escalation import Escalator
from dispatch.events import EventBus
from dispatch.evidence_record import recorded_sha256
from dispatch.exit_zones import EXIT_ZONES, exit_zones_context
from dispatch.hazards import HAZARDS, hazards_context
from dispatch.health import health_context
from dispatch.inbox import CoreInbox
from dispatch.inputs import SYSTEM, utcnow
from dispatch.kpi_index import KPI_INDEX, KpiIndex
from dispatch.lease import CoreLeaseHolder
from dispatch.login_throttle import LoginThrottle
from dispatch.masks import MASKS, masks_context
from dispatch.regions import RegionFollower
from dispatch.service import IncidentService
from dispatch.writer import Writer
from ingest.embedded_broker import maybe_start
from ingest.mqtt_link import MqttLink
from notify.worker import OutboxWorker

if TYPE_CHECKING:
    from detectors.pipeline import DetectorService

log = logging.getLogger(__name__)

DEVICES = web.AppKey("devices", DeviceMonitor)
FIRST_ADMIN = web.AppKey("first_admin", tuple)
DETECTIONS = web.AppKey("detections", DetectionSink)
DETECTORS: web.AppKey[DetectorService] = web.AppKey("detectors")


def create_app(cfg: FirelinkConfig, *, clock: Callable[[], datetime] = utcnow, mqtt: bool = True,
               on_lease_lost: Callable[[], None] | None = None) -> web.Application:
    """`on_lease_lost` is called if another core takes this database over (`firelink run` stops the process)."""
    app = web.Application(client_max_size=64 * 1024)
    app[CONFIG] = cfg
    app[CLOCK] = clock
    app[BUS] = EventBus()
    app[MQTT] = None
    # failed logins: in memory (one core per database, see dispatch.lease); the clock is the app's
    app[LOGIN_THROTTLE] = LoginThrottle(cfg.console.login_throttle, lambda: clock().timestamp())

    async def database(app: web.Application) -> AsyncIterator[None]:
        db = Database(cfg.database.url, cfg.database.echo)
        await db.upgrade()
        app[DB] = db
        yield
        await db.dispose()

    async def lease(app: web.Application) -> AsyncIterator[None]:
        """One core per database: raises LeaseHeld (before anything else starts) when another core runs."""
        holder = CoreLeaseHolder(app[DB], cfg.database.lease_s, clock)
        await holder.acquire()
        keeper = asyncio.create_task(holder.keep(on_lease_lost or (lambda: None)), name="core-lease")
        yield
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        try:
            await holder.release()
        except Exception as exc:  # it expires by itself
            log.warning("core lease not released: %s", exc)

    async def core(app: web.Application) -> AsyncIterator[None]:
        writer = Writer(app[DB], app[BUS])
        app[WRITER] = writer
        service = IncidentService(writer, cfg, clock)
        await service.start()
        unit_ids = set(service.units)
        created = await ensure_users(app[DB], list(cfg.users), unit_ids, tuple(cfg.agencies))
        if created:
            log.info("created configured users: %s", ", ".join(created))
        if cfg.print_first_admin:
            first = await ensure_first_admin(app[DB])
            if first is not None:
                app[FIRST_ADMIN] = first
                print(f"\n  First login — admin account created: username {first[0]!r}, password {first[1]!r}\n"
                      "  (shown once; change it with `firelink user add` / a new admin)\n", flush=True)
        monitor = DeviceMonitor(service, cfg, clock)
        await monitor.load()
        app[SERVICE] = service
        app[DEVICES] = monitor
        yield

    async def heavy_reads(app: web.Application) -> AsyncIterator[None]:
        """KPIs from facts kept current (built in the background after a start); PDFs/exports bounded."""
        app[HEAVY] = HeavyWork(cfg.console.heavy_workers, cfg.console.heavy_queue)
        index = app[KPI_INDEX] = KpiIndex(app[DB], max_age_s=cfg.console.kpi_max_age_s)
        warm = index.follow()  # the whole record, paced, in the background
        yield
        warm.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warm
        index.close()
        app[HEAVY].close()

    async def detection_sink(app: web.Application) -> AsyncIterator[None]:
        app[DETECTIONS] = DetectionSink(app[SERVICE], app[HAZARDS], cfg.video.evidence_dir,
                                        cfg.detectors.hard_negatives_dir)
        yield

    async def broker(app: web.Application) -> AsyncIterator[None]:
        embedded = await maybe_start(cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.embedded_broker) if mqtt else None
        yield
        if embedded is not None:
            await embedded.stop()

    async def mqtt_link(app: web.Application) -> AsyncIterator[None]:
        if not mqtt:
            yield
            return
        inbox = CoreInbox(app[SERVICE], app[DEVICES], app[DETECTIONS])
        link = MqttLink(cfg.mqtt, inbox.handle, app[DB].alive, inbox.journal, agencies=tuple(cfg.agencies))
        await link.start()
        app[MQTT] = link
        yield
        await link.stop()

    async def workers(app: web.Application) -> AsyncIterator[None]:
        service = app[SERVICE]
        jobs: list[Coroutine[Any, Any, None]] = [
            OutboxWorker(service, app[BUS], cfg, app[MQTT], clock).run(),
            Escalator(service, app[BUS], cfg.escalation).run(),
            app[DEVICES].run(),
            app[DETECTIONS].learn_from_false_alarms(),
            record_camera_health(app[WRITER]),
        ]
        tasks = [asyncio.create_task(job) for job in jobs]
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def record_evidence(incident_id: int, action: str, data: dict[str, Any]) -> None:
        writer = app[WRITER]
        async with writer.tx() as tx:
            writer.record(tx, action, SYSTEM, clock(), data, incident_id=incident_id)

    async def detectors(app: web.Application) -> AsyncIterator[None]:
        if not cfg.detectors.enabled or not cfg.cameras:
            yield
            return
        from detectors.pipeline import DetectorService  # torch is loaded only when detectors run here

        sink = app[DETECTIONS]
        service = DetectorService(app[CAMERAS], cfg.detectors, submit=sink.submit, on_hazard=sink.on_hazard,
                                  on_detection=sink.on_detection)
        await service.start()
        app[DETECTORS] = service
        sink.after_learning.append(service.relearn)
        app[HAZARDS].recheck_by_camera = sink.camera_recheck(service, app[CAMERAS])
        # console-drawn exit zones and masks, at start and on every change
        exit_zones, masks = app[EXIT_ZONES], app[MASKS]
        regions = RegionFollower([exit_zones, masks], service)
        await regions.start()
        yield
        await regions.stop()
        await service.stop()

    app.cleanup_ctx.extend([database, lease, core, heavy_reads, hazards_context, exit_zones_context, masks_context,
                            detection_sink, broker, mqtt_link, workers, health_context(clock)])

    async def recorded_evidence(incident_id: int) -> dict[str, str]:
        return await recorded_sha256(app[DB], incident_id)

    # adds the camera context (after the ones above)
    setup_video(app, record=record_evidence, recorded=recorded_evidence)
    app.cleanup_ctx.append(detectors)
    setup_console(app)
    return app
