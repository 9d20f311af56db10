"""A cluster node's camera side in its own process, for tests that kill it with SIGKILL (tests/cameras/
test_cluster_cameras.py): a camera hub whose cameras start and stop by their leases (dispatch.camera_leases).

    python -m tests.cameras.cluster_node URL NODE HOST TTL_S CAMERAS_JSON PREFERRED_JSON

Prints `watch {camera} 1|0 {monotonic time}` when a capture starts or stops and `online {camera}` at its first
frame, flushed at once; runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from config.cameras import CameraConfig
from dispatch.camera_leases import CameraLeases
from dispatch.db import Database
from ingest.cameras.capture import Health, Status
from ingest.cameras.hub import CameraHub, CameraStream


async def main(url: str, node: str, host: str, ttl_s: float, cameras: str, preferred: str) -> None:
    cams = [CameraConfig.model_validate(c) for c in json.loads(cameras)]
    hub = CameraHub(cams)
    hub.on_watch.append(lambda cid, on: print(f"watch {cid} {int(on)} {time.monotonic():.6f}", flush=True))

    def online(s: CameraStream, _old: Health, new: Health) -> None:
        if new.status is Status.ONLINE:
            print(f"online {s.id}", flush=True)

    hub.on_status.append(online)
    db = Database(url)
    await db.upgrade()
    await hub.start(())
    leases = CameraLeases(db, node, [c.id for c in cams], json.loads(preferred), hub, ttl_s, host=host)
    print("ready", flush=True)
    await leases.run()


if __name__ == "__main__":
    url, node, host, ttl, cameras, preferred = sys.argv[1:7]
    asyncio.run(main(url, node, host, float(ttl), cameras, preferred))
