"""`firelink detect --cameras ...`: a detector worker process publishing over MQTT.

A worker (possibly on another machine with a GPU) opens the listed cameras itself, runs the
detector service and publishes each event, QoS 1, to ``{prefix}/cameras/{camera_id}/detections``.
The core subscribes to ``{prefix}/cameras/+/detections`` and turns each message back into core
inputs with ingest.payloads (the same typed `DetectionEvent` an in-process detector emits). The payloads are
ingest.payloads' pydantic models (`FireDetectionPayload`, `ExitDetectionPayload`), built and validated here too.

Payload (JSON, UTF-8; JPEGs base64, scaled to ≤ 640 px wide, so a message stays < ~150 KB):

* smoke/fire: ``{"type": "video_smoke"|"video_fire", "alarm_id", "camera_id", "unit_id", "ts" (ISO-8601),
  "confidence", "boxes": [{"class", "confidence", "box": [x1, y1, x2, y2]}], "width", "height", "jpeg_b64"}``
  (box pixels refer to the full frame of width×height);
* blocked exit: ``{"type": "blocked_exit", "camera_id", "unit_id", "zone_id", "zone_name", "started_at",
  "confirmed_at", "fraction", "before_jpeg_b64", "after_jpeg_b64"}``;
* cleared: ``{"type": "blocked_exit_cleared", ... "cleared_at", "after_jpeg_b64"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import cv2
import numpy as np

from config.schema import NODE_ID_PATTERN, FirelinkConfig, MqttConfig
from ingest.cameras.assignment import CameraAssignment, CameraSwitch
from ingest.contract import AlarmDetection, DetectionEvent, ExitEvent, ExitHazard
from ingest.payloads import (
    MAX_BOXES,
    AnyDetectionPayload,
    ExitDetectionPayload,
    FireDetectionPayload,
    parse_detection,
)

log = logging.getLogger(__name__)

MAX_JPEG_WIDTH = 640


def topic(prefix: str, camera_id: str) -> str:
    return f"{prefix}/cameras/{camera_id}/detections"


def shrink_jpeg(data: bytes, width: int = MAX_JPEG_WIDTH, quality: int = 75) -> bytes:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.shape[1] <= width:
        return data
    h = round(img.shape[0] * width / img.shape[1])
    ok, buf = cv2.imencode(".jpg", cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else data


def fire_payload(det: AlarmDetection) -> FireDetectionPayload:
    """An alarm detection as its MQTT payload (validated here as the core validates it: a worker that cannot build
    a valid message finds out before it publishes)."""
    alarm, frame = det.alarm, det.frame
    return FireDetectionPayload.model_validate({
        "type": alarm.kind, "alarm_id": alarm.alarm_id, "camera_id": alarm.device_id, "unit_id": alarm.unit_id or None,
        "ts": datetime.fromtimestamp(frame.t, UTC), "confidence": frame.confidence,
        "boxes": list(frame.boxes[:MAX_BOXES]), "width": frame.width, "height": frame.height,
        "jpeg_b64": shrink_jpeg(frame.jpeg)})


def hazard_payload(ev: ExitEvent) -> ExitDetectionPayload:
    """A blocked exit (or its clearing) as its MQTT payload."""
    data = {"camera_id": ev.camera_id, "unit_id": ev.unit_id, "zone_id": ev.zone_id, "zone_name": ev.zone_name,
            "started_at": ev.started_at, "confirmed_at": ev.confirmed_at, "fraction": float(ev.fraction),
            "after_jpeg_b64": shrink_jpeg(ev.after_jpeg)}
    if isinstance(ev, ExitHazard):
        return ExitDetectionPayload.model_validate(
            {"type": "blocked_exit", **data, "before_jpeg_b64": shrink_jpeg(ev.before_jpeg)})
    return ExitDetectionPayload.model_validate({"type": "blocked_exit_cleared", **data, "cleared_at": ev.cleared_at})


def detection_payload(ev: DetectionEvent) -> AnyDetectionPayload:
    return fire_payload(ev) if isinstance(ev, AlarmDetection) else hazard_payload(ev)


def camera_of(ev: DetectionEvent) -> str:
    return (ev.alarm.device_id or "") if isinstance(ev, AlarmDetection) else ev.camera_id


def parse_detection_message(topic_name: str, payload: bytes, received_at: datetime | None = None,
                            default_unit: str | None = None) -> DetectionEvent | None:
    """Core side: a detections message → the detection event; None (and a log line) when refused. The payload is
    bounded and validated by ingest.payloads (the core's MQTT contract), which never raises."""
    got = parse_detection(topic_name, payload, received_at or datetime.now(UTC), default_unit)
    if isinstance(got, str):
        log.warning("bad detections message on %s: %s", topic_name, got)
        return None
    return got


class MqttPublisher:
    """Blocking paho client used from the event loop through threads; QoS 1, waits for PUBACK."""

    def __init__(self, mqtt_cfg: MqttConfig, client_id: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.cfg = mqtt_cfg
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if mqtt_cfg.username:
            pw = mqtt_cfg.password.get_secret_value() if mqtt_cfg.password else None
            self.client.username_pw_set(mqtt_cfg.username, pw)
        self.client.max_inflight_messages_set(100)

    def start(self) -> None:
        self.client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        with contextlib.suppress(Exception):
            self.client.disconnect()

    async def publish(self, topic_name: str, payload: AnyDetectionPayload) -> None:
        info = self.client.publish(topic_name, payload.model_dump_json(exclude_none=True).encode(), qos=1)
        await asyncio.to_thread(info.wait_for_publish, 30)


AssignmentFactory = Callable[[FirelinkConfig, str, Sequence[str]], CameraAssignment]
"""(config, node id, camera ids) → the hook that decides which of them this worker watches (cluster mode: the
composition passes dispatch.camera_leases' lease per camera; the detectors never import it)."""


async def run_worker(cfg: FirelinkConfig, camera_ids: list[str], *, stop: asyncio.Event | None = None,
                     assignment: CameraAssignment | None = None, node: str | None = None) -> None:
    """Runs until `stop` is set (or SIGINT/SIGTERM). Without `assignment` (a single box) it watches every camera
    given; with one (cluster mode) the cameras wait in standby and are watched (captured and analysed) only while
    the assignment says so. `node` names the worker (its MQTT client id)."""
    from detectors.pipeline import DetectorService
    from ingest.cameras.hub import CameraHub

    dcfg = cfg.detectors
    known = {c.id: c for c in cfg.cameras}
    missing = [c for c in camera_ids if c not in known]
    if missing:
        raise SystemExit(f"unknown camera(s): {', '.join(missing)}")
    cams = [known[c] for c in camera_ids]
    prefix = cfg.mqtt.topic_prefix
    # Two workers given the same cameras (cluster failover) must not share a broker session: the node id is in it.
    pub = MqttPublisher(cfg.mqtt, f"firelink-detect-{f'{node}-' if node else ''}{'-'.join(camera_ids)}"[:64])
    await asyncio.to_thread(pub.start)
    hub = CameraHub(cams, cfg.video)

    async def publish(ev: DetectionEvent) -> None:
        await pub.publish(topic(prefix, camera_of(ev)), detection_payload(ev))

    svc = DetectorService(hub, dcfg, publish, camera_ids=camera_ids)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await hub.start(None if assignment is None else ())  # cluster mode: standby until assigned
    await svc.start()
    waits: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait(), name="detect-stop")]
    if assignment is not None:  # after the detectors: a camera assigned here is analysed from its first frame
        waits.append(asyncio.create_task(_assigned(assignment, hub), name="detect-assignment"))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in waits:  # the assignment first: it stops its cameras, then lets the other nodes take them
            t.cancel()
        results = await asyncio.gather(*waits, return_exceptions=True)
        await svc.stop()
        await hub.stop()
        await asyncio.to_thread(pub.stop)
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise failed[0]


async def _assigned(assignment: CameraAssignment, switch: CameraSwitch) -> None:
    await assignment(switch)
    raise RuntimeError("the camera assignment ended by itself")  # it runs until cancelled


def cmd_detect(cfg: FirelinkConfig, args: argparse.Namespace) -> int:
    ids = [c for part in args.cameras for c in part.split(",") if c]
    if not ids:
        ids = [c.id for c in cfg.cameras if c.enabled]
    node: str | None = getattr(args, "node_id", None)
    factory: AssignmentFactory | None = getattr(args, "assignment", None)
    if not cfg.cluster.enabled:
        if node is not None:
            print("error: --node-id applies in cluster mode only (cluster.enabled)", file=sys.stderr)
            return 2
        asyncio.run(run_worker(cfg, ids))
        return 0
    if factory is None:
        print("error: cluster mode, but this `detect` command has no camera leases to take part in", file=sys.stderr)
        return 2
    node = node or cfg.cluster.node()
    if not re.fullmatch(NODE_ID_PATTERN, node):
        print(f"error: node id {node!r} does not match {NODE_ID_PATTERN}", file=sys.stderr)
        return 2
    log.info("detector worker %s: cameras %s by lease (cluster mode)", node, ", ".join(ids))
    asyncio.run(run_worker(cfg, ids, assignment=factory(cfg, node, ids), node=node))
    return 0
