"""Poison on the intake: how long a valid alarm waits behind a burst of hostile MQTT messages (issue 10 §6).

Scenarios (each on a fresh database and topic prefix, the core in this process, Mosquitto started from
deploy/mosquitto/firelink.conf on a free port):

- detections: N fuzzed detection messages (every hostile class + seeded random garbage) on the detections topic;
- acks:       50 agency acknowledgements with a dispatch id beyond 2^63;
- mixed:      every hostile class on every subscribed topic plus N random messages spread over the topics.

For each: the burst is published (QoS 1, all PUBACKs awaited), then one valid alarm; printed are the publish
time of the burst, publish → commit of the valid alarm, burst start → all rejections stored, and the intake's
failure/quarantine counters (0 means every message was refused cheaply, before any transaction failed).

    .venv/bin/python bench/intake_poison.py [--count 3000] [--db-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console.appkeys import BUS, MQTT
from dispatch import events as ev
from tests.fuzz import HOSTILE, fuzz_messages, garbage, publish_many
from tests.support import ROOT, Broker, base_config, publish, running_app, start_mosquitto


def detections(prefix: str, count: int) -> list[tuple[str, bytes]]:
    import random

    topic = f"{prefix}/cameras/cam-1/detections"
    out = [(topic, p) for p in HOSTILE.values()]
    rng = random.Random(7)
    while len(out) < count:
        body = garbage(rng)
        if isinstance(body, dict):
            body.update(camera_id="cam-1", type=rng.choice(["video_fire", "video_smoke", "blocked_exit", "x"]))
        out.append((topic, json.dumps(body).encode()))
    return out


def acks(prefix: str, count: int) -> list[tuple[str, bytes]]:
    return [(f"{prefix}/dispatch/fire/ack", json.dumps({"dispatch_id": 2**63 + n}).encode()) for n in range(50)]


async def scenario(name: str, broker: Broker, db_url: str, count: int) -> dict[str, float | int]:
    cfg = base_config(db_url, broker)
    prefix = cfg.mqtt.topic_prefix
    burst = {"detections": detections, "acks": acks,
             "mixed": lambda p, n: fuzz_messages(p, random_count=max(0, n - 273))}[name](prefix, count)
    async with running_app(cfg) as app:
        link = app.app[MQTT]
        assert link is not None
        with app.app[BUS].subscribe([ev.ALARM_REJECTED, ev.ALARM_RECEIVED], maxsize=len(burst) + 100) as sub:
            started = time.monotonic()
            await asyncio.to_thread(publish_many, broker, burst)
            published = time.monotonic()
            good = f"valid-{uuid.uuid4().hex}"
            await publish(broker, f"{prefix}/units/school-1/alarm", {"alarm_id": good, "kind": "one_key"})
            committed = rejected_at = 0.0
            rejected = 0
            while not committed or rejected < len(burst):
                event = await asyncio.wait_for(sub.get(), 120)
                if event.type == ev.ALARM_REJECTED:
                    rejected += 1
                    if rejected == len(burst):
                        rejected_at = time.monotonic()
                elif event.data["alarm"]["alarm_id"] == good:
                    committed = time.monotonic()
        counters = link.status().counters
    return {"messages": len(burst), "publish_s": published - started, "valid_alarm_ms": (committed - published) * 1000,
            "all_rejected_s": rejected_at - started, "failures": counters.get("failures", 0),
            "quarantined": counters.get("quarantined", 0)}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3000, help="messages in the detections and mixed bursts")
    parser.add_argument("--db-url", default=None, help="default: a fresh SQLite file per scenario")
    parser.add_argument("--scenarios", default="detections,acks,mixed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    broker = start_mosquitto((ROOT / "deploy" / "mosquitto" / "firelink.conf").read_text())
    workdir = Path(tempfile.mkdtemp(prefix="firelink-poison-"))
    try:
        print(f"{'scenario':<11} {'messages':>8} {'publish':>8} {'valid alarm':>12} {'all rejected':>13} "
              f"{'failures':>8} {'quarantined':>11}")
        for name in args.scenarios.split(","):
            url = args.db_url or f"sqlite+aiosqlite:///{workdir}/{name}.db"
            r = await scenario(name, broker, url, args.count)
            print(f"{name:<11} {r['messages']:>8} {r['publish_s']:>7.2f}s {r['valid_alarm_ms']:>10.0f}ms "
                  f"{r['all_rejected_s']:>12.2f}s {r['failures']:>8} {r['quarantined']:>11}", flush=True)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
