"""Video routes of the console, and the camera layer's place in the app.

Routes (`routes`, served by console.web with the console's others; the route table checks roles and CSRF,
the handlers only that a unit user reaches its own unit's cameras and evidence):

* ``GET /api/cameras`` — cameras the user may see: id, unit_id, name, location, status, fault,
  resolution, fps (never the source URL or its credentials).
* ``GET /api/cameras/{id}`` — one camera.
* ``GET /api/cameras/{id}/snapshot.jpg?w=640`` — the latest frame.
* ``GET /api/cameras/{id}/live.mjpeg?w=640&fps=10`` — live multipart MJPEG (works in ``<img src>``).
* ``GET /api/cameras/{id}/live.ws?w=640`` — live WebSocket: one binary message per JPEG frame.
* ``GET /api/incidents/{id}/evidence`` — evidence files of an incident with their SHA-256.
* ``GET /api/evidence/incident-{id}/{name}`` — one evidence file (Range requests: <video> seeks), checked
  against the SHA-256 recorded when it was saved: an altered file is refused with 409, never served.
* ``POST /api/incidents/{id}/photos`` — a photo (multipart, JPEG/PNG/WebP, ≤ 8 MB) from the unit's phone or
  an officer, stored as incident evidence (kind ``photo``) like the recorder's files. Needs X-CSRF-Token.

``setup_video(app, record=...)`` adds a cleanup context that runs the CameraHub and the evidence
recorder for the app's lifetime; without it the routes answer 503 (video is not running).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from aiohttp import BodyPartReader, WSMsgType, web
from pydantic import BeforeValidator, Field

from config.cameras import VideoConfig
from console.appkeys import BUS, CAMERAS, CONFIG, EVIDENCE, INCIDENTS, RECORDED, VERIFIER
from console.routing import (
    OFFICERS,
    PATH_PARAMS_KEY,
    QUERY_KEY,
    STAFF,
    HttpError,
    Query,
    RouteTable,
    whole_number,
)
from console.security import ACTOR
from dispatch.actor import Actor
from dispatch.events import INCIDENT_CREATED, CameraUpdated, Event, IncidentCreated, Subscription
from dispatch.models import Incident
from ingest.cameras.capture import Health
from ingest.cameras.evidence import EvidenceRecorder, EvidenceStore, parse_time
from ingest.cameras.hub import CameraHub, CameraStream, EncodedFrame
from ingest.integrity import Verifier

log = logging.getLogger(__name__)


DEFAULT_EVIDENCE_DIR = "var/evidence"  # used when neither the config nor setup_video names one
RETENTION_CHECK_S = 3600.0
WRITE_TIMEOUT_S = 20.0  # a viewer that accepts nothing for this long is disconnected
BOUNDARY = "firelinkframe"
# Where the console's identity middleware puts the caller (dispatch.actor.Actor: .role, .unit_id).
USER_KEY = ACTOR
VIEW_ROLES = frozenset({*STAFF, "unit"})
PHOTO_ROLES = frozenset({*OFFICERS, "unit"})
MAX_PHOTO_BYTES = 8 * 1024 * 1024
PHOTO_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}  # Pillow format → stored extension

RecordFn = Callable[[int, str, dict[str, Any]], Awaitable[None]]
routes = RouteTable()
TAG = "video"
EVIDENCE_TYPES = {".mp4": "video/mp4", ".webm": "video/webm",  # (call recordings: WebM)
                  ".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
RecordedFn = Callable[[int], Awaitable[dict[str, str]]]  # incident id → {file: SHA-256 in the record}


class FrameQuery(Query):
    w: Annotated[int, Field(ge=16, le=7680), BeforeValidator(whole_number)] | None = Field(
        None, description="Width in pixels (16–7680); default the camera's own.")


class LiveQuery(FrameQuery):
    fps: Annotated[int, Field(ge=1, le=60), BeforeValidator(whole_number)] | None = Field(
        None, description="At most this many frames per second (1–60); default all.")


PHOTO_UPLOAD: dict[str, Any] = {
    "type": "object", "required": ["photo"],
    "properties": {"photo": {"type": "string", "format": "binary",
                             "description": "JPEG, PNG or WebP (judged by its bytes), at most 8 MB."}},
}


def _user(request: web.Request) -> Actor:
    """The caller, whose role the route table has checked."""
    user: Actor = request[USER_KEY]
    return user


def _sees(request: web.Request, unit_id: str | None) -> bool:
    """Whether the caller may see this unit's cameras and evidence: a unit user only its own; staff the units of
    their organisation's stations (dispatch.scope)."""
    user = _user(request)
    incidents = request.app.get(INCIDENTS)  # (a video-only app, as in the camera tests, has no core)
    unit = incidents.core.units.get(unit_id or "") if incidents is not None else None
    return unit_id is not None and user.sees_unit(unit_id, unit.station_id if unit is not None else None)


def _own_unit_only(request: web.Request, unit_id: str | None) -> None:
    """403 unless the caller may see this unit's cameras and evidence (`_sees`)."""
    if not _sees(request, unit_id):
        raise HttpError(403, "this belongs to another unit or station")


async def _incident_in_scope(request: web.Request, incident_id: int) -> None:
    """404 for no such incident, 403 for one of a unit the caller may not see (its evidence with it)."""
    incidents = request.app.get(INCIDENTS)
    if incidents is None:
        return
    async with incidents.core.db.session() as s:
        inc = await s.get(Incident, incident_id)
    if inc is None:
        raise HttpError(404, f"incident {incident_id} not found")
    _own_unit_only(request, inc.unit_id)


def _hub(request: web.Request) -> CameraHub:
    hub = request.app.get(CAMERAS)
    if hub is None:
        raise HttpError(503, "video is not running", down=["video"])
    return hub


def _camera(request: web.Request) -> CameraStream:
    hub = _hub(request)
    cid = request.match_info["camera_id"]
    if cid not in hub:
        raise HttpError(404, "no such camera")
    s = hub.get(cid)
    _own_unit_only(request, s.cfg.unit_id)
    return s


def _watched_here(s: CameraStream) -> CameraStream:
    """Cluster mode: pictures come from the node that watches the camera; another node's console says which."""
    if not s.watching and s.cfg.enabled:
        where = f"node {s.watcher}" if s.watcher else "another node (none has taken it yet)"
        raise HttpError(503, f"camera {s.id} is watched by {where}: open its video on that node's console",
                        down=[f"camera:{s.id}"])
    return s


def _frame_query(request: web.Request) -> tuple[int | None, int | None]:
    q = request[QUERY_KEY]
    assert isinstance(q, FrameQuery)
    return q.w, q.fps if isinstance(q, LiveQuery) else None


@routes.route("GET", "/api/cameras", "List cameras", roles=VIEW_ROLES, tag=TAG)
async def list_cameras(request: web.Request, _: None) -> web.Response:
    hub = _hub(request)
    cams = [s.info() for s in hub.streams.values() if _sees(request, s.cfg.unit_id)]
    return web.json_response({"cameras": cams})


@routes.route("GET", "/api/cameras/{camera_id}", "Get a camera", roles=VIEW_ROLES, tag=TAG)
async def get_camera(request: web.Request, _: None) -> web.Response:
    return web.json_response(_camera(request).info())


@routes.route("GET", "/api/cameras/{camera_id}/snapshot.jpg", "A camera's latest frame", roles=VIEW_ROLES,
              tag=TAG, query=FrameQuery, produces=("image/jpeg",))
async def snapshot(request: web.Request, _: None) -> web.Response:
    s = _watched_here(_camera(request))
    width, _fps = _frame_query(request)
    frame = await s.hub.snapshot(s.id, width)
    if frame is None:
        raise HttpError(503, f"no picture yet ({s.health.status.value})", down=[f"camera:{s.id}"])
    return web.Response(
        body=frame.data,
        content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Frame-Time": f"{frame.ts:.3f}"},
    )


async def _paced(frames: AsyncIterator[EncodedFrame], fps: int | None) -> AsyncIterator[EncodedFrame]:
    period = 1.0 / fps if fps else 0.0
    last = 0.0
    async for f in frames:
        if period and f.ts - last < period * 0.9:
            continue
        last = f.ts
        yield f


@routes.route("GET", "/api/cameras/{camera_id}/live.mjpeg", "Live video as multipart MJPEG", roles=VIEW_ROLES,
              tag=TAG, query=LiveQuery, produces=(f"multipart/x-mixed-replace; boundary={BOUNDARY}",))
async def live_mjpeg(request: web.Request, _: None) -> web.StreamResponse:
    s = _watched_here(_camera(request))
    width, fps = _frame_query(request)
    resp = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-store, no-cache, must-revalidate",
            "Pragma": "no-cache",
            "X-Accel-Buffering": "no",
            "Connection": "close",
        }
    )
    await resp.prepare(request)
    async with s.hub.live(s.id, width) as ch:
        try:
            async for f in _paced(ch.frames(), fps):
                head = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(f.data)}\r\n"
                    f"X-Frame-Time: {f.ts:.3f}\r\n\r\n"
                ).encode()
                # A slow viewer waits here (the transport applies back-pressure) while newer
                # frames replace older ones in the channel: it skips frames, nobody else waits.
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await resp.write(head + f.data + b"\r\n")
        except (ConnectionError, TimeoutError):
            pass
    return resp


@routes.route("GET", "/api/cameras/{camera_id}/live.ws", "Live video over a WebSocket (one JPEG per message)",
              roles=VIEW_ROLES, tag=TAG, query=LiveQuery, success=101, statuses=(400,))
async def live_ws(request: web.Request, _: None) -> web.WebSocketResponse:
    s = _watched_here(_camera(request))
    width, fps = _frame_query(request)
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 16)
    if not ws.can_prepare(request).ok:
        raise HttpError(400, "a WebSocket endpoint: connect with Upgrade: websocket")
    await ws.prepare(request)

    async def drain_incoming() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    reader = asyncio.create_task(drain_incoming())
    try:
        async with s.hub.live(s.id, width) as ch:
            async for f in _paced(ch.frames(), fps):
                if ws.closed or reader.done():
                    break
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await ws.send_bytes(f.data)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await ws.close()
    return ws


def _store(request: web.Request) -> EvidenceStore:
    rec = request.app.get(EVIDENCE)
    if rec is None:
        raise HttpError(503, "evidence is not available", down=["video"])
    return rec.store


@routes.route("GET", "/api/incidents/{incident_id}/evidence", "Evidence files of an incident with their SHA-256",
              roles=VIEW_ROLES, tag=TAG)
async def incident_evidence(request: web.Request, _: None) -> web.Response:
    store = _store(request)
    incident_id: int = request[PATH_PARAMS_KEY]["incident_id"]
    await _incident_in_scope(request, incident_id)
    manifest = await asyncio.to_thread(store.manifest, incident_id)
    if manifest is None:
        return web.json_response({"incident_id": incident_id, "files": [], "hold": False})
    _own_unit_only(request, str(manifest.get("unit_id")))
    files = [dict(f, url=f"/api/evidence/{f['file']}") for f in manifest.get("files", [])]
    return web.json_response(
        {
            "incident_id": incident_id,
            "unit_id": manifest.get("unit_id"),
            "hold": manifest.get("hold", False),
            "files": files,
        }
    )


@routes.route("GET", r"/api/evidence/{folder:incident-\d+}/{name}",
              "One evidence file (Range requests: <video> seeks)", roles=VIEW_ROLES, tag=TAG,
              statuses=(206, 304, 409, 416), produces=(*EVIDENCE_TYPES.values(), "application/octet-stream"))
async def evidence_file(request: web.Request, _: None) -> web.StreamResponse:
    store = _store(request)
    folder, name = request.match_info["folder"], request.match_info["name"]
    rel = f"{folder}/{name}"
    path = await asyncio.to_thread(store.resolve, rel)
    if path is None:
        raise HttpError(404, "no such evidence file")
    incident_id = int(folder.removeprefix("incident-"))
    await _incident_in_scope(request, incident_id)
    manifest = await asyncio.to_thread(store.manifest, incident_id)
    _own_unit_only(request, None if manifest is None else str(manifest.get("unit_id")))
    await _check_integrity(request, store, incident_id, rel, path)
    ctype = EVIDENCE_TYPES.get(Path(name).suffix, "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": ctype, "Cache-Control": "private, max-age=3600"})


async def _check_integrity(request: web.Request, store: EvidenceStore, incident_id: int, rel: str,
                           path: Path) -> None:
    """Refuses (409) a file whose content no longer has the SHA-256 recorded for it; 404 for one never recorded.

    The hash-chained record is the authority when the app has one (``RECORDED``); the manifest next to the
    files is used for files the record does not list (a recording that failed) and must agree with it.
    """
    listed = await asyncio.to_thread(store.listed_sha256, rel)
    lookup = request.app.get(RECORDED)
    recorded = (await lookup(incident_id)).get(rel) if lookup is not None else None
    expected = recorded or listed
    if expected is None:
        raise HttpError(404, "no such evidence file")
    verifier = request.app.get(VERIFIER) or Verifier()
    if (recorded is not None and listed is not None and recorded != listed) or not await asyncio.to_thread(
            verifier.verify, path, expected):
        log.error("evidence %s failed its integrity check (expected sha256 %s): refused", rel, expected)
        raise HttpError(409, "evidence file altered: its content no longer matches the SHA-256 recorded when it was "
                             "saved; not served")


def _photo_format(data: bytes) -> str | None:
    """The stored extension when `data` is a JPEG/PNG/WebP image by content (not by name or header), else None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return PHOTO_FORMATS.get(fmt or "")


async def _read_photo(request: web.Request) -> bytes:
    """The first file part of a multipart body, refusing more than MAX_PHOTO_BYTES (read in chunks)."""
    if (request.content_length or 0) > MAX_PHOTO_BYTES + 64 * 1024:
        raise HttpError(413, "photo too large (max 8 MB)")
    if not request.content_type.startswith("multipart/"):
        raise HttpError(400, "send the photo as multipart/form-data")
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            raise HttpError(400, "no photo in the request")
        if not isinstance(part, BodyPartReader) or (part.filename is None and part.name != "photo"):
            continue
        buf = bytearray()
        while chunk := await part.read_chunk(1 << 16):
            buf += chunk
            if len(buf) > MAX_PHOTO_BYTES:
                raise HttpError(413, "photo too large (max 8 MB)")
        return bytes(buf)


@routes.route("POST", "/api/incidents/{incident_id}/photos", "Add a photo to an incident's evidence (multipart)",
              roles=PHOTO_ROLES, tag=TAG, upload=PHOTO_UPLOAD, success=201)
async def upload_photo(request: web.Request, _: None) -> web.Response:
    user = _user(request)  # role and CSRF checked by the route table
    incident_id: int = request[PATH_PARAMS_KEY]["incident_id"]
    rec = request.app.get(EVIDENCE)
    if rec is None:
        raise HttpError(503, "evidence is not available", down=["video"])
    store = rec.store
    service = request.app.get(INCIDENTS)
    manifest = None if service is not None else await asyncio.to_thread(store.manifest, incident_id)
    if service is not None:  # the incident must exist and be visible to the caller (403/404 by the service)
        incident = await service.views.incident_detail(incident_id, user)
        unit_id, opened_at = str(incident["unit_id"]), parse_time(incident.get("opened_at"))
    elif manifest is not None:
        unit_id, opened_at = str(manifest.get("unit_id")), float(manifest.get("opened_at") or time.time())
    else:
        raise HttpError(404, "no such incident")
    _own_unit_only(request, unit_id)

    data = await _read_photo(request)
    ext = await asyncio.to_thread(_photo_format, data)
    if ext is None:
        raise HttpError(400, "not a JPEG, PNG or WebP image")
    now = time.time()
    name = f"photo-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{uuid.uuid4().hex[:6]}.{ext}"
    source = f"phone-{user.unit_id}" if user.role == "unit" else f"officer-{getattr(user, 'username', '')}"
    base = {"incident_id": incident_id, "unit_id": unit_id, "opened_at": opened_at, "created": time.time(),
            "hold": False, "files": []}  # fmt: skip
    ef = await rec.save_file(incident_id, base, name, source, "photo", data, now)
    return web.json_response(dict(ef.to_json(), url=f"/api/evidence/{ef.file}"), status=201)


def setup_video(
    app: web.Application,
    *,
    record: RecordFn | None = None,
    video: VideoConfig | None = None,
    evidence_dir: str | None = None,
    publish_status: bool = True,
    recorded: RecordedFn | None = None,
) -> None:
    """Run cameras + evidence with the app (the routes are the console's: console.web).

    `record(incident_id, "evidence.saved", {file, sha256, kind, camera_id})` is awaited for each
    saved evidence file; `recorded(incident_id)` returns those recorded hashes, which files are checked
    against when served (else against the manifest). `video` defaults to ``app[CONFIG].video`` when the config has one.
    Camera status changes are published on the bus as `CameraUpdated` (``{"kind": "camera", "camera": <as in
    GET /api/cameras>}``) unless `publish_status` is false.
    """
    app[VERIFIER] = Verifier()
    if recorded is not None:
        app[RECORDED] = recorded

    def make() -> tuple[CameraHub, EvidenceRecorder]:
        cfg = app[CONFIG]
        vcfg = video or getattr(cfg, "video", None) or VideoConfig()
        root = evidence_dir or (vcfg.evidence_dir if "evidence_dir" in vcfg.model_fields_set else None)
        hub = CameraHub(cfg.cameras, vcfg)
        rec = EvidenceRecorder(hub, vcfg, root=root or DEFAULT_EVIDENCE_DIR, record=record)
        return hub, rec

    if CONFIG in app:  # build now, while the app may still be changed; started by the context
        app[CAMERAS], app[EVIDENCE] = make()

    async def video_ctx(app: web.Application) -> AsyncIterator[None]:
        if CAMERAS not in app:
            app[CAMERAS], app[EVIDENCE] = make()
        hub, rec = app[CAMERAS], app[EVIDENCE]
        bus = app.get(BUS)
        if bus is not None and publish_status:
            def on_status(s: CameraStream, _old: Health, _new: Health) -> None:
                bus.publish(Event.of(CameraUpdated(camera=s.info())))

            hub.on_status.append(on_status)
        cluster = getattr(app[CONFIG], "cluster", None)  # cluster mode: cameras start by their leases (app.py)
        await hub.start(() if cluster is not None and cluster.enabled else None)
        rec.start()
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(_retention(rec), name="evidence-retention")]
        if bus is not None:
            sub = bus.subscribe([INCIDENT_CREATED])
            tasks.append(asyncio.create_task(_incidents(rec, sub), name="evidence-incidents"))
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if bus is not None:
                sub.close()
            await rec.stop()
            await hub.stop()

    async def end_live_views(app: web.Application) -> None:
        hub = app.get(CAMERAS)
        if hub is not None:
            hub.end_live_views()

    app.cleanup_ctx.append(video_ctx)
    app.on_shutdown.append(end_live_views)  # before connections are closed: streams end cleanly


async def _incidents(rec: EvidenceRecorder, sub: Subscription) -> None:
    async for event in sub:
        try:
            payload = event.payload()
        except ValueError as exc:
            log.error("evidence: %s", exc)
            continue
        if isinstance(payload, IncidentCreated):
            rec.on_incident(payload.incident)


async def _retention(rec: EvidenceRecorder) -> None:
    while True:
        t0 = time.monotonic()
        try:
            await asyncio.to_thread(rec.store.purge, rec.video.retention_days)
        except Exception:
            log.exception("evidence retention failed")
        await asyncio.sleep(max(60.0, RETENTION_CHECK_S - (time.monotonic() - t0)))
