"""The composition root: builds every part and starts them in one readable order (stop is the reverse).

    database → core lease (a second core on the same database stops here; in cluster mode one per node id) →
    core (writer, incident service, users, device monitor) → cluster events (other cores' events, cluster mode) →
    heavy reads (KPI index, bounded workers) → hazards (+ deadline scheduler,
    complaints) → exit zones → masks → detection sink → MQTT broker (embedded only when none answers) → MQTT link →
    background workers (notify outbox, escalation, device watchdog, false-alarm learning, camera health) →
    health monitor → cameras and evidence → calls → detectors (+ console-drawn regions) → camera leases (cluster
    mode: which cameras this node watches) → console routes.

Each part is one aiohttp cleanup context below, in that order; parts find each other through the typed keys of
console/appkeys.py. Nothing is patched into a part after it was built except the two hooks that only exist once
the detectors run (learning → refit, hazard recheck by camera), which are set here, in the detectors' step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Any

from aiohttp import web

from config.checklists import load_checklists
from config.schema import FirelinkConfig
from console.appkeys import (
    BUS,
    CALLS,
    CAMERA_LEASES,
    CAMERAS,
    CLOCK,
    COMPLAINT_VIEWS,
    COMPLAINTS,
    CONFIG,
    DB,
    DETECTIONS,
    DETECTORS,
    DEVICES,
    DOC_REVIEWS,
    DOCUMENTS,
    EVIDENCE,
    EXIT_ZONES,
    FIRST_ADMIN,
    HAZARD_DEADLINES,
    HAZARD_VIEWS,
    HAZARDS,
    HEALTH,
    HEAVY,
    INCIDENTS,
    INSPECTION_VIEWS,
    INSPECTIONS,
    KPI_INDEX,
    KPI_TARGETS,
    LOGIN_THROTTLE,
    MASKS,
    MQTT,
    PENALTIES,
    REGISTRY,
    REPORT_LIMITS,
    UNIT_VIEWS,
    WRITER,
)
from console.heavy import HeavyWork
from console.video import setup_video
from console.web import setup_console
from detectors.train import save_hard_negative
from dispatch.actor import SYSTEM
from dispatch.auth import ensure_first_admin, ensure_users
from dispatch.calls import Calls
from dispatch.camera_leases import CameraLeases
from dispatch.cluster import cluster_writing, lease_name, startup_turn
from dispatch.complaint_views import ComplaintViews
from dispatch.complaints import Complaints
from dispatch.db import Database
from dispatch.detection_sink import DetectionSink
from dispatch.devices import DeviceMonitor, record_camera_health
from dispatch.document_pdf import DocumentSeals
from dispatch.document_reviews import DocumentReviews
from dispatch.escalation import Escalator
from dispatch.events import Event, EventBus
from dispatch.evidence_record import recorded_sha256
from dispatch.exit_zones import ExitZoneService
from dispatch.fanout import EventFanout, prune_events
from dispatch.hazard_cases import HazardCases
from dispatch.hazard_context import HazardContext
from dispatch.hazard_deadlines import HazardDeadlines, HazardScheduler
from dispatch.hazard_views import HazardViews
from dispatch.health import HealthMonitor
from dispatch.inbox import CoreInbox
from dispatch.incidents import Incidents
from dispatch.inspection_views import InspectionViews
from dispatch.inspections import Inspections
from dispatch.kpi_index import KpiIndex
from dispatch.kpi_targets import KpiTargets
from dispatch.lease import CoreLeaseHolder
from dispatch.login_throttle import LoginThrottle
from dispatch.masks import MaskService
from dispatch.penalties import Penalties
from dispatch.rate_limits import ReportLimits
from dispatch.regions import RegionFollower
from dispatch.registry import Registry
from dispatch.singleton import SCHEDULER, Job, Singleton
from dispatch.unit_views import UnitViews
from dispatch.writer import Writer
from ingest.amqp_intake import AmqpIntake, intake_status
from ingest.contract import utcnow
from ingest.embedded_broker import maybe_start
from ingest.mqtt_link import MqttLink
from notify.worker import OutboxWorker

log = logging.getLogger(__name__)

Context = Callable[[web.Application], AsyncIterator[None]]


async def _stop(*tasks: asyncio.Task[Any]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t


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
    app[REPORT_LIMITS] = ReportLimits.of(cfg.complaints, lambda: clock().timestamp())  # public reports, in memory
    scheduled: list[Job] = []  # cluster mode: jobs run under the scheduler lease (the hazards' deadlines)

    def scheduler_lease(app: web.Application, jobs: list[Job],
                        replan: Callable[[], None]) -> Coroutine[Any, Any, None]:
        async def gained() -> None:  # what other nodes did while another held it: from the database
            await app[INCIDENTS].core.reload_indexes()
            replan()

        prune: Job = lambda: prune_events(app[DB], cfg.cluster.event_retention_s, clock)  # noqa: E731
        return Singleton(app[DB], SCHEDULER, [*jobs, prune], cfg.cluster.scheduler_lease_s, clock,
                         on_gain=gained).run()

    async def database(app: web.Application) -> AsyncIterator[None]:
        db = Database(cfg.database.url, cfg.database.echo)
        await db.upgrade()
        app[DB] = db
        yield
        await db.dispose()

    async def lease(app: web.Application) -> AsyncIterator[None]:
        """One core per database: raises LeaseHeld (before anything else starts) when another core runs."""
        holder = CoreLeaseHolder(app[DB], cfg.database.lease_s, clock, name=lease_name(cfg))  # cluster: per node
        await holder.acquire()
        keeper = asyncio.create_task(holder.keep(on_lease_lost or (lambda: None)), name="core-lease")
        yield
        await _stop(keeper)
        try:
            await holder.release()
        except Exception as exc:  # it expires by itself
            log.warning("core lease not released: %s", exc)

    async def core(app: web.Application) -> AsyncIterator[None]:
        writer = app[WRITER] = Writer(app[DB], app[BUS], cluster_writing(cfg), clock)
        async with startup_turn(app[DB], cfg):  # cluster: cores starting together sync the config in turn
            incidents = await Incidents.start(writer, cfg, clock)
            created = await ensure_users(writer, list(cfg.users), set(incidents.core.units), tuple(cfg.agencies),
                                         default_org=cfg.station.id)
            first = await ensure_first_admin(writer) if cfg.print_first_admin else None
        if created:
            log.info("created configured users: %s", ", ".join(created))
        if first is not None:
            app[FIRST_ADMIN] = first
            print(f"\n  First login — admin account created: username {first[0]!r}, password {first[1]!r}\n"
                  "  (shown once; change it with `firelink user add` / a new admin)\n", flush=True)
        monitor = DeviceMonitor(incidents.intake, cfg, clock)
        await monitor.load()
        app[INCIDENTS] = incidents
        app[DEVICES] = monitor
        views = app[UNIT_VIEWS] = UnitViews(incidents.core)
        app[REGISTRY] = Registry(incidents.core, views)
        yield

    async def cluster_events(app: web.Application) -> AsyncIterator[None]:
        """Cluster mode: the other cores' committed events onto this core's bus (its indexes follow them)."""
        if not cfg.cluster.enabled:
            yield
            return
        core, devices = app[INCIDENTS].core, app[DEVICES]

        def follow(event: Event) -> None:  # this core's indexes and device states follow the others' changes
            core.follow(event)
            devices.follow(event)

        fanout = EventFanout(app[DB], app[BUS], cfg.cluster.node(), on_remote=follow)
        task = asyncio.create_task(fanout.run(), name="cluster-events")
        try:  # consoles are served once the other cores' events reach this one
            await asyncio.wait_for(fanout.ready.wait(), 10)
        except TimeoutError:
            log.warning("cluster event listener not connected yet; starting anyway (it keeps trying)")
        yield
        await _stop(task)

    async def heavy_reads(app: web.Application) -> AsyncIterator[None]:
        """KPIs from facts kept current (built in the background after a start); PDFs/exports bounded."""
        app[HEAVY] = HeavyWork(cfg.console.heavy_workers, cfg.console.heavy_queue)
        index = app[KPI_INDEX] = KpiIndex(app[DB], max_age_s=cfg.console.kpi_max_age_s)
        warm = index.follow()  # the whole record, paced, in the background
        yield
        await _stop(warm)
        index.close()
        app[HEAVY].close()

    async def hazards(app: web.Application) -> AsyncIterator[None]:
        """Hazard case and penalty commands, the deadline scheduler, the hazards' read side, typed inspections and
        complaints (which become hazards in triage)."""
        units = app[INCIDENTS].core.units
        ctx = HazardContext(app[WRITER], cfg, units, clock)
        penalties = app[PENALTIES] = Penalties(ctx)
        cases = app[HAZARDS] = HazardCases(ctx, penalties)
        deadlines = app[HAZARD_DEADLINES] = HazardDeadlines(ctx, cases, penalties)
        views = app[HAZARD_VIEWS] = HazardViews(app[DB], cfg, units)
        app[DOCUMENTS] = DocumentSeals(app[WRITER], views, clock)
        app[DOC_REVIEWS] = DocumentReviews(app[WRITER], units, clock)
        core = app[INCIDENTS].core  # inspections: checklists validated against the clause database at start
        app[INSPECTIONS] = Inspections(ctx, cases, load_checklists(ctx.hcfg), core.scope)
        app[INSPECTION_VIEWS] = InspectionViews(app[DB], ctx.hcfg, units, core.scope)
        app[KPI_TARGETS] = KpiTargets(app[WRITER], app[DB], clock)
        core = app[INCIDENTS].core
        app[COMPLAINTS] = Complaints(core, cases, cfg.complaints, clock)  # reports → triage → hazards
        app[COMPLAINT_VIEWS] = ComplaintViews(core)
        hazard_scheduler = HazardScheduler(deadlines, app[BUS])
        if cfg.cluster.enabled:  # one node at a time runs it (workers: the scheduler lease)
            scheduled.append(hazard_scheduler.run)
            yield
            return
        scheduler = asyncio.create_task(hazard_scheduler.run(), name="hazard-deadlines")
        yield
        await _stop(scheduler)

    async def regions(app: web.Application) -> AsyncIterator[None]:
        """Exit zones and detector masks drawn in the console (shared by the console and the detectors)."""
        app[EXIT_ZONES] = ExitZoneService(app[WRITER], cfg, clock)
        app[MASKS] = MaskService(app[WRITER], cfg, clock)
        yield

    async def detection_sink(app: web.Application) -> AsyncIterator[None]:
        app[DETECTIONS] = DetectionSink(app[INCIDENTS].intake, app[HAZARDS], app[BUS], cfg.video.evidence_dir,
                                        cfg.detectors.hard_negatives_dir, {c.id: c.unit_id for c in cfg.cameras})
        yield

    async def broker(app: web.Application) -> AsyncIterator[None]:
        embedded = (await maybe_start(cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.embedded_broker)
                    if mqtt and not cfg.mqtt.cluster_nodes else None)
        yield
        if embedded is not None:
            await embedded.stop()

    intakes: list[AmqpIntake | None] = []  # the AMQP intake, for the health step

    async def mqtt_link(app: web.Application) -> AsyncIterator[None]:
        if not mqtt:
            yield
            return
        inbox = CoreInbox(app[INCIDENTS], app[DEVICES], app[DETECTIONS],
                          app[COMPLAINTS] if cfg.complaints.hotline.mqtt else None)
        link = MqttLink(cfg.mqtt, inbox.handle, app[DB].alive, inbox.journal, agencies=tuple(cfg.agencies))
        await link.start()
        app[MQTT] = link
        intake = None  # a broker cluster: the cores share its intake queue over AMQP; MQTT only publishes
        if cfg.mqtt.intake == "amqp":
            intake = AmqpIntake(cfg.amqp, cfg.mqtt.topic_prefix, cfg.mqtt.max_payload_bytes,
                                cfg.mqtt.max_detection_bytes, inbox.handle, app[DB].alive, inbox.journal,
                                agencies=tuple(cfg.agencies))
            await intake.start()
        intakes.append(intake)
        yield
        intakes.clear()
        if intake is not None:
            await intake.stop()
        await link.stop()

    async def workers(app: web.Application) -> AsyncIterator[None]:
        incidents = app[INCIDENTS]
        outbox = OutboxWorker(incidents.deliveries, app[BUS], cfg, app[MQTT], clock)
        escalator = Escalator(incidents.core, incidents.commands, app[BUS], cfg.escalation)
        jobs: list[Coroutine[Any, Any, None]] = [] if cfg.cluster.enabled else [outbox.run(), escalator.run()]
        if cfg.cluster.enabled:  # escalations, hazard deadlines and the outbox: on one node at a time (a lease)
            jobs.append(scheduler_lease(app, [outbox.run, escalator.run, app[DEVICES].run_shared, *scheduled],
                                        escalator.replan))
        jobs += [
            app[DEVICES].flush_loop() if cfg.cluster.enabled else app[DEVICES].run(),
            app[DETECTIONS].learn_from_false_alarms(save_hard_negative),
            record_camera_health(app[WRITER], clock),
        ]
        tasks = [asyncio.create_task(job) for job in jobs]
        yield
        await _stop(*tasks)

    async def health(app: web.Application) -> AsyncIterator[None]:
        """Intake, database and outbox truth for /healthz and every console (after the MQTT link)."""
        link, intake = app[MQTT], (intakes or [None])[0]
        monitor = HealthMonitor(app[DB], app[BUS], (lambda: intake_status(link, intake)) if link is not None
                                else (lambda: None), clock)
        for part in (link, intake):
            if part is not None:
                part.on_change = monitor.poke
        app[HEALTH] = monitor
        task = asyncio.create_task(monitor.run(), name="health-monitor")
        yield
        for part in (link, intake):
            if part is not None:
                part.on_change = None
        await _stop(task)
        monitor.close()

    async def record_evidence(incident_id: int, action: str, data: dict[str, Any]) -> None:
        await app[WRITER].note(action, SYSTEM, clock(), data, incident_id=incident_id)

    async def recorded_evidence(incident_id: int) -> dict[str, str]:
        return await recorded_sha256(app[DB], incident_id)

    async def detectors(app: web.Application) -> AsyncIterator[None]:
        if not cfg.detectors.enabled or not cfg.cameras:
            yield
            return
        from detectors.pipeline import DetectorService  # torch is loaded only when detectors run here

        sink = app[DETECTIONS]
        service = DetectorService(app[CAMERAS], cfg.detectors, sink.handle)
        await service.start()
        app[DETECTORS] = service
        sink.after_learning.append(service.relearn)
        app[HAZARD_DEADLINES].recheck_by_camera = sink.camera_recheck(service, app[CAMERAS])
        zones, masks = app[EXIT_ZONES], app[MASKS]
        follower = RegionFollower([zones, masks], service)  # outlines applied at start and on every change
        await follower.start()
        yield
        await follower.stop()
        await service.stop()

    async def calls(app: web.Application) -> AsyncIterator[None]:
        """Live calls (after the evidence recorder: recordings are saved as evidence; ended before it stops)."""
        if not cfg.calls.enabled:
            yield
            return
        service = app[CALLS] = Calls(app[INCIDENTS].core, cfg.calls, clock, app.get(EVIDENCE))
        follower = asyncio.create_task(service.follow(), name="calls-follow")
        yield
        await _stop(follower)
        await service.close()

    async def camera_leases(app: web.Application) -> AsyncIterator[None]:
        """Cluster mode: this node watches the cameras whose lease it holds (dispatch.camera_leases); a single box
        watches every camera (the hub started them all)."""
        if not cfg.cluster.enabled or not cfg.cameras:
            yield
            return
        watched = [c.id for c in cfg.cameras if c.enabled]
        leases = app[CAMERA_LEASES] = CameraLeases(app[DB], cfg.cluster.node(), watched, cfg.cluster.cameras,
                                                   app[CAMERAS], cfg.cluster.camera_lease_s, clock)
        task = asyncio.create_task(leases.run(), name="camera-leases")
        yield
        await _stop(task)  # stops its cameras and releases their rows: another node takes them at once

    contexts: list[Context] = [database, lease, core, cluster_events, heavy_reads, hazards, regions,
                               detection_sink, broker, mqtt_link, workers, health]
    app.cleanup_ctx.extend(contexts)
    setup_video(app, record=record_evidence, recorded=recorded_evidence)  # cameras and evidence: its own context
    app.cleanup_ctx.append(calls)
    app.cleanup_ctx.append(detectors)
    app.cleanup_ctx.append(camera_leases)  # after the detectors: a camera taken here is analysed from its first frame
    setup_console(app)
    return app
