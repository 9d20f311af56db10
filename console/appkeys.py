"""Every typed key the composition root (firelink/app.py) puts on the aiohttp Application.

Parts find each other by key, not through a god object. The keys live here, in the console (the one package that
speaks aiohttp to the outside), because handlers read them; the core's services never see the Application.
Console-internal keys (the route table, open sockets, evidence verification) are defined here too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web

from config.schema import FirelinkConfig
from dispatch.events import EventBus

if TYPE_CHECKING:
    from console.heavy import HeavyWork
    from console.routing import Route
    from console.video import RecordedFn
    from console.ws import Sockets
    from detectors.pipeline import DetectorService
    from dispatch.calls import Calls
    from dispatch.camera_leases import CameraLeases
    from dispatch.complaint_views import ComplaintViews
    from dispatch.complaints import Complaints
    from dispatch.db import Database
    from dispatch.detection_sink import DetectionSink
    from dispatch.devices import DeviceMonitor
    from dispatch.document_pdf import DocumentSeals
    from dispatch.document_reviews import DocumentReviews
    from dispatch.exit_zones import ExitZoneService
    from dispatch.hazard_cases import HazardCases
    from dispatch.hazard_deadlines import HazardDeadlines
    from dispatch.hazard_views import HazardViews
    from dispatch.health import HealthMonitor
    from dispatch.incidents import Incidents
    from dispatch.inspection_views import InspectionViews
    from dispatch.inspections import Inspections
    from dispatch.kpi_index import KpiIndex
    from dispatch.kpi_targets import KpiTargets
    from dispatch.login_throttle import LoginThrottle
    from dispatch.masks import MaskService
    from dispatch.penalties import Penalties
    from dispatch.rate_limits import ReportLimits
    from dispatch.registry import Registry
    from dispatch.unit_views import UnitViews
    from dispatch.writer import Writer
    from ingest.cameras.evidence import EvidenceRecorder
    from ingest.cameras.hub import CameraHub
    from ingest.integrity import Verifier
    from ingest.mqtt_link import MqttLink

# --- the core
CONFIG = web.AppKey("config", FirelinkConfig)
# The one clock of the app (injected by tests): record times, deadlines, periods, what pages call "now".
CLOCK: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")
BUS = web.AppKey("bus", EventBus)
DB: web.AppKey[Database] = web.AppKey("db")
WRITER: web.AppKey[Writer] = web.AppKey("writer")
INCIDENTS: web.AppKey[Incidents] = web.AppKey("incidents")  # the incident core: intake, commands, deliveries, views
HAZARDS: web.AppKey[HazardCases] = web.AppKey("hazards")  # hazard case commands
PENALTIES: web.AppKey[Penalties] = web.AppKey("penalties")  # penalty decision commands
HAZARD_DEADLINES: web.AppKey[HazardDeadlines] = web.AppKey("hazard_deadlines")  # what a passed deadline does
HAZARD_VIEWS: web.AppKey[HazardViews] = web.AppKey("hazard_views")  # the hazards' read side
DOCUMENTS: web.AppKey[DocumentSeals] = web.AppKey("documents")  # documents as PDF; sealed PDFs' SHA-256 recorded
DOC_REVIEWS: web.AppKey[DocumentReviews] = web.AppKey("doc_reviews")  # the brigade's review of filed documents
INSPECTIONS: web.AppKey[Inspections] = web.AppKey("inspections")  # typed inspections: photos, submissions
INSPECTION_VIEWS: web.AppKey[InspectionViews] = web.AppKey("inspection_views")  # their read side
EXIT_ZONES: web.AppKey[ExitZoneService] = web.AppKey("exit_zones")
MASKS: web.AppKey[MaskService] = web.AppKey("detector_masks")
REGISTRY: web.AppKey[Registry] = web.AppKey("registry")  # the unit registry's commands (create, edit, retire, import)
UNIT_VIEWS: web.AppKey[UnitViews] = web.AppKey("unit_views")  # the unit registry's read side
DEVICES: web.AppKey[DeviceMonitor] = web.AppKey("devices")
DETECTIONS: web.AppKey[DetectionSink] = web.AppKey("detections")
HEALTH: web.AppKey[HealthMonitor] = web.AppKey("health")
KPI_INDEX: web.AppKey[KpiIndex] = web.AppKey("kpi_index")
KPI_TARGETS: web.AppKey[KpiTargets] = web.AppKey("kpi_targets")  # the station's volume targets (admin-set, recorded)
COMPLAINTS: web.AppKey[Complaints] = web.AppKey("complaints")  # reports filed, triaged into hazards or rejected
COMPLAINT_VIEWS: web.AppKey[ComplaintViews] = web.AppKey("complaint_views")  # the triage queue, receipts' status
CALLS: web.AppKey[Calls] = web.AppKey("calls")  # live calls: command room, unit phone, brigade (docs/calls.md)
FIRST_ADMIN: web.AppKey[tuple[str, str]] = web.AppKey("first_admin")
# --- the edges
MQTT: web.AppKey[MqttLink | None] = web.AppKey("mqtt")
CAMERAS: web.AppKey[CameraHub] = web.AppKey("cameras")
EVIDENCE: web.AppKey[EvidenceRecorder] = web.AppKey("evidence")
DETECTORS: web.AppKey[DetectorService] = web.AppKey("detectors")
CAMERA_LEASES: web.AppKey[CameraLeases] = web.AppKey("camera_leases")  # cluster mode: the cameras watched here
# --- the console
HEAVY: web.AppKey[HeavyWork] = web.AppKey("heavy")
LOGIN_THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("login_throttle")
REPORT_LIMITS: web.AppKey[ReportLimits] = web.AppKey("report_limits")  # public reports and lookups, per address
ROUTES: web.AppKey[list[Route]] = web.AppKey("api_routes")  # every route installed on this app (OpenAPI lists them)
SOCKETS: web.AppKey[Sockets] = web.AppKey("sockets")  # open console sockets by session token
RECORDED: web.AppKey[RecordedFn] = web.AppKey("evidence_recorded")  # incident id → {file: SHA-256 in the record}
VERIFIER: web.AppKey[Verifier] = web.AppKey("evidence_verifier")  # checks served evidence against its SHA-256
