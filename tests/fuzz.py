"""Hostile MQTT input for the intake tests and bench/intake_poison.py: every payload class that used to make the
core deaf or stall it (issue 10), on every subscribed topic, plus seeded random structured garbage."""

from __future__ import annotations

import json
import math
import random
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import Broker


def detection_payload(**over: Any) -> bytes:
    base: dict[str, Any] = {"type": "video_fire", "alarm_id": "v-1", "camera_id": "cam-1", "unit_id": "no-such-unit",
                            "ts": "2026-01-15T08:30:00+00:00", "confidence": 0.9, "boxes": [[1, 2, 3, 4, 0.9, 1]],
                            "width": 160, "height": 120, "jpeg_b64": "/9j/2Q=="}
    base.update(over)
    return json.dumps(base, allow_nan=True).encode()


HUGE_INT = b"9" * 5000
HOSTILE: dict[str, bytes] = {
    "deep arrays": b"[" * 60_000,
    "deep objects": b'{"a":' * 5_000,
    "deep but closed": b'{"alarm_id":' + b"[" * 3000 + b"]" * 3000 + b"}",
    "huge int alone": HUGE_INT,
    "huge int id": b'{"dispatch_id":' + HUGE_INT + b',"alarm_id":' + HUGE_INT + b"}",
    "huge int field": b'{"alarm_id":"x","kind":"one_key","note":' + HUGE_INT + b"}",
    "oversized": b'{"alarm_id":"x","kind":"one_key","note":"' + b"x" * 70_000 + b'"}',
    "long string": b'{"alarm_id":"' + b"x" * 60_000 + b'","status":"' + b"y" * 3_000 + b'"}',
    "invalid utf-8": b'{"alarm_id":"\xff\xfe\xfd","kind":"one_key","status":"online"}',
    "lone surrogate": b'{"alarm_id":"\\ud800","kind":"one_key"}',
    "nul": b'{"alarm_id":"a\\u0000b","kind":"one_key","status":"online","detail":"\\u0000"}',
    "nan": b'{"dispatch_id":NaN,"confidence":NaN}',
    "infinity": b'{"dispatch_id":Infinity,"alarm_id":-Infinity}',
    "wrong types": b'{"alarm_id":5,"kind":["one_key"],"status":1,"dispatch_id":{"x":1}}',
    "id 2^63": json.dumps({"dispatch_id": 2**63, "status": "acknowledged"}).encode(),
    "id 2^31": json.dumps({"dispatch_id": 2**31, "status": "acknowledged"}).encode(),
    "id 0": b'{"dispatch_id":0}',
    "id negative": b'{"dispatch_id":-5}',
    "id float": b'{"dispatch_id":1.5}',
    "empty": b"",
    "not an object": b'"fire"',
    "time out of range": b'{"alarm_id":"t","kind":"one_key","status":"online","ts":"0001-01-01T00:00:00+05:00"}',
    "detection nan": detection_payload(confidence=math.nan),
    "detection traversal": detection_payload(alarm_id="../incident-1/snapshot"),
    "detection naive time far": detection_payload(ts="9999-12-31T23:59:59-05:00"),
    "detection bad base64": detection_payload(jpeg_b64="***"),
    "detection boxes bomb": detection_payload(boxes=[[1.0] * 9] * 70),
    "detection wrong camera": detection_payload(camera_id="cam-2"),
    "detection unknown type": detection_payload(type="video_flood"),
}


def topics(prefix: str) -> dict[str, str]:
    return {"alarm": f"{prefix}/units/school-1/alarm", "status": f"{prefix}/devices/btn-1/status",
            "fire ack": f"{prefix}/dispatch/fire/ack", "medical ack": f"{prefix}/dispatch/medical/ack",
            "detections": f"{prefix}/cameras/cam-1/detections", "wrong leaf": f"{prefix}/units/school-1/alarms",
            "deep leaf": f"{prefix}/devices/btn-1/status/x", "hotline": f"{prefix}/hotline/complaints"}


def garbage(rng: random.Random, depth: int = 0) -> Any:
    """Random structured JSON: real field names, wrong shapes, odd values (seeded: the same run every time)."""
    names = ["alarm_id", "kind", "status", "dispatch_id", "by", "note", "ts", "type", "camera_id", "unit_id",
             "boxes", "confidence", "jpeg_b64", "zone_id", "detail", "device_id"]
    roll = rng.random()
    if depth < 4 and roll < 0.35:
        return {rng.choice(names) if rng.random() < 0.8 else f"k{rng.randrange(99)}": garbage(rng, depth + 1)
                for _ in range(rng.randrange(1, 6))}
    if depth < 4 and roll < 0.5:
        return [garbage(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return rng.choice([
        rng.randrange(-2**70, 2**70), rng.random() * 10 ** rng.randrange(-5, 300), True, None, "",
        "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(rng.randrange(1, 40))),
        rng.choice(["one_key", "online", "acknowledged", "video_fire", "blocked_exit", "on_scene", "fault"]),
        "2026-01-15T08:30:00", "x" * rng.randrange(100, 5000),
    ])


def fuzz_messages(prefix: str, random_count: int) -> list[tuple[str, bytes]]:
    out = [(topic, payload) for topic in topics(prefix).values() for payload in HOSTILE.values()]
    out += [(f"{prefix}/dispatch/fire/ack", json.dumps({"dispatch_id": 2**63 + n}).encode()) for n in range(50)]
    out += [(f"{prefix}/dispatch/medical/ack", json.dumps({"dispatch_id": 1000 + n}).encode()) for n in range(20)]
    rng = random.Random(20261130)
    names = list(topics(prefix).values())
    for n in range(random_count):
        body = garbage(rng)
        if isinstance(body, dict):
            body[f"fuzz_{n}"] = n  # an unknown field: never valid by accident
            body["type"] = "fuzz"
        raw = json.dumps(body, ensure_ascii=rng.random() < 0.5).encode()
        if rng.random() < 0.2:  # and some byte-level damage
            cut = rng.randrange(len(raw) + 1)
            raw = raw[:cut] + bytes([rng.randrange(256)]) + raw[cut + 1:]
        out.append((names[n % len(names)], raw))
    return out


def publish_many(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    """One device-like client publishes everything at QoS 1 and waits for every PUBACK (blocking)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzz-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


